"""Lazy MONAI datasets of chest radiographs and the shared preprocessing chain.

Images are read one item at a time from ``image_dir / record.image`` through MONAI's readers
(PNG/JPEG by PIL, NIfTI by nibabel, DICOM with or without ``.dcm`` by ITK), so the 112,120
ChestX-ray14 images never have to fit in memory. Every image comes out as a float32 tensor of
shape ``(1, rows, columns)`` -- the orientation a viewer shows and ``numpy.asarray(PIL.Image)``
gives -- resized to the working size and min-max scaled to ``[0, 1]`` per image
(Packhäuser et al., MICCAI 2023 work at 256 x 256).

Patient ids stay in :attr:`ChestXray14Dataset.records`; they are never put into samples.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import Dataset
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    Resized,
    ScaleIntensityd,
)

from ..transforms.layout import RowsFirstd, ToGrayscaled
from ..transforms.view import NetworkViewd
from .keys import BatchKeys
from .reader import RadiographReader
from .records import ImageRecord
from .splits import load_split
from .tables import read_table
from .pairs import VerificationPair, read_pairs

__all__ = [
    "DEFAULT_READERS",
    "build_transforms",
    "resolve_image_paths",
    "ChestXray14Dataset",
    "ChestXray14PairDataset",
]

PathLike = str | os.PathLike

DEFAULT_READERS: tuple[str, ...] = ("ITKReader", "NibabelReader", "PILReader")
"""MONAI reader names, lowest priority first: PIL for PNG/JPEG, nibabel for NIfTI, ITK for the rest
(DICOM with or without ``.dcm``, MHA, NRRD)."""



def _default_readers() -> tuple[str, ...]:
    if importlib.util.find_spec("itk") is None:  # ITK missing: pydicom reads .dcm (same axis convention)
        return ("PydicomReader", "NibabelReader", "PILReader")
    return DEFAULT_READERS


def build_transforms(
    size: int | Sequence[int] | None = 256,
    keys: KeysCollection = (BatchKeys.IMAGE,),
    mode: str = "bilinear",
    anti_aliasing: bool = True,
    reader: str | Sequence[str] | None = None,
    invert_monochrome1: bool = True,
    allow_missing_keys: bool = False,
) -> Compose:
    """The shared loading chain: file path(s) -> float32 ``(1, size, size)`` tensors in ``[0, 1]``.

    ``LoadImaged(image_only=True, dtype=None)`` with :class:`~monai_prichexy.data.RadiographReader`
    first (native values, rows first; MONAI's readers for what it refuses) -> ``EnsureChannelFirstd``
    -> :class:`RowsFirstd` (MONAI readers' images only) -> :class:`ToGrayscaled` ->
    :class:`~monai_prichexy.transforms.NetworkViewd` (the generator's view: DICOM LUT view, else
    min-max) -> ``Resized`` -> ``ScaleIntensityd(minv=0, maxv=1)`` (per image) ->
    ``EnsureTyped(float32)``. Outputs are MONAI ``MetaTensor`` objects.

    Args:
        size: working size (int for a square, or ``(rows, columns)``); ``None`` keeps the native size.
        keys: the keys that hold file paths.
        mode: interpolation mode of ``Resized``.
        anti_aliasing: Gaussian anti-aliasing when down-sampling.
        reader: MONAI reader name(s) or instances, lowest priority first; default
            :data:`DEFAULT_READERS` and :class:`~monai_prichexy.data.RadiographReader` (tried first).
        invert_monochrome1: see :class:`ToGrayscale`.
        allow_missing_keys: passed to every transform.

    Returns:
        a ``monai.transforms.Compose``.
    """
    if reader is None:  # the project's reader first; MONAI's for what it refuses (colour, MHA, NRRD, CT, ...)
        readers = (*_default_readers(), RadiographReader(allow_secondary_capture=True))
    else:
        readers = tuple([reader] if isinstance(reader, str) else reader)
    xforms: list = [
        LoadImaged(keys, reader=list(readers), dtype=None, image_only=True, allow_missing_keys=allow_missing_keys),
        EnsureChannelFirstd(keys, allow_missing_keys=allow_missing_keys),
        RowsFirstd(keys, allow_missing_keys=allow_missing_keys),
        ToGrayscaled(keys, invert_monochrome1=invert_monochrome1, allow_missing_keys=allow_missing_keys),
        NetworkViewd(keys, allow_missing_keys=allow_missing_keys),
    ]
    if size is not None:
        spatial = (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
        if len(spatial) != 2 or min(spatial) < 1:
            raise ValueError(f"size must be a positive int or (rows, columns), got {size}")
        xforms.append(
            Resized(keys, spatial_size=spatial, mode=mode, anti_aliasing=anti_aliasing, allow_missing_keys=allow_missing_keys)
        )
    xforms += [
        ScaleIntensityd(keys, minv=0.0, maxv=1.0, allow_missing_keys=allow_missing_keys),
        EnsureTyped(keys, dtype=torch.float32, allow_missing_keys=allow_missing_keys),
    ]
    return Compose(xforms)


def resolve_image_paths(
    image_dir: PathLike, names: Sequence[str], recursive: bool = True, missing: str = "error"
) -> list[str | None]:
    """Full paths of image files, looked up once without opening them.

    Names are looked up directly in ``image_dir`` first; names not found there are searched in
    its sub-folders (the official download unpacks into ``images_001/images/`` ... ``images_012/images/``).

    Args:
        image_dir: the image folder.
        names: file names relative to ``image_dir``.
        recursive: search sub-folders for names not found directly.
        missing: ``"error"`` raises ``FileNotFoundError``; ``"skip"`` returns ``None`` for them.

    Returns:
        one path (or ``None``) per name.
    """
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
    root = Path(image_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    with os.scandir(root) as it:
        direct = {e.name for e in it if not e.is_dir()}
    out: list[str | None] = []
    todo: list[int] = []
    for k, name in enumerate(names):
        if name in direct or (("/" in name or os.sep in name) and (root / name).is_file()):
            out.append(str(root / name))
        else:
            out.append(None)
            todo.append(k)
    if todo and recursive:
        index: dict[str, str] = {}
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            if Path(dirpath) == root:
                continue
            for f in filenames:
                index.setdefault(f, os.path.join(dirpath, f))
        for k in todo:
            out[k] = index.get(Path(names[k]).name)
    lost = [names[k] for k in todo if out[k] is None]
    if lost and missing == "error":
        raise FileNotFoundError(f"{len(lost)} of {len(names)} images not found under {root}, e.g. {lost[:3]}")
    return out


class ChestXray14Dataset(Dataset):
    """Single images for abnormality classification, read lazily.

    Each item is ``{"image": (1, H, W) float32 in [0, 1], "label": (C,) float32}``, the label vector over the
    data set's classes (14 multi-hot ChestX-ray14 findings, or one-hot Kermany classes).
    All arguments are JSON-serialisable, so a bundle config can build it with ``_target_``.

    Args:
        image_dir: folder of the images (sub-folders are searched, see :func:`resolve_image_paths`).
        table: path to ``Data_Entry_2017*.csv[.gz]`` or ``labels.csv``, or a list of records.
        split: split name to keep (``None``: the whole table).
        split_file, train_val_list, test_list, fractions, val_fraction, seed: how to split; see
            :func:`~monai_prichexy.data.make_splits`.
        size: working size for :func:`build_transforms`.
        transform: replaces the default ``build_transforms(size, keys=(image_key,))``.
        image_key: key of the image in each item.
        label_key: key of the label vector in each item.
        missing: ``"error"`` or ``"skip"`` images that are not on disk.

    Attributes:
        records: the records of the items, in item order (they hold the patient ids).
    """

    def __init__(
        self,
        image_dir: PathLike,
        table: PathLike | Sequence[ImageRecord],
        split: str | None = None,
        split_file: PathLike | None = None,
        train_val_list: PathLike | None = None,
        test_list: PathLike | None = None,
        fractions: Mapping[str, float] | Sequence[float] | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        size: int | Sequence[int] | None = 256,
        transform: Callable | None = None,
        image_key: str = BatchKeys.IMAGE,
        label_key: str = BatchKeys.LABEL,
        missing: str = "error",
    ) -> None:
        records = load_split(
            table, split, split_file=split_file, train_val_list=train_val_list, test_list=test_list,
            fractions=fractions, val_fraction=val_fraction, seed=seed,
        )
        paths = resolve_image_paths(image_dir, [r.image for r in records], missing=missing)
        kept = [(r, p) for r, p in zip(records, paths) if p is not None]
        if len(kept) < len(records):
            warnings.warn(f"skipped {len(records) - len(kept)} images not found under {image_dir}", stacklevel=2)
        self.records: list[ImageRecord] = [r for r, _ in kept]
        self.image_dir = str(image_dir)
        data = [{image_key: p, label_key: torch.from_numpy(r.labels.copy())} for r, p in kept]
        super().__init__(data, transform if transform is not None else build_transforms(size, keys=(image_key,)))


class ChestXray14PairDataset(Dataset):
    """Verification pairs for the Siamese network, read lazily.

    Each item is ``{"image1", "image2": (1, H, W) float32 in [0, 1], "label": (1,) float32 (1 =
    same patient), "labels1", "labels2": (C,) float32 label vectors of image1 / image2}``. A batch's
    ``label`` is therefore ``(B, 1)``, the shape of the Siamese network's output.

    Args:
        image_dir: folder of the images.
        pairs: path to an ``image1,image2,label`` CSV or a list of pairs (draw them within one
            split, see :func:`~monai_prichexy.data.sample_verification_pairs`).
        table: path to the table or a list of records (for the findings); must cover every image.
        size: working size for :func:`build_transforms`.
        transform: replaces the default ``build_transforms(size, keys=("image1", "image2"))``.
        missing: ``"error"`` or ``"skip"`` pairs whose images are not on disk.

    Attributes:
        pairs: the pairs of the items, in item order.
    """

    def __init__(
        self,
        image_dir: PathLike,
        pairs: PathLike | Sequence[VerificationPair | tuple],
        table: PathLike | Sequence[ImageRecord],
        size: int | Sequence[int] | None = 256,
        transform: Callable | None = None,
        missing: str = "error",
    ) -> None:
        pair_list = read_pairs(pairs) if isinstance(pairs, (str, os.PathLike)) else [VerificationPair(*p) for p in pairs]
        records = read_table(table)[0] if isinstance(table, (str, os.PathLike)) else table
        labels = {r.image: r.labels for r in records}
        unknown = sorted({n for p in pair_list for n in p[:2] if n not in labels})
        if unknown:
            raise KeyError(f"{len(unknown)} pair images are not in the table, e.g. {unknown[:3]}")
        names = sorted({n for p in pair_list for n in p[:2]})
        where = dict(zip(names, resolve_image_paths(image_dir, names, missing=missing)))
        kept = [p for p in pair_list if where[p.image1] is not None and where[p.image2] is not None]
        if len(kept) < len(pair_list):
            warnings.warn(f"skipped {len(pair_list) - len(kept)} pairs with images not found under {image_dir}", stacklevel=2)
        self.pairs: list[VerificationPair] = kept
        self.image_dir = str(image_dir)
        data = [
            {
                BatchKeys.IMAGE1: where[p.image1],
                BatchKeys.IMAGE2: where[p.image2],
                BatchKeys.LABEL: torch.tensor([float(p.label)], dtype=torch.float32),
                BatchKeys.LABELS1: torch.from_numpy(labels[p.image1].copy()),
                BatchKeys.LABELS2: torch.from_numpy(labels[p.image2].copy()),
            }
            for p in kept
        ]
        super().__init__(data, transform if transform is not None else build_transforms(size, keys=(BatchKeys.IMAGE1, BatchKeys.IMAGE2)))
