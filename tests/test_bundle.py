"""The MONAI bundle in ``bundle/``: metadata, inference config, export, weight checksum.

Every test works on a temporary copy of the bundle whose ``models/model.pt`` is a freshly
initialised, UNTRAINED, small PriCheXyNet state dict (``init_features=2``; a test fixture,
never committed) with its SHA-256 written into the copy's ``configs/metadata.json``. The
``monai.bundle`` commands run as subprocesses from the copy's parent folder, as a user types
them, plus ``--network_def#init_features 2`` to match the small fixture; being independent,
they run two at a time.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from monai_prichexy.networks import PriCheXyNet
from monai_prichexy.transforms import DeformAnonymize
from monai_prichexy.weights import load_into_prichexynet, sha256_file

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLE = REPO_ROOT / "bundle"
SCHEMA = BUNDLE / "configs" / "schema" / "metadata_schema.json"
MU = 0.01
PHI = ("Doe", "Jane", "PID12345")

INPUT_NAMES = ("00000042_000.png", "00000042_001.png", "Doe_Jane.dcm")
FEATURES = 2
SMALL = ("--network_def#init_features", str(FEATURES))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["OMP_NUM_THREADS"] = "1"  # same arithmetic as the single-threaded test process (conftest)
    return env


def _bundle_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _ok(proc: subprocess.CompletedProcess) -> str:
    """The command's log; fails the test with it when the command failed."""
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(proc.args[2:4])} failed ({proc.returncode}):\n{log[-4000:]}"
    return log


def _write_dicom(path: Path, pixels: np.ndarray) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.PatientName, ds.PatientID, ds.Modality = "Doe^Jane", "PID12345", "CR"
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """``<tmp>/bundle`` (copy with fixture weights), ``<tmp>/in`` (2 PNGs, 1 DICOM, 1 stray file)."""
    root = tmp_path_factory.mktemp("bundle_test")
    shutil.copytree(BUNDLE, root / "bundle", ignore=shutil.ignore_patterns("outputs", "eval", "*.pt", "*.ts"))
    # TEST FIXTURE: untrained weights of a small network_def (init_features=2), never shipped.
    weights = root / "bundle" / "models" / "model.pt"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        torch.save(PriCheXyNet(mu=MU, init_features=FEATURES).state_dict(), weights)
    meta_path = root / "bundle" / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["model_sha256"] = sha256_file(weights)
    meta_path.write_text(json.dumps(meta, indent=4))

    images = root / "in"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in INPUT_NAMES[:2]:
        Image.fromarray((rng.random((48, 64)) * 200 + 30).astype(np.uint8)).save(images / name)
    _write_dicom(images / INPUT_NAMES[2], rng.random((40, 56)) * 4000)
    (images / "notes.txt").write_text("not an image")
    from monai_prichexy.dicom import create_key

    create_key(root / "steward.key")
    return root


def _reference(workdir: Path, name: str, weights: Path, sha: str):
    """What the Python API gives: the README's chain (RadiographReader, native values, then
    DeformAnonymize(checkpoint)), and the output name the CLI gives the file under the key."""
    from pathlib import PurePosixPath

    from monai.transforms import EnsureChannelFirstd, LoadImaged

    from monai_prichexy.data import RadiographReader
    from monai_prichexy.dicom import load_key
    from monai_prichexy.formats import SUFFIXES, detect_format
    from monai_prichexy.pipeline import Pseudonymizer

    path = workdir / "in" / name
    data = {"image": str(path)}
    image = EnsureChannelFirstd("image")(LoadImaged("image", reader=RadiographReader(), dtype=None, image_only=True)(data))["image"]
    out = DeformAnonymize(str(weights), mu=MU, expected_sha256=sha)(image)
    kind = detect_format(path, path.read_bytes()[:512])
    rel = Pseudonymizer(load_key(workdir / "steward.key")).output_relpath(PurePosixPath(name), SUFFIXES[kind])
    return rel.as_posix(), out.as_tensor()[0].numpy(), image.as_tensor()[0].numpy()


