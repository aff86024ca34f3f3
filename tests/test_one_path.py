"""One reader, one view, one inference path (issue 13, items 1 and 2).

The README's ``Compose`` chain, ``monai-prichexy anonymize``, the bundle's ``inference.json`` and
``DeformAnonymize`` give the same pixels for the same file: PNG 8 and 16 bit, DICOM (MONOCHROME1,
windowed, with and without a suffix, with and without the Part 10 preamble), in nested folders.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from monai_prichexy.weights import sha256_file
from tests.dicom_fixtures import make_radiograph_dataset, phi_needles, save
from tests.test_pipeline_support import png_array, tiny_weights, write_png

REPO = Path(__file__).resolve().parents[1]
INFERENCE = REPO / "bundle" / "configs" / "inference.json"


def _readme_chain(weights: Path):
    """The README's snippet, run as written (weights path swapped); returns ``path -> out``."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", readme.split("## DeformAnonymize in a MONAI chain", 1)[1], re.S).group(1)
    assert '"bundle/models/model.pt"' in code and '"radiograph.png"' in code
    code = code.replace('"bundle/models/model.pt"', repr(str(weights)))
    code = code.replace('out = anonymize({"image": "radiograph.png"})["image"]', "")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    return lambda path: scope["anonymize"]({"image": str(path)})["image"]


def _pixels(path: Path) -> np.ndarray:
    if path.suffix == ".dcm":
        import pydicom

        return pydicom.dcmread(path).pixel_array
    return np.asarray(Image.open(path))


