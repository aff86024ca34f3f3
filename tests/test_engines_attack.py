"""Anonymizers for the attack (random-deformation control, DP-Pix, trained checkpoints), the attack
over seeds (mean +- std, pair- and patient-weighted) and the utility measure."""

from __future__ import annotations

import math

import pytest
import torch

from monai_prichexy.engines import (
    DPPixAnonymizer,
    RandomDeformation,
    build_anonymizer,
    evaluate_anonymizer,
    evaluate_utility,
    export_bundle_model,
    mean_displacement,
    run_attack,
    seed_everything,
)
from monai_prichexy.engines.attack import evaluate_verification
from monai_prichexy.networks import AbnormalityClassifier, FlowFieldGenerator, PriCheXyNet, SiameseVerifier
from monai_prichexy.weights import save_checkpoint

from .test_engines_common import TINY_CLASSIFIER, TINY_GENERATOR, TINY_VERIFIER, tiny_data, tiny_module  # noqa: F401


@pytest.mark.parametrize("target", [0.0, 0.004, 0.02])
def test_random_deformation_has_the_requested_mean_displacement(target):
    rd = RandomDeformation(target, field_sigma=3.0, smoothing="none", seed=0)
    field = rd.field((3, 32, 32), torch.device("cpu"), torch.float32)
    assert field.shape == (3, 2, 32, 32)
    assert field.abs().mean(dim=(1, 2, 3)).tolist() == pytest.approx([target] * 3, abs=1e-6)
    x = torch.rand(3, 1, 32, 32)
    y = rd(x)
    assert y.shape == x.shape
    if target == 0.0:
        assert torch.allclose(y, x, atol=1e-5)
    else:
        assert not torch.allclose(y, x, atol=1e-4)
        # bounded by tanh: no displacement exceeds target / mean|tanh| (a few times the mean)
        assert field.abs().max() < 10 * target


