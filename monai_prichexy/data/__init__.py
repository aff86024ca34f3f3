"""Data sets' tables (ChestX-ray14, Kermany paediatric CXR), patient-wise splits, verification pairs, lazy datasets."""

from .chestxray14 import CXR14_LABELS, NO_FINDING, CXR14Record, parse_finding_labels, read_chestxray14_table
from .datasets import (
    DEFAULT_READERS,
    ChestXray14Dataset,
    ChestXray14PairDataset,
    build_transforms,
    resolve_image_paths,
)
from .kermany import KERMANY_COLUMNS, read_kermany_table
from .keys import BatchKeys
from .pairs import (
    VerificationPair,
    check_pairs_within_split,
    pair_patient_ids,
    read_pairs,
    sample_split_pairs,
    sample_verification_pairs,
    write_pairs,
)
from .reader import RADIOGRAPH_SUFFIXES, RadiographReader
from .records import ImageRecord, group_by_patient, label_matrix, normalize_patient_id, open_text
# the layout transforms live in monai_prichexy.transforms; kept here so monai_prichexy.data.RowsFirstd stays valid
from ..transforms.layout import (
    RowsFirst,
    RowsFirstd,
    RowsFirstD,
    RowsFirstDict,
    ToGrayscale,
    ToGrayscaled,
    ToGrayscaleD,
    ToGrayscaleDict,
)
from .splits import (
    SPLIT_NAMES,
    apply_split_file,
    check_patient_disjoint,
    load_split,
    make_splits,
    read_image_list,
    read_split_file,
    split_by_lists,
    split_patients,
    write_split_file,
)
from .tables import TABLE_READERS, detect_dataset, read_table

from . import (  # noqa: E402
    chestxray14 as _c,
    datasets as _d,
    kermany as _k,
    keys as _keys,
    pairs as _p,
    reader as _rd,
    records as _r,
    splits as _s,
    tables as _t,
)
from ..transforms import layout as _l  # noqa: E402

__all__ = [
    *_r.__all__, *_c.__all__, *_k.__all__, *_t.__all__, *_s.__all__, *_p.__all__, *_d.__all__, *_l.__all__,
    *_keys.__all__, *_rd.__all__,
]

del _c, _d, _k, _keys, _l, _p, _r, _rd, _s, _t
