"""Patient-verification ROC AUC, the privacy metric of PriCheXy-Net.

Packhäuser et al., "Deep Learning-based Anonymization of Chest Radiographs: A
Utility-preserving Measure for Patient Privacy", MICCAI 2023: a Siamese verification network
scores pairs (anonymized image, real image); the ROC AUC of those scores against the
same-patient labels measures the remaining re-identification risk (0.5 = chance).

On small test sets one patient can own most same-patient pairs (see the data README,
caveat 5), so :func:`verification_auc` can also weight every patient equally.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced
from sklearn.metrics import roc_auc_score

__all__ = ["verification_auc", "patient_pair_weights", "VerificationAUC"]

_WEIGHTINGS = ("pair", "patient")


def _as_numpy(x: Any, name: str) -> np.ndarray:
    """Turn a torch tensor, numpy array or sequence into a numpy array (detached, on CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return x.numpy()
    try:
        return np.asarray(x)
    except Exception as e:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name} could not be converted to an array: {e}") from e


def _as_1d(x: Any, name: str) -> np.ndarray:
    """Flatten ``(N,)`` or ``(N, 1)`` input to ``(N,)``; refuse anything else."""
    arr = _as_numpy(x, name)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must have shape (N,) or (N, 1), got {tuple(arr.shape)}.")
    return arr


def _binary_labels(labels: Any, name: str = "labels") -> np.ndarray:
    y = _as_1d(labels, name)
    if y.size and not np.all(np.isin(y, (0, 1))):
        raise ValueError(f"{name} must be binary (0/1 or bool), got values {np.unique(y)[:10].tolist()}.")
    return y.astype(np.int64)


def patient_pair_weights(labels: Any, groups: Any) -> np.ndarray:
    """Sample weights that give every anchor patient the same total weight.

    The patient of a pair is ``groups[i]``, i.e. the patient of its *first* (anchor) image --
    for a positive pair both images belong to that patient. Within each anchor patient, the
    positive pairs share a total weight of 1 and the negative pairs share a total weight of 1.
    Hence every patient with positive pairs contributes equally to the positive score
    distribution and every anchor patient with negative pairs contributes equally to the
    negative one, whatever the number of pairs each owns.

    Args:
        labels: ``(N,)`` 0/1 same-patient labels.
        groups: ``(N,)`` patient id of the first image of every pair (any hashable dtype).

    Returns:
        ``(N,)`` float64 weights.
    """
    y = _binary_labels(labels)
    g = _as_1d(groups, "groups")
    if g.shape[0] != y.shape[0]:
        raise ValueError(f"groups and labels must have the same length, got {g.shape[0]} and {y.shape[0]}.")
    _, inv = np.unique(g, return_inverse=True)
    inv = inv.reshape(-1)
    n_groups = int(inv.max()) + 1 if inv.size else 0
    # key = (patient, class); count pairs per key and give each pair 1 / count
    key = inv * 2 + y
    counts = np.bincount(key, minlength=2 * n_groups)
    return 1.0 / counts[key].astype(np.float64)


def verification_auc(
    scores: Any,
    labels: Any,
    groups: Any | None = None,
    weighting: str = "pair",
) -> float:
    """ROC AUC of same-patient scores (Packhäuser et al., MICCAI 2023, Table 1 "verification").

    Args:
        scores: ``(N,)`` or ``(N, 1)`` scores of the pairs, higher = more likely the same patient
            (logits or probabilities: the AUC only depends on their order).
        labels: ``(N,)`` 0/1 labels, 1 = both images of the pair belong to the same patient.
        groups: ``(N,)`` patient id of the first image of every pair; required for
            ``weighting="patient"``.
        weighting: ``"pair"`` (every pair counts once, the paper's number) or ``"patient"``
            (every patient counts once, see :func:`patient_pair_weights`; recommended on small
            test sets where one patient owns most same-patient pairs).

    Returns:
        The AUC as a fraction in [0, 1] (multiply by 100 for the paper's percentages).

    Raises:
        ValueError: bad shapes, non-binary labels, unknown weighting, missing groups, or only
            one class present in ``labels``.
    """
    if weighting not in _WEIGHTINGS:
        raise ValueError(f"weighting must be one of {_WEIGHTINGS}, got {weighting!r}.")
    s = _as_1d(scores, "scores").astype(np.float64)
    y = _binary_labels(labels)
    if s.shape[0] != y.shape[0]:
        raise ValueError(f"scores and labels must have the same length, got {s.shape[0]} and {y.shape[0]}.")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values.")
    if y.size == 0 or y.min() == y.max():
        raise ValueError("verification AUC needs both same-patient (1) and different-patient (0) pairs.")
    weights = None
    if weighting == "patient":
        if groups is None:
            raise ValueError('weighting="patient" needs groups (the patient id of the first image of each pair).')
        weights = patient_pair_weights(y, groups)
    elif groups is not None and _as_1d(groups, "groups").shape[0] != y.shape[0]:
        raise ValueError("groups and labels must have the same length.")
    return float(roc_auc_score(y, s, sample_weight=weights))


