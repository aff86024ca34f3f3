"""Settings of the MONAI Deploy application that do not need the SDK.

The input folder, output folder and model path come from the SDK itself (``-i/-o/-m`` or
``HOLOSCAN_INPUT_PATH`` / ``HOLOSCAN_OUTPUT_PATH`` / ``HOLOSCAN_MODEL_PATH``). The options of
this application are read here, each from a command-line argument or, when that is absent,
an environment variable:

=================  ==========================  ==================================================
argument           environment variable        meaning
=================  ==========================  ==================================================
``--mu``           ``PRICHEXY_MU``             deformation strength (default: the checkpoint's)
``--key-file``     ``PRICHEXY_DEID_KEY_FILE``  hex key for UID remapping / pseudonyms (created,
                                               mode 0600, when missing); none: a random key per
                                               run, so UIDs differ between runs
``--dates``        ``PRICHEXY_DATES``          ``remove`` (default) or ``shift`` (113107)
``--device``       ``PRICHEXY_DEVICE``         ``auto``, ``cpu``, ``cuda``, ... (default: cuda if present)
``--weights-sha256`` ``PRICHEXY_MODEL_SHA256`` refuse a checkpoint with another SHA-256
(alias ``--model-sha256``)
=================  ==========================  ==================================================

The options are ``monai-prichexy anonymize``'s own definitions (:mod:`monai_prichexy.options`):
the same flag means the same thing in both doors.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..options import (add_dates_argument, add_deformation_arguments, add_device_argument, add_key_file_argument,
                       add_weights_sha256_argument)

__all__ = [
    "RADIOGRAPH_MODALITIES",
    "RADIOGRAPH_SELECTION_RULES",
    "MODEL_SUFFIXES",
    "DeployOptions",
    "split_argv",
    "resolve_model_file",
]

logger = logging.getLogger(__name__)

#: modalities of the series the application anonymizes (DR is not a DICOM defined term but
#: some vendors write it for digital radiography)
RADIOGRAPH_MODALITIES = ("CR", "DX", "DR")

#: rules for the SDK's ``DICOMSeriesSelectorOperator`` (used with ``all_matched=True``)
RADIOGRAPH_SELECTION_RULES = json.dumps(
    {
        "selections": [
            {
                "name": "radiograph",
                "conditions": {"Modality": "(?i)^(" + "|".join(RADIOGRAPH_MODALITIES) + ")$"},
            }
        ]
    }
)

#: suffixes of checkpoint files looked for in a model folder
MODEL_SUFFIXES = (".pt", ".pth")

_ENV = {
    "mu": "PRICHEXY_MU",
    "key_file": "PRICHEXY_DEID_KEY_FILE",
    "dates": "PRICHEXY_DATES",
    "device": "PRICHEXY_DEVICE",
    "weights_sha256": "PRICHEXY_MODEL_SHA256",
}


@dataclass(frozen=True)
class DeployOptions:
    """Options of the application (see the module docstring)."""

    mu: float | None = None
    key_file: str | None = None
    dates: str = "remove"
    device: str | None = None
    weights_sha256: str | None = None

    def __post_init__(self) -> None:
        if self.mu is not None and not 0 <= float(self.mu) <= 1:
            raise ValueError(f"mu must be in [0, 1], got {self.mu}")
        if self.dates not in ("remove", "shift"):
            raise ValueError(f"dates must be 'remove' or 'shift', got {self.dates!r}")

    @staticmethod
    def parser() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(add_help=False)
        add_deformation_arguments(parser, mu_only=True)
        add_key_file_argument(parser, "de-identification key file (hex; created, mode 0600, when missing)")
        add_dates_argument(parser, default=None)  # None: PRICHEXY_DATES, else remove
        add_device_argument(parser, default=None)  # None: PRICHEXY_DEVICE, else auto
        add_weights_sha256_argument(parser, "--model-sha256")
        return parser

    @classmethod
    def from_args(
        cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> tuple[DeployOptions, list[str]]:
        """Options from ``argv`` (without the program name) and ``environ``; returns the rest of ``argv``."""
        environ = os.environ if environ is None else environ
        known, rest = cls.parser().parse_known_args(list(argv or []))
        values = {}
        for name, env in _ENV.items():
            value = getattr(known, name)
            if value is None and environ.get(env, "").strip():
                value = environ[env].strip()
            if value is not None:
                values[name] = value
        if "mu" in values:
            try:
                values["mu"] = float(values["mu"])
            except ValueError:
                raise ValueError(f"mu must be a number, got {values['mu']!r}") from None
        return cls(**values), rest


def split_argv(argv: Sequence[str]) -> tuple[DeployOptions, list[str]]:
    """Split a full ``argv`` (program name first) into our options and the SDK's ``argv``."""
    argv = list(argv)
    options, rest = DeployOptions.from_args(argv[1:])
    return options, argv[:1] + rest


def resolve_model_file(path: str | os.PathLike) -> Path:
    """The checkpoint file named by the SDK's model path.

    A file is taken as it is. In a folder (``-m models/`` locally, ``/opt/holoscan/models`` in
    a MAP, where the packager puts each model in a subfolder) the checkpoint is the only
    ``*.pt`` / ``*.pth`` file found at any depth, or else the only one named ``model.pt``.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"model path {path} does not exist (set -m or HOLOSCAN_MODEL_PATH)")
    found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES)
    if len(found) == 1:
        return found[0]
    named = [p for p in found if p.name == "model.pt"]
    if len(named) == 1:
        return named[0]
    if not found:
        raise FileNotFoundError(f"no model file ({', '.join(MODEL_SUFFIXES)}) in {path}")
    names = ", ".join(str(p.relative_to(path)) for p in found[:8])
    raise ValueError(f"several model files in {path} ({names}); pass the file itself with -m")