def test_random_deformation_is_seeded_and_smooth():
    x = torch.rand(2, 1, 32, 32)
    a = RandomDeformation(0.01, seed=1)(x)
    b = RandomDeformation(0.01, seed=1)(x)
    c = RandomDeformation(0.01, seed=2)(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    field = RandomDeformation(0.01, field_sigma=4.0, seed=0).field((1, 64, 64), torch.device("cpu"), torch.float32)
    rough = RandomDeformation(0.01, field_sigma=0.5, seed=0).field((1, 64, 64), torch.device("cpu"), torch.float32)
    grad = lambda f: (f[..., 1:] - f[..., :-1]).abs().mean()  # noqa: E731
    assert grad(field) < 0.5 * grad(rough)
    with pytest.raises(ValueError):
        RandomDeformation(-1.0)


def test_dppix_anonymizer_batch():
    x = torch.rand(3, 1, 32, 32)
    out = DPPixAnonymizer(b=4, eps=0.1, seed=0)(x)
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    cells = out[:, :, ::4, ::4].repeat_interleave(4, 2).repeat_interleave(4, 3)
    assert torch.equal(out, cells)  # constant within each b x b cell


def test_build_anonymizer_from_checkpoints(tmp_path):
    seed_everything(0)
    net = PriCheXyNet(FlowFieldGenerator(**TINY_GENERATOR), mu=0.01, working_size=32)
    save_checkpoint(tmp_path / "g.pt", net)
    anon = build_anonymizer("prichexy", checkpoint=tmp_path / "g.pt")
    assert isinstance(anon, PriCheXyNet) and anon.mu == 0.01 and not anon.training
    x = torch.rand(2, 1, 32, 32)
    assert torch.allclose(anon(x), net.eval()(x), atol=1e-6)
    # the bundle's bare model.pt: mu comes from model.json beside it
    export_bundle_model(net, tmp_path / "models" / "model.pt", {"stage": "adversarial"})
    anon2 = build_anonymizer("prichexy", checkpoint=tmp_path / "models" / "model.pt")
    assert anon2.mu == 0.01 and anon2.working_size == (32, 32)
    assert isinstance(build_anonymizer("none"), torch.nn.Module)
    with pytest.raises(ValueError):
        build_anonymizer("random_deformation")
    with pytest.raises(ValueError):
        build_anonymizer("blur")
    disp = mean_displacement(net, [{"image": x}])
    assert 0 < disp["mean_abs"] <= 0.01 and disp["mean_abs_px"] == pytest.approx(disp["mean_abs"] * 31 / 2)


class Oracle(SiameseVerifier):
    """A 'perfect attacker': the per-patient pattern dominates the per-image noise."""

    def embed(self, x):
        return x.flatten(1)[:, ::7]

    def score_embeddings(self, e1, e2):
        return -((e1 - e2) ** 2).sum(1, keepdim=True)


class NoiseAnonymizer(torch.nn.Module):
    """Replaces every image by uniform noise: nothing of the patient is left."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x):
        return torch.rand(x.shape, generator=self.generator).to(x)


class ConstantAnonymizer(torch.nn.Module):
    """Replaces every image by the same grey image: a classifier scores every image alike."""

    def forward(self, x):
        return torch.full_like(x, 0.5)


class MeanClassifier(torch.nn.Module):
    """A fixed 'classifier': brighter image -> more findings (the synthetic findings are bright discs)."""

    def forward(self, x):
        return x.mean(dim=(1, 2, 3))[:, None] * torch.linspace(1, 2, 14)


def test_evaluate_verification_perfect_attacker_is_one(tiny_module):
    """An 'attacker' that embeds patients perfectly (the patient pattern) must reach AUC 1 and P@1 1."""
    res = evaluate_verification(Oracle(**TINY_VERIFIER), None, tiny_module, "test")
    assert res["auc_pair"] == pytest.approx(1.0) and res["auc_patient"] == pytest.approx(1.0)
    assert res["precision_at_1"] == pytest.approx(1.0)
    assert res["n_pairs"] == 18 and res["n_positive_pairs"] == 9


def test_evaluation_applies_the_anonymizer_to_the_queries(tiny_module):
    """The perfect attacker against a noise anonymizer is at chance: AUC about 0.5 (mean over 40
    noise draws 0.51; one draw's std about 0.18). Evaluating without the anonymizer gives 1.0."""
    oracle = Oracle(**TINY_VERIFIER)
    aucs = [evaluate_verification(oracle, NoiseAnonymizer(seed), tiny_module, "test")["auc_pair"] for seed in range(40)]
    assert abs(sum(aucs) / len(aucs) - 0.5) < 0.1, aucs
    assert max(aucs) < 1.0


def test_run_attack_evaluates_its_attacker_on_anonymized_queries(tiny_module, monkeypatch):
    """Whatever the attacker learnt, run_attack / evaluate_anonymizer must test it on anonymized
    images: with the perfect attacker in place of the trained one, noise brings it to chance."""
    import monai_prichexy.engines.attack as attack

    summary = {"epochs_run": 1, "best_epoch": 1, "select_metric": "val_loss", "best_metric": 0.0}
    monkeypatch.setattr(attack, "train_attacker", lambda *a, **k: (Oracle(**TINY_VERIFIER), summary))
    seeds = list(range(10))
    real = run_attack(None, tiny_module, seeds=seeds[:2], progress=False)
    assert real["auc_pair"]["mean"] == pytest.approx(1.0)  # guard: the stand-in attacker is perfect
    out = evaluate_anonymizer(NoiseAnonymizer(0), tiny_module, MeanClassifier(), seeds=seeds, n_bootstrap=0, progress=False)
    assert abs(out["privacy"]["auc_pair"]["mean"] - 0.5) < 0.15, out["privacy"]["auc_pair"]
    assert all(r["auc_pair"] < 1.0 for r in out["privacy"]["per_seed"])


def test_evaluate_utility_applies_the_anonymizer(tiny_module):
    """A constant anonymizer leaves the original classifier nothing: every AUC exactly 0.5."""
    real = evaluate_utility(MeanClassifier(), None, tiny_module, "test", n_bootstrap=0)
    assert real["mean_auc"] != 0.5 and real["any_finding_auc"] != 0.5  # guard: the real images are told apart
    anon = evaluate_utility(MeanClassifier(), ConstantAnonymizer(), tiny_module, "test", n_bootstrap=20)
    assert anon["mean_auc"] == 0.5 and anon["any_finding_auc"] == 0.5
    assert anon["mean_auc_ci"] == [0.5, 0.5] and anon["any_finding_ci"] == [0.5, 0.5]


def test_run_attack_mean_std_over_seeds(tiny_module):
    spec = {"kind": "random_deformation", "mean_displacement": 0.005}
    res = run_attack(spec, tiny_module, seeds=[0, 1], verifier_kwargs=TINY_VERIFIER, max_epochs=1, batch_size=8,
                     lr=1e-3, progress=False)
    assert res["seeds"] == [0, 1] and len(res["per_seed"]) == 2
    for key in ("auc_pair", "auc_patient", "map_at_r", "precision_at_1"):
        assert set(res[key]) == {"mean", "std"}
        vals = [r[key] for r in res["per_seed"]]
        assert res[key]["mean"] == pytest.approx(sum(vals) / 2)
        assert math.isfinite(res[key]["std"]) and 0 <= res[key]["mean"] <= 1
    assert "pair" in res["weighting"]["auc_pair"] and "patient" in res["weighting"]["auc_patient"]


def test_evaluate_utility_reports_absent_classes_and_any_finding(tiny_module, tmp_path):
    seed_everything(0)
    classifier = AbnormalityClassifier(**TINY_CLASSIFIER)
    res = evaluate_utility(classifier, {"kind": "dppix", "b": 2}, tiny_module, "test", n_bootstrap=20)
    # the synthetic data has 3 of the 14 findings: the 11 others are absent and reported
    assert len(res["classes_absent"]) >= 11 and "Hernia" in res["classes_absent"]
    assert 0 <= res["mean_auc"] <= 1 and len(res["mean_auc_ci"]) == 2
    assert 0 <= res["any_finding_auc"] <= 1 and res["n_images"] == 9


def test_evaluate_anonymizer_writes_json(tiny_module, tmp_path):
    seed_everything(0)
    save_checkpoint(tmp_path / "classifier.pt", AbnormalityClassifier(**TINY_CLASSIFIER))
    out = evaluate_anonymizer(
        {"kind": "dppix", "b": 8}, tiny_module, tmp_path / "classifier.pt", seeds=[0], verifier_kwargs=TINY_VERIFIER,
        max_epochs=1, batch_size=8, n_bootstrap=10, output_path=tmp_path / "eval.json", progress=False,
    )
    assert (tmp_path / "eval.json").is_file()
    assert out["anonymizer"]["kind"] == "dppix" and math.isnan(out["privacy"]["auc_pair"]["std"])
