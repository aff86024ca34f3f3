"""The same stage under ``torchrun --nproc_per_node 2`` (ignite.distributed, gloo, CPU) gives the
same result as one process.

Set-up: the bundle's ``run_generator_pretrain`` with ``multi_gpu_train.json`` layered on top
(``--backend gloo --device cpu``), the same GLOBAL batch (``idist.auto_dataloader`` gives each
process half of it; no shuffling, so that both runs see the same global batches in the same
order) and 2 epochs x 3 iterations of Adam.

What is accounted for: PyTorch has no SyncBatchNorm on CPU, so with BatchNorm each process
would normalise its half-batch with its own statistics and the runs would legitimately differ.
The test therefore swaps the generator for a BatchNorm-free MONAI UNet (instance norm, which
is per image, and no conv bias before the norm: such a bias has an analytically zero gradient
whose rounding noise Adam would amplify into +-lr steps). On GPU ``multi_gpu_train.json`` turns
SyncBatchNorm on for the real networks.

Tolerance: 1e-5 relative on the per-iteration training loss (averaged over processes) and 1e-5
absolute on every weight. (Validation losses are not compared: the DistributedSampler pads a
validation set whose size is not a multiple of the process count with repeated images.) Both runs do the same float32 arithmetic except for
the order of the sums over the batch (two halves all-reduced vs one sum), a rounding-level
difference (~1e-7) that six Adam steps at lr 1e-2 carry to at most ~1e-6 in the weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .test_engines_common import tiny_data  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
BN_FREE_GENERATOR = (
    "{'_target_': 'monai.networks.nets.UNet', 'spatial_dims': 2, 'in_channels': 1, 'out_channels': 2, "
    "'channels': [4, 8], 'strides': [2], 'norm': 'instance', 'num_res_units': 0, 'bias': False}"
)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _overrides(data: Path, root: Path) -> list[str]:
    return [
        "--bundle_root", str(root), "--dataset_dir", str(data), "--image_dir", "images64", "--image_size", "32",
        "--device", "cpu", "--num_workers", "0", "--progress", "False", "--train_shuffle", "False",
        "--generator_pretrain#max_epochs", "2", "--generator_pretrain#batch_size", "8",
        "--generator_pretrain#lr", "0.01", "--mu", "0.2", "--smoothing", "displacement",
        "--generator_def", BN_FREE_GENERATOR,
    ]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(tiny_data, tmp_path):
    configs = "['bundle/configs/train.json','bundle/configs/multi_gpu_train.json']"
    single, multi = tmp_path / "single", tmp_path / "ddp"
    _run([sys.executable, "-m", "monai.bundle", "run", "run_generator_pretrain",
          "--config_file", "bundle/configs/train.json", *_overrides(tiny_data, single)])
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "monai.bundle", "run",
          "run_generator_pretrain", "--config_file", configs, "--backend", "gloo", *_overrides(tiny_data, multi)])

    ckpt = Path("runs/checkpoints/generator_pretrain")
    a = json.loads((single / ckpt).with_suffix(".json").read_text())
    b = json.loads((multi / ckpt).with_suffix(".json").read_text())
    assert a["world_size"] == 1 and b["world_size"] == 2
    la, lb = [it["loss"] for it in a["iterations"]], [it["loss"] for it in b["iterations"]]
    assert len(la) == len(lb) == 6  # 2 epochs x 3 global batches of 8 (18 training images)
    assert la[-1] < la[0]
    assert lb == pytest.approx(la, rel=1e-5)
    # (validation losses are not compared: DistributedSampler pads the 9 validation images to 10)
    sa = torch.load((single / ckpt).with_suffix(".pt"), weights_only=True)["state_dict"]
    sb = torch.load((multi / ckpt).with_suffix(".pt"), weights_only=True)["state_dict"]
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.allclose(sa[key], sb[key], atol=1e-5, rtol=0), (key, (sa[key] - sb[key]).abs().max())
