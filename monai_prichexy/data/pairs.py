"""Verification pairs for the patient re-identification network.

A pair is two images and a label: 1 when both show the same patient, 0 otherwise
(Packhäuser et al., "Deep learning-based patient re-identification is able to exploit the
biometric nature of medical chest X-ray data", Sci. Rep. 2022; used by PriCheXy-Net, MICCAI 2023).

Pairs are drawn within ONE split only: :func:`sample_verification_pairs` takes the records of a
single split and :func:`sample_split_pairs` calls it split by split, so a pair never crosses
splits. Sampling works on file names and patient ids only (no image is opened), so it runs on
the full 112,120-image table.

Rules:

- balanced: as many negative (different-patient) as positive (same-patient) pairs;
- no self-pairs (an image with itself) and no duplicated pair (in either order);
- reproducible: the same records (in any order) and seed give the same pairs;
- positives are all unordered same-patient combinations, optionally capped per patient
  (``max_positive_per_patient``) so that a patient with many images (e.g. 00000181, who owns
  most same-patient pairs of the subset's test split) does not dominate;
- patients with a single image cannot form a positive pair: they only appear in negative pairs;
- negatives are drawn uniformly over image pairs of different patients.
"""

from __future__ import annotations

import csv
import os
import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .records import ImageRecord

__all__ = [
    "VerificationPair",
    "sample_verification_pairs",
    "sample_split_pairs",
    "check_pairs_within_split",
    "pair_patient_ids",
    "write_pairs",
    "read_pairs",
]

PathLike = str | os.PathLike


class VerificationPair(NamedTuple):
    """Two image names and ``label`` = 1 for the same patient, 0 for different patients."""

    image1: str
    image2: str
    label: int


def _positive_pool(
    starts: np.ndarray, counts: np.ndarray, cap: int | None, rng: np.random.Generator
) -> np.ndarray:
    """All (or at most ``cap`` per patient) same-patient index pairs ``(i < j)``, shape (P, 2)."""
    chunks = []
    triu_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for s, n in zip(starts.tolist(), counts.tolist()):
        if n < 2:
            continue
        if n not in triu_cache:
            triu_cache[n] = np.triu_indices(n, k=1)
        a, b = triu_cache[n]
        if cap is not None and len(a) > cap:
            keep = np.sort(rng.choice(len(a), size=cap, replace=False))
            a, b = a[keep], b[keep]
        chunks.append(np.stack([a + s, b + s], axis=1))
    if not chunks:
        return np.zeros((0, 2), dtype=np.int64)
    return np.concatenate(chunks).astype(np.int64, copy=False)


