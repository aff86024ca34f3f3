"""Table rows from evaluation results: worst-case privacy, utility, change, and learned vs control.

Every figure of a row is in percent (AUCs, P@1, mAP@R) or in pixels. The headline privacy
figure is the worst case over the attackers (the attacker with the highest mean over seeds);
privacy closure and utility retention are computed against the same run's real-image row and
are NaN, with a reason, when the real figure is at or below chance. For a learned row with a
random-deformation control, the paired difference of the per-seed worst-case AUCs (learned
minus control, the same attack seeds) is given with a one-sided sign test (scipy's
``binomtest``): p is the chance of seeing at least that many seeds where the learned field is
lower if it were no better than the control.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..metrics import privacy_closure, utility_retention
from ..metrics.summary import AT_OR_BELOW_CHANCE

__all__ = ["PAPER_TABLE1", "PAPER_POINT", "summary_row", "summarise", "closure", "retention", "paired_difference"]

#: Packhäuser et al., MICCAI 2023, Table 1 (ChestX-ray14, 256 px): verification AUC % mean +- std
#: over 10 attacks; classification mean AUC % [95 % CI] where given.
PAPER_TABLE1: dict[str, dict[str, Any]] = {
    "real": {"ver": 81.8, "ver_std": 0.6, "cls": 80.5, "cls_ci": [80.1, 80.9]},
    "privacy_net": {"ver": 49.8, "ver_std": 2.2, "cls": 57.5},
    "prichexy_mu0.001": {"ver": 74.7, "ver_std": 2.6, "cls": 80.4},
    "prichexy_mu0.005": {"ver": 64.3, "ver_std": 5.8, "cls": 79.3},
    "prichexy_mu0.01": {"ver": 57.7, "ver_std": 4.0, "cls": 76.2, "cls_ci": [75.8, 76.6]},
    "dppix_b1": {"ver": 50.0, "cls": 50.0},
    "dppix_b2": {"ver": 50.4, "cls": 50.3},
    "dppix_b4": {"ver": 51.8, "cls": 52.7},
    "dppix_b8": {"ver": 52.5, "cls": 52.9},
}

#: the paper's mu = 0.01 point: privacy closure and utility retention against its own Siamese attacker
PAPER_POINT = {"closure": (81.8 - 57.7) / (81.8 - 50.0), "retention": (76.2 - 50.0) / (80.5 - 50.0)}


def _pct(v: Any) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else 100.0 * float(v)


def _ratio(fn, real: float | None, anon: float | None) -> tuple[float, str | None]:
    """A closure / retention from :mod:`monai_prichexy.metrics.summary`, with the reason when it is undefined."""
    if real is None or anon is None:
        return float("nan"), "missing value"
    if real <= 50.0:
        return float("nan"), AT_OR_BELOW_CHANCE
    return fn(real, anon), None


def closure(real: float | None, anon: float | None) -> tuple[float, str | None]:
    """Privacy closure (percent inputs) and why it is NaN, if it is (:func:`~monai_prichexy.metrics.privacy_closure`)."""
    return _ratio(privacy_closure, real, anon)


def retention(real: float | None, anon: float | None) -> tuple[float, str | None]:
    """Utility retention (percent inputs) and why it is NaN, if it is (:func:`~monai_prichexy.metrics.utility_retention`)."""
    return _ratio(utility_retention, real, anon)


def paired_difference(learned: Mapping[str, Any], control: Mapping[str, Any], key: str = "auc_pair") -> dict[str, Any]:
    """Per-seed worst-case ``key`` of a learned row minus its control's, with a one-sided sign test."""
    from scipy.stats import binomtest

    a = {int(r["seed"]): float(r[key]) for r in learned["privacy"]["per_seed"]}
    b = {int(r["seed"]): float(r[key]) for r in control["privacy"]["per_seed"]}
    seeds = sorted(set(a) & set(b))
    diff = np.array([a[s] - b[s] for s in seeds]) * 100.0
    lower, higher = int((diff < 0).sum()), int((diff > 0).sum())
    n = lower + higher
    p = float(binomtest(lower, n, 0.5, alternative="greater").pvalue) if n else float("nan")
    return {
        "key": key,
        "seeds": seeds,
        "delta_per_seed": diff.tolist(),
        "delta_mean": float(diff.mean()) if diff.size else float("nan"),
        "n_lower": lower,
        "n_higher": higher,
        "sign_test_p": p,
        "lower_in_every_seed": bool(diff.size and lower == diff.size),
    }


