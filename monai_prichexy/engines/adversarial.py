"""Stage 4: adversarial training of the anonymizer against the verifier, keeping the classifier's utility.

Exactly as Packhäuser et al., MICCAI 2023 (DESIGN.md, section 3), per batch of pairs
``(x1, x2, labels of x1, same-patient y)``:

1. ``x1' = A(x1)`` (A = :class:`~monai_prichexy.networks.PriCheXyNet` or the Privacy-Net
   encoder); ``x2`` stays real;
2. ``L_G = w_cls * BCEwithLogits(C(x1'), labels) + w_priv * mean(-log(1 - sigmoid(V(x1', x2))))``
   over ALL pairs whatever ``y`` (computed stably as ``softplus(logit)``); step A only (Adam);
3. update V on ``(x1'.detach(), x2, y)`` with BCE (Adam) and C on ``(x1'.detach(), labels)`` with
   BCE (SGD, momentum 0.9, weight decay 1e-4).

The utility loss is the data set's (:class:`~monai_prichexy.labels.LabelSchema`): BCE over the
14 ChestX-ray14 findings as in the paper, cross-entropy for a multi-class set such as Kermany.

C and V keep adapting unless frozen (``freeze_classifier`` / ``freeze_verifier``: no update,
eval mode so that not even BatchNorm statistics move). No early stopping; the checkpoint with
the lowest validation total loss ``L_G`` is kept.

The trainer is a plain ``ignite.engine.Engine`` with :class:`AdversarialStep` as its iteration
function (three optimizers do not fit MONAI's ``SupervisedTrainer``); validation is a MONAI
``SupervisedEvaluator`` whose iteration is :class:`AdversarialEvalStep`.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from ignite.engine import Engine
from monai.engines import SupervisedEvaluator
from torch import nn

from ..data.keys import BatchKeys
from ..labels import LabelSchema, get_schema
from ..metrics import MeanAUC, VerificationAUC
from .handlers import SampleMean
from .reconstruction import anonymizer_meta
from .stage import TrainingStage, metric_cmp_fn, prepare_network, wire_stage
from .utils import build_optimizer, optimizer_step, plain, resolve_device, set_requires_grad, unwrap

__all__ = ["AdversarialStep", "AdversarialEvalStep", "create_adversarial_stage", "privacy_loss"]


def privacy_loss(logits: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``-log(1 - sigmoid(logit))`` computed stably as ``softplus(logit)``."""
    loss = F.softplus(logits)
    return loss.mean() if reduction == "mean" else loss


def _pair_batch(batch: dict, device: torch.device, non_blocking: bool = False):
    x1 = plain(batch[BatchKeys.IMAGE1], device, non_blocking)
    x2 = plain(batch[BatchKeys.IMAGE2], device, non_blocking)
    same = plain(batch[BatchKeys.LABEL], device, non_blocking).float().reshape(-1, 1)
    labels = plain(batch[BatchKeys.LABELS1], device, non_blocking).float()
    return x1, x2, same, labels


