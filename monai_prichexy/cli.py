"""``monai-prichexy``: the data steward's command line.

Subcommands:

* ``anonymize IN OUT``: de-identify headers and deform pixels of every radiograph under IN
  into OUT (resumable; see :mod:`monai_prichexy.pipeline.batch`). It needs a key: made
  beforehand with ``keygen`` or, with ``--new-key``, now; a missing key is never created
  silently. OUT must be new, empty or a previous run of the same job (same key, input and
  settings). ``--dask-scheduler`` / ``--dask-local`` anonymize the files on a Dask cluster
  (optional extra ``dask``, :mod:`monai_prichexy.pipeline.distributed`);
* ``report ORIGINALS ANONYMIZED``: privacy/utility report of a finished batch;
* ``audit ORIGINALS ANONYMIZED``: re-identification audit of a release, beside the unaltered
  images and a random warp of the same displacement (:mod:`monai_prichexy.pipeline.audit`);
* ``demo OUT_DIR``: make a small synthetic input and run both end to end;
* ``keygen KEY_FILE``: create a de-identification key;
* ``benchmark``: the privacy / utility benchmark on a labelled research folder (:mod:`.benchmark`);
* ``locate IN OUT ID...``: the input path of files that listings name by their pseudonym;
* ``label-map``: map labels from the MONAI Label server back to the originals (:mod:`.label.mapping`).

No PHI on the console or in the log: nothing printed or logged names IN, a file or folder under
it, or a header value. A file is named by its keyed pseudonym (its id in the manifest; ``locate``
turns ids back into paths, on stdout, for whoever holds the key), other libraries' log records
and warnings are withheld (:mod:`.logsafe`). Only a set-up error (exit status 2, before any input
is read) quotes the command-line argument it refuses.

Exit status: 0 success, 1 some files failed (listed at the end), 2 bad arguments or set-up,
130 interrupted (the output folder stays consistent; rerun to resume).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import warnings
from pathlib import Path, PurePosixPath

from . import __version__
from .logsafe import capture_warnings, install as install_phi_filter, install_excepthook
from .options import (KEY_SUFFIX, add_benchmark_arguments, add_dask_arguments, add_dates_argument,
                      add_deformation_arguments, add_device_argument, add_key_file_argument, add_progress_argument,
                      add_weights_arguments, bad_number)
from .pipeline.walk import is_inside

__all__ = ["main", "build_parser", "default_key_path"]


class CliError(Exception):
    """A set-up problem reported as ``monai-prichexy: error: ...`` with exit status 2."""


def default_key_path(out_dir: str | Path) -> Path:
    """``<OUT>.prichexy-key`` beside the output folder (never inside it: OUT gets published)."""
    out = Path(out_dir).resolve()
    return out.parent / (out.name + KEY_SUFFIX)


def _key_path(key_file: str | None, out_dir: Path, in_dir: Path | None = None) -> Path:
    """The key file named by ``--key-file`` (default: beside OUT); refused inside OUT, and inside IN
    when it does not exist yet (it would be created there)."""
    path = Path(key_file) if key_file else default_key_path(out_dir)
    if is_inside(path, out_dir):
        raise CliError(f"key file {path} is inside the output folder, which is meant to be published; keep it elsewhere")
    if in_dir is not None and not path.exists() and is_inside(path, in_dir):
        raise CliError(f"key file {path} would be created inside the input folder; choose another --key-file")
    return path


def _existing_key_message(path: Path) -> str:
    return f"--new-key: key file {path} exists; not overwriting a key (drop --new-key to use it)"


def _missing_key_message(path: Path) -> str:
    return (
        f"key file {path} does not exist; create one first with `monai-prichexy keygen {path}` "
        "or pass --new-key to create it now (a key is never created silently)"
    )


def _load_key(key_file: str | None, out_dir: Path, in_dir: Path | None = None, create: bool = False):
    """Load the key, or (``create``) make a new one, refusing an existing file.

    Returns ``(key, path, created)``. Without ``create`` a missing file is an error telling how
    to make one (``anonymize``) or to pass the anonymization's key (``report``, ``label-map``).
    """
    from .dicom import create_key, load_key

    path = _key_path(key_file, out_dir, in_dir)
    try:
        if create:
            try:
                return create_key(path), path, True
            except FileExistsError:
                raise CliError(_existing_key_message(path)) from None
        if not path.exists():
            raise CliError(f"key file {path} does not exist; pass the --key-file used for the anonymization")
        return load_key(path), path, False
    except (OSError, ValueError) as err:
        raise CliError(f"key file {path}: {err}") from None


def _device(name: str):
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(name)
    except (RuntimeError, ValueError) as err:
        raise CliError(f"--device {name!r}: {err}") from None
    return name


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


#: ``--workers`` by default: one per usable core, at most this many (each holds a few images in memory)
MAX_DEFAULT_WORKERS = 4


def _one_torch_thread() -> int:
    """One torch thread per worker: the batch runs files in parallel, not the pixels of one file.

    It is also what makes the outputs the same for any ``--workers`` and any machine: with several
    threads, torch splits convolutions and interpolations differently, and about 40 of 5 million
    pixels of a 2,000 x 2,500 image move by one grey level. OMP_NUM_THREADS set by the operator
    wins (and then outputs may differ in those pixels). Returns the number of threads.
    """
    import torch

    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(1)
    return torch.get_num_threads()


def _build_deformer(args):
    from .pipeline import Deformer, WeightsNotFoundError, resolve_weights
    from .weights import ChecksumMismatchError, MissingSetupError, UnsafeCheckpointError

    try:
        weights, expected = resolve_weights(args.weights, args.weights_sha256)
    except WeightsNotFoundError as err:
        raise CliError(str(err)) from None
    except ValueError as err:
        raise CliError(str(err)) from None
    try:
        deformer = Deformer(
            weights,
            mu=args.mu,
            smoothing=args.smoothing,
            working_size=args.working_size,
            device=_device(args.device),
            expected_sha256=expected,
            precision=args.precision,
        )
    except ValueError as err:  # includes checksum mismatch, unsafe checkpoint, missing mu
        if isinstance(err, (ChecksumMismatchError, UnsafeCheckpointError)):
            raise CliError(str(err)) from None
        raise CliError(f"{weights}: {err}" + ("; pass --mu" if isinstance(err, MissingSetupError) else "")) from None
    return deformer, weights, expected


def _build_anonymizer(args, key, deformer):
    """The per-file anonymizer for ``anonymize``'s arguments, ``key`` and ``deformer``."""
    from .dicom import DeidConfig
    from .pipeline import FileAnonymizer

    deid = DeidConfig(key=key, dates=args.dates, allow_burned_in=args.allow_burned_in)
    return FileAnonymizer(
        deformer, deid, jpeg_quality=args.jpeg_quality, allow_secondary_capture=args.allow_secondary_capture
    )


