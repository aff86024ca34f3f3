"""Helpers shared by the pipeline and CLI tests (tiny weights, input trees, PHI checks)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_prichexy.networks import FlowFieldGenerator, PriCheXyNet
from monai_prichexy.weights import save_checkpoint
from tests.dicom_fixtures import make_radiograph_dataset, save

PYDICOM_FILES = Path(__import__("pydicom").__file__).parent / "data" / "test_files"


def tiny_weights(path: Path, mu: float = 0.01, seed: int = 0) -> Path:
    """A tiny untrained generator checkpoint (init_features=2)."""
    torch.manual_seed(seed)
    return save_checkpoint(path, PriCheXyNet(FlowFieldGenerator(init_features=2), mu=mu, working_size=32))


def pydicom_file(name: str) -> Path:
    """A test file bundled with pydicom (never downloaded); skip when absent."""
    path = PYDICOM_FILES / name
    if not path.is_file():
        pytest.skip(f"pydicom test file {name} not bundled")
    return path


def png_array(rows: int = 64, cols: int = 72, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols] / max(rows, cols)
    img = 0.5 + 0.3 * np.sin(8 * x) * np.cos(6 * y) + 0.05 * rng.standard_normal((rows, cols))
    hi = np.iinfo(dtype).max
    return np.clip(img * hi, 0, hi).astype(dtype)


def write_png(path: Path, arr: np.ndarray, text: dict | None = None) -> Path:
    from PIL import Image, PngImagePlugin

    path.parent.mkdir(parents=True, exist_ok=True)
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for k, v in text.items():
            info.add_text(k, v)
    Image.fromarray(arr).save(path, pnginfo=info)
    return path


def write_dicom(path: Path, rows: int = 64, cols: int = 80, **kwargs) -> Path:
    return save(make_radiograph_dataset(rows, cols, **kwargs), path)


def tree_digests(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under root (to check inputs stay unchanged)."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            p = Path(folder) / name
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def output_files(out_dir: Path) -> list[Path]:
    """Every file under OUT except the state folder."""
    return sorted(p for p in out_dir.rglob("*") if p.is_file() and ".prichexy" not in p.relative_to(out_dir).parts)


def test_support_helpers(tmp_path):
    weights = tiny_weights(tmp_path / "g.pt")
    assert weights.is_file()
    arr = png_array(dtype=np.uint16)
    assert arr.dtype == np.uint16 and arr.max() > 255
