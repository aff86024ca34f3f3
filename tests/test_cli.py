"""``monai-prichexy``: end to end through the command line (PHI, resume after SIGKILL, errors)."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image, TiffImagePlugin

from monai_prichexy.cli import main
from monai_prichexy.dicom import read_radiograph
from monai_prichexy.networks import AbnormalityClassifier, SiameseVerifier
from monai_prichexy.pipeline.atomic import is_temp_name
from monai_prichexy.pipeline.manifest import read_manifest
from monai_prichexy.transforms import DeformAnonymize
from monai_prichexy.weights import save_checkpoint
from tests.leak_scan import layers, scan
from tests.dicom_fixtures import PATIENT_FAMILY, PATIENT_GIVEN, PATIENT_ID, PHI_VALUES, make_radiograph_dataset, phi_needles, save
from tests.test_pipeline_support import output_files, png_array, tiny_weights, tree_digests, write_dicom, write_png

REPO = Path(__file__).resolve().parents[1]
PHI_TEXT = f"{PATIENT_FAMILY}^{PATIENT_GIVEN} {PATIENT_ID} born 1961-03-14"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_weights(tmp_path_factory.mktemp("w") / "g.pt")


def run_cli(*args) -> int:
    return main([str(a) for a in args])


def phi_tree(root: Path) -> Path:
    """Every supported format, PHI in headers, metadata and folder / file names."""
    study = root / f"{PATIENT_FAMILY}_{PATIENT_GIVEN}_{PATIENT_ID}" / "20230517_Thorax"
    write_dicom(study / "IM0001", 64, 80)
    write_dicom(study / f"{PATIENT_FAMILY}.dcm", 64, 80, photometric="MONOCHROME1")
    save(make_radiograph_dataset(64, 80, transfer_syntax="1.2.840.10008.1.2.5"), study / "IM0003.dcm")
    save(make_radiograph_dataset(48, 56), study / "IM0004", raw=True)  # no preamble, no file meta
    exports = root / "exports_19610314"
    write_png(exports / f"{PATIENT_FAMILY}_{PATIENT_GIVEN}.png", png_array(), text={"Patient": PHI_TEXT})
    write_png(exports / "p16.png", png_array(dtype=np.uint16), text={"Comment": PHI_TEXT})
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[270] = PHI_TEXT
    Image.fromarray(png_array(dtype=np.uint16)).save(exports / f"{PATIENT_ID}.tif", tiffinfo=tags)
    exif = Image.Exif()
    exif[0x010E] = PHI_TEXT
    Image.fromarray(png_array()).save(exports / "x.jpg", exif=exif.tobytes(), comment=PHI_TEXT.encode())
    img = nib.Nifti1Image(png_array(dtype=np.uint16).T.copy(), np.eye(4))
    img.header["descrip"] = PHI_TEXT.encode()[:79]
    img.header["aux_file"] = PATIENT_ID.encode()
    img.to_filename(exports / f"{PATIENT_ID}.nii.gz")
    return root


def test_phi_appears_nowhere_in_outputs_manifest_logs_or_names(tmp_path, weights, capsys):
    src = phi_tree(tmp_path / "in")
    before = tree_digests(src)
    out = tmp_path / "out"
    status = run_cli("anonymize", src, out, "--weights", weights, "--key-file", tmp_path / "k.key", "--new-key", "--workers", "2")
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert tree_digests(src) == before  # inputs untouched
    outputs = output_files(out)
    assert len(outputs) == 9
    needles = phi_needles() + [n.encode() for n in ("Thorax", "exports", "IM0001", "Quaddelbrink_Hieronymus", PHI_TEXT)]
    blobs = {"stdout/stderr": (captured.out + captured.err).encode()}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        blobs[f"name {rel}"] = rel.encode()
        if path.is_file():
            blobs[f"file {rel}"] = path.read_bytes()
    # inflating scan: the .nii.gz output is gzip, a byte search of it alone would be blind
    assert any(label == "gzip" for data in blobs.values() for label, _ in layers(data))
    leaks = scan(blobs, needles)
    assert not leaks, leaks
    gz_input = next(src.rglob("*.nii.gz")).read_bytes()  # guard: only the inflating scan sees its PHI
    assert PATIENT_ID.encode() not in gz_input and scan({"input": gz_input}, [PATIENT_ID.encode()])
    for path in outputs:  # still valid images of the same format
        if path.suffix == ".dcm":
            assert read_radiograph(path).dataset.PatientIdentityRemoved == "YES"
    assert {p.suffix for p in outputs} == {".dcm", ".png", ".tif", ".jpg", ".gz"}
    records = list(read_manifest(out / ".prichexy" / "manifest.jsonl"))
    assert [r for r in records if r["kind"] == "jpeg"][0]["lossy"] is True


def test_png_pixels_equal_deform_anonymize(tmp_path, weights):
    arr = png_array(96, 80, dtype=np.uint16, seed=3)
    write_png(tmp_path / "in" / "a.png", arr)
    assert run_cli("anonymize", tmp_path / "in", tmp_path / "out", "--weights", weights, "--new-key", "--no-progress") == 0
    (out,) = output_files(tmp_path / "out")
    expected = DeformAnonymize(str(weights))(arr[None])[0]
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)


def test_failed_files_are_listed_and_exit_status_is_1(tmp_path, weights, capsys):
    src = tmp_path / "in"
    write_png(src / "good.png", png_array())
    Image.fromarray(np.dstack([png_array(seed=i) for i in range(3)])).save(src / "colour.png")
    write_dicom(src / "sub" / "burned.dcm", burned_in="YES")
    (src / "notes.txt").write_text("x")
    status = run_cli("anonymize", src, tmp_path / "out", "--weights", weights, "--new-key", "--no-progress", "--key-file",
                     tmp_path / "k.key")
    err = capsys.readouterr().err
    assert status == 1
    # named by pseudonym (the manifest id), never by their names: the console is a log too
    from monai_prichexy.dicom import load_key
    from monai_prichexy.pipeline import Pseudonymizer

    fid = Pseudonymizer(load_key(tmp_path / "k.key")).file_id
    colour, burned, notes = (fid(PurePosixPath(rel)) for rel in ("colour.png", "sub/burned.dcm", "notes.txt"))
    assert "FAILED (2):" in err and f"{colour}: colour image" in err and f"{burned}: BurnedInAnnotation" in err
    assert f"{notes}: not a supported image" in err and "1 written" in err
    assert "colour.png" not in err and "burned.dcm" not in err and "notes.txt" not in err
    assert "monai-prichexy locate IN" in err
    # locate: the steward's way back from an id to the file (stdout), with the key
    assert run_cli("locate", src, tmp_path / "out", colour.upper(), burned, "--key-file", tmp_path / "k.key") == 0
    located = capsys.readouterr().out.splitlines()
    assert sorted(located) == sorted([f"{colour}\tcolour.png", f"{burned}\tsub/burned.dcm"])
    assert run_cli("locate", src, tmp_path / "out", "0" * 20, "--key-file", tmp_path / "k.key") == 1
    assert "not found" in capsys.readouterr().err


def test_setup_errors_exit_2_with_a_clear_message(tmp_path, weights, capsys, monkeypatch):
    src = tmp_path / "in"
    write_png(src / "a.png", png_array())
    import monai_prichexy.bundle_files as pw

    monkeypatch.setattr(pw, "default_weights_path", lambda: tmp_path / "bundle" / "models" / "model.pt")
    assert run_cli("anonymize", src, tmp_path / "out", "--new-key") == 2
    err = capsys.readouterr().err
    assert "no generator weights" in err and "python -m monai.bundle run --config_file bundle/configs/train.json" in err
    assert run_cli("anonymize", src, src / "out", "--weights", weights) == 2
    assert "inside the input folder" in capsys.readouterr().err
    assert run_cli("anonymize", src, tmp_path / "out", "--weights", weights, "--key-file", tmp_path / "out" / "k") == 2
    assert "inside the output folder" in capsys.readouterr().err
    assert run_cli("anonymize", src, tmp_path / "out", "--weights", weights, "--weights-sha256", "0" * 64, "--new-key") == 2
    assert "SHA-256" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "out.prichexy-key").exists()  # weights are checked before --new-key makes a key


def test_default_weights_checked_against_metadata(tmp_path, weights, monkeypatch, capsys):
    import monai_prichexy.bundle_files as pw
    from monai_prichexy.bundle_files import resolve_weights, sha256_from_metadata
    from monai_prichexy.weights import sha256_file

    bundle = tmp_path / "bundle"
    (bundle / "models").mkdir(parents=True)
    (bundle / "configs").mkdir()
    model = bundle / "models" / "model.pt"
    model.write_bytes(Path(weights).read_bytes())
    (bundle / "configs" / "metadata.json").write_text(json.dumps({"version": "0.1.0", "model_sha256": "ab" * 32}))
    monkeypatch.setattr(pw, "default_weights_path", lambda: model)
    assert resolve_weights() == (model, "ab" * 32)
    write_png(tmp_path / "in" / "a.png", png_array())
    assert run_cli("anonymize", tmp_path / "in", tmp_path / "out", "--new-key", "--no-progress") == 2
    assert "expected abab" in capsys.readouterr().err
    (bundle / "configs" / "metadata.json").write_text(json.dumps({"model_sha256": sha256_file(model)}))
    assert run_cli("anonymize", tmp_path / "in", tmp_path / "out", "--new-key", "--no-progress") == 0
    err = capsys.readouterr().err
    assert "checked" in err
    # the end-of-run summary says what the weights were measured to do (model.json beside them), or that nothing is
    assert "pixel privacy of these weights: no measured privacy on record" in err
    model.with_suffix(".json").write_text(json.dumps({"measured": {"verdict": "NOT measured protective: 84.2 %"}}))
    assert run_cli("anonymize", tmp_path / "in", tmp_path / "out2", "--new-key", "--no-progress") == 0
    assert "pixel privacy of these weights: NOT measured protective: 84.2 %" in capsys.readouterr().err
    assert sha256_from_metadata(bundle / "configs" / "missing.json") is None


def _manifest_lines(out: Path) -> int:
    try:
        return (out / ".prichexy" / "manifest.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _run_until(cmd, env, condition, timeout=120.0):
    """Start the CLI, SIGKILL it once ``condition()`` holds; returns True if it was killed."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if condition():
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.002)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_resume_after_sigkill(tmp_path, weights):
    src = tmp_path / "in"
    for i in range(12):
        write_dicom(src / f"p{i % 3}" / f"IM{i:04d}", 192, 160, seed=i)
    for i in range(8):
        write_png(src / "png" / f"{i:03d}.png", png_array(160, 192, dtype=np.uint16 if i % 2 else np.uint8, seed=i))
    before = tree_digests(src)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "monai_prichexy.cli", "anonymize", str(src), str(out), "--weights", str(weights),
           "--key-file", str(tmp_path / "k.key"), "--no-progress", "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    assert run_cli("keygen", tmp_path / "k.key") == 0
    # 1) killed once the manifest has >= 3 lines; 2) killed as soon as an output exists without its line
    assert _run_until(cmd, env, lambda: _manifest_lines(out) >= 3), "first run finished before it could be killed"
    n = _manifest_lines(out)
    assert 3 <= n < 20
    _run_until(cmd, env, lambda: len(output_files(out)) > _manifest_lines(out) or _manifest_lines(out) >= n + 4)
    final = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr

    assert tree_digests(src) == before
    outputs = output_files(out)
    assert len(outputs) == 20
    assert not [p for p in out.rglob("*") if is_temp_name(p.name)]
    for path in outputs:
        if path.suffix == ".dcm":
            assert read_radiograph(path).stored.shape == (192, 160)
        else:
            assert np.asarray(Image.open(path)).shape == (160, 192)
    records = list(read_manifest(out / ".prichexy" / "manifest.jsonl"))
    ok = [r["id"] for r in records if r["status"] == "ok"]
    assert len(ok) == len(set(ok)) == 20
    assert {r["output"] for r in records if r["status"] == "ok"} == {p.relative_to(out).as_posix() for p in outputs}


