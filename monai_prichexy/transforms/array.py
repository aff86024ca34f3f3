"""Array transforms: the PriCheXy-Net anonymizer and the DP-Pix baseline (MONAI style)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import RandomizableTransform, Transform
from monai.utils import TransformBackends
from torch import nn

from .functional import PriCheXyDeformation, check_radiograph_array
from .meta import strip_phi_meta
from .view import network_view, stored_values, view_lut_of

__all__ = ["DeformAnonymize", "DPPix", "check_radiograph_array"]


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


class DeformAnonymize(PriCheXyDeformation, Transform):
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
        precision: ``"fp32"`` (default: exact, the reference) or ``"bf16"``: the generator's
            U-Net body runs under bfloat16 autocast in channels-last layout, its 1 x 1 head, tanh
            and the warp in fp32 (several times faster where the processor has bf16 units, e.g.
            AMX; the flow is slightly perturbed -- ``scripts/bench_speed.py transform`` measures
            the largest difference in grey levels).
    """

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
        super().__init__(generator, mu=mu, smoothing=smoothing, working_size=working_size, device=device,
                         expected_sha256=expected_sha256, precision=precision)
        self.strip_meta = strip_meta
        self.name_key = name_key

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