def _print_listing(title: str, items, count: int, stream, pseudonym) -> None:
    """Files by their pseudonym (the manifest id), never by name: the console is a log too."""
    if not count:
        return
    print(f"{title} ({count}):", file=stream)
    for rel, reason in items:
        print(f"  {pseudonym(rel)}: {reason}", file=stream)
    if count > len(items):
        print(f"  ... and {count - len(items)} more (see the manifest)", file=stream)


def _check_dask(args) -> bool:
    """Whether ``anonymize`` runs on a Dask cluster; refuses a GPU device there and a missing extra."""
    if args.dask_scheduler is None and args.dask_local is None:
        return False
    if args.device not in ("auto", "cpu"):
        raise CliError(f"--device {args.device}: with --dask-scheduler / --dask-local the workers run the generator on "
                       "their CPUs; leave --device out (or give cpu)")
    from .pipeline.distributed import MissingExtraError, import_distributed

    try:
        import_distributed()
    except MissingExtraError as err:
        raise CliError(str(err)) from None
    args.device = "cpu"  # the driver only records the settings; the workers anonymize, on their CPUs
    return True


def _anonymize_on_dask(args, in_dir: Path, out_dir: Path, anonymizer, key_path: Path, weights: Path, progress: bool):
    """``anonymize_tree`` with the files anonymized on the Dask cluster of ``--dask-scheduler`` / ``--dask-local``."""
    from .pipeline.distributed import AnonymizerSpec, ClusterError, anonymize_tree_on, dask_executor

    spec = AnonymizerSpec.of(anonymizer, key_path, None if args.weights is None else weights, mu=args.mu,
                             smoothing=args.smoothing, working_size=args.working_size)
    try:
        with dask_executor(args.dask_scheduler, args.dask_local) as (executor, threads):
            if not args.quiet:
                where = args.dask_scheduler or f"local cluster of {args.dask_local} processes"
                print(f"dask: {threads} worker threads ({where}); at most {2 * max(threads, args.workers)} files in flight",
                      file=sys.stderr)
            return anonymize_tree_on(in_dir, out_dir, anonymizer, spec, executor, max(threads, args.workers),
                                     progress=progress)
    except ClusterError as err:
        raise CliError(str(err)) from None


