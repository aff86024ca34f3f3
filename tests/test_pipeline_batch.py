"""Walking, naming, refusing dangerous folders, the manifest and resuming (in process)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from monai_prichexy.dicom import DeidConfig, DeidKey
from monai_prichexy.pipeline import Deformer, FileAnonymizer, Manifest, ManifestError, anonymize_tree, check_in_out, walk_files
from monai_prichexy.pipeline.atomic import is_temp_name
from monai_prichexy.pipeline.manifest import read_manifest
from monai_prichexy.pipeline.naming import Pseudonymizer
from tests.test_pipeline_support import output_files, png_array, tiny_weights, tree_digests, write_dicom, write_png

KEY = DeidKey(b"s" * 32)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_weights(tmp_path_factory.mktemp("w") / "g.pt")


def make_anonymizer(weights, key=KEY, mu=None):
    return FileAnonymizer(Deformer(weights, mu=mu), DeidConfig(key=key))


def small_tree(root, n_dicom=3, n_png=2):
    for i in range(n_dicom):
        write_dicom(root / "Doe_John_0042" / f"study{i % 2}" / f"IM{i:04d}", 48, 56, seed=i)
    for i in range(n_png):
        write_png(root / "png" / f"00000042_{i:03d}.png", png_array(40, 44, seed=i))
    return root


def test_walk_is_sorted_skips_hidden_and_detects_loops(tmp_path):
    root = tmp_path / "in"
    (root / "b").mkdir(parents=True)
    (root / "a").mkdir()
    (root / "a" / "x.png").write_bytes(b"x")
    (root / "b" / "y.png").write_bytes(b"y")
    (root / ".DS_Store").write_bytes(b"junk")
    (root / "a" / "loop").symlink_to(root, target_is_directory=True)
    (root / "b" / "again").symlink_to(root / "a", target_is_directory=True)
    (root / "dangling.dcm").symlink_to(tmp_path / "nowhere")
    os.mkfifo(root / "pipe")
    entries = list(walk_files(root))
    files = [e.rel.as_posix() for e in entries if e.kind == "file"]
    assert files == ["a/x.png", "b/y.png"]
    problems = {e.rel.as_posix(): e.reason for e in entries if e.kind == "problem"}
    assert "loop" in problems["a/loop"] and "loop" in problems["b/again"]
    assert problems["dangling.dcm"] == "broken symbolic link"
    assert "not a regular file" in problems["pipe"]
    assert [e.rel.as_posix() for e in entries if e.kind == "ignored"] == [".DS_Store"]


def test_in_out_checks(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    with pytest.raises(ValueError, match="is the input folder"):
        check_in_out(tmp_path / "in", tmp_path / "in")
    with pytest.raises(ValueError, match="inside the input folder"):
        check_in_out(tmp_path / "in", tmp_path / "in" / "sub" / "out")
    (tmp_path / "link").symlink_to(tmp_path / "in" / "sub", target_is_directory=True)
    with pytest.raises(ValueError, match="inside the input folder"):
        check_in_out(tmp_path / "in", tmp_path / "link" / "out")
    with pytest.raises(ValueError, match="inside the output folder"):
        check_in_out(tmp_path / "in" / "sub", tmp_path / "in")
    with pytest.raises(ValueError, match="does not exist"):
        check_in_out(tmp_path / "missing", tmp_path / "out")
    assert check_in_out(tmp_path / "in", tmp_path / "out")[1] == (tmp_path / "out").resolve()


def test_pseudonyms_are_keyed_and_hide_every_name_part():
    p = Pseudonymizer(KEY)
    from pathlib import PurePosixPath

    rel = PurePosixPath("Doe_John_0042/20230517/IM0001")
    out = p.output_relpath(rel, ".dcm")
    assert len(out.parts) == 3 and out.suffix == ".dcm"
    assert not any(s in out.as_posix() for s in ("Doe", "John", "0042", "20230517", "IM0001"))
    assert out == p.output_relpath(rel, ".dcm")  # reproducible
    assert out != Pseudonymizer(DeidKey(b"t" * 32)).output_relpath(rel, ".dcm")  # keyed
    # same folder name under different parents -> different pseudonyms (keyed on the whole path)
    assert p.dir_name(PurePosixPath("a/2023")) != p.dir_name(PurePosixPath("b/2023"))


def test_manifest_drops_a_torn_line_and_locks(tmp_path):
    with Manifest(tmp_path) as manifest:
        manifest.open({"key_fingerprint": "x"})
        manifest.append({"id": "a", "status": "ok", "digest": "d", "output": "a.png"})
        with pytest.raises(ManifestError, match="another"):
            Manifest(tmp_path).open({"key_fingerprint": "x"})
    with open(tmp_path / ".prichexy" / "manifest.jsonl", "ab") as handle:
        handle.write(b'{"id": "b", "sta')  # killed mid-append
    with Manifest(tmp_path) as manifest:
        assert manifest.open({"key_fingerprint": "x"}) is True
        manifest.append({"id": "c", "status": "ok", "digest": "d", "output": "c.png"})
        assert set(manifest.index()) == {"a", "c"}
    with pytest.raises(ManifestError, match="other settings.*same --key-file"):
        Manifest(tmp_path).open({"key_fingerprint": "y"})


def test_batch_mirrors_tree_keeps_inputs_and_resumes(tmp_path, weights):
    src = small_tree(tmp_path / "in")
    before = tree_digests(src)
    out = tmp_path / "out"
    summary = anonymize_tree(src, out, make_anonymizer(weights), progress=False)
    assert (summary.ok, summary.n_failed, summary.exit_code) == (5, 0, 0)
    assert tree_digests(src) == before
    outputs = output_files(out)
    assert len(outputs) == 5
    assert {p.relative_to(out).parts.__len__() for p in outputs} == {3, 2}  # depth mirrored
    first = {p: p.read_bytes() for p in outputs}

    # simulate a kill after two renames but before their manifest lines, plus a stale temp file
    manifest = out / ".prichexy" / "manifest.jsonl"
    lines = manifest.read_bytes().splitlines(keepends=True)
    manifest.write_bytes(b"".join(lines[:3]))
    stale = outputs[0].parent / f".{outputs[0].name}.abc123.tmp"
    stale.write_bytes(b"partial")
    summary = anonymize_tree(src, out, make_anonymizer(weights), progress=False)
    assert summary.resumed and (summary.already_done, summary.ok, summary.stale_temp_removed) == (3, 2, 1)
    assert not stale.exists()
    assert {p: p.read_bytes() for p in output_files(out)} == first  # redone byte-identically
    ok = [r["id"] for r in read_manifest(manifest) if r["status"] == "ok"]
    assert len(ok) == len(set(ok)) == 5

    # a changed input is redone; a third run does nothing
    write_png(src / "png" / "00000042_000.png", png_array(40, 44, seed=99))
    assert anonymize_tree(src, out, make_anonymizer(weights), progress=False).ok == 1
    again = anonymize_tree(src, out, make_anonymizer(weights), progress=False)
    assert (again.ok, again.already_done) == (0, 5)
    assert not any(is_temp_name(p.name) for p in out.rglob("*"))


def test_resume_with_other_settings_is_refused(tmp_path, weights):
    src = small_tree(tmp_path / "in", n_dicom=1, n_png=1)
    anonymize_tree(src, tmp_path / "out", make_anonymizer(weights), progress=False)
    with pytest.raises(ManifestError, match="mu"):
        anonymize_tree(src, tmp_path / "out", make_anonymizer(weights, mu=0.005), progress=False)
    with pytest.raises(ManifestError, match="key_fingerprint"):
        anonymize_tree(src, tmp_path / "out", make_anonymizer(weights, key=DeidKey(b"z" * 32)), progress=False)
    bf16 = FileAnonymizer(Deformer(weights, precision="bf16"), DeidConfig(key=KEY))
    with pytest.raises(ManifestError, match="precision: 'fp32' before, 'bf16' now"):
        anonymize_tree(src, tmp_path / "out", bf16, progress=False)
    assert "generator bf16" in bf16.deid.method_info[1]  # the header says how the pixels were made


def test_bad_files_are_recorded_and_the_batch_goes_on(tmp_path, weights):
    src = small_tree(tmp_path / "in", n_dicom=1, n_png=1)
    (src / "Zorgwald_broken.dcm").write_bytes(b"\x00" * 300)
    write_dicom(src / "Zorgwald_burned.dcm", burned_in="YES")
    (src / "Zorgwald_readme.txt").write_text("not an image")
    summary = anonymize_tree(src, tmp_path / "out", make_anonymizer(weights), workers=2, progress=False)
    assert (summary.ok, summary.n_failed, summary.n_skipped, summary.exit_code) == (2, 2, 1, 1)
    reasons = dict(summary.failed)
    assert "not a DICOM file" in reasons["Zorgwald_broken.dcm"] and "BurnedInAnnotation" in reasons["Zorgwald_burned.dcm"]
    records = list(read_manifest(tmp_path / "out" / ".prichexy" / "manifest.jsonl"))
    text = json.dumps(records)
    assert "Zorgwald" not in text  # no input names
    assert sorted(r["status"] for r in records) == ["failed", "failed", "ok", "ok", "skipped"]


def test_workers_give_identical_outputs(tmp_path, weights):
    src = small_tree(tmp_path / "in", n_dicom=3, n_png=3)
    anonymize_tree(src, tmp_path / "o1", make_anonymizer(weights), workers=1, progress=False)
    anonymize_tree(src, tmp_path / "o2", make_anonymizer(weights), workers=2, progress=False)
    a = {p.relative_to(tmp_path / "o1"): p.read_bytes() for p in output_files(tmp_path / "o1")}
    b = {p.relative_to(tmp_path / "o2"): p.read_bytes() for p in output_files(tmp_path / "o2")}
    assert a == b and len(a) == 6
    assert np.all([len(v) > 0 for v in a.values()])


def test_each_dicom_input_is_read_once_and_its_output_hash_is_the_written_files(tmp_path, weights, monkeypatch):
    """Issue 12: one read of each DICOM input (hashed and parsed from memory); the output's
    SHA-256 in the manifest comes from the writer's verifying read-back and is the file's."""
    import builtins
    import hashlib

    src = small_tree(tmp_path / "in", n_dicom=3, n_png=1)
    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.fspath(file).startswith(os.fspath(src)):
            opened.append(os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    summary = anonymize_tree(src, tmp_path / "out", make_anonymizer(weights), progress=False)
    monkeypatch.undo()
    assert summary.ok == 4
    dicom_inputs = [p for p in opened if not p.endswith(".png")]
    assert len(dicom_inputs) == 3 and len(set(dicom_inputs)) == 3, opened
    for record in read_manifest(tmp_path / "out" / ".prichexy" / "manifest.jsonl"):
        written = (tmp_path / "out" / record["output"]).read_bytes()
        assert record["output_sha256"] == hashlib.sha256(written).hexdigest()
