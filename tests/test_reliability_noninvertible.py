"""Non-invertibility (issue #6, item 6): what travels with an anonymized MetaTensor.

Data loaded by MONAI's ``LoadImage`` / ``LoadImaged`` from a PHI-laden DICOM file (whose file
name carries PHI too) with ``PydicomReader`` and ``ITKReader`` (which copies every tag into the
meta dict), ``image_only=True`` and ``False``, then ``DeformAnonymize`` / ``DeformAnonymized``:
the output's meta dict, the legacy ``image_meta_dict``, ``applied_operations`` and the
transform object itself hold neither any input PHI nor the flow field / sampling grid; the
transforms have no ``inverse``; MONAI's inverse machinery cannot undo them; and the output
cannot be reproduced from what is recorded (it depends on generator weights that are not).
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    EnsureChannelFirst,
    EnsureChannelFirstd,
    InvertibleTransform,
    LoadImage,
    LoadImaged,
    Rotate90d,
    SqueezeDimd,
)

from tests.dicom_fixtures import PATIENT_FAMILY, PATIENT_ID, make_radiograph_dataset, phi_needles, save
from tests.reliability_corpus import tiny_network

ROWS, COLS = 48, 40
READERS = ["PydicomReader", "ITKReader"]


@pytest.fixture(scope="module")
def phi_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("phi") / f"{PATIENT_FAMILY}_{PATIENT_ID}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return save(make_radiograph_dataset(ROWS, COLS), folder / f"{PATIENT_FAMILY}^Hieronymus_19610314.dcm")


def _needles() -> list[bytes]:
    return phi_needles() + [f"{PATIENT_FAMILY}_{PATIENT_ID}".encode(), f"{PATIENT_FAMILY}^Hieronymus_19610314".encode()]


def _reader_or_skip(name: str):
    if name == "ITKReader":
        pytest.importorskip("itk")
    return name


def _blob(*objects) -> bytes:
    """Everything an object graph holds, as bytes (pickle plus repr, str of tensors)."""
    out = b""
    for obj in objects:
        try:
            out += pickle.dumps(obj)
        except Exception:  # pragma: no cover - unpicklable: fall back to repr
            pass
        out += repr(obj).encode("utf-8", "replace")
    return out


def _leaks(blob: bytes) -> list[bytes]:
    lowered = blob.lower()
    return [n for n in _needles() if n.lower() in lowered]


def _big_arrays(obj, limit: int, path: str = "") -> list[str]:
    """Paths of arrays / tensors with >= ``limit`` elements anywhere inside ``obj``."""
    found = []
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        if int(np.prod(obj.shape)) >= limit:
            found.append(f"{path}: {type(obj).__name__}{tuple(obj.shape)}")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            found += _big_arrays(value, limit, f"{path}.{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            found += _big_arrays(value, limit, f"{path}[{i}]")
    elif hasattr(obj, "__dict__") and not isinstance(obj, torch.nn.Module):
        found += _big_arrays(vars(obj), limit, path)
    return found


@pytest.fixture(scope="module")
def net():
    return tiny_network(mu=0.01, working_size=16)


def test_guard_loaded_metadata_does_carry_phi(phi_file):
    """The scan is meaningful: MONAI's loaders do put PHI into the metadata."""
    for reader in READERS:
        _reader_or_skip(reader)
        img, meta = LoadImage(reader=reader, image_only=False)(str(phi_file))
        assert _leaks(_blob(dict(meta), dict(img.meta))), reader


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("image_only", [True, False])
def test_array_transform_output_carries_no_phi_and_no_flow(phi_file, net, reader, image_only):
    from monai_prichexy.transforms import DeformAnonymize

    _reader_or_skip(reader)
    loaded = LoadImage(reader=reader, image_only=image_only)(str(phi_file))
    img = loaded if image_only else loaded[0]
    img = EnsureChannelFirst()(img)
    if img.shape[-1] == 1 and img.ndim == 4:  # ITK: (1, W, H, 1)
        img = img[..., 0]
    transform = DeformAnonymize(net)
    out = transform(img)
    assert isinstance(out, MetaTensor) and out.shape == img.shape
    assert not torch.equal(out.as_tensor(), img.as_tensor()), "nothing was deformed"
    assert out.applied_operations == []
    assert set(out.meta) <= {"affine", "original_affine", "spatial_shape", "original_channel_dim", "space", "filename_or_obj"}
    assert str(out.meta["filename_or_obj"]).startswith("anon_")
    blob = _blob(dict(out.meta), out.applied_operations, vars(out), out)
    assert not _leaks(blob), _leaks(blob)
    hw = int(np.prod(out.shape[-2:]))
    assert not _big_arrays({"meta": dict(out.meta), "ops": out.applied_operations}, 64), "an array rides along"
    assert not _big_arrays(vars(transform), hw // 2), "the transform kept a grid or flow"
    assert len(pickle.dumps((dict(out.meta), out.applied_operations))) < 4096, "metadata too large to hold no flow field"


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("image_only", [True, False])
def test_dict_pipeline_output_carries_no_phi_and_cannot_be_inverted(phi_file, net, reader, image_only):
    from monai_prichexy.transforms import DeformAnonymized

    _reader_or_skip(reader)
    pipeline = Compose(
        [
            LoadImaged("image", reader=reader, image_only=image_only),
            EnsureChannelFirstd("image"),
            *([SqueezeDimd("image", dim=3)] if reader == "ITKReader" else []),  # ITK: (1, H, W, 1)
            Rotate90d("image", k=1),  # an invertible, traced step before the anonymizer
            DeformAnonymized("image", generator=net),
        ]
    )
    before = Compose(pipeline.transforms[:-1])({"image": str(phi_file)})
    assert before["image"].applied_operations, "guard: the traced step is recorded before anonymization"
    out = pipeline({"image": str(phi_file)})
    assert "image_transforms" not in out
    blob = _blob({k: v for k, v in out.items() if k != "image"}, dict(out["image"].meta), out["image"].applied_operations, out["image"])
    assert not _leaks(blob), _leaks(blob)
    assert out["image"].applied_operations == []
    if not image_only:
        assert set(out["image_meta_dict"]) <= {"affine", "original_affine", "spatial_shape", "original_channel_dim", "space", "filename_or_obj"}
    assert not _big_arrays({k: v for k, v in out.items() if k != "image"}, 64)
    assert not _big_arrays(dict(out["image"].meta), 64)

    # MONAI's inverse machinery cannot take the anonymized image back to the original: the
    # anonymizer left no trace, so undoing even the traced step before it is refused
    with pytest.raises(RuntimeError, match=r"Rotate90d\.inverse") as refused:
        pipeline.inverse(out)
    assert isinstance(refused.value.__cause__, ValueError)
    assert "empty 'applied_operations'" in str(refused.value.__cause__)


def test_transforms_have_no_inverse(net):
    from monai_prichexy.transforms import DeformAnonymize, DeformAnonymized

    for transform in (DeformAnonymize(net), DeformAnonymized("image", generator=net)):
        assert not isinstance(transform, InvertibleTransform)
        assert not hasattr(transform, "inverse")
        assert not hasattr(transform, "inverse_transform")


def test_output_not_reproducible_from_recorded_metadata(phi_file, net):
    """Everything recorded about the anonymization fits in the meta dict and names neither the
    weights nor the deformation; another generator of the same mu gives another output, so
    the output cannot be recomputed -- or undone -- from the metadata."""
    from monai_prichexy.transforms import DeformAnonymize

    img = EnsureChannelFirst()(LoadImage(reader="PydicomReader", image_only=True)(str(phi_file)))
    out = DeformAnonymize(net)(img)
    assert out.applied_operations == []
    recorded = " ".join(f"{k}={v if isinstance(v, str) else ''}" for k, v in out.meta.items()).lower()
    for word in ("flow", "grid", "displacement", "mu=", "weight", "seed", "generator", "sha256", "deform"):
        assert word not in recorded, word
    other = DeformAnonymize(tiny_network(seed=7, mu=0.01, working_size=16))(img)
    assert dict(other.meta).keys() == dict(out.meta).keys()
    assert not torch.allclose(other.as_tensor(), out.as_tensor()), "output does not depend on the (unrecorded) weights"
    again = DeformAnonymize(net)(img)
    assert torch.equal(again.as_tensor(), out.as_tensor()), "deterministic for the same weights"
    # the displacement is sub-pixel and data-dependent: the original is not the output
    assert not torch.equal(out.as_tensor(), img.as_tensor())


def test_non_meta_inputs_carry_nothing_extra(net):
    from monai_prichexy.transforms import DeformAnonymize

    arr = np.random.default_rng(0).random((1, ROWS, COLS)).astype(np.float32)
    out = DeformAnonymize(net)(arr)
    assert type(out) is np.ndarray and out.shape == arr.shape
    tensor_out = DeformAnonymize(net)(torch.from_numpy(arr))
    assert type(tensor_out) is torch.Tensor and not hasattr(tensor_out, "meta")
