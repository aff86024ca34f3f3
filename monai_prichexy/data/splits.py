"""Patient-wise splits of a data set's table.

Every split keeps all images of a patient together (Wang et al., CVPR 2017; Packhäuser et al.,
MICCAI 2023): a fixed ``patient_id,split`` file (the project's data sets ship one), the official
ChestX-ray14 lists, or a seeded random patient-wise cut. Nothing here opens an image.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .records import ImageRecord, group_by_patient, normalize_patient_id, open_text

__all__ = [
    "SPLIT_NAMES",
    "split_patients",
    "read_image_list",
    "split_by_lists",
    "read_split_file",
    "write_split_file",
    "apply_split_file",
    "check_patient_disjoint",
    "make_splits",
    "load_split",
]

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
"""Default split names, in order."""

PathLike = str | os.PathLike


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _parse_fractions(fractions: Mapping[str, float] | Sequence[float] | None) -> dict[str, float]:
    if fractions is None:
        fractions = {"train": 0.7, "val": 0.1, "test": 0.2}
    if not isinstance(fractions, Mapping):
        fractions = list(fractions)
        if len(fractions) != len(SPLIT_NAMES):
            raise ValueError(f"fractions: expected {len(SPLIT_NAMES)} values for {SPLIT_NAMES}, got {fractions}")
        fractions = dict(zip(SPLIT_NAMES, fractions))
    out = {str(k): float(v) for k, v in fractions.items()}
    if not out or any(v < 0 for v in out.values()) or not np.isclose(sum(out.values()), 1.0, atol=1e-6):
        raise ValueError(f"fractions must be non-negative and sum to 1, got {out}")
    return out


def _split_ids(ids: Sequence[str], fractions: Mapping[str, float], rng: np.random.Generator) -> dict[str, set[str]]:
    """Shuffle sorted ids and cut them by fractions; the first split takes the rounding remainder."""
    ids = sorted(ids)
    order = rng.permutation(len(ids))
    names = list(fractions)
    counts = {n: int(round(fractions[n] * len(ids))) for n in names[1:]}
    if sum(counts.values()) > len(ids):  # rounding overflow on tiny sets
        counts[names[-1]] -= sum(counts.values()) - len(ids)
    counts = {names[0]: len(ids) - sum(counts.values()), **counts}
    out: dict[str, set[str]] = {}
    start = 0
    for n in names:
        out[n] = {ids[i] for i in order[start : start + counts[n]]}
        start += counts[n]
    return out


def _records_by_split(records: Sequence[ImageRecord], assignment: Mapping[str, str], names: Iterable[str]) -> dict[str, list[ImageRecord]]:
    out: dict[str, list[ImageRecord]] = {n: [] for n in names}
    for r in records:
        split = assignment.get(r.patient_id)
        if split is not None:
            out.setdefault(split, []).append(r)
    return out


def split_patients(
    records: Sequence[ImageRecord],
    fractions: Mapping[str, float] | Sequence[float] | None = None,
    seed: int | np.random.Generator | None = 0,
) -> dict[str, list[ImageRecord]]:
    """Random patient-wise split.

    Patients (not images) are shuffled by ``seed`` and cut by ``fractions``; the first split
    (``train``) takes what rounding leaves over. The result does not depend on record order.

    Args:
        records: the table.
        fractions: split name -> fraction of patients, or a sequence for :data:`SPLIT_NAMES`;
            default ``{"train": 0.7, "val": 0.1, "test": 0.2}``.
        seed: seed or generator.

    Returns:
        split name -> records (in table order).
    """
    fr = _parse_fractions(fractions)
    parts = _split_ids(list(group_by_patient(records)), fr, _rng(seed))
    assignment = {pid: name for name, ids in parts.items() for pid in ids}
    return _records_by_split(records, assignment, fr)


def read_image_list(path: PathLike) -> list[str]:
    """Read an official image list (``train_val_list.txt``/``test_list.txt``: one file name a line)."""
    with open(path, encoding="utf-8-sig") as fh:
        return [s for s in (line.strip() for line in fh) if s]


def split_by_lists(
    records: Sequence[ImageRecord],
    train_val_list: PathLike | Iterable[str],
    test_list: PathLike | Iterable[str],
    val_fraction: float = 0.1,
    seed: int | np.random.Generator | None = 0,
) -> dict[str, list[ImageRecord]]:
    """Split with the official lists: ``test`` = test list, ``train_val`` cut patient-wise into train/val.

    Args:
        records: the table.
        train_val_list: ``train_val_list.txt`` path or image names.
        test_list: ``test_list.txt`` path or image names.
        val_fraction: fraction of the train_val *patients* that go to ``val``.
        seed: seed or generator for the train/val cut.

    Returns:
        ``{"train": ..., "val": ..., "test": ...}``; images in neither list are left out (with a warning).

    Raises:
        ValueError: an image in both lists, or a patient with images in both lists.
    """
    tv = set(read_image_list(train_val_list) if isinstance(train_val_list, (str, os.PathLike)) else train_val_list)
    te = set(read_image_list(test_list) if isinstance(test_list, (str, os.PathLike)) else test_list)
    both = tv & te
    if both:
        raise ValueError(f"{len(both)} images are in both the train_val and the test list, e.g. {sorted(both)[:3]}")
    tv_pids = {r.patient_id for r in records if r.image in tv}
    te_pids = {r.patient_id for r in records if r.image in te}
    mixed = tv_pids & te_pids
    if mixed:
        raise ValueError(
            f"{len(mixed)} patients have images in both the train_val and the test list, e.g. {sorted(mixed)[:3]}; "
            "a split must be patient-wise"
        )
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    parts = _split_ids(list(tv_pids), {"train": 1.0 - val_fraction, "val": val_fraction}, _rng(seed))
    out: dict[str, list[ImageRecord]] = {"train": [], "val": [], "test": []}
    val_ids, left_out = parts["val"], 0
    for r in records:
        if r.image in te:
            out["test"].append(r)
        elif r.image in tv:
            out["val" if r.patient_id in val_ids else "train"].append(r)
        else:
            left_out += 1
    if left_out:
        warnings.warn(f"{left_out} images of the table are in neither list and were left out", stacklevel=2)
    return out


def read_split_file(path: PathLike) -> dict[str, str]:
    """Read a ``patient_id,split`` file into ``{patient_id: split}`` (ids zero-padded).

    Raises:
        ValueError: bad header or a patient listed in two splits.
    """
    path = Path(path)
    out: dict[str, str] = {}
    with open_text(path) as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"patient_id", "split"} <= {f.strip() for f in reader.fieldnames}:
            raise ValueError(f"{path}: expected the columns 'patient_id,split', got {reader.fieldnames}")
        for lineno, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            pid, split = normalize_patient_id(row["patient_id"]), row["split"]
            if not pid or not split:
                raise ValueError(f"{path.name}, line {lineno}: empty patient_id or split")
            if out.get(pid, split) != split:
                raise ValueError(f"{path.name}, line {lineno}: patient {pid} is in both {out[pid]!r} and {split!r}")
            out[pid] = split
    return out


def check_patient_disjoint(splits: Mapping[str, Sequence[ImageRecord]]) -> None:
    """Raise ``ValueError`` when a patient (or an image) appears in more than one split."""
    owner: dict[str, str] = {}
    for name, recs in splits.items():
        for r in recs:
            if owner.setdefault(r.patient_id, name) != name:
                raise ValueError(f"patient {r.patient_id} is in both split {owner[r.patient_id]!r} and {name!r}")


def write_split_file(path: PathLike, splits: Mapping[str, Sequence[ImageRecord]] | Mapping[str, str]) -> Path:
    """Write a ``patient_id,split`` file, sorted by patient id.

    Args:
        path: output CSV.
        splits: split name -> records (as returned by the split functions), or ``{patient_id: split}``.

    Returns:
        the path written.
    """
    path = Path(path)
    if splits and all(isinstance(v, str) for v in splits.values()):
        assignment = {normalize_patient_id(k): v for k, v in splits.items()}  # type: ignore[misc]
    else:
        check_patient_disjoint(splits)  # type: ignore[arg-type]
        assignment = {r.patient_id: name for name, recs in splits.items() for r in recs}  # type: ignore[union-attr]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["patient_id", "split"])
        for pid in sorted(assignment):
            w.writerow([pid, assignment[pid]])
    return path


def apply_split_file(
    records: Sequence[ImageRecord], split_file: PathLike | Mapping[str, str]
) -> dict[str, list[ImageRecord]]:
    """Split records by a fixed ``patient_id,split`` file (or mapping).

    Records of patients the file does not list are left out with a warning.

    Returns:
        split name -> records (in table order); :data:`SPLIT_NAMES` first, then other names in file order.
    """
    assignment = read_split_file(split_file) if isinstance(split_file, (str, os.PathLike)) else {
        normalize_patient_id(k): v for k, v in split_file.items()
    }
    found = list(dict.fromkeys(assignment.values()))
    names = [n for n in SPLIT_NAMES if n in found] + [n for n in found if n not in SPLIT_NAMES]
    out = _records_by_split(records, assignment, names)
    missing = sum(1 for r in records if r.patient_id not in assignment)
    if missing:
        warnings.warn(f"{missing} images belong to patients not in the split file and were left out", stacklevel=2)
    return out


def make_splits(
    records: Sequence[ImageRecord],
    split_file: PathLike | Mapping[str, str] | None = None,
    train_val_list: PathLike | Iterable[str] | None = None,
    test_list: PathLike | Iterable[str] | None = None,
    fractions: Mapping[str, float] | Sequence[float] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, list[ImageRecord]]:
    """Patient-wise splits from whichever source is given.

    Priority: a fixed ``split_file``; else the official ``train_val_list``/``test_list`` (both
    needed; ``val_fraction`` of the train_val patients go to val); else a random patient-wise
    split by ``fractions`` and ``seed``.

    Returns:
        split name -> records; checked to be patient-disjoint.
    """
    if split_file is not None:
        splits = apply_split_file(records, split_file)
    elif train_val_list is not None or test_list is not None:
        if train_val_list is None or test_list is None:
            raise ValueError("give both train_val_list and test_list, or neither")
        splits = split_by_lists(records, train_val_list, test_list, val_fraction=val_fraction, seed=seed)
    else:
        splits = split_patients(records, fractions=fractions, seed=seed)
    check_patient_disjoint(splits)
    return splits


def load_split(
    table: PathLike | Sequence[ImageRecord],
    split: str | None = None,
    split_file: PathLike | None = None,
    train_val_list: PathLike | None = None,
    test_list: PathLike | None = None,
    fractions: Mapping[str, float] | Sequence[float] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> list[ImageRecord]:
    """Records of one split; the bundle-friendly entry point (all arguments JSON-serialisable).

    Args:
        table: path to a table (see :func:`~monai_prichexy.data.tables.read_table`) or records.
        split: split name (e.g. ``"train"``); ``None`` returns the whole table.
        split_file, train_val_list, test_list, fractions, val_fraction, seed: see :func:`make_splits`.

    Raises:
        KeyError: ``split`` is not one of the splits made.
    """
    from .tables import read_table

    records = read_table(table)[0] if isinstance(table, (str, os.PathLike)) else list(table)
    if split is None:
        return records
    splits = make_splits(
        records, split_file=split_file, train_val_list=train_val_list, test_list=test_list,
        fractions=fractions, val_fraction=val_fraction, seed=seed,
    )
    if split not in splits:
        raise KeyError(f"split {split!r} not found; available: {sorted(splits)}")
    return splits[split]

