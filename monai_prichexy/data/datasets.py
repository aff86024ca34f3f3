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
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import Dataset, MetaTensor
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    Resized,
    ScaleIntensityd,
    SqueezeDim,
    Transform,
)
from monai.utils import TransformBackends

from .records import ImageRecord
from .splits import load_split
from .tables import read_table
from .pairs import VerificationPair, read_pairs

__all__ = [
    "DEFAULT_READERS",
    "ToGrayscale",
    "ToGrayscaled",
    "ToGrayscaleD",
    "ToGrayscaleDict",
    "RowsFirst",
    "RowsFirstd",
    "RowsFirstD",
    "RowsFirstDict",
    "build_transforms",
    "resolve_image_paths",
    "ChestXray14Dataset",
    "ChestXray14PairDataset",
]

PathLike = str | os.PathLike

DEFAULT_READERS: tuple[str, ...] = ("ITKReader", "NibabelReader", "PILReader")
"""MONAI reader names, lowest priority first: PIL for PNG/JPEG, nibabel for NIfTI, ITK for the rest
(DICOM with or without ``.dcm``, MHA, NRRD)."""

_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's convert("L")


def _photometric(img) -> str:
    """PhotometricInterpretation from pydicom-style metadata.

    ITK's key ``0028|0004`` is deliberately not read: GDCM (ITK >= 5.3) already returns
    MONOCHROME1 pixels inverted to MONOCHROME2 while keeping the original tag value.
    """
    meta = getattr(img, "meta", None) or {}
    for key in ("00280004", "PhotometricInterpretation"):
        val = meta.get(key)
        if isinstance(val, Mapping):  # pydicom JSON: {"vr": "CS", "Value": ["MONOCHROME1"]}
            val = (val.get("Value") or [""])[0]
        if val is not None:
            return str(val).strip().upper()
    return ""


class ToGrayscale(Transform):
    """Channel-first image ``(C, ...)`` to one grayscale channel ``(1, ...)``.

    RGB and RGBA (some ChestX-ray14 PNGs are RGBA) use the ITU-R BT.601 luma, as PIL's
    ``convert("L")``; alpha is ignored; 2 channels (gray + alpha) keep the first. DICOM
    ``MONOCHROME1`` images come out with bone bright: ITK (the default DICOM reader) inverts them
    itself; with ``PydicomReader(prune_metadata=False)`` this transform inverts them.

    Args:
        invert_monochrome1: invert images whose metadata says ``MONOCHROME1``.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, invert_monochrome1: bool = True) -> None:
        self.invert_monochrome1 = invert_monochrome1

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if not isinstance(img, torch.Tensor):
            img = torch.as_tensor(np.asarray(img))
        c = img.shape[0]
        if c in (3, 4):
            w = torch.tensor(_LUMA, dtype=torch.float32, device=img.device).view(3, *([1] * (img.ndim - 1)))
            out = (img[:3].float() * w).sum(0, keepdim=True)
        elif c in (1, 2):
            out = img[:1]
        else:
            raise ValueError(f"expected 1-4 channels (gray, gray+alpha, RGB, RGBA), got shape {tuple(img.shape)}")
        if self.invert_monochrome1 and _photometric(img) == "MONOCHROME1":
            out = out.max() + out.min() - out
        return out


class ToGrayscaled(MapTransform):
    """Dictionary version of :class:`ToGrayscale`."""

    backend = ToGrayscale.backend

    def __init__(self, keys: KeysCollection, invert_monochrome1: bool = True, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = ToGrayscale(invert_monochrome1)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class RowsFirst(Transform):
    """MONAI's ``(C, x, y)`` spatial order to ``(C, rows, columns)``.

    MONAI's readers return the first spatial axis along the image width (x). This swaps the two
    spatial axes (and the affine's columns) so that the array matches ``numpy.asarray`` of the
    PIL image and pydicom's ``pixel_array``. A trailing singleton axis (ITK reads a 2D DICOM as
    ``(x, y, 1)``) is squeezed first; ``spatial_shape`` in the meta dict is updated to match.

    Raises:
        ValueError: for a true 3D volume.
    """

    backend = [TransformBackends.TORCH]

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        while img.ndim > 3 and img.shape[-1] == 1:
            img = SqueezeDim(dim=-1, update_meta=True)(img)
        if img.ndim != 3:
            raise ValueError(f"expected a 2D radiograph (C, x, y), got shape {tuple(img.shape)}")
        out = img.transpose(1, 2).contiguous()
        if isinstance(out, MetaTensor):
            aff = out.affine.clone()
            aff[:, [0, 1]] = aff[:, [1, 0]]
            out.affine = aff
            out.meta["spatial_shape"] = np.asarray(out.shape[1:])  # SaveImage reads it
        return out


class RowsFirstd(MapTransform):
    """Dictionary version of :class:`RowsFirst`."""

    backend = RowsFirst.backend

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = RowsFirst()

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


ToGrayscaleD = ToGrayscaleDict = ToGrayscaled
RowsFirstD = RowsFirstDict = RowsFirstd


def _default_readers() -> tuple[str, ...]:
    if importlib.util.find_spec("itk") is None:  # ITK missing: pydicom reads .dcm (same axis convention)
        return ("PydicomReader", "NibabelReader", "PILReader")
    return DEFAULT_READERS


def build_transforms(
    size: int | Sequence[int] | None = 256,
    keys: KeysCollection = ("image",),
    mode: str = "bilinear",
    anti_aliasing: bool = True,
    reader: str | Sequence[str] | None = None,
    invert_monochrome1: bool = True,
    allow_missing_keys: bool = False,
) -> Compose:
    """The shared loading chain: file path(s) -> float32 ``(1, size, size)`` tensors in ``[0, 1]``.

    ``LoadImaged(image_only=True)`` -> ``EnsureChannelFirstd`` -> :class:`RowsFirstd` ->
    :class:`ToGrayscaled` -> ``Resized`` -> ``ScaleIntensityd(minv=0, maxv=1)`` (per image) ->
    ``EnsureTyped(float32)``. Outputs are MONAI ``MetaTensor`` objects.

    Args:
        size: working size (int for a square, or ``(rows, columns)``); ``None`` keeps the native size.
        keys: the keys that hold file paths.
        mode: interpolation mode of ``Resized``.
        anti_aliasing: Gaussian anti-aliasing when down-sampling.
        reader: MONAI reader name(s), lowest priority first; default :data:`DEFAULT_READERS`.
        invert_monochrome1: see :class:`ToGrayscale`.
        allow_missing_keys: passed to every transform.

    Returns:
        a ``monai.transforms.Compose``.
    """
    readers = _default_readers() if reader is None else tuple([reader] if isinstance(reader, str) else reader)
    xforms: list = [
        LoadImaged(keys, reader=list(readers), image_only=True, allow_missing_keys=allow_missing_keys),
        EnsureChannelFirstd(keys, allow_missing_keys=allow_missing_keys),
        RowsFirstd(keys, allow_missing_keys=allow_missing_keys),
        ToGrayscaled(keys, invert_monochrome1=invert_monochrome1, allow_missing_keys=allow_missing_keys),
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
        image_key: str = "image",
        label_key: str = "label",
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
                "image1": where[p.image1],
                "image2": where[p.image2],
                "label": torch.tensor([float(p.label)], dtype=torch.float32),
                "labels1": torch.from_numpy(labels[p.image1].copy()),
                "labels2": torch.from_numpy(labels[p.image2].copy()),
            }
            for p in kept
        ]
        super().__init__(data, transform if transform is not None else build_transforms(size, keys=("image1", "image2")))
