"""Shared helpers of the engine tests (a tiny synthetic ChestX-ray14-shaped data folder) and data tests."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_prichexy.engines import DataModule, make_loader, seed_everything

FINDINGS = ("Effusion", "Cardiomegaly", "Infiltration")
TINY_GENERATOR = {"init_features": 2}
TINY_VERIFIER = {"backbone": "resnet10", "embedding_dim": 8, "widen_factor": 0.25}
TINY_CLASSIFIER = {"in_channels": 1, "input_size": None}
TINY_EMBEDDING = {"backbone": "resnet10", "embedding_dim": 8, "widen_factor": 0.25}
TINY_ATTACKERS = {
    "siamese": {},
    "metric": {"network": TINY_EMBEDDING, "max_epochs": 1, "batch_size": 8, "m_per_patient": 2},
    "pixel": {},
}


def make_tiny_dataset(root: Path, size: int = 32, patients: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Write ``images/``, ``images64/``, ``labels.csv`` and ``splits.csv`` like the real subset.

    Each patient has a fixed random smooth pattern (identity) plus per-image noise; findings add a
    bright disc, so both identity and labels are learnable.
    """
    from PIL import Image

    patients = patients or {"train": 6, "val": 3, "test": 3}
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("images", "images64"):
        (root / folder).mkdir(exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    rows, splits = [], []
    pid = 0
    for split, n_patients in patients.items():
        for _ in range(n_patients):
            pid += 1
            patient = f"{pid:08d}"
            splits.append((patient, split))
            freq = rng.uniform(1, 4, size=2)
            phase = rng.uniform(0, 2 * np.pi, size=2)
            base = 0.5 + 0.25 * np.sin(2 * np.pi * freq[0] * xx + phase[0]) * np.cos(2 * np.pi * freq[1] * yy + phase[1])
            for follow_up in range(3):
                labels = [f for f in FINDINGS if rng.random() < 0.4]
                img = base + 0.05 * rng.standard_normal((size, size))
                if "Effusion" in labels:
                    img += 0.3 * np.exp(-((xx - 0.3) ** 2 + (yy - 0.7) ** 2) / 0.02)
                if "Cardiomegaly" in labels:
                    img += 0.3 * np.exp(-((xx - 0.6) ** 2 + (yy - 0.5) ** 2) / 0.03)
                name = f"{patient}_{follow_up:03d}.png"
                arr = (np.clip(img, 0, 1) * 255).astype(np.uint8)
                Image.fromarray(arr).save(root / "images" / name)
                Image.fromarray(arr).save(root / "images64" / name)
                rows.append((name, patient, follow_up, "|".join(labels) or "No Finding"))
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "patient_id", "follow_up", "labels"])
        w.writerows(rows)
    with open(root / "splits.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "split"])
        w.writerows(splits)
    return root


def tiny_profile(dataset_dir: Path, output_dir: Path, size: int = 32) -> dict:
    """A benchmark profile small enough for the unit tests."""
    return {
        "device": "cpu",
        "seed": 0,
        "output_dir": str(output_dir),
        "progress": False,
        "data": {
            "dataset_dir": str(dataset_dir), "image_dir": "images64", "image_size": size, "num_workers": 0,
            "num_pairs": {"train": 16, "val": 8, "test": None},
        },
        "networks": {
            "generator": TINY_GENERATOR, "working_size": size, "smoothing": "grid", "privacy_net": {"init_features": 2},
            "classifier": TINY_CLASSIFIER, "verifier": TINY_VERIFIER,
        },
        "stages": {
            "classifier_pretrain": {"max_epochs": 1, "batch_size": 8, "lr": 1e-3, "select": "val_loss", "patience": None},
            "verifier_pretrain": {"max_epochs": 1, "batch_size": 8, "lr": 1e-3, "patience": 5},
            "generator_pretrain": {"max_epochs": 1, "batch_size": 8, "lr": 1e-3},
            "adversarial": {"max_epochs": 1, "batch_size": 8},
            "ensemble": {"max_epochs": 1, "batch_size": 8, "refresh_every": 1, "warmup_steps": 1,
                         "adversaries": {"siamese": {"network": TINY_VERIFIER}, "metric": {"network": TINY_EMBEDDING}}},
            "attack": {"max_epochs": 1, "batch_size": 8, "lr": 1e-3, "patience": 5, "seeds": [0, 1],
                       "attackers": TINY_ATTACKERS},
        },
        "benchmark": {
            "mus": [0.01], "privacy_net": True, "dppix": {"b": [1, 2, 4, 8], "eps": 0.1, "m": 1.0},
            "blur": {"sigma": [1.0]}, "random_control": {"field_sigma": 2.0}, "n_bootstrap": 20, "eval_split": "test",
        },
    }


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tinycxr") / "subset")


@pytest.fixture()
def tiny_module(tiny_data) -> DataModule:
    return DataModule(tiny_data, image_dir="images64", image_size=32, num_pairs={"train": 16, "val": 8, "test": None})


def test_data_module_shapes_and_pairs(tiny_module):
    seed_everything(0)
    assert set(tiny_module.splits) == {"train", "val", "test"}
    batch = next(iter(tiny_module.image_loader("train", 4)))
    assert tuple(batch["image"].shape) == (4, 1, 32, 32)
    assert tuple(batch["label"].shape) == (4, 14)
    assert float(batch["image"].min()) >= 0 and float(batch["image"].max()) <= 1
    pairs = next(iter(tiny_module.pair_loader("train", 4)))
    assert tuple(pairs["image1"].shape) == (4, 1, 32, 32)
    assert tuple(pairs["label"].shape) == (4, 1)
    assert len(tiny_module.pairs("train")) == 16
    # test split: all positives (3 patients x 3 images -> 9) and as many negatives
    assert len(tiny_module.pairs("test")) == 18
    assert len(tiny_module.pair_groups("test")) == 18
    desc = tiny_module.describe()
    assert desc["image_dir"] == "images64" and "/" not in desc["dataset"]


def test_data_module_degrade_and_loader(tiny_data):
    dm = DataModule(tiny_data, image_dir="images", image_size=32, degrade_to=16)
    x = dm.image_dataset("val")[0]["image"]
    assert tuple(x.shape) == (1, 32, 32)
    loader = make_loader(dm.image_dataset("val"), batch_size=5)
    assert sum(b["image"].shape[0] for b in loader) == len(dm.records("val"))
    with pytest.raises(FileNotFoundError):
        DataModule(tiny_data / "nope")
    assert torch.is_tensor(x)


def test_data_module_cache_gives_the_same_items(tiny_data):
    lazy = DataModule(tiny_data, image_size=32, num_pairs={"train": 16, "val": 8, "test": None})
    cached = DataModule(tiny_data, image_size=32, num_pairs={"train": 16, "val": 8, "test": None}, cache_rate=1.0)
    a, b = lazy.pair_dataset("val")[3], cached.pair_dataset("val")[3]
    assert torch.equal(torch.as_tensor(a["image1"]), torch.as_tensor(b["image1"])) and torch.equal(a["label"], b["label"])
    assert cached.pair_dataset("val") is cached.pair_dataset("val")  # built once
    with pytest.raises(ValueError):
        DataModule(tiny_data, cache_rate=2.0)


def test_optimizer_step_switches_gradients_on_and_steps():
    from monai_prichexy.engines.utils import optimizer_step, set_requires_grad

    net = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.ones_(net.weight)
    set_requires_grad(net, False)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    x = torch.tensor([[1.0, 2.0]])
    loss = optimizer_step(net, opt, lambda: net(x).sum())
    assert loss == 3.0 and all(p.requires_grad for p in net.parameters())
    assert torch.equal(net.weight.detach(), torch.tensor([[0.5, 0.0]]))  # w - 0.5 * x
