"""Re-identification audit of a release (``monai-prichexy audit``): what the deformation bought, measured.

The steward's question: can someone who holds other, identified radiographs of a patient find
that patient in the release? The audit answers it on the steward's own data, with the attack
protocol of the benchmark (Packhäuser et al., MICCAI 2023, extended by DESIGN section 8):

1. Every original is paired with its anonymized copy (:class:`~.pairing.RunPairs`: the run's
   manifest and key). Patient identities come from the originals -- the DICOM ``PatientID``, or
   for other formats a regular expression on the relative path (default: the file name without
   its last ``_`` / ``-`` part, e.g. ``00000001_000.png`` -> ``00000001``). They and the paths
   stay in memory; nothing written names a patient or an input file.
2. The patients are split (seeded) into attacker-training, validation and test patients. A
   fresh attacker of each kind (:mod:`monai_prichexy.engines.attackers`: the paper's Siamese
   verifier, a metric-learning embedding, the pixel correlation) is trained on anonymized
   images of the training patients and tested on linking anonymized images of the test
   patients to the *other* original images of the same patient (verification AUC over
   same / different-patient pairs; precision@1 of retrieval, each query's own source excluded).
3. The same attack runs on the unaltered images and on a random warp of the same mean
   displacement (the batch generator's, measured on the originals, through the same operator
   and budget), so the steward sees what the learned deformation bought.
4. Headline: the worst case over the attackers (highest AUC), with bootstrap 95 % CIs over test
   patients; verdict: protective when the upper CI bound of the release's worst-case AUC is at
   most ``threshold`` (default 0.60; 0.5 = chance).

When too few patients have two or more images to train an attacker (``min_train_patients``),
the audit says so and uses the bundle's shipped verifier and metric attacker (trained on
kermany-pediatric-cxr) plus the pixel correlation, tested on every patient. With fewer than two
patients, or no patient with two images, patient linkage cannot be measured; the audit then
reports only how often a copy is linked to its *own* original (precision@1 of the copy among
all originals), which any small warp leaves high.

Outputs in the audit folder: ``audit.md``, ``summary.json`` and ``before_after.png`` (a few
images before / after / difference, titled by their pseudonymous output names).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .atomic import atomic_write, atomic_write_bytes
from .pairing import PairedFile, PairingError, RunPairs, check_out_dir

__all__ = [
    "add_audit_arguments",
    "AuditError",
    "AuditResult",
    "AUDIT_ATTACKERS",
    "DEFAULT_PATIENT_PATTERN",
    "DEFAULT_THRESHOLD",
    "patient_id",
    "build_audit",
]

#: verdict threshold on the worst-case verification AUC (upper 95 % CI bound)
DEFAULT_THRESHOLD = 0.60
#: patient id of a non-DICOM file: its name without the last ``_`` / ``-`` part
DEFAULT_PATIENT_PATTERN = r"([^/]+?)[-_][^/_-]*\.[^/.]+$"
#: fresh attackers of the audit (the Kermany CPU profile's, at the audit's image size)
AUDIT_ATTACKERS: dict[str, dict[str, Any]] = {
    "siamese": {"network": {"backbone": "resnet18", "embedding_dim": 128, "widen_factor": 0.5, "input_size": 64},
                "max_epochs": 6, "batch_size": 32, "lr": 1e-4, "patience": None, "select": "last"},
    "metric": {"network": {"backbone": "resnet10", "embedding_dim": 128, "widen_factor": 0.5, "input_size": 64},
               "max_epochs": 12, "batch_size": 64, "lr": 1e-3, "m_per_patient": 2,
               "augment": {"degrees": 5, "scale": 0.05, "translate": 0.04}},
    "pixel": {},
}
_SPLIT_FRACTIONS = {"train": 0.5, "val": 0.15, "test": 0.35}
_PAIRS = {"train": 800, "val": 400, "test": None}


def add_audit_arguments(parser: Any) -> None:
    """The audit's own options on an ``argparse`` parser (the CLI's ``audit`` command)."""
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="verdict threshold on the worst-case re-identification AUC, in [0.5, 1): protective when "
                        f"the upper 95 %% CI bound is at most this (default {DEFAULT_THRESHOLD})")
    parser.add_argument("--size", type=int, default=64, help="side in pixels the attackers see the images at (default 64)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="attack seeds (default: 0)")
    parser.add_argument("--patient-regex", default=None,
                        help="regular expression on each original's relative path whose first group is the patient id "
                        "(default: DICOM PatientID; other files: the file name without its last _ or - part)")
    parser.add_argument("--min-train-patients", type=int, default=20,
                        help="patients with two or more images needed among the training patients to train fresh "
                        "attackers; fewer: the shipped attack networks are used (default 20)")


class AuditError(RuntimeError):
    """The audit cannot be made (no manifest, wrong key, no patient ids, too little data)."""


@dataclass
class AuditResult:
    markdown: Path
    figure: Path
    summary_path: Path
    summary: dict[str, Any]


def patient_id(pair: PairedFile, pattern: re.Pattern[str] | None) -> str | None:
    """The patient of an original: DICOM ``PatientID`` (unless ``pattern``), else ``pattern``'s first group."""
    if pair.kind == "dicom" and pattern is None:
        import pydicom

        try:
            ds = pydicom.dcmread(pair.original, stop_before_pixels=True, specific_tags=["PatientID"])
        except Exception:  # noqa: BLE001 - an unreadable header leaves the file out
            return None
        value = str(ds.get("PatientID", "") or "").strip()
        return value or None
    match = (pattern or re.compile(DEFAULT_PATIENT_PATTERN)).search(pair.rel)
    if match is None:
        return None
    return match.group(1) if match.groups() else match.group(0)


