"""The parts of the MONAI Label app that run without MONAI Label (main environment).

The anonymized cache (:mod:`monai_prichexy.label.cache`: the CLI as a subprocess, resume,
refusals without PHI, top-level links), the steward's ``monai-prichexy label-map``, the
``anonymize`` task's file handling (:mod:`monai_prichexy.label.deform`), the launcher's
set-up, and that the modules the label environment imports need no pydicom 3. The server
itself is tested in ``test_label_server.py`` (label environment).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from monai_prichexy import __version__
from monai_prichexy.cli import main as cli_main
from monai_prichexy.dicom import create_key
from monai_prichexy.label import ENV, LabelSettings
from monai_prichexy.label.cache import CacheError, anonymize_command, link_flat, scrub, sync_cache
from monai_prichexy.label.deform import anonymize_file
from monai_prichexy.label.launcher import APP_MAIN, build_parser, prepare_work, server_command
from monai_prichexy.label.mapping import label_stem
from monai_prichexy.networks import FlowFieldGenerator, PriCheXyNet
from monai_prichexy.transforms import DeformAnonymize
from monai_prichexy.weights import save_checkpoint
from tests.dicom_fixtures import PATIENT_FAMILY, PATIENT_GIVEN, PATIENT_ID, make_radiograph_dataset, save

REPO_ROOT = Path(__file__).resolve().parents[1]
CLI = (sys.executable, "-m", "monai_prichexy.cli")
PHI_DIR = f"{PATIENT_FAMILY}_{PATIENT_GIVEN}"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("label_model") / "model.pt"
    save_checkpoint(path, PriCheXyNet(FlowFieldGenerator(init_features=2), mu=0.01, working_size=32))
    return path


@pytest.fixture(scope="module")
def synced(tmp_path_factory, weights, _pythonpath):
    """Originals with PHI in names and headers (one broken), a key, and a cache made by :func:`sync_cache`."""
    tmp = tmp_path_factory.mktemp("label_steward")
    root = tmp / PHI_DIR
    save(make_radiograph_dataset(rows=48, cols=40), root / "study" / f"{PATIENT_ID}.dcm")
    save(make_radiograph_dataset(rows=40, cols=40, seed=1, modality="CR"), root / f"{PATIENT_FAMILY}_2.dcm")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (36, 44), dtype=np.uint8)).save(root / f"{PATIENT_GIVEN}.png")
    (root / f"{PATIENT_FAMILY}_broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    key = tmp / "k.key"
    create_key(key)
    cache = tmp / "work" / "cache"
    result = sync_cache(_settings(root, key, weights), cache)
    return {"tmp": tmp, "input": root, "key": key, "cache": cache, "result": result}


def _settings(inputs: Path, key: Path, weights: Path, **kw) -> LabelSettings:
    return LabelSettings(input=inputs, key_file=key, anonymizer=CLI, weights=weights, **kw)


@pytest.fixture(scope="module", autouse=True)
def _pythonpath():
    """The CLI subprocesses import this checkout (not another install of the package)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
        yield


def test_settings_from_and_to_the_environment(tmp_path):
    settings = LabelSettings(input=tmp_path / "in", key_file=tmp_path / "k", anonymizer=("/opt/a b/monai-prichexy",),
                             workers=2)
    env = settings.to_environ()
    assert env[ENV["anonymizer"]] == "'/opt/a b/monai-prichexy'"
    assert LabelSettings.from_environ(env) == settings
    assert LabelSettings.from_environ({}) == LabelSettings()
    with pytest.raises(ValueError, match="PRICHEXY_DEID_KEY_FILE and PRICHEXY_LABEL_ANONYMIZER"):
        LabelSettings.from_environ({ENV["input"]: "/in"})
    with pytest.raises(ValueError, match="integer"):
        LabelSettings.from_environ({ENV["workers"]: "two"})


def test_scrub_hides_the_input_and_the_listing(tmp_path):
    text = (f"monai-prichexy: error: output folder x is inside the input folder {tmp_path}/{PHI_DIR}\n"
            f"FAILED (2):\n  {PHI_DIR}/a.dcm: bad\n  {PHI_DIR}/b.dcm: bad\nSKIPPED (not copied) (1):\n  notes.txt: no\ndone")
    out = scrub(text, tmp_path / PHI_DIR)
    assert PHI_DIR not in out and "notes.txt" not in out
    assert "<input>" in out and "FAILED (2): (names of originals not shown here)" in out and out.endswith("done")


