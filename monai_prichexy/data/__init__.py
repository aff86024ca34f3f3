"""Data sets' tables (ChestX-ray14, Kermany paediatric CXR), patient-wise splits, verification pairs, lazy datasets,
and the radiograph reader.

Names are imported on first use (:mod:`monai_prichexy.lazy`): reading one file (:mod:`.decode`) needs no
MONAI; the datasets, the MONAI :class:`~monai.data.ImageReader` and the layout transforms do.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_LAZY = {
    **dict.fromkeys((
        "CXR14_LABELS", "NO_FINDING", "CXR14Record", "parse_finding_labels", "read_chestxray14_table",
    ), ".chestxray14"),
    **dict.fromkeys((
        "DEFAULT_READERS", "build_transforms", "resolve_image_paths", "ChestXray14Dataset",
        "ChestXray14PairDataset",
    ), ".datasets"),
    **dict.fromkeys(("decode_radiograph", "radiograph_data",), ".decode"),
    **dict.fromkeys(("KERMANY_COLUMNS", "read_kermany_table",), ".kermany"),
    **dict.fromkeys(("BatchKeys",), ".keys"),
    **dict.fromkeys((
        "VerificationPair", "sample_verification_pairs", "sample_split_pairs", "check_pairs_within_split",
        "pair_patient_ids", "write_pairs", "read_pairs",
    ), ".pairs"),
    **dict.fromkeys(("RadiographReader", "RADIOGRAPH_SUFFIXES",), ".reader"),
    **dict.fromkeys((
        "ImageRecord", "normalize_patient_id", "label_matrix", "group_by_patient", "open_text",
    ), ".records"),
    **dict.fromkeys((
        "SPLIT_NAMES", "split_patients", "read_image_list", "split_by_lists", "read_split_file",
        "write_split_file", "apply_split_file", "check_patient_disjoint", "make_splits", "load_split",
    ), ".splits"),
    **dict.fromkeys(("TABLE_READERS", "detect_dataset", "read_table",), ".tables"),
    # the layout transforms live in monai_prichexy.transforms; monai_prichexy.data.RowsFirstd stays valid
    **dict.fromkeys((
        "RowsFirst", "RowsFirstD", "RowsFirstDict", "RowsFirstd", "ToGrayscale", "ToGrayscaleD",
        "ToGrayscaleDict", "ToGrayscaled",
    ), "..transforms.layout"),
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
