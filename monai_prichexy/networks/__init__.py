"""Networks of PriCheXy-Net (Packhäuser et al., MICCAI 2023) and its Privacy-Net baseline.

Names are imported on first use (:mod:`monai_prichexy.lazy`): the generator and the deformation
need only torch; the classifier and the verifier are built on MONAI's networks.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_LAZY = {
    "DeformationSetup": ".anonymizer",
    "PriCheXyNet": ".anonymizer",
    "CXR14_LABELS": ".classifier",
    "AbnormalityClassifier": ".classifier",
    **{name: ".deformation" for name in (
        "SMOOTHING_MODES", "deform", "gaussian_kernel", "gaussian_kernel_1d", "identity_grid", "sampling_grid",
        "smooth_field", "warp")},
    "EmbeddingNet": ".embedding",
    "FlowFieldGenerator": ".generator",
    "PrivacyNetEncoder": ".generator",
    "UNet2D": ".unet",
    "BACKBONES": ".verifier",
    "SiameseVerifier": ".verifier",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
