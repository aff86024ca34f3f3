"""Stage 2: pre-training the Siamese verifier V on same-/different-patient pairs.

Packhäuser et al., MICCAI 2023: BCE with logits, Adam 1e-4, batch 32, early stopping with
patience 5 on the validation loss; the validation verification AUC is reported. The same
stage, with anonymizers on the inputs and a freshly initialised network, is the attack
(:mod:`monai_prichexy.engines.attack`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from ignite.metrics import Loss
from monai.handlers import from_engine
from monai.utils import CommonKeys
from torch import nn

from ..metrics import VerificationAUC
from .batches import PairBatch
from .stage import TrainingStage, build_supervised_stage, prepare_network
from .utils import build_optimizer, resolve_device

__all__ = ["create_verifier_stage"]


def create_verifier_stage(
    network: nn.Module,
    train_loader: Any,
    val_loader: Any,
    max_epochs: int = 100,
    lr: float = 1e-4,
    optimizer: str = "adam",
    patience: int | None = 5,
    device: str | torch.device = "cpu",
    ckpt_path: str | os.PathLike | None = None,
    meta: dict[str, Any] | None = None,
    train_anonymizer: Callable[[torch.Tensor], torch.Tensor] | None = None,
    val_anonymizer: Callable[[torch.Tensor], torch.Tensor] | None = None,
    name: str = "verifier_pretrain",
    select: str = "val_loss",
    sync_bn: bool = True,
    progress: bool = True,
    tensorboard_dir: str | os.PathLike | None = None,
    amp: bool = False,
) -> TrainingStage:
    """Verifier training as a MONAI ``SupervisedTrainer`` (``network(image1, image2)``) with evaluator.

    The lowest validation loss is kept and early stopping watches it (``select="val_loss"``, the
    paper), or the highest validation AUC (``select="val_auc"``), or the last epoch (``"last"``).

    Args:
        network: a :class:`~monai_prichexy.networks.SiameseVerifier`.
        train_loader, val_loader: loaders of ``{"image1", "image2", "label"}`` pair batches.
        max_epochs: upper bound on epochs (early stopping usually ends sooner).
        lr, optimizer: Adam 1e-4 in the paper.
        patience: early-stopping patience in epochs (5 in the paper; None = off).
        device, ckpt_path, meta, sync_bn, progress, tensorboard_dir, amp: as for the classifier.
        train_anonymizer: applied to BOTH training images (the attack trains on anonymized pairs).
        val_anonymizer: applied to the FIRST validation image only (anonymized vs real, the test
            protocol of the attack).
        name: stage name in logs and meta.
        select: ``"val_loss"`` (the paper: lowest validation loss kept, early stopping on it),
            ``"val_auc"`` (highest validation verification AUC kept, early stopping on it) or
            ``"last"`` (a fixed budget: the last epoch is kept, ``patience`` must be None; the
            steadiest attacker when the validation split is too small to choose epochs).
    """
    modes = {"val_loss": "min", "val_auc": "max", "last": "last"}
    if select not in modes:
        raise ValueError(f"select must be one of {sorted(modes)}, got {select!r}")
    device = resolve_device(device)
    network = prepare_network(network, device, sync_bn)
    opt = build_optimizer(network.parameters(), optimizer, lr)
    pred_label = from_engine([CommonKeys.PRED, CommonKeys.LABEL])
    metrics = {
        "val_loss": Loss(nn.BCEWithLogitsLoss(), output_transform=pred_label),
        "val_auc": VerificationAUC(output_transform=pred_label),
    }
    return build_supervised_stage(
        name, network, train_loader, val_loader, nn.BCEWithLogitsLoss(),
        PairBatch(train_anonymizer, train_anonymizer), metrics, "val_auc" if select == "last" else select, modes[select],
        device, max_epochs, opt, ckpt_path=ckpt_path,
        meta={"lr": lr, "optimizer": optimizer, "patience": patience, "select": select, **(meta or {})},
        patience=patience, val_prepare_batch=PairBatch(val_anonymizer, None),
        progress=progress, tensorboard_dir=tensorboard_dir, amp=amp,
    )
