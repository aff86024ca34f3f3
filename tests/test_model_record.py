"""The measured record of a shipped model, its verdict, and the statement the CLI prints (issue 11, item 6)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from monai_prichexy.benchmark import summarise
from monai_prichexy.benchmark.model_record import measured_record, records_markdown, verdict
from monai_prichexy.bundle_files import measured_statement

from .test_benchmark import _result

ROOT = Path(__file__).resolve().parents[1]


def _payload(learned_seeds, control_seeds, learned_util=0.95):
    rows = [("real", None, {}), ("m", {}, {}), ("random_deformation_m", {}, {"matched_to": "m"})]
    results = {
        "real": _result(0.80, 0.95, per_seed=(0.80,) * 5),
        "m": _result(sum(learned_seeds) / 5, learned_util, per_seed=learned_seeds),
        "random_deformation_m": _result(sum(control_seeds) / 5, 0.95, per_seed=control_seeds),
    }
    return {"rows": summarise(rows, results),
            "data": {"dataset": "toy-cxr", "image_size": 64, "split_sizes": {"test": 10}},
            "config": {"stages": {"attack": {"seeds": [0, 1, 2, 3, 4]}}}}


def test_a_field_no_better_than_its_random_warp_is_called_not_protective():
    record = measured_record(_payload((0.79, 0.80, 0.81, 0.78, 0.80), (0.78, 0.81, 0.80, 0.79, 0.82)), "m")
    assert record["real"]["worst_case_auc_pct"] == 80.0 and record["model"]["worst_case_attacker"] == "siamese"
    assert record["privacy_closure"] == pytest.approx((80 - 79.6) / 30, abs=1e-3)
    assert record["seeds_learned_below_random_warp"] == "3/5" and record["utility"]["retention"] == 1.0
    text = verdict([record])
    table = records_markdown([record])
    assert "| **model** | 79.6 ± 1.0 (siamese) |" in table and table.count("\n") == 5
    assert text.startswith("NOT measured protective") and "79.6 %" in text and "toy-cxr (64 px)" in text


def test_protective_needs_closure_retention_and_every_seed_below_the_control():
    low = (0.60, 0.61, 0.62, 0.63, 0.64)  # closure (80 - 62) / 30 = 0.6
    assert verdict([measured_record(_payload(low, (0.70,) * 5), "m")]).startswith("measured protective")
    # one seed above its control, or utility lost, is not protective
    assert verdict([measured_record(_payload(low, (0.70, 0.70, 0.70, 0.70, 0.63)), "m")]).startswith("NOT")
    assert verdict([measured_record(_payload(low, (0.70,) * 5, learned_util=0.80), "m")]).startswith("NOT")
    assert verdict([]).startswith("no measured privacy")


def test_record_needs_the_row_and_its_control():
    payload = _payload((0.8,) * 5, (0.8,) * 5)
    with pytest.raises(KeyError, match="nope"):
        measured_record(payload, "nope")
    payload["rows"] = [r for r in payload["rows"] if r["row"] != "random_deformation_m"]
    with pytest.raises(KeyError, match="random-warp control"):
        measured_record(payload, "m")


def test_measured_statement_reads_the_json_beside_the_weights(tmp_path):
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"x")
    assert measured_statement(weights).startswith("no measured privacy on record")
    weights.with_suffix(".json").write_text(json.dumps({"measured": {"verdict": "NOT measured protective: 81 %"}}))
    assert measured_statement(weights) == "NOT measured protective: 81 %"
    weights.with_suffix(".json").write_text("{not json")
    assert measured_statement(weights).startswith("no measured privacy on record")


def test_shipped_model_carries_its_measured_verdict():
    """The bundle's model.json states what the shipped weights were measured to do, with the numbers."""
    meta = json.loads((ROOT / "bundle" / "models" / "model.json").read_text())
    measured = meta["measured"]
    assert {r["dataset"] for r in measured["records"]} >= {"kermany-pediatric-cxr", "nih-cxr14-subset"}
    for record in measured["records"]:
        assert len(record["attack_seeds"]) >= 5 and set(record["model"]["auc_pct_by_attacker"]) >= {"siamese", "metric", "pixel"}
        assert str(record["model"]["worst_case_auc_pct"]) in measured["verdict"]
    assert measured["verdict"] == verdict(measured["records"])
    assert meta["budget_px"] is not None and meta["budget_px"] <= 1.28


def test_ship_model_script_writes_weights_record_and_checksum(tmp_path):
    import torch

    from monai_prichexy.engines.handlers import export_bundle_model
    from monai_prichexy.networks import FlowFieldGenerator, PriCheXyNet
    from monai_prichexy.weights import sha256_file

    torch.manual_seed(0)
    source = export_bundle_model(PriCheXyNet(FlowFieldGenerator(init_features=4), mu=0.01, working_size=32, budget_px=1.28),
                                 tmp_path / "trained" / "candidate.pt")
    bench = tmp_path / "benchmark.json"
    bench.write_text(json.dumps(_payload((0.79,) * 5, (0.80,) * 5)))
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "metadata.json").write_text(json.dumps({"model_sha256": "0" * 64}))
    out = bundle / "models" / "model.pt"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "ship_model.py"), "--checkpoint", str(source), "--out", str(out),
                    "--measured", f"{bench}:m"], check=True, capture_output=True)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["budget_px"] == pytest.approx(1.28) and meta["source_checkpoint"] == "candidate.pt"
    assert meta["measured"]["verdict"].startswith("NOT measured protective")
    assert json.loads((bundle / "configs" / "metadata.json").read_text())["model_sha256"] == sha256_file(out)
    assert measured_statement(out) == meta["measured"]["verdict"]
