"""Anonymizers as batch modules for the attack and the benchmark.

Each maps a ``(B, 1, H, W)`` batch in ``[0, 1]`` to an anonymized batch of the same shape:

- ``"none"``: :class:`IdentityAnonymizer` (the real-image baseline);
- ``"prichexy"``: a trained :class:`~monai_prichexy.networks.PriCheXyNet` (generator checkpoint + mu);
- ``"privacy_net"``: a trained :class:`~monai_prichexy.networks.PrivacyNetEncoder`;
- ``"dppix"``: :class:`DPPixAnonymizer` (the ``DPPix`` transform applied image by image);
- ``"random_deformation"``: :class:`RandomDeformation`, the control of data README caveat 6: a
  random smooth field through the same operator, scaled to a given mean displacement (e.g.
  the learned generator's mean ``|mu * G(x)|`` on the validation set, see
  :func:`mean_displacement`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..networks import PriCheXyNet, PrivacyNetEncoder
from ..networks.deformation import SMOOTHING_MODES, sampling_grid, warp
from ..transforms import DPPix
from ..weights import load_generator, load_network
from .utils import plain, unwrap

__all__ = [
    "ANONYMIZER_KINDS",
    "IdentityAnonymizer",
    "RandomDeformation",
    "DPPixAnonymizer",
    "build_anonymizer",
    "mean_displacement",
]

ANONYMIZER_KINDS = ("none", "prichexy", "privacy_net", "dppix", "random_deformation")


class IdentityAnonymizer(nn.Module):
    """Returns its input (the real-image baseline)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _gaussian_1d(sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


class RandomDeformation(nn.Module):
    """A random smooth deformation of a given size through the PriCheXy-Net operator.

    A field of Gaussian noise ``(B, 2, H, W)`` is smoothed (Gaussian, ``field_sigma`` pixels,
    reflect padding), standardised per image, bounded with ``tanh``, then scaled per image so
    that its mean absolute value (both channels, all pixels, in normalised units, before the
    operator's smoothing) equals ``mean_displacement``. It then goes through exactly the same
    operator as the learned generator's ``mu * G(x)``: ``sampling_grid(flow, mu=1, smoothing)``
    and the bilinear, border-padded ``grid_sample``.

    Args:
        mean_displacement: target mean ``|displacement|`` in normalised units (x ``(size-1)/2``
            = pixels), e.g. from :func:`mean_displacement` of a trained generator.
        field_sigma: smoothness of the noise, in pixels of the image.
        smoothing: the operator's smoothing mode (``"grid"`` as the paper, default).
        seed: seed of the noise (each call draws a new field from the seeded stream).
    """

    def __init__(
        self, mean_displacement: float, field_sigma: float = 4.0, smoothing: str = "grid", seed: int | None = 0
    ) -> None:
        super().__init__()
        if mean_displacement < 0:
            raise ValueError(f"mean_displacement must be >= 0, got {mean_displacement}")
        if field_sigma <= 0:
            raise ValueError(f"field_sigma must be > 0, got {field_sigma}")
        if smoothing not in SMOOTHING_MODES:
            raise ValueError(f"smoothing must be one of {SMOOTHING_MODES}, got {smoothing!r}")
        self.mean_displacement = float(mean_displacement)
        self.field_sigma = float(field_sigma)
        self.smoothing = smoothing
        self.seed = seed
        self._generator = torch.Generator()
        if seed is not None:
            self._generator.manual_seed(int(seed))

    def field(self, shape: tuple[int, int, int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """A random ``(B, 2, H, W)`` displacement with the configured mean absolute value."""
        b, h, w = shape
        noise = torch.randn((b, 2, h, w), generator=self._generator).to(device, dtype)
        k = _gaussian_1d(self.field_sigma, device, dtype)
        r = k.numel() // 2
        x = F.pad(noise, (r, r, 0, 0), mode="reflect" if w > r else "replicate")
        x = F.conv2d(x, k.view(1, 1, 1, -1).expand(2, 1, 1, -1), groups=2)
        x = F.pad(x, (0, 0, r, r), mode="reflect" if h > r else "replicate")
        x = F.conv2d(x, k.view(1, 1, -1, 1).expand(2, 1, -1, 1), groups=2)
        x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        bounded = torch.tanh(x)
        scale = self.mean_displacement / bounded.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        return bounded * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flow = self.field((x.shape[0], x.shape[-2], x.shape[-1]), x.device, x.dtype)
        return warp(x, sampling_grid(flow, 1.0, self.smoothing))


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


def _sidecar_meta(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """Meta from the JSON beside a checkpoint (bundle ``model.json`` or a stage summary), if any."""
    import json
    from pathlib import Path

    path = Path(checkpoint).with_suffix(".json")
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    meta = info.get("meta", {}) if isinstance(info.get("meta"), dict) else {}
    return {k: v for k, v in {**meta, **info}.items() if k in ("mu", "smoothing", "working_size")}


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
) -> nn.Module:
    """Build one of :data:`ANONYMIZER_KINDS` in eval mode with frozen parameters.

    Args:
        kind: ``"none"``, ``"prichexy"``, ``"privacy_net"``, ``"dppix"`` or ``"random_deformation"``.
        checkpoint: weights of ``"prichexy"`` (generator) or ``"privacy_net"``.
        mu, smoothing: of ``"prichexy"`` (default: the checkpoint's meta) and the smoothing of
            ``"random_deformation"``.
        working_size: the generator's working size (default: the checkpoint's meta, else the input size).
        b, m, eps: DP-Pix settings.
        mean_displacement, field_sigma: of ``"random_deformation"``.
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
        generator, meta = load_generator(checkpoint)
        meta = {**_sidecar_meta(checkpoint), **meta}
        mu = meta.get("mu") if mu is None else mu
        if mu is None:
            raise ValueError(f"{checkpoint}: mu is not in the checkpoint meta; give mu")
        size = working_size if working_size is not None else meta.get("working_size")
        net = PriCheXyNet(generator, mu=float(mu), smoothing=smoothing or meta.get("smoothing", "grid"), working_size=size)
    elif kind == "privacy_net":
        if checkpoint is None:
            raise ValueError("kind='privacy_net' needs a checkpoint")
        net, _ = load_network(checkpoint, network="PrivacyNetEncoder")
        if not isinstance(net, PrivacyNetEncoder):
            raise ValueError(f"{checkpoint}: holds a {type(net).__name__}, not a PrivacyNetEncoder")
    elif kind == "dppix":
        net = DPPixAnonymizer(b=b, m=m, eps=eps, seed=seed)
    else:
        if mean_displacement is None:
            raise ValueError("kind='random_deformation' needs mean_displacement")
        net = RandomDeformation(mean_displacement, field_sigma=field_sigma, smoothing=smoothing or "grid", seed=seed)
    net = net.to(torch.device(device)).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@torch.no_grad()
def mean_displacement(
    network: nn.Module, loader: Iterable[Mapping[str, Any]], device: str | torch.device = "cpu", key: str = "image"
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
