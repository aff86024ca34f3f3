"""Anonymizers for the attack (random-deformation control, blur, DP-Pix, trained checkpoints), the
attackers over seeds (per attacker, worst case, pair- and patient-weighted) and the utility measure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_prichexy.engines import (
    DPPixAnonymizer,
    GaussianBlur,
    RandomDeformation,
    build_anonymizer,
    evaluate_anonymizer,
    evaluate_utility,
    export_bundle_model,
    load_split_images,
    make_release,
    run_attack,
    score_attack,
    seed_everything,
)
from monai_prichexy.engines.attack import evaluate_verification
from monai_prichexy.metrics.displacement import DisplacementAccumulator
from monai_prichexy.networks import AbnormalityClassifier, FlowFieldGenerator, PriCheXyNet, SiameseVerifier
from monai_prichexy.weights import save_checkpoint

from .test_engines_common import (  # noqa: F401
    TINY_ATTACKERS,
    TINY_CLASSIFIER,
    TINY_GENERATOR,
    TINY_VERIFIER,
    tiny_data,
    tiny_module,
)


def _interior_mean(rd: RandomDeformation, x: torch.Tensor) -> float:
    acc = DisplacementAccumulator(rd.working_size, rd.frame_px(x.shape[-1]))
    acc.update(rd.displacement(x))
    return acc.compute()["interior"]["mean_normalised"]


@pytest.mark.parametrize("smoothing", ["grid", "displacement", "none"])
@pytest.mark.parametrize("target", [0.004, 0.02])
def test_random_deformation_has_the_requested_mean_displacement(target, smoothing):
    rd = RandomDeformation(target, field_sigma=3.0, smoothing=smoothing, seed=0)
    x = torch.rand(3, 1, 32, 32)
    assert _interior_mean(rd, x) == pytest.approx(target, rel=2e-3)
    y = rd(x)
    assert y.shape == x.shape and not torch.allclose(y, x, atol=1e-4)


def test_random_deformation_respects_the_budget_and_working_size():
    # a mean close to the budget: the clamp bites, the rescaling still reaches the mean
    budget = 2.0  # px at 256
    target = 0.5 * budget / 127.5
    rd = RandomDeformation(target, field_sigma=2.0, smoothing="displacement", working_size=32, budget_px=budget, seed=0)
    x = torch.rand(2, 1, 64, 64)
    acc = DisplacementAccumulator(32, rd.frame_px(64))
    acc.update(rd.displacement(x))
    stats = acc.compute()
    assert stats["whole_image"]["max_px_256"] <= budget + 1e-4
    assert stats["interior"]["mean_normalised"] == pytest.approx(target, rel=2e-2)
    assert stats["frame_share"] == 0.0 and stats["fold_share"] == 0.0


def test_random_deformation_zero_is_the_operator_alone():
    x = torch.rand(2, 1, 32, 32)
    assert torch.allclose(RandomDeformation(0.0, smoothing="none")(x), x, atol=1e-5)
    assert torch.allclose(RandomDeformation(0.0, smoothing="displacement")(x), x, atol=1e-5)


def test_random_deformation_is_seeded_and_smooth():
    x = torch.rand(2, 1, 32, 32)
    a = RandomDeformation(0.01, seed=1)(x)
    b = RandomDeformation(0.01, seed=1)(x)
    c = RandomDeformation(0.01, seed=2)(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    smooth = RandomDeformation(0.01, field_sigma=4.0, seed=0).noise((1, 64, 64), torch.device("cpu"), torch.float32)
    rough = RandomDeformation(0.01, field_sigma=0.5, seed=0).noise((1, 64, 64), torch.device("cpu"), torch.float32)
    grad = lambda f: (f[..., 1:] - f[..., :-1]).abs().mean()  # noqa: E731
    assert grad(smooth) < 0.5 * grad(rough)
    with pytest.raises(ValueError, match="mean_displacement"):
        RandomDeformation(-1.0)
    with pytest.raises(ValueError, match="budget_px"):
        RandomDeformation(0.01, budget_px=0.0)


def test_gaussian_blur_keeps_constants_and_smooths():
    flat = torch.full((1, 1, 32, 32), 0.3)
    assert torch.allclose(GaussianBlur(2.0)(flat), flat, atol=1e-4)  # replicate padding: no dark border
    x = torch.zeros(1, 1, 33, 33)
    x[..., 16, 16] = 1.0
    y = GaussianBlur(1.0)(x)
    assert float(y.sum()) == pytest.approx(1.0, abs=1e-4) and float(y.max()) < 0.2
    with pytest.raises(ValueError, match="sigma"):
        GaussianBlur(0.0)


def test_dppix_anonymizer_batch():
    x = torch.rand(3, 1, 32, 32)
    out = DPPixAnonymizer(b=4, eps=0.1, seed=0)(x)
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    cells = out[:, :, ::4, ::4].repeat_interleave(4, 2).repeat_interleave(4, 3)
    assert torch.equal(out, cells)  # constant within each b x b cell


def test_build_anonymizer_from_checkpoints(tmp_path):
    seed_everything(0)
    net = PriCheXyNet(FlowFieldGenerator(**TINY_GENERATOR), mu=0.01, working_size=32, budget_px=1.0)
    save_checkpoint(tmp_path / "g.pt", net)
    anon = build_anonymizer("prichexy", checkpoint=tmp_path / "g.pt")
    assert isinstance(anon, PriCheXyNet) and anon.mu == 0.01 and anon.budget_px == 1.0 and not anon.training
    x = torch.rand(2, 1, 32, 32)
    assert torch.allclose(anon(x), net.eval()(x), atol=1e-6)
    # the bundle's bare model.pt: mu and budget travel in its buffers
    export_bundle_model(net, tmp_path / "models" / "model.pt", {"stage": "adversarial"})
    anon2 = build_anonymizer("prichexy", checkpoint=tmp_path / "models" / "model.pt")
    assert anon2.mu == 0.01 and anon2.working_size == (32, 32) and anon2.budget_px == 1.0
    assert isinstance(build_anonymizer("none"), torch.nn.Module)
    assert isinstance(build_anonymizer("blur", sigma=1.5), GaussianBlur)
    with pytest.raises(ValueError, match="mean_displacement"):
        build_anonymizer("random_deformation")
    with pytest.raises(ValueError, match="kind must be one of"):
        build_anonymizer("swirl")


def test_score_attack_against_a_known_score_matrix(tiny_module):
    """Scores = 1 for same patient, 0 otherwise: AUC 1 and P@1 1; the transposed identity changes nothing."""
    real = load_split_images(tiny_module, "test")
    ids = real.patient_ids
    perfect = (ids[:, None] == ids[None, :]).astype(float)
    res = score_attack(perfect, tiny_module, real)
    assert res["auc_pair"] == pytest.approx(1.0) and res["auc_patient"] == pytest.approx(1.0)
    assert res["precision_at_1"] == pytest.approx(1.0) and res["n_pairs"] == 18 and res["n_positive_pairs"] == 9
    inverted = score_attack(-perfect, tiny_module, real)
    assert inverted["auc_pair"] == pytest.approx(0.0)


class Oracle(SiameseVerifier):
    """A 'perfect attacker': the per-patient pattern dominates the per-image noise."""

    def embed(self, x):
        return x.flatten(1)[:, ::7]

    def score_embeddings(self, e1, e2):
        return -((e1 - e2) ** 2).sum(-1, keepdim=True)


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


class OracleAttacker:
    """Stands in for a trained attacker: scores pairs with :class:`Oracle` whatever it was trained on."""

    name = "oracle"

    def fit(self, ctx, seed):
        return {"trained": True}

    def scores(self, queries, gallery):
        oracle = Oracle(**TINY_VERIFIER)
        eq, eg = oracle.embed(queries), oracle.embed(gallery)
        return oracle.score_embeddings(eq[:, None, :], eg[None, :, :]).squeeze(-1).numpy()


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


def test_run_attack_evaluates_its_attackers_on_anonymized_queries(tiny_module, monkeypatch):
    """Whatever the attackers learnt, run_attack / evaluate_anonymizer must test them on the anonymized
    release: with the perfect attacker in place of the trained ones, noise brings it to chance."""
    import monai_prichexy.engines.attack as attack

    monkeypatch.setattr(attack, "build_attacker", lambda name, **kwargs: OracleAttacker())
    real = run_attack(None, tiny_module, seeds=[0, 1], progress=False, attackers=["siamese"])
    assert real["auc_pair"]["mean"] == pytest.approx(1.0)  # guard: the stand-in attacker is perfect
    aucs = []
    for seed in range(10):
        out = evaluate_anonymizer(NoiseAnonymizer(seed), tiny_module, MeanClassifier(), seeds=[seed], n_bootstrap=0,
                                  progress=False, attackers=["siamese"])
        aucs.append(out["privacy"]["auc_pair"]["mean"])
    assert abs(sum(aucs) / len(aucs) - 0.5) < 0.15, aucs
    assert max(aucs) < 1.0


def test_evaluate_utility_applies_the_anonymizer(tiny_module):
    """A constant anonymizer leaves the original classifier nothing: every AUC exactly 0.5."""
    real = evaluate_utility(MeanClassifier(), None, tiny_module, "test", n_bootstrap=0)
    assert real["mean_auc"] != 0.5 and real["binary_auc"] != 0.5  # guard: the real images are told apart
    anon = evaluate_utility(MeanClassifier(), ConstantAnonymizer(), tiny_module, "test", n_bootstrap=20)
    assert anon["mean_auc"] == 0.5 and anon["binary_auc"] == 0.5
    assert anon["mean_auc_ci"] == [0.5, 0.5] and anon["binary_ci"] == [0.5, 0.5]


def test_make_release_measures_the_deformation_it_applied(tiny_module):
    real = {"test": load_split_images(tiny_module, "test")}
    rd = RandomDeformation(0.01, smoothing="displacement", seed=0)
    released, stats = make_release(rd, real, measure_split="test")
    assert stats["interior"]["mean_normalised"] == pytest.approx(0.01, rel=2e-3)
    assert released["test"].images.shape == real["test"].images.shape
    assert not torch.allclose(released["test"].images, real["test"].images)
    same, none = make_release(None, real)
    assert none is None and torch.equal(same["test"].images, real["test"].images)


def test_run_attack_reports_every_attacker_and_the_worst_case(tiny_module):
    spec = {"kind": "random_deformation", "mean_displacement": 0.005}
    res = run_attack(spec, tiny_module, seeds=[0, 1], verifier_kwargs=TINY_VERIFIER, max_epochs=1, batch_size=8,
                     lr=1e-3, progress=False, attackers=TINY_ATTACKERS)
    assert res["seeds"] == [0, 1] and set(res["attackers"]) == {"siamese", "metric", "pixel"}
    for key in ("auc_pair", "auc_patient", "map_at_r", "precision_at_1"):
        means = {a: r[key]["mean"] for a, r in res["attackers"].items()}
        assert res[key]["mean"] == pytest.approx(max(means.values()))
        assert res[key]["attacker"] == max(means, key=means.get)
        for k in range(2):
            assert res["per_seed"][k][key] == pytest.approx(max(r["per_seed"][k][key] for r in res["attackers"].values()))
        vals = [r[key] for r in res["attackers"]["siamese"]["per_seed"]]
        assert res["attackers"]["siamese"][key]["mean"] == pytest.approx(sum(vals) / 2)
        assert math.isfinite(res[key]["std"]) and 0 <= res[key]["mean"] <= 1
    assert res["displacement"]["interior"]["mean_normalised"] == pytest.approx(0.005, rel=2e-3)
    assert 0 < res["image_change"]["ssim_mean"] < 1
    with pytest.raises(ValueError, match="unknown attacker"):
        run_attack(None, tiny_module, seeds=[0], attackers=["oracle"], progress=False)


def test_evaluate_utility_reports_absent_classes_and_the_binary_question(tiny_module):
    seed_everything(0)
    classifier = AbnormalityClassifier(**TINY_CLASSIFIER)
    res = evaluate_utility(classifier, {"kind": "dppix", "b": 2}, tiny_module, "test", n_bootstrap=20)
    # the synthetic data has 3 of the 14 findings: the 11 others are absent and reported
    assert len(res["classes_absent"]) >= 11 and "Hernia" in res["classes_absent"]
    assert 0 <= res["mean_auc"] <= 1 and len(res["mean_auc_ci"]) == 2
    assert res["binary_name"] == "any finding" and 0 <= res["binary_auc"] <= 1 and res["n_images"] == 9
    assert isinstance(res["binary_within_chance"], bool)


def test_evaluate_anonymizer_writes_json(tiny_module, tmp_path):
    seed_everything(0)
    save_checkpoint(tmp_path / "classifier.pt", AbnormalityClassifier(**TINY_CLASSIFIER))
    out = evaluate_anonymizer(
        {"kind": "dppix", "b": 8}, tiny_module, tmp_path / "classifier.pt", seeds=[0], verifier_kwargs=TINY_VERIFIER,
        max_epochs=1, batch_size=8, n_bootstrap=10, output_path=tmp_path / "eval.json", progress=False,
        attackers={"siamese": {}, "pixel": {}},
    )
    assert (tmp_path / "eval.json").is_file()
    assert out["anonymizer"]["kind"] == "dppix" and math.isnan(out["privacy"]["auc_pair"]["std"])
    assert set(out["privacy"]["attackers"]) == {"siamese", "pixel"} and out["displacement"] is None
    assert 0 <= out["image_change"]["ssim_mean"] < 0.5  # DP-Pix destroys the image
    assert np.isfinite(out["utility"]["binary_auc"])
