"""An experiment: every stage of PriCheXy-Net driven by one profile, resumable.

A profile (:mod:`.profile`: the bundle's ``train.json`` / ``evaluate.json`` / ``benchmark.json``,
with a file such as ``configs/benchmark_cpu.json`` on top) fixes the data, the network sizes and
each stage's settings. :class:`Experiment` runs the stages in order,
writing checkpoints to ``<output_dir>/checkpoints/`` and evaluation results to
``<output_dir>/results/``; a stage or evaluation whose output exists is skipped unless
``force``. Used by the benchmark (:mod:`monai_prichexy.benchmark`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..networks import AbnormalityClassifier, FlowFieldGenerator, PriCheXyNet, PrivacyNetEncoder, SiameseVerifier
from ..networks.deformation import px_to_normalised
from ..weights import load_network, load_prichexynet
from ..metrics.displacement import DisplacementAccumulator
from .adversarial import create_adversarial_stage
from .attack import evaluate_anonymizer
from .classifier import create_classifier_stage
from .ensemble import create_ensemble_stage
from .data import DataModule
from .handlers import write_json
from .profile import load_profile
from .reconstruction import create_reconstruction_stage
from .release import SplitImages, load_split_images
from .utils import get_logger, resolve_device, seed_everything
from .verifier import create_verifier_stage

__all__ = ["Experiment"]

logger = get_logger("experiment")

def _mu_tag(mu: float) -> str:
    return f"mu{float(mu):g}"


class Experiment:
    """Run the stages of a profile with resumable outputs.

    Args:
        profile: a profile path or mapping (merged over :func:`~.profile.default_profile`, the bundle's set-up).
        dataset_dir: overrides ``data.dataset_dir``.
        output_dir: overrides ``output_dir``.
        force: re-run stages and evaluations whose outputs exist.
        overrides: dotted overrides, e.g. ``{"stages.attack.seeds": [0, 1]}``.
    """

    def __init__(
        self,
        profile: str | os.PathLike | Mapping[str, Any] | None = None,
        dataset_dir: str | os.PathLike | None = None,
        output_dir: str | os.PathLike | None = None,
        force: bool = False,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = load_profile(profile, overrides)
        if dataset_dir is not None:
            self.config["data"]["dataset_dir"] = str(dataset_dir)
        if output_dir is not None:
            self.config["output_dir"] = str(output_dir)
        if not self.config["data"].get("dataset_dir"):
            raise ValueError("no dataset_dir: give it in the profile (data.dataset_dir) or as an argument")
        self.output_dir = Path(self.config["output_dir"])
        self.ckpt_dir = self.output_dir / "checkpoints"
        self.results_dir = self.output_dir / "results"
        self.force = bool(force)
        self.device = resolve_device(self.config.get("device", "cpu"))
        self.seed = int(self.config.get("seed", 0))
        self.progress = bool(self.config.get("progress", True))
        self.data = DataModule(**self.config["data"], seed=self.seed)
        self.networks = self.config["networks"]
        if self.config.get("num_threads"):
            torch.set_num_threads(int(self.config["num_threads"]))
        self.stages = self.config["stages"]
        self._real: dict[str, SplitImages] | None = None

    # ------------------------------------------------------------------ helpers
    def _meta(self, **extra: Any) -> dict[str, Any]:
        return {"data": self.data.describe(), "seed": self.seed, **extra}

    def _done(self, path: Path) -> bool:
        """A stage is done when its summary (``<checkpoint>.json``, written after training) exists.

        The checkpoint alone is not enough: the best-metric handler writes it during training, so
        a run killed mid-stage leaves a half-trained file that must be trained again, not used.
        """
        if self.force:
            return False
        if path.is_file() and path.with_suffix(".json").is_file():
            logger.info("skipping: %s exists (force to redo)", path.name)
            return True
        if path.is_file():
            logger.warning("%s has no summary (its stage was interrupted): training it again", path.name)
        return False

    def _kwargs(self, stage: str, drop: tuple[str, ...] = ("batch_size",)) -> dict[str, Any]:
        return {k: v for k, v in self.stages[stage].items() if k not in drop and not k.startswith("_")}

    def _loaders(self, kind: str, batch_size: int) -> tuple[Any, Any]:
        if kind == "image":
            return (self.data.image_loader("train", batch_size, shuffle=True), self.data.image_loader("val", batch_size))
        return (self.data.pair_loader("train", batch_size, shuffle=True), self.data.pair_loader("val", batch_size))

    def new_classifier(self) -> AbnormalityClassifier:
        """The utility classifier over the data set's classes (its schema)."""
        return AbnormalityClassifier(**{"targets": self.data.schema.classes, **self.networks["classifier"]})

    def new_verifier(self) -> SiameseVerifier:
        return SiameseVerifier(**self.networks["verifier"])

    def new_prichexy(self, mu: float, smoothing: str | None = None, budget_px: float | None = None) -> PriCheXyNet:
        """A new PriCheXy-Net of the profile's size; smoothing defaults to the profile's (the paper's ``"grid"``)."""
        return PriCheXyNet(
            FlowFieldGenerator(**self.networks["generator"]), mu=float(mu), smoothing=smoothing or self.networks["smoothing"],
            working_size=self.networks["working_size"], budget_px=budget_px,
        )

    def _operator_tag(self, mu: float, smoothing: str | None, budget_px: float | None) -> str:
        tag = _mu_tag(mu) if budget_px is None else f"b{float(budget_px):g}"
        if smoothing and smoothing != self.networks["smoothing"]:
            tag += f"_{smoothing}"
        return tag

    def new_privacy_net(self) -> PrivacyNetEncoder:
        return PrivacyNetEncoder(**self.networks["privacy_net"])

    def path(self, name: str) -> Path:
        return self.ckpt_dir / f"{name}.pt"

    def training_time_s(self) -> float:
        """Wall time of every stage trained for this experiment (from the summaries beside the checkpoints)."""
        total = 0.0
        for summary in self.ckpt_dir.glob("*.json"):
            try:
                total += float(json.loads(summary.read_text(encoding="utf-8")).get("wall_time_s") or 0.0)
            except (OSError, ValueError):
                continue
        return total

    # ------------------------------------------------------------------ stages
    def classifier_pretrain(self) -> Path:
        """Stage 1; returns the checkpoint path."""
        path = self.path("classifier")
        if not self._done(path):
            seed_everything(self.seed)
            cfg = self.stages["classifier_pretrain"]
            stage = create_classifier_stage(
                self.new_classifier(), *self._loaders("image", cfg["batch_size"]), **self._kwargs("classifier_pretrain"),
                device=self.device, ckpt_path=path, meta=self._meta(), progress=self.progress, schema=self.data.schema,
            )
            stage.run()
        return path

    def verifier_pretrain(self) -> Path:
        """Stage 2; returns the checkpoint path."""
        path = self.path("verifier")
        if not self._done(path):
            seed_everything(self.seed)
            cfg = self.stages["verifier_pretrain"]
            stage = create_verifier_stage(
                self.new_verifier(), *self._loaders("pair", cfg["batch_size"]), **self._kwargs("verifier_pretrain"),
                device=self.device, ckpt_path=path, meta=self._meta(), progress=self.progress,
            )
            stage.run()
        return path

    def anonymizer_pretrain(self, mu: float | None, smoothing: str | None = None, budget_px: float | None = None) -> Path:
        """Stage 3 for PriCheXy-Net (``mu``, optional smoothing and budget) or, with ``mu=None``, Privacy-Net."""
        name = "privacy_net_pretrain" if mu is None else f"generator_pretrain_{self._operator_tag(mu, smoothing, budget_px)}"
        path = self.path(name)
        if not self._done(path):
            seed_everything(self.seed)
            cfg = self.stages["generator_pretrain"]
            network = self.new_privacy_net() if mu is None else self.new_prichexy(mu, smoothing, budget_px)
            stage = create_reconstruction_stage(
                network, *self._loaders("image", cfg["batch_size"]), **self._kwargs("generator_pretrain"),
                device=self.device, ckpt_path=path, meta=self._meta(), progress=self.progress,
                name="privacy_net_pretrain" if mu is None else "generator_pretrain",
            )
            stage.run()
        return path

    def load_anonymizer(
        self, path: Path, mu: float | None, smoothing: str | None = None, budget_px: float | None = None
    ) -> torch.nn.Module:
        if mu is None:
            net, _ = load_network(path, network="PrivacyNetEncoder")
            return net
        return load_prichexynet(path, mu=float(mu), smoothing=smoothing or self.networks["smoothing"],
                                working_size=self.networks["working_size"], budget_px=budget_px, default_working_size=None)

    def adversarial(self, mu: float | None) -> Path:
        """Stage 4 (after stages 1-3) for PriCheXy-Net (``mu``) or Privacy-Net (``None``)."""
        name = "privacy_net" if mu is None else f"prichexy_{_mu_tag(mu)}"
        path = self.path(name)
        if self._done(path):
            return path
        pre = self.anonymizer_pretrain(mu)
        cls_path, ver_path = self.classifier_pretrain(), self.verifier_pretrain()
        seed_everything(self.seed)
        anonymizer = self.load_anonymizer(pre, mu)
        classifier, _ = load_network(cls_path, network="AbnormalityClassifier")
        verifier, _ = load_network(ver_path, network="SiameseVerifier")
        cfg = self.stages["adversarial"]
        stage = create_adversarial_stage(
            anonymizer, classifier, verifier, *self._loaders("pair", cfg["batch_size"]), **self._kwargs("adversarial"),
            device=self.device, ckpt_path=path, classifier_ckpt_path=self.path(f"{name}_classifier"),
            verifier_ckpt_path=self.path(f"{name}_verifier"), meta=self._meta(), progress=self.progress,
            name="privacy_net_adversarial" if mu is None else "adversarial", schema=self.data.schema,
        )
        stage.run()
        return path

    def ensemble(self, budget_px: float) -> Path:
        """A generator within ``budget_px`` (px at 256 x 256) trained against the refreshed ensemble.

        The profile's ``benchmark.frontier`` gives the operator (``smoothing``, default the clean
        frame ``"displacement"``) and ``stages.ensemble`` the training; mu is the budget in
        normalised units, so the per-axis bound of ``mu * tanh`` reaches it and the budget's clamp
        bounds the vector length. Pre-trained to reconstruct its input first (stage 3).
        """
        frontier = self.config["benchmark"].get("frontier") or {}
        smoothing = frontier.get("smoothing", "displacement")
        mu = px_to_normalised(budget_px)
        name = f"ensemble_{self._operator_tag(mu, smoothing, budget_px)}"
        path = self.path(name)
        if self._done(path):
            return path
        pre = self.anonymizer_pretrain(mu, smoothing, budget_px)
        cls_path = self.classifier_pretrain()
        seed_everything(self.seed)
        anonymizer = self.load_anonymizer(pre, mu, smoothing, budget_px)
        classifier, _ = load_network(cls_path, network="AbnormalityClassifier")
        cfg = dict(self.stages["ensemble"])
        batch_size = cfg.pop("batch_size")
        stage = create_ensemble_stage(
            anonymizer, classifier, *self._loaders("pair", batch_size), **{k: v for k, v in cfg.items() if not k.startswith("_")},
            schema=self.data.schema, device=self.device, ckpt_path=path, meta=self._meta(budget_px=budget_px),
            progress=self.progress,
        )
        stage.run()
        return path

    # ------------------------------------------------------------------ evaluation
    @property
    def eval_split(self) -> str:
        return self.config["benchmark"].get("eval_split", "test")

    def real_images(self) -> dict[str, SplitImages]:
        """The train, validation and evaluation splits in memory, read once and shared by every row."""
        if self._real is None:
            self._real = {s: load_split_images(self.data, s) for s in dict.fromkeys(("train", "val", self.eval_split))}
        return self._real

    def displacement(self, mu: float) -> dict[str, Any]:
        """Displacement statistics of the trained generator for ``mu`` on the validation split."""
        return self.field_displacement(self.load_anonymizer(self.adversarial(mu), mu))

    @torch.no_grad()
    def field_displacement(self, network: PriCheXyNet, batch_size: int = 64) -> dict[str, Any]:
        """Displacement statistics (:class:`DisplacementAccumulator`) of any PriCheXy-Net on the validation split.

        The random-deformation control of a learned row is matched to its ``interior`` mean.
        """
        network = network.to(self.device).eval()
        images = self.real_images()["val"].images
        size = network.working_size
        accumulator = DisplacementAccumulator(None if size is None else size[0], network.frame_px(max(images.shape[-2:])))
        for i in range(0, len(images), batch_size):
            accumulator.update(network.displacement(images[i : i + batch_size].to(self.device)))
        return accumulator.compute()

    def evaluate(self, row: str, spec: Mapping[str, Any] | None) -> dict[str, Any]:
        """Attack (all seeds) and utility for one anonymizer spec; cached in ``results/<row>.json``."""
        out = self.results_dir / f"{row}.json"
        if out.is_file() and not self.force:
            logger.info("skipping evaluation %s: %s exists", row, out.name)
            return json.loads(out.read_text(encoding="utf-8"))
        attack_cfg = {k: v for k, v in self.stages["attack"].items() if not k.startswith("_")}
        logger.info("evaluating %s", row)
        start = time.time()
        result = evaluate_anonymizer(
            dict(spec) if spec else None, self.data, self.classifier_pretrain(), seeds=attack_cfg.pop("seeds"),
            verifier_kwargs=self.networks["verifier"], n_bootstrap=int(self.config["benchmark"].get("n_bootstrap", 1000)),
            split=self.eval_split, device=self.device, progress=self.progress, real=self.real_images(), **attack_cfg,
        )
        result = {"row": row, **result, "wall_time_s": time.time() - start, "threads": torch.get_num_threads()}
        write_json(out, result)
        return result
