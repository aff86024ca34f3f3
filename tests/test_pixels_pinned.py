"""The pixels a fixed generator writes for fixed inputs, pinned: speed work must not change them.

The digests were computed with the code before the speed work of issue 12 (commit d299b8c: the
full-size view, the identity grid, the read-back decode). A change that alters the algorithm
must say so and pin new values; one that only makes it faster leaves these equal. One torch
thread: reductions in several threads may round the last bit differently.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_prichexy.demo import make_demo_input
from monai_prichexy.dicom import DeidConfig, create_key, read_radiograph
from monai_prichexy.formats import detect_format, read_image
from monai_prichexy.networks import FlowFieldGenerator, PriCheXyNet
from monai_prichexy.pipeline import Deformer, FileAnonymizer

PINNED = {
    # (file name, smoothing) -> SHA-256 of the output's pixel values (little-endian bytes)
    "IM0001 displacement": "fb2a9f1248c60f2af20322721724da53625e08de125a0ff165a620392227c5c8",
    "IM0001 grid": "7bd5d947cb1193e5eebb2db42634586663971ab018ce36df4a437bd626af952b",
    "IM0002.dcm displacement": "a435c30ef5f74781bac9f52aa04b20c543749645c8cf75c5f862ca46127ca677",
    "IM0002.dcm grid": "3734e50f1473e2197583940c4c8c110070e5bcd623195ba38e837f444022b27f",
    "IM0003.dcm displacement": "3dd82a5a74bf1da44935c249345cea3025f0a6d1fc18a8449b04fc130aa1f3c4",
    "IM0003.dcm grid": "3f3c7ab4ed55e1c555ba1e8fe3ac76d74788192ed5d796c178a07578dfd27b6e",
    "mustermann_erika_pa.png displacement": "8be8dabaee26428370e0b692f016fb67d8a5ba788eb516a545d0704c8040ed5d",
    "mustermann_erika_pa.png grid": "7b2667ffce96a580a9125d4d4702a148aae208b8a535b1cbf2a2744076f022f0",
    "mustermann_erika_pa_16bit.png displacement": "ced1ea63ff746ff4382c270506943ef3f90a2ca5bd3c6f6f3197396653ad3d1e",
    "mustermann_erika_pa_16bit.png grid": "6d08cf9d5d47cbb6bce2a2383bcb1fec408fcaaa2748a5e55c804fcc5be6c758",
}


def _digest(path: Path, kind: str) -> str:
    values = read_radiograph(path, allow_secondary_capture=True).stored if kind == "dicom" else read_image(path).array
    return hashlib.sha256(np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<")).tobytes()).hexdigest()


def outputs(tmp_path: Path) -> dict[str, str]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        inputs = make_demo_input(tmp_path / "in", size=96)
        key = create_key(tmp_path / "k.key")
        found = {}
        for smoothing, budget in (("grid", None), ("displacement", 0.5)):
            torch.manual_seed(0)
            net = PriCheXyNet(FlowFieldGenerator(init_features=4), mu=0.02, smoothing=smoothing, working_size=32,
                              budget_px=budget)
            anonymizer = FileAnonymizer(Deformer(net), DeidConfig(key=key))
            for src in sorted(p for p in inputs.rglob("*") if p.is_file()):
                kind = detect_format(src, src.read_bytes()[:512])
                dst = tmp_path / "out" / smoothing / (src.name + ".out")
                dst.parent.mkdir(parents=True, exist_ok=True)
                anonymizer.anonymize(src, kind, dst)
                found[f"{src.name} {smoothing}"] = _digest(dst, kind)
        return found
    finally:
        torch.set_num_threads(threads)


def test_pixels_are_those_of_the_code_before_the_speed_work(tmp_path):
    found = outputs(tmp_path)
    assert len(found) == len(PINNED) and found == PINNED
