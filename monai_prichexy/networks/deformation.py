"""The PriCheXy-Net deformation operator (Packhäuser et al., MICCAI 2023).

With ``I`` the identity sampling grid in normalised coordinates (x channel first, as
:func:`torch.nn.functional.grid_sample` expects) and ``G(x)`` the generator's flow field::

    grid = I - mu * G(x)
    grid = gaussian_9x9_sigma2(grid)     # depth-wise, zero padding 4, on the FULL grid
    x_anon = grid_sample(x, grid, bilinear, padding_mode="border", align_corners=True)

Smoothing the full grid with zero padding pulls the grid towards 0 within 4 px of the border
(the paper's behaviour, ``smoothing="grid"``, the default, needed to reproduce its numbers).
``smoothing="displacement"`` smooths only ``mu * G(x)`` (identity for a zero flow);
``smoothing="none"`` skips it. The grid is computed at the flow's resolution and, when the
image is larger, its displacement is resampled to the image size, so a native-resolution
image is deformed at native resolution. Everything is differentiable and traceable.

A displacement budget (``budget_px``, beyond the paper) bounds the length of every
displacement vector ``mu * G(x)`` in pixels of a 256 x 256 image (one normalised unit is
127.5 px there; the paper's largest per-axis shift at mu = 0.01 is 1.28 px): vectors longer
than the budget are scaled back onto it. With ``smoothing="displacement"`` or ``"none"`` the
final displacement then never exceeds the budget (a normalised Gaussian and the bilinear
resampling are averages); the paper's ``"grid"`` smoothing adds its border frame on top.
:func:`jacobian_determinant` checks that a sampling grid does not fold.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "SMOOTHING_MODES",
    "REFERENCE_SIZE",
    "px_to_normalised",
    "clamp_displacement",
    "frame_width_px",
    "jacobian_determinant",
    "identity_grid",
    "gaussian_kernel",
    "gaussian_kernel_1d",
    "smooth_field",
    "sampling_grid",
    "warp",
    "deform",
]

SMOOTHING_MODES = ("grid", "displacement", "none")

REFERENCE_SIZE = 256
"""Displacement budgets are stated in pixels of a 256 x 256 image (the paper's working size)."""


def px_to_normalised(px: float, size: int = REFERENCE_SIZE) -> float:
    """A length in pixels of a ``size``-px side (align_corners) in normalised grid units."""
    return float(px) / ((int(size) - 1) / 2.0)


def frame_width_px(smoothing: str, working_size: int | None, image_size: int, kernel_size: int = 9) -> float:
    """Width in image pixels of the border frame that the paper's ``"grid"`` smoothing distorts (0 otherwise).

    Zero padding of the 9 x 9 smoothing reaches ``kernel_size // 2`` pixels into the grid at the
    flow's (working) resolution; the frame scales with the image.
    """
    if smoothing != "grid":
        return 0.0
    work = image_size if working_size is None else int(working_size)
    return (kernel_size // 2) * (image_size - 1) / max(work - 1, 1)


def clamp_displacement(displacement: torch.Tensor, budget_px: float | None) -> torch.Tensor:
    """Scale every vector of a ``(B, 2, H, W)`` normalised displacement longer than the budget back onto it.

    Args:
        displacement: displacement in normalised units (x channel first).
        budget_px: the largest allowed length in pixels at 256 x 256; None = no bound.
    """
    if budget_px is None:
        return displacement
    limit = px_to_normalised(budget_px)
    length = torch.sqrt((displacement**2).sum(dim=1, keepdim=True) + 1e-12)
    return displacement * torch.clamp(limit / length, max=1.0)


def jacobian_determinant(grid: torch.Tensor) -> torch.Tensor:
    """Jacobian determinant of the map pixel -> sampling position of a ``(B, 2, H, W)`` grid.

    Positions are converted to pixels (align_corners) and differentiated by central differences
    (one-sided at the border), so the identity gives 1 everywhere. A value <= 0 means the
    deformation folds there (two places sample in reversed order). Returns ``(B, H, W)``.
    """
    if grid.ndim != 4 or grid.shape[1] != 2:
        raise ValueError(f"grid must have shape (B, 2, H, W), got {tuple(grid.shape)}")
    height, width = grid.shape[-2:]
    if height < 2 or width < 2:
        raise ValueError("the grid needs at least 2 x 2 points")
    gx = (grid[:, 0] + 1.0) * (width - 1) / 2.0
    gy = (grid[:, 1] + 1.0) * (height - 1) / 2.0
    dgx_dy, dgx_dx = torch.gradient(gx, dim=(1, 2))
    dgy_dy, dgy_dx = torch.gradient(gy, dim=(1, 2))
    return dgx_dx * dgy_dy - dgx_dy * dgy_dx


def identity_grid(
    height: int, width: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The identity sampling grid, shape (1, 2, H, W), channel 0 = x (columns), 1 = y (rows)."""
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y), dim=0).unsqueeze(0)


def gaussian_kernel_1d(
    size: int = 9, sigma: float = 2.0, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """A normalised 1D Gaussian kernel of ``size`` taps (odd), centred."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd integer, got {size}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def gaussian_kernel(
    size: int = 9, sigma: float = 2.0, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """A normalised 2D Gaussian kernel of shape (size, size): the outer product of :func:`gaussian_kernel_1d`."""
    g = gaussian_kernel_1d(size, sigma, device=device, dtype=dtype)
    return g[:, None] * g[None, :]


def smooth_field(field: torch.Tensor, kernel_size: int = 9, sigma: float = 2.0) -> torch.Tensor:
    """Depth-wise Gaussian smoothing of a (B, C, H, W) field with zero padding ``kernel_size // 2``."""
    channels = field.shape[1]
    kernel = gaussian_kernel(kernel_size, sigma, device=field.device, dtype=field.dtype)
    weight = kernel.expand(channels, 1, kernel_size, kernel_size)
    return F.conv2d(field, weight, padding=kernel_size // 2, groups=channels)


def _check_mode(smoothing: str) -> str:
    if smoothing not in SMOOTHING_MODES:
        raise ValueError(f"smoothing must be one of {SMOOTHING_MODES}, got {smoothing!r}")
    return smoothing


def sampling_grid(
    flow: torch.Tensor,
    mu: float,
    smoothing: str = "grid",
    size: Sequence[int] | None = None,
    kernel_size: int = 9,
    sigma: float = 2.0,
    budget_px: float | None = None,
) -> torch.Tensor:
    """The sampling grid ``smooth(I - mu * flow)``, shape (B, 2, H, W), x channel first.

    Args:
        flow: (B, 2, h, w) flow field (the generator's tanh output).
        mu: deformation strength; the largest shift is ``mu * (size - 1) / 2`` pixels.
        smoothing: ``"grid"`` (paper), ``"displacement"`` or ``"none"``.
        size: (H, W) of the image to deform; the displacement computed at (h, w) is
            bilinearly resampled to it. Defaults to (h, w).
        kernel_size: Gaussian kernel size (9 in the paper).
        sigma: Gaussian sigma (2 in the paper).
        budget_px: bound on the length of ``mu * flow`` in pixels at 256 x 256 (see
            :func:`clamp_displacement`); None = the paper's operator.
    """
    _check_mode(smoothing)
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must have shape (B, 2, H, W), got {tuple(flow.shape)}")
    height, width = int(flow.shape[-2]), int(flow.shape[-1])
    identity = identity_grid(height, width, device=flow.device, dtype=flow.dtype)
    displacement = clamp_displacement(mu * flow, budget_px)
    if smoothing == "grid":
        grid = smooth_field(identity - displacement, kernel_size, sigma)
    elif smoothing == "displacement":
        grid = identity - smooth_field(displacement, kernel_size, sigma)
    else:
        grid = identity - displacement
    if size is None or (int(size[0]), int(size[1])) == (height, width):
        return grid
    out_h, out_w = int(size[0]), int(size[1])
    out = F.interpolate(grid - identity, size=(out_h, out_w), mode="bilinear", align_corners=True)
    # + the identity at (H, W), added in place per axis: the same sums as identity_grid(H, W) + out,
    # without a second full-size two-channel tensor
    out[:, 0] += torch.linspace(-1.0, 1.0, out_w, device=flow.device, dtype=flow.dtype)
    out[:, 1] += torch.linspace(-1.0, 1.0, out_h, device=flow.device, dtype=flow.dtype)[:, None]
    return out


def warp(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` (B, C, H, W) at ``grid`` (B, 2, H, W): bilinear, border, align_corners."""
    if grid.shape[0] != image.shape[0] and grid.shape[0] == 1:
        grid = grid.expand(image.shape[0], -1, -1, -1)
    return F.grid_sample(image, grid.permute(0, 2, 3, 1), mode="bilinear", padding_mode="border", align_corners=True)


def deform(
    image: torch.Tensor,
    flow: torch.Tensor,
    mu: float,
    smoothing: str = "grid",
    kernel_size: int = 9,
    sigma: float = 2.0,
) -> torch.Tensor:
    """Deform ``image`` (B, C, H, W) by ``flow`` (B, 2, h, w): the full PriCheXy-Net operator."""
    grid = sampling_grid(flow, mu, smoothing, size=image.shape[-2:], kernel_size=kernel_size, sigma=sigma)
    return warp(image, grid)