def cmd_anonymize(args) -> int:
    from .pipeline import (ManifestError, Pseudonymizer, anonymize_tree, check_in_out, check_output_folder,
                           measured_statement)

    try:
        in_dir, out_dir = check_in_out(args.input, args.output)
        previous = check_output_folder(out_dir)  # refuses an OUT with unrelated files, before anything is written
    except (ValueError, ManifestError) as err:
        raise CliError(str(err)) from None
    on_dask = _check_dask(args)
    key_path = _key_path(args.key_file, out_dir, in_dir)
    recorded = (previous or {}).get("key_fingerprint")
    if args.new_key and key_path.exists():
        raise CliError(_existing_key_message(key_path))
    if args.new_key and recorded:
        raise CliError(
            f"--new-key: {out_dir} holds a run made with the key of fingerprint {recorded}; a new key cannot resume "
            "it. Pass that run's --key-file (without --new-key), or use a new output folder"
        )
    if not args.new_key and not key_path.exists():  # nothing is created without asking
        hint = f" ({out_dir} was made with the key of fingerprint {recorded})" if recorded else ""
        raise CliError(_missing_key_message(key_path) + hint)
    deformer, weights, expected = _build_deformer(args)  # weights problems stop us before a key is created
    _one_torch_thread()
    key, key_path, created = _load_key(args.key_file, out_dir, in_dir, create=args.new_key)
    anonymizer = _build_anonymizer(args, key, deformer)
    err = sys.stderr
    if not args.quiet:
        print(f"monai-prichexy {__version__}: IN -> {out_dir}", file=err)  # IN's path can name a patient
        print(
            f"weights: {weights} (sha256 {deformer.weights_sha256[:16]}..., "
            f"{'checked' if expected else 'not checked: no checksum known'}); mu={deformer.mu:g}; device={deformer.device}",
            file=err,
        )
        state = "created" if created else "loaded"
        print(f"key: {key_path} ({state}, fingerprint {key.fingerprint}); keep it secret, never publish it,"
              " and reuse it to resume or to keep pseudonyms consistent across batches", file=err)
    progress = not args.no_progress and not args.quiet
    try:
        if on_dask:
            summary = _anonymize_on_dask(args, in_dir, out_dir, anonymizer, key_path, weights, progress)
        else:
            summary = anonymize_tree(in_dir, out_dir, anonymizer, workers=args.workers, progress=progress)
    except ManifestError as error:
        raise CliError(str(error)) from None
    except ValueError as error:
        raise CliError(str(error)) from None
    print(
        f"{'interrupted' if summary.interrupted else 'done'} in {summary.elapsed:.1f} s: {summary.ok} written, "
        f"{summary.already_done} already done, {summary.n_failed} failed, {summary.n_skipped} skipped, "
        f"{summary.ignored} hidden ignored" + (f", {summary.lossy} lossy" if summary.lossy else ""),
        file=err,
    )
    if summary.stale_temp_removed:
        print(f"removed {summary.stale_temp_removed} temporary files left by an interrupted run", file=err)
    print(f"outputs: {out_dir}\nmanifest: {summary.manifest}\nkey fingerprint: {key.fingerprint} ({key_path})", file=err)
    if not args.quiet:
        print(f"pixel privacy of these weights: {measured_statement(weights)}", file=err)
    file_id = Pseudonymizer(key).file_id

    def pseudonym(rel: str) -> str:
        return file_id(PurePosixPath(rel))

    _print_listing("FAILED", summary.failed, summary.n_failed, err, pseudonym)
    _print_listing("SKIPPED (not copied)", summary.skipped, summary.n_skipped, err, pseudonym)
    if summary.n_failed or summary.n_skipped:
        print(f"(files are named by their id in the manifest; `monai-prichexy locate IN {out_dir} ID ...` prints their "
              "paths in IN)", file=err)
    if summary.interrupted:
        print("interrupted: rerun the same command to resume", file=err)
    if not summary.interrupted and summary.ok + summary.already_done + summary.n_failed + summary.n_skipped == 0:
        print("nothing to anonymize: IN holds no files (hidden files are ignored); exit status 1", file=err)
        return 1
    return summary.exit_code


