"""The paper's Table 1 on a data folder: privacy (attack) and utility of every anonymizer.

Rows: real images (baseline), PriCheXy-Net for each mu, Privacy-Net, DP-Pix for each b (eps 0.1,
m 1), and the random-deformation control (a random smooth field of the learned generator's mean
displacement, data README caveat 6). For each row: verification AUC of a freshly trained
attacker, mean +- std over attack seeds, pair-weighted and patient-weighted; retrieval mAP@R and
P@1; the original classifier's mean AUC [95 % bootstrap CI] and binary any-finding AUC; privacy
closure and utility retention against this run's real row; the paper's values beside them.

Writes ``benchmark.json``, ``benchmark.md`` and ``benchmark.png`` to the output folder. Every
stage and evaluation is resumable (skipped when its output exists, unless ``--force``).

Usage::

    python scripts/benchmark.py --config configs/benchmark_cpu.json \\
        --dataset_dir ../shared/data/nih-cxr14-subset --output_dir runs/benchmark_cpu
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .engines.anonymizers import build_anonymizer
from .engines.experiment import Experiment
from .engines.handlers import write_json
from .metrics import privacy_closure, utility_retention
from .metrics.summary import AT_OR_BELOW_CHANCE

__all__ = ["PAPER_TABLE1", "run_benchmark", "benchmark_rows", "model_rows", "markdown_table", "plot_tradeoff", "main"]

logger = logging.getLogger("monai_prichexy.benchmark")

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

_LABELS = {"real": "real images", "privacy_net": "Privacy-Net"}


def _label(row: str) -> str:
    if row in _LABELS:
        return _LABELS[row]
    if row.startswith("prichexy_mu"):
        return f"PriCheXy-Net mu={row[len('prichexy_mu'):]}"
    if row.startswith("dppix_b"):
        return f"DP-Pix b={row[len('dppix_b'):]}"
    if row.startswith("random_deformation_mu"):
        return f"random deformation (as mu={row[len('random_deformation_mu'):]})"
    return row


def _control_spec(exp: Experiment, displacement: Mapping[str, float], smoothing: str) -> dict[str, Any]:
    """A random deformation with a learned field's mean displacement (data README caveat 6)."""
    control = exp.config["benchmark"].get("random_control") or {}
    return {"kind": "random_deformation", "mean_displacement": displacement["mean_abs"],
            "field_sigma": float(control.get("field_sigma", 4.0)), "smoothing": smoothing}


def benchmark_rows(exp: Experiment) -> list[tuple[str, dict[str, Any] | None, dict[str, Any]]]:
    """Train what the rows need and return ``(row, anonymizer spec, info)`` for every row."""
    bench = exp.config["benchmark"]
    exp.classifier_pretrain()
    exp.verifier_pretrain()
    rows: list[tuple[str, dict[str, Any] | None, dict[str, Any]]] = [("real", None, {})]
    mus = [float(m) for m in bench.get("mus", [])]
    which = (bench.get("random_control") or {}).get("mus", "max")
    control_mus = ([] if not bench.get("random_control") or not mus else [max(mus)] if which == "max"
                   else mus if which == "all" else [float(m) for m in which])

    def control_row(mu: float) -> tuple[str, dict[str, Any], dict[str, Any]]:
        disp = exp.displacement(mu)
        spec = _control_spec(exp, disp, exp.networks["smoothing"])
        return (f"random_deformation_mu{mu:g}", spec, {"matched_to_mu": mu, "displacement": disp})

    for mu in mus:
        path = exp.adversarial(mu)
        rows.append((f"prichexy_mu{mu:g}", {"kind": "prichexy", "checkpoint": str(path)}, {"mu": mu}))
        if mu in control_mus:  # each control right after its learned row
            rows.append(control_row(mu))
    rows.extend(control_row(mu) for mu in control_mus if mu not in mus)
    if bench.get("privacy_net", True):
        path = exp.adversarial(None)
        rows.append(("privacy_net", {"kind": "privacy_net", "checkpoint": str(path)}, {}))
    dppix = bench.get("dppix") or {}
    for b in dppix.get("b", []):
        spec = {"kind": "dppix", "b": int(b), "eps": float(dppix.get("eps", 0.1)), "m": float(dppix.get("m", 1.0))}
        rows.append((f"dppix_b{int(b)}", spec, {}))
    return rows


