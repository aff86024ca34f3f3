"""Tests of monai_prichexy.dicom.reader: what is accepted, what is refused, the view."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    RLELossless,
)

from monai_prichexy.dicom import (
    NotARadiographError,
    Radiograph,
    UnsupportedDicomError,
    compute_view,
    radiograph_from_dataset,
    read_radiograph,
)
from tests.dicom_fixtures import as_radiograph, make_radiograph_dataset, save, synthetic_chest


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def bundled(name: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_testdata_file(name)


# ------------------------------------------------------------------------------ accepted


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", [8, 12, 16])
def test_native_grayscale_accepted(tmp_path, photometric, signed, bits):
    path = save(make_radiograph_dataset(64, 80, bits, photometric, signed), tmp_path / "in.dcm")
    before = sha256(path)
    rad = read_radiograph(path)
    assert isinstance(rad, Radiograph)
    expected = synthetic_chest(64, 80, bits, signed)
    assert rad.stored.shape == (64, 80)
    assert rad.stored.dtype == np.dtype(("i" if signed else "u") + ("1" if bits == 8 else "2"))
    np.testing.assert_array_equal(rad.stored.astype(np.int64), expected)
    assert rad.view.dtype == np.float32 and rad.view.shape == (64, 80)
    assert 0.0 <= rad.view.min() and rad.view.max() <= 1.0 and rad.view.max() > rad.view.min()
    assert (rad.photometric, rad.bits_stored, rad.pixel_representation) == (photometric, bits, int(signed))
    assert rad.transfer_syntax == ExplicitVRLittleEndian and not rad.lossy
    assert rad.path == Path(path)
    assert sha256(path) == before  # never modified


@pytest.mark.parametrize(
    "ts",
    [ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless, JPEG2000Lossless,
     JPEGLosslessSV1],
    ids=lambda ts: ts.name,
)
@pytest.mark.parametrize("bits", [12, 16])
def test_lossless_transfer_syntaxes_exact(tmp_path, ts, bits):
    signed = ts in (RLELossless, JPEG2000Lossless)  # also exercise signed decoding where we can encode it
    path = save(make_radiograph_dataset(64, 80, bits, signed=signed, transfer_syntax=ts), tmp_path / "in.dcm")
    before = sha256(path)
    rad = read_radiograph(path)
    np.testing.assert_array_equal(rad.stored.astype(np.int64), synthetic_chest(64, 80, bits, signed))
    assert rad.transfer_syntax == ts and not rad.lossy
    assert sha256(path) == before


def test_jpeg_lossless_8bit_and_mono1(tmp_path):
    ds = make_radiograph_dataset(64, 80, 8, "MONOCHROME1", transfer_syntax=JPEGLosslessSV1)
    rad = read_radiograph(save(ds, tmp_path / "in.dcm"))
    np.testing.assert_array_equal(rad.stored, synthetic_chest(64, 80, 8).astype(np.uint8))


@pytest.mark.parametrize("ts,bits", [(JPEGBaseline8Bit, 8), (JPEG2000, 12)], ids=["jpeg-baseline", "j2k-lossy"])
def test_lossy_inputs_accepted_and_flagged(tmp_path, ts, bits):
    rad = read_radiograph(save(make_radiograph_dataset(64, 80, bits, transfer_syntax=ts), tmp_path / "in.dcm"))
    assert rad.lossy and rad.transfer_syntax == ts
    err = np.abs(rad.stored.astype(np.int64) - synthetic_chest(64, 80, bits))
    assert err.mean() < 0.05 * (1 << bits)


def test_bundled_compressed_files(tmp_path):
    """pydicom's MR / SC samples in several transfer syntaxes, rewritten as DX (out of scope as they are)."""
    plain = read_radiograph(as_radiograph(bundled("MR_small.dcm"), tmp_path / "plain.dcm"))
    for name in ("MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm",
                 "MR_small_bigendian.dcm"):
        rad = read_radiograph(as_radiograph(bundled(name), tmp_path / name))
        np.testing.assert_array_equal(rad.stored, plain.stored)
        np.testing.assert_allclose(rad.view, plain.view)
    rad = read_radiograph(as_radiograph(bundled("JPEG2000.dcm"), tmp_path / "j2k.dcm"))
    assert rad.stored.shape == (1024, 256) and rad.lossy


def test_raw_dataset_without_preamble_accepted(tmp_path):
    ds = make_radiograph_dataset(32, 40, 12)
    path = save(ds, tmp_path / "raw.dcm", raw=True)
    assert path.read_bytes()[128:132] != b"DICM"
    rad = read_radiograph(path)
    np.testing.assert_array_equal(rad.stored.astype(np.int64), synthetic_chest(32, 40, 12))
    assert rad.transfer_syntax == ImplicitVRLittleEndian


