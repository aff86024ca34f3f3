"""Array transforms: the PriCheXy-Net anonymizer and the DP-Pix baseline (MONAI style)."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import RandomizableTransform, Transform
from monai.utils import TransformBackends
from torch import nn

from ..networks import DeformationSetup, FlowFieldGenerator, PriCheXyNet, warp
from ..networks.deformation import SMOOTHING_MODES
from ..weights import MissingSetupError, load_prichexynet
from .meta import strip_phi_meta
from .view import minmax_view, network_view, stored_values, view_lut_of, working_dtype

__all__ = ["DeformAnonymize", "DPPix", "check_radiograph_array"]


def check_radiograph_array(img: NdarrayOrTensor, name: str = "image") -> None:
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


def _as_tensor(img: NdarrayOrTensor) -> torch.Tensor:
    """A plain tensor view of a numpy array, tensor or MetaTensor (no metadata)."""
    if isinstance(img, MetaTensor):
        return img.as_tensor()
    return torch.as_tensor(img)


def _output_like(out: torch.Tensor, img: NdarrayOrTensor, strip_meta: bool, name_key: bytes | str | None, bounds=None):
    """Cast ``out`` back to ``img``'s type and dtype (clamped to ``bounds``, exact in that dtype);
    never record the deformation."""
    dtype = img.dtype if isinstance(img, torch.Tensor) else torch.from_numpy(np.zeros(0, dtype=img.dtype)).dtype
    out = out.detach()
    if not dtype.is_floating_point:
        info = torch.iinfo(dtype)
        out = out.round().clamp(info.min, info.max)
    out = out.to(dtype)
    if bounds is not None:
        out = out.clamp(*(b.to(out.device) for b in bounds))
    if isinstance(img, MetaTensor):
        meta = strip_phi_meta(img.meta, name_key) if strip_meta else dict(img.meta)
        ops = [] if strip_meta else list(img.applied_operations)
        return MetaTensor(out.to(img.device), meta=meta, applied_operations=ops)
    if isinstance(img, torch.Tensor):
        return out.to(img.device)
    return out.cpu().numpy()


class DeformAnonymize(Transform):
    """Anonymize a radiograph with PriCheXy-Net's learned deformation (Packhäuser et al., MICCAI 2023).

    The generator sees the image's network view (:class:`~monai_prichexy.transforms.NetworkView`:
    min-max scaled to [0, 1], or for DICOM read by :class:`~monai_prichexy.data.RadiographReader`
    its Modality/VOI LUT view) resized to ``working_size``; its
    flow field's displacement is resampled to the input's size and applied to the input's own
    values, so the output has the input's shape, type, dtype and intensity range. The result is
    deterministic, not invertible, and neither the flow field nor its parameters are recorded
    in ``applied_operations`` or the meta dict; with ``strip_meta`` (default) the meta dict keeps
    only geometry and a pseudonymized file name, and earlier ``applied_operations`` are dropped.

    Args:
        generator: a :class:`PriCheXyNet`, a :class:`FlowFieldGenerator`, or the path of a
            generator checkpoint (``models/model.pt`` of the bundle or a training checkpoint).
        mu: deformation strength; None takes it from the checkpoint or PriCheXyNet.
        smoothing: ``"grid"`` (paper), ``"displacement"`` or ``"none"``; None = checkpoint's or "grid".
        working_size: resolution the generator sees; None = the checkpoint's or PriCheXyNet's,
            else 256 (the paper's). The displacement budget (``budget_px``) always comes with
            the checkpoint (or the PriCheXyNet): weights are measured with their bound.
        device: torch device for the network (default: CPU).
        expected_sha256: checked before a checkpoint file is loaded.
        strip_meta: drop PHI-carrying meta keys and earlier operations from MetaTensors.
        name_key: key for the file-name pseudonym (random per process when None).
        precision: ``"fp32"`` (default: exact, the reference) or ``"bf16"``: the generator runs
            under bfloat16 autocast in channels-last layout (several times faster where the
            processor has bf16 units, e.g. AMX; the flow is slightly perturbed -- ``scripts/bench_speed.py
            transform`` measures the largest difference in grey levels); the warp stays fp32.
    """

    PRECISIONS = ("fp32", "bf16")

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        generator: nn.Module | str | os.PathLike,
        mu: float | None = None,
        smoothing: str | None = None,
        working_size: int | Sequence[int] | None = None,
        device: str | torch.device | None = None,
        expected_sha256: str | None = None,
        strip_meta: bool = True,
        name_key: bytes | str | None = None,
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
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)
        self.strip_meta = strip_meta
        self.name_key = name_key
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
        values after the LUTs, MONOCHROME1 inverted); None = ``values`` min-max scaled. Only
        the generator call is serialised, so threads can share one transform.
        """
        image = values.to(self.device, working_dtype(values.dtype))[None, None]
        low, high = image.min(), image.max()
        if view is None:
            view = minmax_view(image)
        else:
            if tuple(view.shape) != tuple(values.shape):
                raise ValueError(f"view {tuple(view.shape)} and values {tuple(values.shape)} differ in shape")
            view = view.to(self.device, torch.float32)[None, None]
        with self._lock:
            if self.precision == "bf16":
                with torch.autocast(self.device.type, dtype=torch.bfloat16):
                    flow = self.network.flow(view.contiguous(memory_format=torch.channels_last)).float()
            else:
                flow = self.network.flow(view)
        grid = self.network.grid_from_flow(flow, size=image.shape[-2:])  # mu, smoothing and the budget of the weights
        return warp(image, grid.to(image.dtype))[0, 0].clamp_(low, high)  # no rounding drift out of range

    @torch.no_grad()
    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        check_radiograph_array(img)
        values = _as_tensor(img)
        lut = view_lut_of(img)  # DICOM read by RadiographReader: its LUT view, as the CLI's
        out = self.deform_values(stored_values(img, values)[0], view=None if lut is None else network_view(values[0], lut))
        # int64 beyond 2**53 is not exact in float64: clamp again in the integer domain
        bounds = (values.min(), values.max()) if values.dtype == torch.int64 else None
        return _output_like(out[None], img, self.strip_meta, self.name_key, bounds=bounds)


class DPPix(RandomizableTransform):
    """DP-Pix baseline (Fan, 2018): pixelize in b x b cells, add Laplace noise, clip.

    Each cell is replaced by its mean plus Laplace noise of scale ``range * m / (b**2 * eps)``
    where ``range = intensity_range[1] - intensity_range[0]`` (``m / (b**2 * eps)`` on [0, 1]
    images). The paper's comparison uses eps = 0.1, m = 1, b in {1, 2, 4, 8}.

    Args:
        b: cell size in pixels; must divide the image's height and width.
        m: number of pixels in which neighbouring images may differ (sensitivity).
        eps: privacy budget epsilon.
        intensity_range: (low, high) of the input values; output is clipped to it.
        prob: probability of applying the transform.
        strip_meta: drop PHI-carrying meta keys and earlier operations from MetaTensors.
        name_key: key for the file-name pseudonym (random per process when None).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        b: int = 1,
        m: float = 1.0,
        eps: float = 0.1,
        intensity_range: Sequence[float] = (0.0, 1.0),
        prob: float = 1.0,
        strip_meta: bool = True,
        name_key: bytes | str | None = None,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        if int(b) != b or b < 1:
            raise ValueError(f"b must be a positive integer, got {b}")
        if m <= 0 or eps <= 0:
            raise ValueError(f"m and eps must be > 0, got m={m}, eps={eps}")
        if len(intensity_range) != 2 or intensity_range[1] <= intensity_range[0]:
            raise ValueError(f"intensity_range must be (low, high) with low < high, got {intensity_range}")
        self.b, self.m, self.eps = int(b), float(m), float(eps)
        self.intensity_range = (float(intensity_range[0]), float(intensity_range[1]))
        self.noise: np.ndarray | None = None
        self.strip_meta = strip_meta
        self.name_key = name_key

    @property
    def scale(self) -> float:
        """Scale of the Laplace noise."""
        return (self.intensity_range[1] - self.intensity_range[0]) * self.m / (self.b**2 * self.eps)

    def randomize(self, cells_shape: Sequence[int]) -> None:
        super().randomize(None)
        self.noise = self.R.laplace(0.0, self.scale, size=tuple(cells_shape)).astype(np.float32) if self._do_transform else None

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if img.ndim != 3:
            raise ValueError(f"expected a channel-first array (C, H, W), got shape {tuple(img.shape)}")
        channels, height, width = (int(s) for s in img.shape)
        if height % self.b or width % self.b:
            raise ValueError(f"DP-Pix cell size b={self.b} does not divide the image size {height}x{width}")
        cells = (channels, height // self.b, width // self.b)
        if randomize:
            self.randomize(cells)
        if not self._do_transform:
            return img
        if self.noise is None or self.noise.shape != cells:
            raise RuntimeError("DPPix: call with randomize=True first, or on an image of the same size")
        values = _as_tensor(img).float().cpu()
        means = values.reshape(channels, cells[1], self.b, cells[2], self.b).mean(dim=(2, 4))
        noisy = (means + torch.from_numpy(self.noise)).clamp(*self.intensity_range)
        out = noisy.repeat_interleave(self.b, dim=1).repeat_interleave(self.b, dim=2)
        return _output_like(out, img, self.strip_meta, self.name_key)
