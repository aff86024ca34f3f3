"""The batch on a Dask cluster (:mod:`monai_prichexy.pipeline.distributed`), on a local two-worker cluster.

Needs the optional ``dask`` extra (``distributed``); the main environment does not have it and
skips this module; the CI step that installs it sets ``PRICHEXY_REQUIRE_EXTRAS=dask``, where a
skip fails (tests/extras.py). See docs/distributed.md.

One ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` serves the module (each
worker process imports torch and builds its anonymizer once); the CLI test starts its own
through ``--dask-local 2``. The scheduler is told to give up on a task after ONE worker died
running it (``allowed-failures: 0``), so that the lost-task test does not kill four workers.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from tests.extras import require_extra

pytestmark = pytest.mark.extra("dask")  # in the dask CI step (PRICHEXY_REQUIRE_EXTRAS=dask) a skip fails
distributed = require_extra(
    "dask", "distributed",
    reason="Dask distributed not installed (optional extra: pip install -e '.[dask]', see docs/distributed.md)",
)

import dask  # noqa: E402

from monai_prichexy.cli import main  # noqa: E402
from monai_prichexy.dicom import DeidConfig, create_key, load_key  # noqa: E402
from monai_prichexy.pipeline import Deformer, FileAnonymizer, anonymize_tree  # noqa: E402
from monai_prichexy.pipeline.distributed import AnonymizerSpec, anonymize_file, anonymize_tree_on  # noqa: E402
from monai_prichexy.pipeline.manifest import read_manifest  # noqa: E402
from tests.dicom_fixtures import PATIENT_FAMILY, PATIENT_GIVEN, phi_needles  # noqa: E402
from tests.leak_scan import scan  # noqa: E402
from tests.test_cli import PHI_TEXT, phi_tree  # noqa: E402
from tests.test_pipeline_support import (output_files, png_array, tiny_weights, tree_digests,  # noqa: E402
                                         write_dicom, write_png)

PHI_DIR = f"{PATIENT_FAMILY}_{PATIENT_GIVEN}_0042"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_weights(tmp_path_factory.mktemp("w") / "g.pt")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                           local_directory=str(tmp_path_factory.mktemp("dask")))
    client = distributed.Client(cluster)
    client.wait_for_workers(2, timeout=120)
    yield client
    client.close()
    cluster.close()


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "k.key"
    create_key(path)
    return path


def tree(root: Path, n_dicom: int = 4, n_png: int = 3) -> Path:
    """Small DICOM and PNG files under names that carry PHI, plus a broken DICOM and a text file."""
    for i in range(n_dicom):
        write_dicom(root / PHI_DIR / f"study{i % 2}" / f"IM{i:04d}", 48, 56, seed=i)
    for i in range(n_png):
        write_png(root / "png" / f"{PATIENT_FAMILY}_{i:03d}.png", png_array(40, 44, seed=i))
    (root / PHI_DIR / f"{PATIENT_GIVEN}_broken.dcm").write_bytes(b"\x00" * 300)
    (root / f"{PATIENT_FAMILY}_notes.txt").write_text("not an image")
    return root


def driver(weights, key_file):
    """The driver's anonymizer and the spec the workers build it from (what the CLI does)."""
    anonymizer = FileAnonymizer(Deformer(weights), DeidConfig(key=load_key(key_file)))
    return anonymizer, AnonymizerSpec.of(anonymizer, key_file, weights)


def on_dask(client, src, out, anonymizer, spec):
    return anonymize_tree_on(src, out, anonymizer, spec, client.get_executor(pure=False), workers=2, progress=False)


def records(out: Path) -> dict[str, dict]:
    """Manifest records by id, without the timings (checks each id is recorded once)."""
    lines = list(read_manifest(out / ".prichexy" / "manifest.jsonl"))
    ids = [r["id"] for r in lines]
    assert len(ids) == len(set(ids)), "a file was recorded twice"
    return {r["id"]: {k: v for k, v in r.items() if k != "seconds"} for r in lines}