# ------------------------------------------------------------------------------ the view


def test_monochrome1_is_inverted(tmp_path):
    m2 = read_radiograph(save(make_radiograph_dataset(64, 80, 12, "MONOCHROME2"), tmp_path / "m2.dcm"))
    m1 = read_radiograph(save(make_radiograph_dataset(64, 80, 12, "MONOCHROME1"), tmp_path / "m1.dcm"))
    np.testing.assert_array_equal(m1.stored, m2.stored)
    np.testing.assert_allclose(m1.view, 1.0 - m2.view, atol=1e-6)


def test_window_is_applied_and_saturates(tmp_path):
    ds = make_radiograph_dataset(64, 80, 12, window=(2000.0, 200.0))
    rad = read_radiograph(save(ds, tmp_path / "w.dcm"))
    assert np.all(rad.view[rad.stored < 1850] == 0.0)
    assert np.all(rad.view[rad.stored > 2150] == 1.0)
    mid = (rad.stored > 1950) & (rad.stored < 2050)
    assert mid.any() and np.all((rad.view[mid] > 0.2) & (rad.view[mid] < 0.8))


def test_no_window_is_min_max(tmp_path):
    rad = read_radiograph(save(make_radiograph_dataset(64, 80, 12, window=None), tmp_path / "n.dcm"))
    assert rad.view.min() == 0.0 and rad.view.max() == 1.0
    s = rad.stored.astype(np.float64)
    np.testing.assert_allclose(rad.view, (s - s.min()) / (s.max() - s.min()), atol=1e-6)


def test_rescale_then_window_matches_plain(tmp_path):
    plain = read_radiograph(save(make_radiograph_dataset(64, 80, 12, window=None), tmp_path / "p.dcm"))
    rescaled = make_radiograph_dataset(64, 80, 12, window=None, rescale=(2.0, -1000.0))
    lo, hi = plain.stored.min() * 2.0 - 1000.0, plain.stored.max() * 2.0 - 1000.0
    rescaled.WindowCenter, rescaled.WindowWidth = (lo + hi) / 2 + 0.5, hi - lo + 1
    rad = read_radiograph(save(rescaled, tmp_path / "r.dcm"))
    np.testing.assert_allclose(rad.view, plain.view, atol=2e-3)


def test_voi_lut_sequence(tmp_path):
    ds = make_radiograph_dataset(64, 80, 12, window=None)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    lut = (np.sqrt(np.arange(4096) / 4095.0) * 60000).astype(np.uint16)
    item.LUTData = lut.tolist()
    item["LUTData"].VR = "US"
    ds.VOILUTSequence = Sequence([item])
    rad = read_radiograph(save(ds, tmp_path / "lut.dcm"))
    expected = (lut[rad.stored].astype(np.float64) - lut.min()) / (lut.max() - lut.min())
    np.testing.assert_allclose(rad.view, expected, atol=1e-6)


def test_compute_view_public():
    ds = make_radiograph_dataset(16, 16, 12, window=None)
    v = compute_view(ds, synthetic_chest(16, 16, 12).astype(np.uint16))
    assert v.dtype == np.float32 and v.min() == 0.0 and v.max() == 1.0


# ------------------------------------------------------------------------------ refusals


def _refused(path, *words):
    before = sha256(path) if Path(path).is_file() else None
    with pytest.raises(UnsupportedDicomError) as info:
        read_radiograph(path)
    message = str(info.value)
    assert str(path) in message, message
    for word in words:
        assert word.lower() in message.lower(), message
    assert isinstance(info.value, ValueError)
    if before is not None:
        assert sha256(path) == before
    return message


def test_refuse_not_dicom(tmp_path):
    text = tmp_path / "notes.dcm"
    text.write_text("this is not a DICOM file\n" * 20)
    _refused(text, "not a DICOM")
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    _refused(empty)
    _refused(tmp_path / "missing.dcm", "not found")
    _refused(tmp_path, "directory")


def test_refuse_truncated(tmp_path):
    path = save(make_radiograph_dataset(64, 80, 12), tmp_path / "full.dcm")
    data = path.read_bytes()
    for cut in (len(data) - 1000, 700):
        short = tmp_path / f"cut{cut}.dcm"
        short.write_bytes(data[:cut])
        _refused(short)
    tail = tmp_path / "tail.dcm"
    tail.write_bytes(data[: len(data) - 1000])
    _refused(tail, "truncated")
    _refused(bundled("MR_truncated.dcm"), "truncated")


# ------------------------------------------------------------- scope: projection radiographs only

SC = "1.2.840.10008.5.1.4.1.1.7"
DX_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"


