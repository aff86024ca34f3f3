"""Start-up of the batch CLI (issue 12): ``anonymize`` runs without importing MONAI or Ignite.

Importing MONAI costs about 2.5 s per run on the CI kind of machine; the CLI's path (walk, decode,
network view, deformation, DICOM / image writer) uses the MONAI-free cores of the reader and the
transform (:mod:`monai_prichexy.data.decode`, :mod:`monai_prichexy.transforms.functional`),
which the MONAI classes wrap, so the pixels stay those of the bundle's chain (tests/test_one_path.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from monai.utils import MetaKeys

from monai_prichexy.data import decode
from tests.test_pipeline_support import png_array, tiny_weights, write_dicom, write_png

REPO = Path(__file__).resolve().parents[1]

_RUN = """
import json, sys
from monai_prichexy.cli import main
code = main(sys.argv[1:])
heavy = sorted({name.split(".")[0] for name in sys.modules} & {"monai", "ignite"})
print(json.dumps({"code": code, "heavy": heavy}))
"""


def test_anonymize_imports_no_monai(tmp_path):
    tree = tmp_path / "in"
    write_dicom(tree / "a" / "IM0001", 64, 80)
    write_dicom(tree / "a" / "IM0002.dcm", 64, 80, photometric="MONOCHROME1")
    write_png(tree / "b.png", png_array())
    weights = tiny_weights(tmp_path / "g.pt")
    out = subprocess.run(
        [sys.executable, "-c", _RUN, "anonymize", str(tree), str(tmp_path / "out"), "--weights", str(weights),
         "--new-key", "--key-file", str(tmp_path / "k.key"), "--no-progress", "--workers", "2"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "heavy": []}, (result, out.stderr[-2000:])
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 2


def test_decode_meta_keys_are_monais():
    """The MONAI-free reader core writes the meta keys MONAI's LoadImage / EnsureChannelFirst read."""
    assert decode.SPATIAL_SHAPE == MetaKeys.SPATIAL_SHAPE
    assert decode.ORIGINAL_CHANNEL_DIM == MetaKeys.ORIGINAL_CHANNEL_DIM


def test_one_torch_thread_per_worker(monkeypatch):
    """The batch runs files in parallel with one torch thread each (the same pixels for any
    --workers and any machine); OMP_NUM_THREADS set by the operator wins."""
    import torch

    from monai_prichexy.cli import MAX_DEFAULT_WORKERS, build_parser, usable_cores, _one_torch_thread

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert _one_torch_thread() == 1
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert _one_torch_thread() == 2  # the operator's setting is left alone
    finally:
        torch.set_num_threads(before)
    args = build_parser().parse_args(["anonymize", "in", "out"])
    assert args.workers == min(MAX_DEFAULT_WORKERS, usable_cores())


def test_pixels_do_not_depend_on_workers_through_the_cli(tmp_path):
    """--workers 1 and --workers 2 write the same bytes (one torch thread each, whatever the cores)."""
    tree = tmp_path / "in"
    for i in range(2):  # the shipped generator at this size: several threads moved some pixels by one level
        write_dicom(tree / f"IM{i}", 1000, 1200, seed=i)
    key = tmp_path / "k.key"
    outputs = []
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        cmd = [sys.executable, "-m", "monai_prichexy.cli", "anonymize", str(tree), str(out),
               "--key-file", str(key), "--no-progress", "--workers", str(workers)] + (["--new-key"] if workers == 1 else [])
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300, env=env)
        assert done.returncode == 0, done.stderr
        outputs.append({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.dcm"))})
    assert outputs[0] == outputs[1] and len(outputs[0]) == 2


def test_dicom_code_imports_no_torch():
    """The DICOM reader and de-identifying writer stay light (header work, the MONAI Label app)."""
    code = "import sys, monai_prichexy.dicom, monai_prichexy.formats; print(sorted({'torch', 'monai'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
