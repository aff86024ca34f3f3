"""``monai-prichexy anonymize``: what it accepts (scope), keys only when asked, OUT hygiene (issue 14)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path, PurePosixPath

import pydicom
import pytest

from monai_prichexy.cli import main
from monai_prichexy.dicom import load_key
from monai_prichexy.pipeline.manifest import read_manifest
from tests.dicom_fixtures import as_radiograph, make_radiograph_dataset, save
from tests.reliability_corpus import pydicom_file
from tests.test_pipeline_support import output_files, png_array, tiny_weights, write_png

SC = "1.2.840.10008.5.1.4.1.1.7"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_weights(tmp_path_factory.mktemp("w") / "g.pt")


def run_cli(*args) -> int:
    return main([str(a) for a in args])


def small_input(root: Path) -> Path:
    write_png(root / "a.png", png_array(32, 40))
    save(make_radiograph_dataset(32, 40, 12, phi=False), root / "sub" / "b.dcm")
    return root


def state_files(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if ".prichexy" in p.relative_to(out).parts)


# ------------------------------------------------------------------------------ scope


def test_ct_mr_and_secondary_capture_refused_and_recorded(tmp_path, weights, capsys):
    src = tmp_path / "in"
    ct, mr = pydicom_file("CT_small.dcm"), pydicom_file("MR_small.dcm")
    if ct is None or mr is None:  # pragma: no cover - pydicom bundles them
        pytest.skip("pydicom test files not available")
    (src / "ct").mkdir(parents=True)
    (src / "ct" / "ct.dcm").write_bytes(ct.read_bytes())
    (src / "mr.dcm").write_bytes(mr.read_bytes())
    as_radiograph(ct, src / "ct_as_dx.dcm")  # the same file rewritten as DX is accepted
    sc = make_radiograph_dataset(32, 40, 12, phi=False, modality="DX")
    sc.Modality, sc.SOPClassUID = "OT", SC
    sc.file_meta.MediaStorageSOPClassUID = SC
    save(sc, src / "sc.dcm")

    status = run_cli("anonymize", src, tmp_path / "out", "--weights", weights, "--new-key", "--no-progress")
    err = capsys.readouterr().err
    assert status == 1, err
    assert "FAILED (3):" in err and "1 written" in err
    from monai_prichexy.dicom import DeidKey
    from monai_prichexy.pipeline import Pseudonymizer

    fid = Pseudonymizer(DeidKey.from_file(tmp_path / "out.prichexy-key")).file_id  # the console names files by id
    assert f"{fid(PurePosixPath('ct/ct.dcm'))}: modality CT is not a projection radiograph (accepted: CR, DX, DR)" in err
    assert f"{fid(PurePosixPath('mr.dcm'))}: modality MR is not a projection radiograph (accepted: CR, DX, DR)" in err
    assert f"{fid(PurePosixPath('sc.dcm'))}: Secondary Capture Image Storage (SOP class {SC}) is refused unless " \
           "Secondary Capture is explicitly allowed (--allow-secondary-capture)" in err
    assert "ct.dcm" not in err and "mr.dcm" not in err
    records = list(read_manifest(tmp_path / "out" / ".prichexy" / "manifest.jsonl"))
    failed = sorted(r["reason"] for r in records if r["status"] == "failed")
    assert failed == [  # the reason, without the input's name (the manifest is published)
        f"Secondary Capture Image Storage (SOP class {SC}) is refused unless Secondary Capture is explicitly allowed "
        "(--allow-secondary-capture)",
        "modality CT is not a projection radiograph (accepted: CR, DX, DR)",
        "modality MR is not a projection radiograph (accepted: CR, DX, DR)",
    ]
    assert len(output_files(tmp_path / "out")) == 1

    # with the flag the Secondary Capture is anonymized too (CT / MR still refused)
    status = run_cli("anonymize", src, tmp_path / "out2", "--weights", weights, "--new-key", "--no-progress",
                     "--allow-secondary-capture")
    err = capsys.readouterr().err
    assert status == 1 and "FAILED (2):" in err and "2 written" in err and "sc.dcm" not in err
    settings = json.loads((tmp_path / "out2" / ".prichexy" / "run.json").read_text())["settings"]
    assert settings["allow_secondary_capture"] is True
    written = [pydicom.dcmread(p) for p in output_files(tmp_path / "out2")]
    assert sorted(str(ds.SOPClassUID) for ds in written) == sorted([SC, "1.2.840.10008.5.1.4.1.1.1.1"])


# ------------------------------------------------------------------------------- keys


@pytest.mark.parametrize("explicit", [False, True])
def test_missing_key_is_an_error_and_nothing_is_created(tmp_path, weights, capsys, explicit):
    src = small_input(tmp_path / "in")
    out = tmp_path / "out"
    key = tmp_path / "keys" / "steward.key" if explicit else tmp_path / "out.prichexy-key"
    (tmp_path / "keys").mkdir()
    args = ["--key-file", key] if explicit else []
    assert run_cli("anonymize", src, out, "--weights", weights, "--no-progress", *args) == 2
    err = capsys.readouterr().err
    assert f"monai-prichexy: error: key file {key} does not exist" in err
    assert f"`monai-prichexy keygen {key}`" in err and "--new-key" in err
    assert not key.exists() and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "keys"]


def test_new_key_creates_it_and_refuses_an_existing_one(tmp_path, weights, capsys):
    src = small_input(tmp_path / "in")
    out, key = tmp_path / "out", tmp_path / "steward.key"
    assert run_cli("anonymize", src, out, "--weights", weights, "--key-file", key, "--new-key", "--no-progress") == 0
    err = capsys.readouterr().err
    assert key.is_file() and stat.S_IMODE(key.stat().st_mode) == 0o600
    fingerprint = load_key(key).fingerprint
    assert f"key: {key} (created, fingerprint {fingerprint})" in err
    assert f"key fingerprint: {fingerprint} ({key})" in err.split("done in")[1]  # in the end-of-run summary
    run = json.loads((out / ".prichexy" / "run.json").read_text())["settings"]
    summary = json.loads((out / ".prichexy" / "summary.json").read_text())
    assert run["key_fingerprint"] == summary["key_fingerprint"] == fingerprint
    secret = key.read_text().strip()

    # --new-key never overwrites
    assert run_cli("anonymize", src, out, "--weights", weights, "--key-file", key, "--new-key", "--no-progress") == 2
    err = capsys.readouterr().err
    assert f"--new-key: key file {key} exists; not overwriting a key" in err
    assert key.read_text().strip() == secret
    # without it the run resumes with the existing key
    assert run_cli("anonymize", src, out, "--weights", weights, "--key-file", key, "--no-progress") == 0
    err = capsys.readouterr().err
    assert "0 written, 2 already done" in err and f"key fingerprint: {fingerprint}" in err


def test_resume_with_the_default_key_needs_no_flag(tmp_path, weights, capsys):
    src = small_input(tmp_path / "in")
    out = tmp_path / "out"
    assert run_cli("anonymize", src, out, "--weights", weights, "--new-key", "--no-progress") == 0
    default = tmp_path / "out.prichexy-key"
    assert default.is_file()
    write_png(src / "c.png", png_array(32, 40, seed=3))
    capsys.readouterr()
    assert run_cli("anonymize", src, out, "--weights", weights, "--no-progress") == 0
    err = capsys.readouterr().err
    assert "1 written, 2 already done" in err and f"key fingerprint: {load_key(default).fingerprint}" in err
    # the key lost: the error names the path, how to make one, and the fingerprint the run needs
    fingerprint = load_key(default).fingerprint
    default.unlink()
    assert run_cli("anonymize", src, out, "--weights", weights, "--no-progress") == 2
    err = capsys.readouterr().err
    assert f"key file {default} does not exist" in err and f"fingerprint {fingerprint}" in err
    # and a new key cannot resume it: refused before a key is made
    assert run_cli("anonymize", src, out, "--weights", weights, "--new-key", "--no-progress") == 2
    assert f"holds a run made with the key of fingerprint {fingerprint}" in capsys.readouterr().err
    assert not default.exists()


def test_keygen_then_anonymize(tmp_path, weights, capsys):
    src = small_input(tmp_path / "in")
    assert run_cli("keygen", tmp_path / "k.key") == 0
    assert run_cli("anonymize", src, tmp_path / "out", "--weights", weights, "--key-file", tmp_path / "k.key",
                   "--no-progress") == 0
    assert "(loaded, fingerprint" in capsys.readouterr().err


# ------------------------------------------------------------------------ OUT hygiene


def test_out_with_unrelated_files_is_refused_and_nothing_written(tmp_path, weights, capsys):
    src = small_input(tmp_path / "in")
    out = tmp_path / "out"
    (out / "old_release").mkdir(parents=True)
    (out / "notes.txt").write_text("x")
    assert run_cli("anonymize", src, out, "--weights", weights, "--new-key", "--no-progress") == 2
    err = capsys.readouterr().err
    assert f"output folder {out} is not empty and is not an earlier run" in err
    assert "in the way: notes.txt, old_release/" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "old_release"]
    assert not (tmp_path / "out.prichexy-key").exists()  # not even the key was made


def test_empty_out_is_fine_and_another_input_is_refused(tmp_path, weights, capsys):
    src = small_input(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    assert run_cli("anonymize", src, out, "--weights", weights, "--new-key", "--no-progress") == 0
    other = small_input(tmp_path / "other")
    capsys.readouterr()
    assert run_cli("anonymize", other, out, "--weights", weights, "--no-progress") == 2
    err = capsys.readouterr().err
    assert f"{out} was started with other settings (pass the same IN)" in err and "another input folder" in err
    assert len(output_files(out)) == 2


def test_out_holds_only_outputs_and_the_state_folder(tmp_path, weights, capsys):
    src = small_input(tmp_path / "in")
    bad = make_radiograph_dataset(32, 40, 12, phi=False)
    bad.Modality = "CT"
    save(bad, src / "deep" / "er" / "ct.dcm")  # fails: its pseudonymized folders must not stay behind
    out = tmp_path / "out"
    assert run_cli("anonymize", src, out, "--weights", weights, "--new-key", "--no-progress") == 1
    assert state_files(out) == [".prichexy", ".prichexy/manifest.jsonl", ".prichexy/run.json", ".prichexy/summary.json"]
    others = [p for p in out.rglob("*") if ".prichexy" not in p.relative_to(out).parts]
    files = [p for p in others if p.is_file()]
    assert sorted(files) == sorted(output_files(out)) and len(files) == 2
    assert all(any(p.iterdir()) for p in others if p.is_dir())  # no empty folder
    assert not [p for p in out.rglob(".*.tmp")]
    # a run after the fact: the legacy lock file of older versions is removed too
    (out / ".prichexy" / "lock").write_text("")
    assert run_cli("anonymize", src, out, "--weights", weights, "--no-progress") == 1
    assert state_files(out) == [".prichexy", ".prichexy/manifest.jsonl", ".prichexy/run.json", ".prichexy/summary.json"]
    capsys.readouterr()


def test_empty_input_warns_and_exits_1(tmp_path, weights, capsys):
    (tmp_path / "in").mkdir()
    assert run_cli("anonymize", tmp_path / "in", tmp_path / "out", "--weights", weights, "--new-key", "--no-progress") == 1
    assert "nothing to anonymize: IN holds no files" in capsys.readouterr().err  # IN by name, not its path
    assert os.listdir(tmp_path / "out") == [".prichexy"]