def _scoped(tmp_path, name, modality="DX", sop_class=None):
    ds = make_radiograph_dataset(16, 16, 12, phi=False)
    if modality is None:
        del ds.Modality
    else:
        ds.Modality = modality
    if sop_class is False:
        del ds.SOPClassUID  # (the file meta keeps its copy: the reader does not use it)
    elif sop_class is not None:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    return save(ds, tmp_path / name)


@pytest.mark.parametrize("name, modality", [("CT_small.dcm", "CT"), ("MR_small.dcm", "MR")])
def test_pydicom_ct_and_mr_samples_refused_as_they_are(tmp_path, name, modality):
    path = bundled(name)
    before = sha256(path)
    with pytest.raises(NotARadiographError) as info:
        read_radiograph(path)
    assert str(info.value) == f"{path}: modality {modality} is not a projection radiograph (accepted: CR, DX, DR)"
    assert isinstance(info.value, UnsupportedDicomError) and info.value.path == str(path)
    assert sha256(path) == before
    # the same file rewritten as a DX radiograph is read
    shape = (128, 128) if modality == "CT" else (64, 64)
    assert read_radiograph(as_radiograph(path, tmp_path / name)).stored.shape == shape


@pytest.mark.parametrize("modality", ["CT", "MR", "US", "NM", "PT", "MG", "XA", "RF", "RTIMAGE", "OT", "RG", "SC"])
def test_non_projection_modalities_refused(tmp_path, modality):
    path = _scoped(tmp_path, f"{modality}.dcm", modality)
    with pytest.raises(NotARadiographError, match=rf"^{path}: modality {modality} is not a projection radiograph "
                       r"\(accepted: CR, DX, DR\)$"):
        read_radiograph(path)


@pytest.mark.parametrize(
    "modality, sop_class",
    [("DX", None), ("CR", "1.2.840.10008.5.1.4.1.1.1"), ("DR", None), ("DX", DX_PROCESSING),
     (None, None), ("DX", False), (None, False)],
)
def test_projection_radiographs_accepted(tmp_path, modality, sop_class):
    """CR / DX / DR by Modality and SOP class; a missing one is decided by the other; none at all: accepted."""
    assert read_radiograph(_scoped(tmp_path, "ok.dcm", modality, sop_class)).stored.shape == (16, 16)


@pytest.mark.parametrize(
    "modality, sop_class, words",
    [
        ("DX", "1.2.840.10008.5.1.4.1.1.2", "SOP class CT Image Storage (1.2.840.10008.5.1.4.1.1.2)"),
        (None, "1.2.840.10008.5.1.4.1.1.4", "SOP class MR Image Storage"),
        ("CR", "1.2.840.10008.5.1.4.1.1.1.2", "Digital Mammography X-Ray Image Storage"),
        ("DX", "1.2.840.10008.5.1.4.1.1.6.1", "Ultrasound Image Storage"),
        ("DX", "1.2.840.10008.5.1.4.1.1.128", "Positron Emission Tomography Image Storage"),
        ("DX", "1.2.840.10008.5.1.4.1.1.481.1", "RT Image Storage"),
        ("DX", "1.2.840.10008.5.1.4.1.1.2.1", "Enhanced CT Image Storage"),
        ("DX", "1.2.3.4", "SOP class 1.2.3.4 is not a projection radiograph"),
    ],
)
def test_other_sop_classes_refused(tmp_path, modality, sop_class, words):
    _refused(_scoped(tmp_path, "sop.dcm", modality, sop_class), words, "accepted: CR Image Storage")


@pytest.mark.parametrize("modality", ["OT", "DX", "CR", None])
def test_secondary_capture_only_when_allowed(tmp_path, modality):
    path = _scoped(tmp_path, "sc.dcm", modality, SC)
    with pytest.raises(NotARadiographError) as info:
        read_radiograph(path)
    assert str(info.value) == (
        f"{path}: Secondary Capture Image Storage (SOP class {SC}) is refused unless Secondary Capture is "
        "explicitly allowed (--allow-secondary-capture)"
    )
    assert read_radiograph(path, allow_secondary_capture=True).stored.shape == (16, 16)


def test_secondary_capture_of_a_ct_refused_even_when_allowed(tmp_path):
    path = _scoped(tmp_path, "sc_ct.dcm", "CT", SC)
    with pytest.raises(NotARadiographError, match=r"modality CT is not a projection radiograph \(accepted: CR, DX, DR\)$"):
        read_radiograph(path)
    with pytest.raises(NotARadiographError, match=r"modality CT is not a projection radiograph \(accepted: CR, DX, DR, OT\)"):
        read_radiograph(path, allow_secondary_capture=True)