def _outputs(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def _pixels(path: Path) -> np.ndarray:
    if path.suffix == ".dcm":
        import pydicom

        return pydicom.dcmread(path).pixel_array
    if path.name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        return np.asarray(nib.load(path).dataobj).T  # NIfTI's (x, y) -> rows first
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def cli(workdir: Path) -> dict[str, subprocess.CompletedProcess]:
    """The ``python -m monai.bundle`` commands, independent of each other, two at a time."""
    bad = workdir / "bad_sha"  # the same bundle, but metadata.json names other weights
    shutil.copytree(workdir / "bundle", bad / "bundle")
    meta_path = bad / "bundle" / "configs" / "metadata.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "model_sha256": "ab" * 32}))
    (workdir / "export").mkdir()
    config = ("--meta_file", "bundle/configs/metadata.json", "--config_file", "bundle/configs/inference.json")
    commands = {
        "run": (workdir, "run", "--config_file", "bundle/configs/inference.json", "--dataset_dir", "in",
                "--output_dir", str(workdir / "out_png"), "--key_file", str(workdir / "steward.key"), *SMALL),
        "run_bad_sha": (bad, "run", "--config_file", "bundle/configs/inference.json",
                        "--dataset_dir", str(workdir / "in"), "--output_dir", str(bad / "out"),
                        "--key_file", str(workdir / "steward.key"), *SMALL),
        "verify_metadata": (workdir, "verify_metadata", "--meta_file", "bundle/configs/metadata.json",
                            "--filepath", "bundle/configs/schema/metadata_schema.json"),
        "verify_net_in_out": (workdir, "verify_net_in_out", "--net_id", "network_def", *config, "--device", "cpu"),
        "ckpt_export": (workdir, "ckpt_export", "network_def", "--filepath", str(workdir / "export" / "model.ts"),
                        "--ckpt_file", "bundle/models/model.pt", *config, "--use_trace", "True", *SMALL),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(_bundle_cli, *command) for name, command in commands.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def png_run(workdir: Path, cli) -> Path:
    _ok(cli["run"])
    return workdir / "out_png"


def test_run_writes_one_pseudonymized_output_per_input(workdir: Path, png_run: Path) -> None:
    outputs = _outputs(png_run)
    assert len(outputs) == len(INPUT_NAMES), sorted(outputs)
    assert sorted(Path(p).suffix for p in outputs) == [".dcm", ".png", ".png"]  # the input's own format
    for path in outputs.values():
        for name in INPUT_NAMES:
            assert Path(name).stem not in path.name
        data = path.read_bytes()
        assert not any(word.encode() in data for word in PHI)  # the DICOM header is de-identified


def test_run_pixels_equal_python_api(workdir: Path, png_run: Path) -> None:
    """Native values in, the same values' deformation out, in the input's dtype: the README chain's pixels."""
    weights = workdir / "bundle" / "models" / "model.pt"
    sha = sha256_file(weights)
    outputs = _outputs(png_run)
    for name in INPUT_NAMES:
        rel, expected, original = _reference(workdir, name, weights, sha)
        assert rel in outputs, f"{name}: expected output {rel}, got {sorted(outputs)}"
        saved = _pixels(outputs[rel])
        assert saved.shape == expected.shape == original.shape  # rows x columns of the input
        assert saved.dtype == (np.uint8 if name.endswith(".png") else np.uint16)
        np.testing.assert_array_equal(saved, expected)
        assert (saved != original).mean() > 0.1  # the deformation changed the image


def test_workflow_nifti_output_equals_python_api(workdir: Path) -> None:
    """The bundle used as a library (MONAI Label / hybrid mode) on float and integer NIfTI:
    NIfTI out, same dtype and geometry, the README chain's values."""
    import random

    import nibabel as nib
    from monai.bundle import ConfigWorkflow

    src = workdir / "in_nii"
    src.mkdir()
    rng = np.random.default_rng(1)
    affine = np.diag([0.5, 0.25, 1.0, 1.0])
    nib.save(nib.Nifti1Image(rng.random((64, 48)).astype(np.float32), affine), src / "a.nii.gz")
    nib.save(nib.Nifti1Image((rng.random((56, 40)) * 3000).astype(np.int16), affine), src / "b.nii")
    out = workdir / "out_nii"
    workflow = ConfigWorkflow(
        config_file=str(workdir / "bundle" / "configs" / "inference.json"),
        logging_file=False,
        workflow_type="inference",
        bundle_root=str(workdir / "bundle"),
        dataset_dir=str(src),
        output_dir=str(out),
        key_file=str(workdir / "steward.key"),
        phi_log_guard=False,  # the guard (tests/test_logs_no_phi.py) is process-wide: not in the test process
        **{SMALL[0][2:]: FEATURES},
    )
    states = (random.getstate(), np.random.get_state())
    with torch.random.fork_rng():  # the config seeds the global generators
        workflow.initialize()
        assert not workflow.check_properties()  # every required inference property is defined
        workflow.run()
        workflow.finalize()
    random.setstate(states[0])
    np.random.set_state(states[1])
    weights = workdir / "bundle" / "models" / "model.pt"
    outputs = _outputs(out)
    assert len(outputs) == 2
    for name, dtype in (("a.nii.gz", np.float32), ("b.nii", np.int16)):
        (workdir / "in" / name).symlink_to(src / name)  # _reference reads from in/
        try:
            rel, expected, _ = _reference(workdir, name, weights, sha256_file(weights))
        finally:
            (workdir / "in" / name).unlink()
        saved = nib.load(outputs[rel])
        assert saved.get_data_dtype() == dtype and np.allclose(saved.affine, affine)
        np.testing.assert_array_equal(np.asarray(saved.dataobj).T, expected)


def test_checksum_mismatch_refuses_to_run(workdir: Path, cli) -> None:
    """A model.pt that is not the one metadata.json names is never unpickled, nothing is written."""
    proc = cli["run_bad_sha"]
    assert proc.returncode != 0
    assert "ChecksumMismatchError" in proc.stderr and "refusing to load" in proc.stderr
    out = workdir / "bad_sha" / "out"
    assert not out.exists() or not any(out.iterdir())


def test_missing_checksum_refuses_weights(workdir: Path) -> None:
    """``model_sha256: null`` (a bundle without trained weights) loads no model.pt at all."""
    from monai.bundle import ConfigParser

    from monai_prichexy.weights import ChecksumMismatchError

    parser = ConfigParser()
    parser.read_config(str(workdir / "bundle" / "configs" / "inference.json"))
    parser.read_meta(str(workdir / "bundle" / "configs" / "metadata.json"))
    parser["_meta_#model_sha256"] = None
    parser["bundle_root"] = str(workdir / "bundle")
    with pytest.raises(RuntimeError) as info:
        parser.get_parsed_content("load_weights")
    assert isinstance(info.value.__cause__, ChecksumMismatchError)
    assert "model_sha256" in str(info.value.__cause__)


def test_load_weights_accepts_bare_generator_state_dict(workdir: Path, tmp_path: Path) -> None:
    """The inference config also loads a bare FlowFieldGenerator state dict (what training exports)."""
    from monai.bundle import ConfigParser

    net = PriCheXyNet(mu=MU, init_features=FEATURES)
    net.load_state_dict(torch.load(workdir / "bundle" / "models" / "model.pt", weights_only=True))
    generator_only = tmp_path / "generator.pt"
    torch.save(net.generator.state_dict(), generator_only)
    parser = ConfigParser()
    parser.read_config(str(workdir / "bundle" / "configs" / "inference.json"))
    parser.read_meta(str(workdir / "bundle" / "configs" / "metadata.json"))
    parser["checkpoint"] = str(generator_only)
    parser["model_sha256"] = sha256_file(generator_only)
    parser["network_def#init_features"] = FEATURES
    # a bare generator state dict carries no mu / working size: the config's apply
    parser["mu"], parser["working_size"] = MU, 256
    parser.get_parsed_content("load_weights")
    loaded = parser.get_parsed_content("network_def").state_dict()
    for key, value in net.state_dict().items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)


def test_verify_metadata_offline(cli) -> None:
    """The local schema is used as is: verify_metadata downloads only when --filepath is missing."""
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(BUNDLE / "configs" / "metadata.json"), filepath=str(SCHEMA))  # repository's
    log = _ok(cli["verify_metadata"])  # the copy with the fixture's SHA-256
    assert "skipped downloading" in log and "verified with no error" in log


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.pop("network_data_format"),
        lambda m: m.pop("model_sha256"),
        lambda m: m.update(model_sha256="not-a-sha"),
        lambda m: m["network_data_format"]["inputs"]["image"].pop("num_channels"),
        lambda m: m["network_data_format"]["outputs"]["pred"].update(spatial_shape=[1.5]),
    ],
)
def test_schema_rejects_incomplete_metadata(change) -> None:
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    jsonschema.validate(meta, schema)
    broken = copy.deepcopy(meta)
    change(broken)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_verify_net_in_out(cli) -> None:
    """The bundle's network_def as shipped (full size), against the metadata's input and output."""
    assert "verified with no error" in _ok(cli["verify_net_in_out"])


