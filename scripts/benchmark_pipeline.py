#!/usr/bin/env python
"""Throughput and peak memory of ``monai-prichexy anonymize`` on realistic DICOM files.

Creates N synthetic 12-bit DICOM radiographs (default 100 of 2000 x 2500, uncompressed, a
header full of made-up PHI), a full-size generator (init_features=32, ~7.8 M parameters;
UNTRAINED: fine for timing, meaningless for privacy), then runs the real CLI in a
subprocess once per ``--workers`` value and reports files/s (from the CLI's own processing
time, start-up excluded, and end to end) and the peak resident memory of that process
(``wait4`` rusage, i.e. what ``/usr/bin/time -v`` calls "Maximum resident set size").

    nice -n 10 python scripts/benchmark_pipeline.py --n 100 --workers 1 2

The process lowers its own priority (``--nice``, default 10) so that it does not starve
others on a shared machine. Results are printed as a table and as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_inputs(folder: Path, n: int, rows: int, cols: int) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    from monai_prichexy.demo import synthetic_radiograph

    base = synthetic_radiograph(rows, cols, bits=12, seed=0)
    root = "1.2.826.0.1.3680043.8.498.77"
    for i in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
        ds.file_meta.MediaStorageSOPInstanceUID = f"{root}.3.{i}"
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = f"{root}.1.{i // 4}", f"{root}.2.{i}"
        ds.Modality, ds.BodyPartExamined, ds.BurnedInAnnotation = "DX", "CHEST", "NO"
        ds.PatientName, ds.PatientID = f"Bench^Patient{i // 4}", f"BENCH-{i // 4:05d}"
        ds.PatientBirthDate, ds.StudyDate, ds.AccessionNumber = "19700101", "20240105", f"ACC{i:06d}"
        ds.InstitutionName = "Benchmark Hospital"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
        pixels = np.roll(base, shift=(7 * i) % rows, axis=0)  # a different image per file
        ds.PixelData = pixels.astype("<u2").tobytes()
        path = folder / f"patient{i // 4:03d}" / f"IM{i:04d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)


def run_cli(args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "monai_prichexy.cli", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read()
    proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"CLI failed ({proc.returncode}):\n{err}")
    done = re.search(r"done in ([0-9.]+) s: (\d+) written", err)
    return {
        "wall_s": wall,
        "processing_s": float(done.group(1)) if done else None,
        "written": int(done.group(2)) if done else None,
        "max_rss_mib": usage.ru_maxrss / 1024.0,  # KiB on Linux
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="number of DICOM files (default 100)")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--cols", type=int, default=2500)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--init-features", type=int, default=32, help="generator width (32 = the paper's 7.8 M parameters)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workdir", help="where to put inputs/outputs (default: a temp folder, removed afterwards)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--nice", type=int, default=10, help="lower this process's priority by this much (default 10)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.nice:
        os.nice(args.nice)

    import torch

    from monai_prichexy.networks import FlowFieldGenerator, PriCheXyNet
    from monai_prichexy.weights import save_checkpoint

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="prichexy-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        inputs = work / "in"
        if not inputs.exists():
            t0 = time.perf_counter()
            make_inputs(inputs, args.n, args.rows, args.cols)
            print(f"created {args.n} DICOM files of {args.rows}x{args.cols} (12-bit) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        torch.manual_seed(0)
        weights = save_checkpoint(work / "generator_untrained.pt", PriCheXyNet(FlowFieldGenerator(init_features=args.init_features), mu=0.01))
        results = []
        if not (work / "bench.key").exists():  # anonymize never makes a key unasked
            from monai_prichexy.dicom import create_key

            create_key(work / "bench.key")
        for workers in args.workers:
            out = work / f"out_w{workers}"
            shutil.rmtree(out, ignore_errors=True)
            r = run_cli(["anonymize", str(inputs), str(out), "--weights", str(weights), "--workers", str(workers),
                         "--no-progress", "--device", args.device, "--key-file", str(work / "bench.key")])
            r.update(workers=workers, files=args.n, files_per_s=args.n / r["processing_s"], files_per_s_end_to_end=args.n / r["wall_s"])
            results.append(r)
            shutil.rmtree(out, ignore_errors=True)
        meta = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}",
            "image": f"{args.rows}x{args.cols} 12-bit DICOM, uncompressed",
            "generator": f"FlowFieldGenerator(init_features={args.init_features}) UNTRAINED (timing only)",
            "device": args.device,
        }
        print(json.dumps(meta))
        print(f"{'workers':>7} {'files':>5} {'proc s':>8} {'files/s':>8} {'wall s':>8} {'e2e f/s':>8} {'max RSS MiB':>12}")
        for r in results:
            print(f"{r['workers']:>7} {r['files']:>5} {r['processing_s']:>8.1f} {r['files_per_s']:>8.2f} {r['wall_s']:>8.1f} "
                  f"{r['files_per_s_end_to_end']:>8.2f} {r['max_rss_mib']:>12.0f}")
        if args.json:
            Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
