"""The benchmark on tiny data writes JSON + Markdown + PNG with all rows, and resumes."""

from __future__ import annotations

import json
import math

import pytest

from monai_prichexy.benchmark import PAPER_TABLE1, main, markdown_table, run_benchmark

from .test_engines_common import tiny_data, tiny_profile  # noqa: F401

ROWS = ["real", "prichexy_mu0.01", "random_deformation_mu0.01", "privacy_net", "dppix_b1", "dppix_b2", "dppix_b4",
        "dppix_b8"]


@pytest.mark.slow
def test_benchmark_writes_table_json_plot_and_resumes(tiny_data, tmp_path):
    out = tmp_path / "bench"
    payload = run_benchmark(tiny_profile(tiny_data, out))
    for name in ("benchmark.json", "benchmark.md", "benchmark.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "benchmark.png").read_bytes()[:4] == b"\x89PNG"
    rows = {r["row"]: r for r in payload["rows"]}
    assert list(rows) == ROWS
    real = rows["real"]
    for r in rows.values():
        assert r["n_attack_seeds"] == 2
        for key in ("ver_pair_mean", "ver_pair_std", "ver_patient_mean", "map_at_r_mean", "p_at_1_mean",
                    "cls_mean", "any_auc"):
            assert r[key] is not None and math.isfinite(r[key]), (r["row"], key)
        assert r["ver_pair_mean"] == pytest.approx(100 * payload["results"][r["row"]]["privacy"]["auc_pair"]["mean"])
        if real["ver_pair_mean"] > 50:
            expected = (real["ver_pair_mean"] - r["ver_pair_mean"]) / (real["ver_pair_mean"] - 50)
            assert r["privacy_closure_pair"] == pytest.approx(expected)
        else:  # undefined at or below chance
            assert math.isnan(r["privacy_closure_pair"])
        if real["cls_mean"] > 50:
            assert r["utility_retention"] == pytest.approx((r["cls_mean"] - 50) / (real["cls_mean"] - 50))
        else:
            assert math.isnan(r["utility_retention"])
    assert rows["prichexy_mu0.01"]["paper"] == PAPER_TABLE1["prichexy_mu0.01"]
    control = rows["random_deformation_mu0.01"]
    assert control["matched_to_mu"] == 0.01 and 0 < control["displacement"]["mean_abs"] <= 0.01
    spec = payload["results"]["random_deformation_mu0.01"]["anonymizer"]
    assert spec["mean_displacement"] == pytest.approx(control["displacement"]["mean_abs"])

    md = (out / "benchmark.md").read_text()
    for label in ("real images", "PriCheXy-Net mu=0.01", "Privacy-Net", "DP-Pix b=8", "random deformation",
                  "pair-weighted", "patient-weighted", "57.7 ± 4.0"):
        assert label in md, label
    saved = json.loads((out / "benchmark.json").read_text())
    assert [r["row"] for r in saved["rows"]] == ROWS and str(tiny_data) not in json.dumps(saved["config"])

    # resumable: nothing is retrained or re-evaluated the second time
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").glob("*.pt")}
    stamps.update({p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")})
    again = run_benchmark(tiny_profile(tiny_data, out))
    assert {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").glob("*.pt")}.items() <= stamps.items()
    assert {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")}.items() <= stamps.items()
    assert [r["ver_pair_mean"] for r in again["rows"]] == [r["ver_pair_mean"] for r in payload["rows"]]


@pytest.mark.slow
def test_benchmark_evaluates_trained_models_with_their_controls(tiny_data, tmp_path):
    """``--model``: a bundle model.pt is evaluated as it is, beside real images and its matched control."""
    import torch

    from monai_prichexy.engines.handlers import export_bundle_model
    from monai_prichexy.networks import FlowFieldGenerator, PriCheXyNet

    from .test_engines_common import TINY_GENERATOR

    torch.manual_seed(0)
    net = PriCheXyNet(FlowFieldGenerator(**TINY_GENERATOR), mu=0.05, working_size=32)
    model = export_bundle_model(net, tmp_path / "models" / "model_a.pt")
    out = tmp_path / "eval"
    from pathlib import Path

    profile = Path(__file__).resolve().parents[1] / "configs" / "benchmark_cpu.json"
    tiny = tiny_profile(tiny_data, out)
    overrides = {"data": tiny["data"], "networks": tiny["networks"], "stages": tiny["stages"],
                 "benchmark.n_bootstrap": 20, "num_threads": None}
    main(["--config", str(profile), "--output_dir", str(out), "--model", str(model), "--dataset_dir", str(tiny_data),
          "--set", *[f"{k}={json.dumps(v)}" for k, v in overrides.items()]])
    saved = json.loads((out / "benchmark.json").read_text())
    rows = {r["row"]: r for r in saved["rows"]}
    assert list(rows) == ["real", "model_model_a", "random_deformation_model_a"]
    learned, control = rows["model_model_a"], rows["random_deformation_model_a"]
    assert learned["mu"] == pytest.approx(0.05) and learned["model"] == "model_a.pt"
    assert 0 < learned["displacement"]["mean_abs"] <= 0.05
    spec = saved["results"]["random_deformation_model_a"]["anonymizer"]
    assert spec["kind"] == "random_deformation"
    assert spec["mean_displacement"] == pytest.approx(learned["displacement"]["mean_abs"])
    assert saved["results"]["model_model_a"]["anonymizer"]["checkpoint"] == "model_a.pt"  # no machine path
    md = (out / "benchmark.md").read_text()
    assert "PriCheXy-Net model_a.pt (mu=0.05)" in md and "random deformation (as model_a.pt)" in md
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        run_benchmark(tiny_profile(tiny_data, out), models=[tmp_path / "nope.pt"])


def test_markdown_table_formats_rows():
    row = {"method": "x", "ver_pair_mean": 60.0, "ver_pair_std": 2.0, "ver_patient_mean": 55.0, "ver_patient_std": None,
           "cls_mean": 70.0, "cls_ci": [65.0, 75.0], "any_auc": 72.0, "any_ci": None, "map_at_r_mean": 10.0,
           "map_at_r_std": 1.0, "p_at_1_mean": 20.0, "p_at_1_std": 3.0, "privacy_closure_pair": 0.5,
           "privacy_closure_patient": None, "utility_retention": 0.9, "utility_retention_any": 1.0, "paper": None}
    md = markdown_table([row])
    line = md.splitlines()[2]
    assert line.startswith("| x | 60.0 ± 2.0 | 55.0 | 70.0 [65.0, 75.0] | 72.0 | 10.0 ± 1.0 | 20.0 ± 3.0 | 0.50 / - ")


def _row(name, **values):
    row = {"row": name, "method": name, "ver_pair_mean": 60.0, "ver_pair_std": None, "ver_patient_mean": 55.0,
           "ver_patient_std": None, "cls_mean": 70.0, "cls_ci": None, "any_auc": 72.0, "any_ci": None,
           "map_at_r_mean": None, "map_at_r_std": None, "p_at_1_mean": None, "p_at_1_std": None, "paper": None}
    return {**row, **values}


def test_summary_rows_and_table_say_n_a_when_the_real_auc_is_at_or_below_chance():
    """docs/results/cpu64: any-finding AUC 44.9 on real images turned 53.1 into a retention of -0.61."""
    from monai_prichexy.benchmark import _summary_row

    def result(ver, cls, any_auc):
        stat = {"mean": ver / 100, "std": 0.01}
        return {"privacy": {"auc_pair": stat, "auc_patient": stat, "map_at_r": stat, "precision_at_1": stat,
                            "per_seed": [{}, {}]},
                "utility": {"mean_auc": cls / 100, "mean_auc_ci": None, "any_finding_auc": any_auc / 100,
                            "any_finding_ci": None}}

    real = _summary_row("real", result(79.4, 58.1, 44.9), None, {})
    real = _summary_row("real", result(79.4, 58.1, 44.9), real, {})
    anon = _summary_row("dppix_b1", result(52.5, 43.8, 53.1), real, {})
    assert anon["privacy_closure_pair"] == pytest.approx((79.4 - 52.5) / (79.4 - 50))
    assert anon["utility_retention"] == pytest.approx((43.8 - 50) / (58.1 - 50))  # defined: negative is real loss
    assert math.isnan(anon["utility_retention_any"]) and math.isnan(real["utility_retention_any"])
    md = markdown_table([real, anon])
    line = md.splitlines()[3]
    assert "| 0.91 / 0.91 | -0.77 / n/a |" in line, line
    assert "n/a: closure or retention undefined, real-image AUC at or below chance" in md
    # an older benchmark.json stored the sign-flipped number: the table still says n/a
    stored = {**anon, "utility_retention_any": -0.61}
    assert "-0.61" not in markdown_table([real, stored]) and "| -0.77 / n/a |" in markdown_table([real, stored])
    # nothing undefined: no n/a, no note
    fine = markdown_table([_row("real"), _row("x", utility_retention=0.5, utility_retention_any=0.25)])
    assert "n/a" not in fine and "| 0.50 / 0.25 |" in fine


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "--dataset_dir" in capsys.readouterr().out


def test_profiles_are_complete():
    from pathlib import Path

    from monai_prichexy.engines.experiment import DEFAULT_PROFILE, deep_update, load_profile

    configs = Path(__file__).resolve().parents[1] / "configs"
    paper = json.loads((configs / "benchmark_paper.json").read_text())
    # the paper profile is the built-in default, written out
    assert deep_update(DEFAULT_PROFILE, paper) == {**DEFAULT_PROFILE, "output_dir": paper["output_dir"]}
    assert paper["data"]["image_size"] == 256 and paper["stages"]["adversarial"]["max_epochs"] == 250
    assert len(paper["stages"]["attack"]["seeds"]) == 10 and paper["networks"]["verifier"]["backbone"] == "resnet50"
    cpu = load_profile(configs / "benchmark_cpu.json")
    assert cpu["data"]["image_dir"] == "images64" and cpu["data"]["image_size"] == 64
    assert set(cpu) == set(DEFAULT_PROFILE) and cpu["benchmark"]["dppix"]["b"] == [1, 2, 4, 8]
    over = load_profile(configs / "benchmark_cpu.json", {"stages.attack.seeds": [0]})
    assert over["stages"]["attack"]["seeds"] == [0]
