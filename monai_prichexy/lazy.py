"""Lazy package exports (PEP 562): a package's names are imported from their module on first use.

The CLI's path (walk, read, deform, write) must not import MONAI and the training engines just
because ``monai_prichexy.networks`` or ``monai_prichexy.transforms`` also export classes built on
them: importing MONAI costs seconds of start-up per run (issue 12). A package lists where each
public name lives; ``from package import Name`` and ``package.Name`` work as before.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, names: Mapping[str, str], namespace: dict) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public ``names`` map to their module
    (relative to ``package``, e.g. ``".view"``); an imported name is cached in ``namespace``."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
