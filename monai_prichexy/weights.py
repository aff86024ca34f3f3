"""Saving and safely loading network weights.

A checkpoint is a plain dict that ``torch.load(weights_only=True)`` can read, so loading never
runs code::

    {"format": "monai_prichexy/1", "network": "FlowFieldGenerator",
     "network_kwargs": {...}, "state_dict": {...}, "meta": {"mu": 0.01, ...}}

A bare state dict (the MONAI bundle's ``models/model.pt`` convention) is accepted too; the
network is then rebuilt from the caller's arguments or, for the generator, from the weight
shapes. A checkpoint that would execute code on load is refused, and a SHA-256 can be checked
before anything is unpickled.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_write
from .bundle_files import read_model_json
from .hashing import sha256_file
from . import networks
from .networks.anonymizer import DeformationSetup, PriCheXyNet
from .networks.deformation import SMOOTHING_MODES
from .networks.generator import FlowFieldGenerator, PrivacyNetEncoder

__all__ = [
    "CHECKPOINT_FORMAT",
    "NETWORKS",
    "WeightsError",
    "UnsafeCheckpointError",
    "ChecksumMismatchError",
    "MissingSetupError",
    "sha256_file",
    "save_checkpoint",
    "load_checkpoint",
    "build_network",
    "load_network",
    "load_generator",
    "load_into_prichexynet",
    "load_prichexynet",
]

CHECKPOINT_FORMAT = "monai_prichexy/1"
#: the networks a checkpoint may hold, by class name in :mod:`monai_prichexy.networks` (the classifier
#: and verifier classes, built on MONAI's, are imported only when such a network is saved or built)
NETWORKS: tuple[str, ...] = ("FlowFieldGenerator", "PrivacyNetEncoder", "AbnormalityClassifier", "SiameseVerifier",
                             "EmbeddingNet")


class WeightsError(ValueError):
    """Generator weights that cannot be used as given (the family the entry points catch)."""


class UnsafeCheckpointError(WeightsError):
    """The file is not a plain weights file: loading it would run code, or it is not a checkpoint."""


class ChecksumMismatchError(WeightsError):
    """The file's SHA-256 differs from the one it was shipped with."""


class MissingSetupError(WeightsError):
    """The checkpoint does not record a set-up value (e.g. mu) and none was given."""


def network_kwargs(network: nn.Module) -> dict[str, Any]:
    """The constructor arguments needed to rebuild one of :data:`NETWORKS`."""
    if isinstance(network, (FlowFieldGenerator, PrivacyNetEncoder)):
        return {"in_channels": network.in_channels, "init_features": network.init_features}
    from .networks import AbnormalityClassifier, EmbeddingNet, SiameseVerifier

    if isinstance(network, AbnormalityClassifier):
        return {
            "in_channels": network.in_channels,
            "input_size": network.input_size,
            "targets": list(network.targets),
            "backbone": network.backbone,
            "widen_factor": network.widen_factor,
        }
    if isinstance(network, SiameseVerifier):
        return {
            "backbone": network.backbone_name,
            "embedding_dim": network.embedding_dim,
            "in_channels": network.branch.conv1.in_channels,
            "widen_factor": network.branch.conv1.out_channels / 64,
            "input_size": network.input_size,
        }
    if isinstance(network, EmbeddingNet):
        return {
            "backbone": network.backbone_name,
            "embedding_dim": network.embedding_dim,
            "in_channels": network.branch.conv1.in_channels,
            "widen_factor": network.widen_factor,
            "input_size": network.input_size,
        }
    raise TypeError(f"cannot describe a {type(network).__name__}; expected one of {sorted(NETWORKS)}")


def save_checkpoint(path: str | os.PathLike, network: nn.Module, meta: Mapping[str, Any] | None = None) -> Path:
    """Atomically write ``network`` (unwrapping DDP/PriCheXyNet) with JSON-like ``meta``."""
    network = getattr(network, "module", network)
    if isinstance(network, PriCheXyNet):
        meta = {"mu": network.mu, "smoothing": network.smoothing, "working_size": network.working_size,
                "budget_px": network.budget_px, **(meta or {})}
        network = network.generator
    payload = {
        "format": CHECKPOINT_FORMAT,
        "network": type(network).__name__,
        "network_kwargs": network_kwargs(network),
        "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
        "meta": dict(meta or {}),
    }
    path = Path(path)
    atomic_write(path, lambda handle: torch.save(payload, handle))
    return path


