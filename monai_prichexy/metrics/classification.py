"""Abnormality-classification AUCs, the utility metric of PriCheXy-Net.

Packhäuser et al., MICCAI 2023, Table 1 "classification": the original classifier is run on
anonymized test images and the mean of the 14 per-class ROC AUCs is reported with a 95 %
confidence interval from 1,000 bootstrap resamples of the test images.

On small test sets some classes have no positive (or no negative) test image; their AUC is
undefined. They are reported in ``skipped`` and left out of the mean, never averaged as 0.5.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from ignite.metrics import EpochMetric
from sklearn.metrics import roc_auc_score

from ..labels import CXR14_LABELS, LabelSchema

from .verification import _as_numpy

__all__ = [
    "CXR14_LABELS",
    "MeanAUCResult",
    "BinaryAUCResult",
    "mean_auc",
    "binary_auc",
    "binary_any_finding_auc",
    "within_chance",
    "utility_aucs",
    "MeanAUC",
    "BinaryAUC",
]

@dataclass
class MeanAUCResult:
    """Result of :func:`mean_auc`; all AUCs are fractions in [0, 1].

    Attributes:
        per_class: AUC of every valid class, by name.
        skipped: classes with only one class (all 0 or all 1) in the test targets.
        mean: mean of ``per_class`` (NaN when no class is valid).
        ci: ``(low, high)`` percentile bootstrap interval of ``mean``, or ``None``.
        ci_level: the confidence level of ``ci``.
        n_bootstrap: resamples drawn.
        n_bootstrap_valid: resamples in which at least one class was valid (used for ``ci``).
        n_images: number of test images.
    """

    per_class: dict[str, float]
    skipped: list[str]
    mean: float
    ci: tuple[float, float] | None = None
    ci_level: float = 0.95
    n_bootstrap: int = 0
    n_bootstrap_valid: int = 0
    n_images: int = 0
    bootstrap_means: np.ndarray | None = field(default=None, repr=False)


@dataclass
class BinaryAUCResult:
    """Result of :func:`binary_any_finding_auc`; AUCs are fractions in [0, 1].

    Attributes:
        auc: the point estimate.
        ci: ``(low, high)`` percentile bootstrap interval, or ``None``.
        ci_level: the confidence level of ``ci``.
        n_positive: images with at least one finding.
        n_negative: "No Finding" images.
        n_bootstrap: resamples drawn.
        n_bootstrap_valid: resamples holding both classes (used for ``ci``).
    """

    auc: float
    ci: tuple[float, float] | None = None
    ci_level: float = 0.95
    n_positive: int = 0
    n_negative: int = 0
    n_bootstrap: int = 0
    n_bootstrap_valid: int = 0
    bootstrap_aucs: np.ndarray | None = field(default=None, repr=False)


def _parse_probs_targets(probs: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    p = _as_numpy(probs, "probs")
    t = _as_numpy(targets, "targets")
    if p.ndim == 1:
        p = p[:, None]
    if t.ndim == 1:
        t = t[:, None]
    if p.ndim != 2 or t.ndim != 2:
        raise ValueError(f"probs and targets must be (N, C), got {tuple(p.shape)} and {tuple(t.shape)}.")
    if p.shape != t.shape:
        raise ValueError(f"probs and targets must have the same shape, got {tuple(p.shape)} and {tuple(t.shape)}.")
    if p.shape[0] == 0:
        raise ValueError("probs and targets are empty.")
    p = p.astype(np.float64)
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contain NaN or infinite values.")
    if not np.all(np.isin(t, (0, 1))):
        raise ValueError("targets must be binary (0/1 or bool) multi-label indicators.")
    return p, t.astype(np.int64)


def _parse_names(label_names: Sequence[str] | None, n_classes: int) -> list[str]:
    if label_names is None:
        if n_classes == len(CXR14_LABELS):
            return list(CXR14_LABELS)
        return [f"class_{i}" for i in range(n_classes)]
    names = [str(n) for n in label_names]
    if len(names) != n_classes:
        raise ValueError(f"label_names has {len(names)} names for {n_classes} columns.")
    return names


def _parse_bootstrap(n_bootstrap: int, ci: float) -> None:
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap}.")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci}.")


def _valid_columns(t: np.ndarray) -> np.ndarray:
    """Columns that hold both a positive and a negative."""
    return t.min(axis=0) != t.max(axis=0)


def _percentile_ci(values: np.ndarray, ci: float) -> tuple[float, float] | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    alpha = (1.0 - ci) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def mean_auc(
    probs: Any,
    targets: Any,
    label_names: Sequence[str] | None = None,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> MeanAUCResult:
    """Mean of the per-class ROC AUCs with a bootstrap CI (Packhäuser et al., MICCAI 2023).

    Classes whose test targets are all 0 or all 1 have no AUC: they are listed in
    ``skipped`` and excluded from the mean. The CI is a percentile bootstrap: resample the
    images (rows) with replacement ``n_bootstrap`` times; in every resample, average the AUCs
    of the classes that are valid *in that resample* (a rare class may lose all its positives);
    resamples where no class is valid are dropped (``n_bootstrap_valid`` counts the kept
    ones). Cost: about 10 ms per resample for 14 classes.

    Args:
        probs: ``(N, C)`` scores (probabilities or logits; only their order matters).
        targets: ``(N, C)`` 0/1 multi-label targets.
        label_names: ``C`` class names; defaults to :data:`CXR14_LABELS` when ``C == 14``.
        n_bootstrap: number of resamples; 0 disables the CI.
        ci: confidence level of the interval.
        seed: seed of the resampling (``numpy.random.default_rng``), for reproducible CIs.

    Returns:
        :class:`MeanAUCResult` (fractions in [0, 1]).
    """
    p, t = _parse_probs_targets(probs, targets)
    names = _parse_names(label_names, p.shape[1])
    _parse_bootstrap(n_bootstrap, ci)
    valid = _valid_columns(t)
    skipped = [n for n, v in zip(names, valid) if not v]
    if not valid.any():
        warnings.warn("mean_auc: no class has both positives and negatives; the mean AUC is NaN.", stacklevel=2)
        return MeanAUCResult({}, skipped, float("nan"), None, ci, int(n_bootstrap), 0, p.shape[0])
    aucs = np.atleast_1d(roc_auc_score(t[:, valid], p[:, valid], average=None))
    per_class = {n: float(a) for n, a in zip([n for n, v in zip(names, valid) if v], aucs)}
    mean = float(np.mean(aucs))

    boot = None
    interval = None
    n_valid = 0
    if n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        n = p.shape[0]
        boot = np.full(int(n_bootstrap), np.nan)
        for b in range(int(n_bootstrap)):
            idx = rng.integers(0, n, size=n)
            tb = t[idx]
            vb = _valid_columns(tb)
            if vb.any():
                boot[b] = float(np.mean(roc_auc_score(tb[:, vb], p[idx][:, vb], average=None)))
        n_valid = int(np.isfinite(boot).sum())
        interval = _percentile_ci(boot, ci)
    return MeanAUCResult(per_class, skipped, mean, interval, ci, int(n_bootstrap), n_valid, p.shape[0], boot)


def _any_finding(p: np.ndarray, t: np.ndarray, reduction: str) -> tuple[np.ndarray, np.ndarray]:
    if reduction == "max":
        score = p.max(axis=1)
    elif reduction == "noisy_or":
        if p.min() < 0.0 or p.max() > 1.0:
            raise ValueError('reduction="noisy_or" needs probabilities in [0, 1] (apply a sigmoid first).')
        score = 1.0 - np.prod(1.0 - p, axis=1)
    else:
        raise ValueError(f'reduction must be "max" or "noisy_or", got {reduction!r}.')
    return score, t.max(axis=1)


def binary_auc(
    scores: Any,
    targets: Any,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> BinaryAUCResult:
    """ROC AUC of a binary question with a percentile bootstrap CI over images.

    Resamples holding one class only are dropped (``n_bootstrap_valid`` counts the kept ones).

    Args:
        scores: ``(N,)`` scores (only their order matters).
        targets: ``(N,)`` 0/1 targets.
        n_bootstrap: number of resamples; 0 disables the CI.
        ci: confidence level.
        seed: seed of the resampling (``numpy.random.default_rng``).

    Raises:
        ValueError: bad shapes, non-finite scores, or one class only.
    """
    score = np.asarray(_as_numpy(scores, "scores"), dtype=np.float64).reshape(-1)
    y = np.asarray(_as_numpy(targets, "targets")).reshape(-1)
    if score.shape != y.shape or score.size == 0:
        raise ValueError(f"scores and targets must be non-empty and of the same length, got {score.shape} and {y.shape}.")
    if not np.all(np.isfinite(score)):
        raise ValueError("scores contain NaN or infinite values.")
    if not np.all(np.isin(y, (0, 1))):
        raise ValueError("targets must be binary (0/1 or bool).")
    y = y.astype(np.int64)
    _parse_bootstrap(n_bootstrap, ci)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError("a binary AUC needs both positive and negative images.")
    auc = float(roc_auc_score(y, score))
    boot = None
    interval = None
    n_valid = 0
    if n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        n = y.size
        boot = np.full(int(n_bootstrap), np.nan)
        for b in range(int(n_bootstrap)):
            idx = rng.integers(0, n, size=n)
            yb = y[idx]
            if yb.min() != yb.max():
                boot[b] = roc_auc_score(yb, score[idx])
        n_valid = int(np.isfinite(boot).sum())
        interval = _percentile_ci(boot, ci)
    return BinaryAUCResult(auc, interval, ci, n_pos, n_neg, int(n_bootstrap), n_valid, boot)


def binary_any_finding_auc(
    probs: Any,
    targets: Any,
    reduction: str = "max",
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> BinaryAUCResult:
    """ROC AUC of "any finding" vs "No Finding" from the 14 per-class outputs.

    The target of an image is 1 when any of its labels is positive ("No Finding" = all
    zeros). Its score is, by default, the maximum of its per-class scores (``"max"``:
    monotone, so logits work too, and unaffected by the number of classes); ``"noisy_or"``
    uses ``1 - prod(1 - p)`` and needs probabilities. This two-class AUC is far less noisy than
    the 14-class mean on small test sets (DESIGN, section 4). The CI is a percentile bootstrap
    over images (:func:`binary_auc`).

    Args:
        probs: ``(N, C)`` scores.
        targets: ``(N, C)`` 0/1 multi-label targets.
        reduction: ``"max"`` or ``"noisy_or"``.
        n_bootstrap: number of resamples; 0 disables the CI.
        ci: confidence level.
        seed: seed of the resampling.

    Returns:
        :class:`BinaryAUCResult` (fractions in [0, 1]).

    Raises:
        ValueError: bad shapes, or all images on one side (all findings or all "No Finding").
    """
    p, t = _parse_probs_targets(probs, targets)
    _parse_bootstrap(n_bootstrap, ci)
    score, y = _any_finding(p, t, reduction)
    if y.min() == y.max():
        raise ValueError("binary_any_finding_auc needs both images with findings and 'No Finding' images.")
    return binary_auc(score, y, n_bootstrap=n_bootstrap, ci=ci, seed=seed)


def within_chance(ci: Sequence[float] | None, chance: float = 0.5) -> bool | None:
    """True when a confidence interval contains chance (``chance`` in the interval's unit); None without a CI."""
    if not ci:
        return None
    return bool(float(ci[0]) <= chance <= float(ci[1]))


def utility_aucs(
    probs: Any, targets: Any, schema: LabelSchema, n_bootstrap: int = 1000, ci: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """A data set's utility figures from the classifier's probabilities (fractions in [0, 1]).

    The mean of the per-class (one-vs-rest) AUCs over the classes present, and the schema's
    binary question (any finding vs No Finding; pneumonia vs normal), each with a percentile
    bootstrap CI and a flag saying whether the CI contains chance (0.5).

    Args:
        probs: ``(N, C)`` probabilities (:meth:`LabelSchema.probabilities` of the logits).
        targets: ``(N, C)`` 0/1 label vectors over ``schema.classes``.
        schema: the data set's label schema.
    """
    p, t = _parse_probs_targets(probs, targets)
    mean = mean_auc(p, t, label_names=schema.classes, n_bootstrap=n_bootstrap, ci=ci, seed=seed)
    y = schema.binary_targets(t)
    binary = None
    if y.min() != y.max():
        binary = binary_auc(schema.binary_scores(p), y, n_bootstrap=n_bootstrap, ci=ci, seed=seed)
    return {
        "schema": schema.name,
        "mean_auc": mean.mean,
        "mean_auc_ci": list(mean.ci) if mean.ci is not None else None,
        "mean_auc_within_chance": within_chance(mean.ci),
        "per_class_auc": mean.per_class,
        "classes_absent": mean.skipped,
        "binary_name": schema.binary_name,
        "binary_auc": binary.auc if binary else float("nan"),
        "binary_ci": list(binary.ci) if binary and binary.ci is not None else None,
        "binary_within_chance": within_chance(binary.ci) if binary else None,
        "n_binary_positive": binary.n_positive if binary else int(y.sum()),
        "n_binary_negative": binary.n_negative if binary else int(y.size - y.sum()),
        "n_images": int(p.shape[0]),
        "n_bootstrap": int(n_bootstrap),
    }


def _mean_auc_compute_fn(y_pred: torch.Tensor, y: torch.Tensor) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mean_auc(y_pred, y, n_bootstrap=0).mean


class MeanAUC(EpochMetric):
    """Ignite metric: mean per-class AUC over an epoch (no bootstrap), for validation.

    Classes absent from the epoch's targets are skipped as in :func:`mean_auc`; when no class
    is valid the value is NaN. ``update`` takes ``(y_pred, y)`` of shape ``(B, C)``; ``y_pred``
    may be logits or probabilities.

    Args:
        output_transform: maps the engine output to ``(y_pred, y)``.
        device: where to store the values.
    """

    def __init__(
        self,
        output_transform: Callable = lambda x: x,
        device: str | torch.device = torch.device("cpu"),
    ) -> None:
        super().__init__(
            _mean_auc_compute_fn,
            output_transform=output_transform,
            check_compute_fn=False,
            device=device,
            skip_unrolling=False,
        )



class BinaryAUC(EpochMetric):
    """Ignite metric: AUC of a schema's binary question over an epoch (NaN with one class only).

    ``update`` takes ``(probs, y)`` of shape ``(B, C)``: probabilities over the schema's classes
    and their 0/1 label vectors.

    Args:
        schema: the data set's label schema (or its name).
        output_transform: maps the engine output to ``(probs, y)``.
        device: where to store the values.
    """

    def __init__(
        self,
        schema: LabelSchema | str,
        output_transform: Callable = lambda x: x,
        device: str | torch.device = torch.device("cpu"),
    ) -> None:
        from ..labels import get_schema

        schema = get_schema(schema)

        def compute(y_pred: torch.Tensor, y: torch.Tensor) -> float:
            p, t = y_pred.detach().cpu().numpy(), y.detach().cpu().numpy()
            yb = schema.binary_targets(t)
            if yb.min() == yb.max():
                return float("nan")
            return float(roc_auc_score(yb, schema.binary_scores(p)))

        super().__init__(compute, output_transform=output_transform, check_compute_fn=False, device=device,
                         skip_unrolling=False)
