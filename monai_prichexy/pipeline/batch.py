"""Anonymize a whole input tree into an output tree: walk, resume, workers, progress.

:func:`anonymize_tree` walks IN lazily (:mod:`.walk`), mirrors it under OUT with keyed
pseudonyms for every folder and file name (:mod:`.naming`), and anonymizes each file
(:class:`~.anonymizer.FileAnonymizer`) in a thread pool: decoding, warping and encoding
overlap across ``workers`` threads (the CLI gives each one torch thread). At most
``2 * workers`` files are in flight, so memory does not grow with the number of files.
(Or in another executor, e.g. on a Dask cluster: :mod:`.distributed`; the manifest is still
written here only.)

Crash safety (see :mod:`.manifest`): outputs are written atomically, the manifest line is
appended and fsync'ed afterwards by the main thread. On start, temp files that a killed run
left in OUT are removed; a file whose manifest entry says ``ok`` with the same keyed input
digest and whose output exists is skipped; everything else (new, changed, failed before, or
written but not yet recorded) is processed again. Inputs are only opened for reading; OUT may
not be IN or inside it, nor contain it.

What OUT holds afterwards: the outputs and the state folder ``OUT/.prichexy/`` (manifest,
``run.json`` with the settings and key fingerprint, ``summary.json``; no PHI, see
:mod:`.manifest`), nothing else: temp files are removed when a write fails (and those of a
killed run on the next start), folders left empty by failed files are removed at the end, and
the lock is on the state folder itself. OUT must be new, empty or a previous run of the same
job (:func:`~.manifest.check_output_folder`; same key, input folder and settings): an OUT with
other files in it is refused before anything is written.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..dicom import NotDicomError, UnsupportedDicomError
from ..hashing import sha256_bytes, sha256_file, sha256_stream
from .atomic import atomic_write_bytes, remove_stale_temp_files
from ..formats import SUFFIXES, UnsupportedImageError, detect_format, dicom_guessed
from .manifest import STATE_DIR, Manifest, ManifestEntry, check_output_folder
from .naming import Pseudonymizer
from .walk import WalkEntry, is_inside, walk_files

if TYPE_CHECKING:  # torch: imported by the caller that builds the anonymizer, not here (fast argument checks)
    from .anonymizer import FileAnonymizer

__all__ = ["BatchSummary", "anonymize_tree", "check_in_out", "count_files"]

logger = logging.getLogger(__name__)

MAX_LISTED = 1000  # failures / skips kept in memory for the final listing (all are in the manifest)
#: DICOM files up to this size are read into memory once, hashed and parsed from there (pydicom
#: loads the pixel data anyway); larger ones are hashed as a stream and parsed from the file
MAX_READ_ONCE = 256 * 1024 * 1024


@dataclass
class BatchSummary:
    """Counts of one run and the files to look at (paths relative to IN, for the operator only)."""

    total: int = 0
    ok: int = 0
    already_done: int = 0
    n_failed: int = 0
    n_skipped: int = 0
    ignored: int = 0
    lossy: int = 0
    stale_temp_removed: int = 0
    resumed: bool = False
    elapsed: float = 0.0
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    out_dir: Path | None = None
    manifest: Path | None = None
    interrupted: bool = False
    key_fingerprint: str | None = None

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.n_failed else 0

    def add(self, status: str, display: str, reason: str | None) -> None:
        if status == "failed":
            self.n_failed += 1
            if len(self.failed) < MAX_LISTED:
                self.failed.append((display, reason or "unknown error"))
        elif status == "skipped":
            self.n_skipped += 1
            if len(self.skipped) < MAX_LISTED:
                self.skipped.append((display, reason or ""))

    def to_json(self) -> dict[str, Any]:
        """Counts only (no input names): what is saved in OUT."""
        return {
            "total": self.total,
            "ok": self.ok,
            "already_done": self.already_done,
            "failed": self.n_failed,
            "skipped": self.n_skipped,
            "ignored_hidden": self.ignored,
            "lossy": self.lossy,
            "stale_temp_files_removed": self.stale_temp_removed,
            "resumed": self.resumed,
            "interrupted": self.interrupted,
            "elapsed_s": round(self.elapsed, 3),
            "key_fingerprint": self.key_fingerprint,
        }


def check_in_out(in_dir: str | os.PathLike, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Resolved (IN, OUT); ValueError when IN is no folder or OUT is IN, inside IN or contains IN."""
    src = Path(in_dir)
    if not src.exists():
        raise ValueError(f"input folder {src} does not exist")
    if not src.is_dir():
        raise ValueError(f"input {src} is not a folder")
    src_real = src.resolve(strict=True)
    dst_real = Path(out_dir).resolve(strict=False)
    if dst_real == src_real:
        raise ValueError(f"output folder {out_dir} is the input folder: refusing to write into the input")
    if is_inside(dst_real, src_real):
        raise ValueError(f"output folder {out_dir} is inside the input folder {in_dir}: refusing to write into the input")
    if is_inside(src_real, dst_real):
        raise ValueError(f"input folder {in_dir} is inside the output folder {out_dir}: choose a separate output folder")
    if dst_real.exists() and not dst_real.is_dir():
        raise ValueError(f"output {out_dir} exists and is not a folder")
    return src_real, dst_real