def _outputs(folder: Path) -> dict[str, Path]:
    return {
        p.relative_to(folder).as_posix(): p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict:
    """A nested input tree, weights and a key; the CLI's outputs of it."""
    from monai_prichexy.cli import main
    from monai_prichexy.dicom import create_key

    root = tmp_path_factory.mktemp("one_path")
    weights = tiny_weights(root / "g.pt")
    key = create_key(root / "steward.key")
    src = root / "in"
    files = {
        "png8": write_png(src / "Doe_Jane" / "00000042_000.png", png_array(40, 56)),
        "png16": write_png(src / "Doe_Jane" / "2023" / "00000042_001.png", png_array(44, 60, dtype=np.uint16, seed=1)),
        "dicom": save(make_radiograph_dataset(48, 40, photometric="MONOCHROME1", seed=2), src / "Doe_Jane" / "2023" / "IM0001"),
        "raw_dicom": save(make_radiograph_dataset(36, 52, seed=3), src / "Smith" / "IM0002", raw=True),
    }
    (src / "Smith" / "notes.txt").write_text("not an image")
    (src / "Smith" / "README").write_text("no suffix, not DICOM either")
    assert main(["anonymize", str(src), str(root / "out_cli"), "--weights", str(weights),
                 "--key-file", str(root / "steward.key"), "--no-progress", "-q"]) == 0
    return {"root": root, "weights": weights, "key": key, "src": src, "files": files, "cli": root / "out_cli"}


def _cli_output(archive: dict, name: str) -> Path:
    from pathlib import PurePosixPath

    from monai_prichexy.formats import SUFFIXES, detect_format
    from monai_prichexy.pipeline import Pseudonymizer

    path = archive["files"][name]
    kind = detect_format(path, path.read_bytes()[:512])
    rel = Pseudonymizer(archive["key"]).output_relpath(PurePosixPath(path.relative_to(archive["src"]).as_posix()), SUFFIXES[kind])
    return archive["cli"] / rel


@pytest.mark.parametrize("name", ["png8", "png16", "dicom", "raw_dicom"])
def test_readme_chain_gives_the_clis_pixels(archive, name):
    out = _readme_chain(archive["weights"])(archive["files"][name])
    chain = out.as_tensor()[0].numpy()
    cli = _pixels(_cli_output(archive, name))
    assert chain.shape == cli.shape
    np.testing.assert_array_equal(chain, cli)
    original = _pixels(archive["files"][name]) if name.startswith("png") else None
    if original is not None:
        assert cli.dtype == original.dtype  # PNG 16-bit stays 16-bit
        assert (cli != original).mean() > 0.1


def test_network_view_is_the_dicom_readers_view_and_the_reports(archive):
    from monai.transforms import EnsureChannelFirst, LoadImage

    from monai_prichexy.data import RadiographReader
    from monai_prichexy.dicom import read_radiograph
    from monai_prichexy.pipeline.report import load_view
    from monai_prichexy.transforms import NetworkView

    for name in ("dicom", "raw_dicom", "png16"):
        path = archive["files"][name]
        image = EnsureChannelFirst()(LoadImage(reader=RadiographReader(), dtype=None, image_only=True)(path))
        view = NetworkView()(image)[0].numpy()
        kind = "png" if name == "png16" else "dicom"
        np.testing.assert_array_equal(view, load_view(path, kind))
        if kind == "dicom":
            np.testing.assert_array_equal(view, read_radiograph(path).view)  # Modality/VOI LUT, MONOCHROME1 inverted
        assert view.dtype == np.float32 and 0.0 <= view.min() and view.max() <= 1.0


def test_reader_meta_holds_no_phi(archive):
    from monai.transforms import LoadImage

    from monai_prichexy.data import RadiographReader
    from monai_prichexy.transforms import strip_phi_meta

    image = LoadImage(reader=RadiographReader(), dtype=None, image_only=True)(archive["files"]["dicom"])
    assert tuple(image.shape) == (48, 40)  # rows first, without RowsFirst
    meta = strip_phi_meta(image.meta)
    text = repr({k: v for k, v in meta.items() if k != "radiograph_view_lut"}).encode()
    assert not [n for n in phi_needles() if n in text] and b"Doe" not in text and b"IM0001" not in text
    assert meta["radiograph_format"] == "dicom" and meta["radiograph_dtype"] == "uint16"


def _bundle_run(archive: dict, out: Path) -> None:
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=str(INFERENCE),
        meta_file=str(REPO / "bundle" / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type="inference",
        bundle_root=str(REPO / "bundle"),
        checkpoint=str(archive["weights"]),
        model_sha256=sha256_file(archive["weights"]),
        dataset_dir=str(archive["src"]),
        output_dir=str(out),
        key_file=str(archive["root"] / "steward.key"),
        phi_log_guard=False,  # the guard is process-wide (tests/test_logs_no_phi.py)
        **{"network_def#init_features": 2},
    )
    states = (random.getstate(), np.random.get_state())
    with torch.random.fork_rng():  # the config seeds the global generators
        workflow.initialize()
        assert not workflow.check_properties()
        workflow.run()
        workflow.finalize()
    random.setstate(states[0])
    np.random.set_state(states[1])


def test_bundle_writes_the_clis_files_byte_for_byte(archive):
    out = archive["root"] / "out_bundle"
    _bundle_run(archive, out)
    bundle, cli = _outputs(out), _outputs(archive["cli"])
    assert sorted(bundle) == sorted(cli) and len(bundle) == 4  # nested folders walked, non-images left out
    for rel, path in bundle.items():
        if path.suffix == ".dcm":  # de-identified under the key, as the CLI does: same header, same pixels
            assert path.read_bytes() == cli[rel].read_bytes(), rel
            assert not [n for n in phi_needles() if n in path.read_bytes()]
        else:
            assert path.read_bytes() == cli[rel].read_bytes(), rel
    # ... and equal to DeformAnonymize of the stored values
    from monai_prichexy.transforms import DeformAnonymize

    png16 = np.array(Image.open(archive["files"]["png16"]))
    expected = DeformAnonymize(str(archive["weights"]))(png16[None])[0]
    saved = np.asarray(Image.open(bundle[_cli_output(archive, "png16").relative_to(archive["cli"]).as_posix()]))
    assert saved.dtype == np.uint16
    np.testing.assert_array_equal(saved, expected)
    # a rerun writes the same names and bytes: no duplicates
    first = {rel: p.read_bytes() for rel, p in bundle.items()}
    _bundle_run(archive, out)
    again = _outputs(out)
    assert sorted(again) == sorted(first) and all(again[rel].read_bytes() == first[rel] for rel in first)


def test_bundle_default_output_dir_is_outside_the_repository(tmp_path, monkeypatch):
    from monai.bundle import ConfigParser

    monkeypatch.chdir(REPO)  # as a user runs it, from the repository root
    parser = ConfigParser()
    parser.read_config(str(INFERENCE))
    out = Path(parser.get_parsed_content("output_dir")).resolve()
    assert REPO.resolve() not in (out, *out.parents), out
    config = json.loads(INFERENCE.read_text())
    assert "bundle_root" not in json.dumps(config["output_dir"]) and config["key_file"] is None
    # no key, no run; the output folder must not be the input folder
    from monai_prichexy.pipeline.datalist import bundle_key, check_output_dir

    with pytest.raises(ValueError, match="key_file is required"):
        bundle_key(None)
    with pytest.raises(ValueError, match="inside"):
        check_output_dir(tmp_path / "in" / "out", tmp_path / "in")
