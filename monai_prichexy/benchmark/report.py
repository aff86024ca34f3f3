"""The benchmark's Markdown tables, its privacy-utility plot, and the README section they fill.

Everything here is rendered from ``benchmark.json`` alone, so a table in the README can always
be regenerated from the run that measured it (``monai-prichexy benchmark --render``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .summary import PAPER_POINT

__all__ = ["markdown_tables", "plot_frontier", "update_readme_section"]


def _f(v: Any, digits: int = 1) -> str:
    return "-" if v is None or not math.isfinite(float(v)) else f"{float(v):.{digits}f}"


def _pm(mean: Any, std: Any) -> str:
    return _f(mean) + ("" if std is None or not math.isfinite(float(std)) else f" ± {_f(std)}")


def _ci(v: Any, ci: Sequence[float] | None, chance: bool | None = None) -> str:
    text = _f(v) + ("" if not ci else f" [{_f(ci[0])}, {_f(ci[1])}]")
    return text + (" (chance)" if chance else "")


def _ratio(v: Any) -> str:
    return "n/a" if v is None or not math.isfinite(float(v)) else f"{float(v):.2f}"


_ATTACKER_NAMES = {"siamese": "Siamese", "metric": "metric", "pixel": "pixel"}


def markdown_tables(rows: Sequence[Mapping[str, Any]], header_note: str = "") -> str:
    """The privacy table and the utility / image-change table of a benchmark, with their notes."""
    attackers = [a for a in ("siamese", "metric", "pixel") if any(a in (r.get("attackers") or {}) for r in rows)]
    binary = next((r["binary_name"] for r in rows if r.get("binary_name")), "binary")
    head = ("| method | worst-case verification AUC % (pair-weighted) | worst-case AUC % (patient-weighted) | "
            + " | ".join(f"{_ATTACKER_NAMES[a]} AUC %" for a in attackers)
            + " | worst-case P@1 % | privacy closure (pair / patient) | learned minus random warp, AUC points (seeds lower, sign-test p) |")
    lines = ["**Privacy** (lower AUC = more private)", "", head, "|" + "---|" * (6 + len(attackers))]
    for r in rows:
        per = r.get("attackers") or {}
        cells = [_pm(per[a]["ver_pair_mean"], per[a]["ver_pair_std"]) if a in per else "-" for a in attackers]
        vs = r.get("vs_control")
        versus = "-" if not vs else (f"{vs['delta_mean']:+.1f} ({vs['n_lower']}/{len(vs['seeds'])}, "
                                     f"p = {_f(vs['sign_test_p'], 3)})")
        lines.append(
            f"| {r['method']} | {_pm(r['ver_pair_mean'], r['ver_pair_std'])} ({r.get('ver_pair_attacker') or '-'}) "
            f"| {_pm(r['ver_patient_mean'], r['ver_patient_std'])} | " + " | ".join(cells)
            + f" | {_pm(r['p_at_1_mean'], r['p_at_1_std'])} ({r.get('p_at_1_attacker') or '-'}) "
            f"| {_ratio(r.get('closure_pair'))} / {_ratio(r.get('closure_patient'))} | {versus} |"
        )
    lines += [
        "",
        "**Utility and image change**",
        "",
        f"| method | {binary} AUC % [95% CI] | mean class AUC % [95% CI] | utility retention ({binary} / mean) "
        "| displacement mean / p99, px at 256 (interior) | same, px at the working size | border frame % | folded % | SSIM |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r.get("displacement")
        disp = "-" if not d else f"{_f(d['mean_px_256'], 2)} / {_f(d['p99_px_256'], 2)}"
        work = "-" if not d else f"{_f(d['mean_px_working'], 2)} / {_f(d['p99_px_working'], 2)} ({d['working_size']} px)"
        frame = "-" if not d else _f(100 * d["frame_share"], 1)
        fold = "-" if not d else _f(100 * d["fold_share"], 2)
        lines.append(
            f"| {r['method']} | {_ci(r['util_binary'], r['util_binary_ci'], r.get('util_binary_chance'))} "
            f"| {_ci(r['util_mean'], r['util_mean_ci'], r.get('util_mean_chance'))} "
            f"| {_ratio(r.get('retention_binary'))} / {_ratio(r.get('retention_mean'))} | {disp} | {work} | {frame} "
            f"| {fold} | {_f(r.get('ssim'), 3)} |"
        )
    notes = [
        "",
        "Privacy: each attacker is trained afresh per seed on the anonymized training images (the paper's "
        "protocol) and tested on (anonymized, real) test pairs; mean ± std over attack seeds. Attackers: "
        "Siamese = the paper's verifier (BCE on pairs); metric = an embedding trained with a supervised-"
        "contrastive loss over patient ids, cosine score; pixel = correlation of the mean-centred pixels (no "
        "training). Worst case = the attacker with the highest mean (named in brackets). Pair-weighted = every "
        "test pair once (the paper's number); patient-weighted = every anchor patient once. P@1: anonymized "
        "test images retrieving another real image of the same patient.",
        "Closure = (AUC_real - AUC) / (AUC_real - 50) on the worst case; retention = (AUC - 50) / (AUC_real - 50); "
        "n/a when the real-image figure is at or below chance. '(chance)': the 95% bootstrap CI contains 50. "
        "Learned minus random warp: per attack seed, the learned row's worst-case AUC minus its matched random "
        "warp's (same seeds), mean; seeds where the learned field is lower; one-sided sign test.",
        "Displacement: length of the displacement vectors outside the border frame, in pixels of a 256 x 256 "
        "image and of the generator's working size; border frame = share of the image the paper's smoothing of "
        "the full grid distorts; folded = share of pixels with a Jacobian determinant <= 0. SSIM: anonymized vs "
        "real test images (7 x 7 window, data range 1).",
    ]
    absent = sorted({c for r in rows for c in r.get("classes_absent") or []})
    if absent:
        notes.append(f"Classes absent from the evaluation split (left out of the mean class AUC): {', '.join(absent)}.")
    reasons = sorted({r.get("retention_reason") for r in rows if r.get("retention_reason")})
    if reasons:
        notes.append(f"Retention n/a: {'; '.join(reasons)}.")
    if header_note:
        notes.append(header_note)
    return "\n".join(lines + notes) + "\n"


def short_label(row: str) -> str:
    """A plot label for a row name: ``L 1.28`` = learned within 1.28 px, ``R 1.28`` = its random warp."""
    if row.startswith("random_deformation_"):
        return "R " + short_label(row[len("random_deformation_"):]).removeprefix("L ")
    if row.startswith("ensemble_b"):
        return f"L {row[len('ensemble_b'):]}"
    if row.startswith("prichexy_mu"):
        return f"mu {row[len('prichexy_mu'):]}"
    if row.startswith("model_"):
        return row[len("model_"):]
    if row.startswith("blur_s"):
        return f"blur {row[len('blur_s'):]}"
    if row.startswith("dppix_b"):
        return f"DP-Pix {row[len('dppix_b'):]}"
    return {"privacy_net": "Privacy-Net"}.get(row, row)


def plot_frontier(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str = "") -> Path:
    """Privacy closure (worst case) against utility retention, learned rows joined to their random warps.

    Left: every row and the paper's point; right: the same, zoomed on the rows near the real images.
    Labels: ``L b`` = learned within budget b px, ``R b`` = its random warp, ``mu m`` = the paper's set-up.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), constrained_layout=True)
    colours = {"prichexy": "tab:blue", "random_deformation": "tab:orange", "blur": "tab:green", "dppix": "tab:red",
               "privacy_net": "tab:purple", "none": "black"}
    by_name = {r["row"]: r for r in rows}
    points = []
    for r in rows:
        x, y = r.get("closure_pair"), r.get("retention_binary")
        if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
            continue
        points.append((x, y))
        for ax in axes:
            ax.plot(x, y, "o", color=colours.get(r.get("kind"), "grey"))
            ax.annotate(short_label(r["row"]), (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
            control = by_name.get(r.get("control") or "")
            if control and control.get("closure_pair") is not None and math.isfinite(control["closure_pair"]):
                ax.plot([x, control["closure_pair"]], [y, control.get("retention_binary", y)], ":", color="grey", lw=0.8)
    for ax in axes:
        ax.plot(PAPER_POINT["closure"], PAPER_POINT["retention"], "*", ms=14, color="gold", mec="black",
                label="paper, mu = 0.01 (its own Siamese attacker)")
        ax.axvline(0, color="grey", lw=0.5)
        ax.axhline(1, color="grey", lw=0.5)
        ax.axhline(0.95, color="grey", lw=0.5, ls="--")
        ax.axvline(0.5, color="grey", lw=0.5, ls="--")
        ax.set_xlabel("privacy closure, worst case over attackers (1 = attacker at chance)")
    axes[0].set_ylabel("utility retention (1 = all utility kept)")
    for legend, kind in (("learned (L b: within b px at 256)", "prichexy"), ("random warp, same displacement (R b)", "random_deformation"),
                         ("Gaussian blur", "blur"), ("DP-Pix", "dppix"), ("Privacy-Net", "privacy_net"), ("real", "none")):
        if any(r.get("kind") == kind for r in rows):
            axes[0].plot([], [], "o", color=colours[kind], label=legend)
    axes[0].legend(fontsize=7, loc="lower left")
    axes[0].set_title(title or "privacy-utility frontier", fontsize=10)
    near = [(x, y) for x, y in points if -0.3 <= x <= 0.3 and y >= 0.85]
    if near:
        xs, ys = [x for x, _ in near], [y for _, y in near]
        pad_x = max(0.02, 0.1 * (max(xs) - min(xs)))
        pad_y = max(0.005, 0.1 * (max(ys) - min(ys)))
        axes[1].set_xlim(min(xs) - pad_x, max(xs) + 2 * pad_x)
        axes[1].set_ylim(min(ys) - pad_y, max(ys) + 2 * pad_y)
    axes[1].set_title("zoom: the rows near the real images", fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def update_readme_section(readme: str | os.PathLike, name: str, content: str) -> bool:
    """Replace the text between ``<!-- results:<name>:start -->`` and ``<!-- results:<name>:end -->``.

    Returns False when the markers are not in the file (nothing is written then).
    """
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    start, end = f"<!-- results:{name}:start -->", f"<!-- results:{name}:end -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), flags=re.S)
    if not pattern.search(text):
        return False
    new = pattern.sub(lambda _: f"{start}\n{content.rstrip()}\n{end}", text, count=1)
    if new != text:
        from ..atomic import atomic_write_bytes

        atomic_write_bytes(path, new.encode("utf-8"))
    return True