def test_sync_cache_is_the_cli_output(synced, weights, caplog):
    result, cache, inputs, key = synced["result"], synced["cache"], synced["input"], synced["key"]
    # the broken original is not served; the others are
    assert result.exit_code == 1 and result.counts["ok"] == 3 and result.counts["failed"] == 1 and result.links == 1
    reference = synced["tmp"] / "reference"
    assert cli_main(["anonymize", str(inputs), str(reference), "--key-file", str(key), "--weights", str(weights),
                     "-q", "--no-progress"]) == 1
    top = sorted(p.name for p in cache.iterdir() if p.suffix in (".dcm", ".png"))
    assert len(top) == 3
    for name in top:  # flat view: links for files in sub-folders, all inside the cache
        served = cache / name
        if served.is_symlink():
            assert not os.path.isabs(os.readlink(served)) and served.resolve().is_relative_to(cache.resolve())
        [ref] = list(reference.rglob(name))
        assert served.read_bytes() == ref.read_bytes()
    assert not any(PATIENT_FAMILY in str(p) or PATIENT_GIVEN in str(p) for p in cache.rglob("*"))


def test_sync_cache_resumes(synced, weights, caplog):
    with caplog.at_level("INFO"):
        again = sync_cache(_settings(synced["input"], synced["key"], weights), synced["cache"])
    assert again.counts["ok"] == 0 and again.counts["already_done"] == 3 and again.links == 1
    assert again.exit_code == 1 and "1 original(s) were not anonymized" in caplog.text
    assert PATIENT_FAMILY not in caplog.text and str(synced["input"]) not in caplog.text


def test_sync_cache_refusals_name_no_original(synced, weights, tmp_path):
    inputs, key, cache = synced["input"], synced["key"], synced["cache"]
    other = tmp_path / "other.key"
    create_key(other)
    with pytest.raises(CacheError) as err:  # the CLI refuses to mix two keys in one cache
        sync_cache(_settings(inputs, other, weights), cache)
    assert "key" in str(err.value) and PATIENT_FAMILY not in str(err.value)
    fake = LabelSettings(input=inputs, key_file=key, anonymizer=(sys.executable, "-c", "print('monai-prichexy 0.0.0')"))
    with pytest.raises(CacheError, match=f"must be the monai-prichexy {__version__} command"):
        sync_cache(fake, cache)
    missing = LabelSettings(input=inputs, key_file=key, anonymizer=(str(tmp_path / "nope"),))
    with pytest.raises(CacheError, match="does not run"):
        sync_cache(missing, cache)


def test_link_flat_removes_stale_links(tmp_path):
    cache = tmp_path / "cache"
    (cache / "d").mkdir(parents=True)
    os.symlink("d/gone.dcm", cache / "gone.dcm")
    assert link_flat(cache) == 0 and not (cache / "gone.dcm").is_symlink()


def test_anonymize_command_passes_the_settings(tmp_path):
    settings = LabelSettings(input=tmp_path / "in", key_file=tmp_path / "k", anonymizer=("mp",), weights=tmp_path / "w.pt",
                             weights_sha256="a" * 64, workers=3)
    cmd = anonymize_command(settings, tmp_path / "cache")
    assert cmd[:4] == ["mp", "anonymize", str(tmp_path / "in"), str(tmp_path / "cache")]
    for option, value in (("--key-file", str(tmp_path / "k")), ("--workers", "3"), ("--weights", str(tmp_path / "w.pt")),
                          ("--weights-sha256", "a" * 64)):
        assert cmd[cmd.index(option) + 1] == value


def _labels_for(cache_ids: list[str], labels: Path) -> None:
    (labels / "final").mkdir(parents=True)
    for i, pseudonym in enumerate(cache_ids):
        (labels / "final" / f"{pseudonym}.nii.gz").write_bytes(b"label %d" % i)


