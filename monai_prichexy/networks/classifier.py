"""The auxiliary abnormality classifier C: DenseNet-121 with the 14 ChestX-ray14 labels."""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.networks.nets import DenseNet121
from torch import nn

from ..labels import CXR14_LABELS

__all__ = ["CXR14_LABELS", "AbnormalityClassifier"]


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class AbnormalityClassifier(nn.Module):
    """DenseNet-121 (MONAI) predicting the 14 ChestX-ray14 findings as independent logits.

    Interface as in torchxrayvision: ``targets`` (label names, in output order),
    ``features(x)`` (pooled 1024-d features) and ``forward(x)``; unlike torchxrayvision,
    ``forward`` returns logits (train with BCE-with-logits; ``predict`` applies the sigmoid).

    Args:
        in_channels: 1 (grayscale, trained from scratch, the default offline) or 3 (the
            paper's ImageNet set-up: the gray image is replicated and ImageNet-normalised).
        input_size: the image is resized to this size inside ``forward`` (224 in the paper);
            None keeps the input size.
        imagenet_weights: optional path to a torchvision ``densenet121`` state dict file to
            start from (needs ``in_channels=3``); nothing is downloaded.
        dropout_prob: dropout before the classifier layer.
    """

    targets = CXR14_LABELS

    def __init__(
        self,
        in_channels: int = 1,
        input_size: int | None = 224,
        imagenet_weights: str | None = None,
        dropout_prob: float = 0.0,
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        if imagenet_weights is not None and in_channels != 3:
            raise ValueError("imagenet_weights need in_channels=3 (the ImageNet stem has 3 input channels)")
        self.in_channels = in_channels
        self.input_size = input_size
        self.net = DenseNet121(
            spatial_dims=2, in_channels=in_channels, out_channels=len(self.targets), dropout_prob=dropout_prob
        )
        if imagenet_weights is not None:
            self._load_torchvision_weights(Path(imagenet_weights))
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _load_torchvision_weights(self, path: Path) -> None:
        """Load a local torchvision densenet121 state dict (its classifier layer is dropped)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        pattern = re.compile(r"^(.*denselayer\d+)\.(norm|relu|conv)\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
        converted = {}
        for key, value in state.items():
            key = pattern.sub(r"\1.layers.\2\3", key)
            if key.startswith("classifier."):
                continue
            converted[key] = value
        missing, unexpected = self.net.load_state_dict(converted, strict=False)
        if unexpected or any(not k.startswith("class_layers") for k in missing):
            raise ValueError(f"{path}: not a torchvision densenet121 state dict (missing {missing[:3]}, unexpected {unexpected[:3]})")

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected a (B, 1, H, W) grayscale batch, got {tuple(x.shape)}")
        if self.input_size is not None and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        if self.in_channels == 3:
            x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled 1024-d image features."""
        x = self.net.features(self._prepare(x))
        return torch.flatten(F.adaptive_avg_pool2d(F.relu(x), 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self._prepare(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities of the 14 findings."""
        return torch.sigmoid(self(x))
