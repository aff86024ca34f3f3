"""``monai-prichexy audit``: patient ids, the split, the numbers by hand, the fallback, the verdict, no PHI out."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_prichexy.cli import main
from monai_prichexy.dicom import DeidKey
from monai_prichexy.networks import FlowFieldGenerator, PriCheXyNet
from monai_prichexy.pipeline import audit
from monai_prichexy.pipeline.pairing import PairedFile
from monai_prichexy.weights import save_checkpoint
from tests.test_pipeline_support import write_png

NEEDLE = "MUSTERMANN"  # a made-up surname in every input file name: it must reach no output
TINY_ATTACKERS = {
    "siamese": {"network": {"backbone": "resnet10", "embedding_dim": 16, "widen_factor": 0.25, "input_size": 32},
                "max_epochs": 1, "batch_size": 16, "patience": None, "select": "last"},
    "metric": {"network": {"backbone": "resnet10", "embedding_dim": 16, "widen_factor": 0.25, "input_size": 32},
               "max_epochs": 1, "batch_size": 16, "m_per_patient": 2},
    "pixel": {},
}


def patient_image(patient: int, k: int) -> np.ndarray:
    """A patient's anatomy (a seeded pattern) plus a little per-image noise: same patient, similar images."""
    base = np.random.default_rng(1000 + patient).random((8, 8))
    img = np.kron(base, np.ones((6, 6))) + 0.05 * np.random.default_rng(patient * 10 + k).random((48, 48))
    return np.clip(img / img.max() * 255, 0, 255).astype(np.uint8)


def make_archive(root: Path, patients: int, images: int, singles: int = 0) -> Path:
    src = root / "in"
    for p in range(patients):
        for k in range(images):
            write_png(src / f"{NEEDLE}{p:03d}_{k:03d}.png", patient_image(p, k))
    for p in range(patients, patients + singles):
        write_png(src / f"{NEEDLE}{p:03d}_000.png", patient_image(p, 0))
    return src


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    src = make_archive(root, patients=20, images=2, singles=4)
    torch.manual_seed(0)
    weights = save_checkpoint(root / "g.pt", PriCheXyNet(FlowFieldGenerator(init_features=2), mu=0.01,
                                                         smoothing="displacement", working_size=32))
    out, key_file = root / "out", root / "k.key"
    assert main(["keygen", str(key_file)]) == 0
    assert main(["anonymize", str(src), str(out), "--weights", str(weights), "--key-file", str(key_file),
                 "--no-progress", "-q"]) == 0
    return src, out, DeidKey.from_file(key_file), weights, root


def _pair(rel: str, kind: str = "png", original: Path = Path("x")) -> PairedFile:
    return PairedFile(original, rel, Path("y"), "out/y.png", kind)


def test_patient_id_from_the_name_from_a_regex_and_from_the_dicom_header(tmp_path):
    assert audit.patient_id(_pair("00000001_000.png"), None) == "00000001"
    assert audit.patient_id(_pair("sub/IM-0001-0001.jpeg"), None) == "IM-0001"
    assert audit.patient_id(_pair("noseparator.png"), None) is None
    assert audit.patient_id(_pair("P7/scan.png"), re.compile(r"^([^/]+)/")) == "P7"
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PatientID = "PAT-42"
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.save_as(tmp_path / "a.dcm", enforce_file_format=True)
    assert audit.patient_id(_pair("x_1.dcm", "dicom", tmp_path / "a.dcm"), None) == "PAT-42"  # header, not the name
    ds.PatientID = ""
    ds.save_as(tmp_path / "b.dcm", enforce_file_format=True)
    assert audit.patient_id(_pair("x_1.dcm", "dicom", tmp_path / "b.dcm"), None) is None


