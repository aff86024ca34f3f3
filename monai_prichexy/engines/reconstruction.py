"""Stage 3: pre-training the anonymizer to reconstruct its input.

PriCheXy-Net (Packhäuser et al., MICCAI 2023): MSE(warp(x), x) through the FULL operator
(:class:`~monai_prichexy.networks.PriCheXyNet`: generator, ``I - mu * G(x)``, grid smoothing,
``grid_sample``), Adam 1e-4, batch 64, keep the lowest validation loss. For the Privacy-Net
baseline the network is a :class:`~monai_prichexy.networks.PrivacyNetEncoder` and the loss is
MSE(P(x), x).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from ignite.metrics import Loss
from monai.handlers import from_engine
from monai.utils import CommonKeys
from torch import nn

from ..networks import PriCheXyNet
from ..weights import network_kwargs
from .batches import ReconstructionBatch
from .stage import TrainingStage, build_supervised_stage, prepare_network
from .utils import build_optimizer, resolve_device

__all__ = ["create_reconstruction_stage", "anonymizer_meta"]


def anonymizer_meta(network: nn.Module) -> dict[str, Any]:
    """What an anonymizer network is, for checkpoint meta (kind, mu, smoothing, sizes)."""
    net = getattr(network, "module", network)

    def describe(module: nn.Module) -> dict[str, Any]:
        try:
            return {"network": type(module).__name__, "network_kwargs": network_kwargs(module)}
        except TypeError:  # a custom network
            return {"network": type(module).__name__}

    if isinstance(net, PriCheXyNet):
        return {
            "anonymizer": "prichexy",
            "mu": net.mu,
            "smoothing": net.smoothing,
            "working_size": net.working_size,
            "budget_px": net.budget_px,
            **describe(net.generator),
        }
    return {"anonymizer": "privacy_net", **describe(net)}


def create_reconstruction_stage(
    network: nn.Module,
    train_loader: Any,
    val_loader: Any,
    max_epochs: int = 50,
    lr: float = 1e-4,
    optimizer: str = "adam",
    device: str | torch.device = "cpu",
    ckpt_path: str | os.PathLike | None = None,
    patience: int | None = None,
    meta: dict[str, Any] | None = None,
    name: str = "generator_pretrain",
    export_path: str | os.PathLike | None = None,
    sync_bn: bool = True,
    progress: bool = True,
    tensorboard_dir: str | os.PathLike | None = None,
    amp: bool = False,
) -> TrainingStage:
    """Anonymizer pre-training (MSE reconstruction) as a MONAI ``SupervisedTrainer`` with evaluator.

    Args:
        network: a :class:`~monai_prichexy.networks.PriCheXyNet` or a
            :class:`~monai_prichexy.networks.PrivacyNetEncoder`.
        train_loader, val_loader: loaders of ``{"image"}`` batches (batch 64 in the paper).
        max_epochs, lr, optimizer: Adam 1e-4 in the paper.
        ckpt_path: checkpoint of the lowest validation MSE.
        patience: optional early stopping on the validation MSE (None = off, as in the paper).
        name: ``"generator_pretrain"`` or ``"privacy_net_pretrain"``.
        export_path: also write the bundle's ``models/model.pt`` (+ ``model.json``) at the end.
        device, meta, sync_bn, progress, tensorboard_dir, amp: as for the classifier.
    """
    device = resolve_device(device)
    info = anonymizer_meta(network)
    network = prepare_network(network, device, sync_bn)
    opt = build_optimizer(network.parameters(), optimizer, lr)
    metrics = {"val_loss": Loss(nn.MSELoss(), output_transform=from_engine([CommonKeys.PRED, CommonKeys.LABEL]))}
    return build_supervised_stage(
        name, network, train_loader, val_loader, nn.MSELoss(), ReconstructionBatch(), metrics, "val_loss", "min",
        device, max_epochs, opt, ckpt_path=ckpt_path, meta={**info, "lr": lr, "optimizer": optimizer, **(meta or {})},
        patience=patience, progress=progress, tensorboard_dir=tensorboard_dir, export_path=export_path, amp=amp,
    )