def _shipped(path: str | None, sha256: str | None, name: str) -> tuple[str, str | None]:
    """``--verifier`` / ``--classifier`` or, when not given, the bundle's shipped network and its recorded SHA-256."""
    if path is not None:
        return path, sha256
    from .bundle_files import WeightsNotFoundError, shipped_network

    try:
        shipped, expected = shipped_network(name)
    except WeightsNotFoundError as err:
        raise CliError(str(err)) from None
    return str(shipped), sha256 or expected


def cmd_report(args) -> int:
    from .pipeline.report import ReportError, build_report

    anonymized = Path(args.anonymized)
    key, _, _ = _load_key(args.key_file, anonymized, create=False)
    verifier, verifier_sha256 = _shipped(args.verifier, args.verifier_sha256, "verifier")
    classifier, classifier_sha256 = _shipped(args.classifier, args.classifier_sha256, "classifier")
    try:
        result = build_report(
            args.originals,
            anonymized,
            verifier=verifier,
            classifier=classifier,
            out_dir=args.out,
            key=key,
            device=_device(args.device),
            threshold=args.threshold,
            verifier_sha256=verifier_sha256,
            classifier_sha256=classifier_sha256,
            progress=not args.no_progress,
            weights=args.weights,
            weights_sha256=args.weights_sha256,
        )
    except (ReportError, ValueError, FileNotFoundError) as err:
        raise CliError(str(err)) from None
    for warning in result.summary.get("warnings", []):
        print(f"WARNING: {warning}", file=sys.stderr)
    print(f"report: {result.markdown}\nfigure: {result.figure}\nper image: {result.table}", file=sys.stderr)
    return 0


def cmd_audit(args) -> int:
    from .pipeline.audit import AuditError, build_audit

    anonymized = Path(args.anonymized)
    key, _, _ = _load_key(args.key_file, anonymized, create=False)
    try:
        result = build_audit(
            args.originals, anonymized, args.out, key, threshold=args.threshold, size=args.size, seeds=args.seeds,
            patient_pattern=args.patient_regex, min_train_patients=args.min_train_patients, weights=args.weights,
            weights_sha256=args.weights_sha256, device=_device(args.device), progress=not args.no_progress,
        )
    except (AuditError, ValueError, FileNotFoundError) as err:
        raise CliError(str(err)) from None
    print(f"{result.summary['verdict']['text']}\naudit: {result.markdown}\npictures: {result.figure}", file=sys.stderr)
    return 0 if result.summary["verdict"]["protective"] else 1