def test_patients_are_split_whole_and_alike():
    patients = [f"p{i // 2}" for i in range(40)] + [f"s{i}" for i in range(10)]
    splits = audit._split_patients(patients, seed=0)
    seen = {}
    for split, idx in splits.items():
        for i in idx:
            assert seen.setdefault(patients[i], split) == split  # no patient in two splits
    assert sorted(i for idx in splits.values() for i in idx) == list(range(50))
    assert audit._multi_patients(patients, splits["train"]) == 10 and audit._multi_patients(patients, splits["test"]) == 7
    assert splits == audit._split_patients(patients, seed=0) and splits != audit._split_patients(patients, seed=1)


def test_precision_at_1_excludes_the_own_source_and_counts_ties_against_the_attacker():
    ids = np.array(["a", "a", "b", "b", "c"])
    scores = np.array([
        [9.0, 5.0, 4.0, 1.0, 0.0],  # own source 9 ignored; best other = a (5) > 4: hit
        [5.0, 9.0, 5.0, 0.0, 0.0],  # a (5) ties b (5): a tie counts as a miss
        [0.0, 0.0, 9.0, 1.0, 2.0],  # b (1) < c (2): miss
        [0.0, 0.0, 3.0, 9.0, 1.0],  # b (3) > 1: hit
        [1.0, 1.0, 1.0, 1.0, 9.0],  # c has no other image: not counted
    ])
    hits, hit_ids = audit._p_at_1_hits(scores, ids)
    assert hits.tolist() == [True, False, False, True] and hit_ids.tolist() == ["a", "a", "b", "b"]
    assert audit._source_linkage(scores) == pytest.approx(1.0)
    scores[1, 0] = 9.0  # copy 1 ties its own original with another: not linked
    assert audit._source_linkage(scores) == pytest.approx(0.8)


def test_the_verdict_uses_the_upper_ci_bound_against_the_threshold():
    worst = {"auc_pair": 0.55, "auc_pair_ci": [0.50, 0.59], "attacker": "metric"}
    assert audit._verdict(worst, 0.60, None, True)["protective"] is True
    assert audit._verdict({**worst, "auc_pair_ci": [0.5, 0.61]}, 0.60, None, True)["protective"] is False
    assert audit._verdict(worst, 0.60, None, False)["protective"] is None
    control = {"worst_case": {"auc_pair": 0.8}}
    assert "random warp of the same displacement: 80.0 %" in audit._verdict(worst, 0.6, control, True)["text"]


def test_audit_trains_fresh_attackers_and_measures_three_conditions(run, tmp_path):
    src, out, key, weights, _ = run
    result = audit.build_audit(src, out, tmp_path / "audit", key, size=32, min_train_patients=4, weights=weights,
                               attackers=TINY_ATTACKERS, n_bootstrap=50, progress=False)
    s = result.summary
    assert s["images"] == 44 and s["patients"] == 24 and s["patients_with_two_or_more_images"] == 20
    assert s["attackers"].startswith("trained afresh") and s["shipped_network_sha256"] == {}
    assert set(s["conditions"]) == {"release", "unaltered", "random_warp"}
    for condition in s["conditions"].values():
        assert set(condition["attackers"]) == {"siamese", "metric", "pixel"}
        w = condition["worst_case"]
        aucs = {name: r["auc_pair"] for name, r in condition["attackers"].items()}
        assert w["auc_pair"] == max(aucs.values()) and w["attacker"] == max(aucs, key=aucs.get)
        assert w["auc_pair_ci"][0] <= w["auc_pair"] <= w["auc_pair_ci"][1]
    # the pixel attacker on unaltered images: each patient's two images are near copies -> linked
    assert s["conditions"]["unaltered"]["attackers"]["pixel"]["auc_pair"] > 0.95
    assert s["displacement"]["interior"]["mean_px_256"] > 0
    assert s["verdict"]["protective"] is False and "NOT PROTECTIVE" in s["verdict"]["text"]
    for path in (result.markdown, result.summary_path, result.figure):
        assert NEEDLE.encode() not in path.read_bytes(), path
    assert sorted(p.name for p in (tmp_path / "audit").iterdir()) == ["audit.md", "before_after.png", "summary.json"]


