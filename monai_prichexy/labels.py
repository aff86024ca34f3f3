"""The label sets of the supported data sets and how utility is scored on each.

A :class:`LabelSchema` says what the utility classifier predicts (class names in output
order), how its logits become probabilities and a training loss (independent sigmoids for a
multi-label set, a softmax for a multi-class one), and which binary question is the stable
headline utility figure:

- ChestX-ray14 (Wang et al., CVPR 2017; the order of Packhäuser et al., MICCAI 2023): 14
  findings, multi-label; "No Finding" is the all-zeros vector; headline = "any finding" vs
  "No Finding" (score: the largest of the 14 probabilities).
- Kermany paediatric CXR (Kermany et al., Cell 2018): ``normal`` / ``bacteria`` / ``virus``,
  one per image (multi-class); headline = pneumonia (bacterial or viral) vs normal (score: the
  softmax mass of the two pneumonia classes).

Targets are always float vectors over :attr:`LabelSchema.classes` (multi-hot or one-hot), so
every dataset, loader and metric handles both kinds the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "CXR14_LABELS",
    "NO_FINDING",
    "KERMANY_CLASSES",
    "LabelSchema",
    "CXR14_SCHEMA",
    "KERMANY_SCHEMA",
    "SCHEMAS",
    "get_schema",
]

CXR14_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)

NO_FINDING = "No Finding"

KERMANY_CLASSES: tuple[str, ...] = ("normal", "bacteria", "virus")

_KINDS = ("multilabel", "multiclass")


@dataclass(frozen=True)
class LabelSchema:
    """What a data set's utility classifier predicts and how its utility is scored.

    Attributes:
        name: data set name (``"chestxray14"``, ``"kermany"``).
        classes: class names in the classifier's output order.
        kind: ``"multilabel"`` (independent sigmoids, BCE) or ``"multiclass"`` (softmax, CE).
        binary_name: the headline binary question, e.g. ``"any finding"`` or ``"pneumonia"``.
        binary_positive: the classes whose presence makes the binary target 1.
        negative_name: the name of the negative answer (``"No Finding"``, ``"normal"``).
    """

    name: str
    classes: tuple[str, ...]
    kind: str
    binary_name: str
    binary_positive: tuple[str, ...]
    negative_name: str

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {self.kind!r}")
        unknown = [c for c in self.binary_positive if c not in self.classes]
        if unknown or not self.binary_positive:
            raise ValueError(f"binary_positive must name classes of {self.classes}, got {self.binary_positive}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def positive_index(self) -> list[int]:
        return [self.classes.index(c) for c in self.binary_positive]

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """BCE-with-logits (multi-label, mean over classes) or cross-entropy (multi-class, one-hot targets).

        With ``reduction="none"`` the result has one value per image.
        """
        targets = targets.to(logits.dtype)
        if self.kind == "multilabel":
            loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=1)
        else:
            loss = F.cross_entropy(logits, targets, reduction="none")
        return loss.mean() if reduction == "mean" else loss

    def probabilities(self, logits: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Sigmoid (multi-label) or softmax over the classes (multi-class), numpy or torch."""
        is_numpy = isinstance(logits, np.ndarray)
        t = torch.from_numpy(np.asarray(logits, dtype=np.float64)) if is_numpy else logits
        p = torch.sigmoid(t) if self.kind == "multilabel" else torch.softmax(t, dim=-1)
        return p.numpy() if is_numpy else p

    def binary_scores(self, probs: np.ndarray) -> np.ndarray:
        """Score of the binary question per image: max (multi-label) or sum (multi-class) of the positive classes."""
        p = np.asarray(probs, dtype=np.float64)[:, self.positive_index]
        return p.max(axis=1) if self.kind == "multilabel" else p.sum(axis=1)

    def binary_targets(self, targets: np.ndarray) -> np.ndarray:
        """1 where any positive class is present, else 0."""
        return (np.asarray(targets)[:, self.positive_index] > 0.5).any(axis=1).astype(np.int64)


CXR14_SCHEMA = LabelSchema(
    name="chestxray14",
    classes=CXR14_LABELS,
    kind="multilabel",
    binary_name="any finding",
    binary_positive=CXR14_LABELS,
    negative_name=NO_FINDING,
)

KERMANY_SCHEMA = LabelSchema(
    name="kermany",
    classes=KERMANY_CLASSES,
    kind="multiclass",
    binary_name="pneumonia",
    binary_positive=("bacteria", "virus"),
    negative_name="normal",
)

SCHEMAS: dict[str, LabelSchema] = {s.name: s for s in (CXR14_SCHEMA, KERMANY_SCHEMA)}


def get_schema(name: str | LabelSchema) -> LabelSchema:
    """The schema of a data set by name (``"chestxray14"``, ``"kermany"``)."""
    if isinstance(name, LabelSchema):
        return name
    if name not in SCHEMAS:
        raise ValueError(f"unknown data set {name!r}; expected one of {sorted(SCHEMAS)}")
    return SCHEMAS[name]