def _attacker_figures(privacy: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
    out = {}
    for name, res in (privacy.get("attackers") or {}).items():
        out[name] = {
            "ver_pair_mean": _pct(res["auc_pair"]["mean"]),
            "ver_pair_std": _pct(res["auc_pair"]["std"]),
            "ver_patient_mean": _pct(res["auc_patient"]["mean"]),
            "ver_patient_std": _pct(res["auc_patient"]["std"]),
            "p_at_1_mean": _pct(res["precision_at_1"]["mean"]),
            "map_at_r_mean": _pct(res["map_at_r"]["mean"]),
        }
    return out


def _displacement(disp: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not disp:
        return None
    inner = disp["interior"]
    return {
        "mean_px_256": inner["mean_px_256"],
        "p99_px_256": inner["p99_px_256"],
        "max_px_256": inner["max_px_256"],
        "mean_px_working": inner["mean_px_working"],
        "p99_px_working": inner["p99_px_working"],
        "mean_fraction_of_side": inner["mean_fraction_of_side"],
        "p99_fraction_of_side": inner["p99_fraction_of_side"],
        "working_size": disp["working_size"],
        "frame_share": disp["frame_share"],
        "fold_share": disp["fold_share"],
        "whole_image_p99_px_256": disp["whole_image"]["p99_px_256"],
    }


def summary_row(row: str, result: Mapping[str, Any], info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One table row (percent) from an :func:`~monai_prichexy.engines.evaluate_anonymizer` result."""
    priv, util = result["privacy"], result["utility"]
    worst = priv.get("worst_case") or priv
    change = result.get("image_change") or {}
    out: dict[str, Any] = {
        "row": row,
        "method": (info or {}).get("method") or label(row),
        "kind": (result.get("anonymizer") or {}).get("kind", "none"),
        "ver_pair_mean": _pct(worst["auc_pair"]["mean"]),
        "ver_pair_std": _pct(worst["auc_pair"]["std"]),
        "ver_pair_attacker": worst["auc_pair"].get("attacker"),
        "ver_patient_mean": _pct(worst["auc_patient"]["mean"]),
        "ver_patient_std": _pct(worst["auc_patient"]["std"]),
        "ver_patient_attacker": worst["auc_patient"].get("attacker"),
        "p_at_1_mean": _pct(worst["precision_at_1"]["mean"]),
        "p_at_1_std": _pct(worst["precision_at_1"]["std"]),
        "p_at_1_attacker": worst["precision_at_1"].get("attacker"),
        "map_at_r_mean": _pct(worst["map_at_r"]["mean"]),
        "map_at_r_std": _pct(worst["map_at_r"]["std"]),
        "attackers": _attacker_figures(priv),
        "n_attack_seeds": len(priv["per_seed"]),
        "binary_name": util.get("binary_name"),
        "util_binary": _pct(util.get("binary_auc")),
        "util_binary_ci": [_pct(v) for v in util["binary_ci"]] if util.get("binary_ci") else None,
        "util_binary_chance": util.get("binary_within_chance"),
        "util_mean": _pct(util.get("mean_auc")),
        "util_mean_ci": [_pct(v) for v in util["mean_auc_ci"]] if util.get("mean_auc_ci") else None,
        "util_mean_chance": util.get("mean_auc_within_chance"),
        "classes_absent": util.get("classes_absent", []),
        "ssim": change.get("ssim_mean"),
        "mean_abs_change": change.get("mean_abs_change"),
        "displacement": _displacement(result.get("displacement")),
        "paper": PAPER_TABLE1.get(row),
    }
    for key, value in (info or {}).items():
        if key not in ("method", "displacement_val"):
            out[key] = value
    return out


def summarise(rows: Sequence[tuple[str, Any, Mapping[str, Any]]], results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Table rows in order, with closure / retention against the real row and learned-vs-control tests."""
    out = [summary_row(name, results[name], info) for name, _, info in rows]
    real = next((r for r in out if r["row"] == "real"), None)
    by_name = {r["row"]: r for r in out}
    for r in out:
        if real is not None:
            r["closure_pair"], reason = closure(real["ver_pair_mean"], r["ver_pair_mean"])
            r["closure_patient"], _ = closure(real["ver_patient_mean"], r["ver_patient_mean"])
            r["retention_binary"], util_reason = retention(real["util_binary"], r["util_binary"])
            r["retention_mean"], _ = retention(real["util_mean"], r["util_mean"])
            r["closure_reason"], r["retention_reason"] = reason, util_reason
        matched = r.get("matched_to")
        if matched in by_name:
            by_name[matched]["control"] = r["row"]
            by_name[matched]["vs_control"] = paired_difference(results[matched], results[r["row"]], "auc_pair")
            by_name[matched]["vs_control_patient"] = paired_difference(results[matched], results[r["row"]], "auc_patient")
    return out


_LABELS = {"real": "real images", "privacy_net": "Privacy-Net"}


def label(row: str) -> str:
    """A readable method name for a row name."""
    if row in _LABELS:
        return _LABELS[row]
    if row.startswith("prichexy_mu"):
        return f"PriCheXy-Net mu={row[len('prichexy_mu'):]}"
    if row.startswith("ensemble_b"):
        return f"learned vs ensemble, budget {row[len('ensemble_b'):]} px"
    if row.startswith("dppix_b"):
        return f"DP-Pix b={row[len('dppix_b'):]}"
    if row.startswith("blur_s"):
        return f"Gaussian blur sigma={row[len('blur_s'):]} px"
    if row.startswith("random_deformation_"):
        return f"random warp (as {label(row[len('random_deformation_'):])})"
    return row
