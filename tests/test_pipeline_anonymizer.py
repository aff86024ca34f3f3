"""One file -> one anonymized file: DICOM geometry and bit depth kept, header de-identified,
pixels identical to DeformAnonymize for the other formats, refusals with clear reasons."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import torch
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLosslessSV1, RLELossless

from monai_prichexy import __version__
from monai_prichexy.dicom import BurnedInAnnotationError, DeidConfig, DeidKey, UnsupportedDicomError, read_radiograph
from monai_prichexy.networks import warp
from monai_prichexy.pipeline import Deformer, FileAnonymizer
from monai_prichexy.transforms import DeformAnonymize
from tests.test_pipeline_support import png_array, pydicom_file, tiny_weights, write_dicom

KEY = DeidKey(b"k" * 32)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_weights(tmp_path_factory.mktemp("w") / "g.pt")


@pytest.fixture(scope="module")
def anonymizer(weights):
    return FileAnonymizer(Deformer(weights), DeidConfig(key=KEY))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_deformer_equals_deform_anonymize(weights, dtype):
    arr = png_array(48, 56, dtype=np.uint16 if dtype == np.float32 else dtype)
    arr = (arr / 65535.0).astype(np.float32) if dtype == np.float32 else arr
    expected = DeformAnonymize(weights)(arr[None])[0]
    got = Deformer(weights).deform(arr)
    assert got.dtype == arr.dtype
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, arr)


CASES = {
    "mono2-12bit": dict(),
    "mono1-12bit": dict(photometric="MONOCHROME1"),
    "signed-12bit": dict(signed=True),
    "8bit": dict(bits_stored=8),
    "16bit-rescaled": dict(bits_stored=16, rescale=(0.5, -1024.0)),
    "rle": dict(transfer_syntax=RLELossless),
    "j2k-lossless": dict(transfer_syntax=JPEG2000Lossless),
    "jpeg-lossless-sv1": dict(transfer_syntax=JPEGLosslessSV1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_dicom_keeps_geometry_and_bit_depth(tmp_path, anonymizer, case):
    src = write_dicom(tmp_path / "in.dcm", 64, 80, **CASES[case])
    rad = read_radiograph(src)
    outcome = anonymizer.anonymize(src, "dicom", tmp_path / "out.dcm")
    assert outcome.status == "ok"
    ds = pydicom.dcmread(tmp_path / "out.dcm")
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PhotometricInterpretation"):
        assert ds[keyword].value == rad.dataset[keyword].value, keyword
    out = read_radiograph(tmp_path / "out.dcm")
    low, high = rad.value_range
    assert out.stored.dtype == rad.stored.dtype and out.stored.min() >= low and out.stored.max() <= high
    diff = np.abs(out.stored.astype(np.int64) - rad.stored.astype(np.int64))
    # deformed, but only slightly: away from the frame that the paper's zero-padded smoothing
    # distorts (4 px at the generator's 32-px working size = 1/8 of each side here)
    interior = diff[rad.stored.shape[0] // 8 : -(rad.stored.shape[0] // 8), rad.stored.shape[1] // 8 : -(rad.stored.shape[1] // 8)]
    assert diff.max() > 0 and interior.mean() < 0.05 * (high - low)
    assert ds.PatientIdentityRemoved == "YES"
    method = " ".join(ds.DeidentificationMethod)
    assert f"monai_prichexy {__version__}" in method and "mu=0.01" in method
    if case == "jpeg-lossless-sv1":
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert any("written uncompressed" in n for n in outcome.notes)
    elif case in ("rle", "j2k-lossless"):
        assert ds.file_meta.TransferSyntaxUID == CASES[case]["transfer_syntax"]


def test_dicom_warps_native_stored_values_with_the_views_flow(tmp_path, weights, anonymizer):
    """Flow from the network view at the working size, resampled to native size, applied to stored values."""
    src = write_dicom(tmp_path / "in.dcm", 72, 96, photometric="MONOCHROME1")
    rad = read_radiograph(src)
    anonymizer.anonymize(src, "dicom", tmp_path / "out.dcm")
    net = DeformAnonymize(weights).network
    with torch.no_grad():
        grid = net.sampling_grid(torch.from_numpy(rad.view)[None, None], size=rad.stored.shape)
        expected = warp(torch.from_numpy(rad.stored.astype(np.float32))[None, None], grid)[0, 0]
    expected = expected.round().clamp(*rad.value_range).numpy().astype(rad.stored.dtype)
    np.testing.assert_array_equal(read_radiograph(tmp_path / "out.dcm").stored, expected)


def test_burned_in_annotation_refused_unless_allowed(tmp_path, weights, anonymizer):
    src = write_dicom(tmp_path / "burned.dcm", burned_in="YES")
    with pytest.raises(BurnedInAnnotationError, match="BurnedInAnnotation"):
        anonymizer.anonymize(src, "dicom", tmp_path / "out.dcm")
    assert not (tmp_path / "out.dcm").exists()
    allowing = FileAnonymizer(Deformer(weights), DeidConfig(key=KEY, allow_burned_in=True))
    assert allowing.anonymize(src, "dicom", tmp_path / "out.dcm").status == "ok"


@pytest.mark.parametrize(
    "name, reason",
    [
        ("SC_rgb_small_odd.dcm", "not grayscale"),
        ("rtdose.dcm", "NumberOfFrames|BitsAllocated"),
        ("MR_truncated.dcm", "truncated|pixel data"),
        ("no_meta.dcm", "PixelData|not a DICOM"),
    ],
)
def test_pydicom_files_are_refused_with_a_reason(tmp_path, anonymizer, name, reason):
    src = pydicom_file(name)
    with pytest.raises(UnsupportedDicomError, match=reason) as info:
        anonymizer.anonymize(src, "dicom", tmp_path / "out.dcm")
    assert name in str(info.value)
    assert not (tmp_path / "out.dcm").exists()


def test_realistic_2000x2500_12bit_dicom(tmp_path, anonymizer):
    """One full-size detector image: geometry, bit depth and range kept, header clean."""
    src = write_dicom(tmp_path / "big.dcm", 2000, 2500, bits_stored=12)
    outcome = anonymizer.anonymize(src, "dicom", tmp_path / "big_out.dcm")
    assert outcome.status == "ok" and outcome.shape == (2000, 2500)
    out = read_radiograph(tmp_path / "big_out.dcm")
    assert out.stored.shape == (2000, 2500) and out.bits_stored == 12 and out.stored.dtype == np.uint16
    assert out.stored.max() <= 4095
    assert str(out.dataset.PatientName).startswith("ANON-")
