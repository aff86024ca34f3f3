"""Anonymizers as batch modules for the attack and the benchmark.

Each maps a ``(B, 1, H, W)`` batch in ``[0, 1]`` to an anonymized batch of the same shape:

- ``"none"``: :class:`IdentityAnonymizer` (the real-image baseline);
- ``"prichexy"``: a trained :class:`~monai_prichexy.networks.PriCheXyNet` (generator checkpoint + mu);
- ``"privacy_net"``: a trained :class:`~monai_prichexy.networks.PrivacyNetEncoder`;
- ``"dppix"``: :class:`DPPixAnonymizer` (the ``DPPix`` transform applied image by image);
- ``"random_deformation"``: :class:`RandomDeformation`, the control of data README caveat 6: a
  random smooth field through the same operator, scaled to the learned field's mean
  displacement and bounded by the same budget;
- ``"blur"``: :class:`GaussianBlur`, a non-learned baseline.

Deformation anonymizers (:class:`~monai_prichexy.networks.PriCheXyNet` and
:class:`RandomDeformation`) also give their displacement field (``displacement(x)``), from
which :mod:`monai_prichexy.metrics.displacement` reports how far they move the anatomy.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.keys import BatchKeys
from ..networks import PriCheXyNet, PrivacyNetEncoder
from ..networks.deformation import (
    SMOOTHING_MODES,
    frame_width_px,
    gaussian_kernel_1d,
    identity_grid,
    sampling_grid,
    warp,
)
from ..transforms import DPPix
from ..weights import load_network, load_prichexynet
from .utils import plain, unwrap

__all__ = [
    "ANONYMIZER_KINDS",
    "IdentityAnonymizer",
    "RandomDeformation",
    "GaussianBlur",
    "DPPixAnonymizer",
    "build_anonymizer",
    "mean_displacement",
]

ANONYMIZER_KINDS = ("none", "prichexy", "privacy_net", "dppix", "random_deformation", "blur")


class IdentityAnonymizer(nn.Module):
    """Returns its input (the real-image baseline)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class RandomDeformation(nn.Module):
    """A random smooth deformation of a given size through the PriCheXy-Net operator (the control).

    Data README caveat 6: a learned deformation only earns its place if it hides identity better
    than a random one of the same size. A field of Gaussian noise ``(B, 2, h, w)`` at the working
    size is smoothed (Gaussian, ``field_sigma`` pixels, reflect padding), bounded with ``tanh``,
    and goes through exactly the operator of the learned ``mu * G(x)``:
    ``sampling_grid(flow, 1, smoothing, size, budget_px)`` and the bilinear, border-padded
    ``grid_sample``. Its scale is set per image so that the mean length of the final
    displacement vectors outside the border frame equals ``mean_displacement`` (normalised
    units; x ``(S - 1) / 2`` = pixels at side S), which :class:`~monai_prichexy.metrics.DisplacementAccumulator`
    measures on the learned field: both then have the same mean displacement, and the same
    budget bounds both.

    Args:
        mean_displacement: target mean length of the displacement vectors, normalised units.
        field_sigma: smoothness of the noise, in pixels of the working size.
        smoothing: the operator's smoothing mode (``"grid"`` as the paper, default).
        working_size: side of the field before it is resampled to the image; None = the image's.
        budget_px: bound on the vector length in pixels at 256 x 256 (as the learned field's); None = none.
        seed: seed of the noise (each call draws a new field from the seeded stream).
    """

    def __init__(
        self,
        mean_displacement: float,
        field_sigma: float = 4.0,
        smoothing: str = "grid",
        seed: int | None = 0,
        working_size: int | None = None,
        budget_px: float | None = None,
    ) -> None:
        super().__init__()
        if mean_displacement < 0:
            raise ValueError(f"mean_displacement must be >= 0, got {mean_displacement}")
        if field_sigma <= 0:
            raise ValueError(f"field_sigma must be > 0, got {field_sigma}")
        if smoothing not in SMOOTHING_MODES:
            raise ValueError(f"smoothing must be one of {SMOOTHING_MODES}, got {smoothing!r}")
        if budget_px is not None and not budget_px > 0:
            raise ValueError(f"budget_px must be > 0 or None, got {budget_px}")
        self.mean_displacement = float(mean_displacement)
        self.field_sigma = float(field_sigma)
        self.smoothing = smoothing
        self.working_size = None if working_size is None else int(working_size)
        self.budget_px = None if budget_px is None else float(budget_px)
        self.seed = seed
        self._generator = torch.Generator()
        if seed is not None:
            self._generator.manual_seed(int(seed))

    def noise(self, shape: tuple[int, int, int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """A random smooth ``(B, 2, h, w)`` field in [-1, 1] (standardised per image, then tanh)."""
        b, h, w = shape
        noise = torch.randn((b, 2, h, w), generator=self._generator).to(device, dtype)
        radius = max(1, int(math.ceil(3 * self.field_sigma)))
        k = gaussian_kernel_1d(2 * radius + 1, self.field_sigma, device=device, dtype=dtype)
        r = k.numel() // 2
        x = F.pad(noise, (r, r, 0, 0), mode="reflect" if w > r else "replicate")
        x = F.conv2d(x, k.view(1, 1, 1, -1).expand(2, 1, 1, -1), groups=2)
        x = F.pad(x, (0, 0, r, r), mode="reflect" if h > r else "replicate")
        x = F.conv2d(x, k.view(1, 1, -1, 1).expand(2, 1, -1, 1), groups=2)
        x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        return torch.tanh(x)

    def _work_shape(self, height: int, width: int) -> tuple[int, int]:
        return (height, width) if self.working_size is None else (self.working_size, self.working_size)

    def _interior_mean(self, grid: torch.Tensor, base: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        length = torch.sqrt(((grid - base) ** 2).sum(dim=1))
        return length[:, ~frame].mean(dim=1).view(-1, 1, 1, 1)

    def sampling_grid(self, x: torch.Tensor) -> torch.Tensor:
        """A random sampling grid for the batch ``x`` (draws new noise)."""
        from ..metrics.displacement import frame_mask

        b, height, width = x.shape[0], x.shape[-2], x.shape[-1]
        h, w = self._work_shape(height, width)
        noise = self.noise((b, h, w), x.device, x.dtype)
        size = (height, width)
        # the operator's own geometry with no displacement (the paper's frame included)
        base = sampling_grid(torch.zeros_like(noise[:1]), 0.0, self.smoothing, size=size)
        frame = frame_mask(height, width, frame_width_px(self.smoothing, self.working_size, max(height, width))).to(x.device)
        if self.mean_displacement == 0:
            return base.expand(b, -1, -1, -1)
        scale = torch.full((b, 1, 1, 1), self.mean_displacement, device=x.device, dtype=x.dtype)
        for _ in range(8):  # the budget's clamp makes the mean sub-linear in the scale: rescale a few times
            grid = sampling_grid(noise * scale, 1.0, self.smoothing, size=size, budget_px=self.budget_px)
            measured = self._interior_mean(grid, base, frame).clamp_min(1e-12)
            if torch.allclose(measured, torch.full_like(measured, self.mean_displacement), rtol=1e-3):
                break
            scale = scale * (self.mean_displacement / measured)
        # a mean close to the budget may be out of reach of a smooth field: the achieved one is
        # what the displacement statistics of the row report
        return grid

    def displacement(self, x: torch.Tensor) -> torch.Tensor:
        """A random ``(B, 2, H, W)`` displacement (sampling grid minus identity), normalised units."""
        grid = self.sampling_grid(x)
        return grid - identity_grid(grid.shape[-2], grid.shape[-1], device=grid.device, dtype=grid.dtype)

    def frame_px(self, image_size: int) -> float:
        """Width of the distorted border frame in pixels of an image of side ``image_size``."""
        return frame_width_px(self.smoothing, self.working_size, image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return warp(x, self.sampling_grid(x))


class GaussianBlur(nn.Module):
    """Gaussian blur of ``sigma`` pixels of the image (MONAI's ``GaussianFilter``): a non-learned baseline.

    DESIGN, section 8: blurring with sigma 2 at 64 px hides identity no better than a learned
    field; it is a row of every table.
    """

    def __init__(self, sigma: float = 1.0) -> None:
        super().__init__()
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        from monai.networks.layers import GaussianFilter

        self.sigma = float(sigma)
        self.filter = GaussianFilter(spatial_dims=2, sigma=self.sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # replicate the border instead of GaussianFilter's zero padding, which would darken the edges
        r = int(math.ceil(4 * self.sigma))
        padded = F.pad(x, (r, r, r, r), mode="replicate")
        return self.filter(padded)[..., r:-r, r:-r]


class DPPixAnonymizer(nn.Module):
    """DP-Pix (Fan, 2018) on a batch: the :class:`~monai_prichexy.transforms.DPPix` transform per image.

    Args:
        b: cell size; m: sensitivity; eps: privacy budget (paper: eps 0.1, m 1, b in {1, 2, 4, 8}).
        seed: seed of the Laplace noise stream.
    """

    def __init__(self, b: int = 1, m: float = 1.0, eps: float = 0.1, seed: int | None = 0) -> None:
        super().__init__()
        self.transform = DPPix(b=b, m=m, eps=eps, intensity_range=(0.0, 1.0), strip_meta=False)
        self.transform.set_random_state(seed=seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = [torch.as_tensor(plain(self.transform(img.detach().cpu()))) for img in x]
        return torch.stack(out).to(x.device, x.dtype)


def build_anonymizer(
    kind: str = "none",
    checkpoint: str | os.PathLike | None = None,
    mu: float | None = None,
    smoothing: str | None = None,
    working_size: int | None = None,
    b: int = 1,
    m: float = 1.0,
    eps: float = 0.1,
    mean_displacement: float | None = None,
    field_sigma: float = 4.0,
    seed: int | None = 0,
    device: str | torch.device = "cpu",
    budget_px: float | None = None,
    sigma: float = 1.0,
) -> nn.Module:
    """Build one of :data:`ANONYMIZER_KINDS` in eval mode with frozen parameters.

    Args:
        kind: one of :data:`ANONYMIZER_KINDS`.
        checkpoint: weights of ``"prichexy"`` (generator) or ``"privacy_net"``.
        mu, smoothing, budget_px: of ``"prichexy"`` (default: the checkpoint's) and of
            ``"random_deformation"``.
        working_size: the generator's working size (default: the checkpoint's, else the input
            size); the random field's size for ``"random_deformation"``.
        b, m, eps: DP-Pix settings.
        mean_displacement, field_sigma: of ``"random_deformation"``.
        sigma: of ``"blur"`` (pixels).
        seed: noise seed of the random kinds.
        device: where the network runs.
    """
    if kind not in ANONYMIZER_KINDS:
        raise ValueError(f"kind must be one of {ANONYMIZER_KINDS}, got {kind!r}")
    if kind == "none":
        net: nn.Module = IdentityAnonymizer()
    elif kind == "prichexy":
        if checkpoint is None:
            raise ValueError("kind='prichexy' needs a generator checkpoint")
        net = load_prichexynet(checkpoint, mu=mu, smoothing=smoothing, working_size=working_size, budget_px=budget_px,
                               default_working_size=None)
    elif kind == "privacy_net":
        if checkpoint is None:
            raise ValueError("kind='privacy_net' needs a checkpoint")
        net, _ = load_network(checkpoint, network="PrivacyNetEncoder")
        if not isinstance(net, PrivacyNetEncoder):
            raise ValueError(f"{checkpoint}: holds a {type(net).__name__}, not a PrivacyNetEncoder")
    elif kind == "dppix":
        net = DPPixAnonymizer(b=b, m=m, eps=eps, seed=seed)
    elif kind == "blur":
        net = GaussianBlur(sigma)
    else:
        if mean_displacement is None:
            raise ValueError("kind='random_deformation' needs mean_displacement")
        net = RandomDeformation(mean_displacement, field_sigma=field_sigma, smoothing=smoothing or "grid", seed=seed,
                                working_size=working_size, budget_px=budget_px)
    net = net.to(torch.device(device)).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@torch.no_grad()
def mean_displacement(
    network: nn.Module, loader: Iterable[Mapping[str, Any]], device: str | torch.device = "cpu", key: str = BatchKeys.IMAGE
) -> dict[str, float]:
    """Mean ``|mu * G(x)|`` (both channels, all pixels) of a PriCheXy-Net over a loader.

    Returns:
        ``{"mean_abs": normalised units, "mean_abs_px": pixels at the flow's resolution,
        "max_abs": largest value, "n_images": count}``.
    """
    net = unwrap(network)
    if not isinstance(net, PriCheXyNet):
        raise TypeError(f"mean_displacement needs a PriCheXyNet, got {type(net).__name__}")
    device = torch.device(device)
    was_training = net.training
    net.eval()
    total, count, peak, size = 0.0, 0, 0.0, None
    try:
        for batch in loader:
            x = plain(batch[key], device)
            disp = net.mu * net.flow(x)
            size = disp.shape[-1]
            total += float(disp.abs().mean(dim=(1, 2, 3)).sum())
            peak = max(peak, float(disp.abs().max()))
            count += x.shape[0]
    finally:
        net.train(was_training)
    if count == 0:
        raise ValueError("mean_displacement: the loader is empty")
    mean = total / count
    return {"mean_abs": mean, "mean_abs_px": mean * (size - 1) / 2, "max_abs": peak, "n_images": count}
