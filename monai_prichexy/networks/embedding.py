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
from torch import nn

from .verifier import resize_to, resnet_branch

__all__ = ["EmbeddingNet"]


class EmbeddingNet(nn.Module):
    """ResNet -> L2-normalised embedding; ``forward(x1, x2)`` gives the cosine similarity.

    Args:
        backbone: one of :data:`~monai_prichexy.networks.BACKBONES`.
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
        self.branch = resnet_branch(backbone, embedding_dim, in_channels, widen_factor)
        self.backbone_name = backbone
        self.embedding_dim = int(embedding_dim)
        self.widen_factor = float(widen_factor)
        self.input_size = None if input_size is None else int(input_size)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` unit-length embeddings."""
        return F.normalize(self.branch(resize_to(x, self.input_size)), dim=1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings of ``x1``; with ``x2``, the ``(B, 1)`` cosine similarity of the two."""
        e1 = self.embed(x1)
        if x2 is None:
            return e1
        return (e1 * self.embed(x2)).sum(dim=1, keepdim=True)
