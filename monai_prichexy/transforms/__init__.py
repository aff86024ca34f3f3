"""MONAI transforms of monai_prichexy: PriCheXy-Net anonymization, the DP-Pix baseline, the radiograph layout,
the network view and the saver of native values."""

from .array import DeformAnonymize, DPPix, check_radiograph_array
from .dictionary import DeformAnonymizeD, DeformAnonymized, DeformAnonymizeDict, DPPixD, DPPixd, DPPixDict
from .layout import (
    RowsFirst,
    RowsFirstD,
    RowsFirstd,
    RowsFirstDict,
    ToGrayscale,
    ToGrayscaleD,
    ToGrayscaled,
    ToGrayscaleDict,
)
from .io import SaveRadiographD, SaveRadiographd, SaveRadiographDict, deformation_method_values
from .meta import GEOMETRY_META_KEYS, RADIOGRAPH_META_KEYS, pseudonymize_name, strip_phi_meta
from .view import NetworkView, NetworkViewD, NetworkViewd, NetworkViewDict, network_view

__all__ = [
    "DPPix",
    "DPPixD",
    "DPPixDict",
    "DPPixd",
    "DeformAnonymize",
    "DeformAnonymizeD",
    "DeformAnonymizeDict",
    "DeformAnonymized",
    "GEOMETRY_META_KEYS",
    "NetworkView",
    "NetworkViewD",
    "NetworkViewDict",
    "NetworkViewd",
    "RADIOGRAPH_META_KEYS",
    "RowsFirst",
    "RowsFirstD",
    "RowsFirstDict",
    "RowsFirstd",
    "SaveRadiographD",
    "SaveRadiographDict",
    "SaveRadiographd",
    "ToGrayscale",
    "ToGrayscaleD",
    "ToGrayscaleDict",
    "ToGrayscaled",
    "check_radiograph_array",
    "deformation_method_values",
    "network_view",
    "pseudonymize_name",
    "strip_phi_meta",
]
