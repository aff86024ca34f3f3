"""The re-identification attackers of the evaluation, behind one interface.

Each attacker is trained afresh (per seed) on a release of anonymized images and then scores
every (anonymized query, real gallery) test pair; higher = more likely the same patient. The
privacy of a row is the worst case over them (DESIGN, section 8):

- :class:`SiameseAttacker` -- the paper's attacker (Packhäuser et al., MICCAI 2023): a fresh
  :class:`~monai_prichexy.networks.SiameseVerifier` trained with BCE on pairs whose two images
  are anonymized; it scores a pair with its head on ``|f(x1) - f(x2)|``.
- :class:`MetricAttacker` -- an :class:`~monai_prichexy.networks.EmbeddingNet` trained with a
  supervised-contrastive loss over the patient ids of the anonymized training images; it
  scores a pair by the cosine of the two embeddings.
- :class:`PixelAttacker` -- training-free: the cosine of the mean-centred pixels (Pearson
  correlation of the two images).

Common interface (as torchxrayvision's models share one): ``name``, ``fit(context, seed)`` and
``scores(queries, gallery) -> (Q, G)``. The trained attackers' networks may look at the images
at their own ``input_size`` (resized inside the network, with anti-aliasing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..networks import EmbeddingNet, SiameseVerifier
from ..networks.verifier import resize_to
from .metric_learning import create_metric_stage, metric_train_loader, patient_codes
from .release import SplitImages, TensorImageDataset, TensorPairDataset
from .utils import resolve_device, seed_everything, unwrap
from .verifier import create_verifier_stage

__all__ = [
    "ATTACKERS",
    "AttackContext",
    "BatchAugment",
    "SiameseAttacker",
    "MetricAttacker",
    "PixelAttacker",
    "build_attacker",
]


@dataclass
class AttackContext:
    """One release of a row as the attackers see it.

    Attributes:
        train: the anonymized training split (both images of a training pair are anonymized).
        val_anon, val_real: the validation split anonymized and real (validation pairs are
            (anonymized, real), the test protocol).
        train_pairs, val_pairs: ``(i1, i2, same)`` index arrays into those splits.
    """

    train: SplitImages
    val_anon: SplitImages
    val_real: SplitImages
    train_pairs: tuple[np.ndarray, np.ndarray, np.ndarray]
    val_pairs: tuple[np.ndarray, np.ndarray, np.ndarray]


class BatchAugment:
    """A small random affine change of every image of a batch (rotation, zoom, shift; border padding).

    One ``affine_grid`` / ``grid_sample`` call for the whole batch: MONAI's per-image
    ``RandAffine`` does the same but rebuilds its grid per image, about 25 ms per 64-px image
    here, as long as the training step itself.

    Args:
        degrees: largest rotation; scale: largest relative zoom; translate: largest shift as a
            fraction of the side; seed: seed of the draws.
    """

    def __init__(self, degrees: float = 5.0, scale: float = 0.05, translate: float = 0.04, seed: int = 0) -> None:
        self.degrees, self.scale, self.translate = float(degrees), float(scale), float(translate)
        self.generator = torch.Generator().manual_seed(int(seed))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]

        def uniform(limit: float) -> torch.Tensor:
            return (torch.rand(b, generator=self.generator) * 2 - 1) * limit

        angle = torch.deg2rad(uniform(self.degrees))
        zoom = 1.0 + uniform(self.scale)
        shift = torch.stack((uniform(2 * self.translate), uniform(2 * self.translate)), dim=1)  # normalised units
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack((torch.stack((cos, -sin, shift[:, 0]), 1), torch.stack((sin, cos, shift[:, 1]), 1)), 1)
        grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class _LearnedAttacker:
    """What the Siamese and the metric attacker share: a network trained by an engine stage, and its embeddings."""

    network: nn.Module | None
    augment: dict[str, float] | None
    device: torch.device

    def _batch_augment(self, seed: int) -> BatchAugment | None:
        return None if self.augment is None else BatchAugment(**self.augment, seed=seed)

    def _trained(self, stage) -> dict[str, Any]:
        """Run ``stage``, keep its network (eval mode) and summarise the training."""
        summary = stage.run()
        self.network = unwrap(stage.network).eval()
        return _fit_summary(summary)

    def _check_trained(self) -> None:
        if self.network is None:
            raise RuntimeError("the attacker is not trained: call fit first")

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        return torch.cat([self.network.embed(images[i : i + batch_size].to(self.device)).float().cpu()
                          for i in range(0, len(images), batch_size)])


class SiameseAttacker(_LearnedAttacker):
    """The paper's attacker: a fresh Siamese verifier trained on anonymized pairs.

    Args:
        network: :class:`~monai_prichexy.networks.SiameseVerifier` arguments.
        max_epochs, batch_size, lr, patience, select: its training (see
            :func:`~monai_prichexy.engines.create_verifier_stage`; paper: Adam 1e-4, batch 32,
            early stopping on the validation loss with patience 5).
        augment: :class:`BatchAugment` arguments, or None (the paper: none).
        device, progress: where and how it trains.
    """

    name = "siamese"

    def __init__(
        self,
        network: Mapping[str, Any] | None = None,
        max_epochs: int = 100,
        batch_size: int = 32,
        lr: float = 1e-4,
        patience: int | None = 5,
        select: str = "val_loss",
        augment: Mapping[str, float] | None = None,
        device: str | torch.device = "cpu",
        progress: bool = True,
    ) -> None:
        self.network_kwargs = dict(network or {})
        self.max_epochs, self.batch_size, self.lr = int(max_epochs), int(batch_size), float(lr)
        self.patience, self.select = patience, select
        self.augment = None if augment is None else dict(augment)
        self.device = resolve_device(device)
        self.progress = progress
        self.network: SiameseVerifier | None = None

    def fit(self, ctx: AttackContext, seed: int) -> dict[str, Any]:
        seed_everything(seed)
        train = ctx.train.images
        val_a, val_r = ctx.val_anon.images, ctx.val_real.images
        train_loader = DataLoader(TensorPairDataset(train, train, *ctx.train_pairs), batch_size=self.batch_size, shuffle=True)
        val_loader = DataLoader(TensorPairDataset(val_a, val_r, *ctx.val_pairs), batch_size=max(self.batch_size, 64))
        augment = self._batch_augment(seed)
        stage = create_verifier_stage(
            SiameseVerifier(**self.network_kwargs), train_loader, val_loader, max_epochs=self.max_epochs, lr=self.lr,
            patience=self.patience, device=self.device, train_anonymizer=augment, name="siamese_attack",
            select=self.select, progress=self.progress, meta={"seed": seed, "attack": True},
        )
        return self._trained(stage)

    @torch.no_grad()
    def scores(self, queries: torch.Tensor, gallery: torch.Tensor, chunk: int = 64) -> np.ndarray:
        self._check_trained()
        eq, eg = self.embed(queries).to(self.device), self.embed(gallery).to(self.device)
        rows = [self.network.score_embeddings(eq[i : i + chunk, None, :], eg[None, :, :]).squeeze(-1).float().cpu()
                for i in range(0, len(eq), chunk)]
        return torch.cat(rows).numpy()


class MetricAttacker(_LearnedAttacker):
    """An embedding trained with a supervised-contrastive loss over patient ids, scored by cosine.

    Args:
        network: :class:`~monai_prichexy.networks.EmbeddingNet` arguments.
        max_epochs, batch_size, lr, weight_decay, temperature: AdamW training of the SupCon loss.
        m_per_patient: images of each patient in a batch.
        select: ``"last"`` (fixed budget) or ``"val_auc"``.
        augment: :class:`BatchAugment` arguments, or None.
        device, progress: where and how it trains.
    """

    name = "metric"

    def __init__(
        self,
        network: Mapping[str, Any] | None = None,
        max_epochs: int = 30,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        temperature: float = 0.1,
        m_per_patient: int = 2,
        select: str = "last",
        augment: Mapping[str, float] | None = None,
        device: str | torch.device = "cpu",
        progress: bool = True,
    ) -> None:
        self.network_kwargs = dict(network or {})
        self.max_epochs, self.batch_size, self.lr = int(max_epochs), int(batch_size), float(lr)
        self.weight_decay, self.temperature, self.m_per_patient = float(weight_decay), float(temperature), int(m_per_patient)
        self.select = select
        self.augment = None if augment is None else dict(augment)
        self.device = resolve_device(device)
        self.progress = progress
        self.network: EmbeddingNet | None = None

    def fit(self, ctx: AttackContext, seed: int) -> dict[str, Any]:
        seed_everything(seed)
        codes, keep = patient_codes(ctx.train.patient_ids, min_images=2)
        if len(keep) < 2 * self.m_per_patient:
            raise ValueError("the metric attacker needs patients with at least two training images")
        train = ctx.train.images[keep]
        dataset = TensorImageDataset(train, ctx.train.labels[keep], codes[keep])
        train_loader = metric_train_loader(dataset, codes[keep], self.batch_size, self.m_per_patient)
        val_loader = DataLoader(TensorPairDataset(ctx.val_anon.images, ctx.val_real.images, *ctx.val_pairs), batch_size=128)
        augment = self._batch_augment(seed)
        stage = create_metric_stage(
            EmbeddingNet(**self.network_kwargs), train_loader, val_loader, max_epochs=self.max_epochs, lr=self.lr,
            weight_decay=self.weight_decay, temperature=self.temperature, augment=augment, device=self.device,
            select=self.select, progress=self.progress, meta={"seed": seed, "attack": True},
        )
        return self._trained(stage)

    @torch.no_grad()
    def scores(self, queries: torch.Tensor, gallery: torch.Tensor) -> np.ndarray:
        self._check_trained()
        return (self.embed(queries) @ self.embed(gallery).T).numpy()


class PixelAttacker:
    """Training-free: the cosine of the mean-centred pixels of two images (their Pearson correlation).

    Args:
        input_size: side the images are compared at (None = as released).
    """

    name = "pixel"

    def __init__(self, input_size: int | None = None, **_: Any) -> None:
        self.input_size = input_size

    def fit(self, ctx: AttackContext, seed: int) -> dict[str, Any]:
        return {"trained": False}

    def _vectors(self, images: torch.Tensor) -> torch.Tensor:
        v = resize_to(images, self.input_size).flatten(1).double()
        v = v - v.mean(dim=1, keepdim=True)
        return v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def scores(self, queries: torch.Tensor, gallery: torch.Tensor) -> np.ndarray:
        return (self._vectors(queries) @ self._vectors(gallery).T).numpy()


def _fit_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    history = summary.get("history") or []
    last = history[-1] if history else {}
    return {
        "trained": True,
        "epochs_run": summary.get("epochs_run"),
        "best_epoch": summary.get("best_epoch"),
        "val_metric": summary.get("select_metric"),
        "val_best": summary.get("best_metric"),
        "val_auc_last": last.get("val_auc") if isinstance(last, Mapping) else None,
    }


ATTACKERS: dict[str, Callable[..., Any]] = {
    "siamese": SiameseAttacker,
    "metric": MetricAttacker,
    "pixel": PixelAttacker,
}


def build_attacker(name: str, device: str | torch.device = "cpu", progress: bool = True, **kwargs: Any) -> Any:
    """One of :data:`ATTACKERS` by name, with its settings."""
    if name not in ATTACKERS:
        raise ValueError(f"unknown attacker {name!r}; expected one of {sorted(ATTACKERS)}")
    if name == "pixel":
        return PixelAttacker(**kwargs)
    return ATTACKERS[name](device=device, progress=progress, **kwargs)
