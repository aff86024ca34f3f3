"""Tests of monai_prichexy.dicom.writer: exact round trips, transfer syntaxes, atomic writes."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
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
    DeidConfig,
    DicomWriteError,
    choose_transfer_syntax,
    read_radiograph,
    write_radiograph,
)
from monai_prichexy.dicom import writer as writer_module
from tests.dicom_fixtures import SOP_UID, make_radiograph_dataset, save, synthetic_chest

KEY = bytes(range(32))
DEID = DeidConfig(key=KEY, method_info="PriCheXy-Net pixel deformation mu=0.01")


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read(tmp_path, name="in.dcm", **kwargs):
    path = save(make_radiograph_dataset(**kwargs), tmp_path / name)
    return read_radiograph(path), path


def warp(stored: np.ndarray) -> np.ndarray:
    """Stand-in for the deformation: a different image with the same value range."""
    return np.ascontiguousarray(np.roll(stored[::-1, :], 3, axis=1))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "ts,expected",
    [
        (ExplicitVRLittleEndian, ExplicitVRLittleEndian),
        (ImplicitVRLittleEndian, ImplicitVRLittleEndian),
        (DeflatedExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian),
        (RLELossless, RLELossless),
        (JPEG2000Lossless, JPEG2000Lossless),
        (JPEGLosslessSV1, ExplicitVRLittleEndian),
        (ExplicitVRBigEndian, ExplicitVRLittleEndian),
        (JPEG2000, ExplicitVRLittleEndian),
    ],
    ids=lambda ts: ts.name,
)
def test_round_trip_and_transfer_syntax(tmp_path, ts, expected):
    signed = ts in (RLELossless, JPEG2000Lossless, ExplicitVRLittleEndian)
    rad, src = read(tmp_path, rows=64, cols=80, bits_stored=12, signed=signed, transfer_syntax=ts)
    before = sha256(src)
    new = warp(rad.stored)
    result = write_radiograph(rad, new, tmp_path / "out" / "x.dcm", deid=DEID)
    assert result.transfer_syntax == expected
    assert result.reencoded == (expected != ts)
    assert (result.reason is None) == (expected == ts)
    back = read_radiograph(result.path)
    np.testing.assert_array_equal(back.stored, new)
    assert back.stored.dtype == rad.stored.dtype
    assert (back.photometric, back.bits_stored, back.bits_allocated, back.high_bit, back.pixel_representation) == (
        rad.photometric, rad.bits_stored, rad.bits_allocated, rad.high_bit, rad.pixel_representation)
    assert back.transfer_syntax == expected
    assert sha256(src) == before
    assert leftovers(result.path.parent) == []


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("bits,signed", [(8, False), (8, True), (12, False), (12, True), (16, False), (16, True)])
def test_bits_photometric_representation_kept(tmp_path, photometric, bits, signed):
    rad, _ = read(tmp_path, rows=24, cols=40, bits_stored=bits, photometric=photometric, signed=signed)
    result = write_radiograph(rad, warp(rad.stored), tmp_path / "o.dcm", deid=DEID)
    out = pydicom.dcmread(result.path)
    assert out.PhotometricInterpretation == photometric
    assert (out.BitsAllocated, out.BitsStored, out.HighBit, out.PixelRepresentation) == (
        8 if bits == 8 else 16, bits, bits - 1, int(signed))
    assert (out.Rows, out.Columns, out.SamplesPerPixel) == (24, 40, 1)
    np.testing.assert_array_equal(out.pixel_array, warp(rad.stored))


def test_lossy_input_written_uncompressed(tmp_path):
    rad, _ = read(tmp_path, rows=64, cols=80, bits_stored=8, transfer_syntax=JPEGBaseline8Bit)
    assert rad.lossy
    result = write_radiograph(rad, rad.stored, tmp_path / "o.dcm", deid=DEID)
    assert result.transfer_syntax == ExplicitVRLittleEndian and result.reencoded
    assert "lossy" in result.reason
    out = pydicom.dcmread(result.path)
    assert out.LossyImageCompression == "01"
    np.testing.assert_array_equal(out.pixel_array, rad.stored)


def test_choose_transfer_syntax():
    assert choose_transfer_syntax(RLELossless) == (RLELossless, None)
    assert choose_transfer_syntax(ExplicitVRLittleEndian) == (ExplicitVRLittleEndian, None)
    ts, reason = choose_transfer_syntax(JPEGBaseline8Bit)
    assert ts == ExplicitVRLittleEndian and "lossy" in reason
    ts, reason = choose_transfer_syntax("1.2.840.10008.1.2.4.80")  # JPEG-LS lossless
    assert ts in ("1.2.840.10008.1.2.4.80", ExplicitVRLittleEndian)


def test_float_values_rounded_and_clipped(tmp_path):
    rad, _ = read(tmp_path, rows=16, cols=16, bits_stored=12)
    values = rad.stored.astype(np.float32) + 0.4
    values[0, 0] = -50.0
    values[0, 1] = 99999.0
    result = write_radiograph(rad, values, tmp_path / "o.dcm", deid=DEID)
    assert result.clipped == 2
    back = read_radiograph(result.path).stored
    assert back[0, 0] == 0 and back[0, 1] == 4095
    np.testing.assert_array_equal(back.ravel()[2:], rad.stored.ravel()[2:])


def test_bad_stored_arguments(tmp_path):
    rad, src = read(tmp_path, rows=16, cols=16, bits_stored=12)
    with pytest.raises(ValueError, match="shape"):
        write_radiograph(rad, rad.stored[:8], tmp_path / "o.dcm", deid=DEID)
    with pytest.raises(ValueError, match="NaN"):
        write_radiograph(rad, np.full((16, 16), np.nan), tmp_path / "o.dcm", deid=DEID)
    with pytest.raises(ValueError, match="input"):
        write_radiograph(rad, rad.stored, src, deid=DEID)
    assert not (tmp_path / "o.dcm").exists()
    # a leading channel axis (C=1) is accepted
    write_radiograph(rad, rad.stored[None], tmp_path / "o.dcm", deid=DEID)


def test_header_of_written_file(tmp_path):
    rad, _ = read(tmp_path, rows=16, cols=16, bits_stored=12)
    result = write_radiograph(rad, rad.stored, tmp_path / "o.dcm", deid=DEID)
    out = pydicom.dcmread(result.path)
    assert out.SOPInstanceUID == out.file_meta.MediaStorageSOPInstanceUID == result.sop_instance_uid
    assert out.SOPInstanceUID != SOP_UID
    assert out.SOPClassUID == out.file_meta.MediaStorageSOPClassUID
    assert out.ImageType[0] == "DERIVED"
    assert out.PatientIdentityRemoved == "YES"
    assert "SmallestImagePixelValue" not in out
    assert result.deid is not None and result.deid.pseudonym == str(out.PatientName)
    mode = stat.S_IMODE(os.stat(result.path).st_mode)
    assert mode & 0o400 and not mode & 0o022  # readable, not world/group writable with usual umask


def test_without_deid_keeps_header_but_new_uid(tmp_path):
    rad, _ = read(tmp_path, rows=16, cols=16, bits_stored=12)
    result = write_radiograph(rad, rad.stored, tmp_path / "o.dcm", deid=None)
    out = pydicom.dcmread(result.path)
    assert out.PatientID == rad.dataset.PatientID
    assert out.SOPInstanceUID != SOP_UID and out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert result.deid is None
    assert rad.dataset.SOPInstanceUID == SOP_UID  # the Radiograph is not modified


# ------------------------------------------------------------------------ atomic write


def test_failed_replace_leaves_nothing(tmp_path, monkeypatch):
    rad, src = read(tmp_path, rows=16, cols=16, bits_stored=12)
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def boom(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(writer_module.os, "replace", boom)
    with pytest.raises(DicomWriteError, match="disk on fire"):
        write_radiograph(rad, rad.stored, out_dir / "o.dcm", deid=DEID)
    assert list(out_dir.iterdir()) == []


def test_failure_mid_write_leaves_nothing_and_keeps_old_file(tmp_path, monkeypatch):
    rad, src = read(tmp_path, rows=16, cols=16, bits_stored=12)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    old = out_dir / "o.dcm"
    old.write_bytes(b"previous result")

    def partial_save(self, fh, *args, **kwargs):
        fh.write(b"\x00" * 128 + b"DICM" + b"partial")
        raise OSError("no space left on device")

    monkeypatch.setattr(Dataset, "save_as", partial_save)
    with pytest.raises(DicomWriteError, match="no space"):
        write_radiograph(rad, rad.stored, old, deid=DEID)
    assert sorted(p.name for p in out_dir.iterdir()) == ["o.dcm"]
    assert old.read_bytes() == b"previous result"


def test_verification_failure_leaves_nothing(tmp_path, monkeypatch):
    """Uncompressed output: the Pixel Data bytes read back are compared with those meant (no decode)."""
    rad, _ = read(tmp_path, rows=16, cols=16, bits_stored=12)
    real_read = writer_module.pydicom.dcmread

    def corrupting_read(path, *args, **kwargs):
        back = real_read(path, *args, **kwargs)
        data = bytearray(back.PixelData)
        data[0] ^= 1
        back.PixelData = bytes(data)
        return back

    monkeypatch.setattr(writer_module.pydicom, "dcmread", corrupting_read)
    with pytest.raises(DicomWriteError, match="differ"):
        write_radiograph(rad, rad.stored, tmp_path / "out" / "o.dcm", deid=DEID)
    assert list((tmp_path / "out").iterdir()) == []


def test_verification_failure_of_compressed_output_leaves_nothing(tmp_path, monkeypatch):
    """Compressed output: decoded by our reader and compared value by value."""
    rad, _ = read(tmp_path, rows=16, cols=16, bits_stored=12, transfer_syntax=RLELossless)
    real_read = writer_module.read_radiograph

    def corrupting_read(path, **kwargs):
        back = real_read(path, **kwargs)
        back.stored = back.stored.copy()
        back.stored[0, 0] ^= 1
        return back

    monkeypatch.setattr(writer_module, "read_radiograph", corrupting_read)
    with pytest.raises(DicomWriteError, match="differ"):
        write_radiograph(rad, rad.stored, tmp_path / "out" / "o.dcm", deid=DEID)
    assert list((tmp_path / "out").iterdir()) == []


def test_encoder_failure_falls_back_to_uncompressed(tmp_path, monkeypatch):
    rad, _ = read(tmp_path, rows=16, cols=16, bits_stored=12, transfer_syntax=RLELossless)

    def broken(self, *args, **kwargs):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(Dataset, "compress", broken)
    result = write_radiograph(rad, rad.stored, tmp_path / "o.dcm", deid=DEID)
    assert result.transfer_syntax == ExplicitVRLittleEndian and result.reencoded
    assert "exploded" in result.reason
    np.testing.assert_array_equal(read_radiograph(result.path).stored, rad.stored)


# ------------------------------------------------------------------- realistic size


def test_realistic_2000x2500_12bit_mono1(tmp_path):
    pixels = synthetic_chest(2000, 2500, 12, seed=3)
    ds = make_radiograph_dataset(2000, 2500, 12, "MONOCHROME1", pixels=pixels, modality="CR")
    src = save(ds, tmp_path / "cr.dcm")
    before = sha256(src)
    rad = read_radiograph(src)
    assert rad.view.shape == (2000, 2500) and rad.view.dtype == np.float32
    new = warp(rad.stored)
    result = write_radiograph(rad, new, tmp_path / "out" / "cr.dcm", deid=DeidConfig(key=KEY, dates="shift"))
    back = read_radiograph(result.path)
    np.testing.assert_array_equal(back.stored, new)
    assert back.photometric == "MONOCHROME1" and back.bits_stored == 12
    assert sha256(src) == before
