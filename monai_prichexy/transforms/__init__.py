"""MONAI transforms of monai_prichexy: PriCheXy-Net anonymization and the DP-Pix baseline."""

from .array import DeformAnonymize, DPPix, check_radiograph_array
from .dictionary import DeformAnonymizeD, DeformAnonymized, DeformAnonymizeDict, DPPixD, DPPixd, DPPixDict
from .meta import GEOMETRY_META_KEYS, pseudonymize_name, strip_phi_meta

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
    "check_radiograph_array",
    "pseudonymize_name",
    "strip_phi_meta",
]
