"""The metric-learning attacker's embedding network.

A ResNet branch (stride-2 stem, as torchvision; :data:`~monai_prichexy.networks.BACKBONES`)
whose last layer gives a ``D``-dimensional embedding, L2-normalised, so that the cosine of two
embeddings is their same-patient score. Trained with a supervised-contrastive loss over patient
ids (Khosla et al., NeurIPS 2020), it is the second attacker of the evaluation beside the
paper's Siamese verifier (Packhäuser et al., Sci. Rep. 2022, use a Siamese network; a metric
embedding is the attacker a retrieval system would use).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.nets.resnet import ResNet, get_inplanes
from torch import nn

from .verifier import BACKBONES, resize_to

__all__ = ["EmbeddingNet"]


class EmbeddingNet(nn.Module):
    """ResNet -> L2-normalised embedding; ``forward(x1, x2)`` gives the cosine similarity.

    Args:
        backbone: one of :data:`BACKBONES`.
        embedding_dim: size of the embedding.
        in_channels: image channels (1).
        widen_factor: scales every ResNet width (1.0 = standard).
        input_size: images are resized (anti-aliased) to this side first; None = as given.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        embedding_dim: int = 128,
        in_channels: int = 1,
        widen_factor: float = 1.0,
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {backbone!r}")
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        block, layers = BACKBONES[backbone]
        self.backbone_name = backbone
        self.embedding_dim = int(embedding_dim)
        self.widen_factor = float(widen_factor)
        self.input_size = None if input_size is None else int(input_size)
        self.branch = ResNet(
            block=block, layers=layers, block_inplanes=get_inplanes(), spatial_dims=2, n_input_channels=in_channels,
            conv1_t_size=7, conv1_t_stride=2, widen_factor=widen_factor, num_classes=embedding_dim,
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` unit-length embeddings."""
        return F.normalize(self.branch(resize_to(x, self.input_size)), dim=1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings of ``x1``; with ``x2``, the ``(B, 1)`` cosine similarity of the two."""
        e1 = self.embed(x1)
        if x2 is None:
            return e1
        return (e1 * self.embed(x2)).sum(dim=1, keepdim=True)
