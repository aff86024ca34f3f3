"""Fuzzing (issue #6, item 5), bounded and reproducible (``derandomize=True``, no database).

* DICOM headers: random values and VRs for the image-pixel and LUT attributes, random bits /
  rows / columns / photometric interpretation / frames / transfer syntax inside and outside
  the supported range, random pixel-data lengths -> :func:`read_radiograph` either accepts
  and gives a finite ``float32`` view in [0, 1] of the declared shape, or raises
  :class:`UnsupportedDicomError`; never another exception, never a hang.
* DICOM bytes: a valid file with random bytes flipped, inserted or cut off -> the same.
* Transform inputs: random shapes, dtypes and value ranges (NaN, inf, huge, tiny, constant)
  as numpy arrays, tensors and MetaTensors -> :class:`DeformAnonymize` returns the same type,
  shape and dtype with values inside the input's range, or raises ``ValueError``.
"""

from __future__ import annotations

import io
import signal
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from tests.dicom_fixtures import make_radiograph_dataset
from tests.reliability_corpus import tiny_network

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,  # wall time is bounded by _no_hang instead (2 shared cores make deadlines flaky)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)
HANG_SECONDS = 10


@contextmanager
def _no_hang(seconds: int = HANG_SECONDS):
    """Fail (instead of hanging the suite) when one call takes longer than ``seconds``."""

    def alarm(signum, frame):
        raise TimeoutError(f"call did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _check_read(data: bytes, tmp_path) -> None:
    from monai_prichexy.dicom import UnsupportedDicomError, read_radiograph

    path = tmp_path / "fuzz.dcm"
    path.write_bytes(data)
    try:
        with _no_hang(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rad = read_radiograph(path)
    except UnsupportedDicomError as err:
        assert str(path) in str(err) and err.reason
        return
    assert rad.view.dtype == np.float32 and rad.view.shape == rad.stored.shape
    assert np.isfinite(rad.view).all()
    assert rad.view.min() >= 0.0 and rad.view.max() <= 1.0
    assert np.issubdtype(rad.stored.dtype, np.integer)
    assert rad.stored.shape == (int(rad.dataset.Rows), int(rad.dataset.Columns))
    low, high = rad.value_range
    assert rad.stored.min() >= low and rad.stored.max() <= high


# ------------------------------------------------------------------------- headers

_TEXTS = st.sampled_from(["", "abc", "-1", "0", "1", "2", "3", "1e9", "nan", "inf", "12.5", " 8 ", "\x00", "65536", "99999999999"])
_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -0.0, 1e-30, 1e30, -1e30, 4095.0, 0.5]),
)


def _int_element(tag: int, vr_default: str):
    """An element for an integer attribute: the right VR with any value, or a wrong VR."""
    return st.one_of(
        st.integers(0, 70000).map(lambda v: DataElement(tag, vr_default, v % 65536)),
        st.integers(-(2**31), 2**31 - 1).map(lambda v: DataElement(tag, "SL", v)),
        _TEXTS.map(lambda v: DataElement(tag, "LO", v)),
        _FLOATS.filter(lambda f: f == f and abs(f) < 1e15).map(lambda v: DataElement(tag, "DS", f"{v:.6g}"[:16])),
        st.just(None),  # absent
    )


_TRANSFER_SYNTAXES = st.sampled_from(
    [
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.5",  # RLE
        "1.2.840.10008.1.2.4.50",  # JPEG baseline
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.100",  # MPEG2
        "1.2.3.4.5",  # private
    ]
)


