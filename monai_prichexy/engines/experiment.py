"""An experiment: every stage of PriCheXy-Net driven by one JSON profile, resumable.

A profile (``configs/benchmark_paper.json``, ``configs/benchmark_cpu.json``) fixes the data,
the network sizes and each stage's settings. :class:`Experiment` runs the stages in order,
writing checkpoints to ``<output_dir>/checkpoints/`` and evaluation results to
``<output_dir>/results/``; a stage or evaluation whose output exists is skipped unless
``force``. Used by the benchmark (:mod:`monai_prichexy.benchmark`).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..networks import AbnormalityClassifier, FlowFieldGenerator, PriCheXyNet, PrivacyNetEncoder, SiameseVerifier
from ..weights import load_generator, load_network
from .adversarial import create_adversarial_stage
from .anonymizers import mean_displacement
from .attack import evaluate_anonymizer
from .classifier import create_classifier_stage
from .data import DataModule
from .handlers import write_json
from .reconstruction import create_reconstruction_stage
from .utils import get_logger, resolve_device, seed_everything
from .verifier import create_verifier_stage

__all__ = ["DEFAULT_PROFILE", "deep_update", "load_profile", "Experiment"]

logger = get_logger("experiment")

#: The paper's set-up (Packhäuser et al., MICCAI 2023) on a ChestX-ray14 folder.
DEFAULT_PROFILE: dict[str, Any] = {
    "device": "cpu",
    "seed": 0,
    "output_dir": "runs/benchmark",
    "progress": True,
    "num_threads": None,
    "data": {
        "dataset_dir": None,
        "image_dir": "images",
        "table": "labels.csv",
        "split_file": "splits.csv",
        "train_val_list": None,
        "test_list": None,
        "image_size": 256,
        "degrade_to": None,
        "num_pairs": None,
        "max_positive_per_patient": None,
        "max_images": None,
        "num_workers": 4,
        "cache_rate": 0.0,
    },
    "networks": {
        "generator": {"init_features": 32},
        "working_size": 256,
        "smoothing": "grid",
        "privacy_net": {"init_features": 16},
        "classifier": {"in_channels": 1, "input_size": 224},
        "verifier": {"backbone": "resnet50", "embedding_dim": 128, "widen_factor": 1.0},
    },
    "stages": {
        "classifier_pretrain": {"max_epochs": 30, "batch_size": 32, "lr": 1e-4, "select": "val_mean_auc", "patience": 5},
        "verifier_pretrain": {"max_epochs": 100, "batch_size": 32, "lr": 1e-4, "patience": 5, "select": "val_loss"},
        "generator_pretrain": {"max_epochs": 50, "batch_size": 64, "lr": 1e-4},
        "adversarial": {
            "max_epochs": 250, "batch_size": 32, "lr_anonymizer": 1e-4, "lr_verifier": 1e-4, "lr_classifier": 1e-4,
            "weight_cls": 1.0, "weight_priv": 1.0, "freeze_classifier": False, "freeze_verifier": False,
        },
        "attack": {
            "max_epochs": 100, "batch_size": 32, "lr": 1e-4, "patience": 5, "select": "val_loss",
            "seeds": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        },
    },
    "benchmark": {
        "mus": [0.001, 0.005, 0.01],
        "privacy_net": True,
        "dppix": {"b": [1, 2, 4, 8], "eps": 0.1, "m": 1.0},
        "random_control": {"mus": "max", "field_sigma": 4.0},
        "n_bootstrap": 1000,
        "eval_split": "test",
    },
}


def deep_update(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in recursively (mappings merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if key.startswith("_"):
            continue
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_dotted(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = cfg
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def load_profile(
    profile: str | os.PathLike | Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A profile (path or mapping) merged over :data:`DEFAULT_PROFILE`, then dotted ``overrides``.

    Example: ``load_profile("configs/benchmark_cpu.json", {"stages.attack.seeds": [0]})``.
    """
    if profile is None:
        loaded: Mapping[str, Any] = {}
    elif isinstance(profile, Mapping):
        loaded = profile
    else:
        loaded = json.loads(Path(profile).read_text(encoding="utf-8"))
    cfg = deep_update(DEFAULT_PROFILE, loaded)
    for key, value in (overrides or {}).items():
        _set_dotted(cfg, key, value)
    return cfg


def _mu_tag(mu: float) -> str:
    return f"mu{float(mu):g}"