def load_checkpoint(path: str | os.PathLike, expected_sha256: str | None = None) -> dict[str, Any]:
    """Load a checkpoint or bare state dict with ``weights_only=True``.

    Raises:
        FileNotFoundError: no such file.
        ChecksumMismatchError: ``expected_sha256`` is given and differs (checked before loading).
        UnsafeCheckpointError: the file holds objects that would run code, or is no checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual.lower() != expected_sha256.lower():
            raise ChecksumMismatchError(f"{path}: SHA-256 is {actual}, expected {expected_sha256}; refusing to load")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"{path}: refused: it is not a plain weights file (loading it would execute code or it is corrupt): {err}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise UnsafeCheckpointError(f"{path}: not a readable PyTorch weights file: {err}") from None
    if not isinstance(payload, Mapping):
        raise UnsafeCheckpointError(f"{path}: expected a dict of weights, found {type(payload).__name__}")
    if "state_dict" in payload and payload.get("format") == CHECKPOINT_FORMAT:
        return dict(payload)
    if all(isinstance(v, torch.Tensor) for v in payload.values()):
        return {"format": None, "network": None, "network_kwargs": {}, "state_dict": dict(payload), "meta": {}}
    for key in ("model", "network", "generator", "state_dict"):  # Ignite / MONAI CheckpointSaver dicts
        if isinstance(payload.get(key), Mapping) and all(isinstance(v, torch.Tensor) for v in payload[key].values()):
            return {"format": None, "network": None, "network_kwargs": {}, "state_dict": dict(payload[key]), "meta": {}}
    raise UnsafeCheckpointError(f"{path}: no state dict found (keys: {sorted(payload)[:8]})")


def _strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return dict(state)


def _generator_state(checkpoint: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a PriCheXyNet state dict into the generator's weights and its set-up (mu, smoothing, working size)."""
    state = _strip_prefix(checkpoint["state_dict"], "module.")
    meta = dict(checkpoint.get("meta", {}))
    state = dict(state)
    if "mu_value" in state:
        meta.setdefault("mu", float(state.pop("mu_value")))
    if "smoothing_index" in state:
        meta.setdefault("smoothing", SMOOTHING_MODES[int(state.pop("smoothing_index"))])
    if "working_size_value" in state:
        size = [int(v) for v in state.pop("working_size_value")]
        meta.setdefault("working_size", None if size[0] == 0 else size)
    if "budget_px_value" in state:
        budget = float(state.pop("budget_px_value"))
        meta.setdefault("budget_px", None if budget <= 0 else budget)
    return _strip_prefix(state, "generator."), meta


def build_network(checkpoint: Mapping[str, Any], network: str | None = None, **kwargs: Any) -> nn.Module:
    """Rebuild a network from a loaded checkpoint and load its weights (strict)."""
    name = checkpoint.get("network") or network
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; expected one of {sorted(NETWORKS)}")
    state = _strip_prefix(_generator_state(checkpoint)[0], "module.")
    arguments = {**checkpoint.get("network_kwargs", {}), **kwargs}
    if name in ("FlowFieldGenerator", "PrivacyNetEncoder") and "encoders.0.0.weight" in state:
        arguments.setdefault("init_features", int(state["encoders.0.0.weight"].shape[0]))
        arguments.setdefault("in_channels", int(state["encoders.0.0.weight"].shape[1]))
    model = getattr(networks, name)(**arguments)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"weights do not fit a {name}({arguments}): {str(err).splitlines()[0]}") from None
    return model


def load_network(
    path: str | os.PathLike, network: str | None = None, expected_sha256: str | None = None, **kwargs: Any
) -> tuple[nn.Module, dict[str, Any]]:
    """Load weights from ``path`` into a new network; returns ``(network, meta)``."""
    checkpoint = load_checkpoint(path, expected_sha256=expected_sha256)
    try:
        model = build_network(checkpoint, network=network, **kwargs)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return model, dict(checkpoint.get("meta", {}))


