"""PNG / JPEG / TIFF / NIfTI read and write: same format out, bit depth kept, no metadata copied."""

from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np
import pytest
from PIL import Image, TiffImagePlugin

from monai_prichexy.formats import (
    UnsupportedImageError,
    detect_format,
    encode_image,
    read_image,
    write_image,
)
from tests.test_pipeline_support import png_array, write_png

PHI = "Quaddelbrink^Hieronymus PID-8823-4471 19610314"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip_keeps_bit_depth_and_drops_text(tmp_path, dtype):
    arr = png_array(dtype=dtype)
    src = write_png(tmp_path / "in.png", arr, text={"Patient": PHI, "Comment": PHI})
    image = read_image(src)
    assert image.format == "png" and image.array.dtype == dtype and image.array.flags.writeable
    np.testing.assert_array_equal(image.array, arr)
    out = write_image(image, image.array, tmp_path / "out.png")
    back = Image.open(out)
    assert np.asarray(back).dtype == dtype
    np.testing.assert_array_equal(np.asarray(back), arr)
    assert not back.info.get("Patient") and b"Quaddelbrink" not in out.read_bytes()


def test_tiff_16bit_and_float_round_trip_without_tags(tmp_path):
    arr = png_array(dtype=np.uint16)
    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[270] = PHI  # ImageDescription
    info[315] = "Dr. Brummelkamp"  # Artist
    info[306] = "2023:05:17 10:15:30"  # DateTime
    src = tmp_path / "in.tif"
    Image.fromarray(arr).save(src, tiffinfo=info, compression="tiff_lzw")
    image = read_image(src)
    assert image.format == "tiff" and image.array.dtype == np.uint16 and image.info["compression"] == "tiff_lzw"
    out = write_image(image, image.array, tmp_path / "out.tif")
    back = Image.open(out)
    np.testing.assert_array_equal(np.asarray(back), arr)
    assert not {270, 315, 306} & set(back.tag_v2)
    data = out.read_bytes()
    assert b"Quaddelbrink" not in data and b"Brummelkamp" not in data and b"2023:05:17" not in data

    f32 = (arr / 65535.0).astype(np.float32)
    Image.fromarray(f32).save(tmp_path / "f.tif")
    image = read_image(tmp_path / "f.tif")
    assert image.array.dtype == np.float32
    write_image(image, image.array, tmp_path / "f_out.tif")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "f_out.tif")), f32)


def test_jpeg_round_trip_is_lossy_and_has_no_exif(tmp_path):
    arr = png_array()
    src = tmp_path / "in.jpg"
    exif = Image.Exif()
    exif[0x010E] = PHI  # ImageDescription
    Image.fromarray(arr).save(src, quality=95, exif=exif.tobytes(), comment=PHI.encode())
    image = read_image(src)
    assert image.format == "jpeg" and image.lossy_output and image.array.dtype == np.uint8
    out = write_image(image, image.array, tmp_path / "out.jpg")
    data = out.read_bytes()
    assert b"Quaddelbrink" not in data and b"Exif" not in data
    assert np.abs(np.asarray(Image.open(out)).astype(int) - image.array).mean() < 3


@pytest.mark.parametrize("name", ["in.nii", "in.nii.gz"])
def test_nifti_round_trip_keeps_geometry_scaling_and_drops_text(tmp_path, name):
    data = (np.arange(40 * 30).reshape(40, 30) % 997).astype(np.int16)  # (x, y)
    affine = np.diag([0.15, 0.2, 1.0, 1.0])
    affine[:3, 3] = [-3.0, 4.0, 0.0]
    img = nib.Nifti1Image(data, affine)
    img.header["descrip"] = PHI[:70].encode()
    img.header["aux_file"] = b"PID-8823-4471"
    img.header["intent_name"] = b"Quaddelbrink"
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", PHI.encode()))
    plain = tmp_path / "plain.nii"
    img.to_filename(plain)
    raw = bytearray(plain.read_bytes())  # nibabel drops scaling of array images on save: patch it in
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw)))
    header.set_slope_inter(2.0, -5.0)
    raw[:348] = header.binaryblock
    src = tmp_path / name
    src.write_bytes(gzip.compress(bytes(raw)) if name.endswith(".gz") else bytes(raw))
    assert (nib.load(src).dataobj.slope, nib.load(src).dataobj.inter) == (2.0, -5.0)
    image = read_image(src)
    assert image.array.shape == (30, 40)  # rows first
    np.testing.assert_array_equal(image.array, data.T)
    out = write_image(image, image.array, tmp_path / ("out" + name[2:]))
    back = nib.load(out)
    np.testing.assert_array_equal(np.asanyarray(back.dataobj.get_unscaled()), data)
    np.testing.assert_allclose(back.affine, affine)
    assert (back.dataobj.slope, back.dataobj.inter) == (2.0, -5.0)
    raw = out.read_bytes()
    if name.endswith(".gz"):
        assert raw[4:8] == b"\x00\x00\x00\x00" and not raw[3] & 0x08  # mtime 0, no file name
        raw = gzip.decompress(raw)
    assert b"Quaddelbrink" not in raw and b"PID-8823" not in raw


def test_rgba_with_equal_channels_is_written_as_gray(tmp_path):
    gray = png_array()
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png")
    np.testing.assert_array_equal(image.array, gray)
    assert any("grayscale" in n for n in image.notes)


def test_refusals_name_the_file(tmp_path):
    colour = np.dstack([png_array(seed=1), png_array(seed=2), png_array(seed=3)])
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(UnsupportedImageError, match="colour.png.*colour image"):
        read_image(tmp_path / "colour.png")
    frames = [Image.fromarray(png_array(seed=i)) for i in range(2)]
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    with pytest.raises(UnsupportedImageError, match="pages.tif.*multi-page"):
        read_image(tmp_path / "pages.tif")
    nib.Nifti1Image(np.zeros((8, 8, 3), np.int16), np.eye(4)).to_filename(tmp_path / "vol.nii")
    with pytest.raises(UnsupportedImageError, match="vol.nii.*not a single 2D image"):
        read_image(tmp_path / "vol.nii")
    (tmp_path / "trunc.png").write_bytes((tmp_path / "colour.png").read_bytes()[:60])
    with pytest.raises(UnsupportedImageError, match="trunc.png"):
        read_image(tmp_path / "trunc.png")


def test_detect_format():
    dicm = bytes(128) + b"DICM" + bytes(400)
    assert detect_format("x", dicm) == "dicom"
    assert detect_format("IM0001", b"\x08\x00\x05\x00") == "dicom"  # raw dataset, no suffix: let the reader decide
    assert detect_format("a.png", b"\x89PNG\r\n\x1a\n" + bytes(10)) == "png"
    assert detect_format("a.bin", b"\xff\xd8\xff\xe0") == "jpeg"
    assert detect_format("a.tiff", b"II*\x00") == "tiff"
    assert detect_format("a.nii.gz", b"\x1f\x8b\x08") == "nifti-gz"
    assert detect_format("notes.txt", b"hello") is None
    assert detect_format("DICOMDIR", dicm[:100]) is None


def test_encode_rejects_mismatched_values(tmp_path):
    image = read_image(write_png(tmp_path / "a.png", png_array()))
    with pytest.raises(ValueError, match="do not match"):
        encode_image(image, image.array.astype(np.uint16))
