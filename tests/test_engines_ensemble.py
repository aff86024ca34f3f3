"""The ensemble stage: refreshes re-initialise adversaries, the budget holds, the utility terms by hand."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from monai_prichexy.engines.ensemble import Adversary, consistency_loss, create_ensemble_stage
from monai_prichexy.labels import CXR14_SCHEMA, KERMANY_SCHEMA
from monai_prichexy.networks import AbnormalityClassifier, EmbeddingNet, FlowFieldGenerator, PriCheXyNet, SiameseVerifier
from monai_prichexy.networks.deformation import px_to_normalised

from .test_engines_common import TINY_CLASSIFIER, TINY_EMBEDDING, TINY_GENERATOR, TINY_VERIFIER, tiny_data, tiny_module  # noqa: F401


def test_consistency_loss_is_the_kl_divergence():
    real = torch.tensor([[1.0, -2.0, 0.5]])
    assert float(consistency_loss(real, real, KERMANY_SCHEMA)) == pytest.approx(0.0, abs=1e-7)
    anon = torch.tensor([[0.0, 0.0, 0.0]])
    p, q = torch.softmax(real, 1), torch.softmax(anon, 1)
    assert float(consistency_loss(anon, real, KERMANY_SCHEMA)) == pytest.approx(float((p * (p / q).log()).sum()), rel=1e-5)
    r14, a14 = torch.randn(2, 14), torch.randn(2, 14)
    pr, qa = torch.sigmoid(r14), torch.sigmoid(a14)
    kl = pr * (pr / qa).log() + (1 - pr) * ((1 - pr) / (1 - qa)).log()
    assert float(consistency_loss(a14, r14, CXR14_SCHEMA)) == pytest.approx(float(kl.mean()), rel=1e-5)


def test_metric_adversary_privacy_loss_by_hand():
    torch.manual_seed(0)
    adv = Adversary(lambda: EmbeddingNet(**TINY_EMBEDDING), device="cpu")
    x1, x2 = torch.rand(4, 1, 32, 32), torch.rand(4, 1, 32, 32)
    same = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    adv.network.eval()
    cos = adv.network(x1, x2).reshape(-1)
    expected = cos[[0, 2]].mean() - cos[[1, 3]].mean()
    assert float(adv.privacy_loss(x1, x2, same)) == pytest.approx(float(expected), abs=1e-6)
    siamese = Adversary(lambda: SiameseVerifier(**TINY_VERIFIER), device="cpu")
    siamese.network.eval()
    assert float(siamese.privacy_loss(x1, x2, same)) == pytest.approx(float(F.softplus(siamese.network(x1, x2)).mean()))


def test_reset_gives_new_weights_and_counts():
    torch.manual_seed(0)
    adv = Adversary(lambda: SiameseVerifier(**TINY_VERIFIER), device="cpu")
    before = copy.deepcopy(adv.network.state_dict())
    adv.reset()
    after = adv.network.state_dict()
    assert adv.refreshed == 1 and any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())


def test_ensemble_stage_refreshes_and_keeps_the_budget(tiny_module, tmp_path):
    torch.manual_seed(0)
    budget = 1.0
    net = PriCheXyNet(FlowFieldGenerator(**TINY_GENERATOR), mu=px_to_normalised(budget), smoothing="displacement",
                      working_size=32, budget_px=budget)
    classifier = AbnormalityClassifier(**TINY_CLASSIFIER)
    stage = create_ensemble_stage(
        net, classifier, tiny_module.pair_loader("train", 8, shuffle=True), tiny_module.pair_loader("val", 8),
        adversaries={"siamese": {"network": TINY_VERIFIER}, "metric": {"network": TINY_EMBEDDING}},
        max_epochs=2, refresh_every=1, warmup_steps=1, ckpt_path=tmp_path / "ens.pt", progress=False,
    )
    step = stage.trainer._process_function
    summary = stage.run()
    iterations = summary["iterations_run"]
    assert iterations == 2 * len(tiny_module.pair_loader("train", 8))
    # refresh every iteration from the second on, round robin over the two adversaries
    assert sum(a.refreshed for a in step.adversaries) == iterations - 1
    assert min(a.refreshed for a in step.adversaries) >= (iterations - 1) // 2
    history = summary["history"][-1]
    assert {"train_loss_g", "train_loss_util", "train_loss_priv", "train_loss_adv0", "train_loss_adv1",
            "val_mse", "val_util", "val_adv0_siamese_auc", "val_adv1_metric_auc"} <= set(history)
    assert summary["meta"]["budget_px"] == budget and summary["meta"]["training"] == "ensemble"
    x = torch.rand(2, 1, 32, 32)
    d = net.displacement(x)
    assert float(torch.sqrt((d**2).sum(1)).max()) <= px_to_normalised(budget) + 1e-6
    with pytest.raises(ValueError, match="utility must be one of"):
        create_ensemble_stage(net, classifier, [], [], utility="vibes", progress=False)
