"""How far an anonymizer moves the anatomy, and how much the image changes.

Every privacy number is only meaningful beside the size of the change that bought it
(DESIGN, section 8): for deformation anonymizers the length of the displacement vectors in
pixels -- at the image's own size, at the generator's working size and at 256 x 256, the
paper's size, where mu = 0.01 allows at most 1.28 px per axis -- and as a fraction of the
image side; the share of the image inside the border frame that the paper's smoothing of the
full grid distorts (zero padding pulls the grid towards the centre there); the share of pixels
where the map folds (Jacobian determinant <= 0); and, for every anonymizer, the SSIM between
anonymized and real images (MONAI's :class:`~monai.metrics.SSIMMetric`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import SSIMMetric

from ..networks.deformation import REFERENCE_SIZE, jacobian_determinant

__all__ = ["DisplacementAccumulator", "frame_mask", "ssim_and_change"]


def frame_mask(height: int, width: int, frame_px: float) -> torch.Tensor:
    """``(H, W)`` boolean mask of the pixels within ``frame_px`` of the border."""
    if frame_px <= 0:
        return torch.zeros(height, width, dtype=torch.bool)
    rows = torch.arange(height, dtype=torch.float64)
    cols = torch.arange(width, dtype=torch.float64)
    dist_r = torch.minimum(rows, height - 1 - rows)[:, None]
    dist_c = torch.minimum(cols, width - 1 - cols)[None, :]
    return torch.minimum(dist_r, dist_c) < frame_px


class DisplacementAccumulator:
    """Collects displacement fields batch by batch and summarises them.

    Args:
        working_size: the generator's working side (for the figure at that size); None = the image's.
        frame_px: width of the distorted border frame in pixels of the image (0 = none).
    """

    def __init__(self, working_size: int | Sequence[int] | None = None, frame_px: float = 0.0) -> None:
        if isinstance(working_size, Sequence):
            working_size = int(working_size[0])
        self.working_size = None if working_size is None else int(working_size)
        self.frame_px = float(frame_px)
        self._all: list[np.ndarray] = []
        self._interior: list[np.ndarray] = []
        self._folds_all = 0
        self._folds_interior = 0
        self._min_det = float("inf")
        self._n_pixels = 0
        self._n_interior = 0
        self._n_images = 0
        self._size: tuple[int, int] | None = None

    @torch.no_grad()
    def update(self, displacement: torch.Tensor) -> None:
        """Add a ``(B, 2, H, W)`` displacement in normalised units (sampling grid minus identity)."""
        if displacement.ndim != 4 or displacement.shape[1] != 2:
            raise ValueError(f"displacement must be (B, 2, H, W), got {tuple(displacement.shape)}")
        d = displacement.detach().double().cpu()
        b, _, h, w = d.shape
        self._size = (h, w)
        # length in normalised units of a square reference: px at size S = length * (S - 1) / 2
        length = torch.sqrt(d[:, 0] ** 2 + d[:, 1] ** 2)
        interior = ~frame_mask(h, w, self.frame_px)
        self._all.append(length.flatten().numpy().astype(np.float32))
        self._interior.append(length[:, interior].flatten().numpy().astype(np.float32))
        ys = torch.linspace(-1.0, 1.0, h, dtype=torch.float64)
        xs = torch.linspace(-1.0, 1.0, w, dtype=torch.float64)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = d + torch.stack((gx, gy))[None]
        det = jacobian_determinant(grid)
        self._folds_all += int((det <= 0).sum())
        self._folds_interior += int((det[:, interior] <= 0).sum())
        self._min_det = min(self._min_det, float(det.min()))
        self._n_pixels += b * h * w
        self._n_interior += b * int(interior.sum())
        self._n_images += b

    def compute(self) -> dict[str, Any]:
        """Mean / 99th percentile / max displacement (interior and whole image) in several units."""
        if not self._n_images:
            raise ValueError("no displacement was added")
        h, w = self._size  # type: ignore[misc]
        side = max(h, w)
        work = self.working_size or side

        def figures(values: np.ndarray) -> dict[str, float]:
            if values.size == 0:
                return {}
            mean, p99, peak = float(values.mean()), float(np.percentile(values, 99)), float(values.max())
            out: dict[str, float] = {"mean_normalised": mean}
            for name, v in (("mean", mean), ("p99", p99), ("max", peak)):
                out[f"{name}_px_image"] = v * (side - 1) / 2
                out[f"{name}_px_working"] = v * (work - 1) / 2
                out[f"{name}_px_256"] = v * (REFERENCE_SIZE - 1) / 2
                out[f"{name}_fraction_of_side"] = v / 2
            return out

        return {
            "interior": figures(np.concatenate(self._interior)),
            "whole_image": figures(np.concatenate(self._all)),
            "image_size": [h, w],
            "working_size": work,
            "frame_px_image": self.frame_px,
            "frame_share": 1.0 - self._n_interior / self._n_pixels,
            "fold_share": self._folds_all / self._n_pixels,
            "fold_share_interior": (self._folds_interior / self._n_interior) if self._n_interior else 0.0,
            "min_jacobian_determinant": self._min_det,
            "n_images": self._n_images,
        }


@torch.no_grad()
def ssim_and_change(anonymized: torch.Tensor, real: torch.Tensor, batch_size: int = 256) -> dict[str, float]:
    """Mean SSIM (MONAI, data range 1, 7 x 7 window) and mean absolute change of ``(N, 1, H, W)`` images in [0, 1]."""
    if anonymized.shape != real.shape:
        raise ValueError(f"shapes differ: {tuple(anonymized.shape)} vs {tuple(real.shape)}")
    metric = SSIMMetric(spatial_dims=2, data_range=1.0, win_size=7)
    values, change = [], []
    for i in range(0, len(real), batch_size):
        a, r = anonymized[i : i + batch_size].float(), real[i : i + batch_size].float()
        values.append(metric(a, r).reshape(-1))
        change.append((a - r).abs().flatten(1).mean(dim=1))
    ssim = torch.cat(values)
    mad = torch.cat(change)
    return {
        "ssim_mean": float(ssim.mean()),
        "ssim_min": float(ssim.min()),
        "mean_abs_change": float(mad.mean()),
        "n_images": int(len(real)),
    }
