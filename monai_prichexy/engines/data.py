"""Data for the training stages: splits, verification pairs, lazy datasets and loaders.

A thin layer over :mod:`monai_prichexy.data` (table, patient-wise splits, pair sampling and the
lazy MONAI datasets) that the stages, the bundle configs and the benchmark share. Images are
read one batch at a time by the loaders' workers; nothing is held in memory beyond file names,
labels and pairs, so the same code runs on the 112,120-image ChestX-ray14 folder.

Privacy caveat of the subset (data README, caveat 2): re-identification numbers must be computed
on ``images64/`` or on images degraded to 64 px first (``degrade_to=64``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
from monai.data import CacheDataset
from monai.transforms import Compose, Resized
from torch.utils.data import DataLoader, Dataset

from ..data import (
    ChestXray14Dataset,
    ChestXray14PairDataset,
    ImageRecord,
    VerificationPair,
    build_transforms,
    make_splits,
    pair_patient_ids,
    read_table,
    sample_split_pairs,
)
from ..data.keys import BatchKeys
from ..labels import LabelSchema
from .utils import get_logger

__all__ = ["DataModule", "make_loader"]

PathLike = str | os.PathLike
logger = get_logger("data")


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """A data loader through ``idist.auto_dataloader``.

    Outside distributed runs this is a plain ``DataLoader``. Under :mod:`ignite.distributed`,
    ``batch_size`` is the GLOBAL batch (split over the processes) and a ``DistributedSampler``
    is added, so one config gives the same optimisation whatever the number of processes.
    """
    return idist.auto_dataloader(
        dataset,
        batch_size=int(batch_size),
        shuffle=bool(shuffle),
        num_workers=int(num_workers),
        drop_last=bool(drop_last),
        pin_memory=bool(pin_memory),
        persistent_workers=int(num_workers) > 0,
    )


def _resolve(base: Path, path: PathLike | None) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return base / p


class DataModule:
    """Splits, pairs, datasets and loaders of one data folder.

    All arguments are JSON-serialisable, so a bundle config builds it with ``_target_``.

    Args:
        dataset_dir: the data folder (e.g. ``nih-cxr14-subset``, ``kermany-pediatric-cxr`` or the
            ChestX-ray14 download).
        image_dir: image folder, relative to ``dataset_dir`` unless absolute (``images64`` for
            any privacy number on the subset).
        table: ``labels.csv`` or ``Data_Entry_2017*.csv[.gz]``, relative to ``dataset_dir``.
        dataset: ``"auto"`` (recognised from the table's header), ``"chestxray14"`` or
            ``"kermany"``: decides the classes, the utility metric and the classifier's loss
            (:attr:`schema`).
        split_file: ``patient_id,split`` file (relative to ``dataset_dir`` or absolute); None to use
            the official lists or a random patient-wise split.
        train_val_list, test_list: the official ChestX-ray14 lists (used when no split file).
        image_size: working resolution (square).
        degrade_to: first resize to this size, then to ``image_size`` (removes the resolution
            confound of mixed-resolution folders); None = off.
        num_pairs: pairs per split (int for all or ``{"train": n, ...}``); None = all positives
            and as many negatives.
        max_positive_per_patient: cap of positive pairs per patient (see data README caveat 5).
        max_images: keep at most this many images per split (first ones, for smoke tests).
        seed: seed of the split (when random) and of the pair sampling.
        num_workers: loader workers.
        cache_rate: 0 (default) reads every image lazily at every epoch; > 0 keeps that fraction
            of the preprocessed items in memory (``monai.data.CacheDataset``) -- only for small
            data such as the 64-px subset, never for the full ChestX-ray14 folder.
    """

    def __init__(
        self,
        dataset_dir: PathLike,
        image_dir: PathLike = "images64",
        table: PathLike = "labels.csv",
        dataset: str = "auto",
        split_file: PathLike | None = "splits.csv",
        train_val_list: PathLike | None = None,
        test_list: PathLike | None = None,
        image_size: int = 64,
        degrade_to: int | None = None,
        num_pairs: int | Mapping[str, int | None] | None = None,
        max_positive_per_patient: int | None = None,
        max_images: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
        cache_rate: float = 0.0,
    ) -> None:
        self.dataset_dir = Path(dataset_dir)
        if not self.dataset_dir.is_dir():
            raise FileNotFoundError(f"dataset_dir not found: {self.dataset_dir}")
        self.image_dir = _resolve(self.dataset_dir, image_dir)
        self.table = _resolve(self.dataset_dir, table)
        self.dataset = dataset
        self._schema: LabelSchema | None = None
        self.split_file = _resolve(self.dataset_dir, split_file)
        self.train_val_list = _resolve(self.dataset_dir, train_val_list)
        self.test_list = _resolve(self.dataset_dir, test_list)
        self.image_size = int(image_size)
        self.degrade_to = None if degrade_to is None else int(degrade_to)
        self.num_pairs = dict(num_pairs) if isinstance(num_pairs, Mapping) else num_pairs
        self.max_positive_per_patient = max_positive_per_patient
        self.max_images = max_images
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        if not 0.0 <= float(cache_rate) <= 1.0:
            raise ValueError(f"cache_rate must be in [0, 1], got {cache_rate}")
        self.cache_rate = float(cache_rate)
        self._cache: dict[tuple[str, str], Dataset] = {}
        self._splits: dict[str, list[ImageRecord]] | None = None
        self._pairs: dict[str, list[VerificationPair]] | None = None
        if self.image_dir.name == "images" and (self.dataset_dir / "images64").is_dir() and self.degrade_to is None:
            logger.warning(
                "%s mixes sharp and blurred copies (resolution confound): privacy numbers must use images64/ "
                "or degrade_to=64", self.image_dir
            )

    def describe(self) -> dict[str, Any]:
        """What the data is, for checkpoint meta (relative names only, no machine paths)."""
        return {
            "dataset": self.dataset_dir.name,
            "schema": self.schema.name,
            "image_dir": self.image_dir.name,
            "table": self.table.name if self.table else None,
            "split_file": self.split_file.name if self.split_file else None,
            "image_size": self.image_size,
            "degrade_to": self.degrade_to,
            "num_pairs": self.num_pairs,
            "max_positive_per_patient": self.max_positive_per_patient,
            "seed": self.seed,
            "split_sizes": {k: len(v) for k, v in self.splits.items()},
        }

    # ---------------------------------------------------------------- records and pairs
    @property
    def schema(self) -> LabelSchema:
        """The data set's classes and utility metric (from its table)."""
        if self._schema is None:
            self.splits  # reads the table
        return self._schema  # type: ignore[return-value]

    @property
    def splits(self) -> dict[str, list[ImageRecord]]:
        """Split name -> records (patient-disjoint)."""
        if self._splits is None:
            records, self._schema = read_table(self.table, self.dataset)
            splits = make_splits(
                records,
                split_file=self.split_file,
                train_val_list=self.train_val_list,
                test_list=self.test_list,
                seed=self.seed,
            )
            if self.max_images is not None:
                splits = {k: v[: int(self.max_images)] for k, v in splits.items()}
            self._splits = splits
        return self._splits

    def records(self, split: str) -> list[ImageRecord]:
        """Records of one split."""
        if split not in self.splits:
            raise KeyError(f"split {split!r} not found; available: {sorted(self.splits)}")
        return self.splits[split]

    @property
    def all_pairs(self) -> dict[str, list[VerificationPair]]:
        """Split name -> verification pairs (drawn within each split)."""
        if self._pairs is None:
            self._pairs = sample_split_pairs(
                self.splits, self.num_pairs, seed=self.seed, max_positive_per_patient=self.max_positive_per_patient
            )
        return self._pairs

    def pairs(self, split: str) -> list[VerificationPair]:
        """Verification pairs of one split."""
        self.records(split)
        return self.all_pairs[split]

    def pair_groups(self, split: str) -> np.ndarray:
        """Patient id of the first image of every pair (for patient-weighted AUCs)."""
        return np.array([a for a, _ in pair_patient_ids(self.pairs(split), self.records(split))])

    def patient_ids(self, split: str) -> np.ndarray:
        """Patient id of every image of :meth:`image_dataset` (same order)."""
        return np.array([r.patient_id for r in self.records(split)])

    # ---------------------------------------------------------------- datasets and loaders
    def transform(self, keys: Sequence[str]) -> Compose:
        """Loading chain: read, gray, resize (optionally via ``degrade_to``), scale to [0, 1]."""
        if self.degrade_to is None:
            return build_transforms(self.image_size, keys=tuple(keys))
        return Compose(
            [
                build_transforms(self.degrade_to, keys=tuple(keys)),
                Resized(tuple(keys), spatial_size=(self.image_size, self.image_size), mode="bilinear"),
            ]
        )

    def _cached(self, kind: str, split: str, dataset: Dataset) -> Dataset:
        if self.cache_rate <= 0:
            return dataset
        key = (kind, split)
        if key not in self._cache:
            self._cache[key] = CacheDataset(
                dataset.data, dataset.transform, cache_rate=self.cache_rate, num_workers=None, progress=False
            )
        return self._cache[key]

    def image_dataset(self, split: str) -> Dataset:
        """Lazy ``{"image", "label"}`` dataset of one split (cached when ``cache_rate > 0``)."""
        ds = ChestXray14Dataset(
            self.image_dir, self.records(split), size=self.image_size, transform=self.transform((BatchKeys.IMAGE,))
        )
        return self._cached("image", split, ds)

    def pair_dataset(self, split: str) -> Dataset:
        """Lazy ``{"image1", "image2", "label" (same patient), "labels1", "labels2"}`` dataset of one split."""
        ds = ChestXray14PairDataset(
            self.image_dir,
            self.pairs(split),
            self.records(split),
            size=self.image_size,
            transform=self.transform((BatchKeys.IMAGE1, BatchKeys.IMAGE2)),
        )
        return self._cached("pair", split, ds)

    def loader(self, dataset: Dataset, batch_size: int, shuffle: bool = False, drop_last: bool = False) -> DataLoader:
        """:func:`make_loader` with this module's ``num_workers``."""
        return make_loader(dataset, batch_size, shuffle=shuffle, num_workers=self.num_workers, drop_last=drop_last)

    def image_loader(self, split: str, batch_size: int, shuffle: bool = False, drop_last: bool = False) -> DataLoader:
        """Loader of :meth:`image_dataset`."""
        return self.loader(self.image_dataset(split), batch_size, shuffle, drop_last)

    def pair_loader(self, split: str, batch_size: int, shuffle: bool = False, drop_last: bool = False) -> DataLoader:
        """Loader of :meth:`pair_dataset`."""
        return self.loader(self.pair_dataset(split), batch_size, shuffle, drop_last)
