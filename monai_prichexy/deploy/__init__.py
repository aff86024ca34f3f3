"""MONAI Deploy App SDK application of PriCheXy-Net (optional extra ``deploy``).

Importing this package does not import the SDK (which changes ``import monai``); the names
below are loaded on first use and need ``pip install "monai-prichexy[deploy]"``. Run the
application with ``python -m monai_prichexy.deploy -i IN -o OUT -m MODEL``; see
``docs/deploy.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

from .options import RADIOGRAPH_MODALITIES, RADIOGRAPH_SELECTION_RULES, DeployOptions, resolve_model_file

__all__ = [
    "PriCheXyAnonymizerApp",
    "main",
    "RadiographAnonymizeOperator",
    "DeidentifiedDICOMWriterOperator",
    "AnonymizationBatch",
    "AnonymizedInstance",
    "DeployOptions",
    "RADIOGRAPH_MODALITIES",
    "RADIOGRAPH_SELECTION_RULES",
    "resolve_model_file",
]

_LAZY = {
    "PriCheXyAnonymizerApp": ".app",
    "main": ".app",
    "RadiographAnonymizeOperator": ".operators",
    "DeidentifiedDICOMWriterOperator": ".operators",
    "AnonymizationBatch": ".operators",
    "AnonymizedInstance": ".operators",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(module, __name__), name)
    except ImportError as err:
        raise ImportError(
            f"monai_prichexy.deploy.{name} needs the MONAI Deploy App SDK: pip install 'monai-prichexy[deploy]' ({err})"
        ) from err
