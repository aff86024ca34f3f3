"""The common shape of a training stage: an Ignite trainer, its evaluator and their handlers.

Every stage factory (:func:`~monai_prichexy.engines.create_classifier_stage`, ...) returns a
:class:`TrainingStage`; ``stage.run()`` trains, restores the best validated weights, writes the
checkpoint (``monai_prichexy`` format, meta: stage, data, epochs, seed, ...), a JSON summary
beside it (``<checkpoint>.json``: best metric and epoch, per-epoch history) and, when asked, the
bundle's ``models/model.pt``. A bundle config runs it with ``"$@<stage>#stage.run()"``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import EarlyStopping
from monai.engines import Workflow
from monai.handlers import TensorBoardStatsHandler, ValidationHandler
from torch import nn

from .handlers import BestCheckpoint, LossHistory, export_bundle_model, write_json
from .utils import _jsonable, get_logger, is_main_process

__all__ = ["TrainingStage", "build_supervised_stage", "metric_cmp_fn", "prepare_network", "wire_stage"]

logger = get_logger("stage")
PathLike = str | os.PathLike


def prepare_network(network: nn.Module, device: torch.device, sync_bn: bool = False) -> nn.Module:
    """Move ``network`` to ``device``; under :mod:`ignite.distributed`, wrap it with ``idist.auto_model``.

    ``sync_bn`` converts BatchNorm to SyncBatchNorm in distributed runs; PyTorch supports it on
    GPUs only, so it is ignored (with a warning) on CPU, where each process normalises its own
    part of the batch.
    """
    if idist.get_world_size() > 1:
        if sync_bn and idist.device().type == "cpu":
            logger.warning("sync_bn is not supported on CPU: BatchNorm statistics stay per process")
            sync_bn = False
        return idist.auto_model(network, sync_bn=sync_bn)
    return network.to(device)


class _SetSamplerEpoch:
    """Call ``sampler.set_epoch`` so that a shuffling DistributedSampler reshuffles every epoch."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __call__(self, engine: Engine) -> None:
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(engine.state.epoch - 1)


