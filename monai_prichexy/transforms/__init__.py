"""MONAI transforms of monai_prichexy: PriCheXy-Net anonymization, the DP-Pix baseline, the radiograph layout."""

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
    "RowsFirst",
    "RowsFirstD",
    "RowsFirstDict",
    "RowsFirstd",
    "ToGrayscale",
    "ToGrayscaleD",
    "ToGrayscaleDict",
    "ToGrayscaled",
    "check_radiograph_array",
    "pseudonymize_name",
    "strip_phi_meta",
]
