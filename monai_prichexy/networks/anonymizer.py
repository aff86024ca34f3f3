"""PriCheXyNet: the flow-field generator and the deformation operator as one network.

``forward(x)`` takes (B, 1, H, W) images scaled to [0, 1] and returns the anonymized images.
The flow is computed at ``working_size`` (256 in the paper) and its displacement resampled
to (H, W), so the same network deforms a 256-px training image and a native-size radiograph.
This is the bundle's ``network_def`` and what ``ckpt_export`` traces (the trace takes any input size:
under tracing every resize runs and the output grid is built from the input); its state dict holds the
generator's weights (``generator.*``) and the set-up it was trained for (``mu_value``,
``smoothing_index``, ``working_size_value``, ``budget_px_value``; 0 = no budget, the value
older files without it load with).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .deformation import (
    SMOOTHING_MODES,
    _check_mode,
    frame_width_px,
    identity_grid,
    jacobian_determinant,
    sampling_grid,
    warp,
)
from .generator import FlowFieldGenerator

__all__ = ["DeformationSetup", "PriCheXyNet"]


def _parse_size(working_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if working_size is None:
        return None
    size = (int(working_size), int(working_size)) if isinstance(working_size, (int, float)) else tuple(working_size)
    if len(size) != 2 or any(s < 16 or s % 16 for s in size):
        raise ValueError(f"working_size must be None or positive multiples of 16, got {working_size!r}")
    return (int(size[0]), int(size[1]))


@dataclass(frozen=True)
class DeformationSetup:
    """What a PriCheXy-Net deformation is besides the generator's weights, validated once.

    Attributes:
        mu: deformation strength, a fraction of the image side (the paper: 0.001 / 0.005 / 0.01).
        smoothing: ``"grid"`` (the paper), ``"displacement"`` or ``"none"``.
        working_size: (H, W) the generator sees, or None for the input's size.
        budget_px: bound on every displacement vector's length in px at 256 x 256, or None.

    :class:`PriCheXyNet` carries it (``network.setup``) in its state dict's buffers, so the
    set-up travels with the weights; :func:`monai_prichexy.weights.load_prichexynet` is the one
    loader that reads it back for every entry point.
    """

    mu: float
    smoothing: str = "grid"
    working_size: tuple[int, int] | None = 256  # type: ignore[assignment]
    budget_px: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= float(self.mu) <= 1:
            raise ValueError(f"mu must be in [0, 1], got {self.mu}")
        object.__setattr__(self, "mu", float(self.mu))
        object.__setattr__(self, "smoothing", _check_mode(self.smoothing))
        object.__setattr__(self, "working_size", _parse_size(self.working_size))
        if self.budget_px is not None:
            if not float(self.budget_px) > 0:
                raise ValueError(f"budget_px must be > 0 or None, got {self.budget_px}")
            object.__setattr__(self, "budget_px", float(self.budget_px))

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], **overrides: Any) -> DeformationSetup:
        """From a checkpoint's meta (``mu``, ``smoothing``, ``working_size``, ``budget_px``); overrides that are not None win.

        Raises:
            KeyError: no ``mu`` in the meta and none given.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown set-up field(s) {unknown}; expected some of {sorted(names)}")
        values = {k: meta[k] for k in names if k in meta}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("mu") is None:
            raise KeyError("mu")
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> DeformationSetup:
        """A copy with the overrides that are not None."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


class PriCheXyNet(nn.Module):
    """Generator G plus the PriCheXy-Net deformation (Packhäuser et al., MICCAI 2023).

    Args:
        generator: a flow-field generator; a new :class:`FlowFieldGenerator` when None.
        mu: deformation strength (0.001, 0.005 or 0.01 in the paper).
        smoothing: ``"grid"`` (paper), ``"displacement"`` or ``"none"``.
        working_size: size the generator sees (int or (H, W)); None = the input's size.
        init_features: base features of the new generator when ``generator`` is None.
        budget_px: bound on the length of every displacement vector ``mu * G(x)`` in pixels at
            256 x 256 (beyond the paper; None = no bound). With ``smoothing="displacement"`` the
            deformation never moves a pixel further than that.
    """

    def __init__(
        self,
        generator: nn.Module | None = None,
        mu: float = 0.01,
        smoothing: str = "grid",
        working_size: int | Sequence[int] | None = 256,
        init_features: int = 32,
        budget_px: float | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= float(mu) <= 1:
            raise ValueError(f"mu must be in [0, 1], got {mu}")
        self.generator = generator if generator is not None else FlowFieldGenerator(init_features=init_features)
        # buffers, so that the set-up the generator was trained for travels with its weights
        # (a plain ``load_state_dict``, as MONAI's ckpt_export does, restores them too)
        self.register_buffer("mu_value", torch.tensor(float(mu), dtype=torch.float64))
        self.register_buffer("smoothing_index", torch.tensor(SMOOTHING_MODES.index(_check_mode(smoothing))))
        self.register_buffer("working_size_value", torch.zeros(2, dtype=torch.int64))
        self.register_buffer("budget_px_value", torch.tensor(0.0, dtype=torch.float64))
        self.working_size = working_size
        self.budget_px = budget_px

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: D401 - torch hook
        # files written before the budget existed have no ``budget_px_value``: they had no budget
        state_dict.setdefault(prefix + "budget_px_value", torch.tensor(0.0, dtype=torch.float64))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @classmethod
    def from_setup(cls, generator: nn.Module, setup: DeformationSetup) -> PriCheXyNet:
        """A PriCheXy-Net of ``generator`` with a validated :class:`DeformationSetup`."""
        return cls(generator, mu=setup.mu, smoothing=setup.smoothing, working_size=setup.working_size,
                   budget_px=setup.budget_px)

    @property
    def setup(self) -> DeformationSetup:
        """The deformation's set-up (mu, smoothing, working size, budget) as one validated object."""
        return DeformationSetup(self.mu, self.smoothing, self.working_size, self.budget_px)

    @setup.setter
    def setup(self, value: DeformationSetup) -> None:
        self.mu, self.smoothing, self.working_size, self.budget_px = (value.mu, value.smoothing, value.working_size,
                                                                      value.budget_px)

    @property
    def budget_px(self) -> float | None:
        """Displacement budget in pixels at 256 x 256, or None (stored as ``budget_px_value``)."""
        value = float(self.budget_px_value)
        return None if value <= 0 else value

    @budget_px.setter
    def budget_px(self, value: float | None) -> None:
        if value is not None and not float(value) > 0:
            raise ValueError(f"budget_px must be > 0 or None, got {value}")
        self.budget_px_value.fill_(0.0 if value is None else float(value))

    @property
    def mu(self) -> float:
        """Deformation strength (stored in the state dict as ``mu_value``)."""
        return float(self.mu_value)

    @mu.setter
    def mu(self, value: float) -> None:
        if not 0 <= float(value) <= 1:
            raise ValueError(f"mu must be in [0, 1], got {value}")
        self.mu_value.fill_(float(value))

    @property
    def smoothing(self) -> str:
        """``"grid"`` (paper), ``"displacement"`` or ``"none"`` (stored as ``smoothing_index``)."""
        return SMOOTHING_MODES[int(self.smoothing_index)]

    @smoothing.setter
    def smoothing(self, value: str) -> None:
        self.smoothing_index.fill_(SMOOTHING_MODES.index(_check_mode(value)))

    @property
    def working_size(self) -> tuple[int, int] | None:
        """(H, W) the generator sees, or None for the input's size (stored as ``working_size_value``)."""
        height, width = (int(v) for v in self.working_size_value)
        return None if height == 0 else (height, width)

    @working_size.setter
    def working_size(self, value: int | Sequence[int] | None) -> None:
        size = _parse_size(value)
        self.working_size_value.copy_(torch.tensor(size or (0, 0), dtype=torch.int64))

    def flow(self, view: torch.Tensor, autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
        """The generator's flow field at the working size for a (B, 1, H, W) view in [0, 1].

        ``autocast_dtype`` (e.g. ``torch.bfloat16``): the U-Net's body runs under autocast in
        channels-last layout, its 1 x 1 head and tanh in float32 on the float32 features: rounding
        the flow itself to bfloat16 (8 bits of mantissa) was most of the error (about 15x less
        with the head in float32; ``scripts/bench_speed.py transform``). The flow is float32.
        """
        if self.working_size is not None and tuple(view.shape[-2:]) != self.working_size:
            view = F.interpolate(view, size=self.working_size, mode="bilinear", align_corners=False, antialias=True)
        if autocast_dtype is None:
            return self.generator(view)
        generator = self.generator
        with torch.autocast(view.device.type, dtype=autocast_dtype):
            view = view.contiguous(memory_format=torch.channels_last)
            if not hasattr(generator, "features"):  # another generator: all of it under autocast
                return generator(view).float()
            features = generator.features(view)
        return generator.activation(generator.head(features.float()))

    def grid_from_flow(self, flow: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
        """The sampling grid of a flow field with this network's mu, smoothing and displacement budget."""
        return sampling_grid(flow, self.mu, self.smoothing, size=size, budget_px=self.budget_px)

    def sampling_grid(self, view: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
        """The sampling grid for an image of ``size`` (default: the view's size)."""
        return self.grid_from_flow(self.flow(view), tuple(view.shape[-2:]) if size is None else size)

    def displacement(self, view: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
        """The deformation's ``(B, 2, H, W)`` displacement (sampling grid minus identity), normalised units."""
        grid = self.sampling_grid(view, size)
        return grid - identity_grid(grid.shape[-2], grid.shape[-1], device=grid.device, dtype=grid.dtype)

    def frame_px(self, image_size: int) -> float:
        """Width of the border frame the paper's smoothing distorts, in pixels of an image of side ``image_size``."""
        size = self.working_size
        return frame_width_px(self.smoothing, None if size is None else size[0], image_size)

    def folds(self, view: torch.Tensor) -> torch.Tensor:
        """Share of pixels per image where the deformation folds (Jacobian determinant <= 0), ``(B,)``."""
        return (jacobian_determinant(self.sampling_grid(view)) <= 0).flatten(1).float().mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():
            return self._traceable_forward(x)
        return warp(x, self.sampling_grid(x))

    def _traceable_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` with no size frozen into a trace: every resize always runs, the output grid is built from ``x``."""
        if self.working_size is None:
            raise RuntimeError(
                "PriCheXyNet with working_size=None cannot be traced: the generator's grid would freeze the "
                "trace input's size; set a working size or run the network eagerly"
            )
        view = F.interpolate(x, size=self.working_size, mode="bilinear", align_corners=False, antialias=True)
        flow = self.generator(view)
        grid = sampling_grid(flow, self.mu, self.smoothing, budget_px=self.budget_px)
        work = identity_grid(grid.shape[-2], grid.shape[-1], device=grid.device, dtype=grid.dtype)
        displacement = F.interpolate(grid - work, size=x.shape[-2:], mode="bilinear", align_corners=True)
        theta = torch.eye(2, 3, device=x.device, dtype=x.dtype).unsqueeze(0).expand(x.shape[0], 2, 3)
        identity = F.affine_grid(theta, [x.shape[0], 1, x.shape[-2], x.shape[-1]], align_corners=True)
        return warp(x, identity.permute(0, 3, 1, 2) + displacement)
