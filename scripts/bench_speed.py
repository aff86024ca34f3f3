#!/usr/bin/env python
"""Speed benchmarks (issue 12): the batch pipeline, the transform, a training step.

Each prints a table and writes JSON (``--json``); they report figures and assert nothing.

    # DICOM -> DICOM on N synthetic 2,000 x 2,500 12-bit CR files (10 MB each), every tool on the
    # same files, interleaved, median of --repeats runs, whole-process wall time and peak RSS
    python scripts/bench_speed.py pipeline --n 100 --workers 1 2 --repeats 3 --json docs/results/speed/pipeline_100.json
    # DeformAnonymize at 256 x 256 (batch 1 and 8) and on a native 2,000 x 2,500 image, beside a plain
    # eager fp32 reference of the same generator and operator; the largest difference in grey levels
    python scripts/bench_speed.py transform --json docs/results/speed/transform.json
    # milliseconds per file of each step of the batch's DICOM path (one thread, shipped generator)
    python scripts/bench_speed.py stages --json docs/results/speed/stages.json
    # seconds per adversarial step (generator, classifier, verifier updates) at the profiles' sizes
    python scripts/bench_speed.py training --profiles cpu kermany_cpu paper --json docs/results/speed/training.json

Rows of ``pipeline``: ``floor`` = pydicom read + write and nothing else; ``header-only`` = the
project's own reader and de-identifying writer with the pixels unchanged; ``anonymize`` = the
``monai-prichexy anonymize`` CLI (start-up included) with the shipped generator and with an
untrained paper-size one (``init_features`` 32, working size 256: timing only, it protects
nothing). ``--device cuda`` runs the transform and the CLI on a GPU when one is present.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


# ----------------------------------------------------------------------------- shared


def machine() -> dict:
    import torch

    return {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def command() -> str:
    """This run's command line for the JSON, absolute paths made relative to the repository
    (results are committed: no paths of the machine that measured them)."""
    args = [os.path.relpath(a, REPO) if os.path.isabs(a) else a for a in sys.argv[1:]]
    return "python scripts/bench_speed.py " + " ".join(args)


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"written {path}", file=sys.stderr)


def paper_generator(path: Path) -> Path:
    """An UNTRAINED generator of the paper's size (7.76 M parameters, 256 px working size): timing only."""
    import torch

    from monai_prichexy.networks import FlowFieldGenerator, PriCheXyNet
    from monai_prichexy.weights import save_checkpoint

    if not path.exists():
        torch.manual_seed(0)
        net = PriCheXyNet(FlowFieldGenerator(init_features=32), mu=0.01, working_size=256)
        save_checkpoint(path, net, {"untrained": True, "purpose": "timing only"})
    return path


def generators(names, work: Path) -> dict[str, Path]:
    from monai_prichexy.bundle_files import default_weights_path

    out = {}
    for name in names:
        out[name] = default_weights_path() if name == "shipped" else paper_generator(work / "generator_paper_untrained.pt")
    return out


# ----------------------------------------------------------------------------- pipeline


