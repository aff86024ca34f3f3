"""Small helpers shared by the training stages: devices, seeds, optimizers, batches, logging."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import ignite.distributed as idist
import torch
from monai.data import MetaTensor
from monai.utils import set_determinism
from torch import nn

__all__ = [
    "LOGGER_NAME",
    "get_logger",
    "resolve_device",
    "seed_everything",
    "unwrap",
    "plain",
    "build_optimizer",
    "set_requires_grad",
    "optimizer_step",
    "is_main_process",
]

LOGGER_NAME = "monai_prichexy"


def get_logger(name: str | None = None) -> logging.Logger:
    """The package logger (``monai_prichexy`` or a child of it); configure it with :mod:`logging`."""
    return logging.getLogger(LOGGER_NAME if not name else f"{LOGGER_NAME}.{name}")


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
    """Parse a device setting.

    ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device``; ``None``/``"auto"`` picks CUDA when
    available. Under :mod:`ignite.distributed` with CUDA, each process gets its own GPU
    (``idist.device()``).

    Raises:
        ValueError: CUDA asked for but not available.
    """
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but CUDA is not available; use device='cpu'")
        if idist.get_world_size() > 1 and device.index is None:
            return idist.device()
    return device


def seed_everything(seed: int | None) -> None:
    """Seed Python, NumPy and torch through ``monai.utils.set_determinism`` (no-op for None).

    Every process of a distributed run gets the same seed, so that the networks start equal;
    the distributed samplers split the data.
    """
    if seed is not None:
        set_determinism(seed=int(seed), use_deterministic_algorithms=False)


def unwrap(network: nn.Module) -> nn.Module:
    """The module inside a DataParallel / DistributedDataParallel wrapper."""
    return getattr(network, "module", network)


def plain(x: Any, device: torch.device | str | None = None, non_blocking: bool = False) -> Any:
    """A batch value as a plain tensor (MONAI's ``MetaTensor`` dropped) on ``device``."""
    if isinstance(x, MetaTensor):
        x = x.as_tensor()
    if isinstance(x, torch.Tensor) and device is not None:
        x = x.to(device, non_blocking=non_blocking)
    return x


def build_optimizer(
    params: Iterable[torch.nn.Parameter],
    name: str = "adam",
    lr: float = 1e-4,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """``"adam"`` (``Adam(lr, weight_decay)``), ``"adamw"`` (``AdamW``) or ``"sgd"`` (``SGD(lr, momentum, weight_decay)``).

    The optimizer is wrapped by ``idist.auto_optim`` (a no-op outside distributed runs).
    """
    key = str(name).lower()
    if key == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    elif key == "adamw":
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    elif key == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {name!r}")
    return idist.auto_optim(opt)


def set_requires_grad(networks: nn.Module | Sequence[nn.Module], flag: bool) -> None:
    """Switch gradients of every parameter of ``networks`` on or off."""
    for net in [networks] if isinstance(networks, nn.Module) else networks:
        for p in net.parameters():
            p.requires_grad_(flag)


def optimizer_step(network: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable[[], torch.Tensor]) -> float:
    """One step of ``optimizer`` on the loss that ``loss_fn()`` computes, with the gradients of ``network``
    switched on first; returns the loss value."""
    set_requires_grad(network, True)
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    optimizer.step()
    return loss.item()


def is_main_process() -> bool:
    """True on rank 0 (and outside distributed runs)."""
    return idist.get_rank() == 0


def _jsonable(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``meta`` with tuples turned into lists and other odd values into strings."""

    def conv(v: Any) -> Any:
        if isinstance(v, (str, int, float, bool)) or v is None:
            return v
        if isinstance(v, Mapping):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            return v.item()
        return str(v)

    return {str(k): conv(v) for k, v in (meta or {}).items()}
