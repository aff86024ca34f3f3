#!/usr/bin/env python
"""Train the attack and utility networks that ship with the bundle, and install them.

The bundle ships three trained networks beside the generator so that ``monai-prichexy report``,
``audit`` (when a release has too few patients to train its own attackers) and the demo work
out of the box:

- ``verifier.pt``: the paper's Siamese verifier (Packhäuser et al., MICCAI 2023), trained on
  real same / different-patient pairs;
- ``metric.pt``: the metric-learning attacker (supervised-contrastive embedding over patient
  ids, DESIGN section 8);
- ``classifier.pt``: the utility classifier (normal / bacterial / viral pneumonia).

All three are trained by the stages of the benchmark's Kermany CPU profile
(``configs/benchmark_kermany_cpu.json``: 128-px images, the attackers look at 64 px) on the
fixed training split of ``kermany-pediatric-cxr`` -- the data set the shipped generator was
trained on -- with seed 0; each file's SHA-256 goes into ``configs/metadata.json``.

Usage::

    python scripts/train_attack_networks.py --dataset_dir ../shared/data/kermany-pediatric-cxr \\
        --output_dir runs/attack_networks --install bundle/models
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from monai_prichexy.engines.attack import score_attack  # noqa: E402
from monai_prichexy.engines.attackers import AttackContext, MetricAttacker  # noqa: E402
from monai_prichexy.engines.experiment import Experiment  # noqa: E402
from monai_prichexy.engines.release import load_split_images  # noqa: E402
from monai_prichexy.weights import save_checkpoint, sha256_file  # noqa: E402

PROFILE = "configs/benchmark_kermany_cpu.json"
NAMES = ("verifier", "metric", "classifier")


def train(dataset_dir: str, output_dir: str, threads: int) -> dict[str, Path]:
    """Train the three networks (resumable: finished stages are kept) and return their checkpoints."""
    overrides = {"num_threads": threads, "networks.classifier.input_size": 128}
    exp = Experiment(PROFILE, dataset_dir=dataset_dir, output_dir=output_dir, overrides=overrides)
    paths = {"classifier": exp.classifier_pretrain(), "verifier": exp.verifier_pretrain()}
    metric_path = exp.path("metric")
    if not (metric_path.is_file() and metric_path.with_suffix(".json").is_file()):
        start = time.perf_counter()
        real = {s: load_split_images(exp.data, s) for s in ("train", "val", "test")}
        train_pairs = real["train"].pair_indices(exp.data.pairs("train"))
        val_pairs = real["val"].pair_indices(exp.data.pairs("val"))
        settings = dict(exp.stages["attack"]["attackers"]["metric"])
        attacker = MetricAttacker(**settings, device=exp.device, progress=False)
        fit = attacker.fit(AttackContext(real["train"], real["val"], real["val"], train_pairs, val_pairs), seed=exp.seed)
        test = score_attack(attacker.scores(real["test"].images, real["test"].images), exp.data, real["test"])
        save_checkpoint(metric_path, attacker.network, {**exp._meta(), "settings": settings, "fit": fit})
        summary = {"wall_time_s": time.perf_counter() - start, "fit": fit,
                   "test_real_vs_real": {k: test[k] for k in ("auc_pair", "auc_patient", "precision_at_1", "map_at_r")}}
        metric_path.with_suffix(".json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    paths["metric"] = metric_path
    measure(exp, paths)
    return paths


def measure(exp: Experiment, paths: dict[str, Path]) -> None:
    """Test-split figures of the verifier and the classifier on real images, into ``<name>.json`` (``test``)."""
    from monai_prichexy.engines.attack import evaluate_utility, evaluate_verification
    from monai_prichexy.weights import load_network

    for name in ("verifier", "classifier"):
        summary_path = paths[name].with_suffix(".json")
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        if "test" in summary:
            continue
        network, _ = load_network(paths[name])
        if name == "verifier":
            test = evaluate_verification(network, None, exp.data, device=exp.device)
            summary["test"] = {k: test[k] for k in ("auc_pair", "auc_patient", "precision_at_1", "map_at_r")}
        else:
            real = load_split_images(exp.data, "test")
            test = evaluate_utility(network, real, exp.data, device=exp.device)
            summary["test"] = test
        summary_path.write_text(json.dumps(summary, indent=2, default=float), encoding="utf-8")


def install(paths: dict[str, Path], models_dir: Path) -> dict[str, str]:
    """Copy the checkpoints into the bundle and record their SHA-256 in ``configs/metadata.json``."""
    from monai_prichexy.bundle_files import record_sha256

    shas = {}
    for name in NAMES:
        target = models_dir / f"{name}.pt"
        shutil.copyfile(paths[name], target)
        shas[name] = sha256_file(target)
        print(f"{target}: sha256 {shas[name]}")
    for name, sha in shas.items():
        record_sha256(models_dir.parent / "configs" / "metadata.json", sha, key=f"{name}_sha256")
    return shas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="train and install the bundle's verifier, metric attacker and classifier")
    parser.add_argument("--dataset_dir", required=True, help="kermany-pediatric-cxr folder (splits.csv, labels.csv, images/)")
    parser.add_argument("--output_dir", default="runs/attack_networks", help="where the checkpoints are trained")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for training")
    parser.add_argument("--install", default=None, metavar="MODELS_DIR",
                        help="copy the trained networks here (the bundle's models/) and record their SHA-256")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    paths = train(args.dataset_dir, args.output_dir, args.threads)
    for name in NAMES:
        print(f"{name}: {paths[name]}")
    if args.install:
        install(paths, Path(args.install))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
