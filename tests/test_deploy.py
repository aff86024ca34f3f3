"""The MONAI Deploy application, run end to end in a subprocess on synthetic DICOM files.

Needs the optional ``deploy`` extra (MONAI Deploy App SDK 4.0.0, which changes ``import
monai``); the main environment does not have it and skips this module; the CI job that
installs it sets ``PRICHEXY_REQUIRE_EXTRAS=deploy``, where a skip fails (tests/extras.py).
See docs/deploy.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from tests.extras import require_extra

pytestmark = pytest.mark.extra("deploy")  # in the deploy CI job (PRICHEXY_REQUIRE_EXTRAS=deploy) a skip fails
require_extra(
    "deploy",
    "monai.deploy",
    reason="MONAI Deploy App SDK not installed (optional extra: pip install -e '.[deploy]', see docs/deploy.md)",
)

import pydicom  # noqa: E402
import torch  # noqa: E402
from pydicom.uid import MRImageStorage, RLELossless, SecondaryCaptureImageStorage  # noqa: E402

from monai_prichexy.deploy.options import DeployOptions, resolve_model_file, split_argv  # noqa: E402
from monai_prichexy.dicom import create_key, remap_uid  # noqa: E402
from monai_prichexy.networks import FlowFieldGenerator, PriCheXyNet  # noqa: E402
from monai_prichexy.weights import save_checkpoint  # noqa: E402
from tests.dicom_fixtures import PATIENT_FAMILY, PATIENT_GIVEN, make_radiograph_dataset, phi_needles, save  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
ROOT = "1.2.826.0.1.3680043.8.498.4242."
STUDY = ROOT + "1"
RADIOGRAPHS = {  # file name (with PHI, as archives have them) -> (series suffix, instance suffix, settings)
    f"{PATIENT_FAMILY}_{PATIENT_GIVEN}_CR_1.dcm": ("2", "21", dict(modality="CR", rows=64, cols=80, bits_stored=12,
                                                                   photometric="MONOCHROME1")),
    f"{PATIENT_FAMILY}_{PATIENT_GIVEN}_CR_2.dcm": ("2", "22", dict(modality="CR", rows=72, cols=56, bits_stored=10,
                                                                   seed=1)),
    f"{PATIENT_FAMILY}_DX.dcm": ("3", "31", dict(modality="DX", rows=48, cols=64, bits_stored=16, signed=True,
                                                 transfer_syntax=RLELossless, seed=2)),
}
SKIPPED = {  # not radiographs: the selector must leave them alone
    f"{PATIENT_FAMILY}_MR.dcm": ("4", "41", "MR"),
    f"{PATIENT_FAMILY}_SC_rgb.dcm": ("5", "51", "OT"),
}
ALL_UIDS = [STUDY] + [ROOT + s for s, _, _ in RADIOGRAPHS.values()] + [ROOT + i for _, i, _ in RADIOGRAPHS.values()]
ALL_UIDS += [ROOT + s for s, _, _ in SKIPPED.values()] + [ROOT + i for _, i, _ in SKIPPED.values()]


def _set_uids(ds, series: str, instance: str) -> None:
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = ROOT + series
    ds.SOPInstanceUID = ROOT + instance
    ds.file_meta.MediaStorageSOPInstanceUID = ROOT + instance


def _non_radiograph(modality: str, series: str, instance: str):
    ds = make_radiograph_dataset(rows=32, cols=32, bits_stored=12, modality="DX")
    if modality == "MR":
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    else:  # an RGB secondary capture
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelData = np.full((32, 32, 3), 77, dtype=np.uint8).tobytes()
    ds.Modality = modality
    _set_uids(ds, series, instance)
    return ds


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, dict[str, pydicom.Dataset]]:
    folder = tmp_path_factory.mktemp("deploy_in")
    originals = {}
    for name, (series, instance, settings) in RADIOGRAPHS.items():
        ds = make_radiograph_dataset(**settings)
        _set_uids(ds, series, instance)
        save(ds, folder / "study" / name)
        originals[ROOT + instance] = pydicom.dcmread(folder / "study" / name)
    for name, (series, instance, modality) in SKIPPED.items():
        save(_non_radiograph(modality, series, instance), folder / "study" / name)
    (folder / "notes.txt").write_text("not a DICOM file\n")  # the loader must ignore it
    return folder, originals


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("deploy_model") / "model.pt"
    save_checkpoint(path, PriCheXyNet(FlowFieldGenerator(init_features=2), mu=0.01, working_size=32))
    return path


def _run(args: list[str], cwd: Path, extra_env: dict[str, str] | None = None,
         command: list[str] | None = None, pythonpath: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOLOSCAN_", "PRICHEXY_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra_env or {})
    return subprocess.run(
        [*(command or [sys.executable, "-m", "monai_prichexy.deploy"]), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=420,
    )


def _needles() -> list[bytes]:
    return phi_needles() + [uid.encode() for uid in ALL_UIDS] + [PATIENT_FAMILY.encode(), PATIENT_GIVEN.encode()]


def test_options_from_args_and_environment(tmp_path):
    options, rest = split_argv(["app", "-i", "in", "--mu", "0.005", "-o", "out", "--dates", "shift"])
    assert options == DeployOptions(mu=0.005, dates="shift") and rest == ["app", "-i", "in", "-o", "out"]
    options, rest = DeployOptions.from_args(["-m", "m"], environ={"PRICHEXY_MU": "0.001", "PRICHEXY_DEVICE": "cpu"})
    assert options == DeployOptions(mu=0.001, device="cpu") and rest == ["-m", "m"]
    assert DeployOptions.from_args(["--mu", "0.01"], environ={"PRICHEXY_MU": "0.5"})[0].mu == 0.01  # argument wins
    with pytest.raises(ValueError, match="mu"):
        DeployOptions.from_args([], environ={"PRICHEXY_MU": "2"})

    (tmp_path / "models" / "prichexy").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no model file"):
        resolve_model_file(tmp_path / "models")
    (tmp_path / "models" / "prichexy" / "model.pt").write_bytes(b"x")
    assert resolve_model_file(tmp_path / "models") == tmp_path / "models" / "prichexy" / "model.pt"
    (tmp_path / "models" / "other.pth").write_bytes(b"x")
    assert resolve_model_file(tmp_path / "models").name == "model.pt"
    (tmp_path / "models" / "model.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match="several model files"):
        resolve_model_file(tmp_path / "models")


def test_operator_steps_match_the_pipeline(tmp_path, inputs, model):
    """anonymize_instance + write_instance (the two operators) == FileAnonymizer.anonymize_dicom."""
    from monai_prichexy.deploy.operators import anonymize_instance, build_file_anonymizer, write_instance

    key_file = tmp_path / "deid.key"
    create_key(key_file)
    anonymizer = build_file_anonymizer(model, key_file=key_file, device="cpu")
    for uid, ds in inputs[1].items():
        item = anonymize_instance(anonymizer, pydicom.dcmread(ds.filename))
        assert item.sop_instance_uid == remap_uid(uid, anonymizer.deid.key)
        ours = write_instance(item, tmp_path / "deploy" / f"{item.sop_instance_uid}.dcm").path
        theirs = tmp_path / "pipeline" / ours.name
        assert anonymizer.anonymize_dicom(ds.filename, theirs).status == "ok"
        assert ours.read_bytes() == theirs.read_bytes()


def test_app_anonymizes_radiograph_series(tmp_path, inputs, model):
    in_dir, originals = inputs
    out_dir = tmp_path / "out"
    key_file = tmp_path / "deid.key"
    key = create_key(key_file)
    proc = _run(["-i", str(in_dir), "-o", str(out_dir), "-m", str(model), "--key-file", str(key_file)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    log = (proc.stdout + proc.stderr).encode("latin-1", errors="replace")
    assert not [n for n in _needles() if n in log], "the log quotes PHI of the inputs"

    outputs = sorted(out_dir.rglob("*"))
    assert all(p.is_file() and p.suffix == ".dcm" for p in outputs)
    expected = {f"{remap_uid(uid, key)}.dcm": ds for uid, ds in originals.items()}
    assert {p.name for p in outputs} == set(expected)  # one per CR/DX input, none for MR / SC / text

    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

    from monai_prichexy.data import RadiographReader
    from monai_prichexy.transforms import DeformAnonymized

    chain = Compose([LoadImaged("image", reader=RadiographReader(), dtype=None, image_only=True),
                     EnsureChannelFirstd("image"), DeformAnonymized("image", generator=str(model))])
    needles = _needles()
    for path in outputs:
        data = path.read_bytes()
        leaked = [n for n in needles if n in data]
        assert not leaked, f"{path.name} leaks {leaked[:5]}"
        out = pydicom.dcmread(path)
        src = expected[path.name]
        assert out.PatientIdentityRemoved == "YES"
        assert out.Modality == src.Modality and out.SOPClassUID == src.SOPClassUID
        assert out.StudyInstanceUID == remap_uid(STUDY, key)
        for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation",
                        "PhotometricInterpretation"):
            assert out[keyword].value == src[keyword].value, keyword
        assert "mu=0.01" in " ".join(map(str, out.DeidentificationMethod))
        before, after = src.pixel_array.astype(np.int64), out.pixel_array.astype(np.int64)
        assert after.shape == before.shape
        # the project's one path: RadiographReader's native values -> DeformAnonymize (its LUT view)
        np.testing.assert_array_equal(out.pixel_array, chain({"image": src.filename})["image"][0].numpy())
        assert np.any(after != before), "pixels were not deformed"
        assert np.abs(after - before).mean() < 0.1 * (before.max() - before.min())  # a deformation, not noise
    # the inputs are untouched
    for uid, ds in originals.items():
        assert pydicom.dcmread(ds.filename).SOPInstanceUID == uid


def test_app_in_map_layout_from_environment(tmp_path, inputs, model):
    """As in a MAP: the app folder run as ``python3 /opt/holoscan/app`` with the package on
    PYTHONPATH, HOLOSCAN_* variables, the model in ``models/<name>/model.pt`` (here a bare state
    dict, so mu comes from PRICHEXY_MU); the same key gives the same output names as a run with
    arguments; a refused file fails the run after the others were written."""
    in_dir, originals = inputs
    run_in = tmp_path / "input"
    run_in.mkdir()
    for path in in_dir.rglob("*.dcm"):
        (run_in / path.name).symlink_to(path)
    burned = make_radiograph_dataset(modality="DX", burned_in="YES")
    _set_uids(burned, "6", "61")
    save(burned, run_in / "burned_in.dcm")

    shutil.copytree(REPO_ROOT / "monai_prichexy" / "deploy", tmp_path / "app",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO_ROOT / "monai_prichexy", tmp_path / "lib" / "monai_prichexy",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "models" / "model").mkdir(parents=True)
    torch.save(torch.load(model, weights_only=True)["state_dict"], tmp_path / "models" / "model" / "model.pt")
    key_file = tmp_path / "deid.key"
    key = create_key(key_file)
    out_dir = tmp_path / "output"
    proc = _run([], cwd=tmp_path, command=[sys.executable, str(tmp_path / "app")], pythonpath=tmp_path / "lib",
                extra_env={
                    "HOLOSCAN_INPUT_PATH": str(run_in),
                    "HOLOSCAN_OUTPUT_PATH": str(out_dir),
                    "HOLOSCAN_MODEL_PATH": str(tmp_path / "models"),
                    "PRICHEXY_MU": "0.005",
                    "PRICHEXY_DEID_KEY_FILE": str(key_file),
                })
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-4000:]
    assert "BurnedInAnnotation" in log and "1 instance(s) were NOT anonymized" in log
    names = {p.name for p in out_dir.iterdir()}
    assert names == {f"{remap_uid(uid, key)}.dcm" for uid in originals}
    for path in out_dir.iterdir():
        assert "mu=0.005" in " ".join(map(str, pydicom.dcmread(path).DeidentificationMethod))


def test_app_without_mu_for_a_bare_state_dict_fails_clearly(tmp_path, inputs, model):
    state = torch.load(model, weights_only=True)["state_dict"]
    torch.save(state, tmp_path / "bare.pt")
    proc = _run(["-i", str(inputs[0]), "-o", str(tmp_path / "out"), "-m", str(tmp_path / "bare.pt")], cwd=tmp_path)
    assert proc.returncode != 0
    assert "PRICHEXY_MU" in proc.stdout + proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_map_requirements_cover_install_requires():
    """monai_prichexy/deploy/requirements.txt (installed into the MAP) lists every runtime dependency."""
    import configparser
    import re

    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")

    def names(lines):
        return {re.split(r"[\[<>=!~; ]", line.strip(), maxsplit=1)[0].lower()
                for line in lines if line.strip() and not line.strip().startswith("#")}

    needed = names(config["options"]["install_requires"].splitlines())
    listed = names((REPO_ROOT / "monai_prichexy" / "deploy" / "requirements.txt").read_text().splitlines())
    assert needed <= listed, f"missing from the MAP requirements: {sorted(needed - listed)}"


def test_app_log_has_no_phi_even_at_debug(tmp_path, model):
    """Issue 14: PHI in the input folder's own name, in sub-folder and file names and in the
    headers (the fixture's), one refused file, the SDK at DEBUG: nothing of it in stdout, stderr
    or the log (the SDK's own records included); the refused file is named by the pseudonym
    `monai-prichexy anonymize` gives it, which `monai-prichexy locate` maps back."""
    from monai_prichexy.cli import main as cli_main
    from monai_prichexy.pipeline import Pseudonymizer

    top = tmp_path / f"{PATIENT_FAMILY}^{PATIENT_GIVEN}_1961"
    study = top / f"{PATIENT_FAMILY}_{PATIENT_GIVEN}_chest"
    save(make_radiograph_dataset(modality="CR", rows=48, cols=40), study / f"{PATIENT_FAMILY}^{PATIENT_GIVEN}_pa.dcm")
    save(make_radiograph_dataset(modality="DX", rows=40, cols=48, burned_in="YES", seed=3),
         study / f"{PATIENT_GIVEN}_{PATIENT_FAMILY}_burned.dcm")
    key_file = tmp_path / "deid.key"
    key = create_key(key_file)
    out_dir = tmp_path / "out"
    proc = _run(["-i", str(top), "-o", str(out_dir), "-m", str(model), "--key-file", str(key_file), "-l", "DEBUG"],
                cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "1 instance(s) were NOT anonymized" in log, log[-4000:]
    assert len(list(out_dir.iterdir())) == 1
    leaked = [n for n in _needles() if n in log.encode("utf-8", errors="replace")]
    assert not leaked, f"the log quotes PHI of the inputs: {leaked[:5]}\n{log[-4000:]}"
    rel = PurePosixPath(f"{study.name}/{PATIENT_GIVEN}_{PATIENT_FAMILY}_burned.dcm")
    fid = Pseudonymizer(key).file_id(rel)
    assert f"not anonymized: file {fid}: BurnedInAnnotation" in log, log[-4000:]
    assert cli_main(["locate", str(top), str(out_dir), fid, "--key-file", str(key_file)]) == 0