class VerificationAUC(Metric):
    """Ignite metric: :func:`verification_auc` over all pairs seen in an epoch.

    ``update`` takes ``(y_pred, y)`` or, for ``weighting="patient"``, ``(y_pred, y, groups)``
    (also the dict form with keys ``"y_pred"``, ``"y"`` and ``"groups"``). Under
    ``ignite.distributed`` the stored values are all-gathered before computing; then
    ``groups`` must be numeric (tensor) patient ids.

    Args:
        weighting: ``"pair"`` or ``"patient"``, see :func:`verification_auc`.
        output_transform: maps the engine output to the tuple above.
        device: where to store the values.
    """

    def __init__(
        self,
        weighting: str = "pair",
        output_transform: Callable = lambda x: x,
        device: str | torch.device = torch.device("cpu"),
    ) -> None:
        if weighting not in _WEIGHTINGS:
            raise ValueError(f"weighting must be one of {_WEIGHTINGS}, got {weighting!r}.")
        self.weighting = weighting
        self.required_output_keys = ("y_pred", "y", "groups") if weighting == "patient" else ("y_pred", "y")
        super().__init__(output_transform=output_transform, device=device, skip_unrolling=True)

    @reinit__is_reduced
    def reset(self) -> None:
        self._scores: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._groups: list[Any] = []

    @reinit__is_reduced
    def update(self, output: Sequence[Any]) -> None:
        if len(output) not in (2, 3):
            raise ValueError(f"VerificationAUC expects (y_pred, y) or (y_pred, y, groups), got {len(output)} items.")
        s = torch.as_tensor(output[0]).detach().reshape(-1).to(self._device, torch.float64)
        y = torch.as_tensor(output[1]).detach().reshape(-1).to(self._device, torch.float64)
        if s.shape != y.shape:
            raise ValueError(f"y_pred and y must hold one value per pair, got {tuple(s.shape)} and {tuple(y.shape)}.")
        if self.weighting == "patient":
            if len(output) != 3:
                raise ValueError('weighting="patient" needs (y_pred, y, groups) as metric input.')
            g = output[2]
            g = g.detach().reshape(-1).to(self._device) if isinstance(g, torch.Tensor) else list(np.asarray(g).reshape(-1))
            if len(g) != s.shape[0]:
                raise ValueError(f"groups must hold one patient id per pair, got {len(g)} for {s.shape[0]} pairs.")
            self._groups.append(g)
        self._scores.append(s)
        self._labels.append(y)

    def compute(self) -> float:
        if not self._scores:
            raise NotComputableError("VerificationAUC must have at least one pair before it can be computed.")
        s = torch.cat(self._scores)
        y = torch.cat(self._labels)
        groups: Any = None
        if self.weighting == "patient":
            if all(isinstance(g, torch.Tensor) for g in self._groups):
                groups = torch.cat(self._groups)
            else:
                groups = np.concatenate([_as_numpy(g, "groups") for g in self._groups])
        ws = idist.get_world_size()
        if ws > 1:
            s = idist.all_gather(s)
            y = idist.all_gather(y)
            if groups is not None:
                if not isinstance(groups, torch.Tensor):
                    raise ValueError("in distributed runs groups must be numeric tensors.")
                groups = idist.all_gather(groups)
        result = 0.0
        if idist.get_rank() == 0:
            result = verification_auc(s, y, groups=groups, weighting=self.weighting)
        if ws > 1:
            result = float(idist.broadcast(torch.tensor(result, dtype=torch.float64), src=0).item())
        return result