def make_inputs(folder: Path, n: int, rows: int, cols: int) -> None:
    """N DICOM CR files (12-bit, uncompressed, a header full of made-up PHI), 4 per patient folder."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    from monai_prichexy.demo import synthetic_radiograph

    base = synthetic_radiograph(rows, cols, bits=12, seed=0)
    root = "1.2.826.0.1.3680043.8.498.77"
    for i in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR Image Storage
        ds.file_meta.MediaStorageSOPInstanceUID = f"{root}.3.{i}"
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = f"{root}.1.{i // 4}", f"{root}.2.{i}"
        ds.Modality, ds.BodyPartExamined, ds.BurnedInAnnotation = "CR", "CHEST", "NO"
        ds.PatientName, ds.PatientID = f"Bench^Patient{i // 4}", f"BENCH-{i // 4:05d}"
        ds.PatientBirthDate, ds.StudyDate, ds.AccessionNumber = "19700101", "20240105", f"ACC{i:06d}"
        ds.InstitutionName = "Benchmark Hospital"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
        ds.PixelData = np.roll(base, shift=(7 * i) % rows, axis=0).astype("<u2").tobytes()  # a different image each
        path = folder / f"patient{i // 4:04d}" / f"IM{i:05d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.dcm") if p.is_file())


def floor_job(in_dir: str, out_dir: str) -> None:
    """pydicom read + write of every file, nothing else (the floor any DICOM tool pays)."""
    import pydicom

    src, dst = Path(in_dir), Path(out_dir)
    for path in _dicom_files(src):
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        ds = pydicom.dcmread(path)
        ds.save_as(target, enforce_file_format=True)


def header_only_job(in_dir: str, out_dir: str, key_file: str) -> None:
    """The project's reader and de-identifying writer, pixels unchanged: its header-only cost."""
    from monai_prichexy.dicom import DeidConfig, load_key, read_radiograph, write_radiograph

    src, dst = Path(in_dir), Path(out_dir)
    deid = DeidConfig(key=load_key(key_file))
    start = time.perf_counter()
    for i, path in enumerate(_dicom_files(src)):
        rad = read_radiograph(path)
        target = dst / f"{i:06d}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_radiograph(rad, rad.stored, target, deid=deid)
    print(f"done in {time.perf_counter() - start:.1f} s: {i + 1} written", file=sys.stderr)


#: a lean launcher (no numpy / torch): a child's peak RSS counts its parent's pages until exec,
#: so the job is started from this small process rather than from the benchmark itself
_LAUNCHER = """
import json, os, subprocess, sys, time
cmd = json.loads(sys.argv[1])
start = time.perf_counter()
proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps({"wall_s": time.perf_counter() - start, "code": os.waitstatus_to_exitcode(status),
                  "max_rss_kib": usage.ru_maxrss, "stderr": err[-3000:]}))
"""


