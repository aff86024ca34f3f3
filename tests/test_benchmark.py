"""The benchmark on tiny data writes JSON + Markdown + PNG with all rows, resumes, and renders again from JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from monai_prichexy.benchmark import (
    PAPER_POINT,
    PAPER_TABLE1,
    main,
    markdown_tables,
    paired_difference,
    run_benchmark,
    summarise,
    update_readme_section,
)

from .test_engines_common import tiny_data, tiny_profile  # noqa: F401

ROWS = ["real", "prichexy_mu0.01", "random_deformation_prichexy_mu0.01", "ensemble_b1.28",
        "random_deformation_ensemble_b1.28", "blur_s1", "dppix_b8", "privacy_net"]


def _profile(tiny_data, out):
    profile = tiny_profile(tiny_data, out)
    profile["benchmark"].update({"dppix": {"b": [8], "eps": 0.1, "m": 1.0}, "frontier": {"budgets_px": [1.28]}})
    return profile


@pytest.mark.slow
def test_benchmark_writes_tables_json_plot_and_resumes(tiny_data, tmp_path):
    out = tmp_path / "bench"
    payload = run_benchmark(_profile(tiny_data, out))
    for name in ("benchmark.json", "benchmark.md", "benchmark.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "benchmark.png").read_bytes()[:4] == b"\x89PNG"
    rows = {r["row"]: r for r in payload["rows"]}
    assert list(rows) == ROWS
    real = rows["real"]
    for r in rows.values():
        assert r["n_attack_seeds"] == 2 and set(r["attackers"]) == {"siamese", "metric", "pixel"}
        worst = max(r["attackers"].values(), key=lambda a: a["ver_pair_mean"])
        assert r["ver_pair_mean"] == pytest.approx(worst["ver_pair_mean"])
        assert r["ver_pair_mean"] == pytest.approx(100 * payload["results"][r["row"]]["privacy"]["auc_pair"]["mean"])
        expected = (real["ver_pair_mean"] - r["ver_pair_mean"]) / (real["ver_pair_mean"] - 50)
        assert r["closure_pair"] == pytest.approx(expected) or math.isnan(r["closure_pair"])
        assert r["ssim"] is not None and -1 <= r["ssim"] <= 1
    # the learned rows and their controls: matched displacement, a paired comparison
    for learned in ("prichexy_mu0.01", "ensemble_b1.28"):
        control = rows[f"random_deformation_{learned}"]
        assert rows[learned]["control"] == control["row"] and control["matched_to"] == learned
        spec = payload["results"][control["row"]]["anonymizer"]
        disp = payload["results"][learned]["displacement"]
        assert spec["kind"] == "random_deformation" and spec["mean_displacement"] > 0
        assert disp is not None and control["displacement"] is not None
        vs = rows[learned]["vs_control"]
        assert vs["seeds"] == [0, 1] and len(vs["delta_per_seed"]) == 2
    # the frontier generator keeps its budget and the clean frame (no border frame, no folds)
    frontier = rows["ensemble_b1.28"]["displacement"]
    assert frontier["max_px_256"] <= 1.28 + 1e-4 and frontier["frame_share"] == 0.0 and frontier["fold_share"] == 0.0
    assert rows["prichexy_mu0.01"]["paper"] == PAPER_TABLE1["prichexy_mu0.01"]
    assert rows["blur_s1"]["displacement"] is None

    md = (out / "benchmark.md").read_text()
    for label in ("real images", "PriCheXy-Net mu=0.01", "Privacy-Net", "DP-Pix b=8", "random warp",
                  "Gaussian blur", "budget 1.28 px", "worst-case", "patient-weighted", "Siamese AUC", "metric AUC",
                  "pixel AUC", "any finding AUC"):
        assert label in md, label
    saved = json.loads((out / "benchmark.json").read_text())
    assert [r["row"] for r in saved["rows"]] == ROWS and str(tiny_data) not in json.dumps(saved["config"])

    # resumable: nothing is retrained or re-evaluated the second time
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").glob("*.pt")}
    stamps.update({p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")})
    again = run_benchmark(_profile(tiny_data, out))
    assert {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").glob("*.pt")}.items() <= stamps.items()
    assert {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")}.items() <= stamps.items()
    assert [r["ver_pair_mean"] for r in again["rows"]] == [r["ver_pair_mean"] for r in payload["rows"]]

    # rendered again from the JSON alone, into a README section
    (out / "benchmark.md").unlink()
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:bench:start -->\nPLACEHOLDER\n<!-- results:bench:end -->\nrest\n")
    assert main(["--render", str(out / "benchmark.json"), "--readme", str(readme)]) == 0
    assert (out / "benchmark.md").read_text() == md
    text = readme.read_text()
    assert "PLACEHOLDER" not in text and "real images" in text and text.startswith("intro\n") and text.endswith("rest\n")
    assert "](bench/benchmark.png)" in text


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
    tiny = tiny_profile(tiny_data, out)
    tiny["stages"]["attack"]["seeds"] = [0]
    overrides = {"data": tiny["data"], "networks": tiny["networks"], "stages": tiny["stages"],
                 "benchmark.n_bootstrap": 20, "num_threads": None}
    profile = Path(__file__).resolve().parents[1] / "configs" / "benchmark_cpu.json"
    main(["--config", str(profile), "--output_dir", str(out), "--model", str(model), "--dataset_dir", str(tiny_data),
          "--set", *[f"{k}={json.dumps(v)}" for k, v in overrides.items()]])
    saved = json.loads((out / "benchmark.json").read_text())
    rows = {r["row"]: r for r in saved["rows"]}
    assert list(rows) == ["real", "model_model_a", "random_deformation_model_model_a"]
    learned, control = rows["model_model_a"], rows["random_deformation_model_model_a"]
    assert learned["mu"] == pytest.approx(0.05) and learned["model"] == "model_a.pt"
    spec = saved["results"]["random_deformation_model_model_a"]["anonymizer"]
    assert spec["kind"] == "random_deformation" and spec["working_size"] == 32 and spec["smoothing"] == "grid"
    assert saved["results"]["model_model_a"]["anonymizer"]["checkpoint"] == "model_a.pt"  # no machine path
    # the control's measured interior mean matches the learned field's on the test images
    a = saved["results"]["model_model_a"]["displacement"]["interior"]["mean_px_256"]
    b = saved["results"]["random_deformation_model_model_a"]["displacement"]["interior"]["mean_px_256"]
    assert b == pytest.approx(a, rel=0.25)
    md = (out / "benchmark.md").read_text()
    assert "PriCheXy-Net model_a.pt (mu=0.05)" in md and "random deformation (as model_a.pt)" in md
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        run_benchmark(tiny_profile(tiny_data, out), models=[tmp_path / "nope.pt"])


def _result(ver_pair, util_binary, util_mean=0.7, per_seed=(0.6, 0.62), chance=False):
    stat = {"mean": ver_pair, "std": 0.01}
    attackers = {"siamese": {"auc_pair": stat, "auc_patient": stat, "map_at_r": stat, "precision_at_1": stat}}
    return {
        "anonymizer": {"kind": "none"},
        "privacy": {"auc_pair": {**stat, "attacker": "siamese"}, "auc_patient": stat, "map_at_r": stat,
                    "precision_at_1": stat, "attackers": attackers,
                    "per_seed": [{"seed": k, "auc_pair": v, "auc_patient": v} for k, v in enumerate(per_seed)]},
        "utility": {"binary_name": "pneumonia", "binary_auc": util_binary, "binary_ci": [util_binary - 0.05, util_binary + 0.05],
                    "binary_within_chance": chance, "mean_auc": util_mean, "mean_auc_ci": None},
        "image_change": {"ssim_mean": 0.9},
        "displacement": None,
    }


def test_summary_closure_retention_and_n_a_below_chance():
    rows = [("real", None, {}), ("x", {}, {})]
    out = summarise(rows, {"real": _result(0.80, 0.95), "x": _result(0.65, 0.90)})
    x = {r["row"]: r for r in out}["x"]
    assert x["closure_pair"] == pytest.approx((80 - 65) / (80 - 50))
    assert x["retention_binary"] == pytest.approx((90 - 50) / (95 - 50))
    out = summarise(rows, {"real": _result(0.80, 0.449), "x": _result(0.65, 0.531)})
    x = {r["row"]: r for r in out}["x"]
    assert math.isnan(x["retention_binary"]) and x["retention_reason"] == "real-image AUC at or below chance"
    md = markdown_tables(out)
    assert "n/a /" in md and "Retention n/a: real-image AUC at or below chance." in md


def test_paired_difference_sign_test():
    learned = _result(0.6, 0.9, per_seed=(0.60, 0.61, 0.62, 0.63, 0.64))
    control = _result(0.7, 0.9, per_seed=(0.70, 0.71, 0.72, 0.73, 0.74))
    vs = paired_difference(learned, control)
    assert vs["delta_per_seed"] == pytest.approx([-10.0] * 5) and vs["n_lower"] == 5
    assert vs["sign_test_p"] == pytest.approx(1 / 32) and vs["lower_in_every_seed"]
    worse = paired_difference(control, learned)
    assert worse["n_lower"] == 0 and worse["sign_test_p"] == pytest.approx(1.0) and not worse["lower_in_every_seed"]


def test_markdown_marks_chance_and_paper_point():
    out = summarise([("real", None, {})], {"real": _result(0.8, 0.52, chance=True)})
    md = markdown_tables(out)
    assert "52.0 [47.0, 57.0] (chance)" in md and "pneumonia AUC" in md
    assert PAPER_POINT["closure"] == pytest.approx(0.758, abs=1e-3) and PAPER_POINT["retention"] == pytest.approx(0.859, abs=1e-3)


def test_update_readme_section_needs_its_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    assert update_readme_section(readme, "x", "table") is False and readme.read_text() == "no markers\n"


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "--dataset-dir" in capsys.readouterr().out


def test_benchmark_subcommand_is_the_script(tmp_path, capsys):
    """``monai-prichexy benchmark`` and ``scripts/benchmark.py`` parse the same options into the same run."""
    from monai_prichexy.cli import build_parser
    from monai_prichexy.options import add_benchmark_arguments

    import argparse

    script = argparse.ArgumentParser()
    add_benchmark_arguments(script)
    argv = ["--config", "p.json", "--dataset_dir", "d", "--output-dir", "o", "--set", "seed=1", "--log_level", "DEBUG"]
    sub = build_parser().parse_args(["benchmark", *argv])
    assert {k: v for k, v in vars(sub).items() if k != "func"} == vars(script.parse_args(argv))
    assert sub.dataset_dir == "d" and sub.output_dir == "o" and sub.func.__name__ == "cmd_benchmark"


def test_profiles_are_complete():
    from monai_prichexy.engines.profile import default_profile, load_profile

    configs = Path(__file__).resolve().parents[1] / "configs"
    default = default_profile()
    paper = load_profile(configs / "benchmark_paper.json")
    # the paper profile is the bundle's set-up; it names only its output folder
    assert paper == {**default, "output_dir": "runs/benchmark_paper"}
    assert paper["data"]["image_size"] == 256 and paper["stages"]["adversarial"]["max_epochs"] == 250
    assert len(paper["stages"]["attack"]["seeds"]) == 10 and paper["networks"]["verifier"]["backbone"] == "resnet50"
    assert paper["networks"]["generator"]["init_features"] == 32 and paper["networks"]["working_size"] == 256
    for name, image_dir, size in (("benchmark_cpu.json", "images64", 64), ("benchmark_kermany_cpu.json", "images", 128)):
        cpu = load_profile(configs / name)
        assert cpu["data"]["image_dir"] == image_dir and cpu["data"]["image_size"] == size
        assert set(cpu) == set(default) and len(cpu["stages"]["attack"]["seeds"]) >= 5
        assert set(cpu["stages"]["attack"]["attackers"]) == {"siamese", "metric", "pixel"}
        budgets = cpu["benchmark"]["frontier"]["budgets_px"]
        assert len(budgets) >= 4 and min(budgets) >= 0.5 and max(budgets) <= 8
    over = load_profile(configs / "benchmark_cpu.json", {"stages.attack.seeds": [0]})
    assert over["stages"]["attack"]["seeds"] == [0]


def test_the_bundle_configs_are_the_benchmark_default(tmp_path):
    """One statement of the set-up: a value changed in the bundle's train.json / evaluate.json / benchmark.json
    changes the benchmark's default profile; train.json and evaluate.json agree on the verifier."""
    import shutil

    from monai.bundle import ConfigParser

    from monai_prichexy.engines.profile import bundle_profile

    bundle = Path(__file__).resolve().parents[1] / "bundle" / "configs"
    train, evaluate = ConfigParser(), ConfigParser()
    train.read_config(str(bundle / "train.json"))
    evaluate.read_config(str(bundle / "evaluate.json"))
    assert evaluate.get_parsed_content("verifier_kwargs") == {
        k: train.get_parsed_content(f"verifier_def#{k}") for k in ("backbone", "embedding_dim", "widen_factor")}

    configs = tmp_path / "configs"
    shutil.copytree(bundle, configs)
    edited = json.loads((configs / "train.json").read_text())
    edited["image_size"], edited["adversarial"]["max_epochs"], edited["generator_def"]["init_features"] = 96, 3, 4
    (configs / "train.json").write_text(json.dumps(edited))
    edited = json.loads((configs / "evaluate.json").read_text())
    edited["attack"]["seeds"] = [7]
    (configs / "evaluate.json").write_text(json.dumps(edited))
    profile = bundle_profile(configs)
    assert profile["data"]["image_size"] == 96 and profile["networks"]["working_size"] == 96  # "@image_size" resolved
    assert profile["stages"]["adversarial"]["max_epochs"] == 3 and profile["networks"]["generator"]["init_features"] == 4
    assert profile["stages"]["attack"]["seeds"] == [7] and profile["data"]["dataset_dir"] is None


