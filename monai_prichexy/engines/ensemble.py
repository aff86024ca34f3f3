"""Adversarial training against a refreshed ensemble of attackers (beyond the paper).

Trained against one verifier that adapts along with it (the paper's stage 4), a generator can
learn to fool that verifier without removing identity: a retrained attacker then sees through
it (DESIGN, section 8). Here the generator faces the attackers the evaluation will use:

1. ``x1' = A(x1)``; ``x2`` stays real.
2. ``L_G = w_util * L_util + w_priv * mean_k L_priv,k(x1', x2)`` where, per adversary,

   - Siamese verifier (the paper's): ``mean softplus(V(x1', x2))`` over all pairs;
   - metric embedding: mean cosine of ``(e(x1'), e(x2))`` over same-patient pairs minus the
     mean over different-patient pairs (same-patient pairs should look like strangers);

   and the utility term is either the paper's (``"labels"``: the data set's loss of C(x1')
   against the labels) or ``"consistency"``: the KL divergence between the ORIGINAL, frozen
   classifier's predictions on ``x1`` and on ``x1'`` -- the very measure the evaluation uses,
   so that utility retention is what the term protects.
3. Every adversary then learns from ``(x1'.detach(), x2, same)``: the Siamese verifier with
   BCE, the embedding with the supervised-contrastive loss over the pairs' identities.
4. Every ``refresh_every`` iterations one adversary (round robin) is re-initialised from
   scratch and trained for ``warmup_steps`` batches on the current generator's output before
   the game goes on, so the generator keeps facing fresh attackers, as the post-hoc attack will.

The paper's stage (:func:`~monai_prichexy.engines.create_adversarial_stage`) stays the
reproduction default; a profile switches to this one with ``adversarial.mode = "ensemble"``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from ignite.engine import Engine
from monai.engines import SupervisedEvaluator
from pytorch_metric_learning.losses import SupConLoss
from torch import nn

from ..labels import LabelSchema, get_schema
from ..metrics import VerificationAUC
from ..networks import EmbeddingNet, SiameseVerifier
from .adversarial import _pair_batch, privacy_loss
from .handlers import SampleMean
from .reconstruction import anonymizer_meta
from .stage import TrainingStage, metric_cmp_fn, prepare_network, wire_stage
from .utils import build_optimizer, get_logger, optimizer_step, resolve_device, set_requires_grad, unwrap

__all__ = ["UTILITY_TERMS", "Adversary", "EnsembleAdversarialStep", "create_ensemble_stage"]

logger = get_logger("ensemble")
UTILITY_TERMS = ("labels", "consistency")


class Adversary:
    """One member of the ensemble: a network, its optimizer and how to rebuild it.

    Args:
        factory: builds a freshly initialised network (:class:`SiameseVerifier` or :class:`EmbeddingNet`).
        lr: Adam learning rate.
        device: where it trains.
        network: a (pre-trained) starting network; None = ``factory()``.
        temperature: of the embedding's supervised-contrastive loss.
    """

    def __init__(
        self, factory: Callable[[], nn.Module], lr: float = 1e-4, device: torch.device | str = "cpu",
        network: nn.Module | None = None, temperature: float = 0.1,
    ) -> None:
        self.factory, self.lr, self.device = factory, float(lr), torch.device(device)
        self.network = (network if network is not None else factory()).to(self.device)
        self.optimizer = build_optimizer(self.network.parameters(), "adam", self.lr)
        self.supcon = SupConLoss(temperature=temperature)
        self.refreshed = 0

    @property
    def kind(self) -> str:
        return "metric" if isinstance(self.network, EmbeddingNet) else "siamese"

    def reset(self) -> None:
        """Re-initialise from scratch (new weights, new optimizer)."""
        self.network = self.factory().to(self.device)
        self.optimizer = build_optimizer(self.network.parameters(), "adam", self.lr)
        self.refreshed += 1

    def privacy_loss(self, x1_anon: torch.Tensor, x2: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
        """The generator's loss against this adversary (differentiable in ``x1_anon``)."""
        if self.kind == "siamese":
            return privacy_loss(self.network(x1_anon, x2))
        cos = self.network(x1_anon, x2).reshape(-1)
        pos, neg = same.reshape(-1) > 0.5, same.reshape(-1) <= 0.5
        zero = cos.sum() * 0.0
        return (cos[pos].mean() if pos.any() else zero) - (cos[neg].mean() if neg.any() else zero)

    def learn(self, x1_anon: torch.Tensor, x2: torch.Tensor, same: torch.Tensor) -> float:
        """One step of the adversary on anonymized / real pairs; returns its loss."""
        self.network.train()
        return optimizer_step(self.network, self.optimizer, lambda: self._loss(x1_anon, x2, same))

    def _loss(self, x1_anon: torch.Tensor, x2: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
        if self.kind == "siamese":
            return F.binary_cross_entropy_with_logits(self.network(x1_anon, x2), same)
        b = x1_anon.shape[0]
        ids = torch.arange(b, device=x1_anon.device)
        partner = torch.where(same.reshape(-1) > 0.5, ids, ids + b)
        embeddings = self.network(torch.cat((x1_anon, x2)))
        return self.supcon(embeddings, torch.cat((ids, partner)))

    @torch.no_grad()
    def score(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Same-patient scores ``(B, 1)`` (logit or cosine), eval mode."""
        was = self.network.training
        self.network.eval()
        try:
            return self.network(x1, x2)
        finally:
            self.network.train(was)


class EnsembleAdversarialStep:
    """The Ignite iteration of the ensemble stage (see the module docstring).

    Args:
        anonymizer: A (prepared).
        classifier: C: the original classifier (frozen for ``"consistency"``), or the paper's
            adapting C for ``"labels"`` (then ``opt_classifier`` updates it unless None).
        adversaries: the ensemble.
        opt_anonymizer: A's optimizer.
        opt_classifier: C's optimizer for ``"labels"`` (None = C frozen).
        device: device of the batches.
        weight_util, weight_priv: weights of the two terms of ``L_G``.
        utility: ``"labels"`` (paper) or ``"consistency"``.
        schema: the data set's label schema.
        refresh_every: re-initialise one adversary every this many iterations (0 = never).
        warmup_steps: batches a refreshed adversary trains on before the game goes on.
        warmup_batches: an endless iterator of training batches for the warm-up.
    """

    def __init__(
        self,
        anonymizer: nn.Module,
        classifier: nn.Module,
        adversaries: Sequence[Adversary],
        opt_anonymizer: torch.optim.Optimizer,
        opt_classifier: torch.optim.Optimizer | None,
        device: torch.device,
        weight_util: float = 1.0,
        weight_priv: float = 1.0,
        utility: str = "consistency",
        schema: str | LabelSchema = "chestxray14",
        refresh_every: int = 0,
        warmup_steps: int = 0,
        warmup_batches: Iterator[dict] | None = None,
    ) -> None:
        if utility not in UTILITY_TERMS:
            raise ValueError(f"utility must be one of {UTILITY_TERMS}, got {utility!r}")
        if not adversaries:
            raise ValueError("the ensemble needs at least one adversary")
        if refresh_every < 0 or warmup_steps < 0:
            raise ValueError("refresh_every and warmup_steps must be >= 0")
        if warmup_steps and warmup_batches is None:
            raise ValueError("warmup_steps need warmup_batches")
        self.anonymizer, self.classifier, self.adversaries = anonymizer, classifier, list(adversaries)
        self.opt_anonymizer, self.opt_classifier, self.device = opt_anonymizer, opt_classifier, device
        self.weight_util, self.weight_priv = float(weight_util), float(weight_priv)
        self.utility, self.schema = utility, get_schema(schema)
        self.refresh_every, self.warmup_steps, self.warmup_batches = int(refresh_every), int(warmup_steps), warmup_batches
        self._next = 0

    def utility_loss(self, x1: torch.Tensor, x1_anon: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cls = unwrap(self.classifier)
        if self.utility == "labels":
            return self.schema.loss(cls(x1_anon), labels)
        with torch.no_grad():
            target = cls(x1)
        return consistency_loss(cls(x1_anon), target, self.schema)

    def refresh(self) -> None:
        """Re-initialise the next adversary and warm it up on the current generator's output."""
        adversary = self.adversaries[self._next % len(self.adversaries)]
        self._next += 1
        adversary.reset()
        for _ in range(self.warmup_steps):
            x1, x2, same, _ = _pair_batch(next(self.warmup_batches), self.device)
            with torch.no_grad():
                self.anonymizer.eval()
                x1_anon = self.anonymizer(x1)
                self.anonymizer.train()
            adversary.learn(x1_anon, x2, same)

    def __call__(self, engine: Engine, batch: dict) -> dict[str, float]:
        if self.refresh_every and engine.state.iteration > 1 and (engine.state.iteration - 1) % self.refresh_every == 0:
            self.refresh()
        x1, x2, same, labels = _pair_batch(batch, self.device)
        cls_net = unwrap(self.classifier)
        self.anonymizer.train()
        cls_net.train(self.utility == "labels" and self.opt_classifier is not None)
        nets = [cls_net] + [a.network for a in self.adversaries]
        set_requires_grad(nets, False)
        for a in self.adversaries:
            a.network.train()
        x1_anon = self.anonymizer(x1)
        loss_util = self.utility_loss(x1, x1_anon, labels)
        priv_terms = [a.privacy_loss(x1_anon, x2, same) for a in self.adversaries]
        loss_priv = torch.stack(priv_terms).mean()
        loss_g = self.weight_util * loss_util + self.weight_priv * loss_priv
        self.opt_anonymizer.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_anonymizer.step()
        x1_anon = x1_anon.detach()
        out = {"loss_g": loss_g.item(), "loss_util": loss_util.item(), "loss_priv": loss_priv.item()}
        for k, a in enumerate(self.adversaries):
            out[f"loss_adv{k}"] = a.learn(x1_anon, x2, same)
        if self.utility == "labels" and self.opt_classifier is not None:
            out["loss_c"] = optimizer_step(
                cls_net, self.opt_classifier, lambda: self.schema.loss(self.classifier(x1_anon), labels)
            )
        return out


def consistency_loss(logits_anon: torch.Tensor, logits_real: torch.Tensor, schema: LabelSchema) -> torch.Tensor:
    """KL(p_real || p_anon) of the classifier's predictions, per class for multi-label data (Bernoulli), mean."""
    if schema.kind == "multiclass":
        return F.kl_div(F.log_softmax(logits_anon, dim=1), F.log_softmax(logits_real, dim=1), log_target=True,
                        reduction="batchmean")
    p = torch.sigmoid(logits_real)
    log_q1, log_q0 = F.logsigmoid(logits_anon), F.logsigmoid(-logits_anon)
    log_p1, log_p0 = F.logsigmoid(logits_real), F.logsigmoid(-logits_real)
    return (p * (log_p1 - log_q1) + (1 - p) * (log_p0 - log_q0)).mean()


class _EnsembleEvalStep:
    """Validation: MSE to the input, the utility term, and each adversary's scores on (anonymized, real) pairs."""

    def __init__(self, step: EnsembleAdversarialStep) -> None:
        self.step = step

    @torch.no_grad()
    def __call__(self, engine: Engine, batch: dict) -> dict[str, torch.Tensor]:
        step = self.step
        x1, x2, same, labels = _pair_batch(batch, engine.state.device)
        was = step.anonymizer.training
        step.anonymizer.eval()
        cls = unwrap(step.classifier)
        cls_was = cls.training
        cls.eval()
        try:
            x1_anon = step.anonymizer(x1)
            util = step.utility_loss(x1, x1_anon, labels).reshape(1).expand(x1.shape[0])
            out = {"mse": ((x1_anon - x1) ** 2).flatten(1).mean(dim=1), "util": util, "same": same}
            for k, a in enumerate(step.adversaries):
                out[f"adv{k}"] = a.score(x1_anon, x2)
        finally:
            step.anonymizer.train(was)
            cls.train(cls_was)
        return out


def create_ensemble_stage(
    anonymizer: nn.Module,
    classifier: nn.Module,
    train_loader: Any,
    val_loader: Any,
    adversaries: Mapping[str, Mapping[str, Any]] | None = None,
    max_epochs: int = 20,
    lr_anonymizer: float = 1e-3,
    lr_classifier: float = 1e-4,
    weight_util: float = 1.0,
    weight_priv: float = 1.0,
    utility: str = "consistency",
    refresh_every: int = 50,
    warmup_steps: int = 20,
    pretrained: Mapping[str, nn.Module] | None = None,
    schema: str | LabelSchema = "chestxray14",
    device: str | torch.device = "cpu",
    ckpt_path: str | os.PathLike | None = None,
    meta: dict[str, Any] | None = None,
    name: str = "ensemble_adversarial",
    export_path: str | os.PathLike | None = None,
    progress: bool = True,
    tensorboard_dir: str | os.PathLike | None = None,
) -> TrainingStage:
    """Adversarial training against a refreshed ensemble (see the module docstring); the last epoch is kept.

    Args:
        anonymizer: a pre-trained :class:`~monai_prichexy.networks.PriCheXyNet` (its budget and smoothing apply).
        classifier: the original classifier (trained on real images; a copy is used).
        train_loader, val_loader: pair loaders (``image1``, ``image2``, ``label``, ``labels1``).
        adversaries: ``{"siamese": {"network": {...SiameseVerifier args}, "lr": ...}, "metric":
            {"network": {...EmbeddingNet args}, "lr": ..., "temperature": ...}}``; at least one.
        max_epochs: epochs (no early stopping; the last epoch is kept: validation losses are not
            comparable across refreshed adversaries).
        lr_anonymizer: Adam rate of the generator; lr_classifier: SGD rate of C for ``"labels"``.
        weight_util, weight_priv: weights of the two terms of ``L_G``.
        utility: ``"consistency"`` (frozen original classifier) or ``"labels"`` (the paper's).
        refresh_every, warmup_steps: the refresh schedule (iterations; 0 = never).
        pretrained: optional starting networks by adversary name (e.g. the pre-trained verifier);
            refreshed adversaries always start from scratch.
    """
    device = resolve_device(device)
    info = anonymizer_meta(anonymizer)
    adversaries = dict(adversaries or {"siamese": {}, "metric": {}})
    anonymizer = prepare_network(anonymizer, device)
    classifier = prepare_network(copy.deepcopy(classifier), device)
    set_requires_grad(classifier, False)
    opt_c = None
    if utility == "labels":
        set_requires_grad(classifier, True)
        opt_c = build_optimizer(classifier.parameters(), "sgd", lr_classifier, weight_decay=1e-4)
    members = []
    for kind, cfg in adversaries.items():
        cfg = dict(cfg or {})
        kwargs = dict(cfg.get("network") or {})
        if kind == "siamese":
            def factory(kwargs=kwargs) -> nn.Module:
                return SiameseVerifier(**kwargs)
        elif kind == "metric":
            def factory(kwargs=kwargs) -> nn.Module:
                return EmbeddingNet(**kwargs)
        else:
            raise ValueError(f"unknown adversary {kind!r}; expected 'siamese' or 'metric'")
        start = copy.deepcopy((pretrained or {}).get(kind))
        members.append(Adversary(factory, float(cfg.get("lr", 1e-4)), device, start, float(cfg.get("temperature", 0.1))))
    opt_a = build_optimizer(anonymizer.parameters(), "adam", lr_anonymizer)

    def endless() -> Iterator[dict]:
        while True:
            yield from train_loader

    step = EnsembleAdversarialStep(
        anonymizer, classifier, members, opt_a, opt_c, device, weight_util, weight_priv, utility, schema,
        refresh_every, warmup_steps, endless() if warmup_steps else None,
    )
    trainer = Engine(step)
    metrics = {"val_util": SampleMean(lambda o: o["util"])}
    for k, member in enumerate(members):
        metrics[f"val_adv{k}_{member.kind}_auc"] = VerificationAUC(output_transform=lambda o, k=k: (o[f"adv{k}"], o["same"]))
    evaluator = SupervisedEvaluator(
        device=device, val_data_loader=val_loader, network=anonymizer, iteration_update=_EnsembleEvalStep(step),
        key_val_metric={"val_mse": SampleMean(lambda o: o["mse"])}, additional_metrics=metrics,
        metric_cmp_fn=metric_cmp_fn("min"), decollate=False,
    )
    meta = {
        **info, "training": "ensemble", "adversaries": {k: dict(v or {}) for k, v in adversaries.items()},
        "lr_anonymizer": lr_anonymizer, "weight_util": weight_util, "weight_priv": weight_priv, "utility": utility,
        "refresh_every": refresh_every, "warmup_steps": warmup_steps, "schema": get_schema(schema).name, **(meta or {}),
    }

    return wire_stage(
        name, trainer, evaluator, anonymizer, train_loader, ckpt_path, "val_mse", "last", meta, lambda out: out,
        max_epochs, progress=progress, tensorboard_dir=tensorboard_dir, export_path=export_path,
    )
