"""Privacy / utility report of an anonymized batch (``monai-prichexy report``).

Originals are paired with their anonymized copies through the output's manifest: the
pseudonym of each original's relative path (under the same key) is its manifest id, and the
keyed digest of its bytes must match the one recorded (otherwise the original changed since
and is left out). Per image:

* **privacy**: the verifier's same-patient probability ``sigmoid(V(original, anonymized))``;
  as a reference, the same for the anonymized copy against the *previous* original (another
  image), and the image-level linkage AUC between both (0.5: a copy is no more linkable to its
  original than to another image; 1: every copy is linked). Lower is more private.
* **utility**: the classifier's class probabilities (its data set's: 14 ChestX-ray14 findings,
  or normal / bacterial / viral for the shipped Kermany classifier) on original and copy: mean
  ``|p_orig - p_anon|`` and the fraction of findings whose thresholded label agrees.
* **image change**: SSIM between the original's and the copy's view; with the generator that
  made the batch (``weights``, checked against the batch's recorded SHA-256), its displacement
  on the original: mean, 99th percentile and maximum length in pixels at 256 x 256 outside the
  border frame, and the share of folded pixels (:class:`~monai_prichexy.metrics.DisplacementAccumulator`,
  as the benchmark records it). Only these summary lengths are written, never the field.

Both networks see what they were trained on: the image (DICOM: the reader's view after LUTs
and MONOCHROME1 inversion) resized to 256 x 256 with anti-aliasing and min-max scaled to
[0, 1], as :func:`monai_prichexy.data.build_transforms` does. Outputs in the report folder:
``report.md``, ``histograms.png``, ``per_image.csv``, ``summary.json`` -- pseudonyms only.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..data.reader import RadiographReader
from ..dicom import DeidKey
from ..metrics.displacement import DisplacementAccumulator, ssim_and_change
from ..networks import AbnormalityClassifier, SiameseVerifier
from ..transforms import network_view
from ..transforms.meta import RADIOGRAPH_VIEW_LUT
from ..weights import load_network, sha256_file
from .atomic import atomic_write, atomic_write_bytes
from .pairing import PairingError, RunPairs, check_out_dir

__all__ = ["ReportError", "ReportResult", "batch_generator", "build_report", "load_view", "network_input"]

INPUT_SIZE = 256


class ReportError(RuntimeError):
    """The report cannot be made (no manifest, wrong key, bad networks)."""


@dataclass
class ReportResult:
    markdown: Path
    figure: Path
    table: Path
    summary: dict[str, Any]


# only files the run accepted are paired: its scope decision (e.g. --allow-secondary-capture) stands
_READER = RadiographReader(allow_secondary_capture=True)


def load_view(path: str | os.PathLike, kind: str) -> np.ndarray:
    """The network view of a file, float32 ``(rows, cols)`` in [0, 1]: the project's reader and
    :func:`~monai_prichexy.transforms.network_view` (DICOM: LUT view; other formats: min-max)."""
    values, meta = _READER.get_data(_READER.read(path, fmt=kind))
    return network_view(values, meta.get(RADIOGRAPH_VIEW_LUT)).numpy()


def network_input(view: np.ndarray, size: int = INPUT_SIZE) -> torch.Tensor:
    """``(1, 1, size, size)`` input: anti-aliased bilinear resize, then min-max to [0, 1]."""
    from monai.transforms import Resize, ScaleIntensity

    x = torch.as_tensor(np.asarray(view, dtype=np.float32))[None]
    x = Resize(spatial_size=(size, size), mode="bilinear", anti_aliasing=True)(x)
    x = ScaleIntensity(minv=0.0, maxv=1.0)(x)
    return torch.as_tensor(x, dtype=torch.float32)[None]


def _load(path, network: str, expected_sha256, cls):
    try:
        model, meta = load_network(path, network=network, expected_sha256=expected_sha256)
    except (ValueError, FileNotFoundError) as err:
        raise ReportError(f"{network}: {err}") from None
    if not isinstance(model, cls):
        raise ReportError(f"{path}: holds a {type(model).__name__}, not a {network}")
    return model.eval(), meta


def batch_generator(settings: dict[str, Any], weights, weights_sha256: str | None, device: torch.device):
    """The PriCheXy-Net that made the batch (its recorded set-up), or None with the reason."""
    from ..transforms import DeformAnonymize
    from ..bundle_files import WeightsNotFoundError, resolve_weights

    recorded = settings.get("weights_sha256")
    try:
        path, expected = resolve_weights(weights, weights_sha256)
    except WeightsNotFoundError as err:
        if weights is not None:
            raise ReportError(str(err)) from None
        return None, "not measured: no generator weights found; pass --weights (the generator that made this batch)"
    actual = sha256_file(path)
    if recorded and actual != recorded:
        if weights is None:
            return None, ("not measured: the default weights are not the generator that made this batch; "
                          "pass --weights with that generator")
        raise ReportError(f"{path}: not the generator that made this batch (SHA-256 {actual[:16]}..., the batch "
                          f"recorded {recorded[:16]}...)")
    try:
        transform = DeformAnonymize(str(path), mu=settings.get("mu"), smoothing=settings.get("smoothing"),
                                    working_size=settings.get("working_size"), device=device, expected_sha256=expected)
    except (ValueError, RuntimeError) as err:
        raise ReportError(f"{path}: {err}") from None
    return transform.network.eval(), f"measured with the generator SHA-256 {actual[:16]}... on each original's view"


@torch.no_grad()
def _network_note(path: str | os.PathLike, meta: dict[str, Any]) -> str:
    """Which network this is, in words: shipped or given, trained on which data set (or untrained)."""
    from ..bundle_files import ATTACK_NETWORKS, bundle_root

    shipped = any(Path(path).resolve() == (bundle_root() / "models" / f).resolve() for f in ATTACK_NETWORKS.values())
    origin = f"the bundle's shipped models/{Path(path).name}" if shipped else "given on the command line"
    if meta.get("untrained"):
        return f"{origin}, UNTRAINED"
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    trained_on = data.get("dataset")
    return f"{origin}, trained on {trained_on}" if trained_on else origin


def _probabilities(classifier: AbnormalityClassifier, x: torch.Tensor) -> np.ndarray:
    """Class probabilities as the classifier's data set defines them (softmax for Kermany, sigmoids for ChestX-ray14)."""
    from ..labels import SCHEMAS

    logits = classifier(x)
    targets = tuple(getattr(classifier, "targets", ()))
    schema = next((s for s in SCHEMAS.values() if tuple(s.classes) == targets), None)
    return (torch.sigmoid(logits) if schema is None else schema.probabilities(logits))[0].cpu().numpy()


