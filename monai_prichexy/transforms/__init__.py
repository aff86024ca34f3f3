"""MONAI transforms of monai_prichexy: PriCheXy-Net anonymization, the DP-Pix baseline, the radiograph layout,
the network view and the saver of native values.

Names are imported on first use (:mod:`monai_prichexy.lazy`): :mod:`.functional` (the network view
and the deformation the transforms apply) and :mod:`.meta` need no MONAI, so the CLI's batch does
not pay for importing it.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_LAZY = {
    **{name: ".array" for name in ("DeformAnonymize", "DPPix")},
    **{name: ".dictionary" for name in (
        "DeformAnonymizeD", "DeformAnonymized", "DeformAnonymizeDict", "DPPixD", "DPPixd", "DPPixDict")},
    **{name: ".layout" for name in (
        "RowsFirst", "RowsFirstD", "RowsFirstd", "RowsFirstDict", "ToGrayscale", "ToGrayscaleD", "ToGrayscaled",
        "ToGrayscaleDict")},
    **{name: ".io" for name in ("SaveRadiographD", "SaveRadiographd", "SaveRadiographDict")},
    **{name: ".meta" for name in (
        "GEOMETRY_META_KEYS", "RADIOGRAPH_META_KEYS", "deformation_method_values", "pseudonymize_name", "strip_phi_meta")},
    **{name: ".view" for name in ("NetworkView", "NetworkViewD", "NetworkViewd", "NetworkViewDict")},
    **{name: ".functional" for name in (
        "PriCheXyDeformation", "check_radiograph_array", "minmax_view", "network_view", "working_dtype")},
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
