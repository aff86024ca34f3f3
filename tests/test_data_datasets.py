"""Tests for monai_prichexy.data.datasets: readers, orientation, lazy datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from monai_prichexy.data import (
    ChestXray14Dataset,
    ChestXray14PairDataset,
    ToGrayscale,
    build_transforms,
    make_splits,
    read_chestxray14_table,
    resolve_image_paths,
    sample_verification_pairs,
    write_pairs,
)

ROWS, COLS = 30, 50


def _asymmetric(rows: int = ROWS, cols: int = COLS) -> np.ndarray:
    """A non-square image whose every flip or transpose is distinguishable."""
    yy, xx = np.mgrid[0:rows, 0:cols]
    img = (xx * 3 + yy * 2).astype(np.float64)
    img = 255 * (img - img.min()) / (img.max() - img.min())
    img[2:6, cols - 9 : cols - 3] = 255  # bright block near the top-right corner
    img[rows - 4 :, :3] = 0
    return img.astype(np.uint8)


def _load(path, **kw):
    return build_transforms(keys=("image",), **kw)({"image": str(path)})["image"]


def test_png_orientation_matches_pil(tmp_path):
    arr = _asymmetric()
    Image.fromarray(arr).save(tmp_path / "a.png")
    ref = np.asarray(Image.open(tmp_path / "a.png"), dtype=np.float32)
    assert ref.shape == (ROWS, COLS)
    img = _load(tmp_path / "a.png", size=None)
    assert tuple(img.shape) == (1, ROWS, COLS) and img.dtype == torch.float32
    np.testing.assert_allclose(img[0].numpy(), ref / 255.0, atol=1e-6)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_color_png_becomes_grayscale(tmp_path, mode):
    arr = _asymmetric()
    rgb = np.stack([arr, np.flipud(arr), 255 - arr], axis=-1)
    color = Image.fromarray(rgb, "RGB")
    if mode == "RGBA":
        color = color.convert("RGBA")
        color.putalpha(128)
    color.save(tmp_path / "c.png")
    ref = np.asarray(Image.open(tmp_path / "c.png").convert("L"), dtype=np.float32)
    img = _load(tmp_path / "c.png", size=None)
    assert tuple(img.shape) == (1, ROWS, COLS)
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    np.testing.assert_allclose(img[0].numpy(), ref, atol=2.5 / 255)


def test_grayscale_rejects_many_channels():
    with pytest.raises(ValueError, match="1-4 channels"):
        ToGrayscale()(torch.zeros(5, 4, 4))


def _write_dicom(path, arr, photometric="MONOCHROME2"):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray for presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (arr.astype(np.uint16) * 16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    assert np.array_equal(pydicom.dcmread(path).pixel_array, arr.astype(np.uint16) * 16)
    return path


@pytest.mark.parametrize("name", ["x.dcm", "no_suffix"])
def test_dicom_orientation_matches_pixel_array(tmp_path, name):
    arr = _asymmetric()
    img = _load(_write_dicom(tmp_path / name, arr), size=None)
    assert tuple(img.shape) == (1, ROWS, COLS)
    np.testing.assert_allclose(img[0].numpy(), arr / 255.0, atol=1e-6)


def test_dicom_monochrome1_inverted(tmp_path):
    arr = _asymmetric()
    img = _load(_write_dicom(tmp_path / "m1.dcm", arr, "MONOCHROME1"), size=None)
    np.testing.assert_allclose(img[0].numpy(), 1.0 - arr / 255.0, atol=1e-6)


def test_nifti_orientation(tmp_path):
    nib = pytest.importorskip("nibabel")
    arr = _asymmetric()
    # NIfTI stores (i, j) = (x, y); a viewer shows i across, so rows are j
    nib.save(nib.Nifti1Image(arr.T.astype(np.float32), np.eye(4)), str(tmp_path / "a.nii.gz"))
    img = _load(tmp_path / "a.nii.gz", size=None)
    assert tuple(img.shape) == (1, ROWS, COLS)
    np.testing.assert_allclose(img[0].numpy(), arr / 255.0, atol=1e-6)


@pytest.mark.parametrize("size, shape", [(16, (1, 16, 16)), ((20, 40), (1, 20, 40))])
def test_resize_and_scale(tmp_path, size, shape):
    Image.fromarray((_asymmetric() // 2 + 40).astype(np.uint8)).save(tmp_path / "a.png")
    img = _load(tmp_path / "a.png", size=size)
    assert tuple(img.shape) == shape
    assert float(img.min()) == pytest.approx(0.0) and float(img.max()) == pytest.approx(1.0)


def _make_folder(tmp_path, n_patients=6, nested=False):
    img_dir = tmp_path / "images"
    rng = np.random.default_rng(0)
    lines = ["image,patient_id,follow_up,labels"]
    split_lines = ["patient_id,split"]
    for p in range(1, n_patients + 1):
        for f in range(1 + p % 3):
            name = f"{p:08d}_{f:03d}.png"
            sub = img_dir / f"images_{1 + p % 2:03d}" / "images" if nested else img_dir
            sub.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, size=(24, 20), dtype=np.uint8)).save(sub / name)
            lines.append(f"{name},{p:08d},{f},{'Effusion|Mass' if f else 'No Finding'}")
        split_lines.append(f"{p:08d},{'test' if p <= 3 else 'train'}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "splits.csv").write_text("\n".join(split_lines) + "\n")
    return img_dir


@pytest.mark.parametrize("nested", [False, True])
def test_classification_dataset(tmp_path, nested):
    img_dir = _make_folder(tmp_path, nested=nested)
    ds = ChestXray14Dataset(
        str(img_dir), str(tmp_path / "labels.csv"), split="test", split_file=str(tmp_path / "splits.csv"), size=32
    )
    assert len(ds) == len(ds.records) == 2 + 3 + 1
    assert {r.patient_id for r in ds.records} == {"00000001", "00000002", "00000003"}
    item = ds[1]
    assert set(item) == {"image", "label"}  # no patient id in samples
    assert tuple(item["image"].shape) == (1, 32, 32) and item["image"].dtype == torch.float32
    assert item["label"].shape == (14,) and item["label"].dtype == torch.float32
    assert float(item["label"].sum()) == 2.0  # 00000001_001: Effusion|Mass


def test_missing_images(tmp_path):
    img_dir = _make_folder(tmp_path)
    (img_dir / "00000002_000.png").unlink()
    with pytest.raises(FileNotFoundError, match="1 of"):
        ChestXray14Dataset(img_dir, tmp_path / "labels.csv")
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = ChestXray14Dataset(img_dir, tmp_path / "labels.csv", missing="skip")
    assert "00000002_000.png" not in {r.image for r in ds.records}
    assert resolve_image_paths(img_dir, ["nope.png"], missing="skip") == [None]


def test_pair_dataset_shapes(tmp_path):
    img_dir = _make_folder(tmp_path)
    recs = read_chestxray14_table(tmp_path / "labels.csv")
    test = make_splits(recs, split_file=tmp_path / "splits.csv")["test"]
    pairs = sample_verification_pairs(test, seed=0)
    path = write_pairs(tmp_path / "pairs.csv", pairs)
    ds = ChestXray14PairDataset(img_dir, path, tmp_path / "labels.csv", size=(16, 24))
    assert len(ds) == len(pairs) and ds.pairs == pairs
    item = ds[0]
    assert set(item) == {"image1", "image2", "label", "labels1", "labels2"}
    assert tuple(item["image1"].shape) == tuple(item["image2"].shape) == (1, 16, 24)
    assert tuple(item["label"].shape) == (1,) and float(item["label"]) == pairs[0].label
    assert item["labels1"].shape == (14,)
    from monai.data import DataLoader

    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert tuple(batch["image1"].shape) == (3, 1, 16, 24) and tuple(batch["label"].shape) == (3, 1)
    assert tuple(batch["labels1"].shape) == (3, 14)
    with pytest.raises(KeyError, match="not in the table"):
        ChestXray14PairDataset(img_dir, [("x.png", "y.png", 0)], recs)


def test_built_from_bundle_config(tmp_path):
    from monai.bundle import ConfigParser

    img_dir = _make_folder(tmp_path)
    config = {
        "dataset": {
            "_target_": "monai_prichexy.data.ChestXray14Dataset",
            "image_dir": str(img_dir),
            "table": str(tmp_path / "labels.csv"),
            "split": "train",
            "split_file": str(tmp_path / "splits.csv"),
            "size": 16,
        }
    }
    parser = ConfigParser(config)
    ds = parser.get_parsed_content("dataset")
    assert len(ds) > 0 and tuple(ds[0]["image"].shape) == (1, 16, 16)


@pytest.mark.shared_data
def test_real_pair_item_from_images64(shared_data):
    root = shared_data / "nih-cxr14-subset"
    recs = read_chestxray14_table(root / "labels.csv")
    test = make_splits(recs, split_file=root / "splits.csv")["test"]
    pairs = sample_verification_pairs(test, 8, seed=0, max_positive_per_patient=10)
    ds = ChestXray14PairDataset(root / "images64", pairs, recs, size=64)
    item = ds[0]
    for key in ("image1", "image2"):
        x = item[key]
        assert tuple(x.shape) == (1, 64, 64) and x.dtype == torch.float32
        assert float(x.min()) == pytest.approx(0.0) and float(x.max()) == pytest.approx(1.0)
    ref = np.asarray(Image.open(root / "images64" / pairs[0].image1).convert("L"), dtype=np.float32)
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    np.testing.assert_allclose(item["image1"][0].numpy(), ref, atol=1e-5)


def test_monochrome1_inverted_from_pydicom_meta():
    from monai.data import MetaTensor

    x = MetaTensor(torch.tensor([[[0.0, 1.0], [2.0, 4.0]]]), meta={"00280004": {"vr": "CS", "Value": ["MONOCHROME1"]}})
    np.testing.assert_allclose(ToGrayscale()(x)[0].numpy(), [[4.0, 3.0], [2.0, 0.0]])
    np.testing.assert_allclose(ToGrayscale(invert_monochrome1=False)(x)[0].numpy(), [[0.0, 1.0], [2.0, 4.0]])