def test_interrupted_stage_is_trained_again(tiny_data, tmp_path):
    """A checkpoint without its summary (the run died mid-stage) is not taken as a finished stage."""
    from monai_prichexy.engines.experiment import Experiment

    exp = Experiment(tiny_profile(tiny_data, tmp_path / "bench"))
    path = exp.classifier_pretrain()
    summary = path.with_suffix(".json")
    assert path.is_file() and summary.is_file()
    done = path.stat().st_mtime_ns
    exp.classifier_pretrain()  # finished: skipped
    assert path.stat().st_mtime_ns == done
    summary.unlink()  # as if killed after the best-metric handler wrote the checkpoint
    exp.classifier_pretrain()
    assert summary.is_file() and path.stat().st_mtime_ns != done


def test_committed_result_tables_rebuild_from_their_json(tmp_path):
    """Each README results section and its docs/results/<run>/benchmark.md are what the run's JSON renders to."""
    import re
    import shutil

    from monai_prichexy.benchmark.run import render

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    sections = re.findall(r"<!-- results:([\w.-]+):start -->", readme)
    assert {"kermany_cpu128", "nih_cpu64"} <= set(sections)
    for name in sections:
        folder = root / "docs" / "results" / name
        payload = json.loads((folder / "benchmark.json").read_text(encoding="utf-8"))
        copy = tmp_path / name
        copy.mkdir()
        shutil.copy(folder / "benchmark.json", copy / "benchmark.json")
        (tmp_path / "README.md").write_text(readme, encoding="utf-8")
        (tmp_path / "docs").mkdir(exist_ok=True)
        tables = render(payload, copy, readme=tmp_path / "README.md", name=name)
        assert (folder / "benchmark.md").read_text(encoding="utf-8") == tables, f"{name}: benchmark.md is stale"
        rendered = (tmp_path / "README.md").read_text(encoding="utf-8")
        section = re.compile(rf"<!-- results:{name}:start -->.*?<!-- results:{name}:end -->", re.S)
        got, want = section.search(readme).group(0), section.search(rendered).group(0)
        assert got.replace(f"docs/results/{name}/", "") == want.replace(f"{name}/", ""), f"README section {name} is stale"
