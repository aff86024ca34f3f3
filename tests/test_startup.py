"""Start-up of the batch CLI (issue 12): ``anonymize`` runs without importing MONAI or Ignite.

Importing MONAI costs about 2.5 s per run on the CI kind of machine; the CLI's path (walk, decode,
network view, deformation, DICOM / image writer) uses the MONAI-free cores of the reader and the
transform (:mod:`monai_prichexy.data.decode`, :mod:`monai_prichexy.transforms.functional`),
which the MONAI classes wrap, so the pixels stay those of the bundle's chain (tests/test_one_path.py).
"""

from __future__ import annotations

import json
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


def test_torch_threads_are_shared_among_workers(monkeypatch):
    """Each worker thread calls torch at once: the cores are divided among them (OMP_NUM_THREADS wins)."""
    import os

    import torch

    from monai_prichexy.cli import _set_torch_threads

    before = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert _set_torch_threads(2 * cores) == 1
        assert _set_torch_threads(1) == cores
        torch.set_num_threads(1)
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert _set_torch_threads(1) == 1  # the operator's setting is left alone
    finally:
        torch.set_num_threads(before)


def test_dicom_code_imports_no_torch():
    """The DICOM reader and de-identifying writer stay light (header work, the MONAI Label app)."""
    code = "import sys, monai_prichexy.dicom, monai_prichexy.formats; print(sorted({'torch', 'monai'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
