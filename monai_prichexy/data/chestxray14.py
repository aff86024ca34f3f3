"""ChestX-ray14 metadata table.

Reads the official NIH table (``Data_Entry_2017*.csv`` or ``.csv.gz``; columns ``Image Index``,
``Finding Labels``, ``Follow-up #``, ``Patient ID``, ...) and the ``labels.csv`` of the project's
subset (``image,patient_id,follow_up,labels``) into :class:`~monai_prichexy.data.records.ImageRecord`
objects whose labels are the 14 findings (Wang et al., "ChestX-ray8", CVPR 2017; Packhäuser et
al., MICCAI 2023). Splits: :mod:`monai_prichexy.data.splits`.

Nothing here touches image files: the full 112,120-row table is streamed with :mod:`csv` and
parses in well under a few seconds.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from ..labels import CXR14_LABELS, NO_FINDING
from .records import ImageRecord, normalize_patient_id, open_text

__all__ = ["CXR14_LABELS", "NO_FINDING", "CXR14Record", "parse_finding_labels", "read_chestxray14_table"]


_LABEL_INDEX = {name: i for i, name in enumerate(CXR14_LABELS)}

PathLike = str | os.PathLike


CXR14Record = ImageRecord
"""A ChestX-ray14 row: an :class:`~monai_prichexy.data.records.ImageRecord` whose labels are the 14 findings."""


def parse_finding_labels(text: str, *, source: str = "", row: int | None = None) -> np.ndarray:
    """Turn a pipe-separated ``Finding Labels`` cell into a 14-vector.

    Args:
        text: e.g. ``"Cardiomegaly|Emphysema"`` or ``"No Finding"``.
        source: file name used in error messages.
        row: line number used in error messages.

    Returns:
        float32 multi-hot vector of shape ``(14,)``; ``"No Finding"`` gives all zeros.

    Raises:
        ValueError: for an empty cell or a label that is not one of :data:`CXR14_LABELS`.
    """
    where = f"{source or '<labels>'}" + (f", line {row}" if row is not None else "")
    vec = np.zeros(len(CXR14_LABELS), dtype=np.float32)
    parts = [p.strip() for p in text.split("|")]
    if not any(parts):
        raise ValueError(f"{where}: empty finding labels (use {NO_FINDING!r} for a normal image)")
    for part in parts:
        if part == NO_FINDING:
            continue
        idx = _LABEL_INDEX.get(part)
        if idx is None:
            raise ValueError(
                f"{where}: unknown finding label {part!r}; expected one of {CXR14_LABELS} or {NO_FINDING!r}"
            )
        vec[idx] = 1.0
    return vec


# header name -> field, for the two supported layouts
_OFFICIAL_COLUMNS = {"image": "Image Index", "labels": "Finding Labels", "follow_up": "Follow-up #", "patient_id": "Patient ID"}
_SUBSET_COLUMNS = {"image": "image", "labels": "labels", "follow_up": "follow_up", "patient_id": "patient_id"}


def _follow_up_from_name(image: str) -> int:
    stem = Path(image).stem
    tail = stem.rsplit("_", 1)[-1] if "_" in stem else ""
    return int(tail) if tail.isdigit() else 0


def read_chestxray14_table(path: PathLike) -> list[ImageRecord]:
    """Read a ChestX-ray14 metadata table into records, streaming it row by row.

    Two layouts are recognised from the header: the official ``Data_Entry_2017*.csv[.gz]``
    (``Image Index``, ``Finding Labels``, ``Follow-up #``, ``Patient ID``, ...) and the subset's
    ``labels.csv`` (``image``, ``patient_id``, ``follow_up``, ``labels``). A missing follow-up
    column is derived from the ``PPPPPPPP_FFF.png`` file name.

    Args:
        path: the CSV file, optionally gzip-compressed (``.gz``).

    Returns:
        records in file order.

    Raises:
        ValueError: unknown layout, an unknown finding label (message names file and line),
            a malformed follow-up number or a duplicated image name.
    """
    path = Path(path)
    records: list[ImageRecord] = []
    seen: set[str] = set()
    with open_text(path) as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ValueError(f"{path}: empty table") from None
        for layout in (_OFFICIAL_COLUMNS, _SUBSET_COLUMNS):
            if layout["image"] in header and layout["labels"] in header and layout["patient_id"] in header:
                break
        else:
            raise ValueError(
                f"{path}: unrecognised header {header[:6]}; expected the official ChestX-ray14 columns "
                f"{list(_OFFICIAL_COLUMNS.values())} or {list(_SUBSET_COLUMNS.values())}"
            )
        i_img, i_lab, i_pid = (header.index(layout[k]) for k in ("image", "labels", "patient_id"))
        i_fu = header.index(layout["follow_up"]) if layout["follow_up"] in header else None
        ncol = max(i_img, i_lab, i_pid, -1 if i_fu is None else i_fu) + 1
        name = path.name
        for lineno, row in enumerate(reader, start=2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) < ncol:
                raise ValueError(f"{name}, line {lineno}: expected at least {ncol} columns, got {len(row)}")
            image = row[i_img].strip()
            if image in seen:
                raise ValueError(f"{name}, line {lineno}: image {image!r} listed twice")
            seen.add(image)
            labels = parse_finding_labels(row[i_lab], source=name, row=lineno)
            if i_fu is None:
                follow_up = _follow_up_from_name(image)
            else:
                try:
                    follow_up = int(row[i_fu])
                except ValueError:
                    raise ValueError(f"{name}, line {lineno}: follow-up {row[i_fu]!r} is not an integer") from None
            records.append(ImageRecord(image, normalize_patient_id(row[i_pid]), follow_up, labels, CXR14_LABELS))
    return records
