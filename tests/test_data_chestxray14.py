"""Tests for monai_prichexy.data.chestxray14: table parsing and patient-wise splits."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from monai_prichexy.data import (
    CXR14_LABELS,
    apply_split_file,
    check_patient_disjoint,
    label_matrix,
    load_split,
    make_splits,
    normalize_patient_id,
    parse_finding_labels,
    read_chestxray14_table,
    read_split_file,
    split_by_lists,
    split_patients,
    write_split_file,
)

OFFICIAL_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n"
)


def _official_rows(n_patients: int = 40, seed: int = 0) -> list[tuple[str, str, int, int]]:
    rng = np.random.default_rng(seed)
    rows = []
    for pid in range(1, n_patients + 1):
        for fu in range(int(rng.integers(1, 5))):
            k = int(rng.integers(0, 3))
            labels = "No Finding" if k == 0 else "|".join(sorted(rng.choice(CXR14_LABELS, size=k, replace=False)))
            rows.append((f"{pid:08d}_{fu:03d}.png", labels, fu, pid))
    return rows


def _write_official(path, rows, compress=False):
    text = OFFICIAL_HEADER + "".join(f"{img},{lab},{fu},{pid},50,M,PA,1024,1024,0.143,0.143\n" for img, lab, fu, pid in rows)
    if compress:
        with gzip.open(path, "wt", newline="") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def _write_subset(path, rows):
    path.write_text("image,patient_id,follow_up,labels\n" + "".join(f"{i},{p:08d},{f},{l}\n" for i, l, f, p in rows))
    return path


def test_label_order_constant():
    assert len(CXR14_LABELS) == 14 and CXR14_LABELS[0] == "Atelectasis" and CXR14_LABELS[-1] == "Hernia"


@pytest.mark.parametrize(
    "text, positives",
    [
        ("No Finding", []),
        ("Cardiomegaly", ["Cardiomegaly"]),
        ("Cardiomegaly|Emphysema", ["Cardiomegaly", "Emphysema"]),
        ("Pleural_Thickening|Hernia|Atelectasis", ["Atelectasis", "Pleural_Thickening", "Hernia"]),
    ],
)
def test_parse_finding_labels(text, positives):
    vec = parse_finding_labels(text)
    assert vec.dtype == np.float32 and vec.shape == (14,)
    assert [CXR14_LABELS[i] for i in np.flatnonzero(vec)] == sorted(positives, key=CXR14_LABELS.index)


def test_patient_id_padding():
    assert normalize_patient_id(1) == "00000001"
    assert normalize_patient_id(" 30805 ") == "00030805"
    assert normalize_patient_id("ABC-1") == "ABC-1"


@pytest.mark.parametrize("compress", [False, True])
def test_read_official_table(tmp_path, compress):
    rows = _official_rows()
    path = _write_official(tmp_path / ("Data_Entry_2017.csv.gz" if compress else "Data_Entry_2017.csv"), rows, compress)
    recs = read_chestxray14_table(path)
    assert len(recs) == len(rows)
    for rec, (img, lab, fu, pid) in zip(recs, rows):
        assert rec.image == img and rec.follow_up == fu and rec.patient_id == f"{pid:08d}"
        assert rec.image.startswith(rec.patient_id)
        np.testing.assert_array_equal(rec.labels, parse_finding_labels(lab))
    assert label_matrix(recs).shape == (len(rows), 14)


def test_read_subset_table_same_as_official(tmp_path):
    rows = _official_rows(10)
    a = read_chestxray14_table(_write_official(tmp_path / "a.csv", rows))
    b = read_chestxray14_table(_write_subset(tmp_path / "labels.csv", rows))
    assert [(r.image, r.patient_id, r.follow_up) for r in a] == [(r.image, r.patient_id, r.follow_up) for r in b]
    np.testing.assert_array_equal(label_matrix(a), label_matrix(b))


def test_unknown_label_names_file_and_line(tmp_path):
    rows = _official_rows(5)
    rows[3] = (rows[3][0], "Cardiomegaly|Pneumo", rows[3][2], rows[3][3])
    path = _write_official(tmp_path / "bad.csv", rows)
    with pytest.raises(ValueError, match=r"bad\.csv, line 5: unknown finding label 'Pneumo'"):
        read_chestxray14_table(path)


def test_bad_header_and_duplicates(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="unrecognised header"):
        read_chestxray14_table(tmp_path / "x.csv")
    rows = _official_rows(3)
    with pytest.raises(ValueError, match="listed twice"):
        read_chestxray14_table(_write_official(tmp_path / "dup.csv", rows + rows[:1]))


def _pids(recs):
    return {r.patient_id for r in recs}


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_random_split_patient_wise(tmp_path, seed):
    recs = read_chestxray14_table(_write_official(tmp_path / "t.csv", _official_rows(100)))
    splits = split_patients(recs, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=seed)
    assert set(splits) == {"train", "val", "test"}
    check_patient_disjoint(splits)
    assert sum(len(v) for v in splits.values()) == len(recs)
    assert [len(_pids(splits[k])) for k in ("train", "val", "test")] == [60, 20, 20]
    # reproducible and independent of record order
    again = split_patients(list(reversed(recs)), [0.6, 0.2, 0.2], seed=seed)
    assert {k: _pids(v) for k, v in again.items()} == {k: _pids(v) for k, v in splits.items()}


def test_random_split_rejects_bad_fractions(tmp_path):
    recs = read_chestxray14_table(_write_official(tmp_path / "t.csv", _official_rows(5)))
    with pytest.raises(ValueError, match="sum to 1"):
        split_patients(recs, {"train": 0.5, "test": 0.2})


def test_split_by_official_lists(tmp_path):
    rows = _official_rows(50)
    recs = read_chestxray14_table(_write_official(tmp_path / "t.csv", rows))
    test_pids = {f"{p:08d}" for p in range(1, 11)}
    (tmp_path / "test_list.txt").write_text("\n".join(r.image for r in recs if r.patient_id in test_pids) + "\n")
    (tmp_path / "train_val_list.txt").write_text("\n".join(r.image for r in recs if r.patient_id not in test_pids))
    splits = split_by_lists(recs, tmp_path / "train_val_list.txt", tmp_path / "test_list.txt", val_fraction=0.25, seed=3)
    check_patient_disjoint(splits)
    assert _pids(splits["test"]) == test_pids
    assert len(_pids(splits["val"])) == 10 and len(_pids(splits["train"])) == 30
    # a patient with images in both lists is refused
    counts = {}
    for r in recs:
        counts.setdefault(r.patient_id, []).append(r.image)
    pid = next(p for p in sorted(test_pids) if len(counts[p]) > 1)
    moved = counts[pid][0]
    bad_tv = [r.image for r in recs if r.patient_id not in test_pids] + [moved]
    bad_te = [r.image for r in recs if r.patient_id in test_pids and r.image != moved]
    with pytest.raises(ValueError, match="patients have images in both"):
        split_by_lists(recs, bad_tv, bad_te)
    with pytest.raises(ValueError, match="both the train_val and the test list"):
        split_by_lists(recs, [recs[0].image], [recs[0].image])


def test_split_file_round_trip(tmp_path):
    recs = read_chestxray14_table(_write_official(tmp_path / "t.csv", _official_rows(30)))
    splits = split_patients(recs, seed=5)
    path = write_split_file(tmp_path / "out" / "splits.csv", splits)
    assert path.read_text().splitlines()[0] == "patient_id,split"
    mapping = read_split_file(path)
    assert len(mapping) == 30
    again = apply_split_file(recs, path)
    assert {k: [r.image for r in v] for k, v in again.items()} == {k: [r.image for r in v] for k, v in splits.items()}
    via_make = make_splits(recs, split_file=path)
    assert {k: len(v) for k, v in via_make.items()} == {k: len(v) for k, v in splits.items()}
    assert [r.image for r in load_split(tmp_path / "t.csv", "val", split_file=path)] == [r.image for r in splits["val"]]


def test_split_file_rejects_patient_in_two_splits(tmp_path):
    (tmp_path / "s.csv").write_text("patient_id,split\n1,train\n00000001,test\n")
    with pytest.raises(ValueError, match="00000001 is in both"):
        read_split_file(tmp_path / "s.csv")


def test_check_patient_disjoint_detects_leak(tmp_path):
    recs = read_chestxray14_table(_write_official(tmp_path / "t.csv", _official_rows(5)))
    with pytest.raises(ValueError, match="is in both split"):
        check_patient_disjoint({"train": recs, "test": recs[:1]})


@pytest.mark.shared_data
def test_full_official_table(shared_data):
    recs = read_chestxray14_table(shared_data / "Data_Entry_2017_v2020.csv.gz")
    assert len(recs) == 112_120
    assert len(_pids(recs)) == 30_805
    first = recs[0]
    assert (first.image, first.patient_id, first.follow_up) == ("00000001_000.png", "00000001", 0)
    assert first.finding_names == ("Cardiomegaly",)
    assert all(r.image.startswith(r.patient_id + "_") for r in recs[:1000])
    counts = label_matrix(recs).sum(0)
    assert counts[CXR14_LABELS.index("Hernia")] == 227 and counts[CXR14_LABELS.index("Infiltration")] == 19_894
    splits = make_splits(recs, seed=0)
    check_patient_disjoint(splits)
    assert sum(len(v) for v in splits.values()) == 112_120


@pytest.mark.shared_data
def test_subset_fixed_split(shared_data):
    root = shared_data / "nih-cxr14-subset"
    recs = read_chestxray14_table(root / "labels.csv")
    assert len(recs) == 1050 and len(_pids(recs)) == 285
    splits = make_splits(recs, split_file=root / "splits.csv")
    assert list(splits) == ["train", "val", "test"]
    assert {k: len(v) for k, v in splits.items()} == {"train": 725, "val": 120, "test": 205}
    assert {k: len(_pids(v)) for k, v in splits.items()} == {"train": 200, "val": 28, "test": 57}
    assert int((label_matrix(recs).sum(1) == 0).sum()) == 535