def outputs(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in output_files(out)}


def counts(summary) -> tuple:
    return summary.total, summary.ok, summary.already_done, summary.n_failed, summary.n_skipped


def test_same_outputs_and_manifest_as_the_thread_pool(tmp_path, weights, key_file, client):
    """Byte-identical at the same torch thread count: one here (conftest) and in Dask's workers
    (OMP_NUM_THREADS=1); see docs/distributed.md, "Same pixels"."""
    src = tree(tmp_path / "in")
    before = tree_digests(src)
    anonymizer, spec = driver(weights, key_file)
    threads = anonymize_tree(src, tmp_path / "threads", anonymizer, workers=2, progress=False)
    summary = on_dask(client, src, tmp_path / "dask", anonymizer, spec)
    assert counts(summary) == counts(threads) == (9, 7, 0, 1, 1)
    assert tree_digests(src) == before
    assert outputs(tmp_path / "dask") == outputs(tmp_path / "threads") and len(outputs(tmp_path / "dask")) == 7
    assert records(tmp_path / "dask") == records(tmp_path / "threads")  # failed and skipped ones too, reasons included
    run = [json.loads((tmp_path / o / ".prichexy" / "run.json").read_text()) for o in ("threads", "dask")]
    assert run[0] == run[1]  # resumable with or without Dask
    text = json.dumps(list(records(tmp_path / "dask").values()))
    assert PATIENT_FAMILY not in text and PATIENT_GIVEN not in text and str(tmp_path) not in text


def test_resume_processes_only_what_is_missing_or_new(tmp_path, weights, key_file, client):
    src = tree(tmp_path / "in")
    out = tmp_path / "out"
    anonymizer, spec = driver(weights, key_file)
    first = on_dask(client, src, out, anonymizer, spec)
    assert counts(first) == (9, 7, 0, 1, 1)
    written = outputs(out)
    victim = sorted(written)[0]
    (out / victim).unlink()  # lost after it was recorded
    write_png(src / "png" / "new.png", png_array(40, 44, seed=77))  # arrived since
    again = on_dask(client, src, out, anonymizer, spec)
    assert again.resumed and (again.ok, again.already_done, again.n_failed) == (2, 6, 1)  # the broken file is retried
    now = outputs(out)
    assert now[victim] == written[victim] and len(now) == 8
    assert {k: now[k] for k in written} == written
    # the same OUT resumed without Dask: nothing left to do
    threads = anonymize_tree(src, out, anonymizer, workers=1, progress=False)
    assert (threads.ok, threads.already_done) == (0, 8)


def test_a_worker_with_another_key_fails_the_files_with_a_clear_reason(tmp_path, weights, key_file, client):
    src = tree(tmp_path / "in", n_dicom=2, n_png=1)
    out = tmp_path / "out"
    anonymizer, spec = driver(weights, key_file)
    other = tmp_path / f"{PATIENT_FAMILY}.key"  # a path the reason must not quote
    create_key(other)
    summary = on_dask(client, src, out, anonymizer, dataclasses.replace(spec, key_file=str(other)))
    assert (summary.ok, summary.n_failed, summary.n_skipped) == (0, 5, 0)  # the text file too: no key, no digest
    reasons = {reason for _, reason in summary.failed}
    assert len(reasons) == 1
    (reason,) = reasons
    fingerprint = load_key(other).fingerprint
    assert reason == (f"worker set-up: the key file (--key-file) on this worker has fingerprint {fingerprint}, the "
                      f"run's key {load_key(key_file).fingerprint}: every worker must see the driver's key file at the "
                      "same path")
    assert output_files(out) == []
    missing = on_dask(client, src, out, anonymizer, dataclasses.replace(spec, key_file=str(tmp_path / "gone.key")))
    assert {reason for _, reason in missing.failed} == {
        "worker set-up: this worker cannot read the key file (--key-file): No such file or directory; every worker "
        "must see the driver's key file at the same path"}
    text = json.dumps(list(read_manifest(out / ".prichexy" / "manifest.jsonl")))
    assert PATIENT_FAMILY not in text and PATIENT_GIVEN not in text and str(tmp_path) not in text
    # the driver refuses a spec that describes another anonymizer
    with pytest.raises(ValueError, match="does not describe"):
        on_dask(client, src, out, FileAnonymizer(Deformer(weights, mu=0.005), DeidConfig(key=load_key(key_file))), spec)
    # fixed: the failed files are redone
    fixed = on_dask(client, src, out, anonymizer, spec)
    assert (fixed.ok, fixed.n_failed) == (3, 1) and len(output_files(out)) == 3