class Experiment:
    """Run the stages of a profile with resumable outputs.

    Args:
        profile: a profile path or mapping (merged over :data:`DEFAULT_PROFILE`).
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

    # ------------------------------------------------------------------ helpers
    def _meta(self, **extra: Any) -> dict[str, Any]:
        return {"data": self.data.describe(), "seed": self.seed, **extra}

    def _done(self, path: Path) -> bool:
        if path.is_file() and not self.force:
            logger.info("skipping: %s exists (force to redo)", path.name)
            return True
        return False

    def _kwargs(self, stage: str, drop: tuple[str, ...] = ("batch_size",)) -> dict[str, Any]:
        return {k: v for k, v in self.stages[stage].items() if k not in drop and not k.startswith("_")}

    def _loaders(self, kind: str, batch_size: int) -> tuple[Any, Any]:
        if kind == "image":
            return (self.data.image_loader("train", batch_size, shuffle=True), self.data.image_loader("val", batch_size))
        return (self.data.pair_loader("train", batch_size, shuffle=True), self.data.pair_loader("val", batch_size))

    def new_classifier(self) -> AbnormalityClassifier:
        return AbnormalityClassifier(**self.networks["classifier"])

    def new_verifier(self) -> SiameseVerifier:
        return SiameseVerifier(**self.networks["verifier"])

    def new_prichexy(self, mu: float) -> PriCheXyNet:
        return PriCheXyNet(
            FlowFieldGenerator(**self.networks["generator"]), mu=float(mu), smoothing=self.networks["smoothing"],
            working_size=self.networks["working_size"],
        )

    def new_privacy_net(self) -> PrivacyNetEncoder:
        return PrivacyNetEncoder(**self.networks["privacy_net"])

    def path(self, name: str) -> Path:
        return self.ckpt_dir / f"{name}.pt"

    # ------------------------------------------------------------------ stages
    def classifier_pretrain(self) -> Path:
        """Stage 1; returns the checkpoint path."""
        path = self.path("classifier")
        if not self._done(path):
            seed_everything(self.seed)
            cfg = self.stages["classifier_pretrain"]
            stage = create_classifier_stage(
                self.new_classifier(), *self._loaders("image", cfg["batch_size"]), **self._kwargs("classifier_pretrain"),
                device=self.device, ckpt_path=path, meta=self._meta(), progress=self.progress,
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

    def anonymizer_pretrain(self, mu: float | None) -> Path:
        """Stage 3 for PriCheXy-Net (``mu``) or, with ``mu=None``, Privacy-Net; returns the checkpoint."""
        name = "privacy_net_pretrain" if mu is None else f"generator_pretrain_{_mu_tag(mu)}"
        path = self.path(name)
        if not self._done(path):
            seed_everything(self.seed)
            cfg = self.stages["generator_pretrain"]
            network = self.new_privacy_net() if mu is None else self.new_prichexy(mu)
            stage = create_reconstruction_stage(
                network, *self._loaders("image", cfg["batch_size"]), **self._kwargs("generator_pretrain"),
                device=self.device, ckpt_path=path, meta=self._meta(), progress=self.progress,
                name="privacy_net_pretrain" if mu is None else "generator_pretrain",
            )
            stage.run()
        return path

    def load_anonymizer(self, path: Path, mu: float | None) -> torch.nn.Module:
        if mu is None:
            net, _ = load_network(path, network="PrivacyNetEncoder")
            return net
        generator, _ = load_generator(path)
        return PriCheXyNet(generator, mu=float(mu), smoothing=self.networks["smoothing"], working_size=self.networks["working_size"])

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
            name="privacy_net_adversarial" if mu is None else "adversarial",
        )
        stage.run()
        return path

    # ------------------------------------------------------------------ evaluation
    def displacement(self, mu: float) -> dict[str, float]:
        """Mean ``|mu * G(x)|`` of the trained generator for ``mu`` on the validation split."""
        return self.field_displacement(self.load_anonymizer(self.adversarial(mu), mu))

    def field_displacement(self, network: PriCheXyNet) -> dict[str, float]:
        """Mean ``|mu * G(x)|`` of any PriCheXy-Net on the validation split (see :func:`mean_displacement`)."""
        loader = self.data.image_loader("val", self.stages["generator_pretrain"]["batch_size"])
        return mean_displacement(network.to(self.device), loader, self.device)

    def evaluate(self, row: str, spec: Mapping[str, Any] | None) -> dict[str, Any]:
        """Attack (all seeds) and utility for one anonymizer spec; cached in ``results/<row>.json``."""
        out = self.results_dir / f"{row}.json"
        if out.is_file() and not self.force:
            logger.info("skipping evaluation %s: %s exists", row, out.name)
            return json.loads(out.read_text(encoding="utf-8"))
        attack_cfg = dict(self.stages["attack"])
        logger.info("evaluating %s", row)
        result = evaluate_anonymizer(
            dict(spec) if spec else None, self.data, self.classifier_pretrain(), seeds=attack_cfg.pop("seeds"),
            verifier_kwargs=self.networks["verifier"], n_bootstrap=int(self.config["benchmark"].get("n_bootstrap", 1000)),
            split=self.config["benchmark"].get("eval_split", "test"), device=self.device, progress=self.progress,
            **attack_cfg,
        )
        result = {"row": row, **result}
        write_json(out, result)
        return result
