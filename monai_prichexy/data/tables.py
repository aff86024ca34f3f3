"""Which data set a table belongs to, and its records and label schema.

:func:`read_table` recognises the table by its header (or by the ``dataset`` name given) and
returns the records with the :class:`~monai_prichexy.labels.LabelSchema` that says what the
utility classifier predicts and how utility is scored. ChestX-ray14 (official table or the
project subset's ``labels.csv``) and the Kermany paediatric set are supported; the rest of the
code (splits, pairs, datasets, engines, metrics) only sees records and a schema.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..labels import LabelSchema, get_schema
from .chestxray14 import read_chestxray14_table
from .kermany import KERMANY_COLUMNS, read_kermany_table
from .records import ImageRecord, open_text

__all__ = ["TABLE_READERS", "detect_dataset", "read_table"]

PathLike = str | os.PathLike

#: data set name -> table reader
TABLE_READERS = {"chestxray14": read_chestxray14_table, "kermany": read_kermany_table}


def detect_dataset(path: PathLike) -> str:
    """The data set of a table, from its header: ``"chestxray14"`` or ``"kermany"``.

    Raises:
        ValueError: an empty file or a header of neither layout.
    """
    path = Path(path)
    with open_text(path) as fh:
        header = [h.strip() for h in next(csv.reader(fh), [])]
    if not header:
        raise ValueError(f"{path}: empty table")
    if {"Image Index", "Finding Labels", "Patient ID"} <= set(header) or {"image", "labels", "patient_id"} <= set(header):
        return "chestxray14"
    if set(KERMANY_COLUMNS) <= set(header):
        return "kermany"
    raise ValueError(
        f"{path}: unrecognised header {header[:6]}; expected a ChestX-ray14 table (Image Index, Finding Labels, "
        f"Patient ID / image, patient_id, labels) or a Kermany table ({', '.join(KERMANY_COLUMNS)})"
    )


def read_table(path: PathLike, dataset: str = "auto") -> tuple[list[ImageRecord], LabelSchema]:
    """Read a data set's table: ``(records, schema)``.

    Args:
        path: the CSV (optionally ``.gz``).
        dataset: ``"auto"`` (from the header), ``"chestxray14"`` or ``"kermany"``.
    """
    name = detect_dataset(path) if dataset in (None, "auto") else dataset
    if name not in TABLE_READERS:
        raise ValueError(f"unknown dataset {dataset!r}; expected 'auto' or one of {sorted(TABLE_READERS)}")
    return TABLE_READERS[name](path), get_schema(name)