def model_rows(exp: Experiment, models: Sequence[str | os.PathLike]) -> list[tuple[str, dict[str, Any] | None, dict[str, Any]]]:
    """Rows for trained PriCheXy-Net files (e.g. the bundle's ``models/model.pt``): each with its control.

    Every model is evaluated as it is (its own mu, smoothing and working size) beside the real
    row, followed by a random deformation with the model's mean displacement on the validation
    split (data README caveat 6). The utility classifier is the profile's (trained on real images).
    """
    rows: list[tuple[str, dict[str, Any] | None, dict[str, Any]]] = [("real", None, {})]
    for path in models:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file")
        net = build_anonymizer("prichexy", checkpoint=path, device=exp.device)
        disp = exp.field_displacement(net)
        mu, name = float(net.mu), path.stem
        info = {"mu": mu, "model": path.name, "displacement": disp}
        rows.append((f"model_{name}", {"kind": "prichexy", "checkpoint": str(path)},
                     {**info, "method": f"PriCheXy-Net {path.name} (mu={mu:g})"}))
        rows.append((f"random_deformation_{name}", _control_spec(exp, disp, net.smoothing),
                     {**info, "matched_to": path.name, "method": f"random deformation (as {path.name})"}))
    return rows


def _pct(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else 100.0 * float(v)


def _summary_row(row: str, result: Mapping[str, Any], real: Mapping[str, Any] | None, info: Mapping[str, Any]) -> dict[str, Any]:
    priv, util = result["privacy"], result["utility"]
    out: dict[str, Any] = {
        "row": row,
        "method": info.get("method") or _label(row),
        "ver_pair_mean": _pct(priv["auc_pair"]["mean"]),
        "ver_pair_std": _pct(priv["auc_pair"]["std"]),
        "ver_patient_mean": _pct(priv["auc_patient"]["mean"]),
        "ver_patient_std": _pct(priv["auc_patient"]["std"]),
        "map_at_r_mean": _pct(priv["map_at_r"]["mean"]),
        "map_at_r_std": _pct(priv["map_at_r"]["std"]),
        "p_at_1_mean": _pct(priv["precision_at_1"]["mean"]),
        "p_at_1_std": _pct(priv["precision_at_1"]["std"]),
        "cls_mean": _pct(util["mean_auc"]),
        "cls_ci": [_pct(v) for v in util["mean_auc_ci"]] if util.get("mean_auc_ci") else None,
        "classes_absent": util.get("classes_absent", []),
        "any_auc": _pct(util["any_finding_auc"]),
        "any_ci": [_pct(v) for v in util["any_finding_ci"]] if util.get("any_finding_ci") else None,
        "n_attack_seeds": len(priv["per_seed"]),
        "paper": PAPER_TABLE1.get(row),
        **{k: v for k, v in info.items()},
    }
    if real is not None:
        def safe(fn, a, b):
            try:
                with warnings.catch_warnings():  # NaN at or below chance: the table's note says why
                    warnings.simplefilter("ignore", UserWarning)
                    return fn(a, b)
            except (ValueError, TypeError):
                return None

        out["privacy_closure_pair"] = safe(privacy_closure, real["ver_pair_mean"], out["ver_pair_mean"])
        out["privacy_closure_patient"] = safe(privacy_closure, real["ver_patient_mean"], out["ver_patient_mean"])
        out["utility_retention"] = safe(utility_retention, real["cls_mean"], out["cls_mean"])
        out["utility_retention_any"] = safe(utility_retention, real["any_auc"], out["any_auc"])
    return out


def _f(v: float | None, digits: int = 1) -> str:
    return "-" if v is None or not math.isfinite(float(v)) else f"{v:.{digits}f}"


def _pm(mean: float | None, std: float | None) -> str:
    return _f(mean) + ("" if std is None or not math.isfinite(float(std)) else f" ± {_f(std)}")


def _ci(v: float | None, ci: Sequence[float] | None) -> str:
    return _f(v) + ("" if not ci else f" [{_f(ci[0])}, {_f(ci[1])}]")


#: closure / retention columns and the real-row AUC (in %) each one divides by
_RATIO_BASE = {"privacy_closure_pair": "ver_pair_mean", "privacy_closure_patient": "ver_patient_mean",
               "utility_retention": "cls_mean", "utility_retention_any": "any_auc"}


def _ratio(r: Mapping[str, Any], key: str, real: Mapping[str, Any] | None) -> str:
    """``n/a`` where undefined (NaN, or the real row's AUC at or below chance, also in older JSON)."""
    base = None if real is None else real.get(_RATIO_BASE[key])
    v = r.get(key)
    return "n/a" if (base is not None and base <= 50.0) or (v is not None and math.isnan(v)) else _f(v, 2)


def markdown_table(rows: Sequence[Mapping[str, Any]], header_note: str = "") -> str:
    """The benchmark table in Markdown (values in %)."""
    real = next((r for r in rows if r.get("row") == "real"), None)
    lines = [
        "| method | verification AUC % (pair-weighted) | verification AUC % (patient-weighted) "
        "| classification mean AUC % [95% CI] | any-finding AUC % [95% CI] | retrieval mAP@R % | retrieval P@1 % "
        "| privacy closure (pair / patient) | utility retention (mean AUC / any-finding) "
        "| paper verification % | paper classification % | paper closure / retention |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    paper_real = PAPER_TABLE1["real"]
    for r in rows:
        paper = r.get("paper") or {}
        paper_cr = "-"
        if paper:
            paper_cr = (f"{_f(privacy_closure(paper_real['ver'], paper['ver']), 2)} / "
                        f"{_f(utility_retention(paper_real['cls'], paper['cls']), 2)}")
        closure = f"{_ratio(r, 'privacy_closure_pair', real)} / {_ratio(r, 'privacy_closure_patient', real)}"
        retention = f"{_ratio(r, 'utility_retention', real)} / {_ratio(r, 'utility_retention_any', real)}"
        lines.append(
            f"| {r['method']} | {_pm(r['ver_pair_mean'], r['ver_pair_std'])} "
            f"| {_pm(r['ver_patient_mean'], r['ver_patient_std'])} | {_ci(r['cls_mean'], r['cls_ci'])} "
            f"| {_ci(r['any_auc'], r['any_ci'])} | {_pm(r['map_at_r_mean'], r['map_at_r_std'])} "
            f"| {_pm(r['p_at_1_mean'], r['p_at_1_std'])} | {closure} | {retention} "
            f"| {_pm(paper.get('ver'), paper.get('ver_std')) if paper else '-'} "
            f"| {_ci(paper.get('cls'), paper.get('cls_ci')) if paper else '-'} | {paper_cr} |"
        )
    notes = [
        "",
        "Verification AUC: a freshly trained Siamese attacker per seed, trained on pairs with both images "
        "anonymized and tested on (anonymized, real) test pairs; mean ± std over attack seeds. "
        "Pair-weighted = every test pair counts once (the paper's number); patient-weighted = every anchor "
        "patient's positive and negative pairs weigh 1 each (data README caveat 5). Retrieval: attacker "
        "embeddings of anonymized test images (queries) vs real test images (gallery), own source excluded.",
        "Classification: the original classifier (trained on real images) on anonymized test images; mean of "
        "the per-class AUCs over the classes present in the test split, 95% bootstrap CI. Any-finding: "
        "'any finding' vs 'No Finding' AUC from the max of the 14 outputs.",
        "Privacy closure = (Ver_real - Ver_anon) / (Ver_real - 50); utility retention = (Cls_anon - 50) / "
        "(Cls_real - 50), both against this run's real row. Paper values: Packhäuser et al., MICCAI 2023, "
        "Table 1 (full ChestX-ray14 at 256 px; not directly comparable with a small subset).",
    ]
    if any(_ratio(r, key, real) == "n/a" for r in rows for key in _RATIO_BASE):
        notes.append(f"n/a: closure or retention undefined, {AT_OR_BELOW_CHANCE} (no gap to close or utility "
                     "to retain; the ratio's sign would flip).")
    absent = sorted({c for r in rows for c in r.get("classes_absent") or []})
    if absent:
        notes.append(f"Classes absent from the evaluation split (no positive or no negative image; left out of "
                     f"the mean AUC): {', '.join(absent)}.")
    if header_note:
        notes.append(header_note)
    return "\n".join(lines + notes) + "\n"


def plot_tradeoff(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Privacy-utility plot (verification AUC vs classification / any-finding AUC) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    for ax, key, ci_key, title in (
        (axes[0], "cls_mean", "cls_ci", "classification mean AUC %"),
        (axes[1], "any_auc", "any_ci", "any-finding AUC %"),
    ):
        for i, r in enumerate(rows):
            x, y = r.get("ver_pair_mean"), r.get(key)
            if x is None or y is None:
                continue
            xerr = r.get("ver_pair_std") if r.get("ver_pair_std") is not None else 0.0
            ci = r.get(ci_key)
            yerr = [[y - ci[0]], [ci[1] - y]] if ci else None
            color = plt.cm.tab20(i % 20)  # 12+ rows: no repeated colours
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", color=color, capsize=3, label=r["method"])
            ax.annotate(r["method"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
            paper = r.get("paper")
            if paper and key == "cls_mean":
                ax.plot(paper["ver"], paper["cls"], marker="s", mfc="none", color=color, alpha=0.6)
        ax.axvline(50, color="grey", lw=0.5, ls="--")
        ax.axhline(50, color="grey", lw=0.5, ls="--")
        ax.set_xlabel("verification AUC % (pair-weighted; lower = more private)")
        ax.set_ylabel(title + " (higher = more useful)")
        ax.set_title(title + (" (squares: paper, Table 1)" if key == "cls_mean" else ""))
    axes[1].legend(fontsize=7, loc="lower right")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_benchmark(
    profile: str | os.PathLike | Mapping[str, Any] | None = None,
    dataset_dir: str | os.PathLike | None = None,
    output_dir: str | os.PathLike | None = None,
    force: bool = False,
    overrides: Mapping[str, Any] | None = None,
    models: Sequence[str | os.PathLike] | None = None,
) -> dict[str, Any]:
    """Run the whole benchmark; returns what ``benchmark.json`` holds.

    With ``models`` (trained PriCheXy-Net files), evaluate those instead of training the
    profile's rows: real, each model, and each model's random-deformation control.
    """
    start = time.time()
    exp = Experiment(profile, dataset_dir=dataset_dir, output_dir=output_dir, force=force, overrides=overrides)
    rows = model_rows(exp, models) if models else benchmark_rows(exp)
    train_s = time.time() - start
    results, summary = {}, []
    real = None
    for row, spec, info in rows:
        results[row] = exp.evaluate(row, spec)
        s = _summary_row(row, results[row], real, info)
        if row == "real":
            real = s
            s = _summary_row(row, results[row], real, info)
        summary.append(s)
    elapsed = time.time() - start
    payload = {
        "config": exp.config | {"data": {**exp.config["data"], "dataset_dir": Path(exp.config["data"]["dataset_dir"]).name}},
        "data": exp.data.describe(),
        "rows": summary,
        "results": results,
        "paper_table1": PAPER_TABLE1,
        "wall_time_s": elapsed,
        "training_wall_time_s": train_s,
        "units": "AUCs, mAP@R and P@1 in percent in 'rows', as fractions in 'results'",
    }
    out = Path(exp.output_dir)
    write_json(out / "benchmark.json", payload)
    note = (f"Data: {exp.data.describe()['dataset']} ({exp.data.image_dir.name}, {exp.data.image_size} px); "
            f"{len(exp.config['stages']['attack']['seeds'])} attack seeds; wall time {elapsed / 60:.1f} min.")
    (out / "benchmark.md").write_text(markdown_table(summary, note), encoding="utf-8")
    plot_tradeoff(summary, out / "benchmark.png")
    logger.info("benchmark written to %s in %.1f min", out, elapsed / 60)
    return payload


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None,
                        help="profile JSON (default: configs/benchmark_paper.json, the paper's set-up)")
    parser.add_argument("--dataset_dir", help="data folder (labels.csv, splits.csv, images64/ ...)")
    parser.add_argument("--output_dir", help="where checkpoints, results and the table go")
    parser.add_argument("--force", action="store_true", help="redo stages and evaluations whose outputs exist")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="dotted overrides, e.g. stages.attack.seeds=[0,1] device=cuda")
    parser.add_argument("--model", nargs="+", default=None, metavar="MODEL_PT",
                        help="evaluate these trained PriCheXy-Net files (e.g. bundle/models/model.pt) with their "
                             "random-deformation controls instead of training the profile's rows")
    parser.add_argument("--log_level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = args.config
    if config is None:
        default = Path(__file__).resolve().parents[1] / "configs" / "benchmark_paper.json"
        config = default if default.is_file() else None  # None: the same built-in DEFAULT_PROFILE
    payload = run_benchmark(config, args.dataset_dir, args.output_dir, args.force, _parse_set(args.set), args.model)
    print((Path(payload["config"]["output_dir"]) / "benchmark.md").read_text(encoding="utf-8"))
    return 0
