"""The auxiliary abnormality classifier C: DenseNet-121 (the paper) or a ResNet, over a data set's classes."""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.networks.nets import DenseNet121
from monai.networks.nets.resnet import ResNet, get_inplanes
from torch import nn

from ..labels import CXR14_LABELS
from .verifier import BACKBONES

__all__ = ["CXR14_LABELS", "AbnormalityClassifier"]


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class AbnormalityClassifier(nn.Module):
    """A classifier of a data set's classes (the 14 ChestX-ray14 findings by default), returning logits.

    Interface as in torchxrayvision: ``targets`` (class names, in output order),
    ``features(x)`` (pooled features) and ``forward(x)``; unlike torchxrayvision, ``forward``
    returns logits: the data set's :class:`~monai_prichexy.labels.LabelSchema` turns them into
    probabilities (sigmoid or softmax) and a loss. The paper's network is a DenseNet-121
    (MONAI); ``backbone`` may name a ResNet of :data:`~monai_prichexy.networks.BACKBONES`
    (stride-2 stem, ``widen_factor``) for CPU-sized runs.

    Args:
        targets: class names in output order (default: the 14 ChestX-ray14 findings).
        backbone: ``"densenet121"`` (paper) or a ResNet name such as ``"resnet18"``.
        widen_factor: width of a ResNet backbone (1.0 = standard).
        in_channels: 1 (grayscale, trained from scratch, the default offline) or 3 (the
            paper's ImageNet set-up: the gray image is replicated and ImageNet-normalised).
        input_size: the image is resized to this size inside ``forward`` (224 in the paper);
            None keeps the input size.
        imagenet_weights: optional path to a torchvision ``densenet121`` state dict file to
            start from (needs ``in_channels=3``); nothing is downloaded.
        dropout_prob: dropout before the classifier layer.
    """

    def __init__(
        self,
        in_channels: int = 1,
        input_size: int | None = 224,
        imagenet_weights: str | None = None,
        dropout_prob: float = 0.0,
        targets: tuple[str, ...] | list[str] | None = None,
        backbone: str = "densenet121",
        widen_factor: float = 1.0,
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        if imagenet_weights is not None and in_channels != 3:
            raise ValueError("imagenet_weights need in_channels=3 (the ImageNet stem has 3 input channels)")
        if backbone != "densenet121" and backbone not in BACKBONES:
            raise ValueError(f"backbone must be 'densenet121' or one of {sorted(BACKBONES)}, got {backbone!r}")
        if imagenet_weights is not None and backbone != "densenet121":
            raise ValueError("imagenet_weights are only supported for the densenet121 backbone")
        self.targets: tuple[str, ...] = tuple(CXR14_LABELS if targets is None else targets)
        if len(self.targets) < 2 or len(set(self.targets)) != len(self.targets):
            raise ValueError(f"targets must be two or more distinct class names, got {self.targets}")
        self.in_channels = in_channels
        self.input_size = input_size
        self.backbone = backbone
        self.widen_factor = float(widen_factor)
        if backbone == "densenet121":
            self.net = DenseNet121(
                spatial_dims=2, in_channels=in_channels, out_channels=len(self.targets), dropout_prob=dropout_prob
            )
        else:
            block, layers = BACKBONES[backbone]
            self.net = ResNet(
                block=block, layers=layers, block_inplanes=get_inplanes(), spatial_dims=2,
                n_input_channels=in_channels, conv1_t_size=7, conv1_t_stride=2, widen_factor=widen_factor,
                num_classes=len(self.targets),
            )
            self.dropout = nn.Dropout(dropout_prob) if dropout_prob > 0 else nn.Identity()
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
        """Pooled image features (1024-d for DenseNet-121)."""
        x = self._prepare(x)
        if self.backbone == "densenet121":
            x = self.net.features(x)
            return torch.flatten(F.adaptive_avg_pool2d(F.relu(x), 1), 1)
        net = self.net
        x = net.maxpool(net.act(net.bn1(net.conv1(x)))) if not net.no_max_pool else net.act(net.bn1(net.conv1(x)))
        x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
        return torch.flatten(net.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backbone == "densenet121":
            return self.net(self._prepare(x))
        return self.net.fc(self.dropout(self.features(x)))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Independent sigmoid probabilities of the classes (multi-label data sets such as ChestX-ray14)."""
        return torch.sigmoid(self(x))