def _negative_pairs(codes: np.ndarray, n_neg: int, available: int, rng: np.random.Generator) -> np.ndarray:
    """``n_neg`` distinct different-patient index pairs ``(i < j)`` drawn uniformly, shape (n_neg, 2)."""
    n = len(codes)
    if n_neg == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if 2 * n_neg >= available:  # dense regime (tiny sets): enumerate, then choose
        a, b = np.triu_indices(n, k=1)
        diff = codes[a] != codes[b]
        a, b = a[diff], b[diff]
        keep = np.sort(rng.choice(len(a), size=n_neg, replace=False))
        return np.stack([a[keep], b[keep]], axis=1).astype(np.int64)
    keys = np.zeros(0, dtype=np.int64)
    while len(keys) < n_neg:
        m = int((n_neg - len(keys)) * 1.25) + 16
        i = rng.integers(0, n, size=m)
        j = rng.integers(0, n, size=m)
        ok = codes[i] != codes[j]
        lo, hi = np.minimum(i[ok], j[ok]), np.maximum(i[ok], j[ok])
        cand = np.concatenate([keys, lo.astype(np.int64) * n + hi])
        _, first = np.unique(cand, return_index=True)
        keys = cand[np.sort(first)]  # dedupe, keeping draw order
    keys = keys[:n_neg]
    return np.stack([keys // n, keys % n], axis=1)


def sample_verification_pairs(
    records: Sequence[ImageRecord],
    num_pairs: int | None = None,
    seed: int | np.random.Generator | np.random.SeedSequence | None = 0,
    max_positive_per_patient: int | None = None,
) -> list[VerificationPair]:
    """Balanced same-/different-patient pairs from the records of ONE split.

    Args:
        records: the images of one split (never mix splits here; see :func:`sample_split_pairs`).
        num_pairs: total number of pairs (half positive, half negative; an odd number is rounded
            down). ``None`` uses every available positive pair (after the cap) and as many negatives.
            When fewer positives exist than asked for, all are used and a warning is issued.
        seed: seed, ``SeedSequence`` or generator; results do not depend on the order of ``records``.
        max_positive_per_patient: keep at most this many (randomly chosen) positive pairs per patient.

    Returns:
        shuffled pairs; each pair's image order is random.

    Raises:
        ValueError: duplicated image names, a non-positive cap, or a negative ``num_pairs``.
    """
    if max_positive_per_patient is not None and max_positive_per_patient < 1:
        raise ValueError(f"max_positive_per_patient must be >= 1 or None, got {max_positive_per_patient}")
    if num_pairs is not None and num_pairs < 0:
        raise ValueError(f"num_pairs must be >= 0 or None, got {num_pairs}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    recs = sorted(records, key=lambda r: r.image)  # canonical order -> order-independent result
    names = np.array([r.image for r in recs], dtype=object)
    if len(names) > 1 and np.any(names[1:] == names[:-1]):
        raise ValueError("duplicated image names in records")
    pids = np.array([r.patient_id for r in recs], dtype=object)
    n = len(recs)
    if n < 2:
        return []
    _, codes = np.unique(pids, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    codes_sorted = codes[order]
    counts = np.bincount(codes_sorted)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    pos = _positive_pool(starts, counts, max_positive_per_patient, rng)
    pos = order[pos] if len(pos) else pos  # back to indices into ``recs``
    total_same = int(np.sum(counts * (counts - 1) // 2))
    neg_available = n * (n - 1) // 2 - total_same

    n_pos = len(pos) if num_pairs is None else min(num_pairs // 2, len(pos))
    if num_pairs is not None and num_pairs // 2 > len(pos):
        warnings.warn(
            f"asked for {num_pairs // 2} positive pairs but only {len(pos)} exist; using {len(pos)}", stacklevel=2
        )
    if n_pos > neg_available:
        warnings.warn(f"only {neg_available} different-patient pairs exist; using {neg_available} of each", stacklevel=2)
        n_pos = neg_available
    if n_pos < len(pos):
        pos = pos[np.sort(rng.choice(len(pos), size=n_pos, replace=False))]
    neg = _negative_pairs(codes, n_pos, neg_available, rng)

    pairs = np.concatenate([pos, neg]).reshape(-1, 2)
    labels = np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)])
    swap = rng.random(len(pairs)) < 0.5
    pairs[swap] = pairs[swap][:, ::-1]
    perm = rng.permutation(len(pairs))
    pairs, labels = pairs[perm], labels[perm]
    return [VerificationPair(names[a], names[b], int(y)) for (a, b), y in zip(pairs.tolist(), labels.tolist())]


def sample_split_pairs(
    splits: Mapping[str, Sequence[ImageRecord]],
    num_pairs: int | Mapping[str, int | None] | None = None,
    seed: int = 0,
    max_positive_per_patient: int | None = None,
) -> dict[str, list[VerificationPair]]:
    """Pairs for every split, each drawn only within its own split.

    Each split gets its own generator derived from ``seed`` and the split name, so adding or
    removing a split does not change the pairs of the others.

    Args:
        splits: split name -> records (e.g. from :func:`~monai_prichexy.data.make_splits`).
        num_pairs: pairs per split, one number for all or a mapping split name -> number.
        seed: base seed.
        max_positive_per_patient: see :func:`sample_verification_pairs`.

    Returns:
        split name -> pairs.
    """
    out = {}
    for name, recs in splits.items():
        n = num_pairs.get(name) if isinstance(num_pairs, Mapping) else num_pairs
        ss = np.random.SeedSequence([int(seed), zlib.crc32(str(name).encode("utf-8"))])
        out[name] = sample_verification_pairs(recs, n, seed=ss, max_positive_per_patient=max_positive_per_patient)
    return out


def check_pairs_within_split(
    pairs: Iterable[VerificationPair | tuple], splits: Mapping[str, Sequence[ImageRecord]]
) -> None:
    """Raise ``ValueError`` if a pair crosses splits, names an unknown image or is a self-pair."""
    where = {r.image: name for name, recs in splits.items() for r in recs}
    for k, (a, b, *_rest) in enumerate(pairs):
        if a == b:
            raise ValueError(f"pair {k}: self-pair {a}")
        sa, sb = where.get(a), where.get(b)
        if sa is None or sb is None:
            raise ValueError(f"pair {k}: image {a if sa is None else b} is in no split")
        if sa != sb:
            raise ValueError(f"pair {k}: {a} ({sa}) and {b} ({sb}) are in different splits")


def pair_patient_ids(
    pairs: Iterable[VerificationPair | tuple], records: Iterable[ImageRecord]
) -> list[tuple[str, str]]:
    """Patient ids of both images of every pair, e.g. to weight each patient's pairs equally.

    The ids stay out of the samples that flow through training; use this for analysis only.
    """
    pid = {r.image: r.patient_id for r in records}
    return [(pid[a], pid[b]) for a, b, *_ in pairs]


def write_pairs(path: PathLike, pairs: Iterable[VerificationPair | tuple]) -> Path:
    """Write pairs to a CSV with the header ``image1,image2,label``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["image1", "image2", "label"])
        for a, b, y in pairs:
            w.writerow([a, b, int(y)])
    return path


def read_pairs(path: PathLike) -> list[VerificationPair]:
    """Read an ``image1,image2,label`` CSV.

    Raises:
        ValueError: bad header, a label other than 0/1, or a self-pair (message names file and line).
    """
    path = Path(path)
    out: list[VerificationPair] = []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        if header[:3] != ["image1", "image2", "label"]:
            raise ValueError(f"{path}: expected the header 'image1,image2,label', got {header}")
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 3:
                raise ValueError(f"{path.name}, line {lineno}: expected 3 columns, got {len(row)}")
            a, b, y = row[0].strip(), row[1].strip(), row[2].strip()
            if y not in ("0", "1"):
                raise ValueError(f"{path.name}, line {lineno}: label must be 0 or 1, got {y!r}")
            if a == b:
                raise ValueError(f"{path.name}, line {lineno}: self-pair {a}")
            out.append(VerificationPair(a, b, int(y)))
    return out
