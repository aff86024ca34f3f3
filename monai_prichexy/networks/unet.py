"""The 2D U-Net shared by PriCheXy-Net's flow-field generator and the Privacy-Net encoder.

Buda et al. style: each block is two [3x3 conv (no bias) -> BatchNorm -> ReLU], 2x2 max-pool
down, 2x2 stride-2 transposed convolution up, skip connections by concatenation, a final
1x1 convolution. With ``init_features=32`` the levels have 32-64-128-256 features and a 512
bottleneck, as in PriCheXy-Net (Packhäuser et al., MICCAI 2023).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["UNet2D", "ACTIVATIONS"]

ACTIVATIONS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity}


def _block(in_channels: int, features: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, features, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(features),
        nn.ReLU(inplace=True),
        nn.Conv2d(features, features, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(features),
        nn.ReLU(inplace=True),
    )


class UNet2D(nn.Module):
    """A four-level U-Net; spatial sizes must be divisible by 16.

    Args:
        in_channels: input channels.
        out_channels: channels of the final 1x1 convolution.
        init_features: features of the first level; doubled at each of the 4 levels.
        final_activation: ``"tanh"``, ``"sigmoid"`` or ``"identity"``.
    """

    levels = 4

    def __init__(
        self, in_channels: int = 1, out_channels: int = 2, init_features: int = 32, final_activation: str = "tanh"
    ) -> None:
        super().__init__()
        if init_features < 1:
            raise ValueError(f"init_features must be >= 1, got {init_features}")
        if final_activation not in ACTIVATIONS:
            raise ValueError(f"final_activation must be one of {sorted(ACTIVATIONS)}, got {final_activation!r}")
        widths = [init_features * 2**i for i in range(self.levels)]
        self.encoders = nn.ModuleList()
        channels = in_channels
        for width in widths:
            self.encoders.append(_block(channels, width))
            channels = width
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.bottleneck = _block(channels, channels * 2)
        self.upconvs = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for width in reversed(widths):
            self.upconvs.append(nn.ConvTranspose2d(width * 2, width, kernel_size=2, stride=2))
            self.decoders.append(_block(width * 2, width))
        self.head = nn.Conv2d(widths[0], out_channels, kernel_size=1)
        self.activation = ACTIVATIONS[final_activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.head(self.features(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last decoder's features, before the 1 x 1 head and the final activation."""
        if x.shape[-1] % 16 or x.shape[-2] % 16:
            raise ValueError(f"UNet2D needs a spatial size divisible by 16, got {tuple(x.shape[-2:])}")
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for upconv, decoder, skip in zip(self.upconvs, self.decoders, reversed(skips)):
            x = decoder(torch.cat((upconv(x), skip), dim=1))
        return x