class AdversarialStep:
    """The Ignite iteration function of the adversarial stage (see the module docstring).

    Args:
        anonymizer: A (prepared: on device, DDP-wrapped when distributed).
        classifier: C (prepared).
        verifier: V (prepared).
        opt_anonymizer, opt_classifier, opt_verifier: their optimizers (the last two unused when frozen).
        device: device of the batches.
        weight_cls, weight_priv: weights of the two terms of ``L_G`` (1 and 1 in the paper).
        freeze_classifier, freeze_verifier: keep C / V fixed.
        schema: the data set's label schema (utility loss); ChestX-ray14's BCE by default.
    """

    def __init__(
        self,
        anonymizer: nn.Module,
        classifier: nn.Module,
        verifier: nn.Module,
        opt_anonymizer: torch.optim.Optimizer,
        opt_classifier: torch.optim.Optimizer | None,
        opt_verifier: torch.optim.Optimizer | None,
        device: torch.device,
        weight_cls: float = 1.0,
        weight_priv: float = 1.0,
        freeze_classifier: bool = False,
        freeze_verifier: bool = False,
        schema: str | LabelSchema = "chestxray14",
    ) -> None:
        self.anonymizer = anonymizer
        self.classifier = classifier
        self.verifier = verifier
        self.opt_anonymizer = opt_anonymizer
        self.opt_classifier = opt_classifier
        self.opt_verifier = opt_verifier
        self.device = device
        self.weight_cls = float(weight_cls)
        self.weight_priv = float(weight_priv)
        self.freeze_classifier = bool(freeze_classifier)
        self.freeze_verifier = bool(freeze_verifier)
        self.schema = get_schema(schema)
        if not self.freeze_classifier and opt_classifier is None:
            raise ValueError("an optimizer for the classifier is needed unless freeze_classifier=True")
        if not self.freeze_verifier and opt_verifier is None:
            raise ValueError("an optimizer for the verifier is needed unless freeze_verifier=True")

    def __call__(self, engine: Engine, batch: dict) -> dict[str, float]:
        x1, x2, same, labels = _pair_batch(batch, self.device)
        cls_net, ver_net = unwrap(self.classifier), unwrap(self.verifier)
        self.anonymizer.train()
        cls_net.train(not self.freeze_classifier)
        ver_net.train(not self.freeze_verifier)

        # 1) anonymizer step: C and V only pass gradients through to x1' (their own parameters
        #    get none; the unwrapped modules avoid a DDP gradient sync that would be thrown away)
        set_requires_grad([cls_net, ver_net], False)
        x1_anon = self.anonymizer(x1)
        loss_cls = self.schema.loss(cls_net(x1_anon), labels)
        loss_priv = privacy_loss(ver_net(x1_anon, x2))
        loss_g = self.weight_cls * loss_cls + self.weight_priv * loss_priv
        self.opt_anonymizer.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_anonymizer.step()
        x1_anon = x1_anon.detach()
        out = {"loss_g": loss_g.item(), "loss_cls": loss_cls.item(), "loss_priv": loss_priv.item()}

        # 2) verifier step on (x1'.detach(), x2, y)
        if not self.freeze_verifier:
            out["loss_v"] = optimizer_step(
                ver_net, self.opt_verifier, lambda: F.binary_cross_entropy_with_logits(self.verifier(x1_anon, x2), same)
            )
        # 3) classifier step on (x1'.detach(), labels)
        if not self.freeze_classifier:
            out["loss_c"] = optimizer_step(
                cls_net, self.opt_classifier, lambda: self.schema.loss(self.classifier(x1_anon), labels)
            )
        return out


class AdversarialEvalStep:
    """Validation iteration: per-pair ``L_G`` terms, V's logits and C's logits (eval mode, no grad)."""

    def __init__(
        self,
        anonymizer: nn.Module,
        classifier: nn.Module,
        verifier: nn.Module,
        weight_cls: float = 1.0,
        weight_priv: float = 1.0,
        schema: str | LabelSchema = "chestxray14",
    ) -> None:
        self.anonymizer = anonymizer
        self.classifier = classifier
        self.verifier = verifier
        self.weight_cls = float(weight_cls)
        self.weight_priv = float(weight_priv)
        self.schema = get_schema(schema)

    @torch.no_grad()
    def __call__(self, engine: Engine, batch: dict) -> dict[str, torch.Tensor]:
        x1, x2, same, labels = _pair_batch(batch, engine.state.device)
        nets = (self.anonymizer, self.classifier, self.verifier)
        modes = [n.training for n in nets]
        for n in nets:
            n.eval()
        try:
            x1_anon = self.anonymizer(x1)
            c_logits = self.classifier(x1_anon)
            v_logits = self.verifier(x1_anon, x2)
        finally:
            for n, m in zip(nets, modes):
                n.train(m)
        cls = self.schema.loss(c_logits, labels, reduction="none")
        priv = privacy_loss(v_logits, reduction="none").reshape(-1)
        return {
            "total": self.weight_cls * cls + self.weight_priv * priv,
            "cls": cls,
            "priv": priv,
            "v_loss": F.binary_cross_entropy_with_logits(v_logits, same, reduction="none").reshape(-1),
            "mse": ((x1_anon - x1) ** 2).flatten(1).mean(dim=1),
            "v_logits": v_logits,
            "same": same,
            "c_probs": self.schema.probabilities(c_logits),
            "labels": labels,
        }


