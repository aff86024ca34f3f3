"""The Siamese patient-verification network V (adversary during training, attacker after)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.nets.resnet import ResNet, get_inplanes
from torch import nn

__all__ = ["BACKBONES", "SiameseVerifier", "resize_to", "resnet_branch"]

# name -> (block, layers), as torchvision and MONAI define them
BACKBONES = {
    "resnet10": ("basic", [1, 1, 1, 1]),
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
    "resnet101": ("bottleneck", [3, 4, 23, 3]),
}


def resize_to(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """``x`` (B, C, H, W) resized to ``size`` x ``size`` with anti-aliasing, or as it is when ``size`` is None or equal."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def resnet_branch(backbone: str, embedding_dim: int, in_channels: int = 1, widen_factor: float = 1.0) -> ResNet:
    """MONAI's ResNet ``backbone`` (one of :data:`BACKBONES`) with a 7x7 stride-2 stem, as torchvision,
    whose last layer gives ``embedding_dim`` values: the branch of the attackers' networks."""
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {backbone!r}")
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
    block, layers = BACKBONES[backbone]
    return ResNet(
        block=block,
        layers=layers,
        block_inplanes=get_inplanes(),
        spatial_dims=2,
        n_input_channels=in_channels,
        conv1_t_size=7,
        conv1_t_stride=2,
        widen_factor=widen_factor,
        num_classes=embedding_dim,
    )


class SiameseVerifier(nn.Module):
    """Siamese network deciding whether two radiographs show the same patient.

    Packhäuser et al. (Sci. Rep. 2022; MICCAI 2023): a shared ResNet-50 branch (7x7 stride-2
    stem, as torchvision; MONAI's default stem has stride 1, about 9x slower at 256 px) whose
    last layer gives a 128-d embedding passed through a sigmoid; the two embeddings are merged
    as ``|f(x1) - f(x2)|`` and a Linear(128, 1) gives the same-patient logit.

    Args:
        backbone: one of :data:`BACKBONES` (``"resnet50"`` in the paper).
        embedding_dim: size of the embedding (128).
        in_channels: image channels (1).
        widen_factor: scales every ResNet width (1.0 = paper; < 1 for tiny test networks).
        input_size: images are resized (anti-aliased) to this side first; None = as given (the paper).
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        embedding_dim: int = 128,
        in_channels: int = 1,
        widen_factor: float = 1.0,
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        self.branch = resnet_branch(backbone, embedding_dim, in_channels, widen_factor)
        self.backbone_name = backbone
        self.embedding_dim = embedding_dim
        self.input_size = None if input_size is None else int(input_size)
        self.head = nn.Linear(embedding_dim, 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, embedding_dim) sigmoid embedding of one branch."""
        return torch.sigmoid(self.branch(resize_to(x, self.input_size)))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Same-patient logit, shape (B, 1)."""
        return self.head(torch.abs(self.embed(x1) - self.embed(x2)))

    def score_embeddings(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        """Same-patient logits from precomputed embeddings (broadcasting: ``(Q, 1, D)`` and ``(1, G, D)`` give ``(Q, G, 1)``)."""
        return self.head(torch.abs(e1 - e2))
