"""The batch on a Dask cluster: the same walk, manifest and resume, the files anonymized on workers.

Optional extra ``dask`` (``pip install 'monai-prichexy[dask]'``: ``distributed``, pure-Python
wheels). ``distributed`` is imported only here and only when a cluster is asked for; the rest of
the package works without it.

How it fits :func:`~.batch.anonymize_tree`: the driver (the CLI process) walks IN, keeps at most
``2 x`` the cluster's worker threads in flight, and is the ONLY writer of the manifest,
``run.json`` and ``summary.json``; a Dask :class:`distributed.Client`'s
``get_executor()`` (a :class:`concurrent.futures.Executor`) takes the place of the thread pool,
and each task is :func:`anonymize_file`, a module-level (picklable) function that runs the same
per-file code (``_Runner.process``) on a worker. So there is one manifest, nothing to merge, and
a run resumes exactly as a thread-pool run does -- with or without Dask, since ``run.json``
records the same settings either way (not the scheduler). Outputs are written by the workers,
atomically (temp file, fsync, rename), straight into OUT.

What travels to a worker: an :class:`AnonymizerSpec` (options, the weights path and SHA-256, the
PATH of the key file and its fingerprint, never the key itself), IN and OUT, and per file its
path, keyed id and previous manifest entry. Each worker process builds its
:class:`~.anonymizer.FileAnonymizer` from the spec once (cached per spec) and checks it against
the driver: the key file it reads must have the driver's fingerprint, the weights the driver's
SHA-256, the package the driver's version. So IN, OUT, the key file and (when given) the weights
file must be at the same paths on every worker (a shared filesystem). A worker that fails these
checks fails its files with the reason (no path, no key material); fix it and rerun: failed files
are redone.

Workers run the generator on their CPUs (``device="cpu"``), one thread each is the intended set-up
(``dask worker --nthreads 1``; Dask's nanny sets ``OMP_NUM_THREADS=1`` for its worker processes).
See docs/distributed.md.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from .manifest import ManifestEntry
from .walk import WalkEntry

if TYPE_CHECKING:  # torch: only where an anonymizer is built
    from .anonymizer import FileAnonymizer
    from .batch import BatchSummary

__all__ = [
    "INSTALL_HINT",
    "AnonymizerSpec",
    "ClusterError",
    "MissingExtraError",
    "WorkerSetupError",
    "anonymize_file",
    "anonymize_tree_on",
    "anonymizer_settings",
    "dask_executor",
    "import_distributed",
]

logger = logging.getLogger(__name__)

INSTALL_HINT = "install the dask extra: pip install 'monai-prichexy[dask]'"
WAIT_FOR_WORKERS_S = 60.0  # how long a run waits for the first worker to join the scheduler
_CACHE_SIZE = 4  # anonymizers kept per worker process (one per spec: a worker can serve several runs)


class MissingExtraError(ImportError):
    """A Dask cluster was asked for, but ``distributed`` is not installed."""


class ClusterError(RuntimeError):
    """The Dask scheduler cannot be reached, or no worker joined it in time."""


class WorkerSetupError(RuntimeError):
    """A worker cannot build the driver's anonymizer (key, weights or version differ); no path in the text."""


def import_distributed():
    """``distributed``, or :class:`MissingExtraError` telling how to install it."""
    try:
        import distributed
    except ImportError as err:
        raise MissingExtraError(f"running on a Dask cluster needs `distributed`: {INSTALL_HINT} ({err})") from None
    return distributed