def test_report_end_to_end(tmp_path, weights, capsys):
    src = tmp_path / "in"
    write_dicom(src / "a" / "IM1", 64, 64)
    write_dicom(src / "a" / "IM2", 64, 64, photometric="MONOCHROME1", seed=2)
    write_png(src / "b.png", png_array(64, 64))
    key = tmp_path / "k.key"
    assert run_cli("anonymize", src, tmp_path / "out", "--weights", weights, "--key-file", key, "--new-key", "--no-progress") == 0
    torch.manual_seed(0)
    verifier = save_checkpoint(tmp_path / "v.pt", SiameseVerifier("resnet10", widen_factor=0.125))
    classifier = save_checkpoint(tmp_path / "c.pt", AbnormalityClassifier(input_size=64))
    capsys.readouterr()
    status = run_cli("report", src, tmp_path / "out", "--verifier", verifier, "--classifier", classifier,
                     "--out", tmp_path / "report", "--key-file", key, "--no-progress")
    assert status == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["counts"] == {"paired": 3}
    assert summary["groups"]["all"]["p_same_patient"]["n"] == 3 and summary["groups"]["all"]["linkage_auc"] is not None
    assert (tmp_path / "report" / "histograms.png").read_bytes().startswith(b"\x89PNG")
    csv_text = (tmp_path / "report" / "per_image.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    parts = {part for row in rows for part in PurePosixPath(row["output"]).parts}
    # names are keyed hex pseudonyms: none is an input name (a substring test would be flaky:
    # "...5eb.png" ends in "b.png" by chance)
    assert len(rows) == 3 and not parts & {"in", "a", "IM1", "IM2", "b.png"}
    assert "IM1" not in csv_text and "IM2" not in csv_text
    assert "Privacy" in (tmp_path / "report" / "report.md").read_text()
    # wrong key: refused
    assert run_cli("keygen", tmp_path / "other.key") == 0
    assert run_cli("report", src, tmp_path / "out", "--verifier", verifier, "--classifier", classifier,
                   "--out", tmp_path / "r2", "--key-file", tmp_path / "other.key") == 2
    assert "key does not match" in capsys.readouterr().err


def test_demo_input_is_anonymized_without_phi(tmp_path, weights, capsys):
    from monai_prichexy.demo import DEMO_PHI, make_demo_input

    assert run_cli("demo", tmp_path / "demo", "--no-run") == 0
    src = tmp_path / "demo" / "input"
    assert len([p for p in src.rglob("*") if p.is_file()]) == 5
    assert "monai-prichexy anonymize" in capsys.readouterr().err
    # the library function writes the same tree as the CLI, and that tree carries every demo value
    direct = make_demo_input(tmp_path / "direct", size=64)
    assert direct == tmp_path / "direct"
    assert sorted(p.relative_to(direct).as_posix() for p in direct.rglob("*") if p.is_file()) == sorted(
        p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    parts = [part.encode() for value in DEMO_PHI.values() for part in value.replace("^", " ").split() if len(part) > 3]
    inputs = {str(p): p.read_bytes() for p in src.rglob("*") if p.is_file()}
    assert {hit.split(" in ", 1)[0] for hit in scan(inputs, parts)} == {repr(p) for p in parts}  # guard
    assert run_cli("anonymize", src, tmp_path / "out", "--weights", weights, "--new-key", "--no-progress") == 0
    outputs = {p.relative_to(tmp_path / "out").as_posix(): p.read_bytes() for p in output_files(tmp_path / "out")}
    outputs.update({f"name {k}": k.encode() for k in list(outputs)})
    assert not scan(outputs, parts)
    ds = pydicom.dcmread(next(p for p in output_files(tmp_path / "out") if p.suffix == ".dcm"))
    assert ds.PatientName != DEMO_PHI["PatientName"]


def test_every_command_and_option_is_explained():
    """Each subcommand has a description and every argument a help text (issue 14, first run)."""
    import argparse

    from monai_prichexy.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in sub.choices.items():
        assert command.description, f"{name}: no description"
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {'/'.join(action.option_strings) or action.dest}: no help text"
    mu = next(a for a in sub.choices["anonymize"]._actions if "--mu" in a.option_strings)
    assert "px" in mu.help  # a unit


def test_quiet_silences_warnings_but_not_the_summary(tmp_path):
    """-q prints only the final summary: the small-mu risk warning shows without it and not with it."""
    import subprocess
    import sys

    from tests.test_pipeline_support import tiny_weights

    weights = tiny_weights(tmp_path / "g.pt", mu=1e-4)
    write_png(tmp_path / "in" / "a.png", png_array())
    root = Path(__file__).resolve().parents[1]

    def run(out, *extra):
        return subprocess.run([sys.executable, "-m", "monai_prichexy.cli", "anonymize", str(tmp_path / "in"), str(out),
                               "--weights", str(weights), "--key-file", str(tmp_path / "k.key"), "--no-progress", *extra],
                              cwd=root, capture_output=True, text=True, timeout=300)

    assert main(["keygen", str(tmp_path / "k.key")]) == 0
    loud, quiet = run(tmp_path / "o1"), run(tmp_path / "o2", "-q")
    assert loud.returncode == 0 and quiet.returncode == 0, loud.stderr + quiet.stderr
    assert "too small to hide identity" in loud.stderr
    assert "too small" not in quiet.stderr and "done in" in quiet.stderr


def test_an_empty_input_is_an_error(tmp_path, weights, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / ".hidden").write_text("x")
    assert run_cli("anonymize", tmp_path / "in", tmp_path / "out", "--weights", weights, "--new-key", "--no-progress") == 1
    assert "nothing to anonymize" in capsys.readouterr().err
