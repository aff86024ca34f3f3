"""Normalised summary figures and table helpers for privacy-utility results.

Packhäuser et al., MICCAI 2023 report verification AUC (privacy, lower is better) and mean
classification AUC (utility, higher is better). Two normalised figures make results
comparable across data sets of different difficulty, both with 0.5 (50 %) as chance:

- privacy closure ``(Ver_real - Ver_anon) / (Ver_real - 50)``: share of the gap between the
  real-image attack and chance that anonymization closes (1 = attacker at chance);
- utility retention ``(Cls_anon - 50) / (Cls_real - 50)``: share of the classifier's
  above-chance AUC kept on anonymized images (1 = nothing lost).

Inputs are percentages by default (the paper's unit, e.g. 81.8); pass ``percent=False`` to
give fractions (0.818). Both inputs of one call must use the same unit.

Both figures are undefined when the real-image AUC is at or below chance: there is no gap to
close and no utility to retain, and the ratio's sign flips (a real AUC of 44.9 would turn a
*better* anonymized AUC into a negative retention). They then return NaN with a warning that
names the reason (:data:`AT_OR_BELOW_CHANCE`); tables print it as ``n/a`` with a note.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .verification import _as_numpy

__all__ = ["AT_OR_BELOW_CHANCE", "privacy_closure", "utility_retention", "mean_std", "SummaryRow"]

#: why a closure or retention is NaN (the words tables use in their note)
AT_OR_BELOW_CHANCE = "real-image AUC at or below chance"


def _chance(values: tuple[float, ...], percent: bool) -> float:
    for v in values:
        if not math.isfinite(v):
            raise ValueError(f"AUC values must be finite, got {v}.")
        if percent and not 0.0 <= v <= 100.0:
            raise ValueError(f"AUC in percent must be in [0, 100], got {v}.")
        if not percent and not 0.0 <= v <= 1.0:
            raise ValueError(f"AUC as a fraction must be in [0, 1], got {v} (did you mean percent=True?).")
    if percent and all(v <= 1.0 for v in values):
        warnings.warn(
            f"all AUCs {values} are <= 1 although percent=True; pass percent=False for fractions.", stacklevel=3
        )
    return 50.0 if percent else 0.5


def _undefined(name: str, what: str, real: float, chance: float) -> float:
    warnings.warn(
        f"{name} is undefined (NaN): {AT_OR_BELOW_CHANCE} (real-image {what} AUC {real:g} <= {chance:g}).",
        UserWarning,
        stacklevel=3,
    )
    return float("nan")


def privacy_closure(ver_real: float, ver_anon: float, percent: bool = True) -> float:
    """Privacy closure ``(Ver_real - Ver_anon) / (Ver_real - 50)``.

    Paper (MICCAI 2023, Table 1), mu = 0.01: ``privacy_closure(81.8, 57.7) = 0.758``.

    Args:
        ver_real: verification AUC of the attack on real images.
        ver_anon: verification AUC of the attack on anonymized images.
        percent: inputs in percent (default) or, with ``False``, fractions.

    Returns:
        The closure (1 = chance, 0 = no privacy gained, > 1 = below chance); NaN, with a
        warning, when ``ver_real`` is at or below chance (no re-identification to close).

    Raises:
        ValueError: values out of range.
    """
    chance = _chance((float(ver_real), float(ver_anon)), percent)
    if float(ver_real) <= chance:
        return _undefined("privacy closure", "verification", float(ver_real), chance)
    return (float(ver_real) - float(ver_anon)) / (float(ver_real) - chance)


def utility_retention(cls_real: float, cls_anon: float, percent: bool = True) -> float:
    """Utility retention ``(Cls_anon - 50) / (Cls_real - 50)``.

    Paper (MICCAI 2023, Table 1), mu = 0.01: ``utility_retention(80.5, 76.2) = 0.859``.

    Args:
        cls_real: mean classification AUC on real images.
        cls_anon: mean classification AUC of the same classifier on anonymized images.
        percent: inputs in percent (default) or, with ``False``, fractions.

    Returns:
        The retention (1 = all utility kept, 0 = chance); NaN, with a warning, when
        ``cls_real`` is at or below chance (no utility to retain).

    Raises:
        ValueError: values out of range.
    """
    chance = _chance((float(cls_real), float(cls_anon)), percent)
    if float(cls_real) <= chance:
        return _undefined("utility retention", "classification", float(cls_real), chance)
    return (float(cls_anon) - chance) / (float(cls_real) - chance)


def mean_std(values: Iterable[float] | np.ndarray, ddof: int = 1) -> tuple[float, float]:
    """Mean and standard deviation, e.g. of the verification AUCs of repeated attacks.

    The paper reports mean +- std over 10 attacks with different seeds. The default
    ``ddof=1`` gives the sample standard deviation; with fewer than ``ddof + 1`` values the
    std is NaN.

    Args:
        values: 1-D values (list, numpy array or torch tensor).
        ddof: delta degrees of freedom of the std.

    Returns:
        ``(mean, std)``.
    """
    if not hasattr(values, "shape"):
        values = list(values)
    arr = np.asarray(_as_numpy(values, "values"), dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"mean_std expects 1-D values, got shape {tuple(arr.shape)}.")
    if arr.size == 0:
        raise ValueError("mean_std needs at least one value.")
    std = float(np.std(arr, ddof=ddof)) if arr.size > ddof else float("nan")
    return float(np.mean(arr)), std


def _fmt(v: float | None, digits: int) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _fmt_ratio(v: float | None) -> str:
    """A closure / retention: NaN (undefined, see :data:`AT_OR_BELOW_CHANCE`) prints as ``n/a``."""
    return "n/a" if v is not None and math.isnan(v) else _fmt(v, 2)


@dataclass
class SummaryRow:
    """One row of a privacy-utility table (values in percent, as in the paper's Table 1).

    Attributes:
        name: the method, e.g. ``"PriCheXy-Net mu=0.01"``.
        ver_mean: mean verification AUC over repeated attacks.
        ver_std: its std.
        cls_mean: mean classification AUC.
        cls_ci: its bootstrap CI.
        any_auc: "any finding vs No Finding" AUC.
        any_ci: its bootstrap CI.
        closure: privacy closure against the real-image row.
        retention: utility retention against the real-image row.
    """

    name: str
    ver_mean: float | None = None
    ver_std: float | None = None
    cls_mean: float | None = None
    cls_ci: tuple[float, float] | None = None
    any_auc: float | None = None
    any_ci: tuple[float, float] | None = None
    closure: float | None = None
    retention: float | None = None

    @staticmethod
    def header() -> str:
        """Markdown header matching :meth:`to_markdown`."""
        return (
            "| method | verification AUC % | classification AUC % [CI] | any-finding AUC % [CI] "
            "| privacy closure | utility retention |\n|---|---|---|---|---|---|"
        )

    def to_markdown(self, digits: int = 1) -> str:
        """The row as a markdown table line."""

        def with_ci(v: float | None, ci: tuple[float, float] | None) -> str:
            s = _fmt(v, digits)
            return s if ci is None else f"{s} [{_fmt(ci[0], digits)}, {_fmt(ci[1], digits)}]"

        ver = _fmt(self.ver_mean, digits)
        if self.ver_std is not None and math.isfinite(self.ver_std):
            ver += f" +- {_fmt(self.ver_std, digits)}"
        return (
            f"| {self.name} | {ver} | {with_ci(self.cls_mean, self.cls_ci)} | {with_ci(self.any_auc, self.any_ci)} "
            f"| {_fmt_ratio(self.closure)} | {_fmt_ratio(self.retention)} |"
        )

    @staticmethod
    def note(rows: Iterable[SummaryRow]) -> str:
        """The table note explaining ``n/a`` cells ("" when there are none)."""
        if any(v is not None and math.isnan(v) for r in rows for v in (r.closure, r.retention)):
            return f"n/a: undefined, {AT_OR_BELOW_CHANCE} (no gap to close or utility to retain)."
        return ""
