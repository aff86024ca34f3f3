#!/usr/bin/env python
"""Install a trained PriCheXy-Net checkpoint as the bundle's ``models/model.pt``, with what it was measured to do.

Usage::

    # 1. export the candidate (same bytes as the shipped file) and measure it on a second data set
    python scripts/ship_model.py --checkpoint runs/kermany_cpu128/checkpoints/ensemble_b0.5_displacement.pt \\
        --out runs/shipped/model.pt
    monai-prichexy benchmark --config configs/benchmark_cpu.json --dataset-dir ../shared/data/nih-cxr14-subset \\
        --output_dir runs/nih_cpu64_shipped --model runs/shipped/model.pt
    # 2. install it with the measured rows of each data set (benchmark.json:row)
    python scripts/ship_model.py --checkpoint runs/kermany_cpu128/checkpoints/ensemble_b0.5_displacement.pt \\
        --measured docs/results/kermany_cpu128/benchmark.json:ensemble_b0.5 \\
                   docs/results/nih_cpu64_shipped/benchmark.json:model_model

``model.json`` beside the weights gets a ``measured`` block (per data set: every attacker's
verification AUC for the model, for unaltered images and for a random warp of the same
displacement; closure, retention, displacement) and a one-sentence ``verdict``
(:func:`monai_prichexy.benchmark.model_record.verdict`), which ``monai-prichexy anonymize``
prints at the end of each run. The bundle's ``configs/metadata.json`` records the SHA-256.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monai_prichexy.benchmark.model_record import measured_record, records_markdown, verdict  # noqa: E402
from monai_prichexy.engines.anonymizers import build_anonymizer  # noqa: E402
from monai_prichexy.engines.handlers import export_bundle_model  # noqa: E402
from monai_prichexy.weights import load_checkpoint, sha256_file  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="install a trained PriCheXy-Net as the bundle's model.pt")
    parser.add_argument("--checkpoint", required=True, help="trained PriCheXy-Net checkpoint (runs/.../checkpoints/*.pt)")
    parser.add_argument("--out", default="bundle/models/model.pt", help="where model.pt goes (default: the bundle's)")
    parser.add_argument("--measured", nargs="*", default=[], metavar="BENCHMARK_JSON:ROW",
                        help="benchmark runs that measured these weights, and the row that holds them")
    args = parser.parse_args(argv)

    checkpoint = Path(args.checkpoint)
    network = build_anonymizer("prichexy", checkpoint=checkpoint)
    meta = {k: v for k, v in load_checkpoint(checkpoint).get("meta", {}).items() if k not in ("adversaries",)}
    meta["source_checkpoint"] = checkpoint.name
    records = []
    for item in args.measured:
        path, sep, row = item.rpartition(":")
        if not sep:
            parser.error(f"--measured expects BENCHMARK_JSON:ROW, got {item!r}")
        records.append({**measured_record(json.loads(Path(path).read_text(encoding="utf-8")), row), "source": path})
    if records:
        meta["measured"] = {"records": records, "verdict": verdict(records)}
    out = export_bundle_model(network, args.out, meta)
    print(f"{out}: sha256 {sha256_file(out)}")
    if records:
        print(meta["measured"]["verdict"])
        print(records_markdown(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