def test_ckpt_export_torchscript_matches_network(workdir: Path, cli) -> None:
    """Traced TorchScript (PriCheXyNet is not scriptable) with the metadata, same output off the trace's size."""
    from monai.data import load_net_with_metadata

    _ok(cli["ckpt_export"])
    target = workdir / "export" / "model.ts"
    ts, meta, extra = load_net_with_metadata(str(target), more_extra_files=("inference.json",))
    assert meta["model_sha256"] == sha256_file(workdir / "bundle" / "models" / "model.pt")
    assert json.loads(extra["inference.json"])["network_def"]["_target_"] == "monai_prichexy.networks.PriCheXyNet"
    net = PriCheXyNet(mu=MU, init_features=FEATURES).eval()
    net.load_state_dict(torch.load(workdir / "bundle" / "models" / "model.pt", weights_only=True))
    for size in ((64, 64), (256, 256), (512, 576)):
        x = torch.rand(1, 1, *size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            torch.testing.assert_close(ts(x), net(x), rtol=0, atol=1e-6, msg=f"at {size}")


def test_repository_bundle_ships_no_unverified_weights() -> None:
    """Weights only come from the bundle's train config, with their SHA-256 in metadata.json."""
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    weights = BUNDLE / "models" / "model.pt"
    assert (BUNDLE / "models" / "README.md").is_file()
    if weights.exists():
        assert meta["model_sha256"] == sha256_file(weights)
        # the shipped file says what it is, and it fits the inference config's network_def as is
        from monai.bundle import ConfigParser

        card = json.loads((BUNDLE / "models" / "model.json").read_text())
        assert card["stage"] in ("adversarial", "ensemble_adversarial") and card["data"]["dataset"] and card["data"]["split_file"]
        parser = ConfigParser()
        parser.read_config(str(BUNDLE / "configs" / "inference.json"))
        parser.read_meta(str(BUNDLE / "configs" / "metadata.json"))
        parser["bundle_root"] = str(BUNDLE)
        parser["device"] = "$torch.device('cpu')"
        net = parser.get_parsed_content("network_def")
        load_into_prichexynet(net, weights, expected_sha256=meta["model_sha256"])
        assert float(net.mu) == pytest.approx(card["mu"]) and float(net.mu) == pytest.approx(parser["mu"])
    else:
        assert meta["model_sha256"] is None
    for required in ("LICENSE", "docs/README.md", "configs/logging.conf", "configs/inference.json"):
        assert (BUNDLE / required).is_file(), required
    config = json.loads((BUNDLE / "configs" / "inference.json").read_text())
    for key in ("bundle_root", "device", "network_def", "preprocessing", "inferer", "postprocessing",
                "dataset", "evaluator", "handlers", "output_dir", "dataset_dir"):
        assert key in config, key