def test_label_map_recomputes_the_pseudonyms(tmp_path, synced, capsys):
    key_path, cache, inputs = synced["key"], synced["cache"], synced["input"]
    ids = sorted(p.name.split(".")[0] for p in cache.iterdir() if p.suffix in (".dcm", ".png"))
    labels = cache / "labels"
    _labels_for(ids, labels)
    out = tmp_path / "mapped"
    assert cli_main(["label-map", "--key-file", str(key_path), "--input", str(inputs), "--labels", str(labels),
                     "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "mapping.csv", encoding="utf-8")))
    assert sorted(r["pseudonym"] for r in rows) == ids
    by_original = {r["original"]: r for r in rows}
    dicom = by_original[f"study/{PATIENT_ID}.dcm"]
    ds = pydicom.dcmread(inputs / "study" / f"{PATIENT_ID}.dcm")
    assert dicom["StudyInstanceUID"] == ds.StudyInstanceUID and dicom["SOPInstanceUID"] == ds.SOPInstanceUID
    assert (out / "final" / "study" / f"{PATIENT_ID}.nii.gz").read_bytes() == (
        labels / "final" / f"{dicom['pseudonym']}.nii.gz").read_bytes()
    assert by_original[f"{PATIENT_GIVEN}.png"]["StudyInstanceUID"] == ""

    # a label whose pseudonym no original has: listed, exit status 1
    (labels / "final" / "0123456789abcdef0123.png").write_bytes(b"x")
    assert cli_main(["label-map", "--key-file", str(key_path), "--input", str(inputs), "--labels", str(labels),
                     "--out", str(tmp_path / "mapped2")]) == 1
    assert "0123456789abcdef0123.png" in capsys.readouterr().err

    # another key: refused (the cache's run.json says which key made it)
    other = tmp_path / "other.key"
    create_key(other)
    assert cli_main(["label-map", "--key-file", str(other), "--input", str(inputs), "--labels", str(labels),
                     "--out", str(tmp_path / "mapped3")]) == 2
    assert "another key" in capsys.readouterr().err
    assert cli_main(["label-map", "--key-file", str(key_path), "--input", str(inputs), "--labels", str(labels),
                     "--out", str(inputs / "mapped")]) == 2
    assert cli_main(["label-map", "--key-file", str(tmp_path / "missing.key"), "--input", str(inputs), "--labels",
                     str(labels), "--out", str(tmp_path / "m4")]) == 2


def test_label_stem():
    assert label_stem("abc.nii.gz") == ("abc", ".nii.gz")
    assert label_stem("abc.png") == ("abc", ".png")
    assert label_stem("abc") == ("abc", "")


def test_anonymize_task_file_handling(tmp_path, weights):
    transform = DeformAnonymize(weights)
    png = tmp_path / "in.png"
    arr = (np.random.default_rng(1).random((40, 52)) * 65535).astype(np.uint16)
    Image.fromarray(arr).save(png)
    out, info = anonymize_file(transform, png, tmp_path)
    assert out.suffix == ".png" and info["shape"] == [40, 52] and info["dtype"] == "uint16"
    assert np.array_equal(np.asarray(Image.open(out)), transform(arr[None])[0])  # = DeformAnonymize = the CLI's pixels

    dcm = save(make_radiograph_dataset(rows=48, cols=40, photometric="MONOCHROME1", phi=False), tmp_path / "x.dcm")
    out, info = anonymize_file(transform, dcm, tmp_path)
    src, res = pydicom.dcmread(dcm), pydicom.dcmread(out)
    assert out.suffix == ".dcm" and res.SOPInstanceUID == src.SOPInstanceUID
    assert res.pixel_array.shape == src.pixel_array.shape and res.pixel_array.dtype == src.pixel_array.dtype
    assert 0 <= res.pixel_array.min() and res.pixel_array.max() < 2 ** int(src.BitsStored)
    with pytest.raises(ValueError, match="not a supported image"):
        (tmp_path / "x.txt").write_text("hello")
        anonymize_file(transform, tmp_path / "x.txt", tmp_path)
    with pytest.raises(ValueError, match="not a file"):
        anonymize_file(transform, tmp_path, tmp_path)


def test_launcher_lays_out_work_and_runs_monailabel(tmp_path):
    app, cache = prepare_work(tmp_path / "work")
    assert (app / "main.py").read_text() == APP_MAIN and cache.is_dir()
    cmd = server_command(app, cache, "127.0.0.1", 8123, ["-v", "DEBUG"])
    assert cmd[1:4] == ["-m", "monailabel.main", "start_server"] and cmd[cmd.index("--studies") + 1] == str(cache)
    args = build_parser().parse_args(["start", "--work", "w", "--port", "9", "--", "--workers", "1"])
    assert args.port == 9 and args.host == "127.0.0.1" and args.server_args == ["--workers", "1"]
    proc = subprocess.run([sys.executable, "-m", "monai_prichexy.label", "start", "--input", str(tmp_path),
                           "--work", str(tmp_path / "w2")], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "--key-file and --anonymizer must be set" in proc.stderr


def test_label_env_modules_need_no_pydicom3():
    """The MONAI Label env has pydicom 2: what it imports of the project must not need pydicom.pixels."""
    code = (
        "import sys; sys.modules['pydicom.pixels'] = None\n"
        "import monai_prichexy.formats, monai_prichexy.pipeline.manifest, monai_prichexy.bundle_files\n"
        "import monai_prichexy.label, monai_prichexy.label.cache, monai_prichexy.label.deform, monai_prichexy.label.launcher\n"
        "import monai_prichexy.transforms\n"
        "assert 'monai_prichexy.dicom' not in sys.modules, 'the DICOM code was imported'\n"
        "import monai_prichexy.pipeline as p; assert callable(p.resolve_weights)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