# ---------------------------------------------------------------------------------- the data
class _AuditData:
    """Splits, verification pairs and pair groups of the audit's images (the interface of ``DataModule``)."""

    def __init__(self, names: list[str], patients: list[str], splits: dict[str, list[int]], seed: int) -> None:
        from ..data.pairs import sample_split_pairs
        from ..data.records import ImageRecord

        self._records = {
            s: [ImageRecord(names[i], patients[i], 0, np.zeros(1, np.float32)) for i in idx] for s, idx in splits.items()
        }
        with warnings.catch_warnings():  # "asked for N positive pairs but only M exist": small archives use all
            warnings.simplefilter("ignore", UserWarning)
            self._pairs = sample_split_pairs(self._records, {s: _PAIRS.get(s) for s in splits}, seed=seed)

    def pairs(self, split: str):
        return self._pairs[split]

    def pair_groups(self, split: str) -> np.ndarray:
        from ..data.pairs import pair_patient_ids

        return np.array([a for a, _ in pair_patient_ids(self._pairs[split], self._records[split])])


def _split_patients(patients: list[str], seed: int) -> dict[str, list[int]]:
    """Image indices per split; patients with two or more images and single-image patients are split alike."""
    by_patient: dict[str, list[int]] = {}
    for i, p in enumerate(patients):
        by_patient.setdefault(p, []).append(i)
    rng = np.random.default_rng(seed)
    out: dict[str, list[int]] = {s: [] for s in _SPLIT_FRACTIONS}
    for multi in (True, False):
        group = sorted(p for p, idx in by_patient.items() if (len(idx) >= 2) == multi)
        order = [group[k] for k in rng.permutation(len(group))]
        n_train = int(round(_SPLIT_FRACTIONS["train"] * len(order)))
        n_val = int(round(_SPLIT_FRACTIONS["val"] * len(order)))
        for k, p in enumerate(order):
            split = "train" if k < n_train else "val" if k < n_train + n_val else "test"
            out[split].extend(by_patient[p])
    return {s: sorted(idx) for s, idx in out.items()}


def _multi_patients(patients: list[str], idx: list[int]) -> int:
    counts: dict[str, int] = {}
    for i in idx:
        counts[patients[i]] = counts.get(patients[i], 0) + 1
    return sum(1 for c in counts.values() if c >= 2)