def _image_change(x_orig: torch.Tensor, x_anon: torch.Tensor, generator) -> dict[str, Any]:
    """SSIM of the two views and, with the generator, its displacement's summary on the original (no field kept)."""
    out: dict[str, Any] = {"ssim": ssim_and_change(x_anon, x_orig)["ssim_mean"], "displacement_mean_px_256": None,
                           "displacement_p99_px_256": None, "displacement_max_px_256": None, "folded_share": None,
                           "border_frame_share": None}
    if generator is None:
        return out
    accumulator = DisplacementAccumulator(generator.working_size, generator.frame_px(x_orig.shape[-1]))
    accumulator.update(generator.displacement(x_orig))
    figures = accumulator.compute()
    out.update(
        displacement_mean_px_256=figures["interior"]["mean_px_256"],
        displacement_p99_px_256=figures["interior"]["p99_px_256"],
        displacement_max_px_256=figures["interior"]["max_px_256"],
        folded_share=figures["fold_share"],
        border_frame_share=figures["frame_share"],
    )
    return out


def _measured(rows: list[dict[str, Any]], key: str) -> list[float]:
    """The values of ``key`` in ``rows`` that were measured (None: no generator for the displacement)."""
    return [r[key] for r in rows if r[key] is not None]


def _stats(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "mean": None, "median": None, "p10": None, "p90": None, "min": None, "max": None}
    arr = np.asarray(values, dtype=np.float64)
    return {
        "n": int(arr.size),
        "mean": float(arr.mean()),
        "median": float(np.median(arr)),
        "p10": float(np.percentile(arr, 10)),
        "p90": float(np.percentile(arr, 90)),
        "min": float(arr.min()),
        "max": float(arr.max()),
    }