def input_id(key, in_dir: Path) -> str:
    """Keyed id of the input folder (its resolved path), recorded in ``run.json``: a resumed run
    must read the same IN. Without the key it reveals nothing about the path."""
    return key.digest(b"monai_prichexy input folder\x00" + os.fsencode(os.fspath(in_dir))).hex()[:16]


def _remove_empty_folders(out_dir: Path) -> None:
    """Remove folders under OUT that hold nothing (made for a file that then failed)."""
    for folder, dirs, files in os.walk(out_dir, topdown=False, followlinks=False):
        path = Path(folder)
        if path == out_dir or STATE_DIR in path.relative_to(out_dir).parts[:1]:
            continue
        try:
            os.rmdir(path)  # fails (and is left alone) unless empty
        except OSError:
            pass


def count_files(in_dir: Path, exclude=()) -> int:
    return sum(1 for entry in walk_files(in_dir, exclude=exclude) if entry.kind == "file")


def _scrub(text: str, entry: WalkEntry, in_dir: Path, out_dir: Path | None = None) -> str:
    """Remove the input's path and name parts from an error message (the manifest is published)."""
    if out_dir is not None:
        text = text.replace(os.fspath(out_dir) + os.sep, "").replace(os.fspath(out_dir), "<out>")
    needles = {str(entry.path), os.fspath(in_dir), str(entry.rel)}
    try:
        needles.add(str(entry.path.resolve()))
    except OSError:
        pass
    needles.update(part for part in entry.rel.parts if len(part) >= 3)
    for needle in sorted(needles, key=len, reverse=True):
        if needle:
            text = text.replace(needle, "<input>")
    return text


