"""Keeping protected health information out of a MetaTensor's metadata.

MONAI's image readers copy every header tag (PatientName, PatientID, dates, ...) into the
meta dict, and file names of ChestX-ray14 carry the patient id. :func:`strip_phi_meta` keeps
only geometric keys and replaces the file name by a keyed pseudonym.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from ..hashing import hmac_sha256

__all__ = ["GEOMETRY_META_KEYS", "RADIOGRAPH_META_KEYS", "deformation_method_values", "pseudonymize_name", "strip_phi_meta"]

# keys that describe the geometry of the array and nothing about the person
GEOMETRY_META_KEYS = ("affine", "original_affine", "spatial_shape", "original_channel_dim", "space")

# keys of monai_prichexy.data.RadiographReader: format, dtype, value range, network-view table and
# writer settings of the file, never a header value (see that module)
RADIOGRAPH_FORMAT = "radiograph_format"
RADIOGRAPH_DTYPE = "radiograph_dtype"
RADIOGRAPH_VALUE_RANGE = "radiograph_value_range"
RADIOGRAPH_VIEW_LUT = "radiograph_view_lut"
RADIOGRAPH_WRITE_INFO = "radiograph_write_info"
RADIOGRAPH_META_KEYS = (RADIOGRAPH_FORMAT, RADIOGRAPH_DTYPE, RADIOGRAPH_VALUE_RANGE, RADIOGRAPH_VIEW_LUT, RADIOGRAPH_WRITE_INFO)

_PROCESS_KEY = secrets.token_bytes(32)


def pseudonymize_name(name: str | os.PathLike, key: bytes | str | None = None, length: int = 16) -> str:
    """A keyed, irreversible replacement for a file name that keeps its extension.

    The same name and key give the same pseudonym; without ``key`` a random key of this
    process is used, so names are unlinkable across runs.
    """
    key_bytes = _PROCESS_KEY if key is None else (key.encode() if isinstance(key, str) else bytes(key))
    path = PurePath(os.fspath(name))
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    stem = hmac_sha256(key_bytes, path.name.encode()).hex()[:length]
    return f"anon_{stem}{suffix}"


def strip_phi_meta(meta: Mapping[str, Any] | None, key: bytes | str | None = None) -> dict[str, Any]:
    """Only the geometry of ``meta`` (and :class:`~monai_prichexy.data.RadiographReader`'s PHI-free
    keys), with ``filename_or_obj`` pseudonymized."""
    meta = dict(meta or {})
    clean = {k: meta[k] for k in GEOMETRY_META_KEYS + RADIOGRAPH_META_KEYS if k in meta}
    name = meta.get("filename_or_obj")
    if isinstance(name, (str, os.PathLike)) and str(name):
        clean["filename_or_obj"] = pseudonymize_name(name, key)
    return clean


def deformation_method_values(mu: float, smoothing: str, weights_sha256: str | None = None,
                              precision: str = "fp32") -> tuple[str, ...]:
    """What the deformation was, for DICOM DeidentificationMethod and manifests (no PHI)."""
    setup = f"mu={float(mu):g} smoothing={smoothing}" + (f" generator {precision}" if precision != "fp32" else "")
    values = ("PriCheXy-Net pixel deformation", setup)
    return values + ((f"weights sha256 {weights_sha256[:16]}",) if weights_sha256 else ())