# ---------------------------------------------------------------------------------- the numbers
def _p_at_1_hits(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query (own source excluded): hit at rank 1 with pessimistic ties; and which queries count."""
    s = scores.astype(np.float64).copy()
    np.fill_diagonal(s, -np.inf)
    same = ids[:, None] == ids[None, :]
    np.fill_diagonal(same, False)
    valid = same.any(axis=1)
    best_rel = np.where(same, s, -np.inf).max(axis=1)
    other = ~same
    np.fill_diagonal(other, False)
    best_irr = np.where(other, s, -np.inf).max(axis=1)
    return (best_rel > best_irr)[valid], ids[valid]


def _bootstrap(scores: np.ndarray, data: _AuditData, ids: np.ndarray, index: dict[str, int], n: int, seed: int) -> dict:
    """Point values and 95 % percentile CIs of pair AUC and P@1, resampling test patients."""
    from sklearn.metrics import roc_auc_score

    pairs = data.pairs("test")
    i1 = np.array([index[p[0]] for p in pairs], dtype=np.int64)
    i2 = np.array([index[p[1]] for p in pairs], dtype=np.int64)
    y = np.array([int(p[2]) for p in pairs])
    pair_scores = scores[i1, i2]
    groups = data.pair_groups("test")
    hits, hit_ids = _p_at_1_hits(scores, ids)
    out: dict[str, Any] = {"auc_pair": None, "auc_pair_ci": None, "precision_at_1": None, "precision_at_1_ci": None}
    if len(set(y.tolist())) == 2:
        out["auc_pair"] = float(roc_auc_score(y, pair_scores))
    if hits.size:
        out["precision_at_1"] = float(hits.mean())
    patients = np.unique(ids)
    rng = np.random.default_rng(seed)
    aucs, p1s = [], []
    for _ in range(n):
        draw = rng.choice(patients, size=patients.size, replace=True)
        weight = dict(zip(*np.unique(draw, return_counts=True)))
        w_pairs = np.array([weight.get(g, 0) for g in groups], dtype=np.float64)
        keep = w_pairs > 0
        if out["auc_pair"] is not None and len(set(y[keep].tolist())) == 2:
            aucs.append(roc_auc_score(y[keep], pair_scores[keep], sample_weight=w_pairs[keep]))
        w_hits = np.array([weight.get(g, 0) for g in hit_ids], dtype=np.float64)
        if w_hits.sum() > 0:
            p1s.append(float((hits * w_hits).sum() / w_hits.sum()))
    if aucs:
        out["auc_pair_ci"] = [float(np.percentile(aucs, 2.5)), float(np.percentile(aucs, 97.5))]
    if p1s:
        out["precision_at_1_ci"] = [float(np.percentile(p1s, 2.5)), float(np.percentile(p1s, 97.5))]
    return out


def _source_linkage(scores: np.ndarray) -> float:
    """Share of copies whose own original scores highest among all originals (pessimistic ties)."""
    s = scores.astype(np.float64)
    own = np.diag(s)
    masked = s.copy()
    np.fill_diagonal(masked, -np.inf)
    return float((own > masked.max(axis=1)).mean()) if s.shape[0] > 1 else 1.0


# ---------------------------------------------------------------------------------- attacks
def _shipped_attackers(device: Any) -> tuple[dict[str, Any], dict[str, str]]:
    from ..engines.attackers import MetricAttacker, PixelAttacker, SiameseAttacker
    from ..networks import EmbeddingNet, SiameseVerifier
    from ..weights import load_network, sha256_file
    from ..bundle_files import shipped_network

    attackers: dict[str, Any] = {}
    shas: dict[str, str] = {}
    for name, cls, network_cls in (("siamese", SiameseAttacker, SiameseVerifier), ("metric", MetricAttacker, EmbeddingNet)):
        path, expected = shipped_network("verifier" if name == "siamese" else "metric")
        net, _ = load_network(path, expected_sha256=expected)
        if not isinstance(net, network_cls):
            raise AuditError(f"{path}: holds a {type(net).__name__}, not a {network_cls.__name__}")
        attacker = cls(device=device, progress=False)
        attacker.network = net.to(device).eval()
        attackers[name] = attacker
        shas[name] = sha256_file(path)
    attackers["pixel"] = PixelAttacker()
    return attackers, shas


def _condition(release: dict[str, Any], real: dict[str, Any], data: _AuditData, *, trained: bool, seeds: list[int],
               shipped: dict[str, Any] | None, settings: dict[str, Any], device: Any, progress: bool,
               n_bootstrap: int) -> dict[str, Any]:
    """Every attacker on one condition (release / unaltered / random warp): per attacker and the worst case."""
    from ..engines.attack import attack_release, score_attack, summarise_attacks

    test_real, test_anon = real["test"], release["test"]
    per_attacker: dict[str, list[dict[str, Any]]] = {}
    cis: dict[str, Any] = {}
    for seed in seeds:
        if trained:
            results = attack_release(release, real, data, seed, settings, "test", device, progress, keep_scores=True)
        else:
            results = {}
            for name, attacker in (shipped or {}).items():
                scores = attacker.scores(test_anon.images, test_real.images)
                results[name] = {**score_attack(scores, data, test_real, "test"), "seed": seed, "trained": False,
                                 "scores": scores}
        for name, result in results.items():
            scores = result.pop("scores")
            per_attacker.setdefault(name, []).append(result)
            if seed == seeds[0]:  # CIs of the first seed's scores (bootstrap over test patients)
                boot = _bootstrap(scores, data, test_real.patient_ids, test_real.index, n_bootstrap, seed)
                cis[name] = {"auc_pair_ci": boot["auc_pair_ci"], "precision_at_1_ci": boot["precision_at_1_ci"],
                             "source_linkage_p_at_1": _source_linkage(scores)}
    summary = summarise_attacks(per_attacker, seeds)
    worst = summary["worst_case"]
    return {
        "worst_case": {
            "attacker": worst["auc_pair"]["attacker"],
            "auc_pair": worst["auc_pair"]["mean"],
            "auc_pair_ci": cis[worst["auc_pair"]["attacker"]]["auc_pair_ci"],
            "precision_at_1_attacker": worst["precision_at_1"]["attacker"],
            "precision_at_1": worst["precision_at_1"]["mean"],
            "precision_at_1_ci": cis[worst["precision_at_1"]["attacker"]]["precision_at_1_ci"],
            "source_linkage_p_at_1": max(c["source_linkage_p_at_1"] for c in cis.values()),
        },
        "attackers": {
            name: {"auc_pair": r["auc_pair"]["mean"], "auc_patient": r["auc_patient"]["mean"],
                   "precision_at_1": r["precision_at_1"]["mean"], "map_at_r": r["map_at_r"]["mean"], **cis[name]}
            for name, r in summary["attackers"].items()
        },
    }


# ---------------------------------------------------------------------------------- the audit
def _views(pairs: list[PairedFile], size: int, generator: Any, n_pictures: int, progress: bool):
    """One pass over the files, memory bounded (no full-size view is kept).

    Returns the originals and the copies at ``size``, the batch generator's displacement
    statistics on the originals' 256-px views (None without a generator) and the first
    ``n_pictures`` (original, copy) pairs at 256 px for the picture.
    """
    import torch
    from tqdm.auto import tqdm

    from ..metrics.displacement import DisplacementAccumulator
    from .report import load_view, network_input

    originals, anonymized, pictures, accumulator = [], [], [], None
    with torch.no_grad():
        for k, pair in enumerate(tqdm(pairs, unit="image", desc="read", disable=not progress, dynamic_ncols=True)):
            view, copy = load_view(pair.original, pair.kind), load_view(pair.anonymized, pair.kind)
            originals.append(network_input(view, size)[0])
            anonymized.append(network_input(copy, size)[0])
            if generator is not None or k < n_pictures:
                x = network_input(view, 256)
            if generator is not None:
                if accumulator is None:
                    accumulator = DisplacementAccumulator(generator.working_size, generator.frame_px(x.shape[-1]))
                accumulator.update(generator.displacement(x.to(next(generator.parameters()).device)).cpu())
            if k < n_pictures:
                pictures.append((x[0], network_input(copy, 256)[0]))
    stats = None if accumulator is None else accumulator.compute()
    return torch.stack(originals), torch.stack(anonymized), stats, pictures


def _random_warp(pairs: list[PairedFile], generator: Any, stats: dict[str, Any], size: int, seed: int) -> Any:
    """A random warp of the generator's mean displacement on each original (read again, at native size)."""
    import torch

    from ..engines.anonymizers import RandomDeformation
    from .report import load_view, network_input

    work = generator.working_size
    control = RandomDeformation(stats["interior"]["mean_normalised"], smoothing=generator.smoothing, seed=seed,
                                working_size=None if work is None else int(work[0]), budget_px=generator.budget_px)
    with torch.no_grad():
        warped = [network_input(control(torch.as_tensor(load_view(pair.original, pair.kind), dtype=torch.float32)
                                        [None, None])[0, 0].numpy(), size)[0] for pair in pairs]
    return torch.stack(warped)


def build_audit(
    originals: str | os.PathLike,
    anonymized: str | os.PathLike,
    out_dir: str | os.PathLike,
    key: Any,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    size: int = 64,
    seeds: tuple[int, ...] | list[int] = (0,),
    patient_pattern: str | None = None,
    min_train_patients: int = 20,
    weights: str | os.PathLike | None = None,
    weights_sha256: str | None = None,
    device: Any = "cpu",
    n_bootstrap: int = 1000,
    n_pictures: int = 4,
    progress: bool = True,
    attackers: dict[str, dict[str, Any]] | None = None,
) -> AuditResult:
    """Make the audit (see the module docstring) and write it into ``out_dir``.

    ``attackers``: the fresh attackers' settings (default :data:`AUDIT_ATTACKERS`).
    """
    import torch

    from ..engines.release import SplitImages
    from .report import batch_generator

    originals, anonymized, out_dir = Path(originals), Path(anonymized), Path(out_dir)
    if not 0.5 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0.5, 1), got {threshold}")
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("at least one seed is needed")
    try:
        pattern = None if patient_pattern is None else re.compile(patient_pattern)
    except re.error as err:
        raise ValueError(f"--patient-regex is not a regular expression: {err}") from None
    try:
        run = RunPairs(originals, anonymized, key)
        check_out_dir(out_dir, originals, anonymized)
    except PairingError as err:
        raise AuditError(str(err)) from None
    device = torch.device(device)
    settings = {name: dict(value) for name, value in (attackers or AUDIT_ATTACKERS).items()}

    pairs, patients = [], []
    for pair in run:
        pid = patient_id(pair, pattern)
        if pid is None:
            run.counts["no patient id (left out)"] += 1
            continue
        pairs.append(pair)
        patients.append(pid)
    if not pairs:
        raise AuditError(f"no original under {originals} could be paired with an anonymized copy in {anonymized} "
                         "and given a patient id")
    generator, displacement_note = batch_generator(run.settings, weights, weights_sha256, device)
    x_real, x_anon, displacement, pictures = _views(pairs, size, generator, max(1, n_pictures), progress)
    x_random = None if generator is None else _random_warp(pairs, generator, displacement, size, seeds[0])
    names = [p.output for p in pairs]
    ids = np.array(patients, dtype=object)

    n_patients = len(set(patients))
    n_multi = _multi_patients(patients, list(range(len(patients))))
    splits = _split_patients(patients, seeds[0])
    trained = _multi_patients(patients, splits["train"]) >= min_train_patients and _multi_patients(patients, splits["test"]) >= 2
    notes: list[str] = []
    shipped_shas: dict[str, str] = {}
    shipped = None
    if not trained:
        notes.append(f"too few patients with two or more images to train an attacker ({n_multi} in all; the audit "
                     f"needs {min_train_patients} among its training patients): the bundle's shipped attack networks "
                     "were used, tested on every patient")
        splits = {"train": [], "val": [], "test": list(range(len(pairs)))}
        shipped, shipped_shas = _shipped_attackers(device)
    data = _AuditData(names, patients, {s: idx for s, idx in splits.items() if idx}, seeds[0])
    patient_linkage = n_patients >= 2 and _multi_patients(patients, splits["test"]) >= 1
    if not patient_linkage:
        notes.append("patient linkage cannot be measured: the test images hold fewer than two patients or no patient "
                     "with two images; only the linkage of each copy to its own original is reported")

    def split_images(images: Any) -> dict[str, SplitImages]:
        return {s: SplitImages(images[idx], torch.zeros(len(idx), 1), ids[idx], [names[i] for i in idx])
                for s, idx in splits.items() if idx}

    real = split_images(x_real)
    conditions = {"release": split_images(x_anon), "unaltered": real}
    if x_random is not None:
        conditions["random_warp"] = split_images(x_random)
    results: dict[str, Any] = {}
    for name, release in conditions.items():
        if patient_linkage:
            results[name] = _condition(release, real, data, trained=trained, seeds=seeds, shipped=shipped,
                                       settings=settings, device=device, progress=progress, n_bootstrap=n_bootstrap)
        else:
            results[name] = _source_only(release["test"], real["test"], shipped)

    worst = results["release"]["worst_case"]
    summary: dict[str, Any] = {
        "tool": f"monai-prichexy {__version__}",
        "anonymization": {k: run.settings.get(k) for k in ("mu", "smoothing", "working_size", "weights_sha256")},
        "images": len(pairs),
        "patients": n_patients,
        "patients_with_two_or_more_images": n_multi,
        "counts": dict(run.counts),
        "attackers": "trained afresh on the release (training patients)" if trained else "shipped networks",
        "shipped_network_sha256": shipped_shas,
        "attack_settings": settings if trained else None,
        "image_size": size,
        "seeds": seeds,
        "split_images": {s: len(idx) for s, idx in splits.items()},
        "threshold": threshold,
        "conditions": results,
        "displacement": displacement,
        "displacement_note": displacement_note,
        "notes": notes,
        "verdict": _verdict(worst, threshold, results.get("random_warp"), patient_linkage),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = _pictures(out_dir / "before_after.png", pictures, names)
    summary_path = out_dir / "summary.json"
    atomic_write_bytes(summary_path, (json.dumps(summary, indent=2, sort_keys=True, default=_json) + "\n").encode())
    markdown = out_dir / "audit.md"
    atomic_write_bytes(markdown, _markdown(summary).encode("utf-8"))
    return AuditResult(markdown=markdown, figure=figure, summary_path=summary_path, summary=summary)


def _source_only(release: Any, real: Any, shipped: dict[str, Any] | None) -> dict[str, Any]:
    from ..engines.attackers import PixelAttacker

    attackers = shipped or {"pixel": PixelAttacker()}
    linkage = {name: _source_linkage(a.scores(release.images, real.images)) for name, a in attackers.items()}
    return {"worst_case": {"attacker": max(linkage, key=linkage.get), "auc_pair": None, "auc_pair_ci": None,
                           "precision_at_1": None, "precision_at_1_ci": None,
                           "source_linkage_p_at_1": max(linkage.values())},
            "attackers": {name: {"source_linkage_p_at_1": v} for name, v in linkage.items()}}


def _json(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _verdict(worst: dict[str, Any], threshold: float, control: dict[str, Any] | None, measurable: bool) -> dict[str, Any]:
    if not measurable or worst["auc_pair"] is None:
        return {"protective": None, "text": "NOT MEASURED: too few patients to measure patient linkage on this release"}
    upper = worst["auc_pair_ci"][1] if worst["auc_pair_ci"] else worst["auc_pair"]
    protective = bool(upper <= threshold)
    text = (f"{'PROTECTIVE' if protective else 'NOT PROTECTIVE'}: worst-case re-identification AUC "
            f"{100 * worst['auc_pair']:.1f} % (95 % CI upper bound {100 * upper:.1f} %, {worst['attacker']} attacker) "
            f"{'<=' if protective else '>'} threshold {100 * threshold:.0f} %")
    if control is not None and control["worst_case"]["auc_pair"] is not None:
        c = control["worst_case"]["auc_pair"]
        text += f"; a random warp of the same displacement: {100 * c:.1f} %"
    return {"protective": protective, "auc_upper": upper, "text": text}


def _pictures(path: Path, pictures: list[tuple[Any, Any]], names: list[str]) -> Path:
    """Before / after / difference at 256 x 256 for the first images, titled by their output pseudonyms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(pictures)
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.6 * n), squeeze=False)
    for row, (before, after) in enumerate(pictures):
        a, b = before[0].numpy(), after[0].numpy()
        diff = b - a
        limit = max(float(np.abs(diff).max()), 1e-6)
        for ax, img, title, kwargs in (
            (axes[row, 0], a, "before", {"cmap": "gray", "vmin": 0, "vmax": 1}),
            (axes[row, 1], b, "after", {"cmap": "gray", "vmin": 0, "vmax": 1}),
            (axes[row, 2], diff, f"after - before (±{limit:.3f})", {"cmap": "coolwarm", "vmin": -limit, "vmax": limit}),
        ):
            ax.imshow(img, **kwargs)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
        axes[row, 0].text(0, -0.12, Path(names[row]).name, transform=axes[row, 0].transAxes, fontsize=6, va="top")
    fig.suptitle("audit: a few images before / after anonymization (pseudonymous output names)", fontsize=9)
    fig.tight_layout()

    def save(handle) -> None:
        fig.savefig(handle, format="png", dpi=110)

    atomic_write(path, save)
    plt.close(fig)
    return path


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _ci(ci: list[float] | None) -> str:
    return "" if not ci else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _markdown(summary: dict[str, Any]) -> str:
    lines = [
        "# Re-identification audit",
        "",
        f"**Verdict: {summary['verdict']['text']}**",
        "",
        f"{summary['images']} images of {summary['patients']} patients ({summary['patients_with_two_or_more_images']} "
        f"with two or more images); images at {summary['image_size']} px; attackers: {summary['attackers']}; "
        f"seeds {summary['seeds']}; split (images) {summary['split_images']}.",
        "",
        "| condition | worst-case AUC [95 % CI] (attacker) | worst-case P@1 [95 % CI] (attacker) | copy linked to its own "
        "original (P@1) |",
        "|---|---|---|---|",
    ]
    labels = {"release": "this release", "unaltered": "unaltered originals", "random_warp": "random warp, same displacement"}
    for name, result in summary["conditions"].items():
        w = result["worst_case"]
        p1_by = f" ({w['precision_at_1_attacker']})" if w.get("precision_at_1_attacker") else ""
        lines.append(f"| {labels.get(name, name)} | {_pct(w['auc_pair'])}{_ci(w['auc_pair_ci'])} ({w['attacker']}) | "
                     f"{_pct(w['precision_at_1'])}{_ci(w['precision_at_1_ci'])}{p1_by} | {_pct(w['source_linkage_p_at_1'])} |")
    lines += ["", "AUC: verification of (anonymized image, another original of a patient) pairs, 50 % = chance; P@1: "
              "an anonymized image's best match among the test originals (its own original excluded) is the same "
              "patient; CIs: bootstrap over test patients. The last column is what an attacker holding the very "
              "originals achieves.", ""]
    disp = summary.get("displacement")
    if disp:
        i = disp["interior"]
        lines.append(f"Displacement of the batch's generator on the originals (px at 256 x 256, outside the border "
                     f"frame): mean {i['mean_px_256']:.3f}, 99th percentile {i['p99_px_256']:.3f}, max "
                     f"{i['max_px_256']:.3f}; folded pixels {100 * disp['fold_share']:.2f} %.")
    else:
        lines.append(f"Displacement: {summary['displacement_note']} (no random-warp control).")
    lines += [""] + [f"- {note}" for note in summary["notes"]]
    lines += ["", "Per attacker (seed mean):", "", "| condition | attacker | AUC (pair) | P@1 | own-original P@1 |",
              "|---|---|---|---|---|"]
    for name, result in summary["conditions"].items():
        for attacker, r in result["attackers"].items():
            lines.append(f"| {labels.get(name, name)} | {attacker} | {_pct(r.get('auc_pair'))} | "
                         f"{_pct(r.get('precision_at_1'))} | {_pct(r.get('source_linkage_p_at_1'))} |")
    lines += ["", "![before / after / difference](before_after.png)", "",
              f"_{summary['tool']}; patient identities were read from the originals and kept in memory only._", ""]
    return "\n".join(lines)