class _Runner:
    def __init__(self, anonymizer: FileAnonymizer, pseudonymizer: Pseudonymizer, in_dir: Path, out_dir: Path) -> None:
        self.anonymizer = anonymizer
        self.pseudonymizer = pseudonymizer
        self.in_dir = in_dir
        self.out_dir = out_dir

    def process(self, entry: WalkEntry, fid: str, previous: ManifestEntry | None) -> dict[str, Any] | None:
        """Anonymize one file; returns the manifest record, or None when already done."""
        record: dict[str, Any] = {"id": fid, "digest": None, "kind": None, "output": None}
        start = time.perf_counter()
        kind = None
        try:
            data = None
            with open(entry.path, "rb") as handle:  # the only way an input is ever opened here: read-only
                head = handle.read(512)
                kind = detect_format(entry.path, head)
                handle.seek(0)
                if kind == "dicom" and os.fstat(handle.fileno()).st_size <= MAX_READ_ONCE:
                    data = handle.read()  # one read: hashed here, parsed by the anonymizer
                    record["digest"] = self.pseudonymizer.content_digest(sha256_bytes(data))
                else:
                    record["digest"] = self.pseudonymizer.content_digest(sha256_stream(handle))
            record["kind"] = kind
            if kind is None:
                return {**record, "status": "skipped", "reason": "not a supported image (not copied)"}
            if (
                previous is not None
                and previous.status == "ok"
                and previous.digest == record["digest"]
                and previous.output
                and (self.out_dir / previous.output).is_file()
            ):
                return None
            rel_out = self.pseudonymizer.output_relpath(entry.rel, SUFFIXES[kind])
            dst = self.out_dir / rel_out
            dst.parent.mkdir(parents=True, exist_ok=True)
            outcome = self.anonymizer.anonymize(entry.path, kind, dst, data=data)
            record.update(
                status="ok",
                output=rel_out.as_posix(),
                output_sha256=outcome.output_sha256 or sha256_file(dst),  # the writer's read-back, when it hashed
                notes=outcome.notes,
                lossy=outcome.lossy,
                shape=list(outcome.shape) if outcome.shape else None,
                dtype=outcome.dtype,
            )
        except UnsupportedDicomError as err:
            guessed = dicom_guessed(entry.path, head)
            if guessed and isinstance(err, NotDicomError):
                record.update(status="skipped", reason="not a supported image (not copied)")
            else:
                record.update(status="failed", reason=_scrub(err.reason, entry, self.in_dir, self.out_dir))
        except UnsupportedImageError as err:
            record.update(status="failed", reason=_scrub(err.reason, entry, self.in_dir, self.out_dir))
        except Exception as err:  # never let one file stop the batch
            record.update(status="failed", reason=_scrub(f"{type(err).__name__}: {err}", entry, self.in_dir, self.out_dir))
            logger.debug("file %s failed: %s", fid, record["reason"])  # no traceback: it would quote the input path
        record["seconds"] = round(time.perf_counter() - start, 3)
        return record


