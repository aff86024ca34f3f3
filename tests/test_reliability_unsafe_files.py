"""Unsafe files (issue #6, item 4): weights never run code, shipped weights are checksummed.

* every ``torch.load`` in the package passes ``weights_only=True`` (static check of the
  source) and nothing unpickles with ``pickle`` / ``numpy(allow_pickle=True)``;
* a checkpoint whose unpickling would run code (its payload creates a marker folder) is
  refused with a clear error by every entry point -- ``load_checkpoint``, ``load_generator``,
  ``DeformAnonymize``, the pipeline's ``Deformer`` and the CLI -- and the marker does not exist
  afterwards: the code did not run;
* the bundle's ``metadata.json`` carries the SHA-256 of ``models/model.pt``
  (``model_sha256``); a temporary copy of the bundle with a mismatching file is refused before
  anything is unpickled, by the CLI's default weights, by ``--weights`` and by the bundle's own
  ``inference.json``.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_prichexy.dicom import create_key
from tests.reliability_corpus import ACCEPTED_KINDS, tiny_checkpoint, tiny_network

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "monai_prichexy"
BUNDLE = REPO_ROOT / "bundle"


class _RunsCode:
    """Unpickling this calls ``os.mkdir(marker)``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _evil_checkpoints(folder: Path, marker: Path) -> dict[str, Path]:
    """Checkpoints that would create ``marker`` when loaded with full unpickling."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    good = tiny_network().generator.state_dict()
    paths["zip_state_dict_value"] = folder / "zip_value.pt"
    torch.save({**good, "encoders.0.0.weight": _RunsCode(marker)}, paths["zip_state_dict_value"])
    paths["zip_our_format"] = folder / "zip_format.pt"
    torch.save({"format": "monai_prichexy/1", "network": "FlowFieldGenerator", "network_kwargs": {},
                "state_dict": good, "meta": {"mu": _RunsCode(marker)}}, paths["zip_our_format"])
    paths["raw_pickle"] = folder / "raw.pt"
    paths["raw_pickle"].write_bytes(pickle.dumps({"state_dict": _RunsCode(marker)}))
    paths["legacy_format"] = folder / "legacy.pt"
    torch.save({"state_dict": _RunsCode(marker)}, paths["legacy_format"], _use_new_zipfile_serialization=False)
    paths["zip_renamed_as_model_pt"] = folder / "model.pt"
    torch.save(_RunsCode(marker), paths["zip_renamed_as_model_pt"])
    return paths


def test_marker_payload_really_runs_code_without_weights_only(tmp_path):
    """Guard: the payload is live -- plain unpickling creates the marker."""
    marker = tmp_path / "pwned"
    paths = _evil_checkpoints(tmp_path / "ckpt", marker)
    with open(paths["raw_pickle"], "rb") as handle:
        pickle.load(handle)  # noqa: S301 - deliberately unsafe, to prove the payload works
    assert marker.is_dir()


@pytest.mark.parametrize("which", ["zip_state_dict_value", "zip_our_format", "raw_pickle", "legacy_format", "zip_renamed_as_model_pt"])
def test_code_running_checkpoint_refused_everywhere(tmp_path, which):
    from monai_prichexy.pipeline import Deformer
    from monai_prichexy.transforms import DeformAnonymize, DeformAnonymized
    from monai_prichexy.weights import UnsafeCheckpointError, load_checkpoint, load_generator, load_network

    marker = tmp_path / "pwned"
    path = _evil_checkpoints(tmp_path / "ckpt", marker)[which]
    entry_points = [
        lambda: load_checkpoint(path),
        lambda: load_generator(path),
        lambda: load_network(path, network="FlowFieldGenerator"),
        lambda: DeformAnonymize(path, mu=0.01),
        lambda: DeformAnonymized("image", generator=path, mu=0.01),
        lambda: Deformer(path, mu=0.01),
    ]
    for load in entry_points:
        with pytest.raises(UnsafeCheckpointError) as info:
            load()
        assert path.name in str(info.value)
        assert "refused" in str(info.value) or "not a" in str(info.value)
        assert not marker.exists(), "loading the checkpoint ran its code"


def test_every_torch_load_in_the_package_is_weights_only():
    offenders = []
    for source in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            where = f"{source.relative_to(REPO_ROOT)}:{node.lineno}"
            keywords = {k.arg: k.value for k in node.keywords}
            if name in ("torch.load", "load") and name == "torch.load":
                value = keywords.get("weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    offenders.append(f"{where}: torch.load without weights_only=True")
            elif name in ("pickle.load", "pickle.loads", "cPickle.load", "dill.load", "torch.jit.load", "joblib.load"):
                offenders.append(f"{where}: {name}")
            elif name in ("np.load", "numpy.load"):
                value = keywords.get("allow_pickle")
                if isinstance(value, ast.Constant) and value.value is True:
                    offenders.append(f"{where}: np.load(allow_pickle=True)")
    assert not offenders, offenders


def test_load_checkpoint_calls_torch_load_weights_only(tmp_path, monkeypatch):
    from monai_prichexy.weights import load_generator

    path = tiny_checkpoint(tmp_path / "g.pt")
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_generator(path)
    assert calls == [True]


def test_checkpoint_with_non_tensor_objects_is_not_a_state_dict(tmp_path):
    """Allowed-by-pickle-but-not-weights content (a numpy array smuggled in) is refused."""
    from monai_prichexy.weights import UnsafeCheckpointError, load_checkpoint

    path = tmp_path / "numpy.pt"
    torch.save({"state_dict": {"w": np.zeros(3)}}, path)
    with pytest.raises(UnsafeCheckpointError, match="numpy.pt"):
        load_checkpoint(path)


@pytest.mark.parametrize("damage", ["truncated", "zip_garbage", "empty", "directory"])
def test_damaged_checkpoints_give_clear_errors(tmp_path, damage):
    from monai_prichexy.weights import UnsafeCheckpointError, load_checkpoint

    path = tiny_checkpoint(tmp_path / "g.pt")
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "zip_garbage":
        with zipfile.ZipFile(tmp_path / "g2.pt", "w") as archive:
            archive.writestr("archive/data.pkl", b"\x80\x04garbage")
        path = tmp_path / "g2.pt"
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
        path.mkdir()
    with pytest.raises((UnsafeCheckpointError, FileNotFoundError)) as info:
        load_checkpoint(path)
    assert path.name in str(info.value)


# ------------------------------------------------------------------ bundle checksum


def _bundle_copy(tmp_path: Path, model: Path | None, sha256: str | None) -> Path:
    root = tmp_path / "bundle"
    shutil.copytree(BUNDLE / "configs", root / "configs")
    (root / "models").mkdir(parents=True)
    if model is not None:
        shutil.copyfile(model, root / "models" / "model.pt")
    meta_path = root / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["model_sha256"] = sha256
    meta_path.write_text(json.dumps(meta, indent=4))
    return root


@pytest.fixture(scope="module")
def metadata():
    path = BUNDLE / "configs" / "metadata.json"
    if not path.is_file():
        pytest.skip("bundle/configs/metadata.json not there yet")
    return json.loads(path.read_text())


def test_bundle_metadata_has_a_model_sha256_key(metadata):
    assert "model_sha256" in metadata, "the bundle must record the SHA-256 of models/model.pt"
    shipped = BUNDLE / "models" / "model.pt"
    if shipped.is_file():
        from monai_prichexy.weights import sha256_file

        assert metadata["model_sha256"] == sha256_file(shipped), "metadata.json does not match the shipped weights"
    else:
        assert metadata["model_sha256"] in (None, ""), "a checksum without weights"


def _cli(argv, capsys):
    from monai_prichexy import cli

    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.fixture()
def small_input(tmp_path):
    folder = tmp_path / "in"
    ACCEPTED_KINDS[0].build(folder / "a.dcm")
    return folder


@pytest.mark.timeout(120)
def test_cli_checks_the_bundle_checksum_before_loading(tmp_path, metadata, small_input, capsys, monkeypatch):
    from monai_prichexy import bundle_files as pipeline_weights
    from monai_prichexy.weights import sha256_file

    good = tiny_checkpoint(tmp_path / "good.pt", seed=0)
    other = tiny_checkpoint(tmp_path / "other.pt", seed=1)
    common = ["--key-file", tmp_path / "k.key", "--working-size", "32", "--no-progress", "--device", "cpu"]
    create_key(tmp_path / "k.key")

    # 1. matching checksum: used, and said to be checked
    root = _bundle_copy(tmp_path / "b1", good, sha256_file(good))
    monkeypatch.setattr(pipeline_weights, "bundle_root", lambda: root)
    code, err = _cli(["anonymize", small_input, tmp_path / "out1", *common], capsys)
    assert code == 0, err
    assert "checked" in err and "not checked" not in err

    # 2. another file in place of the shipped one: refused (default weights and --weights)
    root = _bundle_copy(tmp_path / "b2", other, sha256_file(good))
    monkeypatch.setattr(pipeline_weights, "bundle_root", lambda: root)
    for extra in ([], ["--weights", root / "models" / "model.pt"]):
        code, err = _cli(["anonymize", small_input, tmp_path / "out2", *extra, *common], capsys)
        assert code == 2, err
        assert "SHA-256" in err and sha256_file(good) in err and "refusing" in err
        assert not (tmp_path / "out2").exists() or not any((tmp_path / "out2").rglob("*.dcm"))

    # 3. a code-running file with a mismatching checksum: refused before unpickling
    marker = tmp_path / "pwned"
    evil = _evil_checkpoints(tmp_path / "evil", marker)["zip_renamed_as_model_pt"]
    root = _bundle_copy(tmp_path / "b3", evil, sha256_file(good))
    monkeypatch.setattr(pipeline_weights, "bundle_root", lambda: root)
    code, err = _cli(["anonymize", small_input, tmp_path / "out3", *common], capsys)
    assert code == 2 and "SHA-256" in err, err
    assert not marker.exists()

    # 4. even with its own (matching) checksum, it is refused by weights_only
    root = _bundle_copy(tmp_path / "b4", evil, sha256_file(evil))
    monkeypatch.setattr(pipeline_weights, "bundle_root", lambda: root)
    code, err = _cli(["anonymize", small_input, tmp_path / "out4", *common], capsys)
    assert code == 2 and "refused" in err, err
    assert not marker.exists()

    # 5. an explicit wrong --weights-sha256 wins over everything
    code, err = _cli(["anonymize", small_input, tmp_path / "out5", "--weights", good, "--weights-sha256", "0" * 64, *common], capsys)
    assert code == 2 and "SHA-256" in err, err


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", ["match", "mismatch", "missing", "evil_mismatch"])
def test_bundle_inference_config_checks_the_checksum(tmp_path, metadata, case):
    from monai.bundle import ConfigParser

    from monai_prichexy.weights import ChecksumMismatchError, UnsafeCheckpointError, sha256_file

    good = tiny_checkpoint(tmp_path / "good.pt")
    marker = tmp_path / "pwned"
    if case == "evil_mismatch":
        model = _evil_checkpoints(tmp_path / "evil", marker)["zip_renamed_as_model_pt"]
    elif case == "mismatch":
        model = tiny_checkpoint(tmp_path / "other.pt", seed=3)
    else:
        model = good
    root = _bundle_copy(tmp_path, model, None if case == "missing" else sha256_file(good))
    parser = ConfigParser()
    parser.read_config(root / "configs" / "inference.json")
    parser.read_meta(root / "configs" / "metadata.json")
    parser["bundle_root"] = str(root)
    parser["device"] = "$torch.device('cpu')"
    parser["network_def"]["init_features"] = 2
    if case == "match":
        parser.get_parsed_content("load_weights")
        return
    with pytest.raises((ChecksumMismatchError, UnsafeCheckpointError, RuntimeError)) as info:
        parser.get_parsed_content("load_weights")
    text = str(info.value) + str(getattr(info.value, "__cause__", ""))
    assert "SHA-256" in text or "MISSING" in text, text
    assert not marker.exists()