def load_generator(
    path: str | os.PathLike, expected_sha256: str | None = None
) -> tuple[FlowFieldGenerator, dict[str, Any]]:
    """Load a :class:`FlowFieldGenerator` (from our checkpoint, a bundle model.pt or a PriCheXyNet state)."""
    checkpoint = load_checkpoint(path, expected_sha256=expected_sha256)
    try:
        model = build_network(checkpoint, network="FlowFieldGenerator")
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    if not isinstance(model, FlowFieldGenerator):
        raise ValueError(f"{path}: holds a {type(model).__name__}, not a FlowFieldGenerator")
    return model, _generator_state(checkpoint)[1]


def _sidecar_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The set-up in the JSON beside a checkpoint (the bundle's ``model.json`` or a stage summary), if any."""
    info = read_model_json(path)
    meta = info.get("meta", {}) if isinstance(info.get("meta"), dict) else {}
    return {k: v for k, v in {**meta, **info}.items() if k in ("mu", "smoothing", "working_size", "budget_px")}


def _generator_and_setup(path: str | os.PathLike, expected_sha256: str | None) -> tuple[FlowFieldGenerator, dict[str, Any]]:
    """The generator's weights and the set-up recorded for them (state dict / checkpoint meta over the JSON beside)."""
    generator, meta = load_generator(path, expected_sha256=expected_sha256)
    return generator, {**_sidecar_meta(path), **meta}


def load_prichexynet(
    path: str | os.PathLike,
    expected_sha256: str | None = None,
    *,
    mu: float | None = None,
    smoothing: str | None = None,
    working_size: int | tuple[int, int] | None = None,
    budget_px: float | None = None,
    default_working_size: int | None = 256,
) -> PriCheXyNet:
    """The one loader of a PriCheXy-Net: weights, checksum, and the set-up they were trained for.

    The set-up (:class:`~monai_prichexy.networks.DeformationSetup`) is the file's own (its state
    dict's buffers or checkpoint meta, else the JSON beside it); each override that is not None
    replaces one field. Every entry point (``DeformAnonymize``, the CLI, Deploy, the benchmark's
    anonymizers, the bundle's ``initialize``) loads generator weights through here, so the same
    file deforms the same way whatever door it enters by.

    Raises:
        MissingSetupError: neither the file nor the caller says which mu the generator was trained for.
        ChecksumMismatchError, UnsafeCheckpointError: see :func:`load_checkpoint`.
        ValueError: weights that do not fit, or an invalid set-up.
    """
    generator, meta = _generator_and_setup(path, expected_sha256)
    if meta.get("working_size") is None and working_size is None:
        meta["working_size"] = default_working_size
    try:
        setup = DeformationSetup.from_meta(meta, mu=mu, smoothing=smoothing, working_size=working_size,
                                           budget_px=budget_px)
    except KeyError:
        raise MissingSetupError(f"{path}: mu is not recorded with the weights; give mu (which deformation strength "
                                "the generator was trained for)") from None
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return PriCheXyNet.from_setup(generator, setup)


def load_into_prichexynet(
    network: PriCheXyNet, path: str | os.PathLike, expected_sha256: str | None = None
) -> PriCheXyNet:
    """Load generator weights into ``network`` (strict) and take the file's mu, smoothing and working size.

    Used by the bundle's ``initialize``: ``models/model.pt`` may be a PriCheXyNet state dict
    (``generator.*`` and ``mu_value``), a bare generator state dict, or our checkpoint.
    """
    generator, meta = _generator_and_setup(path, expected_sha256)
    try:
        network.generator.load_state_dict(generator.state_dict(), strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit the bundle's network_def: {str(err).splitlines()[0]}") from None
    recorded = {f.name: meta[f.name] for f in dataclasses.fields(DeformationSetup) if f.name in meta}
    try:
        network.setup = dataclasses.replace(network.setup, **recorded)  # what the file says wins; validated
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return network
