"""Run a benchmark profile, or render its tables and plot again from ``benchmark.json``.

Usage::

    monai-prichexy benchmark --config configs/benchmark_cpu.json \\
        --dataset-dir ../shared/data/nih-cxr14-subset --output-dir runs/benchmark_cpu
    # tables, plot (and the README section) again from a run's JSON, nothing retrained
    monai-prichexy benchmark --render docs/results/nih_cpu64/benchmark.json --readme README.md

(``python scripts/benchmark.py`` takes the same options.)

Every stage and evaluation is resumable (skipped when its output exists, unless ``--force``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..engines.experiment import Experiment
from ..options import add_benchmark_arguments
from ..engines.handlers import write_json
from .report import markdown_tables, plot_frontier, update_readme_section
from .rows import benchmark_rows, model_rows
from .summary import PAPER_TABLE1, summarise

__all__ = ["run_benchmark", "render", "run_from_args", "main"]

logger = logging.getLogger("monai_prichexy.benchmark")


def _note(payload: Mapping[str, Any]) -> str:
    data = payload["data"]
    attack = payload["config"]["stages"]["attack"]
    train = payload.get("training_time_s", 0.0) / 60
    evaluation = payload.get("evaluation_time_s", 0.0) / 60
    return (f"Data: {data['dataset']} ({data['image_dir']}, {data['image_size']} px, fixed split file "
            f"{data.get('split_file')}; test {data['split_sizes'].get('test')} images); training seed "
            f"{payload['config'].get('seed')}; attack seeds {attack['seeds']}. Compute: training {train:.1f} min, "
            f"evaluation {evaluation:.1f} min ({payload.get('threads', '?')} threads; summed over the stages and rows, "
            f"whichever run made them).")


def render(payload: Mapping[str, Any], out_dir: str | os.PathLike, readme: str | os.PathLike | None = None,
           name: str | None = None) -> str:
    """Write ``benchmark.md`` and ``benchmark.png`` from a payload; optionally fill the README section ``name``."""
    out = Path(out_dir)
    rows = payload["rows"]
    tables = markdown_tables(rows, _note(payload))
    (out / "benchmark.md").write_text(tables, encoding="utf-8")
    title = f"{payload['data']['dataset']} ({payload['data']['image_size']} px): worst-case privacy vs utility"
    plot_frontier(rows, out / "benchmark.png", title)
    if readme is not None:
        section = name or out.name
        rel = os.path.relpath(out / "benchmark.png", Path(readme).parent)
        if not update_readme_section(readme, section, tables + f"\n![privacy-utility plot]({rel})\n"):
            raise SystemExit(f"{readme}: no '<!-- results:{section}:start -->' / ':end -->' markers")
    return tables


def run_benchmark(
    profile: str | os.PathLike | Mapping[str, Any] | None = None,
    dataset_dir: str | os.PathLike | None = None,
    output_dir: str | os.PathLike | None = None,
    force: bool = False,
    overrides: Mapping[str, Any] | None = None,
    models: Sequence[str | os.PathLike] | None = None,
) -> dict[str, Any]:
    """Train what the rows need, evaluate every row, write ``benchmark.json``, ``.md`` and ``.png``.

    With ``models`` (trained PriCheXy-Net files), evaluate those instead of the profile's learned
    rows: real, each model, and each model's random-deformation control.
    """
    import torch

    start = time.time()
    exp = Experiment(profile, dataset_dir=dataset_dir, output_dir=output_dir, force=force, overrides=overrides)
    rows = model_rows(exp, models) if models else benchmark_rows(exp)
    results = {row: exp.evaluate(row, spec) for row, spec, _ in rows}
    elapsed = time.time() - start
    payload = {
        "config": exp.config | {"data": {**exp.config["data"], "dataset_dir": Path(exp.config["data"]["dataset_dir"]).name}},
        "data": exp.data.describe(),
        "rows": summarise(rows, results),
        "results": results,
        "paper_table1": PAPER_TABLE1,
        "wall_time_s": elapsed,
        "training_time_s": exp.training_time_s(),
        "evaluation_time_s": sum(float(r.get("wall_time_s") or 0.0) for r in results.values()),
        "threads": torch.get_num_threads(),
        "units": "AUCs, mAP@R and P@1 in percent in 'rows', as fractions in 'results'; displacements in pixels",
    }
    write_json(exp.output_dir / "benchmark.json", payload)
    render(payload, exp.output_dir)
    logger.info("benchmark written to %s in %.1f min", exp.output_dir, elapsed / 60)
    return payload


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run_from_args(args: argparse.Namespace) -> int:
    """Run (or ``--render``) the benchmark for parsed :func:`~monai_prichexy.options.add_benchmark_arguments`."""
    package_logger = logging.getLogger("monai_prichexy")
    previous = package_logger.level
    package_logger.setLevel(args.log_level.upper())  # the progress messages; restored afterwards
    try:
        return _run(args)
    finally:
        package_logger.setLevel(previous)


def _run(args: argparse.Namespace) -> int:
    if args.render:
        path = Path(args.render)
        payload = json.loads(path.read_text(encoding="utf-8"))
        print(render(payload, path.parent, args.readme))
        return 0
    if args.readme:
        raise SystemExit("--readme goes with --render")
    config = args.config
    if config is None:
        default = Path(__file__).resolve().parents[2] / "configs" / "benchmark_paper.json"
        config = default if default.is_file() else None  # None: the bundle's set-up, the same
    payload = run_benchmark(config, args.dataset_dir, args.output_dir, args.force, _parse_set(args.set), args.model)
    print((Path(payload["config"]["output_dir"]) / "benchmark.md").read_text(encoding="utf-8"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``scripts/benchmark.py``: the same options and run as ``monai-prichexy benchmark``."""
    parser = argparse.ArgumentParser(description="PriCheXy-Net privacy / utility benchmark (see monai_prichexy.benchmark)")
    add_benchmark_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_from_args(args)