def test_bootstrap_point_values_match_the_benchmarks_scoring():
    """The audit's own AUC / P@1 (behind its CIs) equal the benchmark's ``score_attack`` on the same scores."""
    from monai_prichexy.engines.attack import score_attack
    from monai_prichexy.engines.release import SplitImages

    rng = np.random.default_rng(0)
    patients = [f"p{i // 3}" for i in range(30)] + [f"s{i}" for i in range(6)]
    names = [f"img{i}.png" for i in range(len(patients))]
    data = audit._AuditData(names, patients, {"test": list(range(len(names)))}, seed=0)
    ids = np.array(patients, dtype=object)
    scores = rng.random((len(names), len(names))) + 0.5 * (ids[:, None] == ids[None, :])
    real = SplitImages(torch.zeros(len(names), 1, 4, 4), torch.zeros(len(names), 1), ids, names)
    reference = score_attack(scores, data, real, "test")
    mine = audit._bootstrap(scores, data, ids, real.index, n=200, seed=0)
    assert mine["auc_pair"] == pytest.approx(reference["auc_pair"], abs=1e-12)
    assert mine["precision_at_1"] == pytest.approx(reference["precision_at_1"], abs=1e-12)
    assert mine["auc_pair_ci"][0] < mine["auc_pair"] < mine["auc_pair_ci"][1]
    assert mine["precision_at_1_ci"][0] <= mine["precision_at_1"] <= mine["precision_at_1_ci"][1]


def test_too_few_patients_uses_the_shipped_networks(run, tmp_path):
    src, out, key, weights, _ = run
    from monai_prichexy.bundle_files import shipped_network
    from monai_prichexy.weights import sha256_file

    result = audit.build_audit(src, out, tmp_path / "a", key, size=32, min_train_patients=100, weights=weights,
                               n_bootstrap=20, progress=False)
    s = result.summary
    assert s["attackers"] == "shipped networks" and s["split_images"]["test"] == 44
    assert s["shipped_network_sha256"]["siamese"] == sha256_file(shipped_network("verifier")[0])
    assert s["shipped_network_sha256"]["metric"] == sha256_file(shipped_network("metric")[0])
    assert any("too few patients" in note for note in s["notes"])
    assert "too few patients" in result.markdown.read_text()


def test_a_single_patient_gives_no_verdict_but_the_own_original_linkage(tmp_path):
    src = make_archive(tmp_path, patients=1, images=4)
    out, key_file = tmp_path / "out", tmp_path / "k.key"
    assert main(["keygen", str(key_file)]) == 0
    assert main(["anonymize", str(src), str(out), "--key-file", str(key_file), "--no-progress", "-q"]) == 0
    status = main(["audit", str(src), str(out), "--key-file", str(key_file), "--out", str(tmp_path / "a"),
                   "--size", "32", "--no-progress"])
    assert status == 1  # no verdict: not protective as far as anyone can tell
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["verdict"]["protective"] is None and "NOT MEASURED" in s["verdict"]["text"]
    assert s["conditions"]["release"]["worst_case"]["source_linkage_p_at_1"] == pytest.approx(1.0)


def test_cli_audit_refuses_bad_arguments_and_a_wrong_key(run, tmp_path, capsys):
    src, out, key, weights, root = run
    base = ["audit", str(src), str(out), "--key-file", str(root / "k.key"), "--out", str(tmp_path / "a")]
    assert main(base + ["--patient-regex", "(["]) == 2
    assert "--patient-regex" in capsys.readouterr().err
    assert main(base + ["--threshold", "0.3"]) == 2
    assert "threshold" in capsys.readouterr().err
    assert main(["audit", str(src), str(out), "--key-file", str(root / "k.key"), "--out", str(out / "inside")]) == 2
    assert "must not be inside" in capsys.readouterr().err
    assert main(["keygen", str(tmp_path / "other.key")]) == 0
    assert main(["audit", str(src), str(out), "--key-file", str(tmp_path / "other.key"), "--out", str(tmp_path / "b")]) == 2
    assert "key does not match" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
