"""First run: an argument error is reported before torch or MONAI is imported (issue 14).

One subprocess runs the CLI's ``main`` on each bad command line in turn and records, after
each, whether ``torch`` / ``monai`` were imported; no timing is asserted (the machine's load
would make it flaky), only the imports that make a first run slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_PROBE = r"""
import contextlib, io, json, sys
from monai_prichexy.cli import main

results = {}
for name, argv in json.loads(sys.argv[1]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exit:
            status = exit.code
    results[name] = {"status": status, "stderr": err.getvalue(), "heavy": sorted(m for m in ("torch", "monai") if m in sys.modules)}
print(json.dumps(results))
"""


def test_argument_errors_exit_2_without_importing_torch_or_monai(tmp_path):
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    (in_dir / "a.png").write_bytes(b"not read")
    out = str(tmp_path / "out")
    cases = {
        "missing input folder": ["anonymize", str(tmp_path / "nonexistent"), out],
        "input is a file": ["anonymize", str(in_dir / "a.png"), out],
        "OUT inside IN": ["anonymize", str(in_dir), str(in_dir / "out")],
        "OUT is IN": ["anonymize", str(in_dir), str(in_dir)],
        "unknown option": ["anonymize", str(in_dir), out, "--no-such-option"],
        "unknown command": ["anonymise", str(in_dir), out],
        "workers 0": ["anonymize", str(in_dir), out, "--workers", "0"],
        "workers not a number": ["anonymize", str(in_dir), out, "--workers", "two"],
        "dask local 0": ["anonymize", str(in_dir), out, "--dask-local", "0"],
        "dask scheduler and local": ["anonymize", str(in_dir), out, "--dask-local", "2", "--dask-scheduler", "tcp://h:8786"],
        "dask on cuda": ["anonymize", str(in_dir), out, "--dask-local", "2", "--device", "cuda"],
        "jpeg quality 0": ["anonymize", str(in_dir), out, "--jpeg-quality", "0"],
        "mu > 1": ["anonymize", str(in_dir), out, "--mu", "2"],
        "mu nan": ["anonymize", str(in_dir), out, "--mu", "nan"],
        "working size 20": ["anonymize", str(in_dir), out, "--working-size", "20"],
        "threshold 1.5": ["report", str(in_dir), out, "--verifier", "v.pt", "--classifier", "c.pt", "--out",
                          str(tmp_path / "r"), "--threshold", "1.5"],
        "demo workers 0": ["demo", str(tmp_path / "demo"), "--workers", "0"],
        "benchmark unknown option": ["benchmark", "--dataset-dir", str(in_dir), "--no-such-option"],
    }
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(cases)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    problems = [f"{name}: {r}" for name, r in results.items() if r["status"] != 2 or r["heavy"] or "error" not in r["stderr"]]
    assert not problems, "\n".join(problems)
    assert "does not exist" in results["missing input folder"]["stderr"]
    assert "inside the input folder" in results["OUT inside IN"]["stderr"]
    assert "--workers must be >= 1" in results["workers 0"]["stderr"]
    assert "--mu must be in [0, 1]" in results["mu nan"]["stderr"]
    assert "--dask-local must be >= 1" in results["dask local 0"]["stderr"]
    assert "not allowed with argument" in results["dask scheduler and local"]["stderr"]
    assert "workers run the generator on their CPUs" in results["dask on cuda"]["stderr"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "demo").exists()


def test_the_probe_would_see_torch(tmp_path):
    """Guard: a command line that gets as far as loading weights does import torch, so the test
    above would fail if validation came after it."""
    from monai_prichexy.dicom import create_key

    in_dir = tmp_path / "in"
    in_dir.mkdir()
    create_key(tmp_path / "k.key")  # a key exists: the run gets as far as the weights
    argv = {"bad weights": ["anonymize", str(in_dir), str(tmp_path / "out"), "--weights", str(tmp_path / "none.pt"),
                            "--key-file", str(tmp_path / "k.key")]}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)["bad weights"]
    assert result["status"] == 2 and "torch" in result["heavy"], result


def test_dask_options_without_the_extra_say_how_to_install_it(tmp_path, monkeypatch, capsys):
    """``--dask-local`` / ``--dask-scheduler`` where ``distributed`` is not installed (simulated, so that
    this runs in the main suite whether or not the extra is there): exit 2 naming the extra, before
    a key is created or OUT is touched."""
    import pytest

    from monai_prichexy.cli import main
    from monai_prichexy.pipeline.distributed import INSTALL_HINT, MissingExtraError, import_distributed

    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'monai-prichexy\[dask\]'"):
        import_distributed()
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    (in_dir / "a.png").write_bytes(b"not read")
    for option in (["--dask-local", "2"], ["--dask-scheduler", "tcp://127.0.0.1:8786"]):
        status = main(["anonymize", str(in_dir), str(tmp_path / "out"), "--new-key", "--key-file", str(tmp_path / "k.key"),
                       *option])
        err = capsys.readouterr().err
        assert status == 2 and f"monai-prichexy: error: running on a Dask cluster needs `distributed`: {INSTALL_HINT}" in err
    assert not (tmp_path / "k.key").exists() and not (tmp_path / "out").exists()
