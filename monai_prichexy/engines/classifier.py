"""Stage 1: pre-training the utility classifier C on real images.

Packhäuser et al., MICCAI 2023: BCE with logits over the 14 ChestX-ray14 findings; its
validation mean AUC selects the checkpoint (or the validation loss, ``select="val_loss"``).
The loss and the AUCs come from the data set's :class:`~monai_prichexy.labels.LabelSchema`:
BCE over independent sigmoids for a multi-label set, cross-entropy over a softmax for a
multi-class one (Kermany: normal / bacterial / viral); ``val_binary_auc`` is the schema's
headline question (any finding; pneumonia vs normal).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from ignite.metrics import Loss
from monai.handlers import from_engine
from monai.utils import CommonKeys
from torch import nn

from ..labels import LabelSchema, get_schema
from ..metrics import BinaryAUC, MeanAUC
from .batches import ImageLabelBatch
from .stage import TrainingStage, build_supervised_stage, prepare_network
from .utils import build_optimizer, resolve_device

__all__ = ["create_classifier_stage"]


def create_classifier_stage(
    network: nn.Module,
    train_loader: Any,
    val_loader: Any,
    max_epochs: int = 30,
    lr: float = 1e-4,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    device: str | torch.device = "cpu",
    ckpt_path: str | os.PathLike | None = None,
    select: str = "val_mean_auc",
    patience: int | None = None,
    meta: dict[str, Any] | None = None,
    sync_bn: bool = True,
    progress: bool = True,
    tensorboard_dir: str | os.PathLike | None = None,
    amp: bool = False,
    schema: str | LabelSchema = "chestxray14",
) -> TrainingStage:
    """Classifier pre-training as a MONAI ``SupervisedTrainer`` with a ``SupervisedEvaluator``.

    Args:
        network: an :class:`~monai_prichexy.networks.AbnormalityClassifier` (one logit per class).
        train_loader, val_loader: loaders of ``{"image", "label"}`` batches.
        max_epochs: epochs.
        lr, optimizer, weight_decay: see :func:`~monai_prichexy.engines.utils.build_optimizer`.
        device: ``"cpu"`` or ``"cuda"``.
        ckpt_path: where the best checkpoint goes (``monai_prichexy`` format).
        select: ``"val_mean_auc"`` or ``"val_binary_auc"`` (highest kept) or ``"val_loss"`` (lowest kept).
        patience: early stopping on the validation loss (None = off).
        meta: extra checkpoint meta (data, seed, ...).
        sync_bn: SyncBatchNorm in distributed GPU runs.
        progress: Ignite progress bar.
        tensorboard_dir: TensorBoard log folder (None = off).
        amp: automatic mixed precision (GPU).
        schema: the data set's label schema or its name (loss, probabilities, binary question).
    """
    if select not in ("val_mean_auc", "val_binary_auc", "val_loss"):
        raise ValueError(f"select must be 'val_mean_auc', 'val_binary_auc' or 'val_loss', got {select!r}")
    schema = get_schema(schema)
    device = resolve_device(device)
    network = prepare_network(network, device, sync_bn)
    opt = build_optimizer(network.parameters(), optimizer, lr, weight_decay=weight_decay)

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return schema.loss(logits, target)

    pred_label = from_engine([CommonKeys.PRED, CommonKeys.LABEL])

    def probs_label(output):
        pred, label = pred_label(output)
        return schema.probabilities(pred), label

    metrics = {
        "val_mean_auc": MeanAUC(output_transform=probs_label),
        "val_binary_auc": BinaryAUC(schema, output_transform=probs_label),
        "val_loss": Loss(loss, output_transform=pred_label),
    }
    return build_supervised_stage(
        "classifier_pretrain", network, train_loader, val_loader, loss, ImageLabelBatch(), metrics, select,
        "min" if select == "val_loss" else "max", device, max_epochs, opt, ckpt_path=ckpt_path,
        meta={"lr": lr, "optimizer": optimizer, "schema": schema.name, **(meta or {})}, patience=patience,
        patience_metric="val_loss",
        progress=progress, tensorboard_dir=tensorboard_dir, amp=amp,
    )
