"""Logs: no PHI (issue 14). No input path, file or folder name, or header value in any log line
of the CLI (anonymize, report, audit, locate's stderr), the bundle's ``monai.bundle run``, or what the
PHI filter lets through from other libraries (:mod:`monai_prichexy.logsafe`). The Deploy app's
log is tested in ``tests/test_deploy.py`` (extra ``deploy``).

The inputs carry a made-up patient in the input folder's own name, in sub-folder and file names
and in the DICOM header; one file is refused, so the failure listing is exercised too.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_prichexy import logsafe
from monai_prichexy.cli import main
from tests.dicom_fixtures import make_radiograph_dataset, save
from tests.test_pipeline_support import png_array, tiny_weights, write_png

REPO = Path(__file__).resolve().parents[1]
NEEDLES = ("DOE^JANE", "DOE_JANE", "JANE", "JDOE1970")  # no bare digits: a hex pseudonym may hold them
PHI_FOLDER = "DOE^JANE_1970"


def phi_input(root: Path) -> Path:
    """``root/DOE^JANE_1970/`` with a DICOM (name and id in the header), a PNG and a refused DICOM."""
    top = root / PHI_FOLDER
    study = top / "DOE_JANE_19700101_chest"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = make_radiograph_dataset(48, 40)
        ds.PatientName, ds.PatientID, ds.OtherPatientIDs = "DOE^JANE", "JDOE1970", "JDOE1970-B"
        save(ds, study / "DOE^JANE_1970_pa.dcm")
        burned = make_radiograph_dataset(48, 40, burned_in="YES")
        burned.PatientName, burned.PatientID = "DOE^JANE", "JDOE1970"
        save(burned, study / "DOE^JANE_1970_burned.dcm")
    write_png(top / "DOE_JANE_1970_lateral.png", png_array(48, 48))
    return top


def leaks(text: str) -> list[str]:
    return [needle for needle in NEEDLES if needle in text]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_weights(tmp_path_factory.mktemp("w") / "g.pt")


def test_anonymize_and_report_log_no_phi_in_process(tmp_path, weights, caplog, capfd):
    """Every record of every logger at DEBUG (caplog on the root logger) and every byte on the
    process's stdout / stderr (progress bar included)."""
    from monai_prichexy.networks import AbnormalityClassifier, SiameseVerifier
    from monai_prichexy.weights import save_checkpoint

    caplog.set_level(logging.DEBUG)
    src = phi_input(tmp_path)
    out, key = tmp_path / "out", tmp_path / "k.key"
    status = main(["anonymize", str(src), str(out), "--weights", str(weights), "--key-file", str(key), "--new-key",
                   "--working-size", "32", "--device", "cpu", "--workers", "2"])
    assert status == 1  # the burned-in file
    torch.manual_seed(0)
    verifier = save_checkpoint(tmp_path / "v.pt", SiameseVerifier("resnet10", widen_factor=0.125))
    classifier = save_checkpoint(tmp_path / "c.pt", AbnormalityClassifier(input_size=64))
    status = main(["report", str(src), str(out), "--verifier", str(verifier), "--classifier", str(classifier),
                   "--out", str(tmp_path / "report"), "--key-file", str(key), "--device", "cpu"])
    assert status == 0
    status = main(["audit", str(src), str(out), "--out", str(tmp_path / "audit"), "--key-file", str(key), "--size", "32",
                   "--weights", str(weights), "--device", "cpu"])
    assert status in (0, 1)  # a verdict (or none: two patients) was reached
    for written in (tmp_path / "audit").iterdir():
        assert not leaks(written.read_bytes().decode("latin-1")), written.name
    captured = capfd.readouterr()
    text = captured.out + captured.err
    assert "FAILED (1):" in text and "done in" in text  # guard: the listing was printed
    assert "Verdict" in (tmp_path / "audit" / "audit.md").read_text()  # guard: the audit ran
    records = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert caplog.records  # guard: the run logged something
    assert not leaks(text), (leaks(text), text[-3000:])
    assert not leaks(records), (leaks(records), records[-3000:])


