"""Running a stage under :mod:`ignite.distributed` (DDP).

The stage factories are distribution-aware: networks go through ``idist.auto_model``
(SyncBatchNorm on GPU when ``sync_bn``), optimizers through ``idist.auto_optim`` and loaders
through ``idist.auto_dataloader`` (the configured batch size is the GLOBAL batch), checkpoints
and JSON are written by rank 0 only and logged losses are averaged over the processes.

Two ways to start processes:

- ``torchrun --nproc_per_node N -m monai.bundle run <run_id> --config_file
  "['bundle/configs/train.json','bundle/configs/multi_gpu_train.json']"`` -- the bundle's
  ``initialize`` calls :func:`init_from_env` (``idist.Parallel`` inside torchrun);
- :func:`launch` from Python, which spawns the processes itself through ``idist.Parallel``.

On CPU (gloo) PyTorch has no SyncBatchNorm: each process normalises its own share of the batch,
so BatchNorm networks differ slightly from a single-process run of the same global batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ignite.distributed as idist

__all__ = ["launch", "init_from_env", "finalize"]


def launch(fn: Callable[..., Any], *args: Any, backend: str | None = "gloo", nproc_per_node: int | None = None, **kwargs: Any) -> None:
    """Run ``fn(local_rank, *args, **kwargs)`` in ``nproc_per_node`` processes via ``idist.Parallel``.

    Inside ``torchrun`` leave ``nproc_per_node`` None: ``idist.Parallel`` joins the existing
    process group. ``backend=None`` runs ``fn`` in this process without distribution.
    """
    with idist.Parallel(backend=backend, nproc_per_node=nproc_per_node) as parallel:
        parallel.run(fn, *args, **kwargs)


def init_from_env(backend: str = "nccl") -> int:
    """Initialise the process group from the torchrun environment (no-op when already done).

    Returns:
        the world size.
    """
    if idist.get_world_size() == 1 and idist.model_name() == "serial":
        idist.initialize(backend)
    return idist.get_world_size()


def finalize() -> None:
    """Destroy the process group if one was created, once every process has reached this point.

    Without the barrier a rank that finishes first (rank 1, which writes no checkpoint) tears
    its gloo group down while rank 0 is still working, which can abort it at exit
    ("terminate called without an active exception").
    """
    if idist.model_name() != "serial":
        idist.barrier()
        idist.finalize()
