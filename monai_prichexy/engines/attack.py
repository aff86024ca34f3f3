"""Stage 6: the re-identification attacks and the utility measure (the evaluation protocol).

Privacy (Packhäuser et al., MICCAI 2023, extended as DESIGN section 8 asks): the anonymizer
makes a release (every train / validation / test image anonymized once; random anonymizers
draw once per image, seeded per attack seed); each attacker of :mod:`~monai_prichexy.engines.attackers`
(the paper's Siamese verifier, a metric-learning embedding, the pixel correlation) is trained
afresh per seed on the anonymized training images and tested on (anonymized, real) test pairs:
verification ROC AUC, pair-weighted (the paper's number) and patient-weighted (every anchor
patient counts once; data README caveat 5), and retrieval (anonymized queries ranking the real
test images; mAP@R and precision@1, each query's own source excluded). The headline of a row
is the **worst case over the attackers**: the attacker with the highest mean AUC over seeds;
per seed, the worst case is the largest AUC of that seed.

Utility: the ORIGINAL classifier (trained on real images, never retrained) on the anonymized
test images, scored by the data set's :class:`~monai_prichexy.labels.LabelSchema`: the mean of
the per-class AUCs and the schema's binary question (any finding; pneumonia vs normal), each
with a bootstrap CI and a flag when the CI contains chance.

Image change: SSIM and mean absolute change between anonymized and real test images; for
deformation anonymizers the displacement statistics and folds
(:mod:`monai_prichexy.metrics.displacement`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..metrics import mean_std, retrieval_metrics, utility_aucs, verification_auc
from ..metrics.displacement import DisplacementAccumulator, ssim_and_change
from ..networks import SiameseVerifier
from ..networks.deformation import identity_grid, warp
from ..weights import load_network
from .anonymizers import build_anonymizer
from .attackers import ATTACKERS, AttackContext, build_attacker
from .data import DataModule
from .handlers import write_json
from .release import SplitImages, anonymize_images, load_split_images
from .utils import get_logger, resolve_device, unwrap

__all__ = [
    "AnonymizerLike",
    "DEFAULT_ATTACKERS",
    "RANDOM_KINDS",
    "make_anonymizer",
    "make_release",
    "attack_release",
    "summarise_attacks",
    "score_attack",
    "evaluate_verification",
    "evaluate_utility",
    "run_attack",
    "evaluate_anonymizer",
]

logger = get_logger("attack")
AnonymizerLike = nn.Module | Mapping[str, Any] | None

#: anonymizer kinds that draw new noise for every image (one release per attack seed)
RANDOM_KINDS = ("dppix", "random_deformation")

#: every evaluation runs these attackers unless told otherwise (settings per attacker may be given)
DEFAULT_ATTACKERS: tuple[str, ...] = ("siamese", "metric", "pixel")


def make_anonymizer(spec: AnonymizerLike, seed: int, device: torch.device) -> nn.Module | None:
    """A module as is; a mapping is built with :func:`build_anonymizer` (its seed defaults to ``seed``); None = real."""
    if spec is None:
        return None
    if isinstance(spec, nn.Module):
        return spec.to(device).eval()
    spec = dict(spec)
    if spec.get("kind", "none") == "none":
        return None
    spec.setdefault("seed", seed)
    spec["device"] = device
    return build_anonymizer(**spec)


def _is_random(spec: AnonymizerLike) -> bool:
    return isinstance(spec, Mapping) and spec.get("kind") in RANDOM_KINDS


@torch.no_grad()
def _anonymize_with_field(
    anonymizer: nn.Module, images: torch.Tensor, accumulator: DisplacementAccumulator, batch_size: int, device: torch.device
) -> torch.Tensor:
    """Deform every image once and record the displacement of exactly that deformation."""
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(device)
        grid = anonymizer.sampling_grid(x)
        accumulator.update(grid - identity_grid(grid.shape[-2], grid.shape[-1], device=grid.device, dtype=grid.dtype))
        out.append(warp(x, grid).float().cpu())
    return torch.cat(out).clamp_(0.0, 1.0)


def make_release(
    anonymizer: nn.Module | None,
    real: Mapping[str, SplitImages],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    measure_split: str = "test",
) -> tuple[dict[str, SplitImages], dict[str, Any] | None]:
    """Anonymize every split once: ``({split: anonymized SplitImages}, displacement statistics or None)``.

    Displacement statistics are measured on ``measure_split`` for deformation anonymizers
    (those with a ``sampling_grid``).
    """
    device = resolve_device(device)
    released, stats = {}, None
    for split, images in real.items():
        if anonymizer is not None and split == measure_split and hasattr(anonymizer, "sampling_grid"):
            side = max(images.images.shape[-2:])
            work = getattr(anonymizer, "working_size", None)
            accumulator = DisplacementAccumulator(work, anonymizer.frame_px(side))
            anon = _anonymize_with_field(anonymizer, images.images, accumulator, batch_size, device)
            stats = accumulator.compute()
        else:
            anon = anonymize_images(anonymizer, images.images, batch_size, device)
        released[split] = images.with_images(anon)
    return released, stats


def score_attack(scores: np.ndarray, data: DataModule, real_test: SplitImages, split: str = "test") -> dict[str, Any]:
    """Verification AUC (pair- and patient-weighted) and retrieval of a ``(Q, G)`` score matrix.

    Rows are the anonymized test images (queries), columns the real ones (gallery), both in
    ``real_test`` order; pairs are the data module's test pairs ``(anonymized image1, real image2)``.
    """
    i1, i2, same = real_test.pair_indices(data.pairs(split))
    pair_scores = scores[i1, i2]
    groups = data.pair_groups(split)
    ids = real_test.patient_ids
    retrieval = retrieval_metrics(None, ids, None, ids, scores=scores)
    return {
        "auc_pair": verification_auc(pair_scores, same, weighting="pair"),
        "auc_patient": verification_auc(pair_scores, same, groups=groups, weighting="patient"),
        "map_at_r": retrieval.map_at_r,
        "precision_at_1": retrieval.precision_at_1,
        "n_pairs": int(len(same)),
        "n_positive_pairs": int(same.sum()),
        "n_patients_with_positive_pairs": int(len(set(groups[same == 1]))),
        "n_queries": retrieval.n_queries,
    }


@torch.no_grad()
def evaluate_verification(
    verifier: SiameseVerifier,
    anonymizer: nn.Module | None,
    data: DataModule,
    split: str = "test",
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """A trained Siamese verifier on (anonymized, real) pairs of ``split``: AUCs and retrieval.

    Kept for evaluating a given network (e.g. a shipped attacker); :func:`run_attack` trains them.
    """
    from .attackers import SiameseAttacker

    device = resolve_device(device)
    real = load_split_images(data, split, batch_size)
    anon = anonymize_images(anonymizer, real.images, batch_size, device)
    attacker = SiameseAttacker(device=device)
    attacker.network = unwrap(verifier).to(device).eval()
    return score_attack(attacker.scores(anon, real.images), data, real, split)


def _attacker_settings(attackers: Sequence[str] | Mapping[str, Mapping[str, Any] | None] | None,
                       siamese_defaults: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    names = DEFAULT_ATTACKERS if attackers is None else attackers
    settings = {n: {} for n in names} if not isinstance(names, Mapping) else {n: dict(v or {}) for n, v in names.items()}
    unknown = sorted(set(settings) - set(ATTACKERS))
    if unknown:
        raise ValueError(f"unknown attacker(s) {unknown}; expected some of {sorted(ATTACKERS)}")
    if not settings:
        raise ValueError("at least one attacker is needed")
    if "siamese" in settings:
        settings["siamese"] = {**siamese_defaults, **settings["siamese"]}
    return settings


def _summarise(per_seed: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys:
        mean, std = mean_std([float(r[key]) for r in per_seed])
        out[key] = {"mean": mean, "std": std}
    return out


_KEYS = ("auc_pair", "auc_patient", "map_at_r", "precision_at_1")


def _worst_case(by_attacker: Mapping[str, Mapping[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """Per metric: the attacker with the highest mean, and per seed the highest value."""
    out: dict[str, Any] = {}
    for key in _KEYS:
        name = max(by_attacker, key=lambda a: by_attacker[a][key]["mean"])
        out[key] = {**by_attacker[name][key], "attacker": name}
    out["per_seed"] = []
    for k, seed in enumerate(seeds):
        rec: dict[str, Any] = {"seed": int(seed)}
        for key in _KEYS:
            values = {a: float(r["per_seed"][k][key]) for a, r in by_attacker.items()}
            best = max(values, key=values.get)
            rec[key], rec[f"{key}_attacker"] = values[best], best
        out["per_seed"].append(rec)
    return out


def attack_release(
    release: Mapping[str, SplitImages],
    real: Mapping[str, SplitImages],
    data: Any,
    seed: int,
    settings: Mapping[str, Mapping[str, Any]],
    split: str = "test",
    device: str | torch.device = "cpu",
    progress: bool = True,
    keep_scores: bool = False,
) -> dict[str, dict[str, Any]]:
    """Train each attacker of ``settings`` on one release (one seed) and score its test split.

    ``release`` and ``real`` map ``"train"``, ``"val"`` and ``split`` to the anonymized and the
    real images; ``data`` gives the verification pairs of each split (``pairs(split)``,
    ``pair_groups(split)``, as :class:`DataModule`). Returns ``{attacker: score_attack(...) + fit}``,
    with the ``(anonymized, real)`` score matrix under ``"scores"`` when ``keep_scores``.
    """
    train_pairs = real["train"].pair_indices(data.pairs("train"))
    val_pairs = real["val"].pair_indices(data.pairs("val"))
    ctx = AttackContext(release["train"], release["val"], real["val"], train_pairs, val_pairs)
    out: dict[str, dict[str, Any]] = {}
    for name, kwargs in settings.items():
        attacker = build_attacker(name, device=device, progress=progress, **kwargs)
        fit = attacker.fit(ctx, seed)
        scores = attacker.scores(release[split].images, real[split].images)
        result = score_attack(scores, data, real[split], split)
        result.update(seed=seed, **fit)
        if keep_scores:
            result["scores"] = scores
        logger.info("attack %s seed %d: verification AUC %.4f (pair) / %.4f (patient), mAP@R %.4f, P@1 %.4f",
                    name, seed, result["auc_pair"], result["auc_patient"], result["map_at_r"], result["precision_at_1"])
        out[name] = result
    return out


def summarise_attacks(per_attacker: Mapping[str, Sequence[Mapping[str, Any]]], seeds: Sequence[int]) -> dict[str, Any]:
    """Per attacker the mean / std over seeds, and the worst case (see :func:`run_attack`'s result)."""
    by_attacker = {name: {"per_seed": list(rows), **_summarise(rows, _KEYS)} for name, rows in per_attacker.items()}
    worst = _worst_case(by_attacker, seeds)
    return {
        "seeds": [int(s) for s in seeds],
        "attackers": by_attacker,
        "worst_case": worst,
        **{key: worst[key] for key in _KEYS},
        "per_seed": worst["per_seed"],
    }


def run_attack(
    anonymizer: AnonymizerLike,
    data: DataModule,
    seeds: Sequence[int] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    verifier_kwargs: Mapping[str, Any] | None = None,
    max_epochs: int = 100,
    batch_size: int = 32,
    lr: float = 1e-4,
    patience: int | None = 5,
    device: str | torch.device = "cpu",
    ckpt_dir: str | os.PathLike | None = None,
    split: str = "test",
    progress: bool = True,
    select: str = "val_loss",
    attackers: Sequence[str] | Mapping[str, Mapping[str, Any] | None] | None = None,
    real: Mapping[str, SplitImages] | None = None,
    classifier: nn.Module | None = None,
    n_bootstrap: int = 1000,
) -> dict[str, Any]:
    """The privacy attacks over several seeds: per attacker, per seed, and the worst case.

    Args:
        anonymizer: a module, a :func:`build_anonymizer` spec (random kinds get each attack's
            seed unless the spec fixes one), or None (real images).
        data: the data module (``train``/``val`` for the attackers, ``split`` to test).
        seeds: attack seeds (10 in the paper).
        verifier_kwargs, max_epochs, batch_size, lr, patience, select: the Siamese attacker's
            network and training (the paper's protocol; see :class:`SiameseAttacker`).
        device: where the attackers train.
        ckpt_dir: unused (attackers are kept in memory); accepted for older configs.
        split: the test split.
        progress: progress bars.
        attackers: names (:data:`DEFAULT_ATTACKERS` by default) or ``{name: settings}``.
        real: the splits already in memory (:func:`load_split_images`), to share across rows.
        classifier: when given, the utility of the first seed's release is measured as well
            (``result["utility"]``).
        n_bootstrap: bootstrap resamples of the utility CIs.

    Returns:
        ``{"seeds", "attackers": {name: {"per_seed", "auc_pair": {"mean", "std"}, ...}},
        "worst_case": {...}, "auc_pair", "auc_patient", "map_at_r", "precision_at_1", "per_seed"
        (the worst case again, for tables), "image_change", "displacement", "weighting"}``.
    """
    device = resolve_device(device)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("at least one attack seed is needed")
    siamese = {"network": dict(verifier_kwargs or {}), "max_epochs": max_epochs, "batch_size": batch_size, "lr": lr,
               "patience": patience, "select": select}
    settings = _attacker_settings(attackers, siamese)
    splits = ("train", "val", split)
    if real is None:
        real = {s: load_split_images(data, s) for s in dict.fromkeys(splits)}
    per_attacker: dict[str, list[dict[str, Any]]] = {name: [] for name in settings}
    release, displacement, change, utility = None, None, None, None
    for k, seed in enumerate(seeds):
        if release is None or _is_random(anonymizer):
            anon = make_anonymizer(anonymizer, seed, device)
            release, stats = make_release(anon, real, device=device, measure_split=split)
            if k == 0:
                displacement = stats
                change = ssim_and_change(release[split].images, real[split].images)
                if classifier is not None:
                    utility = evaluate_utility(classifier, release[split], data, n_bootstrap=n_bootstrap, seed=seed,
                                               device=device)
        for name, result in attack_release(release, real, data, seed, settings, split, device, progress).items():
            per_attacker[name].append(result)
    out = {
        **summarise_attacks(per_attacker, seeds),
        "attacker_settings": settings,
        "image_change": change,
        "displacement": displacement,
        "weighting": {
            "auc_pair": "every test pair counts once (the paper's number)",
            "auc_patient": "every anchor patient's positive and negative pairs weigh 1 each (data README caveat 5)",
            "worst_case": "per metric, the attacker with the highest mean over seeds; per seed, the highest value",
        },
    }
    if utility is not None:
        out["utility"] = utility
    return out


@torch.no_grad()
def evaluate_utility(
    classifier: nn.Module,
    anonymized: SplitImages | AnonymizerLike,
    data: DataModule,
    split: str = "test",
    batch_size: int = 64,
    n_bootstrap: int = 1000,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """The original classifier on anonymized images, scored by the data set's schema.

    Args:
        classifier: the classifier trained on real images.
        anonymized: the anonymized split (:class:`SplitImages`), or an anonymizer (module, spec
            or None) applied once to every image of ``split``.
        data: the data module (its schema says how to score).
    """
    device = resolve_device(device)
    classifier = unwrap(classifier).to(device).eval()
    if not isinstance(anonymized, SplitImages):
        real = load_split_images(data, split, batch_size)
        anonymized = real.with_images(anonymize_images(make_anonymizer(anonymized, seed, device), real.images,
                                                       batch_size, device))
    images = anonymized.images
    logits = torch.cat([classifier(images[i : i + batch_size].to(device)).float().cpu()
                        for i in range(0, len(images), batch_size)])
    probs = data.schema.probabilities(logits).numpy()
    return utility_aucs(probs, anonymized.labels.numpy(), data.schema, n_bootstrap=n_bootstrap, seed=seed)


def evaluate_anonymizer(
    anonymizer: AnonymizerLike,
    data: DataModule,
    classifier: nn.Module | str | os.PathLike,
    seeds: Sequence[int] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    verifier_kwargs: Mapping[str, Any] | None = None,
    max_epochs: int = 100,
    batch_size: int = 32,
    lr: float = 1e-4,
    patience: int | None = 5,
    n_bootstrap: int = 1000,
    split: str = "test",
    device: str | torch.device = "cpu",
    output_path: str | os.PathLike | None = None,
    ckpt_dir: str | os.PathLike | None = None,
    progress: bool = True,
    select: str = "val_loss",
    attackers: Sequence[str] | Mapping[str, Mapping[str, Any] | None] | None = None,
    real: Mapping[str, SplitImages] | None = None,
) -> dict[str, Any]:
    """The whole protocol for one anonymizer: :func:`run_attack` with the utility of its release.

    Args:
        classifier: the ORIGINAL classifier (a network or a checkpoint path).
        output_path: also write the result as JSON there.
        other arguments: see :func:`run_attack`.

    Returns:
        ``{"anonymizer": spec, "data": ..., "privacy": ..., "utility": ..., "image_change": ...,
        "displacement": ...}``.
    """
    if not isinstance(classifier, nn.Module):
        classifier, _ = load_network(classifier, network="AbnormalityClassifier")
    privacy = run_attack(
        anonymizer, data, seeds, verifier_kwargs, max_epochs, batch_size, lr, patience, device, ckpt_dir, split, progress,
        select, attackers=attackers, real=real, classifier=classifier, n_bootstrap=n_bootstrap,
    )
    utility = privacy.pop("utility")
    spec = {"kind": type(anonymizer).__name__} if isinstance(anonymizer, nn.Module) else _spec_json(anonymizer)
    result = {
        "anonymizer": spec,
        "data": data.describe(),
        "privacy": privacy,
        "utility": utility,
        "image_change": privacy.pop("image_change"),
        "displacement": privacy.pop("displacement"),
    }
    if output_path is not None:
        write_json(output_path, result)
    return result


def _spec_json(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """A spec without machine paths (checkpoints by file name)."""
    if not spec:
        return {"kind": "none"}
    return {k: (Path(v).name if k == "checkpoint" and v is not None else v) for k, v in spec.items() if k != "device"}