def test_scope_checked_for_in_memory_datasets():
    ds = make_radiograph_dataset(16, 16, 12, phi=False)
    ds.Modality = "US"
    with pytest.raises(NotARadiographError, match=r"^<in-memory dataset>: modality US"):
        radiograph_from_dataset(ds)


def test_refuse_no_pixels(tmp_path):
    _refused(bundled("rtplan.dcm"), "PixelData")
    ds = make_radiograph_dataset(16, 16, 12)
    del ds.PixelData
    _refused(save(ds, tmp_path / "nopix.dcm"), "PixelData")


def test_refuse_colour(tmp_path):
    _refused(bundled("examples_rgb_color.dcm"), "RGB")
    _refused(bundled("SC_ybr_full_422_uncompressed.dcm"), "YBR")
    _refused(bundled("examples_palette.dcm"), "PALETTE")
    ds = make_radiograph_dataset(16, 16, 8)
    ds.SamplesPerPixel = 3
    _refused(save(ds, tmp_path / "spp.dcm"), "SamplesPerPixel")


def test_refuse_multiframe(tmp_path):
    ds = make_radiograph_dataset(16, 16, 12)
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    _refused(save(ds, tmp_path / "mf.dcm"), "NumberOfFrames")
    _refused(bundled("rtdose.dcm"), "NumberOfFrames")


def test_refuse_bit_depths(tmp_path):
    _refused(bundled("liver_1frame.dcm"), "1-bit")
    _refused(bundled("rtdose_1frame.dcm"), "BitsAllocated")
    ds = make_radiograph_dataset(16, 16, 16)
    ds.BitsStored, ds.HighBit = 17, 16
    _refused(save(ds, tmp_path / "b17.dcm"), "BitsStored")
    ds = make_radiograph_dataset(16, 16, 16)
    ds.BitsAllocated = 32
    _refused(save(ds, tmp_path / "b32.dcm"), "BitsAllocated")


def test_refuse_float_pixel_data(tmp_path):
    ds = make_radiograph_dataset(16, 16, 16)
    del ds.PixelData
    ds.add_new(0x7FE00008, "OF", np.zeros(256, dtype="<f4").tobytes())  # Float Pixel Data
    ds.BitsAllocated = ds.BitsStored = 32
    _refused(save(ds, tmp_path / "float.dcm"), "float")


@pytest.mark.parametrize("keyword", ["Rows", "Columns", "BitsAllocated", "PhotometricInterpretation"])
def test_refuse_missing_mandatory(tmp_path, keyword):
    ds = make_radiograph_dataset(16, 16, 12)
    delattr(ds, keyword)
    _refused(save(ds, tmp_path / f"no{keyword}.dcm"), keyword)


def test_refuse_inconsistent_length(tmp_path):
    ds = make_radiograph_dataset(16, 16, 12)
    ds.PixelData = ds.PixelData + bytes(64)
    _refused(save(ds, tmp_path / "long.dcm"), "pixel data")
    ds = make_radiograph_dataset(16, 16, 12)
    ds.PixelData = ds.PixelData[:-64]
    _refused(save(ds, tmp_path / "short.dcm"), "pixel data")


def test_refuse_absurd_sizes(tmp_path):
    _refused(save(make_radiograph_dataset(4, 16, 12), tmp_path / "tiny.dcm"), "Rows")
    ds = make_radiograph_dataset(16, 16, 12)
    ds.Columns = 20000
    _refused(save(ds, tmp_path / "huge.dcm"), "Columns", "16384")


def test_refuse_decode_failure(tmp_path):
    ds = make_radiograph_dataset(16, 16, 12)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51 this is no codestream"])
    ds["PixelData"].is_undefined_length = True
    _refused(save(ds, tmp_path / "bad.dcm"), "decode")


def test_refuse_garbage_without_preamble(tmp_path):
    path = tmp_path / "raw.bin"
    path.write_bytes(bytes(range(256)) * 8)
    _refused(path, "not a DICOM")


def test_deploy_selects_the_modalities_the_reader_accepts():
    from monai_prichexy.deploy.options import RADIOGRAPH_MODALITIES
    from monai_prichexy.dicom import PROJECTION_MODALITIES

    assert RADIOGRAPH_MODALITIES == PROJECTION_MODALITIES == ("CR", "DX", "DR")


def test_a_file_that_is_not_dicom_raises_the_typed_error(tmp_path):
    """Callers tell "not DICOM at all" from "DICOM we refuse" by type, not by the message's text."""
    from monai_prichexy.dicom import NotDicomError, UnsupportedDicomError, read_radiograph

    text = tmp_path / "notes"
    text.write_bytes(b"just some text, no DICOM here\n" * 20)
    with pytest.raises(NotDicomError) as err:
        read_radiograph(text)
    assert isinstance(err.value, UnsupportedDicomError) and str(text) in str(err.value)