@dataclass(frozen=True)
class AnonymizerSpec:
    """What a worker needs to build the driver's :class:`~.anonymizer.FileAnonymizer` (picklable, hashable).

    Made on the driver by :meth:`of`. ``mu``, ``smoothing`` and ``working_size`` are the options
    the driver's :class:`~.anonymizer.Deformer` was built with (None = the checkpoint's); the
    rest is read off the driver's anonymizer. A worker refuses to anonymize unless its key has
    ``key_fingerprint``, its weights ``weights_sha256`` and its anonymizer ``settings``.

    Attributes:
        key_file: absolute path of the key file (read by each worker; the key is never sent).
        key_fingerprint: the driver's key fingerprint.
        weights: absolute path of the generator checkpoint; None = each worker's installed
            default weights (the bundle's ``models/model.pt``).
        weights_sha256: SHA-256 of the driver's weights file (checked before a worker loads its own).
        settings: the driver's :func:`anonymizer_settings` (compared after the build).
    """

    key_file: str
    key_fingerprint: str
    weights: str | None
    weights_sha256: str
    mu: float | None = None
    smoothing: str | None = None
    working_size: int | None = None
    precision: str = "fp32"
    dates: str = "remove"
    allow_burned_in: bool = False
    allow_secondary_capture: bool = False
    jpeg_quality: int = 95
    method_info: str | tuple[str, ...] = ""
    retain_patient_characteristics: bool = False
    max_shift_days: int = 365
    profile_table: str = ""
    settings: tuple = ()
    version: str = __version__

    @classmethod
    def of(cls, anonymizer: FileAnonymizer, key_file: str | os.PathLike, weights: str | os.PathLike | None = None,
           mu: float | None = None, smoothing: str | None = None, working_size: int | None = None) -> AnonymizerSpec:
        """The spec of the driver's ``anonymizer``, whose Deformer was built from ``weights`` (None: the
        installed default) with ``mu``, ``smoothing`` and ``working_size``; ``key_file`` holds its key."""
        deformer, deid = anonymizer.deformer, anonymizer.deid
        if deformer.weights_sha256 is None:
            raise ValueError("the driver's Deformer was not loaded from a weights file; workers need one")
        return cls(
            key_file=os.path.abspath(key_file), key_fingerprint=deid.key.fingerprint,
            weights=None if weights is None else os.path.abspath(weights), weights_sha256=deformer.weights_sha256,
            mu=mu, smoothing=smoothing, working_size=working_size, precision=deformer.precision, dates=deid.dates,
            allow_burned_in=bool(deid.allow_burned_in), allow_secondary_capture=bool(anonymizer.allow_secondary_capture),
            jpeg_quality=int(anonymizer.jpeg_quality), method_info=deid.method_info,
            retain_patient_characteristics=bool(deid.retain_patient_characteristics),
            max_shift_days=int(deid.max_shift_days), profile_table=deid.profile_table,
            settings=anonymizer_settings(anonymizer),
        )

    def build(self) -> FileAnonymizer:
        """The anonymizer on this worker (CPU); :class:`WorkerSetupError` when it would not be the driver's."""
        from ..dicom import DeidConfig, load_key
        from .anonymizer import Deformer, FileAnonymizer

        if self.version != __version__:
            raise WorkerSetupError(f"this worker runs monai-prichexy {__version__}, the driver {self.version}: "
                                   "install the same version on every worker")
        try:
            key = load_key(self.key_file)
        except (OSError, ValueError) as err:
            why = err.strerror if isinstance(err, OSError) and err.strerror else type(err).__name__
            raise WorkerSetupError(f"this worker cannot read the key file (--key-file): {why}; every worker must see "
                                   "the driver's key file at the same path") from None
        if key.fingerprint != self.key_fingerprint:
            raise WorkerSetupError(f"the key file (--key-file) on this worker has fingerprint {key.fingerprint}, the "
                                   f"run's key {self.key_fingerprint}: every worker must see the driver's key file at "
                                   "the same path")
        try:
            weights = self.weights
            if weights is None:
                from ..bundle_files import default_weights_path

                weights = default_weights_path()
            deformer = Deformer(weights, mu=self.mu, smoothing=self.smoothing, working_size=self.working_size,
                                device="cpu", expected_sha256=self.weights_sha256, precision=self.precision)
        except Exception as err:
            logger.warning("worker cannot load the generator weights: %s", err)  # the weights path is no PHI
            raise WorkerSetupError(f"this worker cannot load the generator weights ({type(err).__name__}): every worker "
                                   f"needs the driver's weights (SHA-256 {self.weights_sha256[:16]}...) at the same "
                                   "path (see the worker's log)") from None
        table = {"profile_table": self.profile_table} if self.profile_table else {}  # "": DeidConfig's default
        deid = DeidConfig(key=key, dates=self.dates, method_info=self.method_info, allow_burned_in=self.allow_burned_in,
                          retain_patient_characteristics=self.retain_patient_characteristics,
                          max_shift_days=self.max_shift_days, **table)
        anonymizer = FileAnonymizer(deformer, deid, jpeg_quality=self.jpeg_quality,
                                    allow_secondary_capture=self.allow_secondary_capture)
        if self.settings and anonymizer_settings(anonymizer) != self.settings:
            raise WorkerSetupError("this worker's anonymizer differs from the driver's (mu, smoothing, working size, "
                                   "weights or DeidentificationMethod): install the same version and weights everywhere")
        return anonymizer


def anonymizer_settings(anonymizer: FileAnonymizer) -> tuple:
    """What must be equal on the driver and every worker: the settings ``run.json`` records and the
    DeidentificationMethod values written into each header."""
    deformer, deid = anonymizer.deformer, anonymizer.deid
    return (
        deid.key.fingerprint, deformer.mu, deformer.smoothing,
        tuple(deformer.working_size) if deformer.working_size else None, deformer.weights_sha256, deformer.precision,
        deformer.describe(), deid.dates, deid.method_info, bool(deid.allow_burned_in),
        bool(deid.retain_patient_characteristics), int(deid.max_shift_days), deid.profile_table,
        bool(anonymizer.allow_secondary_capture), int(anonymizer.jpeg_quality),
    )


_lock = threading.Lock()
_built: dict[AnonymizerSpec, tuple[Any, Any]] = {}  # spec -> (FileAnonymizer, Pseudonymizer), in this worker process


