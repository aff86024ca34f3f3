"""DICOM input/output for the anonymization pipeline.

``read_radiograph`` -> (deform ``rad.stored`` elsewhere) -> ``write_radiograph(rad, warped,
out_path, deid=DeidConfig(key=...))``. This package knows nothing of networks or transforms.

Header de-identification follows DICOM PS3.15 Annex E (Basic Application Level
Confidentiality Profile, dicom-anonymizer's tables) plus removal of private tags, overlays,
curves, icons and any other copy of the pixels; see :mod:`.deidentify` (the run), :mod:`.profile`
(the profile engine) and :mod:`.keys` (the key and the keyed UIDs, pseudonyms and date offsets). Text burned into the
pixels is out of scope: files with ``BurnedInAnnotation == "YES"`` are refused by default.
"""

from .deidentify import DeidConfig, DeidResult, deidentify, deidentify_dataset
from .errors import (
    BurnedInAnnotationError,
    DeidentificationError,
    DicomWriteError,
    NotARadiographError,
    NotDicomError,
    UnsupportedDicomError,
)
from .keys import DeidKey, create_key, date_shift_days, load_key, load_or_create_key, patient_pseudonym, remap_uid
from .profile import PROFILE_TABLE
from .reader import (
    PROJECTION_MODALITIES,
    RADIOGRAPH_SOP_CLASSES,
    SECONDARY_CAPTURE_SOP_CLASSES,
    Radiograph,
    check_scope,
    compute_view,
    radiograph_from_dataset,
    read_radiograph,
)
from .writer import WriteResult, choose_transfer_syntax, write_dataset, write_radiograph

__all__ = [
    "Radiograph",
    "read_radiograph",
    "radiograph_from_dataset",
    "check_scope",
    "PROJECTION_MODALITIES",
    "RADIOGRAPH_SOP_CLASSES",
    "SECONDARY_CAPTURE_SOP_CLASSES",
    "compute_view",
    "DeidKey",
    "DeidConfig",
    "DeidResult",
    "PROFILE_TABLE",
    "deidentify",
    "deidentify_dataset",
    "remap_uid",
    "patient_pseudonym",
    "date_shift_days",
    "load_key",
    "create_key",
    "load_or_create_key",
    "WriteResult",
    "write_radiograph",
    "write_dataset",
    "choose_transfer_syntax",
    "UnsupportedDicomError",
    "NotARadiographError",
    "NotDicomError",
    "DeidentificationError",
    "BurnedInAnnotationError",
    "DicomWriteError",
]