def anonymize_tree(
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    anonymizer: FileAnonymizer,
    settings: Mapping[str, Any] | None = None,
    workers: int = 1,
    progress: bool = True,
    on_record: Callable[[dict[str, Any], str], None] | None = None,
    executor: cf.Executor | None = None,
    process: Callable[[Path, Path, WalkEntry, str, ManifestEntry | None], dict[str, Any] | None] | None = None,
) -> BatchSummary:
    """Anonymize every file under ``in_dir`` into ``out_dir`` (resumable; see the module docstring).

    Args:
        in_dir: the input folder (never written to).
        out_dir: the output folder (created; must not be, be inside, or contain ``in_dir``).
        anonymizer: the per-file anonymizer; its de-identification key names the outputs.
        settings: extra run settings recorded in ``run.json`` (the key fingerprint, mu,
            smoothing, working size, weights SHA-256 and dates option are added here).
        workers: threads that decode / deform / encode files in parallel;
            with ``executor``, the threads it runs on (at most ``2 * workers`` files in flight).
        progress: show a progress bar (rate and ETA) on stderr.
        on_record: called in the main thread with each new manifest record and the input's
            path relative to ``in_dir`` (for logging to the operator's console).
        executor: runs the files instead of a thread pool of ``workers`` threads (e.g. a Dask
            cluster's, :mod:`.distributed`); the caller owns it (it is not shut down here).
            A task that raises instead of returning a record (a worker died) fails its file.
        process: called in the executor as ``process(IN, OUT, entry, fid, previous)`` instead
            of this process's anonymizer (:meth:`_Runner.process`), e.g. a picklable function
            that anonymizes the file in another process; returns the manifest record or None.

    Raises:
        ValueError: bad IN / OUT; ManifestError: OUT holds other files, is locked, or was
            started with other settings (another key, input folder, weights, ...).
    """
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    workers = int(workers)
    src, dst = check_in_out(in_dir, out_dir)
    check_output_folder(dst)  # new, empty or a previous run; nothing written before this
    dst.mkdir(parents=True, exist_ok=True)
    deformer, deid = anonymizer.deformer, anonymizer.deid
    key = deid.key
    pseudonymizer = Pseudonymizer(key)
    run_settings = {
        "key_fingerprint": key.fingerprint,
        "input_id": input_id(key, src),
        "mu": deformer.mu,
        "smoothing": deformer.smoothing,
        "working_size": list(deformer.working_size) if deformer.working_size else None,
        "weights_sha256": deformer.weights_sha256,
        "precision": deformer.precision,
        "dates": deid.dates,
        "method": deid.method_info,
        "allow_secondary_capture": bool(getattr(anonymizer, "allow_secondary_capture", False)),
        **dict(settings or {}),
    }
    summary = BatchSummary(out_dir=dst, key_fingerprint=key.fingerprint)
    start = time.perf_counter()
    with Manifest(dst) as manifest:
        summary.resumed = manifest.open(run_settings)
        summary.manifest = manifest.path
        summary.stale_temp_removed = remove_stale_temp_files(dst)
        index = manifest.index() if summary.resumed else {}
        runner = _Runner(anonymizer, pseudonymizer, src, dst)
        task = (runner.process,) if process is None else (process, src, dst)
        total = count_files(src, exclude=(dst,))
        bar = _progress_bar(total, progress)
        in_flight: dict[cf.Future, WalkEntry] = {}

        def finish(future: cf.Future) -> None:
            entry = in_flight.pop(future)
            try:
                record = future.result()
            except Exception as err:  # only an external executor's task raises (its worker died, ...)
                record = {"id": pseudonymizer.file_id(entry.rel), "digest": None, "kind": None, "output": None,
                          "status": "failed", "reason": f"not anonymized: the executor lost its task "
                          f"({type(err).__name__}, e.g. its worker died); rerun to retry"}
            summary.total += 1
            bar.update(1)
            if record is None:
                summary.already_done += 1
                return
            manifest.append(record)  # after the output is in place
            if record["status"] == "ok":
                summary.ok += 1
                summary.lossy += bool(record.get("lossy"))
            summary.add(record["status"], entry.rel.as_posix(), record.get("reason"))
            if on_record is not None:
                on_record(record, entry.rel.as_posix())
            if summary.n_failed:
                bar.set_postfix(failed=summary.n_failed, refresh=False)

        pool = executor if executor is not None else cf.ThreadPoolExecutor(workers, thread_name_prefix="prichexy")
        try:
            for entry in walk_files(src, exclude=(dst,)):
                if entry.kind == "ignored":
                    summary.ignored += 1
                    continue
                if entry.kind == "problem":
                    summary.add("skipped", entry.rel.as_posix() or ".", entry.reason)
                    continue
                fid = pseudonymizer.file_id(entry.rel)
                in_flight[pool.submit(*task, entry, fid, index.get(fid))] = entry
                while len(in_flight) >= 2 * workers:
                    done, _ = cf.wait(list(in_flight), return_when=cf.FIRST_COMPLETED)
                    for future in done:
                        finish(future)
            while in_flight:
                done, _ = cf.wait(list(in_flight), return_when=cf.FIRST_COMPLETED)
                for future in done:
                    finish(future)
        except KeyboardInterrupt:
            summary.interrupted = True
            for future in list(in_flight):
                if future.cancel():
                    in_flight.pop(future)
            for future in cf.as_completed(list(in_flight)):  # let running files finish and record them
                finish(future)
        finally:
            if executor is None:
                pool.shutdown(wait=True, cancel_futures=True)
            else:  # not ours to shut down; its files not recorded yet are redone on resume
                for future in list(in_flight):
                    future.cancel()
            bar.close()
            _remove_empty_folders(dst)
            summary.elapsed = time.perf_counter() - start
            atomic_write_bytes(
                manifest.dir / "summary.json",
                (json.dumps(summary.to_json(), indent=2, sort_keys=True) + "\n").encode(),
            )
    return summary


def _progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, unit="file", desc="anonymizing", disable=not enabled, file=sys.stderr, dynamic_ncols=True, smoothing=0.05,
        mininterval=0.2 if sys.stderr.isatty() else 5.0,
    )

