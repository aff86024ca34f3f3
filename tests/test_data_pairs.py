"""Tests for monai_prichexy.data.pairs: verification pair sampling."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from monai_prichexy.data import (
    CXR14Record,
    VerificationPair,
    check_pairs_within_split,
    make_splits,
    pair_patient_ids,
    read_chestxray14_table,
    read_pairs,
    sample_split_pairs,
    sample_verification_pairs,
    split_patients,
    write_pairs,
)


def _records(images_per_patient: list[int]) -> list[CXR14Record]:
    out = []
    for p, n in enumerate(images_per_patient, start=1):
        for f in range(n):
            out.append(CXR14Record(f"{p:08d}_{f:03d}.png", f"{p:08d}", f, np.zeros(14, np.float32)))
    return out


def _check_pairs(pairs, records):
    pid = {r.image: r.patient_id for r in records}
    keys = set()
    for a, b, y in pairs:
        assert a != b, "self-pair"
        assert y == int(pid[a] == pid[b])
        key = frozenset((a, b))
        assert key not in keys, "duplicate pair"
        keys.add(key)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_all_positives_balanced(seed):
    recs = _records([1, 2, 3, 5, 1, 4, 1, 1])
    pairs = sample_verification_pairs(recs, seed=seed)
    _check_pairs(pairs, recs)
    n_pos = sum(y for *_, y in pairs)
    assert n_pos == 1 + 3 + 10 + 6
    assert len(pairs) == 2 * n_pos
    assert all(isinstance(p, VerificationPair) for p in pairs)


def test_single_image_patients_only_in_negatives():
    recs = _records([1, 3, 1, 4])
    pairs = sample_verification_pairs(recs, seed=0)
    singles = {"00000001_000.png", "00000003_000.png"}
    for a, b, y in pairs:
        if y == 1:
            assert a not in singles and b not in singles


def test_reproducible_and_order_independent():
    recs = _records([3, 4, 1, 2, 6, 2])
    a = sample_verification_pairs(recs, 20, seed=11)
    b = sample_verification_pairs(list(reversed(recs)), 20, seed=11)
    c = sample_verification_pairs(recs, 20, seed=12)
    assert a == b
    assert a != c


def test_num_pairs_and_shortage_warning():
    recs = _records([2, 2, 3, 1, 1])
    pairs = sample_verification_pairs(recs, 6, seed=0)
    assert len(pairs) == 6 and sum(p.label for p in pairs) == 3
    with pytest.warns(UserWarning, match="only 5 exist"):
        pairs = sample_verification_pairs(recs, 100, seed=0)
    assert len(pairs) == 10


def test_cap_per_patient():
    recs = _records([66, 3, 2, 2, 1, 5])
    pairs = sample_verification_pairs(recs, seed=0, max_positive_per_patient=4)
    _check_pairs(pairs, recs)
    per_patient = Counter(a[:8] for a, b, y in pairs if y == 1)
    assert per_patient["00000001"] == 4 and per_patient["00000002"] == 3 and per_patient["00000006"] == 4
    assert sum(p.label for p in pairs) * 2 == len(pairs)
    with pytest.raises(ValueError):
        sample_verification_pairs(recs, max_positive_per_patient=0)


def test_dense_negative_regime():
    # one dominant patient: few different-patient pairs exist, so negatives are enumerated
    recs = _records([10, 1])
    with pytest.warns(UserWarning, match="different-patient pairs"):
        pairs = sample_verification_pairs(recs, seed=0)
    _check_pairs(pairs, recs)
    assert sum(p.label for p in pairs) == 10 and len(pairs) == 20


def test_degenerate_inputs():
    assert sample_verification_pairs([], seed=0) == []
    assert sample_verification_pairs(_records([1]), seed=0) == []
    assert sample_verification_pairs(_records([1, 1, 1]), seed=0) == []  # no positives -> nothing balanced


def test_never_across_splits():
    recs = _records([int(n) for n in np.random.default_rng(0).integers(1, 7, size=60)])
    splits = split_patients(recs, seed=4)
    per_split = sample_split_pairs(splits, num_pairs={"train": 100, "val": 20, "test": 30}, seed=1)
    for name, pairs in per_split.items():
        own = {r.image for r in splits[name]}
        assert all(a in own and b in own for a, b, _ in pairs)
        _check_pairs(pairs, recs)
        check_pairs_within_split(pairs, splits)
    assert len(per_split["val"]) <= 20
    # per-split generators: dropping one split leaves the others unchanged
    fewer = sample_split_pairs({"test": splits["test"]}, num_pairs=30, seed=1)
    assert fewer["test"] == per_split["test"]
    leak = [VerificationPair(splits["train"][0].image, splits["test"][0].image, 0)]
    with pytest.raises(ValueError, match="different splits"):
        check_pairs_within_split(leak, splits)


def test_file_round_trip(tmp_path):
    recs = _records([3, 2, 4, 1])
    pairs = sample_verification_pairs(recs, seed=0)
    path = write_pairs(tmp_path / "pairs" / "test.csv", pairs)
    assert path.read_text().splitlines()[0] == "image1,image2,label"
    assert read_pairs(path) == pairs
    assert pair_patient_ids(pairs[:1], recs)[0] == (pairs[0].image1[:8], pairs[0].image2[:8])


def test_read_pairs_validates(tmp_path):
    (tmp_path / "a.csv").write_text("image1,image2,label\na.png,b.png,2\n")
    with pytest.raises(ValueError, match="line 2: label must be 0 or 1"):
        read_pairs(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("image1,image2,label\na.png,a.png,1\n")
    with pytest.raises(ValueError, match="self-pair"):
        read_pairs(tmp_path / "b.csv")


@pytest.mark.shared_data
def test_full_scale_pairs(shared_data):
    recs = read_chestxray14_table(shared_data / "Data_Entry_2017_v2020.csv.gz")
    splits = make_splits(recs, seed=0)
    pairs = sample_split_pairs(splits, seed=0, max_positive_per_patient=5)
    for name, ps in pairs.items():
        assert sum(p.label for p in ps) * 2 == len(ps) > 5_000
    test_pairs = pairs["test"]
    check_pairs_within_split(test_pairs, splits)
    _check_pairs(test_pairs, splits["test"])


@pytest.mark.shared_data
def test_subset_test_pairs_cap(shared_data):
    root = shared_data / "nih-cxr14-subset"
    splits = make_splits(read_chestxray14_table(root / "labels.csv"), split_file=root / "splits.csv")
    full = sample_verification_pairs(splits["test"], seed=0)
    capped = sample_verification_pairs(splits["test"], seed=0, max_positive_per_patient=10)
    top = Counter(pid for (pid, _), p in zip(pair_patient_ids(full, splits["test"]), full) if p.label)
    assert top.most_common(1)[0][0] == "00000181"
    assert top["00000181"] == 66 * 65 // 2
    top_c = Counter(pid for (pid, _), p in zip(pair_patient_ids(capped, splits["test"]), capped) if p.label)
    assert max(top_c.values()) == 10
