"""Pinned digests: the names, UIDs and pseudonyms under a fixed key must never change.

A release made under a key is reproduced by a later run under the same key (resumed jobs
overwrite instead of duplicating, UIDs of referenced images stay consistent), so every keyed
value below is pinned to the bytes the first implementation gave.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import PurePosixPath

from monai_prichexy.dicom import DeidKey, date_shift_days, patient_pseudonym, remap_uid
from monai_prichexy.pipeline.naming import Pseudonymizer
from monai_prichexy.transforms.meta import pseudonymize_name

KEY = DeidKey(bytes(range(32)))


def test_file_name_pseudonyms_are_pinned():
    assert pseudonymize_name("00000001_000.png", key=b"k" * 16) == "anon_db52a0bde7ad93cb.png"
    assert pseudonymize_name("scan.nii.gz", key="secret") == "anon_b693bdda767eafd8.nii.gz"


def test_dicom_keyed_values_are_pinned():
    assert remap_uid("1.2.3.4.5", KEY) == "2.25.130260229448966302961915564273907196038"
    assert patient_pseudonym("PAT001", KEY) == "ANON-5ad0a851e1"
    assert date_shift_days("PAT001", KEY) == -97
    assert KEY.fingerprint == "86cc90f2423e"


def test_output_tree_names_are_pinned():
    p = Pseudonymizer(KEY)
    rel = p.output_relpath(PurePosixPath("Doe_John/2023/IM0001"), ".dcm")
    assert str(rel) == "e1ec8fe5fb910230/ee44f6239664e250/9be1873127042bfa5821.dcm"
    assert p.content_digest(hashlib.sha256(b"abc").hexdigest()) == (
        "8d9a355fc6cc0cd5d92c2de3406f482b9e5880e06480cea28d72beb9dcb18c8f"
    )


def test_sha256_of_files_and_streams(tmp_path):
    from monai_prichexy import weights
    from monai_prichexy.hashing import CHUNK_BYTES, sha256_file, sha256_stream

    data = bytes(range(256)) * (CHUNK_BYTES // 256 * 3 + 7)  # more than three chunks
    path = tmp_path / "blob"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == expected
    assert sha256_stream(io.BytesIO(data), chunk=1000) == expected
    assert weights.sha256_file is sha256_file  # re-exported, not another copy
