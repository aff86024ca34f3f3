"""Bad-input corpus (issue #6, item 1): every kind is refused clearly, nothing is half-written,
no input is touched, and the batch goes on with the good files.

Library level: one test per kind (``test_bad_input_refused[<kind>]``) -- the error names the
file and says why (regex per kind), the output folder stays empty, the SHA-256 of every input
is unchanged, and declared-huge images are refused without allocating them. Accepted oddities
(``test_odd_but_valid_input_accepted[<kind>]``) produce one valid output.

CLI level: all file kinds in one batch with good files: the good files are anonymized, each
bad file gets a manifest record and/or a line on stderr naming it with the reason, exit 1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from tests.reliability_corpus import (
    ACCEPTED_KINDS,
    BAD_KINDS,
    IS_ROOT,
    STATE_DIR,
    anonymize_one,
    digest_tree,
    file_anonymizer,
    memory_cap,
    output_files,
    temp_files,
    tiny_checkpoint,
    tiny_network,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
BIG_ALLOWANCE = 256 * 2**20  # bytes a refusal of a declared 40000 x 40000 image may allocate


@pytest.fixture(scope="module")
def anonymizer():
    return file_anonymizer()


def _match(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None


def _run_library(kind, anonymizer, src: Path, in_dir: Path, out_dir: Path) -> str:
    """Exercise the library for ``kind``; returns the error text (fails when nothing is raised)."""
    from monai_prichexy.dicom import read_radiograph
    from monai_prichexy.pipeline import check_in_out, walk_files
    from monai_prichexy.transforms import DeformAnonymize

    if kind.call == "array":
        with pytest.raises(ValueError) as info:
            DeformAnonymize(tiny_network())(kind.array())
        return str(info.value)
    if kind.call == "inout":
        target = {
            "output_inside_input": (in_dir, in_dir / "anonymized"),
            "output_is_input": (in_dir, in_dir),
            "input_inside_output": (in_dir, in_dir.parent),
        }[kind.name]
        with pytest.raises(ValueError) as info:
            check_in_out(*target)
        return str(info.value)
    if kind.call == "walk":
        entries = [e for e in walk_files(in_dir) if e.path == src or e.path == src.parent / src.name]
        assert entries, f"the walker did not report {src}"
        assert all(e.kind == "problem" for e in entries), entries
        assert _match(kind.walk_reason, entries[0].reason), entries[0].reason
        if kind.name == "directory_loop":
            return entries[0].reason
    if kind.call in ("walk", "reader"):
        with pytest.raises(ValueError) as info:
            read_radiograph(src)
        return str(info.value)
    with pytest.raises(Exception) as info:
        anonymize_one(anonymizer, src, out_dir, fmt=kind.fmt)
    assert isinstance(info.value, ValueError), f"{type(info.value).__name__}: {info.value}"
    return str(info.value)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", BAD_KINDS, ids=[k.name for k in BAD_KINDS])
def test_bad_input_refused(kind, anonymizer, tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    out_dir.mkdir()
    (in_dir / "neighbour.txt").write_text("a file beside the bad one\n")
    src = kind.build(in_dir / kind.filename) if kind.filename else in_dir
    before = digest_tree(in_dir)

    if kind.big:
        tracemalloc.start()
        with memory_cap():
            try:
                message = _run_library(kind, anonymizer, src, in_dir, out_dir)
            finally:
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
        assert "MemoryError" not in message, f"{kind.name}: tried to allocate the declared size: {message}"
    else:
        message = _run_library(kind, anonymizer, src, in_dir, out_dir)
    assert _match(kind.reason, message), f"{kind.name}: reason {message!r} does not match {kind.reason!r}"
    if kind.call in ("file", "reader"):
        assert str(src) in message or src.name in message, f"{kind.name}: the error does not name the file: {message!r}"
    if kind.big:
        assert peak < BIG_ALLOWANCE, f"{kind.name}: {peak / 2**20:.0f} MiB allocated to refuse a declared 40000x40000 image"
    assert output_files(out_dir) == [], "partial output left behind"
    assert temp_files(tmp_path) == []
    assert digest_tree(in_dir) == before, "the input was modified"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ACCEPTED_KINDS, ids=[k.name for k in ACCEPTED_KINDS])
def test_odd_but_valid_input_accepted(kind, anonymizer, tmp_path):
    from monai_prichexy.dicom import read_radiograph
    from monai_prichexy.pipeline import read_image

    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    src = kind.build(in_dir / kind.filename)
    before = digest_tree(in_dir)
    dst = anonymize_one(anonymizer, src, out_dir)
    assert output_files(out_dir) == [dst]
    assert temp_files(tmp_path) == []
    assert digest_tree(in_dir) == before
    if dst.suffix == ".dcm":
        original, result = read_radiograph(src), read_radiograph(dst)
        assert result.shape == original.shape and result.stored.dtype == original.stored.dtype
        assert result.photometric == original.photometric
        assert np.isfinite(result.view).all() and 0.0 <= result.view.min() <= result.view.max() <= 1.0
        assert str(result.dataset.PatientIdentityRemoved) == "YES"
    else:
        original, result = read_image(src), read_image(dst)
        assert result.array.shape == original.array.shape and result.array.dtype == original.array.dtype
        if np.issubdtype(original.array.dtype, np.floating):
            assert np.isfinite(result.array).all()
        assert result.array.min() >= original.array.min() and result.array.max() <= original.array.max()


def test_corpus_is_large_enough():
    assert len({k.name for k in BAD_KINDS}) == len(BAD_KINDS) >= 30
    if not IS_ROOT:
        assert any(k.name == "unreadable_file" and k.call == "reader" for k in BAD_KINDS)


# ------------------------------------------------------------------------ CLI batch


CLI_ADDRESS_SPACE = 3 * 2**30  # a declared-huge image must not be allocated: cap the CLI's memory


def _limit_memory():  # pragma: no cover - runs in the child
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (CLI_ADDRESS_SPACE, resource.RLIM_INFINITY))


def _cli(args, cwd=None, timeout=240):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "monai_prichexy.cli", *map(str, args)],
        cwd=cwd or REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_limit_memory if sys.platform.startswith("linux") else None,
    )


def _latest_records(out_dir: Path) -> dict[str, dict]:
    records: dict[str, dict] = {}
    manifest = out_dir / STATE_DIR / "manifest.jsonl"
    for line in manifest.read_text().splitlines():
        record = json.loads(line)
        records[record["id"]] = record
    return records


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("weights") / "generator.pt")


@pytest.mark.timeout(300)
def test_cli_batch_goes_on_past_every_bad_file(tmp_path, weights):
    pytest.importorskip("monai_prichexy.cli")
    from monai_prichexy.dicom import load_key, read_radiograph
    from monai_prichexy.pipeline import Pseudonymizer, read_image
    from monai_prichexy.pipeline.walk import PurePosixPath

    in_dir, out_dir, key_file = tmp_path / "in", tmp_path / "out", tmp_path / "batch.key"
    bad = {}
    for kind in BAD_KINDS:
        if kind.cli in ("none", "cli_error") or not kind.filename:
            continue
        path = kind.build(in_dir / "bad" / kind.name / kind.filename)
        bad[kind.name] = (kind, path)
    good = {}
    for kind in ACCEPTED_KINDS:
        good[kind.name] = kind.build(in_dir / "good" / kind.name / kind.filename)
    before = digest_tree(in_dir)

    result = _cli(["anonymize", in_dir, out_dir, "--weights", weights, "--key-file", key_file, "--new-key",
                   "--working-size", "32", "--workers", "2", "--no-progress", "--device", "cpu"])
    stderr = result.stderr
    assert result.returncode == 1, stderr
    assert digest_tree(in_dir) == before, "an input was modified"
    assert temp_files(out_dir) == []

    pseudo = Pseudonymizer(load_key(key_file))
    records = _latest_records(out_dir)
    problems = []
    for name, src in good.items():
        rel = PurePosixPath(src.relative_to(in_dir).as_posix())
        record = records.get(pseudo.file_id(rel))
        if record is None or record["status"] != "ok":
            problems.append(f"{name}: good file not anonymized: {record}")
            continue
        dst = out_dir / record["output"]
        if dst.suffix == ".dcm":
            ok = read_radiograph(dst).shape == read_radiograph(src).shape
        else:
            ok = read_image(dst).array.shape == read_image(src).array.shape
        if not ok:
            problems.append(f"{name}: output has another shape")
    for name, (kind, src) in bad.items():
        rel = src.relative_to(in_dir).as_posix()
        # the operator's listing names the file by its pseudonym (never its name) and gives the reason
        fid = pseudo.file_id(PurePosixPath(rel))
        lines = [line for line in stderr.splitlines() if line.strip().startswith(fid + ":")]
        if not lines:
            related = [line for line in stderr.splitlines() if kind.filename in line or name in line]
            problems.append(f"{name}: {rel} ({fid}) is not listed on stderr (related lines: {related})")
            continue
        if rel in stderr:
            problems.append(f"{name}: its path {rel} is on stderr")
        if not _match(kind.expected_cli_reason, lines[0]):
            problems.append(f"{name}: {lines[0].strip()!r} !~ {kind.expected_cli_reason!r}")
        if "MemoryError" in lines[0]:
            problems.append(f"{name}: tried to allocate the declared size: {lines[0].strip()!r}")
        record = records.get(pseudo.file_id(PurePosixPath(rel)))
        if kind.cli == "problem":
            if record is not None and record["status"] == "ok":
                problems.append(f"{name}: recorded as ok")
            continue
        if record is None or record["status"] != kind.cli:
            problems.append(f"{name}: manifest record {record}, expected status {kind.cli}")
        elif not _match(kind.expected_cli_reason, record["reason"]) or record.get("output"):
            problems.append(f"{name}: manifest record {record}")
    written = {p.relative_to(out_dir).as_posix() for p in output_files(out_dir)}
    claimed = {r["output"] for r in records.values() if r["status"] == "ok"}
    if written != claimed:
        problems.append(f"outputs without a record or records without an output: {written ^ claimed}")
    assert not problems, "\n".join(problems) + "\n--- stderr ---\n" + stderr[-6000:]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("where", ["inside", "same"])
def test_cli_refuses_output_inside_input(tmp_path, weights, where):
    pytest.importorskip("monai_prichexy.cli")
    in_dir = tmp_path / "in"
    ACCEPTED_KINDS[0].build(in_dir / "a.dcm")
    before = digest_tree(in_dir)
    out_dir = in_dir / "anonymized" if where == "inside" else in_dir
    result = _cli(["anonymize", in_dir, out_dir, "--weights", weights, "--key-file", tmp_path / "k.key", "--no-progress"])
    assert result.returncode == 2
    assert re.search(r"inside the input folder|is the input folder", result.stderr), result.stderr
    assert digest_tree(in_dir) == before, "something was written into the input folder"
