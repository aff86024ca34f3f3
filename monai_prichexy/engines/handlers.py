"""Ignite handlers of the training stages: best-checkpoint keeping, loss history, bundle export."""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce
from torch import nn

from ..atomic import atomic_write, atomic_write_bytes
from ..bundle_files import metadata_path, record_sha256
from ..networks import PriCheXyNet
from ..weights import save_checkpoint, sha256_file
from .utils import _jsonable, get_logger, is_main_process, unwrap

__all__ = ["BestCheckpoint", "LossHistory", "SampleMean", "export_bundle_model", "write_json"]

logger = get_logger("handlers")

PathLike = str | os.PathLike


def write_json(path: PathLike, payload: Mapping[str, Any], indent: int = 2) -> Path:
    """Write ``payload`` as indented UTF-8 JSON (rank 0 only; NaN written as null)."""
    path = Path(path)
    if is_main_process():
        path.parent.mkdir(parents=True, exist_ok=True)

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, Mapping):
                return {str(k): clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            return v

        text = json.dumps(clean(_jsonable(payload)), indent=indent, ensure_ascii=False)
        atomic_write_bytes(path, (text + "\n").encode("utf-8"))
    return path


class SampleMean(Metric):
    """Mean of per-sample values over an epoch (all-reduced across processes).

    ``output_transform`` must give a tensor of per-sample values, shape ``(B,)`` or ``(B, 1)``.
    """

    def __init__(self, output_transform: Callable = lambda x: x, device: str | torch.device = "cpu") -> None:
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._sum = torch.tensor(0.0, dtype=torch.float64, device=self._device)
        self._num = 0

    @reinit__is_reduced
    def update(self, output: torch.Tensor) -> None:
        values = output.detach().reshape(-1).to(self._device, torch.float64)
        self._sum += values.sum()
        self._num += values.numel()

    @sync_all_reduce("_sum", "_num")
    def compute(self) -> float:
        if self._num == 0:
            raise NotComputableError("SampleMean needs at least one sample")
        return float(self._sum.item() / self._num)


def _save(path: Path, module: nn.Module, meta: dict[str, Any]) -> None:
    """:func:`save_checkpoint`, or for networks it cannot describe (custom generators) a plain
    ``{"state_dict", "meta"}`` dict that :func:`monai_prichexy.weights.load_checkpoint` still reads."""
    try:
        save_checkpoint(path, module, meta=meta)
    except TypeError:
        payload = {"state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()}, "meta": meta}
        atomic_write(path, lambda handle: torch.save(payload, handle))


class BestCheckpoint:
    """Keep the weights with the best validation metric, in the ``monai_prichexy`` checkpoint format.

    Attached to an evaluator, it reads ``evaluator.state.metrics[metric_name]`` after every
    validation; on improvement it saves ``network`` (and any ``companions``) through
    :func:`monai_prichexy.weights.save_checkpoint` with ``meta`` plus the epoch and the metric
    (rank 0 only) and keeps an in-memory copy so that :meth:`restore` can load the best weights
    back at the end of the stage.

    Args:
        network: the network to keep (DDP wrappers are unwrapped).
        path: checkpoint path; None keeps the best weights in memory only.
        metric_name: the evaluator metric to compare.
        mode: ``"min"`` or ``"max"``; ``"last"`` keeps the weights of the last validation (the
            metric is still recorded).
        meta: extra JSON-like meta saved in the checkpoint.
        companions: name -> (network, path) saved at the same epoch (e.g. C and V of the
            adversarial stage).
    """

    def __init__(
        self,
        network: nn.Module,
        path: PathLike | None,
        metric_name: str = "val_loss",
        mode: str = "min",
        meta: Mapping[str, Any] | None = None,
        companions: Mapping[str, tuple[nn.Module, PathLike | None]] | None = None,
    ) -> None:
        if mode not in ("min", "max", "last"):
            raise ValueError(f"mode must be 'min', 'max' or 'last', got {mode!r}")
        self.network = network
        self.path = None if path is None else Path(path)
        self.metric_name = metric_name
        self.mode = mode
        self.meta = dict(meta or {})
        self.companions = dict(companions or {})
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self._best_states: dict[str, dict[str, torch.Tensor]] = {}
        self._trainer: Engine | None = None

    def attach(self, evaluator: Engine, trainer: Engine | None = None) -> BestCheckpoint:
        self._trainer = trainer
        evaluator.add_event_handler(Events.COMPLETED, self)
        return self

    def _better(self, score: float) -> bool:
        if self.mode == "last":  # keep the latest validated weights whatever the metric
            return True
        if not math.isfinite(score):
            return False
        if self.best_score is None:
            return True
        return score < self.best_score if self.mode == "min" else score > self.best_score

    def __call__(self, engine: Engine) -> None:
        score = float(engine.state.metrics[self.metric_name])
        if not self._better(score):
            return
        epoch = self._trainer.state.epoch if self._trainer is not None else engine.state.epoch
        self.best_score, self.best_epoch = score, int(epoch)
        nets = {"network": (self.network, self.path), **self.companions}
        for name, (net, path) in nets.items():
            module = unwrap(net)
            self._best_states[name] = {k: v.detach().clone() for k, v in module.state_dict().items()}
            if path is not None and is_main_process():
                meta = {**self.meta, "epoch": self.best_epoch, self.metric_name: score, "role": name}
                _save(path, module, _jsonable(meta))
        logger.info("epoch %d: best %s = %.5f", self.best_epoch, self.metric_name, score)

    def restore(self) -> None:
        """Load the best weights back into the network(s) (no-op if nothing was validated)."""
        nets = {"network": (self.network, self.path), **self.companions}
        for name, (net, _) in nets.items():
            if name in self._best_states:
                unwrap(net).load_state_dict(self._best_states[name])


class LossHistory:
    """Record training losses per iteration and per epoch, and validation metrics per epoch.

    Losses of one iteration are averaged over the processes (``idist.all_reduce``), so a
    distributed run's history compares with a single-process run of the same global batch.

    Args:
        output_transform: maps the trainer output to ``{name: scalar}``.
    """

    def __init__(self, output_transform: Callable[[Any], Mapping[str, Any]]) -> None:
        self.output_transform = output_transform
        self.iterations: list[dict[str, float]] = []
        self.train: list[dict[str, float]] = []
        self.val: list[dict[str, float]] = []
        self._epoch: list[dict[str, float]] = []
        self._trainer: Engine | None = None

    def attach(self, trainer: Engine, evaluator: Engine | None = None) -> LossHistory:
        self._trainer = trainer
        trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: self._epoch.clear())
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        if evaluator is not None:
            evaluator.add_event_handler(Events.COMPLETED, self._validated)
        return self

    def _iteration(self, engine: Engine) -> None:
        values = {k: float(v) for k, v in self.output_transform(engine.state.output).items()}
        if idist.get_world_size() > 1:
            keys = sorted(values)
            t = idist.all_reduce(torch.tensor([values[k] for k in keys], dtype=torch.float64)) / idist.get_world_size()
            values = dict(zip(keys, t.tolist()))
        self._epoch.append(values)
        self.iterations.append({"epoch": engine.state.epoch, "iteration": engine.state.iteration, **values})

    def _epoch_completed(self, engine: Engine) -> None:
        if not self._epoch:
            return
        keys = self._epoch[0].keys()
        means = {f"train_{k}": sum(v[k] for v in self._epoch) / len(self._epoch) for k in keys}
        self.train.append({"epoch": engine.state.epoch, **means})
        logger.info("epoch %d: %s", engine.state.epoch, ", ".join(f"{k}={v:.5f}" for k, v in means.items()))

    def _validated(self, engine: Engine) -> None:
        epoch = self._trainer.state.epoch if self._trainer is not None else engine.state.epoch
        metrics = {k: float(v) for k, v in engine.state.metrics.items() if isinstance(v, (int, float))}
        self.val.append({"epoch": epoch, **metrics})
        logger.info("epoch %d validation: %s", epoch, ", ".join(f"{k}={v:.5f}" for k, v in metrics.items()))

    def epochs(self) -> list[dict[str, float]]:
        """Train and validation records merged by epoch."""
        merged: dict[int, dict[str, float]] = {}
        for rec in self.train + self.val:
            merged.setdefault(int(rec["epoch"]), {}).update(rec)
        return [merged[k] for k in sorted(merged)]


def export_bundle_model(network: nn.Module, model_path: PathLike, meta: Mapping[str, Any] | None = None) -> Path:
    """Write the bundle's ``models/model.pt``, a meta JSON beside it, and its SHA-256 into the metadata.

    ``model.pt`` is the bare state dict of the bundle's ``network_def`` (the MONAI bundle
    convention): for PriCheXy-Net the whole :class:`PriCheXyNet` (``generator.*`` plus the
    ``mu_value``/``smoothing_index``/``working_size_value`` buffers), so that ``ckpt_export``
    and :func:`monai_prichexy.weights.load_into_prichexynet` restore weights *and* set-up.
    ``model.json`` (same stem) says what it is: network, constructor arguments, mu, smoothing,
    working size, displacement budget, stage, data, epochs, seed. When the folder is a bundle's ``models/``, the
    file's SHA-256 is recorded as ``model_sha256`` in ``configs/metadata.json``, which
    inference checks before loading. Rank 0 only.
    """
    model_path = Path(model_path)
    module = unwrap(network)
    info: dict[str, Any] = {}
    generator = module
    if isinstance(module, PriCheXyNet):
        info = {"mu": module.mu, "smoothing": module.smoothing, "working_size": module.working_size,
                "budget_px": module.budget_px}
        generator = module.generator
    info = {"network": type(module).__name__, **info}
    for attr in ("in_channels", "init_features"):
        if hasattr(generator, attr):
            info.setdefault("network_kwargs", {})[attr] = getattr(generator, attr)
    if is_main_process():
        state = {k: v.detach().cpu() for k, v in copy.deepcopy(module.state_dict()).items()}
        atomic_write(model_path, lambda handle: torch.save(state, handle))
        write_json(model_path.with_suffix(".json"), {**info, **dict(meta or {})})
        metadata = metadata_path(model_path)
        if model_path.name == "model.pt" and metadata.is_file():
            record_sha256(metadata, sha256_file(model_path))
    return model_path