@st.composite
def headers(draw):
    ds = make_radiograph_dataset(16, 16, bits_stored=12, phi=False)
    rows = draw(st.sampled_from([0, 1, 7, 8, 9, 16, 33, 255, 16384, 16385, 40000, 65535]))
    cols = draw(st.sampled_from([0, 1, 8, 16, 31, 16384, 40000]))
    ds.Rows, ds.Columns = rows, cols
    for tag, vr in ((0x00280100, "US"), (0x00280101, "US"), (0x00280102, "US"), (0x00280103, "US"), (0x00280002, "US")):
        elem = draw(_int_element(tag, vr))
        if elem is None:
            if tag in ds:
                del ds[tag]
        else:
            ds[tag] = elem
    if draw(st.booleans()):
        ds.BitsAllocated = draw(st.sampled_from([1, 8, 12, 16, 24, 32, 64]))
        ds.BitsStored = draw(st.integers(0, 40))
        ds.HighBit = draw(st.one_of(st.just(int(ds.BitsStored) - 1 if int(ds.BitsStored) > 0 else 0), st.integers(0, 40)))
    ds.PhotometricInterpretation = draw(
        st.sampled_from(["MONOCHROME1", "MONOCHROME2", "monochrome2 ", "RGB", "YBR_FULL", "PALETTE COLOR", "", "HSV", "XYZ"])
    )
    frames = draw(st.one_of(st.none(), _TEXTS))
    if frames is not None:
        ds.add(DataElement(0x00280008, "IS" if frames.strip().lstrip("-").isdigit() else "LO", frames))
    if draw(st.booleans()):
        ds.WindowCenter = f"{draw(_FLOATS):.6g}"[:16]
        ds.WindowWidth = f"{draw(_FLOATS):.6g}"[:16]
    if draw(st.booleans()):
        ds.RescaleSlope = f"{draw(_FLOATS):.6g}"[:16]
        ds.RescaleIntercept = f"{draw(_FLOATS):.6g}"[:16]
    if draw(st.booleans()):
        item = Dataset()
        first = draw(st.integers(-5, 70000))
        item.LUTDescriptor = [draw(st.integers(0, 70000)) % 65536, first % 65536, draw(st.sampled_from([0, 8, 12, 16, 17]))]
        item.LUTData = draw(st.lists(st.integers(0, 65535), min_size=0, max_size=40))
        item["LUTData"].VR = "US"
        keyword = draw(st.sampled_from(["VOILUTSequence", "ModalityLUTSequence"]))
        setattr(ds, keyword, [item])
    ts = draw(_TRANSFER_SYNTAXES)
    ds.file_meta.TransferSyntaxUID = ts
    # pixel data: of the declared length, a random length, or encapsulated garbage
    try:
        declared = int(ds.Rows) * int(ds.Columns) * int(ds.get("BitsAllocated", 16) or 16) // 8
    except (TypeError, ValueError):
        declared = 512
    choice = draw(st.sampled_from(["declared", "random", "encapsulated"]))
    if choice == "declared" and 0 < declared <= 65536:
        n = declared + (declared % 2)
    else:
        n = draw(st.integers(0, 4096)) * 2
    payload = draw(st.binary(min_size=min(n, 64), max_size=min(n, 64)))
    data = (payload * (n // max(len(payload), 1) + 1))[:n] if payload else bytes(n)
    if choice == "encapsulated":
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([data or b"\x00\x00"])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = data
        ds["PixelData"].VR = draw(st.sampled_from(["OW", "OB"]))
    return ds


@pytest.mark.timeout(90)
@settings(FUZZ, max_examples=200)
@given(ds=headers())
def test_reader_accepts_or_refuses_fuzzed_headers(ds, tmp_path_factory):
    bio = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(bio, implicit_vr=False, little_endian=True, enforce_file_format=True)
    except Exception:  # pydicom cannot even write it: nothing to read
        return
    _check_read(bio.getvalue(), tmp_path_factory.mktemp("h"))


# --------------------------------------------------------------------------- bytes


def _seed_files() -> list[bytes]:
    from pydicom.uid import RLELossless

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kw in ({}, {"photometric": "MONOCHROME1", "signed": True}, {"transfer_syntax": RLELossless}, {"bits_stored": 8}):
            bio = io.BytesIO()
            make_radiograph_dataset(16, 20, **kw).save_as(bio, enforce_file_format=True)
            out.append(bio.getvalue())
    return out


SEEDS = _seed_files()


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x20]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        else:
            del data[pos:]
    return bytes(data)


@pytest.mark.timeout(90)
@settings(FUZZ, max_examples=250)
@given(data=mutated())
def test_reader_accepts_or_refuses_mutated_bytes(data, tmp_path_factory):
    _check_read(data, tmp_path_factory.mktemp("b"))


# ---------------------------------------------------------------------- transform

_DTYPES = ["uint8", "int8", "uint16", "int16", "int32", "int64", "float16", "float32", "float64", "bool", "complex64"]


@st.composite
def transform_inputs(draw):
    if draw(st.integers(0, 3)):  # mostly the valid (1, H, W) layout, so that values get fuzzed
        shape = (1, draw(st.integers(2, 24)), draw(st.integers(2, 24)))
    else:
        ndim = draw(st.sampled_from([0, 1, 2, 3, 4]))
        shape = tuple(draw(st.integers(0, 6 if ndim > 3 else 30)) for _ in range(ndim))
        if ndim == 3:
            shape = (draw(st.sampled_from([0, 1, 2, 3])), *shape[1:])
    dtype = np.dtype(draw(st.sampled_from(_DTYPES)))
    size = int(np.prod(shape)) if shape else 1
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        mode = draw(st.sampled_from(["range", "range", "constant", "extremes"]))
        if mode == "constant":
            arr = np.full(size, draw(st.sampled_from([int(info.min), int(info.max), 0, int(info.max) // 2 + 1])), dtype=dtype)
        elif mode == "extremes":
            arr = rng.choice(np.array([info.min, info.max], dtype=dtype), size=size)
        else:
            low = draw(st.integers(int(info.min), int(info.max)))
            high = draw(st.integers(low, int(info.max)))
            arr = rng.integers(low, high, size=size, endpoint=True, dtype=dtype)
        arr = arr.astype(dtype).reshape(shape)
    elif dtype.kind == "b":
        arr = np.zeros(shape, dtype=bool)
    else:
        scale = draw(st.sampled_from([1.0, 1e-6, 1e4, 65504.0, 3e38, 1e300, 1e-300]))
        offset = draw(st.sampled_from([0.0, 0.0, -0.5, 1e6]))
        arr = ((rng.random(size) + offset) * scale).reshape(shape)
        special = draw(st.sampled_from([None, None, None, np.nan, np.inf, -np.inf]))
        if special is not None and size:
            arr.flat[draw(st.integers(0, size - 1))] = special
        with np.errstate(over="ignore", invalid="ignore"):
            arr = arr.astype(dtype)
    container = draw(st.sampled_from(["numpy", "tensor", "metatensor"]))
    if container != "numpy":
        from monai.data import MetaTensor

        tensor = torch.from_numpy(np.ascontiguousarray(arr))
        return MetaTensor(tensor) if container == "metatensor" else tensor
    return arr


@pytest.fixture(scope="module")
def deform():
    from monai_prichexy.transforms import DeformAnonymize

    return DeformAnonymize(tiny_network(mu=0.01, working_size=16))


@pytest.mark.timeout(90)
@settings(FUZZ, max_examples=250)
@given(img=transform_inputs())
@example(img=np.random.default_rng(0).random((1, 12, 12)) * 1e300)  # finite float64 beyond float32
@example(img=np.full((1, 9, 9), 2**62 + 1, np.int64))  # not representable in float32 / float64
@example(img=np.random.default_rng(1).integers(2**24, 2**31 - 1, size=(1, 9, 9)).astype(np.int32))
@example(img=torch.full((1, 8, 8), 65504.0, dtype=torch.float16))
def test_deform_anonymize_keeps_shape_dtype_range_or_raises_value_error(deform, img):
    try:
        with _no_hang(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = deform(img)
    except ValueError:
        return
    assert type(out) is type(img)
    assert tuple(out.shape) == tuple(img.shape) and out.dtype == img.dtype
    values_in = np.asarray(img.cpu() if isinstance(img, torch.Tensor) else img)
    values_out = np.asarray(out.cpu() if isinstance(out, torch.Tensor) else out)
    if values_in.dtype.kind == "f":
        assert np.isfinite(values_in).all(), "non-finite input accepted"
        assert np.isfinite(values_out).all(), "finite input, non-finite output"
    lo, hi = values_in.min(), values_in.max()
    assert values_out.min() >= lo and values_out.max() <= hi, f"output range [{values_out.min()}, {values_out.max()}] outside input range [{lo}, {hi}]"
