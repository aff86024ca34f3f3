"""The MONAI-free core of the transforms: the network view and PriCheXy-Net's deformation.

:class:`~monai_prichexy.transforms.DeformAnonymize` and :class:`~monai_prichexy.transforms.NetworkView`
are MONAI transforms around these; the CLI's batch (:class:`~monai_prichexy.pipeline.Deformer`)
uses them directly, so that anonymizing an archive does not import MONAI (seconds of start-up
per run; issue 12) and still runs the very same code, hence gives the same pixels.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..lut import apply_view_lut
from ..networks.anonymizer import DeformationSetup, PriCheXyNet
from ..networks.deformation import SMOOTHING_MODES, warp
from ..networks.generator import FlowFieldGenerator
from ..weights import MissingSetupError, load_prichexynet

__all__ = [
    "BF16_MAX_GRID_CHANGE_PX",
    "PriCheXyDeformation",
    "bf16_grid_change",
    "check_radiograph_array",
    "minmax_view",
    "network_view",
    "working_dtype",
]


def check_radiograph_array(img: np.ndarray | torch.Tensor, name: str = "image") -> None:
    """Raise a clear ValueError unless ``img`` is a finite, real, channel-first (1, H, W) array."""
    shape = tuple(img.shape)
    if len(shape) != 3 or shape[0] != 1:
        raise ValueError(f"{name}: expected a channel-first grayscale array of shape (1, H, W), got {shape}")
    if shape[1] < 2 or shape[2] < 2:
        raise ValueError(f"{name}: image of {shape[1]}x{shape[2]} pixels is too small to deform")
    dtype = img.dtype
    if dtype in (torch.bool, np.bool_) or str(dtype) == "bool":
        raise ValueError(f"{name}: boolean images are not radiographs")
    if (isinstance(img, torch.Tensor) and img.is_complex()) or (isinstance(img, np.ndarray) and np.iscomplexobj(img)):
        raise ValueError(f"{name}: complex images are not supported")
    values = torch.as_tensor(img)
    if values.is_floating_point() and not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name}: image contains NaN or infinite values")


def working_dtype(dtype) -> torch.dtype:
    """float64 for values float32 cannot hold (64/32-bit integers, float64), else float32."""
    wide = dtype in (torch.float64, torch.int64, torch.int32) or str(dtype) in ("torch.uint32", "torch.uint64")
    return torch.float64 if wide else torch.float32


def minmax_view(image: torch.Tensor) -> torch.Tensor:
    """float32 min-max scaling of a float tensor to [0, 1] (zeros for a constant image)."""
    low, high = image.min(), image.max()
    return ((image - low) / (high - low)).float() if high > low else torch.zeros_like(image, dtype=torch.float32)


def network_view(values, lut: np.ndarray | None = None) -> torch.Tensor:
    """The float32 view in [0, 1] of ``values`` (any shape; a MetaTensor's meta dict is not carried
    over): through ``lut`` when given (values between its entries are interpolated, outside
    clamped), else min-max scaled."""
    values = torch.as_tensor(values.as_tensor() if hasattr(values, "as_tensor") else values)  # MONAI's MetaTensor
    if lut is None:
        return minmax_view(values.to(working_dtype(values.dtype)))  # as DeformAnonymize.deform_values
    mapped = apply_view_lut(values.detach().cpu().numpy(), lut)
    return torch.from_numpy(np.ascontiguousarray(mapped)).to(values.device)


#: ``precision="bf16"`` is refused for weights whose sampling grid it moves by more than this many
#: pixels (at 256 x 256) on a synthetic radiograph. Measured (scripts/bench_speed.py transform): the
#: paper-size generator (bf16 body, fp32 head) moves it by 7.6e-5 px, and the output of a native
#: 2,000 x 2,500 12-bit image by up to 0.29 grey levels -- so this bound is about half a grey level
#: there; the shipped 64-px generator moves it by 4.9e-3 px (its 8-feature U-Net saturates tanh:
#: up to 20 levels at native size) and is refused.
BF16_MAX_GRID_CHANGE_PX = 1e-4


def bf16_grid_change(network: PriCheXyNet) -> float:
    """The largest change (pixels at 256 x 256) that bf16 makes to ``network``'s sampling grid on a
    synthetic radiograph at its working size (256 when it has none)."""
    from ..demo import synthetic_radiograph  # numpy only

    height, width = network.working_size or (256, 256)
    image = torch.from_numpy(synthetic_radiograph(height, width, bits=12, seed=0).astype(np.float32))
    view = minmax_view(image)[None, None].to(next(network.parameters()).device)
    with torch.no_grad():
        exact = network.grid_from_flow(network.flow(view))
        fast = network.grid_from_flow(network.flow(view, autocast_dtype=torch.bfloat16))
    return float((exact - fast).abs().max()) * 127.5  # normalised [-1, 1] -> pixels at 256 x 256


class PriCheXyDeformation:
    """PriCheXy-Net's deformation of pixel values (Packhäuser et al., MICCAI 2023), without MONAI.

    The base of :class:`~monai_prichexy.transforms.DeformAnonymize` (see there for the arguments
    ``generator``, ``mu``, ``smoothing``, ``working_size``, ``device``, ``expected_sha256`` and
    ``precision``): it holds the generator on its device and deforms one ``(H, W)`` array at a
    time with :meth:`deform_values`; threads share it (on the CPU they run the generator at the
    same time: an eval-mode forward without gradients changes no state; on a GPU the generator
    calls are serialised, so that several images' activations are not held at once).
    """

    PRECISIONS = ("fp32", "bf16")

    def __init__(
        self,
        generator: nn.Module | str | os.PathLike,
        mu: float | None = None,
        smoothing: str | None = None,
        working_size: int | Sequence[int] | None = None,
        device: str | torch.device | None = None,
        expected_sha256: str | None = None,
        precision: str = "fp32",
    ) -> None:
        if precision not in self.PRECISIONS:
            raise ValueError(f"precision must be one of {self.PRECISIONS}, got {precision!r}")
        self.network = self._parse_generator(generator, mu, smoothing, working_size, expected_sha256)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.precision = precision
        self.network.to(self.device).eval()
        if precision == "bf16":  # the layout oneDNN's bf16 convolutions want
            self.network.generator.to(memory_format=torch.channels_last)
            change = bf16_grid_change(self.network)
            if change > BF16_MAX_GRID_CHANGE_PX:
                raise ValueError(
                    f"precision bf16 moves these weights' sampling grid by up to {change:.4f} px (at 256 x 256, on a "
                    f"synthetic radiograph), more than {BF16_MAX_GRID_CHANGE_PX} px (about half a grey level of a "
                    "12-bit image at native size): use precision fp32 for them")
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)
        self._lock = threading.Lock()
        self._warn_if_risky(self.network.mu)

    def __getstate__(self) -> dict:  # locks do not pickle (DataLoader workers, deepcopy)
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @staticmethod
    def _parse_generator(generator, mu, smoothing, working_size, expected_sha256) -> PriCheXyNet:
        if smoothing is not None and smoothing not in SMOOTHING_MODES:
            raise ValueError(f"smoothing must be one of {SMOOTHING_MODES}, got {smoothing!r}")
        if isinstance(generator, PriCheXyNet):
            if mu is not None:
                generator.mu = float(mu)
            if smoothing is not None:
                generator.smoothing = smoothing
            if working_size is not None:
                generator.working_size = working_size
            return generator
        if isinstance(generator, (str, os.PathLike)):
            return load_prichexynet(generator, expected_sha256, mu=mu, smoothing=smoothing, working_size=working_size)
        if not isinstance(generator, nn.Module):
            raise TypeError(f"generator must be a PriCheXyNet, a FlowFieldGenerator or a path, got {type(generator).__name__}")
        if mu is None:
            raise MissingSetupError("mu is required: the generator does not say which deformation strength it was trained for")
        if not isinstance(generator, FlowFieldGenerator):
            warnings.warn(f"generator is a {type(generator).__name__}, not a FlowFieldGenerator", stacklevel=3)
        setup = DeformationSetup(mu, smoothing or "grid", 256 if working_size is None else working_size)
        return PriCheXyNet.from_setup(generator, setup)

    @staticmethod
    def _warn_if_risky(mu: float) -> None:
        if mu == 0:
            warnings.warn("mu = 0: DeformAnonymize will not change the pixels", stacklevel=3)
        elif mu < 5e-4:
            warnings.warn(f"mu = {mu} moves pixels by at most {mu * 127.5:.3f} px at 256 px: too small to hide identity", stacklevel=3)
        elif mu > 0.05:
            warnings.warn(f"mu = {mu} moves pixels by up to {mu * 127.5:.1f} px at 256 px: expect a large utility cost", stacklevel=3)

    @torch.no_grad()
    def deform_values(self, values: torch.Tensor, view: torch.Tensor | None = None) -> torch.Tensor:
        """Deform a (H, W) tensor of pixel values; returns float32 (H, W) -- float64 for 64-bit and
        32-bit integer values, which float32 cannot hold -- within the values' own [min, max].

        ``view`` is what the generator sees, in [0, 1] and of the same shape (for DICOM: the
        values after the LUTs, MONOCHROME1 inverted); None = ``values`` min-max scaled. Threads
        can share one instance (see the class docstring).
        """
        image = values.to(self.device, working_dtype(values.dtype))[None, None]
        low, high = (float(v) for v in torch.aminmax(image))  # Python floats: exact, and a scalar clamp is faster
        if view is None:
            view = minmax_view(image)
        else:
            if tuple(view.shape) != tuple(values.shape):
                raise ValueError(f"view {tuple(view.shape)} and values {tuple(values.shape)} differ in shape")
            view = view.to(self.device, torch.float32)[None, None]
        autocast_dtype = torch.bfloat16 if self.precision == "bf16" else None
        if self.device.type == "cpu":  # concurrent forwards: each worker thread's own core
            flow = self.network.flow(view, autocast_dtype=autocast_dtype)
        else:
            with self._lock:
                flow = self.network.flow(view, autocast_dtype=autocast_dtype)
        grid = self.network.grid_from_flow(flow, size=image.shape[-2:])  # mu, smoothing and the budget of the weights
        return warp(image, grid.to(image.dtype))[0, 0].clamp_(low, high)  # no rounding drift out of range
