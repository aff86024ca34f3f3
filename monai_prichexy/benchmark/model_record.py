"""What a shipped model was measured to do, as a record for its ``model.json`` and a plain verdict.

A released generator must not be called protective without its measured numbers beside a
random warp of the same displacement (issue 11, item 6). :func:`measured_record` takes one
learned row of a benchmark run (``benchmark.json``) with its matched random-warp row and keeps
what a steward needs: the worst-case attacker and every attacker's verification AUC, the same
for the control, privacy closure, utility retention, displacement. :func:`verdict` turns the
records of every data set into one sentence, which the CLI prints after a run and the model
card repeats. The bar is the one issue 11 sets: worst-case privacy closure >= 0.5 at utility
retention >= 0.95, with the learned field below its random control in every attack seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CLOSURE_BAR", "RETENTION_BAR", "measured_record", "records_markdown", "verdict"]

#: worst-case privacy closure a protective model must reach (issue 11, goal)
CLOSURE_BAR = 0.5
#: utility retention it must keep at the same time
RETENTION_BAR = 0.95


def _finite(value: Any) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def _rounded(value: Any, digits: int = 1) -> float | None:
    value = _finite(value)
    return None if value is None else round(value, digits)


def _privacy(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "worst_case_auc_pct": _rounded(row["ver_pair_mean"]),
        "worst_case_auc_std_pct": _rounded(row["ver_pair_std"]),
        "worst_case_attacker": row.get("ver_pair_attacker"),
        "worst_case_p_at_1_pct": _rounded(row.get("p_at_1_mean")),
        "auc_pct_by_attacker": {name: _rounded(fig["ver_pair_mean"]) for name, fig in (row.get("attackers") or {}).items()},
    }


def measured_record(payload: Mapping[str, Any], row: str) -> dict[str, Any]:
    """The measured standing of learned ``row`` in a benchmark ``payload`` (``benchmark.json``).

    Raises:
        KeyError: the row, the real row or the row's random-warp control is missing.
    """
    rows = {r["row"]: r for r in payload["rows"]}
    if row not in rows:
        raise KeyError(f"row {row!r} is not in this benchmark (rows: {sorted(rows)})")
    learned, real = rows[row], rows.get("real")
    control = rows.get(learned.get("control") or "")
    if real is None or control is None:
        raise KeyError(f"row {row!r} needs the real row and its random-warp control in the same benchmark")
    data, attack = payload["data"], payload["config"]["stages"]["attack"]
    vs = learned.get("vs_control") or {}
    disp = learned.get("displacement") or {}
    return {
        "dataset": data["dataset"],
        "image_size": data["image_size"],
        "test_images": data["split_sizes"].get("test"),
        "attack_seeds": list(attack["seeds"]),
        "row": row,
        "real": _privacy(real),
        "model": _privacy(learned),
        "random_warp": _privacy(control),
        "privacy_closure": _rounded(learned.get("closure_pair"), 3),
        "random_warp_closure": _rounded(control.get("closure_pair"), 3),
        "learned_minus_random_warp_auc_points": _rounded(vs.get("delta_mean"), 2),
        "seeds_learned_below_random_warp": f"{vs.get('n_lower', 0)}/{len(vs.get('seeds', []))}",
        "utility": {
            "name": learned.get("binary_name"),
            "real_auc_pct": _rounded(real.get("util_binary")),
            "model_auc_pct": _rounded(learned.get("util_binary")),
            "retention": _rounded(learned.get("retention_binary"), 3),
        },
        "displacement_px_at_256": {
            "mean": _rounded(disp.get("mean_px_256"), 3),
            "p99": _rounded(disp.get("p99_px_256"), 3),
            "max": _rounded(disp.get("max_px_256"), 3),
            "folded_share": disp.get("fold_share"),
        },
        "ssim": _rounded(learned.get("ssim"), 4),
    }


def _protective(record: Mapping[str, Any]) -> bool:
    closure = _finite(record.get("privacy_closure"))
    retention = _finite(record["utility"].get("retention"))
    lower, _, total = str(record.get("seeds_learned_below_random_warp", "0/0")).partition("/")
    return (closure is not None and closure >= CLOSURE_BAR and retention is not None and retention >= RETENTION_BAR
            and int(total or 0) > 0 and lower == total)


def verdict(records: Sequence[Mapping[str, Any]]) -> str:
    """One plain sentence on what the measurements in ``records`` (one per data set) show."""
    if not records:
        return "no measured privacy on record for these weights: do not rely on the pixel deformation"
    parts = []
    for r in records:
        parts.append(
            f"{r['dataset']} ({r['image_size']} px): worst-case re-identification AUC "
            f"{r['model']['worst_case_auc_pct']} % ({r['model']['worst_case_attacker']} attacker) vs "
            f"{r['real']['worst_case_auc_pct']} % on unaltered images and {r['random_warp']['worst_case_auc_pct']} % "
            f"for a random warp of the same size; {r['utility']['name']} AUC retention {r['utility']['retention']}")
    if all(_protective(r) for r in records):
        head = (f"measured protective: privacy closure >= {CLOSURE_BAR} at retention >= {RETENTION_BAR}, "
                "below a random warp in every attack seed")
    else:
        head = ("NOT measured protective: the pixel deformation does not hide patient identity better than a random "
                f"warp of the same size (bar: privacy closure >= {CLOSURE_BAR} at retention >= {RETENTION_BAR}); "
                "the header de-identification still applies")
    return head + ". " + "; ".join(parts) + "."


def records_markdown(records: Sequence[Mapping[str, Any]]) -> str:
    """The records as a model-card table: per data set, unaltered / model / random warp, every attacker."""
    attackers = sorted({name for r in records for name in r["model"]["auc_pct_by_attacker"]})
    head = ("| data set | row | worst-case AUC % (attacker) | " + " | ".join(f"{a} AUC %" for a in attackers)
            + " | worst-case P@1 % | privacy closure | utility AUC % (retention) | displacement mean / p99 / max px at 256 | SSIM |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in records:
        d = r["displacement_px_at_256"]
        for label, key in (("unaltered", "real"), ("**model**", "model"), ("random warp, same displacement", "random_warp")):
            p = r[key]
            cells = [f"{r['dataset']} ({r['image_size']} px, seeds {r['attack_seeds'][0]}-{r['attack_seeds'][-1]})",
                     label, f"{p['worst_case_auc_pct']} ± {p['worst_case_auc_std_pct']} ({p['worst_case_attacker']})"]
            cells += [str(p["auc_pct_by_attacker"].get(a)) for a in attackers]
            cells.append(str(p["worst_case_p_at_1_pct"]))
            if key == "model":
                cells += [f"{r['privacy_closure']} (random warp: {r['random_warp_closure']}; learned below it in "
                          f"{r['seeds_learned_below_random_warp']} seeds)",
                          f"{r['utility']['model_auc_pct']} ({r['utility']['retention']}; real {r['utility']['real_auc_pct']})",
                          f"{d['mean']} / {d['p99']} / {d['max']}", str(r.get("ssim"))]
            elif key == "real":
                cells += ["-", f"{r['utility']['real_auc_pct']} ({r['utility']['name']})", "-", "1.0"]
            else:
                cells += [str(r["random_warp_closure"]), "-", "-", "-"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