def cmd_locate(args) -> int:
    """Print the input path of each pseudonym (stdout: the steward's query, not a log)."""
    from .pipeline import Pseudonymizer, walk_files

    in_dir = Path(args.input)
    if not in_dir.is_dir():
        raise CliError("IN is not a folder")
    key, _, _ = _load_key(args.key_file, Path(args.anonymized), create=False)
    pseudonym = Pseudonymizer(key).file_id
    wanted = {i.strip().lower() for i in args.ids}
    found = set()
    for entry in walk_files(in_dir.resolve()):
        fid = pseudonym(entry.rel)
        if fid in wanted:
            found.add(fid)
            print(f"{fid}\t{entry.rel.as_posix()}")
    for fid in sorted(wanted - found):
        print(f"{fid}: not found under IN with this key", file=sys.stderr)
    return 0 if found == wanted else 1


def cmd_demo(args) -> int:
    """Prepare the demo (:func:`.demo.prepare_demo`), then run its anonymize, report and audit commands."""
    from .demo import prepare_demo

    plan = prepare_demo(args.out_dir, weights=args.weights, workers=args.workers)
    if args.no_run:
        return 0
    status = main(plan.anonymize_cmd)
    if status not in (0, 1):
        return status
    report_status = main(plan.report_cmd + ["--no-progress"])
    audit_status = main(plan.audit_cmd + ["--no-progress"])  # 1 = not protective: the demo's finding, not its failure
    print(f"\nanonymized copies: {plan.anonymized}\nreport: {plan.report / 'report.md'}\naudit: {plan.audit / 'audit.md'}",
          file=sys.stderr)
    return status or report_status or (audit_status if audit_status not in (0, 1) else 0)


def cmd_benchmark(args) -> int:
    """The privacy / utility benchmark (:mod:`monai_prichexy.benchmark`) on a research data folder."""
    from .benchmark.run import run_from_args

    return run_from_args(args)


def cmd_keygen(args) -> int:
    from .dicom import create_key

    try:
        key = create_key(args.key_file)
    except FileExistsError:
        raise CliError(f"{args.key_file} exists; not overwriting a key") from None
    print(f"created {args.key_file} (fingerprint {key.fingerprint}); keep it secret", file=sys.stderr)
    return 0


