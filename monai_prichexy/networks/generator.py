"""PriCheXy-Net's flow-field generator G and the Privacy-Net baseline encoder."""

from __future__ import annotations

from .unet import UNet2D

__all__ = ["FlowFieldGenerator", "PrivacyNetEncoder"]


class FlowFieldGenerator(UNet2D):
    """U-Net that predicts a 2-channel flow field in [-1, 1] (x channel first), with tanh.

    Packhäuser et al., MICCAI 2023: 32-64-128-256 features, 512 bottleneck, about 7.8 M
    parameters at ``init_features=32``. The field is turned into a deformation by
    :func:`monai_prichexy.networks.deformation.deform`.
    """

    def __init__(self, in_channels: int = 1, init_features: int = 32) -> None:
        super().__init__(in_channels=in_channels, out_channels=2, init_features=init_features, final_activation="tanh")
        self.in_channels = in_channels
        self.init_features = init_features


class PrivacyNetEncoder(UNet2D):
    """The Privacy-Net baseline's image-to-image U-Net (1 -> 1 channel, 16 base features).

    Its sigmoid output is used directly as the anonymized image (Kim et al., Privacy-Net, as
    re-implemented for the comparison in Packhäuser et al., MICCAI 2023).
    """

    def __init__(self, in_channels: int = 1, init_features: int = 16) -> None:
        super().__init__(
            in_channels=in_channels, out_channels=in_channels, init_features=init_features, final_activation="sigmoid"
        )
        self.in_channels = in_channels
        self.init_features = init_features