def create_adversarial_stage(
    anonymizer: nn.Module,
    classifier: nn.Module,
    verifier: nn.Module,
    train_loader: Any,
    val_loader: Any,
    max_epochs: int = 250,
    lr_anonymizer: float = 1e-4,
    lr_verifier: float = 1e-4,
    lr_classifier: float = 1e-4,
    classifier_momentum: float = 0.9,
    classifier_weight_decay: float = 1e-4,
    weight_cls: float = 1.0,
    weight_priv: float = 1.0,
    freeze_classifier: bool = False,
    freeze_verifier: bool = False,
    device: str | torch.device = "cpu",
    ckpt_path: str | os.PathLike | None = None,
    classifier_ckpt_path: str | os.PathLike | None = None,
    verifier_ckpt_path: str | os.PathLike | None = None,
    patience: int | None = None,
    meta: dict[str, Any] | None = None,
    name: str = "adversarial",
    export_path: str | os.PathLike | None = None,
    sync_bn: bool = True,
    progress: bool = True,
    tensorboard_dir: str | os.PathLike | None = None,
    schema: str | LabelSchema = "chestxray14",
) -> TrainingStage:
    """Adversarial training (Ignite ``Engine`` + MONAI ``SupervisedEvaluator``); see the module docstring.

    Args:
        anonymizer: :class:`~monai_prichexy.networks.PriCheXyNet` (pre-trained) or a Privacy-Net encoder.
        classifier: the pre-trained C (a copy: it is updated unless frozen).
        verifier: the pre-trained V (a copy: it is updated unless frozen).
        train_loader, val_loader: loaders of ``{"image1", "image2", "label", "labels1"}`` pairs.
        max_epochs: 250 in the paper (no early stopping).
        lr_anonymizer, lr_verifier: Adam learning rates (1e-4).
        lr_classifier, classifier_momentum, classifier_weight_decay: SGD of C (1e-4, 0.9, 1e-4).
        weight_cls, weight_priv: weights of the utility and privacy terms of ``L_G`` (1, 1).
        freeze_classifier, freeze_verifier: keep C / V fixed instead of updating them.
        ckpt_path: checkpoint of the anonymizer at the lowest validation ``L_G``.
        classifier_ckpt_path, verifier_ckpt_path: C and V at that same epoch (optional).
        patience: optional early stopping on the validation ``L_G`` (None = off, the paper).
        name: ``"adversarial"`` or ``"privacy_net_adversarial"``.
        export_path: also write the bundle's ``models/model.pt`` (+ ``model.json``) at the end.
        device, meta, sync_bn, progress, tensorboard_dir: as for the other stages.
        schema: the data set's label schema or name (the utility loss).

    Validation metrics (per pair means): ``val_total`` (``L_G``, selects the checkpoint),
    ``val_cls``, ``val_priv``, ``val_v_loss``, ``val_mse`` (anonymized vs input), ``val_v_auc``
    (V on anonymized-vs-real pairs) and ``val_c_auc`` (C's mean AUC on anonymized images).
    """
    device = resolve_device(device)
    info = anonymizer_meta(anonymizer)
    anonymizer = prepare_network(anonymizer, device, sync_bn)
    classifier = prepare_network(classifier, device, sync_bn)
    verifier = prepare_network(verifier, device, sync_bn)
    if freeze_classifier:
        set_requires_grad(classifier, False)
    if freeze_verifier:
        set_requires_grad(verifier, False)
    opt_a = build_optimizer(anonymizer.parameters(), "adam", lr_anonymizer)
    opt_v = None if freeze_verifier else build_optimizer(verifier.parameters(), "adam", lr_verifier)
    opt_c = None if freeze_classifier else build_optimizer(
        classifier.parameters(), "sgd", lr_classifier, momentum=classifier_momentum, weight_decay=classifier_weight_decay
    )
    step = AdversarialStep(
        anonymizer, classifier, verifier, opt_a, opt_c, opt_v, device, weight_cls, weight_priv,
        freeze_classifier, freeze_verifier, schema,
    )
    trainer = Engine(step)
    metrics = {
        "val_cls": SampleMean(lambda o: o["cls"]),
        "val_priv": SampleMean(lambda o: o["priv"]),
        "val_v_loss": SampleMean(lambda o: o["v_loss"]),
        "val_mse": SampleMean(lambda o: o["mse"]),
        "val_v_auc": VerificationAUC(output_transform=lambda o: (o["v_logits"], o["same"])),
        "val_c_auc": MeanAUC(output_transform=lambda o: (o["c_probs"], o["labels"])),
    }
    evaluator = SupervisedEvaluator(
        device=device,
        val_data_loader=val_loader,
        network=anonymizer,
        iteration_update=AdversarialEvalStep(anonymizer, classifier, verifier, weight_cls, weight_priv, schema),
        key_val_metric={"val_total": SampleMean(lambda o: o["total"])},
        additional_metrics=metrics,
        metric_cmp_fn=metric_cmp_fn("min"),
        decollate=False,
    )
    companions = {
        "classifier": (classifier, classifier_ckpt_path),
        "verifier": (verifier, verifier_ckpt_path),
    }
    meta = {
        **info,
        "lr_anonymizer": lr_anonymizer,
        "lr_verifier": lr_verifier,
        "lr_classifier": lr_classifier,
        "weight_cls": weight_cls,
        "weight_priv": weight_priv,
        "freeze_classifier": freeze_classifier,
        "freeze_verifier": freeze_verifier,
        "schema": get_schema(schema).name,
        **(meta or {}),
    }
    return wire_stage(
        name, trainer, evaluator, anonymizer, train_loader, ckpt_path, "val_total", "min", meta,
        lambda out: out, max_epochs, patience=patience, progress=progress, tensorboard_dir=tensorboard_dir,
        export_path=export_path, companions=companions,
    )