def _add_release_arguments(p: argparse.ArgumentParser, what: str, weights_use: str) -> None:
    """The arguments ``report`` and ``audit`` share: the two folders, the output, the key and the generator."""
    p.add_argument("originals", metavar="ORIGINALS", help="the input folder of the anonymization")
    p.add_argument("anonymized", metavar="ANONYMIZED", help="its output folder")
    p.add_argument("--out", required=True, help=f"{what} folder (not inside ANONYMIZED or ORIGINALS)")
    add_key_file_argument(p, f"the anonymization's key (default: ANONYMIZED{KEY_SUFFIX})")
    add_weights_arguments(p, f"the generator that made the batch, {weights_use} (default: the bundle's model.pt when "
                          "it is the one the batch recorded; otherwise displacement is not measured)")
    add_device_argument(p)
    add_progress_argument(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monai-prichexy",
        description="PriCheXy-Net anonymization of chest radiographs: DICOM header de-identification "
        "(PS3.15 Annex E) and a learned deformation that hides patient identity in the pixels.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser(
        "anonymize",
        help="anonymize every radiograph under IN into OUT",
        description="Walk IN recursively (DICOM CR/DX/DR projection radiographs, PNG, JPEG, TIFF, NIfTI) and write "
        "anonymized copies under OUT with pseudonymized folder and file names. DICOM files of other modalities "
        "(CT, MR, US, NM, PT, ...) are refused and listed as failed. Resumable: rerun the same command after an "
        "interruption. Exit status 1 when some files failed (they are listed at the end).",
    )
    p.add_argument("input", metavar="IN", help="input folder (never modified)")
    p.add_argument("output", metavar="OUT", help="output folder (created; not inside IN)")
    add_weights_arguments(p, "generator checkpoint (default: the bundle's models/model.pt)")
    add_deformation_arguments(p)
    add_key_file_argument(p, f"de-identification key, made beforehand with `monai-prichexy keygen KEY_FILE` "
                          f"or now with --new-key (default: OUT{KEY_SUFFIX} beside OUT)")
    p.add_argument("--new-key", action="store_true", help="create a new key at --key-file (or the default path) for this "
                   "run; refused when that file exists or OUT already holds a run (resume it with its key)")
    p.add_argument("--workers", type=int, default=min(MAX_DEFAULT_WORKERS, usable_cores()),
                   help=f"files processed in parallel (threads, each with one torch thread), >= 1 (default: the usable "
                   f"cores, at most {MAX_DEFAULT_WORKERS}); with Dask, at most 2 x max(N, the cluster's worker threads) "
                   "files are in flight")
    add_dask_arguments(p)
    add_dates_argument(p)
    p.add_argument("--allow-burned-in", action="store_true", help="process DICOM with BurnedInAnnotation=YES (the text stays!)")
    p.add_argument(
        "--allow-secondary-capture", action="store_true",
        help="also anonymize DICOM Secondary Capture images (SOP class 1.2.840.10008.5.1.4.1.1.7, e.g. digitized "
        "films) with Modality CR, DX, DR, OT or none; without it they are refused like CT, MR, US, NM and PT",
    )
    add_device_argument(p)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="the generator's arithmetic: fp32 (default, exact) or bf16 (2-4x faster for the paper-size "
                   "generator on processors with bf16 units, within half a grey level; refused for weights it moves "
                   "more, such as the shipped 64-px generator; see the README's speed section)")
    p.add_argument("--jpeg-quality", type=int, default=95, help="quality of JPEG outputs, 1-100 (lossy; default 95)")
    add_progress_argument(p)
    p.add_argument("-q", "--quiet", action="store_true", help="only the final summary")
    p.set_defaults(func=cmd_anonymize)

    p = sub.add_parser(
        "report",
        help="privacy/utility report of an anonymized batch",
        description="Pair each original with its anonymized copy (through OUT's manifest and the key) and measure "
        "the verifier's same-patient probability and the classifier's agreement; writes report.md, a histogram "
        "and a per-image CSV (pseudonyms only).",
    )
    _add_release_arguments(p, "report", "for its displacement per image")
    p.add_argument("--verifier", help="SiameseVerifier checkpoint (default: the bundle's shipped models/verifier.pt)")
    p.add_argument("--classifier", help="AbnormalityClassifier checkpoint (default: the bundle's shipped models/classifier.pt)")
    p.add_argument("--verifier-sha256", help="expected SHA-256 of --verifier (64 hex digits; checked before loading)")
    p.add_argument("--classifier-sha256", help="expected SHA-256 of --classifier (64 hex digits; checked before loading)")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold in (0, 1) for label agreement (default 0.5)")
    p.set_defaults(func=cmd_report)

    from .pipeline.audit import add_audit_arguments

    p = sub.add_parser(
        "audit",
        help="measure the re-identification risk of an anonymized batch on its own patients",
        description="Train fresh attackers (Siamese verifier, metric learning, pixel correlation) on anonymized images "
        "of part of the patients and test how well they link the other patients' anonymized images to their "
        "originals; the same on the unaltered images and on a random warp of the same displacement. Patient ids "
        "come from the originals (DICOM PatientID, else --patient-regex on the relative path) and are never written. "
        "Writes audit.md, summary.json and before_after.png (pseudonyms only). Exit status 0 when the verdict is "
        "protective, 1 when it is not or cannot be measured, 2 on bad arguments.",
    )
    _add_release_arguments(p, "audit", "for its displacement and the random-warp control")
    add_audit_arguments(p)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser(
        "locate",
        help="print the input paths of files named by their pseudonym (id) in a listing or the manifest",
        description="Walk IN as `anonymize` did and print `ID<TAB>path relative to IN` for each given ID, on stdout "
        "(the listings and logs name files by these ids only: paths and names can carry PHI).",
    )
    p.add_argument("input", metavar="IN", help="the input folder of the anonymization")
    p.add_argument("anonymized", metavar="OUT", help="its output folder (for the default key file)")
    p.add_argument("ids", metavar="ID", nargs="+", help="file ids (20 hex digits)")
    p.add_argument("--key-file", help=f"the anonymization's key (default: OUT{KEY_SUFFIX})")
    p.set_defaults(func=cmd_locate)

    p = sub.add_parser(
        "demo",
        help="make a synthetic demo input and run anonymize, report and audit on it",
        description="Write OUT_DIR/input (synthetic DICOM and PNG radiographs whose headers, folder and file names "
        "carry made-up PHI), anonymize it into OUT_DIR/anonymized, write the report to OUT_DIR/report and the audit "
        "to OUT_DIR/audit; prints the equivalent anonymize, report and audit commands.",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="new folder for the demo's input, output and report")
    p.add_argument("--weights", help="generator checkpoint (default: the bundle's, else untrained demo weights)")
    p.add_argument("--workers", type=int, default=min(MAX_DEFAULT_WORKERS, usable_cores()),
                   help=f"files processed in parallel, >= 1 (default: the usable cores, at most {MAX_DEFAULT_WORKERS})")
    p.add_argument("--no-run", action="store_true", help="only create the input and print the commands")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "keygen",
        help="create a new de-identification key file (mode 0600)",
        description="Create a random secret key for keyed pseudonyms, UIDs and date shifts. Keep it secret and reuse "
        "it across batches of the same archive; refuses to overwrite an existing file.",
    )
    p.add_argument("key_file", metavar="KEY_FILE", help="path of the new key file (must not exist)")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser(
        "benchmark",
        help="privacy / utility benchmark of PriCheXy-Net and the baselines on a labelled research data folder",
        description="Train what a profile's rows need (resumable) and measure each anonymizer: the worst case over "
        "fresh attackers (Siamese, metric learning, pixel correlation) beside a random warp of the same displacement, "
        "and the classifier's utility; writes benchmark.json, benchmark.md and benchmark.png. For research data with "
        "patient ids (e.g. ../shared/data), not for an archive to release.",
    )
    add_benchmark_arguments(p)
    p.set_defaults(func=cmd_benchmark)

    from .label.mapping import add_label_map_parser  # MONAI Label app's steward command

    add_label_map_parser(sub)
    return parser


def _sigterm(signum, frame):  # pragma: no cover - exercised by the resume test through SIGTERM-less SIGKILL
    raise KeyboardInterrupt


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    bad = bad_number(args)  # before torch / MONAI is imported: a typo fails at once
    if bad:
        parser.error(bad)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    warnings.simplefilter("ignore" if getattr(args, "quiet", False) else "default", UserWarning)  # -q: summary only
    capture_warnings()  # warnings go through logging and its PHI filter too
    install_phi_filter()
    install_excepthook()  # a crash's traceback: library messages withheld
    try:
        signal.signal(signal.SIGTERM, _sigterm)
    except ValueError:  # not in the main thread
        pass
    try:
        return int(args.func(args))
    except CliError as err:
        print(f"monai-prichexy: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # e.g. the disk filled up while writing the manifest
        reason = err.strerror or type(err).__name__  # not str(err): its file name can be an input's
        print(f"monai-prichexy: error: {reason}; outputs written so far are complete, rerun to resume", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