def _measure(cmd: list[str], code: Path = REPO) -> dict:
    """Wall time and peak RSS (``wait4`` rusage) of one process running the package in ``code``;
    the CLI's own processing time when it says it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(code), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", _LAUNCHER, json.dumps(cmd)], env=env, capture_output=True, text=True,
                         check=True, cwd=code)  # cwd too: `python -m` puts it before PYTHONPATH
    result = json.loads(out.stdout)
    if result["code"] != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({result['code']}):\n{result['stderr']}")
    done = re.search(r"done in ([0-9.]+) s: (\d+) written", result["stderr"])
    return {"wall_s": result["wall_s"], "processing_s": float(done.group(1)) if done else None,
            "written": int(done.group(2)) if done else None, "max_rss_mib": result["max_rss_kib"] / 1024.0}


def _commit(checkout) -> str:
    """The short commit of a checkout (its folder name when it is not a git checkout)."""
    out = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or Path(checkout).name


def cmd_pipeline(args) -> int:
    from monai_prichexy.dicom import create_key

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="prichexy-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        inputs = work / f"in_{args.n}_{args.rows}x{args.cols}"
        if not inputs.exists():
            t0 = time.perf_counter()
            make_inputs(inputs, args.n, args.rows, args.cols)
            print(f"created {args.n} DICOM files of {args.rows}x{args.cols} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        key = work / "bench.key"
        if not key.exists():
            create_key(key)
        weights = generators(args.generators, work)
        script = str(Path(__file__).resolve())
        jobs: dict[str, list[str]] = {
            "floor (pydicom read + write)": [sys.executable, script, "_floor", str(inputs), "{out}"],
            "header-only (project reader + de-identifying writer)": [sys.executable, script, "_header_only",
                                                                     str(inputs), "{out}", str(key)],
        }
        baselines = {checkout: _commit(checkout) for checkout in args.baseline or ()}
        trees = {"": REPO, **{f" (baseline {commit})": Path(checkout).resolve() for checkout, commit in baselines.items()}}
        for name, path in weights.items():
            for workers in args.workers:
                for label in trees:
                    jobs[f"anonymize {name} --workers {workers}{label}"] = [
                        sys.executable, "-m", "monai_prichexy.cli", "anonymize", str(inputs), "{out}", "--weights",
                        str(path), "--workers", str(workers), "--no-progress", "--device", args.device, "--key-file", str(key)]
        runs: dict[str, list[dict]] = {name: [] for name in jobs}
        for repeat in range(args.repeats):  # interleaved: each repeat runs every tool once
            for name, cmd in jobs.items():
                out = work / "out"
                shutil.rmtree(out, ignore_errors=True)
                tree = next((path for label, path in trees.items() if label and name.endswith(label)), REPO)
                result = _measure([c.replace("{out}", str(out)) for c in cmd], tree)
                runs[name].append(result)
                print(f"[{repeat + 1}/{args.repeats}] {name}: {args.n / result['wall_s']:.2f} files/s, "
                      f"{result['max_rss_mib']:.0f} MiB", file=sys.stderr)
                shutil.rmtree(out, ignore_errors=True)
        rows = []
        for name, results in runs.items():
            wall = statistics.median(r["wall_s"] for r in results)
            processing = [r["processing_s"] for r in results if r["processing_s"]]
            rows.append({
                "tool": name, "files": args.n, "files_per_s": args.n / wall, "wall_s": wall,
                "startup_s": (wall - statistics.median(processing)) if name.startswith("anonymize") and processing else None,
                "max_rss_mib": max(r["max_rss_mib"] for r in results), "runs": results,
            })
        floor = rows[0]["files_per_s"]
        for row in rows:
            row["ratio_to_floor"] = row["files_per_s"] / floor
        print(f"\n{'tool':<66} {'files/s':>8} {'x floor':>8} {'start-up s':>10} {'peak RSS MiB':>12}")
        for row in rows:
            startup = f"{row['startup_s']:.1f}" if row["startup_s"] is not None else "-"
            print(f"{row['tool']:<66} {row['files_per_s']:>8.2f} {row['ratio_to_floor']:>8.2f} {startup:>10} "
                  f"{row['max_rss_mib']:>12.0f}")
        write_json(args.json, {
            "benchmark": "pipeline", **machine(), "device": args.device, "repeats": args.repeats,
            "image": f"{args.rows}x{args.cols} 12-bit CR DICOM, uncompressed", "files": args.n,
            "generators": {name: str(p.name) for name, p in weights.items()}, "rows": rows,
            "baselines": list(baselines.values()), "commit": _commit(REPO),
            "command": command(),
        })
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


# ----------------------------------------------------------------------------- transform


def reference_deform(network, values, view=None):
    """The plain eager fp32 reference: generator and operator as written, no inference tricks."""
    import torch
    import torch.nn.functional as F

    from monai_prichexy.networks.deformation import sampling_grid, warp

    with torch.no_grad():
        image = values.to(torch.float32)[None, None]
        low, high = image.min(), image.max()
        if view is None:
            view = (image - low) / (high - low)
        small = view
        if network.working_size is not None and tuple(view.shape[-2:]) != tuple(network.working_size):
            small = F.interpolate(view, size=network.working_size, mode="bilinear", align_corners=False, antialias=True)
        flow = network.generator(small)
        grid = sampling_grid(flow, network.mu, network.smoothing, size=image.shape[-2:], budget_px=network.budget_px)
        return warp(image, grid)[0, 0].clamp(low, high)


def _rate(fn, items: int, min_time: float, max_calls: int) -> tuple[float, int]:
    fn()  # warm-up (allocations, lazy init)
    calls, start = 0, time.perf_counter()
    while calls < max_calls and (calls == 0 or time.perf_counter() - start < min_time):
        fn()
        calls += 1
    return items * calls / (time.perf_counter() - start), calls


def cmd_transform(args) -> int:
    import torch

    from monai_prichexy.demo import synthetic_radiograph
    from monai_prichexy.transforms import DeformAnonymize

    work = Path(tempfile.mkdtemp(prefix="prichexy-speed-"))
    try:
        rows = []
        for (name, path), precision in [(g, p) for g in generators(args.generators, work).items() for p in args.precisions]:
            try:
                transform = DeformAnonymize(str(path), device=args.device, precision=precision)
            except ValueError as err:  # bf16 refused for weights it moves too far (its self-check)
                rows.append({"generator": name, "precision": precision, "refused": str(err)})
                print(f"{name:<8} {precision:<5} refused: {err}", file=sys.stderr)
                continue
            network = DeformAnonymize(str(path), device=args.device).network  # fp32, standard layout: the reference
            for label, (h, w), batch in (("256 x 256, batch 1", (256, 256), 1), (f"256 x 256, batch {args.batch}", (256, 256), args.batch),
                                         (f"native {args.native[0]} x {args.native[1]}", tuple(args.native), 1)):
                images = [torch.as_tensor(np.roll(synthetic_radiograph(h, w, bits=12, seed=1), 5 * k, axis=0).astype(np.float32))
                          for k in range(batch)]

                def run_transform():
                    return [transform(img[None]) for img in images]

                def run_reference():
                    return [reference_deform(network, img.to(args.device)) for img in images]

                ours, calls_t = _rate(run_transform, batch, args.min_time, args.max_calls)
                ref, calls_r = _rate(run_reference, batch, args.min_time, args.max_calls)
                out_t = [np.asarray(torch.as_tensor(o).cpu())[0] for o in run_transform()]
                out_r = [r.cpu().numpy() for r in run_reference()]
                diff = max(float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) for a, b in zip(out_t, out_r))
                rows.append({"generator": name, "precision": precision, "input": label, "transform_images_per_s": ours,
                             "reference_images_per_s": ref, "speed_up": ours / ref, "max_diff_grey_levels": diff,
                             "calls": [calls_t, calls_r]})
                print(f"{name:<8} {precision:<5} {label:<24} transform {ours:8.2f} img/s  reference {ref:8.2f} img/s  "
                      f"x{ours / ref:5.2f}  max diff {diff:g} grey levels (12-bit)", file=sys.stderr)
        print(f"\n{'generator':<9} {'prec':<5} {'input':<24} {'DeformAnonymize img/s':>22} {'eager fp32 img/s':>17} {'speed-up':>9} {'max diff':>9}")
        for r in rows:
            if "refused" in r:
                print(f"{r['generator']:<9} {r['precision']:<5} refused (see above)")
                continue
            print(f"{r['generator']:<9} {r['precision']:<5} {r['input']:<24} {r['transform_images_per_s']:>22.2f} {r['reference_images_per_s']:>17.2f} "
                  f"{r['speed_up']:>9.2f} {r['max_diff_grey_levels']:>9g}")
        write_json(args.json, {"benchmark": "transform", **machine(), "device": args.device,
                               "image": "synthetic 12-bit radiograph (values 0..4095 as float32; differences before rounding)", "rows": rows,
                               "command": command()})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


# ----------------------------------------------------------------------------- stages


def cmd_stages(args) -> int:
    """Milliseconds per file of each step of the batch's DICOM path, on one thread, shipped generator.

    The steps are those of ``FileAnonymizer.anonymize_dicom`` and ``PriCheXyDeformation.deform_values``,
    called one by one with a timer between them (the same functions; the batch runs them in one go).
    """
    import hashlib

    import torch
    import torch.nn.functional as F

    from monai_prichexy.bundle_files import resolve_weights
    from monai_prichexy.data.decode import decode_radiograph, radiograph_data
    from monai_prichexy.dicom import DeidConfig, create_key, write_radiograph
    from monai_prichexy.networks.deformation import warp
    from monai_prichexy.transforms.functional import PriCheXyDeformation, network_view, working_dtype
    from monai_prichexy.transforms.meta import RADIOGRAPH_VALUE_RANGE, RADIOGRAPH_VIEW_LUT, deformation_method_values

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="prichexy-stages-"))
    try:
        make_inputs(work / "in", args.n, args.rows, args.cols)
        weights, sha256 = resolve_weights()
        deformation = PriCheXyDeformation(weights, expected_sha256=sha256)
        network = deformation.network
        deid = DeidConfig(key=create_key(work / "k.key"), method_info=deformation_method_values(network.mu, network.smoothing))
        times: dict[str, list[float]] = {}

        def lap(name: str, start: float) -> float:
            now = time.perf_counter()
            times.setdefault(name, []).append((now - start) * 1000.0)
            return now

        with torch.no_grad():
            for i, path in enumerate(_dicom_files(work / "in")):
                t = time.perf_counter()
                data = path.read_bytes()
                t = lap("read file", t)
                hashlib.sha256(data).hexdigest()
                t = lap("input SHA-256", t)
                rad = decode_radiograph(path, "dicom", data=data)
                values, meta = radiograph_data(rad)
                t = lap("parse + decode (pydicom)", t)
                view = network_view(values, meta[RADIOGRAPH_VIEW_LUT])[None, None]
                t = lap("network view (table)", t)
                image = torch.as_tensor(values).to(working_dtype(torch.as_tensor(values).dtype))[None, None]
                low, high = (float(v) for v in torch.aminmax(image))
                t = lap("to float + min/max", t)
                small = F.interpolate(view, size=network.working_size, mode="bilinear", align_corners=False, antialias=True)
                t = lap("antialiased downsizing", t)
                flow = network.generator(small)
                t = lap("generator", t)
                grid = network.grid_from_flow(flow, size=image.shape[-2:])
                t = lap("native-size grid (upsampling)", t)
                out = warp(image, grid)[0, 0]
                t = lap("grid_sample", t)
                value_range = meta[RADIOGRAPH_VALUE_RANGE]
                stored = out.clamp_(low, high).round_().clamp_(*value_range).numpy().astype(values.dtype)
                t = lap("clamp, round, cast", t)
                rad.view = None
                write_radiograph(rad, stored, work / "out" / f"{i}.dcm", deid=deid, sha256=True)
                lap("de-identify + write + fsync + read-back + SHA-256", t)
        rows = {name: statistics.median(values[1:] or values) for name, values in times.items()}  # first file warms up
        print(f"\n{'step (one thread, shipped generator)':<52} {'ms/file':>8}")
        for name, ms in rows.items():
            print(f"{name:<52} {ms:>8.1f}")
        print(f"{'total':<52} {sum(rows.values()):>8.1f}")
        write_json(args.json, {"benchmark": "stages", **machine(), "torch_threads": 1, "files": args.n,
                               "image": f"{args.rows}x{args.cols} 12-bit CR DICOM, uncompressed", "ms_per_file": rows,
                               "total_ms": sum(rows.values()), "command": command()})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


# ----------------------------------------------------------------------------- training


def cmd_training(args) -> int:
    import torch

    from monai_prichexy.engines.adversarial import AdversarialStep
    from monai_prichexy.engines.profile import load_profile
    from monai_prichexy.labels import get_schema
    from monai_prichexy.networks import AbnormalityClassifier, FlowFieldGenerator, PriCheXyNet, SiameseVerifier

    device = torch.device(args.device)
    rows = []
    for profile in args.profiles:
        cfg = load_profile(REPO / "configs" / f"benchmark_{profile}.json")
        nets, stage = cfg["networks"], cfg["stages"]["adversarial"]
        size = int(args.size or cfg["data"]["image_size"])
        batch = int(args.batch_size or stage["batch_size"])
        schema = get_schema("kermany" if "kermany" in profile else "chestxray14")
        torch.manual_seed(0)
        anonymizer = PriCheXyNet(FlowFieldGenerator(**nets["generator"]), mu=0.01, smoothing=nets["smoothing"],
                                 working_size=nets["working_size"] if not args.size else size).to(device)
        classifier = AbnormalityClassifier(**{"targets": schema.classes, **nets["classifier"]}).to(device)
        verifier = SiameseVerifier(**nets["verifier"]).to(device)
        step = AdversarialStep(
            anonymizer, classifier, verifier, torch.optim.Adam(anonymizer.parameters(), 1e-4),
            torch.optim.Adam(classifier.parameters(), 1e-4), torch.optim.Adam(verifier.parameters(), 1e-4), device,
            schema=schema)
        labels = torch.zeros(batch, schema.num_classes)
        labels[:, 0] = 1
        data = {"image1": torch.rand(batch, 1, size, size), "image2": torch.rand(batch, 1, size, size),
                "label": torch.randint(0, 2, (batch,)), "labels1": labels}
        step(None, data)  # warm-up
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            step(None, data)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        row = {"profile": profile, "image_size": size, "batch_size": batch,
               "generator": nets["generator"], "classifier": nets["classifier"], "verifier": nets["verifier"],
               "seconds_per_step": statistics.median(times), "steps": args.steps,
               "seconds_per_image": statistics.median(times) / batch}
        rows.append(row)
        print(f"{profile:<14} {size:>4} px  batch {batch:>3}  {row['seconds_per_step']:8.2f} s/step  "
              f"{row['seconds_per_image'] * 1000:7.1f} ms/image", file=sys.stderr)
    write_json(args.json, {"benchmark": "training (adversarial step: G, C and V updates)", **machine(),
                           "device": args.device, "rows": rows,
                           "command": command()})
    return 0


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pipeline", help="DICOM -> DICOM files/s and peak RSS beside the pydicom floor")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--cols", type=int, default=2500)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--generators", nargs="+", choices=("shipped", "paper"), default=["shipped", "paper"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workdir", help="keep inputs here between runs (default: a temp folder, removed)")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--baseline", metavar="CHECKOUT", nargs="+",
                   help="also run the CLI of other checkouts (e.g. git worktrees of the commits before changes), "
                   "interleaved with this one's, for before / after figures from the same run")
    p.add_argument("--json")
    p.set_defaults(func=cmd_pipeline)
    p = sub.add_parser("transform", help="DeformAnonymize images/s beside the eager fp32 reference")
    p.add_argument("--generators", nargs="+", choices=("shipped", "paper"), default=["shipped", "paper"])
    p.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--native", type=int, nargs=2, default=[2000, 2500], metavar=("ROWS", "COLS"))
    p.add_argument("--min-time", type=float, default=3.0, help="seconds each measurement runs at least")
    p.add_argument("--max-calls", type=int, default=50)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json")
    p.set_defaults(func=cmd_transform)
    p = sub.add_parser("stages", help="ms per file of each step of the DICOM path (one thread)")
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--cols", type=int, default=2500)
    p.add_argument("--json")
    p.set_defaults(func=cmd_stages)
    p = sub.add_parser("training", help="seconds per adversarial step")
    p.add_argument("--profiles", nargs="+", default=["cpu", "kermany_cpu", "paper"])
    p.add_argument("--size", type=int, default=None, help="image side for every profile (default: the profile's)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json")
    p.set_defaults(func=cmd_training)
    p = sub.add_parser("_floor")
    p.add_argument("in_dir")
    p.add_argument("out_dir")
    p.set_defaults(func=lambda a: floor_job(a.in_dir, a.out_dir) or 0)
    p = sub.add_parser("_header_only")
    p.add_argument("in_dir")
    p.add_argument("out_dir")
    p.add_argument("key_file")
    p.set_defaults(func=lambda a: header_only_job(a.in_dir, a.out_dir, a.key_file) or 0)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
