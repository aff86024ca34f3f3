"""Faults (issue #6, item 3): SIGKILL at random points and a full disk.

* ``test_sigkill_20_times_then_resume``: the batch CLI (``monai_prichexy.cli.main`` in a
  process forked from a pre-imported "zygote", so that 20 runs fit in the time budget) is
  killed with SIGKILL 20 times at seeded random delays sampled from a measured uninterrupted
  run, resumed after each kill. After every kill: every file at a final output name is
  byte-identical to the uninterrupted run's (nothing half-written is ever visible), every
  manifest line that says ``ok`` points at such a file. At the end: every input has exactly
  one output (identical to the reference) or one recorded error, exactly one ``ok`` line per
  good input, no temp files, no stray outputs, inputs unchanged.
* disk full: ``OSError(ENOSPC)`` injected into the DICOM writer, the atomic writer of the other
  formats and the manifest at library level, plus one CLI run in which every output write
  fails: clear error, no truncated file at a final name, no success claimed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from monai_prichexy.dicom import create_key
from tests.dicom_fixtures import make_radiograph_dataset, save
from tests.reliability_corpus import (
    ACCEPTED_KINDS,
    BAD_KINDS,
    STATE_DIR,
    anonymize_one,
    digest_tree,
    file_anonymizer,
    output_files,
    png_bytes,
    temp_files,
    tiny_checkpoint,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
N_KILLS = 20
SEED = 20230517

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------- zygote

ZYGOTE = r'''
import json, os, signal, sys, time
os.environ["OMP_NUM_THREADS"] = "1"
import torch
torch.set_num_threads(1)
import monai_prichexy.cli as cli
import monai_prichexy.pipeline.batch, monai_prichexy.pipeline.anonymizer, monai_prichexy.formats
import monai_prichexy.dicom, monai_prichexy.transforms
from monai_prichexy.dicom.profile import PROFILE_TABLE, load_table
import tqdm.auto, nibabel, PIL.Image, PIL.PngImagePlugin, PIL.TiffImagePlugin, PIL.JpegImagePlugin
load_table(PROFILE_TABLE)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.dup2(log, 1); os.dup2(log, 2)
        try:
            code = cli.main(req["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback; traceback.print_exc(); code = 99
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(int(code or 0))
    os.close(log)
    deadline = start + req["kill_after"] if req.get("kill_after") is not None else None
    killed = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if deadline is not None and time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            killed = True
            break
        time.sleep(0.002)
    code = os.waitstatus_to_exitcode(status)
    print(json.dumps({"killed": killed, "code": code, "elapsed": time.monotonic() - start}), flush=True)
'''


class Zygote:
    def __init__(self, tmp: Path) -> None:
        script = tmp / "zygote.py"
        script.write_text(ZYGOTE)
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO_ROOT, env=env, text=True
        )
        assert json.loads(self.proc.stdout.readline()).get("ready"), "zygote failed to start"

    def run(self, argv, log: Path, kill_after: float | None = None) -> dict:
        self.proc.stdin.write(json.dumps({"argv": [str(a) for a in argv], "log": str(log), "kill_after": kill_after}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "zygote died"
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _build_inputs(root: Path) -> tuple[list[Path], list[Path]]:
    good, bad = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(8):
            ds = make_radiograph_dataset(32 + 4 * (i % 3), 40, bits_stored=12 if i % 2 else 8, seed=i,
                                         photometric="MONOCHROME1" if i % 4 == 3 else "MONOCHROME2")
            good.append(save(ds, root / f"patient{i % 3}" / f"IM{i:04d}.dcm"))
        for i in range(4):
            path = root / "png" / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(i)
            path.write_bytes(png_bytes((rng.random((36, 44)) * (255 if i % 2 else 4095)).astype(np.uint8 if i % 2 else np.uint16)))
            good.append(path)
        for name in ("nifti_int16", "tiff_float_finite"):
            kind = next(k for k in ACCEPTED_KINDS if k.name == name)
            good.append(kind.build(root / "other" / kind.filename))
    for name in ("dcm_rgb", "png_truncated", "dcm_text_named_dcm"):
        kind = next(k for k in BAD_KINDS if k.name == name)
        bad.append(kind.build(root / "bad" / kind.filename))
    return good, bad


def _manifest_lines(out: Path) -> list[dict]:
    path = out / STATE_DIR / "manifest.jsonl"
    if not path.exists():
        return []
    records = []
    for raw in path.read_bytes().splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break  # a torn last line: allowed after a kill, dropped on resume
        records.append(json.loads(raw))
    return records


def _check_consistent(out: Path, reference: dict[str, str], final: bool) -> None:
    """What must hold at any moment, even right after a SIGKILL."""
    for path in output_files(out):
        rel = path.relative_to(out).as_posix()
        if not final and path.name.startswith(".") and path.name.endswith(".tmp"):
            continue  # a temp file of the killed run: removed by the next one
        assert rel in reference, f"unexpected output {rel}"
        assert _sha(path) == reference[rel], f"{rel} differs from the uninterrupted run (partial or corrupt)"
    for record in _manifest_lines(out):
        if record["status"] == "ok":
            path = out / record["output"]
            assert path.is_file(), f"manifest claims {record['output']} which does not exist"
            assert _sha(path) == record["output_sha256"] == reference[record["output"]]
    if final:
        assert temp_files(out) == []


@pytest.mark.timeout(240)
def test_sigkill_20_times_then_resume(tmp_path):
    from monai_prichexy.dicom import load_key
    from monai_prichexy.pipeline import Pseudonymizer
    from monai_prichexy.pipeline.walk import PurePosixPath

    in_dir = tmp_path / "in"
    good, bad = _build_inputs(in_dir)
    before = digest_tree(in_dir)
    weights = tiny_checkpoint(tmp_path / "w.pt")
    key = tmp_path / "k.key"
    create_key(key)  # anonymize never makes a key unasked
    common = ["--weights", weights, "--key-file", key, "--working-size", "32", "--no-progress", "--device", "cpu",
              "--workers", "2"]
    zygote = Zygote(tmp_path)
    try:
        ref_out = tmp_path / "reference"
        first = zygote.run(["anonymize", in_dir, ref_out, *common], tmp_path / "ref.log")
        assert first["code"] == 1, (tmp_path / "ref.log").read_text()  # the bad files
        reference = {p.relative_to(ref_out).as_posix(): _sha(p) for p in output_files(ref_out)}
        assert len(reference) == len(good)
        duration = first["elapsed"]

        rng = np.random.default_rng(SEED)
        out = tmp_path / "out"
        kills = episodes = runs = 0
        while kills < N_KILLS:
            runs += 1
            assert runs < 6 * N_KILLS, "runs keep finishing before the kill; timing is off"
            delay = float(rng.uniform(0.02, 1.0) * duration)
            result = zygote.run(["anonymize", in_dir, out, *common], tmp_path / f"run{runs}.log", kill_after=delay)
            if result["killed"]:
                kills += 1
                _check_consistent(out, reference, final=False)
                continue
            # the run finished before its kill: it must be a complete, consistent batch
            assert result["code"] == 1, (tmp_path / f"run{runs}.log").read_text()
            _check_consistent(out, reference, final=True)
            assert {p.relative_to(out).as_posix() for p in output_files(out)} == set(reference)
            episodes += 1
            import shutil

            shutil.rmtree(out)  # start a new episode so that later kills land in real work
        final = zygote.run(["anonymize", in_dir, out, *common], tmp_path / "final.log")
    finally:
        zygote.close()

    log = (tmp_path / "final.log").read_text()
    assert final["code"] == 1 and not final["killed"], log
    _check_consistent(out, reference, final=True)
    assert {p.relative_to(out).as_posix() for p in output_files(out)} == set(reference), "missing or duplicate outputs"
    assert digest_tree(in_dir) == before

    pseudo = Pseudonymizer(load_key(key))
    lines = _manifest_lines(out)
    latest = {}
    for record in lines:
        latest[record["id"]] = record
    for path in good:
        fid = pseudo.file_id(PurePosixPath(path.relative_to(in_dir).as_posix()))
        oks = [r for r in lines if r["id"] == fid and r["status"] == "ok"]
        assert len(oks) == 1, f"{path.name}: {len(oks)} ok lines"
        assert latest[fid]["status"] == "ok"
    for path in bad:
        fid = pseudo.file_id(PurePosixPath(path.relative_to(in_dir).as_posix()))
        assert latest[fid]["status"] in ("failed", "skipped") and latest[fid]["reason"], latest[fid]
        assert not any(r["id"] == fid and r["status"] == "ok" for r in lines)
    assert set(latest) == {pseudo.file_id(PurePosixPath(p.relative_to(in_dir).as_posix())) for p in good + bad}
    print(f"{kills} kills in {episodes + 1} episodes, {runs} runs; reference run {duration:.2f} s")


@pytest.mark.timeout(120)
def test_real_cli_process_sigkilled_mid_batch_then_resumed(tmp_path):
    """The real entry point (``python -m monai_prichexy.cli``) killed once mid-batch."""
    in_dir = tmp_path / "in"
    good, bad = _build_inputs(in_dir)
    weights = tiny_checkpoint(tmp_path / "w.pt")
    out = tmp_path / "out"
    create_key(tmp_path / "k.key")
    cmd = [sys.executable, "-m", "monai_prichexy.cli", "anonymize", in_dir, out, "--weights", weights,
           "--key-file", tmp_path / "k.key", "--working-size", "32", "--no-progress", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([str(c) for c in cmd], env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None and len(_manifest_lines(out)) < 3:
            time.sleep(0.005)
        assert proc.poll() is None, "the batch finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    done = len(_manifest_lines(out))
    assert 3 <= done < len(good) + len(bad)
    final = subprocess.run([str(c) for c in cmd], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=100)
    assert final.returncode == 1, final.stderr
    assert temp_files(out) == []
    records = _manifest_lines(out)
    oks = [r["id"] for r in records if r["status"] == "ok"]
    assert len(oks) == len(set(oks)) == len(good)
    assert {r["output"] for r in records if r["status"] == "ok"} == {p.relative_to(out).as_posix() for p in output_files(out)}


# ------------------------------------------------------------------------- disk full


class _FullDisk:
    """A file object that accepts ``budget`` bytes, then raises ENOSPC (and whose fsync fails)."""

    def __init__(self, handle, budget: int) -> None:
        self._handle = handle
        self._budget = budget

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self._budget:
            self._handle.write(data[: self._budget])
            self._handle.flush()
            self._budget = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._budget -= len(data)
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def _fill_disk(monkeypatch, budget: int = 200, only_outputs_of: Path | None = None) -> None:
    real_fdopen = os.fdopen

    def fdopen(fd, *args, **kwargs):
        handle = real_fdopen(fd, *args, **kwargs)
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if only_outputs_of is not None and (STATE_DIR in Path(target).parts or not target.startswith(str(only_outputs_of))):
            return handle
        return _FullDisk(handle, budget)

    monkeypatch.setattr(os, "fdopen", fdopen)


def _no_truncated_file(out: Path) -> None:
    assert output_files(out) == [], [p.name for p in output_files(out)]
    assert temp_files(out) == []


@pytest.mark.parametrize("budget", [0, 150, 2000])
def test_disk_full_while_writing_dicom(tmp_path, monkeypatch, budget):
    from monai_prichexy.dicom import DicomWriteError

    src = save(make_radiograph_dataset(32, 40), tmp_path / "in" / "a.dcm")
    before = digest_tree(tmp_path / "in")
    anonymizer = file_anonymizer()
    _fill_disk(monkeypatch, budget)
    with pytest.raises(DicomWriteError, match="No space left on device"):
        anonymize_one(anonymizer, src, tmp_path / "out")
    _no_truncated_file(tmp_path / "out")
    assert digest_tree(tmp_path / "in") == before


def test_disk_full_keeps_the_previous_complete_output(tmp_path, monkeypatch):
    """A rerun that hits a full disk must not replace the good output by a truncated one."""
    from monai_prichexy.dicom import DicomWriteError

    src = save(make_radiograph_dataset(32, 40), tmp_path / "in" / "a.dcm")
    anonymizer = file_anonymizer()
    dst = anonymize_one(anonymizer, src, tmp_path / "out")
    good = _sha(dst)
    _fill_disk(monkeypatch, 300)
    with pytest.raises(DicomWriteError, match="No space left on device"):
        anonymize_one(anonymizer, src, tmp_path / "out")
    assert _sha(dst) == good
    assert temp_files(tmp_path) == []


def test_disk_full_in_fsync(tmp_path, monkeypatch):
    from monai_prichexy.dicom import DicomWriteError

    src = save(make_radiograph_dataset(32, 40), tmp_path / "in" / "a.dcm")
    png = tmp_path / "in" / "b.png"
    png.write_bytes(png_bytes((np.random.default_rng(0).random((30, 30)) * 255).astype(np.uint8)))
    anonymizer = file_anonymizer()

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(DicomWriteError, match="No space left on device"):
        anonymize_one(anonymizer, src, tmp_path / "out")
    with pytest.raises(OSError, match="No space left on device"):
        anonymize_one(anonymizer, png, tmp_path / "out")
    _no_truncated_file(tmp_path / "out")


@pytest.mark.parametrize("suffix", ["png", "tif", "nii"])
def test_disk_full_while_writing_other_formats(tmp_path, monkeypatch, suffix):
    name = {"png": "png_16bit", "tif": "tiff_float_finite", "nii": "nifti_int16"}[suffix]
    kind = next(k for k in ACCEPTED_KINDS if k.name == name)
    src = kind.build(tmp_path / "in" / kind.filename)
    anonymizer = file_anonymizer()
    _fill_disk(monkeypatch, 100)
    with pytest.raises(OSError, match="No space left on device"):
        anonymize_one(anonymizer, src, tmp_path / "out")
    _no_truncated_file(tmp_path / "out")


def test_disk_full_in_the_manifest_drops_the_torn_line(tmp_path, monkeypatch):
    from monai_prichexy.pipeline import Manifest
    from monai_prichexy.pipeline.manifest import read_manifest

    out = tmp_path / "out"
    with Manifest(out) as manifest:
        manifest.open({"key_fingerprint": "x"})
        manifest.append({"id": "a", "status": "ok", "output": "a.dcm"})
        real_write = os.write
        calls = {"n": 0}

        def write(fd, data):
            calls["n"] += 1
            if calls["n"] == 1:
                return real_write(fd, bytes(data)[:10])  # a short write, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "write", write)
        with pytest.raises(OSError, match="No space left on device"):
            manifest.append({"id": "b", "status": "ok", "output": "b.dcm"})
        monkeypatch.undo()
    assert [r["id"] for r in read_manifest(out / STATE_DIR / "manifest.jsonl")] == ["a"]
    with Manifest(out) as manifest:  # reopening repairs the tail; the next line is whole
        assert manifest.open({"key_fingerprint": "x"}) is True
        manifest.append({"id": "c", "status": "ok", "output": "c.dcm"})
        assert set(manifest.index()) == {"a", "c"}


@pytest.mark.timeout(180)
def test_cli_disk_full_every_output_fails_cleanly(tmp_path, monkeypatch, capsys):
    from monai_prichexy import cli

    in_dir, out = tmp_path / "in", tmp_path / "out"
    good, bad = _build_inputs(in_dir)
    before = digest_tree(in_dir)
    weights = tiny_checkpoint(tmp_path / "w.pt")
    create_key(tmp_path / "k.key")
    _fill_disk(monkeypatch, 120, only_outputs_of=out)
    code = cli.main(["anonymize", str(in_dir), str(out), "--weights", str(weights), "--key-file", str(tmp_path / "k.key"),
                     "--working-size", "32", "--no-progress", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "No space left on device" in err
    _no_truncated_file(out)
    records = _manifest_lines(out)
    assert records and not [r for r in records if r["status"] == "ok"], "the manifest claims success"
    failed = [r for r in records if r["status"] == "failed"]
    assert sum("No space left on device" in r["reason"] for r in failed) == len(good)
    summary = json.loads((out / STATE_DIR / "summary.json").read_text())
    assert summary["ok"] == 0 and summary["failed"] >= len(good)
    assert digest_tree(in_dir) == before


@pytest.mark.timeout(180)
def test_cli_disk_full_everywhere_gives_a_clear_error(tmp_path):
    """Outputs and the manifest both hit ENOSPC (the real CLI process): non-zero exit, a clear
    message (no Python traceback), no output, no success claimed."""
    in_dir, out = tmp_path / "in", tmp_path / "out"
    good, _ = _build_inputs(in_dir)
    weights = tiny_checkpoint(tmp_path / "w.pt")
    runner = tmp_path / "full_disk.py"
    runner.write_text(
        "import errno, os, sys\n"
        "from monai_prichexy import cli\n"
        "from monai_prichexy.pipeline import manifest\n"
        "real_write = os.write\n"
        "def full(*a, **k):\n"
        "    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
        "manifest.Manifest.append = lambda self, record: full()\n"
        "real_fdopen = os.fdopen\n"
        "def fdopen(fd, *a, **k):\n"
        "    target = os.readlink(f'/proc/self/fd/{fd}')\n"
        "    if '.prichexy' in target:\n"
        "        return real_fdopen(fd, *a, **k)\n"
        "    os.close(fd)\n"
        "    full()\n"
        "os.fdopen = fdopen\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    create_key(tmp_path / "k.key")
    result = subprocess.run(
        [sys.executable, str(runner), "anonymize", str(in_dir), str(out), "--weights", str(weights),
         "--key-file", str(tmp_path / "k.key"), "--working-size", "32", "--no-progress", "--device", "cpu"],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=170,
    )
    assert result.returncode != 0
    assert "No space left on device" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    _no_truncated_file(out)
    assert not [r for r in _manifest_lines(out) if r["status"] == "ok"]