class TrainingStage:
    """A trainer with its evaluator, best-checkpoint keeper and loss history.

    Args:
        name: stage name (``"classifier_pretrain"``, ...), written into the checkpoint meta.
        trainer: the Ignite/MONAI trainer.
        evaluator: the validation engine (run by a ``ValidationHandler`` every epoch).
        network: the network the stage produces.
        checkpoint: the :class:`BestCheckpoint` handler.
        history: the :class:`LossHistory` handler.
        train_loader: data of ``trainer`` (for plain Ignite engines).
        max_epochs: epochs (for plain Ignite engines).
        export_path: where to write the bundle ``models/model.pt`` at the end (optional).
        meta: JSON-like meta of the stage.
    """

    def __init__(
        self,
        name: str,
        trainer: Engine,
        evaluator: Engine | None,
        network: nn.Module,
        checkpoint: BestCheckpoint,
        history: LossHistory,
        train_loader: Any = None,
        max_epochs: int | None = None,
        export_path: PathLike | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.trainer = trainer
        self.evaluator = evaluator
        self.network = network
        self.checkpoint = checkpoint
        self.history = history
        self.train_loader = train_loader
        self.max_epochs = max_epochs
        self.export_path = None if export_path is None else Path(export_path)
        self.meta = dict(meta or {})
        self.result: dict[str, Any] | None = None

    def run(self) -> dict[str, Any]:
        """Train; returns (and writes beside the checkpoint) the stage summary."""
        logger.info("stage %s: training", self.name)
        start = time.time()
        if isinstance(self.trainer, Workflow):
            self.trainer.run()
        else:
            self.trainer.run(self.train_loader, max_epochs=self.max_epochs)
        self.checkpoint.restore()
        summary = {
            "stage": self.name,
            "checkpoint": self.checkpoint.path.name if self.checkpoint.path else None,
            "select_metric": self.checkpoint.metric_name,
            "best_metric": self.checkpoint.best_score,
            "best_epoch": self.checkpoint.best_epoch,
            "epochs_run": int(self.trainer.state.epoch),
            "iterations_run": int(self.trainer.state.iteration),
            "wall_time_s": time.time() - start,
            "world_size": idist.get_world_size(),
            "meta": self.meta,
            "history": self.history.epochs(),
            "iterations": self.history.iterations,
        }
        if self.checkpoint.path is not None:
            write_json(self.checkpoint.path.with_suffix(".json"), summary)
        if self.export_path is not None:
            export_bundle_model(
                self.network, self.export_path, {**self.meta, "stage": self.name, "best_epoch": self.checkpoint.best_epoch}
            )
        self.result = summary
        return summary


def wire_stage(
    name: str,
    trainer: Engine,
    evaluator: Engine,
    network: nn.Module,
    train_loader: Any,
    ckpt_path: PathLike | None,
    select_metric: str,
    mode: str,
    meta: Mapping[str, Any] | None,
    history_transform: Callable[[Any], Mapping[str, Any]],
    max_epochs: int,
    patience: int | None = None,
    patience_metric: str | None = None,
    progress: bool = True,
    tensorboard_dir: PathLike | None = None,
    export_path: PathLike | None = None,
    companions: Mapping[str, tuple[nn.Module, PathLike | None]] | None = None,
    validation_interval: int = 1,
) -> TrainingStage:
    """Attach validation, best checkpoint, early stopping, history, progress bar and TensorBoard.

    Args:
        patience: early-stopping patience in validations on ``patience_metric`` (default: the
            selection metric, in its direction; any other metric: lower is better); None = no early
            stopping (the paper's adversarial stage).
    """
    meta = _jsonable({"stage": name, "max_epochs": max_epochs, **dict(meta or {})})
    trainer.add_event_handler(Events.EPOCH_STARTED, _SetSamplerEpoch(train_loader))
    history = LossHistory(history_transform).attach(trainer, evaluator)
    checkpoint = BestCheckpoint(network, ckpt_path, select_metric, mode, meta=meta, companions=companions)
    checkpoint.attach(evaluator, trainer)
    ValidationHandler(validator=evaluator, interval=validation_interval, epoch_level=True).attach(trainer)
    if patience is not None:
        if mode == "last":
            raise ValueError("early stopping (patience) makes no sense when the last epoch is kept")
        metric = patience_metric or select_metric
        sign = 1.0 if (metric == select_metric and mode == "max") else -1.0  # EarlyStopping: higher is better
        stopper = EarlyStopping(
            patience=int(patience), score_function=lambda e: sign * float(e.state.metrics[metric]), trainer=trainer
        )
        evaluator.add_event_handler(Events.COMPLETED, stopper)
    if progress and is_main_process():
        from ignite.handlers import ProgressBar

        ProgressBar(persist=False, desc=name).attach(
            trainer, output_transform=lambda out: {k: float(v) for k, v in history_transform(out).items()}
        )
    if tensorboard_dir is not None and is_main_process():
        TensorBoardStatsHandler(
            log_dir=str(tensorboard_dir), tag_name=name, output_transform=lambda out: dict(history_transform(out))
        ).attach(trainer)
        TensorBoardStatsHandler(
            log_dir=str(tensorboard_dir), iteration_log=False, output_transform=lambda _: None,
            global_epoch_transform=lambda _: trainer.state.epoch,
        ).attach(evaluator)
    return TrainingStage(
        name, trainer, evaluator, network, checkpoint, history, train_loader, max_epochs, export_path, meta
    )


def metric_cmp_fn(mode: str) -> Callable[[float, float], bool]:
    """MONAI's ``metric_cmp_fn`` for a key metric where lower (``"min"``) or higher (``"max"``) is better."""
    if mode == "min":
        return lambda current, prev: current < prev
    return lambda current, prev: current > prev


def _loss_output(out: Any) -> dict[str, float]:
    loss = out["loss"]
    return {"loss": float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)}


def build_supervised_stage(
    name: str,
    network: nn.Module,
    train_loader: Any,
    val_loader: Any,
    loss_function: nn.Module,
    prepare_batch: Callable,
    val_metrics: Mapping[str, Any],
    select_metric: str,
    mode: str,
    device: torch.device,
    max_epochs: int,
    optimizer: torch.optim.Optimizer,
    ckpt_path: PathLike | None = None,
    meta: Mapping[str, Any] | None = None,
    patience: int | None = None,
    patience_metric: str | None = None,
    val_prepare_batch: Callable | None = None,
    progress: bool = True,
    tensorboard_dir: PathLike | None = None,
    export_path: PathLike | None = None,
    amp: bool = False,
) -> TrainingStage:
    """A ``monai.engines.SupervisedTrainer`` + ``SupervisedEvaluator`` stage (network already prepared)."""
    from monai.engines import SupervisedEvaluator, SupervisedTrainer

    trainer = SupervisedTrainer(
        device=device,
        max_epochs=int(max_epochs),
        train_data_loader=train_loader,
        network=network,
        optimizer=optimizer,
        loss_function=loss_function,
        prepare_batch=prepare_batch,
        decollate=False,
        amp=amp,
    )
    metrics = dict(val_metrics)
    key = {select_metric: metrics.pop(select_metric)}
    evaluator = SupervisedEvaluator(
        device=device,
        val_data_loader=val_loader,
        network=network,
        prepare_batch=val_prepare_batch or prepare_batch,
        key_val_metric=key,
        additional_metrics=metrics or None,
        metric_cmp_fn=metric_cmp_fn(mode),
        decollate=False,
        amp=amp,
    )
    return wire_stage(
        name, trainer, evaluator, network, train_loader, ckpt_path, select_metric, mode, meta, _loss_output,
        max_epochs, patience=patience, patience_metric=patience_metric, progress=progress,
        tensorboard_dir=tensorboard_dir, export_path=export_path,
    )
