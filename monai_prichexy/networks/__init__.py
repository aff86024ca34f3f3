"""Networks of PriCheXy-Net (Packhäuser et al., MICCAI 2023) and its Privacy-Net baseline."""

from .anonymizer import DeformationSetup, PriCheXyNet
from .classifier import CXR14_LABELS, AbnormalityClassifier
from .deformation import (
    SMOOTHING_MODES,
    deform,
    gaussian_kernel,
    gaussian_kernel_1d,
    identity_grid,
    sampling_grid,
    smooth_field,
    warp,
)
from .embedding import EmbeddingNet
from .generator import FlowFieldGenerator, PrivacyNetEncoder
from .unet import UNet2D
from .verifier import BACKBONES, SiameseVerifier

__all__ = [
    "AbnormalityClassifier",
    "BACKBONES",
    "CXR14_LABELS",
    "DeformationSetup",
    "EmbeddingNet",
    "FlowFieldGenerator",
    "PriCheXyNet",
    "PrivacyNetEncoder",
    "SMOOTHING_MODES",
    "SiameseVerifier",
    "UNet2D",
    "deform",
    "gaussian_kernel",
    "gaussian_kernel_1d",
    "identity_grid",
    "sampling_grid",
    "smooth_field",
    "warp",
]