def test_anonymize_subprocess_output_has_no_phi(tmp_path, weights):
    """The real process: its whole stdout / stderr, progress bar on, library warnings on."""
    src = phi_input(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "always"}
    proc = subprocess.run(
        [sys.executable, "-m", "monai_prichexy.cli", "anonymize", str(src), str(tmp_path / "out"), "--weights",
         str(weights), "--key-file", str(tmp_path / "k.key"), "--new-key", "--working-size", "32", "--device", "cpu"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    text = proc.stdout + proc.stderr
    assert "FAILED (1):" in text and "BurnedInAnnotation" in text
    assert not leaks(text), (leaks(text), text)
    # the id in the listing leads back to the file for the key holder (stdout, on request)
    fid = next(line.split(":")[0].strip() for line in proc.stderr.splitlines() if "BurnedInAnnotation" in line)
    found = subprocess.run(
        [sys.executable, "-m", "monai_prichexy.cli", "locate", str(src), str(tmp_path / "out"), fid, "--key-file",
         str(tmp_path / "k.key")], cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert found.returncode == 0 and found.stdout.strip().endswith("DOE^JANE_1970_burned.dcm"), found


def test_the_filter_withholds_library_text_and_keeps_ours(caplog):
    phi_filter = logsafe.PhiSafeFilter()

    def record(name, level, msg, *args, exc=False):
        exc_info = None
        if exc:
            try:
                raise FileNotFoundError(f"/archive/{PHI_FOLDER}/x.dcm")
            except FileNotFoundError:
                exc_info = sys.exc_info()
        return logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)

    ours = record("monai_prichexy.pipeline.batch", logging.WARNING, "file %s failed", "0123abcd")
    assert phi_filter.filter(ours) and ours.getMessage() == "file 0123abcd failed"
    for name in ("pydicom", "PIL.TiffImagePlugin", "monai.deploy.operators.dicom_data_loader_operator", "py.warnings"):
        loud = record(name, logging.ERROR, "cannot read /archive/%s/x.dcm: PatientName %s", PHI_FOLDER, "DOE^JANE", exc=True)
        assert phi_filter.filter(loud)
        assert not leaks(loud.getMessage()) and loud.exc_info is None and logsafe.WITHHELD in loud.getMessage()
        assert not phi_filter.filter(record(name, logging.INFO, "loaded %s", PHI_FOLDER))  # below WARNING: dropped
    assert phi_filter.withheld == 4


def test_library_warnings_are_withheld_our_own_are_shown(caplog):
    caplog.set_level(logging.WARNING)
    saved = warnings.showwarning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            logsafe.capture_warnings()
            # as pydicom would: the text quotes a header value, the location is library code
            warnings.warn_explicit(f"Invalid value for VR PN: '{PHI_FOLDER}'", UserWarning,
                                   str(Path(np.__file__).parent / "core" / "x.py"), 1)
            # ours (e.g. the small-mu risk warning): raised in the package, shown with its text
            warnings.warn_explicit("mu = 0: DeformAnonymize will not change the pixels", UserWarning,
                                   str(Path(logsafe.__file__).parent / "transforms" / "array.py"), 1)
    finally:
        warnings.showwarning = saved
    messages = [r.getMessage() for r in caplog.records]
    assert any("a UserWarning of numpy" in m and logsafe.WITHHELD in m for m in messages), messages
    assert "UserWarning: mu = 0: DeformAnonymize will not change the pixels" in messages, messages
    assert not any(PHI_FOLDER in m for m in messages), messages


@pytest.mark.timeout(300)
def test_bundle_run_logs_no_phi(tmp_path):
    """``python -m monai.bundle run`` of the inference config on a PHI-named folder and files:
    MONAI's input summary (which echoes ``--dataset_dir``) is off in ``logging.conf``."""
    from monai_prichexy.networks import PriCheXyNet
    from monai_prichexy.weights import sha256_file
    from PIL import Image

    shutil.copytree(REPO / "bundle", tmp_path / "bundle", ignore=shutil.ignore_patterns("outputs", "eval", "*.pt", "*.ts"))
    model = tmp_path / "bundle" / "models" / "model.pt"
    torch.manual_seed(0)
    torch.save(PriCheXyNet(mu=0.01, init_features=2).state_dict(), model)
    meta_path = tmp_path / "bundle" / "configs" / "metadata.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "model_sha256": sha256_file(model)}))
    data = tmp_path / PHI_FOLDER
    data.mkdir()
    Image.fromarray(png_array(48, 64)).save(data / "DOE^JANE_1970_pa.png")
    from monai_prichexy.dicom import create_key

    create_key(tmp_path / "steward.key")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", "bundle/configs/inference.json",
         "--dataset_dir", PHI_FOLDER, "--output_dir", "out", "--key_file", "steward.key", "--network_def#init_features", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert len(list((tmp_path / "out").iterdir())) == 1 and "Epoch[1] Complete" in log  # guard: it ran and logged
    assert not leaks(log), (leaks(log), log)

    # an unreadable input stops the run: MONAI's and Ignite's error records and the traceback
    # would quote its path; they say which exception, not its message
    (data / "DOE^JANE_1970_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"truncated")  # a PNG, broken
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", "bundle/configs/inference.json",
         "--dataset_dir", PHI_FOLDER, "--output_dir", "out2", "--key_file", "steward.key", "--network_def#init_features", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "RuntimeError: message " + logsafe.WITHHELD in log, log[-3000:]  # LoadImage's
    assert not leaks(log), (leaks(log), log)


def test_crash_traceback_withholds_library_messages_keeps_ours():
    def library_code():  # stands in for a library: raised outside the package
        raise FileNotFoundError(f"/archive/{PHI_FOLDER}/x.dcm")

    try:
        try:
            library_code()
        except FileNotFoundError as err:
            from monai_prichexy.pipeline.batch import check_in_out

            check_in_out("/no/such/input/folder", "/tmp/out")  # ours: raises ValueError from the package
    except ValueError as err:
        text = logsafe.withheld_traceback(err)
    assert "FileNotFoundError: message " + logsafe.WITHHELD in text and PHI_FOLDER not in text
    assert "ValueError: input folder /no/such/input/folder does not exist" in text
    assert "library_code" in text and "check_in_out" in text  # the frames stay
