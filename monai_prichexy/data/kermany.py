"""The Kermany paediatric chest X-ray table (Kermany et al., Cell 2018).

``labels.csv`` with the columns ``image,patient_id,label[,source_split]``; ``label`` is
``normal``, ``bacteria`` or ``virus`` (bacterial / viral pneumonia). Records get one-hot labels
over :data:`~monai_prichexy.labels.KERMANY_CLASSES`. Patient ids are the data set's inferred
ones (``personN_bacteria``, ``IM-NNNN``, ...; see its README): some true same-patient pairs
may count as different patients.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from ..labels import KERMANY_CLASSES
from .records import ImageRecord, normalize_patient_id, open_text

__all__ = ["KERMANY_COLUMNS", "read_kermany_table"]

KERMANY_COLUMNS = ("image", "patient_id", "label")
"""The columns a Kermany table must have."""

PathLike = str | os.PathLike


def read_kermany_table(path: PathLike) -> list[ImageRecord]:
    """Read a Kermany ``labels.csv`` into records with one-hot ``normal/bacteria/virus`` labels.

    Raises:
        ValueError: missing columns, an unknown label or a duplicated image (naming file and line).
    """
    path = Path(path)
    records: list[ImageRecord] = []
    seen: set[str] = set()
    with open_text(path) as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip() for f in reader.fieldnames or []]
        missing = [c for c in KERMANY_COLUMNS if c not in fields]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; a Kermany table has {list(KERMANY_COLUMNS)}")
        for lineno, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            image, label = row["image"], row["label"].lower()
            if not image:
                raise ValueError(f"{path.name}, line {lineno}: empty image name")
            if image in seen:
                raise ValueError(f"{path.name}, line {lineno}: image {image!r} listed twice")
            if label not in KERMANY_CLASSES:
                raise ValueError(f"{path.name}, line {lineno}: unknown label {row['label']!r}; expected one of {KERMANY_CLASSES}")
            seen.add(image)
            onehot = np.zeros(len(KERMANY_CLASSES), dtype=np.float32)
            onehot[KERMANY_CLASSES.index(label)] = 1.0
            records.append(ImageRecord(image, normalize_patient_id(row["patient_id"]), 0, onehot, KERMANY_CLASSES))
    return records