def _auc(positives: list[float], negatives: list[float]) -> float | None:
    if not positives or not negatives:
        return None
    from sklearn.metrics import roc_auc_score

    labels = [1] * len(positives) + [0] * len(negatives)
    return float(roc_auc_score(labels, positives + negatives))


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


@torch.no_grad()
def build_report(
    originals: str | os.PathLike,
    anonymized: str | os.PathLike,
    verifier: str | os.PathLike,
    classifier: str | os.PathLike,
    out_dir: str | os.PathLike,
    key: DeidKey,
    device: str | torch.device = "cpu",
    threshold: float = 0.5,
    verifier_sha256: str | None = None,
    classifier_sha256: str | None = None,
    progress: bool = True,
    weights: str | os.PathLike | None = None,
    weights_sha256: str | None = None,
) -> ReportResult:
    """Make the report (see the module docstring). Memory: one image pair at a time.

    ``weights``: the generator that made the batch, for its displacement per image (default: the
    bundle's, when its SHA-256 is the one the batch recorded; otherwise displacement is not measured).
    """
    originals, anonymized, out_dir = Path(originals), Path(anonymized), Path(out_dir)
    try:
        pairs = RunPairs(originals, anonymized, key)
        check_out_dir(out_dir, originals, anonymized)
    except PairingError as err:
        raise ReportError(str(err)) from None
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    settings = pairs.settings

    device = torch.device(device)
    v_net, v_meta = _load(verifier, "SiameseVerifier", verifier_sha256, SiameseVerifier)
    c_net, c_meta = _load(classifier, "AbnormalityClassifier", classifier_sha256, AbnormalityClassifier)
    v_net, c_net = v_net.to(device), c_net.to(device)
    generator, displacement_note = batch_generator(settings, weights, weights_sha256, device)
    out_dir.mkdir(parents=True, exist_ok=True)

    rows: list[dict[str, Any]] = []  # small per-image numbers only
    counts = pairs.counts
    previous_original: torch.Tensor | None = None
    from tqdm.auto import tqdm

    bar = tqdm(total=pairs.n_files(), unit="image", desc="report", disable=not progress, dynamic_ncols=True)
    for pair in pairs:
        bar.n = sum(counts.values()) + 1
        bar.refresh()
        kind, output = pair.kind, pair.output
        try:
            x_orig = network_input(load_view(pair.original, kind)).to(device)
            x_anon = network_input(load_view(pair.anonymized, kind)).to(device)
        except ValueError as err:
            counts[f"unreadable ({type(err).__name__})"] += 1
            continue
        e_orig, e_anon = v_net.embed(x_orig), v_net.embed(x_anon)
        p_same = float(torch.sigmoid(v_net.score_embeddings(e_orig, e_anon)).item())
        p_ref = None
        if previous_original is not None:
            p_ref = float(torch.sigmoid(v_net.score_embeddings(previous_original, e_anon)).item())
        previous_original = e_orig
        change = _image_change(x_orig, x_anon, generator)
        prob_orig, prob_anon = _probabilities(c_net, x_orig), _probabilities(c_net, x_anon)
        agree = (prob_orig >= threshold) == (prob_anon >= threshold)
        rows.append(
            {
                "output": output,
                "kind": kind,
                "p_same_patient": p_same,
                "p_same_patient_reference": p_ref,
                "classifier_mean_abs_diff": float(np.abs(prob_orig - prob_anon).mean()),
                "classifier_max_abs_diff": float(np.abs(prob_orig - prob_anon).max()),
                "label_agreement": float(agree.mean()),
                "all_labels_agree": bool(agree.all()),
                **change,
            }
        )
        counts["paired"] += 1
    bar.close()
    if not rows:
        raise ReportError(f"no original under {originals} could be paired with an anonymized copy in {anonymized}")

    groups: dict[str, list[dict[str, Any]]] = {"all": rows}
    for row in rows:
        groups.setdefault(row["kind"], []).append(row)
    summary: dict[str, Any] = {
        "tool": f"monai-prichexy {__version__}",
        "anonymization": {k: settings.get(k) for k in ("mu", "smoothing", "working_size", "weights_sha256", "dates", "method")},
        "verifier_sha256": sha256_file(verifier),
        "classifier_sha256": sha256_file(classifier),
        "networks": {name: _network_note(path, meta) for name, path, meta in
                     (("verifier", verifier, v_meta), ("classifier", classifier, c_meta))},
        "threshold": threshold,
        "counts": dict(counts),
        "groups": {},
        "warnings": [],
        "displacement_note": displacement_note,
    }
    for name, meta in (("verifier", v_meta), ("classifier", c_meta)):
        if meta.get("untrained"):
            summary["warnings"].append(f"the {name} is UNTRAINED (demo weights): its numbers mean nothing")
    for name, group in groups.items():
        same = [r["p_same_patient"] for r in group]
        ref = [r["p_same_patient_reference"] for r in group if r["p_same_patient_reference"] is not None]
        summary["groups"][name] = {
            "p_same_patient": _stats(same),
            "p_same_patient_reference": _stats(ref),
            "fraction_linked_at_0.5": float(np.mean([p >= 0.5 for p in same])),
            "linkage_auc": _auc(same, ref),
            "classifier_mean_abs_diff": _stats([r["classifier_mean_abs_diff"] for r in group]),
            "label_agreement": _stats([r["label_agreement"] for r in group]),
            "fraction_all_labels_agree": float(np.mean([r["all_labels_agree"] for r in group])),
            "ssim": _stats([r["ssim"] for r in group]),
            **{key: _stats(_measured(group, key)) for key in ("displacement_mean_px_256", "displacement_p99_px_256",
                                                              "folded_share")},
            "displacement_max_px_256": max(_measured(group, "displacement_max_px_256"), default=None),
            "border_frame_share": group[0]["border_frame_share"],
        }

    table = out_dir / "per_image.csv"
    fields = list(rows[0])

    def write_csv(handle) -> None:
        import io

        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else (f"{v:.6f}" if isinstance(v, float) else v)) for k, v in row.items()})
        handle.write(text.getvalue().encode("utf-8"))

    atomic_write(table, write_csv)
    figure = _figure(out_dir / "histograms.png", rows, summary["warnings"])
    atomic_write_bytes(out_dir / "summary.json", (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    markdown = out_dir / "report.md"
    atomic_write_bytes(markdown, _markdown(summary).encode("utf-8"))
    return ReportResult(markdown=markdown, figure=figure, table=table, summary=summary)


def _figure(path: Path, rows: list[dict[str, Any]], warnings: list[str] | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    same = [r["p_same_patient"] for r in rows]
    ref = [r["p_same_patient_reference"] for r in rows if r["p_same_patient_reference"] is not None]
    diff = [r["classifier_mean_abs_diff"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    bins = np.linspace(0, 1, 21)
    axes[0].hist(same, bins=bins, alpha=0.7, label="original vs its anonymized copy")
    if ref:
        axes[0].hist(ref, bins=bins, alpha=0.5, label="reference: another original")
    axes[0].set_xlabel("verifier same-patient probability")
    axes[0].set_ylabel("images")
    axes[0].set_title("Privacy (lower is better)")
    axes[0].legend(fontsize=8, loc="best")
    axes[1].hist(diff, bins=20, color="tab:green", alpha=0.8)
    axes[1].set_xlabel("classifier mean |p_orig - p_anon| (over its classes)")
    axes[1].set_title("Utility (lower is better)")
    if warnings:
        fig.suptitle("WARNING: " + "; ".join(warnings), color="tab:red", fontsize=9)
    fig.tight_layout()

    def save(handle) -> None:
        fig.savefig(handle, format="png", dpi=110, metadata={"Software": None})

    atomic_write(path, save)
    plt.close(fig)
    return path


def _markdown(summary: dict[str, Any]) -> str:
    a = summary["anonymization"]
    lines = [
        "# PriCheXy-Net anonymization report",
        "",
        f"Tool: {summary['tool']}. Deformation: mu = {a.get('mu')}, smoothing = {a.get('smoothing')}, "
        f"generator weights SHA-256 `{(a.get('weights_sha256') or 'unknown')[:16]}…`, DICOM dates {a.get('dates')}.",
        f"Verifier SHA-256 `{summary['verifier_sha256'][:16]}…`, classifier SHA-256 `{summary['classifier_sha256'][:16]}…`, "
        f"label threshold {summary['threshold']}.",
        f"Networks: verifier {summary['networks']['verifier']}; classifier {summary['networks']['classifier']}.",
        "",
        "## Images",
        "",
    ]
    if summary.get("warnings"):
        lines[-2:-2] = [f"**Warning: {w}.**" for w in summary["warnings"]] + [""]
    for name, count in sorted(summary["counts"].items()):
        lines.append(f"- {name}: {count}")
    lines += [
        "",
        "## Privacy: can the verifier link a copy to its original?",
        "",
        "Same-patient probability of the verifier for each original and its anonymized copy, and as a reference for",
        "the copy against another original. Linkage AUC 0.5: a copy is no more linkable to its own original than to",
        "another image; 1.0: every copy is linked. Lower is more private. The reference pairs may by chance show the",
        "same patient; the verifier is only as strong as its training.",
        "",
        "| set | n | mean p(same) | median | p10–p90 | linked (p ≥ 0.5) | reference mean | linkage AUC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, g in summary["groups"].items():
        s, r = g["p_same_patient"], g["p_same_patient_reference"]
        lines.append(
            f"| {name} | {s['n']} | {_fmt(s['mean'])} | {_fmt(s['median'])} | {_fmt(s['p10'])}–{_fmt(s['p90'])} | "
            f"{g['fraction_linked_at_0.5']:.1%} | {_fmt(r['mean'])} | {_fmt(g['linkage_auc'])} |"
        )
    lines += [
        "",
        "## Utility: does the classifier still see the same findings?",
        "",
        "| set | n | mean abs prob. diff | p90 | label agreement | all labels agree |",
        "|---|---|---|---|---|---|",
    ]
    for name, g in summary["groups"].items():
        d, agree = g["classifier_mean_abs_diff"], g["label_agreement"]
        lines.append(
            f"| {name} | {d['n']} | {_fmt(d['mean'], 4)} | {_fmt(d['p90'], 4)} | {_fmt(agree['mean'])} | "
            f"{g['fraction_all_labels_agree']:.1%} |"
        )
    lines += [
        "",
        "## Image change: how far did the deformation move the anatomy?",
        "",
        "SSIM between each original's view and its copy's (1: identical). Displacement of the generator that made the",
        f"batch, on each original, in pixels of a 256 x 256 image outside the border frame ({summary['displacement_note']}).",
        "",
        "| set | n | SSIM mean | SSIM min | displacement mean px (mean over images) | p99 px (median / max over images) "
        "| max px | folded pixels | border frame |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, g in summary["groups"].items():
        ssim, mean, p99, folded = g["ssim"], g["displacement_mean_px_256"], g["displacement_p99_px_256"], g["folded_share"]
        frame = g["border_frame_share"]
        folded_text = "–" if folded["mean"] is None else f"{folded['mean']:.2%}"
        frame_text = "–" if frame is None else f"{frame:.1%}"
        lines.append(
            f"| {name} | {ssim['n']} | {_fmt(ssim['mean'], 4)} | {_fmt(ssim['min'], 4)} | {_fmt(mean['mean'], 3)} | "
            f"{_fmt(p99['median'], 3)} / {_fmt(p99['max'], 3)} | {_fmt(g['displacement_max_px_256'], 3)} | "
            f"{folded_text} | {frame_text} |"
        )
    lines += [
        "",
        "![histograms](histograms.png)",
        "",
        "Per image (pseudonymized output names only): `per_image.csv`. "
        "Header de-identification and burned-in text are not measured here.",
        "",
    ]
    return "\n".join(lines)
