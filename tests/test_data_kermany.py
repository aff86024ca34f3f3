"""The Kermany paediatric table, data-set recognition by header, and a data module over an RGB-JPEG folder."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_prichexy.data import detect_dataset, read_kermany_table, read_table
from monai_prichexy.engines import DataModule, load_split_images
from monai_prichexy.labels import KERMANY_SCHEMA


def _write_kermany(root: Path, size: int = 40) -> Path:
    """A Kermany-shaped folder: RGB JPEGs with three equal channels, labels.csv and splits.csv."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows, splits = [], []
    labels = ["normal", "bacteria", "virus"]
    for k, (pid, split) in enumerate([(f"person{k}_x", s) for k, s in enumerate(["train"] * 6 + ["val"] * 3 + ["test"] * 3)]):
        splits.append((pid, split))
        base = rng.uniform(0, 1, (size, size))
        for j in range(2):
            name = f"{pid}_{j}.jpeg"
            gray = (np.clip(base + 0.05 * rng.standard_normal((size, size)), 0, 1) * 255).astype(np.uint8)
            Image.fromarray(np.stack([gray] * 3, -1)).save(root / "images" / name)
            rows.append((name, pid, labels[(k + j) % 3], "train"))
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "patient_id", "label", "source_split"])
        w.writerows(rows)
    with open(root / "splits.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "split"])
        w.writerows(splits)
    return root


def test_read_kermany_table_one_hot_and_errors(tmp_path):
    root = _write_kermany(tmp_path / "k")
    records = read_kermany_table(root / "labels.csv")
    assert len(records) == 24 and records[0].classes == KERMANY_SCHEMA.classes
    assert all(r.labels.sum() == 1 for r in records) and records[0].finding_names == ("normal",)
    assert detect_dataset(root / "labels.csv") == "kermany"
    recs, schema = read_table(root / "labels.csv")
    assert schema is KERMANY_SCHEMA and len(recs) == 24
    bad = tmp_path / "bad.csv"
    bad.write_text("image,patient_id,label\na.jpeg,p1,covid\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 2: unknown label 'covid'"):
        read_kermany_table(bad)
    bad.write_text("image,patient_id\na.jpeg,p1\n")
    with pytest.raises(ValueError, match="missing column"):
        read_kermany_table(bad)
    bad.write_text("foo,bar\n1,2\n")
    with pytest.raises(ValueError, match="unrecognised header"):
        detect_dataset(bad)


def test_data_module_over_kermany_images(tmp_path):
    root = _write_kermany(tmp_path / "k")
    dm = DataModule(root, image_dir="images", image_size=32)
    assert dm.schema is KERMANY_SCHEMA and dm.describe()["schema"] == "kermany"
    batch = next(iter(dm.image_loader("train", 4)))
    assert tuple(batch["image"].shape) == (4, 1, 32, 32) and tuple(batch["label"].shape) == (4, 3)
    assert torch.all(batch["label"].sum(1) == 1)
    test = load_split_images(dm, "test")
    assert test.images.shape == (6, 1, 32, 32) and len(set(test.patient_ids)) == 3
    i1, i2, same = test.pair_indices(dm.pairs("test"))
    assert same.sum() == 3 and np.all(test.patient_ids[i1[same == 1]] == test.patient_ids[i2[same == 1]])


@pytest.mark.shared_data
def test_real_kermany_table_and_splits(shared_data):
    root = shared_data / "kermany-pediatric-cxr"
    if not (root / "labels.csv").is_file():
        pytest.skip(f"{root} not found")
    dm = DataModule(root, image_dir="images", image_size=64)
    sizes = dm.describe()["split_sizes"]
    assert sizes == {"train": 3996, "val": 627, "test": 1201}
    patients = {s: len({r.patient_id for r in dm.records(s)}) for s in ("train", "val", "test")}
    assert patients == {"train": 2868, "val": 409, "test": 819}
    labels = np.stack([r.labels for r in dm.records("test")]).sum(0)
    assert labels.tolist() == [317, 593, 291]  # normal / bacteria / virus
