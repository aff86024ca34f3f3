"""The bundle's train.json / evaluate.json / multi_gpu_train.json parse, and run tiny stages through
``python -m monai.bundle run`` with command-line overrides."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from monai_prichexy.networks import PriCheXyNet
from monai_prichexy.weights import load_generator, load_network

from .test_engines_common import tiny_data  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundle" / "configs"
STAGES = ("classifier_pretrain", "verifier_pretrain", "generator_pretrain", "adversarial",
          "privacy_net_pretrain", "privacy_net_adversarial")
TINY = [
    "--image_dir", "images64", "--image_size", "32", "--device", "cpu", "--num_workers", "0", "--progress", "False",
    "--generator_def#init_features", "2", "--privacy_net_def#init_features", "2",
    "--classifier_def#input_size", "None", "--verifier_def#backbone", "resnet10",
    "--verifier_def#widen_factor", "0.25", "--verifier_def#embedding_dim", "8",
    "--num_pairs", "{'train': 16, 'val': 8, 'test': None}",
    "--classifier_pretrain#max_epochs", "1", "--verifier_pretrain#max_epochs", "1",
    "--generator_pretrain#max_epochs", "1", "--adversarial#max_epochs", "1",
    "--classifier_pretrain#batch_size", "8", "--verifier_pretrain#batch_size", "8",
    "--generator_pretrain#batch_size", "8", "--adversarial#batch_size", "8",
]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _bundle(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "monai.bundle", "run", *args], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_train_config_parses_with_the_bundle_keys():
    parser = ConfigParser()
    parser.read_config(CONFIGS / "train.json")
    for key in ("bundle_root", "device", "dataset_dir", "split_file", "output_dir", "ckpt_dir", "network_def",
                "model_path", "run", "initialize"):
        assert key in parser, key
    for stage in STAGES:
        assert f"run_{stage}" in parser and f"{stage}#stage#_target_" in parser
    parser["generator_def#init_features"] = 2
    parser["working_size"] = 32
    net = parser.get_parsed_content("network_def")
    assert isinstance(net, PriCheXyNet) and net.mu == 0.01 and net.smoothing == "grid"
    assert parser.get_parsed_content("model_path").endswith("/models/model.pt")


def test_multi_gpu_and_evaluate_configs_parse():
    parser = ConfigParser()
    parser.read_config([CONFIGS / "train.json", CONFIGS / "multi_gpu_train.json"])
    assert parser["backend"] == "nccl" and parser["sync_bn"] is True
    assert any("init_from_env" in expr for expr in parser["initialize"])
    assert parser["run_adversarial"] == ConfigParser.load_config_files(CONFIGS / "train.json")["run_adversarial"]
    ev = ConfigParser()
    ev.read_config(CONFIGS / "evaluate.json")
    for key in ("bundle_root", "device", "dataset_dir", "split_file", "output_dir", "ckpt_dir", "anonymizer",
                "attack", "evaluation", "run"):
        assert key in ev, key
    assert ev["evaluation#_target_"] == "monai_prichexy.engines.evaluate_anonymizer"


@pytest.mark.slow
def test_bundle_train_all_stages_then_evaluate(tiny_data, tmp_path):
    root = tmp_path / "bundle"
    _bundle("--config_file", str(CONFIGS / "train.json"), "--bundle_root", str(root), "--dataset_dir", str(tiny_data), *TINY)
    ckpts = root / "runs" / "checkpoints"
    for name in ("classifier", "verifier", "generator_pretrain", "adversarial"):
        net, meta = load_network(ckpts / f"{name}.pt")
        assert meta["seed"] == 0 and meta["data"]["image_dir"] == "images64" and meta["max_epochs"] == 1
    generator, _ = load_generator(root / "models" / "model.pt")
    info = json.loads((root / "models" / "model.json").read_text())
    assert info["mu"] == 0.01 and info["stage"] == "adversarial" and info["data"]["dataset"] == tiny_data.name
    state = torch.load(root / "models" / "model.pt", weights_only=True)  # bare state dict of network_def
    assert isinstance(state, dict) and "mu_value" in state and any(k.startswith("generator.") for k in state)
    net_def = ConfigParser.load_config_files(CONFIGS / "train.json")["network_def"]
    assert net_def["_target_"] == "monai_prichexy.networks.PriCheXyNet"
    PriCheXyNet(generator, mu=0.5, working_size=None).load_state_dict(state, strict=True)  # what ckpt_export does
    assert str(tmp_path) not in (root / "models" / "model.json").read_text()  # no machine paths

    # the evaluation protocol on the trained model.pt
    _bundle("--config_file", str(CONFIGS / "evaluate.json"), "--bundle_root", str(root), "--dataset_dir", str(tiny_data),
            "--image_dir", "images64", "--image_size", "32", "--device", "cpu", "--num_workers", "0",
            "--progress", "False", "--num_pairs", "{'train': 16, 'val': 8, 'test': None}", "--n_bootstrap", "10",
            "--verifier_kwargs", "{'backbone': 'resnet10', 'embedding_dim': 8, 'widen_factor': 0.25}",
            "--attack#seeds", "[3]", "--attack#max_epochs", "1", "--attack#batch_size", "8",
            "--attack#attackers#metric", "{'network': {'backbone': 'resnet10', 'embedding_dim': 8, 'widen_factor': 0.25}, "
            "'max_epochs': 1}")
    result = json.loads((root / "eval" / "evaluation.json").read_text())
    assert result["anonymizer"] == {"kind": "prichexy", "checkpoint": "model.pt"}
    assert [r["seed"] for r in result["privacy"]["per_seed"]] == [3]
    assert {"auc_pair", "auc_patient", "map_at_r", "precision_at_1"} <= set(result["privacy"])
    assert {"mean_auc", "mean_auc_ci", "classes_absent", "binary_name", "binary_auc", "binary_ci"} <= set(result["utility"])
    assert result["utility"]["schema"] == "chestxray14" and result["utility"]["binary_name"] == "any finding"


def test_export_records_the_sha256_in_the_bundle_metadata(tmp_path):
    from monai_prichexy.engines import export_bundle_model
    from monai_prichexy.weights import load_into_prichexynet, sha256_file

    (tmp_path / "configs").mkdir()
    text = (CONFIGS / "metadata.json").read_text(encoding="utf-8")
    original = json.loads(text)
    (tmp_path / "configs" / "metadata.json").write_text(text, encoding="utf-8")
    net = PriCheXyNet(mu=0.005, working_size=32, init_features=2)
    path = export_bundle_model(net, tmp_path / "models" / "model.pt", {"stage": "adversarial"})
    written = (tmp_path / "configs" / "metadata.json").read_text(encoding="utf-8")
    recorded = json.loads(written)
    assert recorded["model_sha256"] == sha256_file(path)
    # only the checksum line changes: the file's own formatting is kept
    changed = [(a, b) for a, b in zip(text.splitlines(), written.splitlines()) if a != b]
    assert len(text.splitlines()) == len(written.splitlines()) and len(changed) <= 1
    assert all("model_sha256" in a and "model_sha256" in b for a, b in changed)
    assert {k: v for k, v in recorded.items() if k != "model_sha256"} == {
        k: v for k, v in original.items() if k != "model_sha256"
    }
    fresh = load_into_prichexynet(PriCheXyNet(init_features=2), path, expected_sha256=recorded["model_sha256"])
    assert (fresh.mu, fresh.working_size) == (0.005, (32, 32))
