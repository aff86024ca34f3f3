"""The report's numbers (``monai-prichexy report``) against stub networks with known outputs.

Every image carries a code: its first ``4 * k`` columns are white, the rest black, so the
network input (min-max view, resized to 256, min-max) has mean ``k / 16``. The stub verifier
embeds an image as its code and scores a pair ``p(same) = 0.9 - |code1 - code2|``; the stub
classifier gives finding ``j`` the probability ``code + 0.06 * (j - 6.5)`` (clipped). After a
real ``anonymize`` run the anonymized copies are replaced by images with chosen codes, so each
copy's pairing, each same-patient probability, each reference probability (copy vs the
previous *paired* original), the linkage AUC (Mann-Whitney by hand), the probability
differences and the label agreement at a threshold follow by hand from the codes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from monai_prichexy.cli import main
from monai_prichexy.dicom import DeidKey
from monai_prichexy.networks import FlowFieldGenerator, PriCheXyNet
from monai_prichexy.weights import save_checkpoint
from tests.test_pipeline_support import write_png

#: original code (in sixteenths) of each original file, in walk (name) order
ORIGINAL = {"a0.png": 1, "a1.png": 3, "a2.png": 5, "a3.png": 7, "a4.png": 9, "a5.png": 11, "a6.png": 13, "a7.png": 15}
#: code of each anonymized copy written over the output (a3: original changed; a5: copy deleted)
ANONYMIZED = {"a0.png": 2, "a1.png": 14, "a2.png": 5, "a4.png": 1, "a6.png": 12, "a7.png": 8}
PAIRED = ["a0.png", "a1.png", "a2.png", "a4.png", "a6.png", "a7.png"]


def coded_image(k: int) -> np.ndarray:
    arr = np.zeros((64, 64), np.uint8)
    arr[:, : 4 * k] = 255
    return arr


def _code(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.mean(dim=(1, 2, 3)) * 16)[:, None] / 16


class StubVerifier(nn.Module):
    def embed(self, x):
        return _code(x)

    def score_embeddings(self, e1, e2):
        p = 0.9 - (e1 - e2).abs()
        return torch.log(p / (1 - p))


def finding_probs(code: float) -> np.ndarray:
    return np.clip(code + 0.06 * (np.arange(14) - 6.5), 0.02, 0.98)


class StubClassifier(nn.Module):
    def forward(self, x):
        p = torch.as_tensor(np.stack([finding_probs(float(c)) for c in _code(x)[:, 0]]), dtype=torch.float64)
        return torch.log(p / (1 - p)).float()


def _auc(pos: list[float], neg: list[float]) -> float:
    """Mann-Whitney: P(pos > neg) + P(pos == neg) / 2."""
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def expected(threshold: float) -> dict:
    """Per-image numbers from the codes alone."""
    rows, previous = [], None
    for name in PAIRED:
        o, a = ORIGINAL[name] / 16, ANONYMIZED[name] / 16
        po, pa = finding_probs(o), finding_probs(a)
        assert np.abs(np.concatenate([po, pa]) - threshold).min() > 1e-3  # no probability on the threshold
        agree = (po >= threshold) == (pa >= threshold)
        rows.append({
            "p_same": 0.9 - abs(o - a),
            "p_ref": None if previous is None else 0.9 - abs(previous - a),
            "mean_abs_diff": float(np.abs(po - pa).mean()),
            "max_abs_diff": float(np.abs(po - pa).max()),
            "agreement": float(agree.mean()),
            "all_agree": bool(agree.all()),
        })
        previous = o
    return rows


@pytest.fixture(scope="module")
def anonymized(tmp_path_factory):
    """Originals, a real anonymize run, then the copies replaced by images with chosen codes."""
    root = tmp_path_factory.mktemp("report")
    src, out, key_file = root / "in", root / "out", root / "k.key"
    for name, k in ORIGINAL.items():
        write_png(src / name, coded_image(k))
    torch.manual_seed(0)  # a generator that barely moves anything, so that each copy keeps its code
    weights = save_checkpoint(root / "g.pt", PriCheXyNet(FlowFieldGenerator(init_features=2), mu=1e-4,
                                                         smoothing="displacement", working_size=32))
    assert main(["anonymize", str(src), str(out), "--weights", str(weights), "--key-file", str(key_file), "--new-key",
                 "--no-progress"]) == 0
    from monai_prichexy.pipeline.manifest import read_manifest

    outputs = [r["output"] for r in read_manifest(out / ".prichexy" / "manifest.jsonl") if r["status"] == "ok"]
    assert len(outputs) == len(ORIGINAL)
    by_code = {}
    from PIL import Image

    for rel in outputs:  # a copy keeps its original's code (a 0.003-px deformation): find its original
        arr = np.asarray(Image.open(out / rel), dtype=np.float64)
        by_code[int(round(arr.mean() / 255 * 16))] = rel
    copies = {name: by_code[k] for name, k in ORIGINAL.items()}
    for name, k in ANONYMIZED.items():
        write_png(out / copies[name], coded_image(k))
    write_png(src / "a3.png", coded_image(ORIGINAL["a3.png"]) // 2 + 1)  # the original changed since
    (out / copies["a5.png"]).unlink()  # the copy went missing
    write_png(src / "b_new.png", coded_image(4))  # never anonymized
    (root / "v.pt").write_bytes(b"stub verifier")
    (root / "c.pt").write_bytes(b"stub classifier")
    return src, out, DeidKey.from_file(key_file), root


@pytest.fixture()
def stubs(monkeypatch):
    import monai_prichexy.pipeline.report as report

    nets = {"SiameseVerifier": StubVerifier(), "AbnormalityClassifier": StubClassifier()}
    monkeypatch.setattr(report, "_load", lambda path, network, sha, cls: (nets[network], {}))


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_report_numbers_follow_from_the_stub_outputs(anonymized, stubs, tmp_path, threshold):
    from monai_prichexy.pipeline.report import build_report

    src, out, key, root = anonymized
    result = build_report(src, out, root / "v.pt", root / "c.pt", tmp_path / "r", key, threshold=threshold, progress=False)
    summary = result.summary
    rows = expected(threshold)
    assert summary["counts"] == {
        "paired": 6,
        "original changed since anonymization (left out)": 1,
        "anonymized file missing (left out)": 1,
        "not anonymized (failed, skipped or not processed)": 1,
    }
    assert summary["threshold"] == threshold
    assert set(summary["groups"]) == {"all", "png"}
    g = summary["groups"]["all"]
    same = [r["p_same"] for r in rows]
    ref = [r["p_ref"] for r in rows[1:]]
    assert g["p_same_patient"]["n"] == 6 and g["p_same_patient_reference"]["n"] == 5
    assert g["p_same_patient"]["mean"] == pytest.approx(sum(same) / 6, abs=1e-6)
    assert g["p_same_patient"]["median"] == pytest.approx(statistics.median(same), abs=1e-6)
    assert g["p_same_patient_reference"]["mean"] == pytest.approx(sum(ref) / 5, abs=1e-6)
    assert g["fraction_linked_at_0.5"] == pytest.approx(sum(p >= 0.5 for p in same) / 6)
    assert g["linkage_auc"] == pytest.approx(_auc(same, ref), abs=1e-9)
    assert g["linkage_auc"] == pytest.approx(18 / 30)  # by hand: 18 of the 30 (copy, reference) pairs won
    assert g["classifier_mean_abs_diff"]["mean"] == pytest.approx(np.mean([r["mean_abs_diff"] for r in rows]), abs=1e-6)
    assert g["label_agreement"]["mean"] == pytest.approx(np.mean([r["agreement"] for r in rows]), abs=1e-9)
    assert g["fraction_all_labels_agree"] == pytest.approx(np.mean([r["all_agree"] for r in rows]))

    table = list(csv.DictReader(io.StringIO(result.table.read_text())))
    assert len(table) == 6
    for got, want in zip(table, rows):
        assert float(got["p_same_patient"]) == pytest.approx(want["p_same"], abs=2e-6)
        assert (got["p_same_patient_reference"] == "") is (want["p_ref"] is None)
        if want["p_ref"] is not None:
            assert float(got["p_same_patient_reference"]) == pytest.approx(want["p_ref"], abs=2e-6)
        assert float(got["classifier_max_abs_diff"]) == pytest.approx(want["max_abs_diff"], abs=2e-6)
        assert float(got["label_agreement"]) == pytest.approx(want["agreement"], abs=1e-6)
        assert got["all_labels_agree"] == str(want["all_agree"])
    md = result.markdown.read_text()
    assert f"label threshold {threshold}" in md and f"| {18 / 30:.3f} |" in md
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["groups"]["all"]["linkage_auc"] == g["linkage_auc"]


def test_the_label_agreement_depends_on_the_threshold():
    """Guard for the parametrisation above: the two thresholds give different expected agreements."""
    a, b = expected(0.5), expected(0.3)
    assert [r["agreement"] for r in a] != [r["agreement"] for r in b]
    assert math.isclose(_auc([1.0], [0.0]), 1.0) and math.isclose(_auc([0.5], [0.5]), 0.5)


def test_report_records_ssim_and_the_batch_generators_displacement(anonymized, stubs, tmp_path):
    """Issue 10 item 4: per file and per set, SSIM and the displacement of the generator that made the batch."""
    from monai.metrics import SSIMMetric

    from monai_prichexy.pipeline.report import ReportError, build_report, load_view, network_input
    from monai_prichexy.weights import load_generator

    src, out, key, root = anonymized
    result = build_report(src, out, root / "v.pt", root / "c.pt", tmp_path / "r", key, progress=False,
                          weights=root / "g.pt")
    table = {row["output"]: row for row in csv.DictReader(io.StringIO(result.table.read_text()))}
    generator, _ = load_generator(root / "g.pt")
    net = PriCheXyNet(generator, mu=1e-4, smoothing="displacement", working_size=32).eval()
    from monai_prichexy.pipeline.manifest import read_manifest

    outputs = {r["id"]: r["output"] for r in read_manifest(out / ".prichexy" / "manifest.jsonl") if r["status"] == "ok"}
    from monai_prichexy.pipeline.naming import Pseudonymizer

    ssim = SSIMMetric(spatial_dims=2, data_range=1.0, win_size=7)
    means = []
    for name in PAIRED:
        rel = outputs[Pseudonymizer(key).file_id(name)]
        x = network_input(load_view(src / name, "png"))
        y = network_input(load_view(out / rel, "png"))
        with torch.no_grad():
            d = net.sampling_grid(x)
        side = d.shape[-1]  # the grid at the view's size (256), x first
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, side), torch.linspace(-1, 1, side), indexing="ij")
        length = ((d - torch.stack((xs, ys))[None]) ** 2).sum(1).sqrt().double() * 255 / 2  # px at 256
        row = table[rel]
        assert float(row["displacement_mean_px_256"]) == pytest.approx(float(length.mean()), rel=1e-3)
        assert float(row["displacement_max_px_256"]) == pytest.approx(float(length.max()), rel=1e-3)
        assert float(row["ssim"]) == pytest.approx(float(ssim(y, x)), abs=1e-5)
        assert (float(row["ssim"]) == pytest.approx(1.0, abs=1e-6)) is (ORIGINAL[name] == ANONYMIZED[name])
        means.append(float(length.mean()))
    g = result.summary["groups"]["all"]
    assert g["displacement_mean_px_256"]["mean"] == pytest.approx(np.mean(means), rel=1e-3)
    assert g["folded_share"]["max"] == 0.0 and g["border_frame_share"] == 0.0
    assert "measured with the generator" in result.summary["displacement_note"]
    assert "## Image change" in result.markdown.read_text()

    # default weights (the bundle's) did not make this batch: no displacement, said so; other weights are refused
    plain = build_report(src, out, root / "v.pt", root / "c.pt", tmp_path / "r2", key, progress=False)
    assert plain.summary["groups"]["all"]["displacement_mean_px_256"]["n"] == 0
    assert plain.summary["displacement_note"].startswith("not measured")
    assert plain.summary["groups"]["all"]["ssim"]["n"] == 6
    torch.manual_seed(1)
    other = save_checkpoint(tmp_path / "other.pt", PriCheXyNet(FlowFieldGenerator(init_features=2), mu=1e-4, working_size=32))
    with pytest.raises(ReportError, match="not the generator that made this batch"):
        build_report(src, out, root / "v.pt", root / "c.pt", tmp_path / "r3", key, progress=False, weights=other)
