"""ChestX-ray14 table and patient-wise splits, verification pairs, and lazy MONAI datasets."""

from .chestxray14 import (
    CXR14_LABELS,
    NO_FINDING,
    SPLIT_NAMES,
    CXR14Record,
    apply_split_file,
    check_patient_disjoint,
    group_by_patient,
    label_matrix,
    load_split,
    make_splits,
    normalize_patient_id,
    parse_finding_labels,
    read_chestxray14_table,
    read_image_list,
    read_split_file,
    split_by_lists,
    split_patients,
    write_split_file,
)
from .datasets import (
    DEFAULT_READERS,
    ChestXray14Dataset,
    ChestXray14PairDataset,
    RowsFirst,
    RowsFirstd,
    RowsFirstD,
    RowsFirstDict,
    ToGrayscale,
    ToGrayscaled,
    ToGrayscaleD,
    ToGrayscaleDict,
    build_transforms,
    resolve_image_paths,
)
from .pairs import (
    VerificationPair,
    check_pairs_within_split,
    pair_patient_ids,
    read_pairs,
    sample_split_pairs,
    sample_verification_pairs,
    write_pairs,
)

from . import chestxray14 as _c, datasets as _d, pairs as _p  # noqa: E402

__all__ = [*_c.__all__, *_p.__all__, *_d.__all__]

del _c, _d, _p
