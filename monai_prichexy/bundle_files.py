"""The MONAI bundle's files: where they are, what ``metadata.json`` and ``model.json`` record.

One owner for ``models/model.pt`` (and the shipped attack networks) -- found in the bundle, with
the SHA-256 that ``configs/metadata.json`` records for each and that every loader checks -- for
reading ``model.json`` beside a checkpoint (its set-up and measured record; the exporter,
:func:`monai_prichexy.engines.handlers.export_bundle_model`, writes it) and for writing a
SHA-256 into ``metadata.json``. The default generator is the bundle's ``models/model.pt``. An installed
wheel carries the bundle's weights and configs as package data (``monai_prichexy/_bundle/``,
copied by ``setup.py`` at build time); a source checkout or an editable install uses the
repository's ``bundle/``. Needs neither torch nor MONAI.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import monai_prichexy

from .atomic import atomic_write_bytes

__all__ = [
    "WeightsNotFoundError",
    "TRAIN_HINT",
    "bundle_root",
    "default_weights_path",
    "metadata_path",
    "sha256_from_metadata",
    "record_sha256",
    "read_model_json",
    "resolve_weights",
    "ATTACK_NETWORKS",
    "shipped_network",
    "measured_statement",
]

TRAIN_HINT = (
    "train them with `python -m monai.bundle run --config_file bundle/configs/train.json` "
    "(see bundle/docs/README.md), or pass --weights PATH to a generator checkpoint"
)
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class WeightsNotFoundError(FileNotFoundError):
    """No generator weights where they were expected."""


def bundle_root() -> Path:
    """The packaged ``_bundle/`` of a wheel when it holds the weights, else the checkout's ``bundle/``."""
    package = Path(monai_prichexy.__file__).resolve().parent
    packaged = package / "_bundle"
    if (packaged / "models" / "model.pt").is_file():
        return packaged
    return package.parent / "bundle"


def default_weights_path() -> Path:
    return bundle_root() / "models" / "model.pt"


def metadata_path(checkpoint: str | os.PathLike) -> Path:
    """The ``configs/metadata.json`` of the bundle whose ``models/`` holds ``checkpoint``."""
    return Path(checkpoint).resolve().parent.parent / "configs" / "metadata.json"


def read_model_json(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """The JSON beside a checkpoint (the bundle's ``model.json``, a stage summary); {} when absent or unreadable."""
    sidecar = Path(checkpoint).with_suffix(".json")
    try:
        info = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def record_sha256(metadata: str | os.PathLike, sha: str, key: str = "model_sha256") -> None:
    """Set ``key`` (e.g. ``model_sha256``) in a bundle's ``metadata.json`` (rewritten atomically, 4-space JSON)."""
    path = Path(metadata)
    record = json.loads(path.read_text(encoding="utf-8"))
    record[key] = sha
    atomic_write_bytes(path, (json.dumps(record, indent=4, ensure_ascii=False) + "\n").encode("utf-8"))


def _candidates(node: Any, trail: tuple[str, ...] = ()):
    """(key trail, value) for every 64-hex string under a key that mentions sha256."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _candidates(value, trail + (str(key),))
    elif isinstance(node, str) and _HEX64.match(node) and any("sha256" in k.lower() for k in trail):
        yield trail, node.lower()


def sha256_from_metadata(metadata_path: str | os.PathLike, weights_name: str = "model.pt") -> str | None:
    """The SHA-256 a bundle's ``metadata.json`` records for ``weights_name``, or None.

    Any key containing ``sha256`` whose value is 64 hex digits counts (e.g. ``"model_sha256"``,
    ``{"sha256": {"model.pt": ...}}``, ``{"models": {"model.pt": {"sha256": ...}}}``). With
    several, the one whose key trail names ``weights_name`` (or its stem, or "model") wins;
    ambiguity returns None rather than a wrong checksum.
    """
    path = Path(metadata_path)
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    found = list(_candidates(meta))
    if not found:
        return None
    if len({value for _, value in found}) == 1:
        return found[0][1]
    stem = Path(weights_name).stem.lower()
    for preference in (weights_name.lower(), stem, "model"):
        hits = {v for trail, v in found if any(preference == t.lower() or t.lower().startswith(preference + "_") for t in trail)}
        if len(hits) == 1:
            return hits.pop()
    return None


def resolve_weights(weights: str | os.PathLike | None = None, sha256: str | None = None) -> tuple[Path, str | None]:
    """``(weights path, expected SHA-256 or None)`` for the pipeline.

    Raises:
        WeightsNotFoundError: the file does not exist (the message says how to train it).
        ValueError: ``sha256`` is not 64 hex digits.
    """
    if sha256 is not None and not _HEX64.match(sha256.strip()):
        raise ValueError(f"--weights-sha256 must be 64 hex digits, got {sha256!r}")
    if weights is None:
        path = default_weights_path()
        if not path.is_file():
            raise WeightsNotFoundError(f"no generator weights: {path} does not exist; {TRAIN_HINT}")
    else:
        path = Path(weights)
        if not path.is_file():
            raise WeightsNotFoundError(f"no generator weights at {path}; {TRAIN_HINT}")
    expected = sha256.strip().lower() if sha256 else None
    if expected is None:
        expected = sha256_from_metadata(metadata_path(path), path.name)
    return path, expected


#: the trained networks that ship beside the generator (``scripts/train_attack_networks.py``)
ATTACK_NETWORKS: dict[str, str] = {"verifier": "verifier.pt", "metric": "metric.pt", "classifier": "classifier.pt"}


def shipped_network(name: str) -> tuple[Path, str | None]:
    """``(path, expected SHA-256)`` of one of :data:`ATTACK_NETWORKS` in the bundle.

    Raises:
        WeightsNotFoundError: the bundle does not hold it.
    """
    if name not in ATTACK_NETWORKS:
        raise ValueError(f"unknown shipped network {name!r}; expected one of {sorted(ATTACK_NETWORKS)}")
    path = bundle_root() / "models" / ATTACK_NETWORKS[name]
    if not path.is_file():
        raise WeightsNotFoundError(f"no shipped {name}: {path} does not exist; train it with "
                                   "`python scripts/train_attack_networks.py` or pass its checkpoint")
    return path, sha256_from_metadata(bundle_root() / "configs" / "metadata.json", path.name)


def measured_statement(weights: str | os.PathLike) -> str:
    """What the weights were measured to do: the ``measured.verdict`` of the ``.json`` beside them.

    ``scripts/ship_model.py`` writes it from benchmark runs (privacy under every attacker beside a
    random warp of the same displacement, utility retention); without it, say that nothing is known.
    """
    try:
        statement = read_model_json(weights)["measured"]["verdict"]
    except (KeyError, TypeError):
        statement = None
    if not isinstance(statement, str) or not statement.strip():
        return "no measured privacy on record for these weights: do not rely on the pixel deformation to hide identity"
    return statement.strip()