def _worker_anonymizer(spec: AnonymizerSpec):
    """This process's anonymizer and pseudonymizer for ``spec``, built once (failures are not
    cached: the next file tries again, e.g. after the key file was mounted)."""
    with _lock:
        if spec not in _built:
            from .naming import Pseudonymizer

            _no_phi_in_worker_logs()
            anonymizer = spec.build()
            while len(_built) >= _CACHE_SIZE:
                _built.pop(next(iter(_built)))
            _built[spec] = (anonymizer, Pseudonymizer(anonymizer.deid.key))
        return _built[spec]


def _no_phi_in_worker_logs() -> None:
    """In a Dask worker process, the same log rules as the CLI's (:mod:`~monai_prichexy.logsafe`):
    nothing it logs names an input or quotes a header value. Not in any other process (a test
    that calls :func:`anonymize_file` directly keeps its logging)."""
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return
    from ..logsafe import no_phi_in_logs

    no_phi_in_logs(trusted=("distributed",))


def anonymize_file(spec: AnonymizerSpec, in_dir: Path, out_dir: Path, entry: WalkEntry, fid: str,
                   previous: ManifestEntry | None) -> dict[str, Any] | None:
    """One file on a worker: ``_Runner.process`` with this worker's anonymizer; the manifest record
    (or None: already done). Never raises (a failing task's arguments, which name the input, would
    be logged by Dask): a worker that cannot build the anonymizer fails the file with the reason."""
    record: dict[str, Any] = {"id": fid, "digest": None, "kind": None, "output": None}
    try:
        from .batch import _Runner

        anonymizer, pseudonymizer = _worker_anonymizer(spec)
        return _Runner(anonymizer, pseudonymizer, in_dir, out_dir).process(entry, fid, previous)
    except WorkerSetupError as err:
        return {**record, "status": "failed", "reason": f"worker set-up: {err}", "seconds": 0.0}
    except Exception as err:  # _Runner.process catches a file's errors; this is anything around it
        return {**record, "status": "failed", "reason": f"worker error: {type(err).__name__}", "seconds": 0.0}


def anonymize_tree_on(in_dir: str | os.PathLike, out_dir: str | os.PathLike, anonymizer: FileAnonymizer,
                      spec: AnonymizerSpec, executor: cf.Executor, workers: int, **kwargs: Any) -> BatchSummary:
    """:func:`~.batch.anonymize_tree` with the files anonymized by :func:`anonymize_file` in ``executor``.

    Args:
        anonymizer: the driver's anonymizer (its settings go into ``run.json``; it anonymizes nothing).
        spec: how the workers build the same anonymizer; must describe ``anonymizer``.
        executor: a Dask client's ``get_executor(pure=False)`` (:func:`dask_executor`): with Dask's
            default ``pure=True`` a rerun could be handed an earlier task's result instead of running.
        workers: the cluster's worker threads (at most ``2 * workers`` files in flight).
        kwargs: the other arguments of :func:`~.batch.anonymize_tree` (``progress``, ``on_record``, ...).
    """
    from .batch import anonymize_tree

    if spec.settings != anonymizer_settings(anonymizer):
        raise ValueError("the anonymizer spec does not describe the driver's anonymizer (settings differ)")
    return anonymize_tree(in_dir, out_dir, anonymizer, workers=workers, executor=executor,
                          process=functools.partial(anonymize_file, spec), **kwargs)


@contextmanager
def dask_executor(scheduler: str | None = None, local_workers: int | None = None,
                  wait_s: float = WAIT_FOR_WORKERS_S) -> Iterator[tuple[cf.Executor, int]]:
    """A Dask cluster's executor and its number of worker threads; the client (and a local cluster) closed on exit.

    Args:
        scheduler: address of a running scheduler (``tcp://host:8786``, ``tls://...``; TLS
            certificates come from Dask's configuration, ``distributed.comm.tls``).
        local_workers: instead, start a ``LocalCluster`` of that many single-threaded worker
            processes on this machine.
        wait_s: how long to wait for the first worker.

    Raises:
        MissingExtraError: ``distributed`` is not installed.
        ValueError: neither or both of ``scheduler`` and ``local_workers``.
        ClusterError: the scheduler cannot be reached or no worker joined in time.
    """
    if (scheduler is None) == (local_workers is None):
        raise ValueError("give either a scheduler address or a number of local workers")
    distributed = import_distributed()
    cluster = client = None
    try:
        if local_workers is not None:
            if int(local_workers) < 1:
                raise ValueError(f"local_workers must be >= 1, got {local_workers}")
            cluster = distributed.LocalCluster(n_workers=int(local_workers), threads_per_worker=1, processes=True,
                                               dashboard_address=None)
            client = distributed.Client(cluster)
        else:
            try:
                client = distributed.Client(scheduler, timeout=wait_s)
            except (OSError, TimeoutError) as err:
                raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from None
        try:
            client.wait_for_workers(1, timeout=wait_s)
        except TimeoutError:
            raise ClusterError(f"no Dask worker joined the scheduler {client.scheduler.address} within "
                               f"{wait_s:g} s; start workers with `dask worker {client.scheduler.address} --nthreads 1`"
                               ) from None
        threads = sum(client.nthreads().values())
        yield client.get_executor(pure=False), threads  # pure=False: each file is a new task, never a cached result
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
