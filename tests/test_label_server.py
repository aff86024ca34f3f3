"""The MONAI Label app, served for real on 127.0.0.1 and used through its REST API.

Runs in the MONAI Label environment (``monai_prichexy/label/requirements.txt``: numpy 1.26,
pydicom 2); the batch anonymization runs in the main environment, whose interpreter is
``PRICHEXY_MAIN_PYTHON`` (default: ``.venv/bin/python`` of the repository, as ``.ci/run`` builds
it). Elsewhere this module skips, except where ``PRICHEXY_REQUIRE_EXTRAS`` names ``label``
(the CI job), where a missing piece fails.

The input has made-up PHI in headers, folder and file names (``monai_prichexy.demo`` and
``tests/dicom_fixtures.py``). Every byte the server hands out -- every endpoint's answer,
every image, the log it serves and what it prints -- is searched for that PHI; each served
image must be byte-identical to what ``monai-prichexy anonymize`` writes for it with the same
key; labels saved through the API must map back to the original through ``monai-prichexy
label-map``. The server is stopped by its process id (its process group) in the fixture's
teardown.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.extras import require_extra

pytestmark = pytest.mark.extra("label")  # in the label CI job (PRICHEXY_REQUIRE_EXTRAS=label) a skip fails
require_extra("label", "monailabel")
requests = require_extra("label", "requests")


def _main_python() -> Path:
    path = Path(os.environ.get("PRICHEXY_MAIN_PYTHON") or REPO_ROOT / ".venv" / "bin" / "python")
    if not path.is_file():
        required = "label" in os.environ.get("PRICHEXY_REQUIRE_EXTRAS", "")
        message = f"main environment's python not found at {path} (set PRICHEXY_MAIN_PYTHON)"
        if required:
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=True)
    return path


MAIN_PY = _main_python()
ANONYMIZER = f"{MAIN_PY} -m monai_prichexy.cli"
SERVED: list[tuple[str, bytes]] = []  # (what, bytes): everything the server handed out

# Made in the main environment (pydicom 3): the demo tree (PHI in headers, folder and file
# names; DICOM MONOCHROME1/2, RLE, PNG 8/16 bit), one DICOM full of the fixtures' PHI, and
# one DICOM without PHI whose header is "already anonymized" for the infer task.
_MAKE_INPUT = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from monai_prichexy.demo import DEMO_PHI, make_demo_input
from tests import dicom_fixtures as fx
root, plain, needles_file = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
make_demo_input(root, size=96)
ds = fx.make_radiograph_dataset(rows=80, cols=72, bits_stored=12, modality="CR", photometric="MONOCHROME1")
fx.save(ds, root / f"{fx.PATIENT_FAMILY}_{fx.PATIENT_GIVEN}" / f"{fx.PATIENT_ID}.dcm")
from pydicom.uid import generate_uid
ds = fx.make_radiograph_dataset(rows=72, cols=64, bits_stored=12, phi=False, seed=3)
uids = {}
def fresh(d, elem):  # what a header de-identification upstream of this server left: new UIDs, no dates
    if elem.VR == "UI" and elem.keyword not in ("SOPClassUID", "ReferencedSOPClassUID"):
        elem.value = uids.setdefault(str(elem.value), generate_uid())
    elif elem.VR in ("DA", "DT", "TM"):
        elem.value = ""
ds.walk(fresh)
ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
fx.save(ds, plain)
needles = {n.decode("latin-1") for n in fx.phi_needles()}
needles.update(v for v in DEMO_PHI.values())
needles.update(p for v in DEMO_PHI.values() for p in v.replace("^", " ").split() if len(p) >= 4)
for path in root.rglob("*"):
    rel = path.relative_to(root)
    needles.update(part for part in rel.parts if len(part) >= 5)
    needles.add(path.stem if len(path.stem) >= 5 else str(rel))
needles.update(["1.2.826.0.1.3680043.8.498.99.1", str(root), str(root.resolve())])
needles_file.write_text(json.dumps(sorted(needles)))
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _main(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("PRICHEXY_REQUIRE_EXTRAS", None)
    proc = subprocess.run([str(MAIN_PY), *args], capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args[:3]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


class Server:
    """``python -m monai_prichexy.label start`` in its own process group, stopped by its pid."""

    def __init__(self, inputs: Path, work: Path, key: Path, logs: Path) -> None:
        self.work = work
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out_path, self.err_path = logs.with_suffix(".out"), logs.with_suffix(".err")
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        command = [
            sys.executable, "-m", "monai_prichexy.label", "start", "--input", str(inputs), "--work", str(work),
            "--key-file", str(key), "--anonymizer", ANONYMIZER, "--port", str(self.port),
        ]
        self.started = time.perf_counter()
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True, cwd=work.parent)
        self.ready_s = self.wait_ready()

    def wait_ready(self, timeout: float = 300.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.err_path.read_text()[-4000:]}")
            try:
                if requests.get(self.url + "/info/", timeout=2).status_code == 200:
                    return time.perf_counter() - self.started
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.err_path.read_text()[-4000:]}")

    def get(self, path: str, **kwargs) -> requests.Response:
        response = requests.get(self.url + path, timeout=120, **kwargs)
        SERVED.append((f"GET {path}", response.content))
        return response

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        response = requests.request(method, self.url + path, timeout=300, **kwargs)
        SERVED.append((f"{method} {path}", response.content))
        return response

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        SERVED.append(("server stdout", self.out_path.read_bytes()))
        SERVED.append(("server stderr", self.err_path.read_bytes()))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("label")
    inputs, plain, needles = root / "input", root / "plain_header_anonymized.dcm", root / "needles.json"
    _main("-c", _MAKE_INPUT, str(inputs), str(plain), str(needles), str(REPO_ROOT))
    key = root / "steward.key"
    _main("-m", "monai_prichexy.cli", "keygen", str(key))
    reference = root / "reference"  # what the CLI writes, with the same key and default weights
    _main("-m", "monai_prichexy.cli", "anonymize", str(inputs), str(reference), "--key-file", str(key), "-q", "--no-progress")
    return {"root": root, "input": inputs, "plain": plain, "key": key, "reference": reference,
            "needles": [n.encode("latin-1") for n in json.loads(needles.read_text())]}


@pytest.fixture(scope="module")
def server(setup):
    srv = Server(setup["input"], setup["root"] / "work", setup["key"], setup["root"] / "server1")
    try:
        first = srv.get("/datastore/?output=all").json()
        image_id = sorted(first["objects"])[0]
        response = srv.get("/datastore/image", params={"image": image_id})
        assert response.status_code == 200
        srv.first_image_s = time.perf_counter() - srv.started
        srv.n_files = len(first["objects"])
        yield srv
    finally:
        srv.stop()


def _reference_files(reference: Path) -> dict[str, Path]:
    files = {}
    for path in reference.rglob("*"):
        if path.is_file() and ".prichexy" not in path.parts:
            files[path.name.split(".")[0]] = path
    return files


def test_start_up_times(server, capsys):
    """Reports the measured start-up (the anonymization included) and first-image times; asserts none."""
    log = (server.work / "app" / "logs" / "app.log").read_text()
    sync = re.findall(r"anonymized cache up to date in ([0-9.]+) s", log)
    with capsys.disabled():
        print(f"\nMONAI Label server: ready {server.ready_s:.1f} s after the start command (of which "
              f"{sync[-1] if sync else '?'} s anonymizing {server.n_files} files in the main env); first anonymized "
              f"image served {server.first_image_s:.1f} s after the start command")
    assert server.first_image_s >= server.ready_s


def test_every_image_is_the_clis_output(server, setup):
    reference = _reference_files(setup["reference"])
    datastore = server.get("/datastore/?output=all").json()
    assert set(datastore["objects"]) == set(reference) and len(reference) == 6
    for image_id in datastore["objects"]:
        response = server.get("/datastore/image", params={"image": image_id})
        assert response.status_code == 200
        assert response.content == reference[image_id].read_bytes(), f"{image_id}: not the CLI's bytes"
        assert image_id in response.headers.get("content-disposition", "")
        assert server.get("/datastore/image/info", params={"image": image_id}).status_code == 200


def test_served_dicom_is_deidentified_and_deformed(server, setup):
    import pydicom

    reference = _reference_files(setup["reference"])
    dicoms = [i for i, p in reference.items() if p.suffix == ".dcm"]
    assert len(dicoms) == 4
    for image_id in dicoms:
        ds = pydicom.dcmread(io.BytesIO(server.get("/datastore/image", params={"image": image_id}).content))
        assert ds.PatientIdentityRemoved == "YES"
        assert "PriCheXy" in str(ds.get("DeidentificationMethod", ""))


def test_images_cannot_be_added_or_removed(server, setup):
    upload = setup["input"] / "png_export" / "mustermann_erika_pa.png"
    response = server.request("PUT", "/datastore/image", files={"file": (upload.name, upload.read_bytes())})
    assert response.status_code == 403
    image_id = sorted(server.get("/datastore/?output=all").json()["objects"])[0]
    assert server.request("DELETE", "/datastore/image", params={"id": image_id}).status_code == 403
    assert len(server.get("/datastore/").content) and server.get("/datastore/").json()["total"] == 6


def test_other_endpoints(server):
    info = server.get("/info/").json()
    assert "anonymize" in info["models"] and info["datastore"]["total"] == 6
    assert server.get("/datastore/", params={"output": "train"}).status_code == 200
    assert server.request("POST", "/activelearning/random").status_code == 200
    assert server.get("/openapi.json").status_code == 200
    assert server.get("/logs/", params={"text": "true", "lines": 100000}).status_code == 200


def test_infer_task_gives_the_clis_pixels_for_png(server, setup):
    from PIL import Image

    reference = _reference_files(setup["reference"])
    cli = [np.asarray(Image.open(p)) for p in reference.values() if p.suffix == ".png"]
    for name in ("mustermann_erika_pa.png", "mustermann_erika_pa_16bit.png"):
        original = setup["input"] / "png_export" / name
        response = server.request("POST", "/infer/anonymize", params={"output": "image"},
                                  files={"file": ("radiograph.png", original.read_bytes())})
        assert response.status_code == 200, response.text
        out = np.asarray(Image.open(io.BytesIO(response.content)))
        src = np.asarray(Image.open(original))
        assert out.shape == src.shape and out.dtype == src.dtype
        assert src.min() <= out.min() and out.max() <= src.max() and not np.array_equal(out, src)
        assert any(c.dtype == out.dtype and np.array_equal(c, out) for c in cli), f"{name}: not the CLI's pixels"


def test_infer_task_on_a_header_anonymized_dicom(server, setup):
    import pydicom

    from monai_prichexy.label.deform import anonymize_file
    from monai_prichexy.bundle_files import resolve_weights
    from monai_prichexy.transforms import DeformAnonymize

    plain = setup["plain"]
    response = server.request("POST", "/infer/anonymize", params={"output": "image"},
                              files={"file": ("image.dcm", plain.read_bytes())})
    assert response.status_code == 200, response.text
    src, out = pydicom.dcmread(plain), pydicom.dcmread(io.BytesIO(response.content))
    assert out.SOPInstanceUID == src.SOPInstanceUID and out.StudyInstanceUID == src.StudyInstanceUID
    a, b = src.pixel_array, out.pixel_array
    assert a.shape == b.shape and a.dtype == b.dtype and a.min() <= b.min() and b.max() <= a.max()
    assert not np.array_equal(a, b)
    weights, sha = resolve_weights()
    local, _ = anonymize_file(DeformAnonymize(weights, expected_sha256=sha), plain, setup["root"])
    assert np.array_equal(pydicom.dcmread(local).pixel_array, b)  # the task = DeformAnonymize in this process
    params = server.request("POST", "/infer/anonymize", params={"output": "json"},
                            files={"file": ("image.dcm", plain.read_bytes())}).json()
    assert params["shape"] == list(a.shape) and params["dtype"] == str(a.dtype)


def test_labels_map_back_to_the_originals(server, setup):
    import pydicom

    datastore = server.get("/datastore/?output=all").json()
    dicom_ids = sorted(i for i, o in datastore["objects"].items() if o["image"]["ext"] == ".dcm")
    label = io.BytesIO()
    from PIL import Image

    Image.fromarray(np.eye(8, dtype=np.uint8)).save(label, format="PNG")
    for image_id in dicom_ids:
        response = server.request("PUT", "/datastore/label", params={"image": image_id, "tag": "final"},
                                  files={"label": ("label.png", label.getvalue())})
        assert response.status_code == 200, response.text
    labels = setup["root"] / "work" / "cache" / "labels"
    assert sorted(p.stem for p in (labels / "final").iterdir()) == dicom_ids
    archive = server.get("/datastore/dataset")  # the labelled images as a zip: scan its members, not the deflated bytes
    assert archive.status_code == 200
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    SERVED.extend((f"dataset.zip {name}", data) for name, data in members.items())
    assert sorted(n for n in members if n.startswith("image/")) == [f"image/{i}.dcm" for i in dicom_ids]
    mapped = setup["root"] / "mapped"
    _main("-m", "monai_prichexy.cli", "label-map", "--key-file", str(setup["key"]), "--input", str(setup["input"]),
          "--labels", str(labels), "--out", str(mapped))
    rows = (mapped / "mapping.csv").read_text().splitlines()
    assert len(rows) == 1 + len(dicom_ids)
    originals = {p for p in setup["input"].rglob("*") if p.is_file() and p.suffix != ".png"}
    for row in rows[1:]:
        tag, pseudonym, original, study_uid, _, sop_uid, target = row.split(",")
        assert tag == "final" and pseudonym in dicom_ids
        source = setup["input"] / original
        assert source in originals
        ds = pydicom.dcmread(source, stop_before_pixels=True)
        assert (study_uid, sop_uid) == (ds.StudyInstanceUID, ds.SOPInstanceUID)
        assert (mapped / target).read_bytes() == label.getvalue()


def test_restart_reuses_the_cache(server, setup, capsys):
    before = server.get("/datastore/?output=all").json()["objects"]
    server.stop()
    again = Server(setup["input"], setup["root"] / "work", setup["key"], setup["root"] / "server2")
    try:
        summary = json.loads((setup["root"] / "work" / "cache" / ".prichexy" / "summary.json").read_text())
        assert summary["ok"] == 0 and summary["already_done"] == 6 and summary["resumed"]
        after = again.get("/datastore/?output=all").json()["objects"]
        assert set(after) == set(before)
        assert all(after[i]["labels"] == before[i]["labels"] for i in after)
        sync = re.findall(r"anonymized cache up to date in ([0-9.]+) s", (again.work / "app" / "logs" / "app.log").read_text())
        with capsys.disabled():
            print(f"\nMONAI Label server restarted on the same cache: ready {again.ready_s:.1f} s (of which "
                  f"{sync[-1] if sync else '?'} s for the CLI to find nothing to do)")
    finally:
        again.stop()


def test_nothing_served_or_logged_carries_phi(server, setup):
    """Every byte collected above, the served log, the app's log file and the cache's non-image files."""
    server.stop()
    work = setup["root"] / "work"
    extra = [("app.log", (work / "app" / "logs" / "app.log").read_bytes())]
    for path in (work / "cache").rglob("*"):
        if path.is_file() and not path.is_symlink():
            extra.append((f"cache file {path.name}", path.read_bytes()))
    names = [os.fsencode(p.relative_to(work)) for p in work.rglob("*")]
    collected = SERVED + extra + [("paths under WORK", b"\n".join(names))]
    assert len(collected) > 40
    # the scan is meaningful: the originals and their paths do carry the needles searched for
    originals = b"\n".join([os.fsencode(p) for p in setup["input"].rglob("*")]
                           + [p.read_bytes() for p in setup["input"].rglob("*") if p.is_file()])
    present = [n for n in setup["needles"] if n in originals]
    assert len(present) >= 40 and b"Mustermann^Erika^Johanna" in present and b"PID-8823-4471" in present
    leaks = [(what, needle) for what, data in collected for needle in setup["needles"] if needle in data]
    assert not leaks, f"PHI found: {leaks[:10]}"
