"""One radiograph of a data set's table, and helpers that need nothing but the table.

A record holds the file name, the patient id, the follow-up number and the label vector over
the data set's classes (:class:`~monai_prichexy.labels.LabelSchema`): multi-hot for
ChestX-ray14, one-hot for the Kermany paediatric set. Patient ids never leave the records:
datasets put images and labels into samples, not ids.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["ImageRecord", "normalize_patient_id", "label_matrix", "group_by_patient", "open_text"]

PathLike = str | os.PathLike


@dataclass(frozen=True, eq=False)
class ImageRecord:
    """One radiograph of a table.

    Attributes:
        image: file name relative to the image folder, e.g. ``"00000001_000.png"``.
        patient_id: patient id as a string (zero-padded to 8 digits when numeric, as in
            ChestX-ray14 file names).
        follow_up: follow-up number (0 when the table has none).
        labels: float32 label vector over the data set's classes.
        classes: the class names of ``labels`` (the data set's schema).
    """

    image: str
    patient_id: str
    follow_up: int
    labels: np.ndarray = field(repr=False)
    classes: tuple[str, ...] = field(default=(), repr=False)

    @property
    def finding_names(self) -> tuple[str, ...]:
        """The positive classes by name (empty for ChestX-ray14's "No Finding")."""
        from ..labels import CXR14_LABELS

        names = self.classes or CXR14_LABELS
        return tuple(names[i] for i in np.flatnonzero(self.labels))


def normalize_patient_id(patient_id: str | int) -> str:
    """Zero-pad a numeric patient id to 8 digits (``1 -> "00000001"``); leave other ids as they are."""
    text = str(patient_id).strip()
    return text.zfill(8) if text.isdigit() else text


def open_text(path: PathLike) -> io.TextIOBase:
    """Open a CSV table for reading, gzip-compressed when it ends in ``.gz``."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def label_matrix(records: Sequence[ImageRecord], num_classes: int | None = None) -> np.ndarray:
    """Stack the label vectors of ``records`` into a float32 ``(N, C)`` array.

    ``num_classes`` gives ``C`` for an empty list (default: 14, ChestX-ray14).
    """
    if not records:
        return np.zeros((0, 14 if num_classes is None else int(num_classes)), dtype=np.float32)
    return np.stack([r.labels for r in records]).astype(np.float32, copy=False)


def group_by_patient(records: Iterable[ImageRecord]) -> dict[str, list[ImageRecord]]:
    """Group records by patient id, keeping first-appearance order."""
    groups: dict[str, list[ImageRecord]] = {}
    for r in records:
        groups.setdefault(r.patient_id, []).append(r)
    return groups