def test_the_cli_on_a_local_two_worker_cluster(tmp_path, weights, capfd):
    src = phi_tree(tmp_path / "in")
    (src / "exports_19610314" / f"{PATIENT_FAMILY}_broken.dcm").write_bytes(b"\x00" * 300)
    before = tree_digests(src)
    out = tmp_path / "out"
    key = tmp_path / "k.key"
    argv = ["anonymize", str(src), str(out), "--weights", str(weights), "--key-file", str(key), "--no-progress"]
    status = main(argv + ["--new-key", "--dask-local", "2"])
    captured = capfd.readouterr()  # fd level: the worker processes' output too
    assert status == 1, captured.err  # the broken file
    assert "dask: 2 worker threads (local cluster of 2 processes)" in captured.err
    assert "9 written, 0 already done, 1 failed" in captured.err
    assert tree_digests(src) == before
    assert len(output_files(out)) == 9
    run = json.loads((out / ".prichexy" / "run.json").read_text())
    assert "dask" not in json.dumps(run).lower() and "tcp://" not in json.dumps(run)
    needles = phi_needles() + [n.encode() for n in ("Thorax", "exports", "IM0001", PHI_TEXT, str(src))]
    blobs = {"stderr": (captured.out + captured.err).encode()}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        blobs[f"name {rel}"] = rel.encode()
        if path.is_file():
            blobs[f"file {rel}"] = path.read_bytes()
    leaks = scan(blobs, needles)
    assert not leaks, leaks
    # resumed by a thread-pool run of the same command: all done
    status = main(argv + ["--workers", "2"])
    captured = capfd.readouterr()
    assert status == 1 and "0 written, 9 already done, 1 failed" in captured.err, captured.err


def test_a_task_whose_worker_dies_fails_its_file_and_the_run_goes_on(tmp_path, weights, key_file, client):
    """Last in the module: it kills a worker (its nanny starts a new one)."""
    src = tree(tmp_path / "in", n_dicom=4, n_png=2)
    out = tmp_path / "out"
    anonymizer, spec = driver(weights, key_file)

    def dies_on_one_file(in_dir, out_dir, entry, fid, previous):  # pickled by value: defined here
        if entry.rel.name == "IM0001":
            os._exit(1)
        return anonymize_file(spec, in_dir, out_dir, entry, fid, previous)

    summary = anonymize_tree(src, out, anonymizer, workers=2, progress=False, executor=client.get_executor(pure=False),
                             process=dies_on_one_file)
    assert summary.total == 8 and summary.n_skipped == 1
    reasons = dict(summary.failed)
    lost = "not anonymized: the executor lost its task (KilledWorker, e.g. its worker died); rerun to retry"
    assert reasons.pop(f"{PHI_DIR}/study1/IM0001") == lost
    assert all(r == lost or "not a DICOM file" in r for r in reasons.values())  # one queued on that worker is lost too
    client.wait_for_workers(2, timeout=120)
    again = on_dask(client, src, out, anonymizer, spec)
    assert again.ok + again.already_done == 6 and again.n_failed == 1  # only the broken file is left
