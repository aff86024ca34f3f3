"""Training stages: each trains on tiny synthetic data, its loss falls on a fixed batch, its
checkpoint reloads, and the adversarial step updates (or, frozen, keeps) the right networks."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from monai_prichexy.engines import (
    AdversarialStep,
    create_adversarial_stage,
    create_classifier_stage,
    create_reconstruction_stage,
    create_verifier_stage,
    privacy_loss,
    seed_everything,
)
from monai_prichexy.networks import (
    AbnormalityClassifier,
    FlowFieldGenerator,
    PriCheXyNet,
    PrivacyNetEncoder,
    SiameseVerifier,
)
from monai_prichexy.weights import load_network

from .test_engines_common import TINY_CLASSIFIER, TINY_GENERATOR, TINY_VERIFIER, tiny_data, tiny_module  # noqa: F401

STEPS = 8


def _fixed(loader, steps=STEPS):
    """The same batch ``steps`` times: a loss that falls on it shows that the stage optimises."""
    batch = next(iter(loader))
    return [batch] * steps


def _losses(summary, key="loss"):
    return [it[key] for it in summary["iterations"]]


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _changed(before, net):
    return any(not torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_classifier_stage_learns_and_reloads(tiny_module, tmp_path):
    seed_everything(0)
    net = AbnormalityClassifier(**TINY_CLASSIFIER)
    ckpt = tmp_path / "classifier.pt"
    stage = create_classifier_stage(
        net, _fixed(tiny_module.image_loader("train", 8)), tiny_module.image_loader("val", 8), max_epochs=1,
        lr=1e-3, ckpt_path=ckpt, select="val_loss", meta={"seed": 0}, progress=False,
    )
    summary = stage.run()
    losses = _losses(summary)
    assert len(losses) == STEPS
    assert losses[-1] < 0.8 * losses[0], losses
    model, meta = load_network(ckpt)
    assert isinstance(model, AbnormalityClassifier)
    assert meta["stage"] == "classifier_pretrain" and meta["seed"] == 0 and meta["epoch"] == 1
    for k, v in model.state_dict().items():
        assert torch.equal(v, net.state_dict()[k].cpu()), k
    written = json.loads(ckpt.with_suffix(".json").read_text())
    assert written["best_epoch"] == 1 and "val_mean_auc" in written["history"][0]


def test_verifier_stage_learns_and_reloads(tiny_module, tmp_path):
    seed_everything(0)
    net = SiameseVerifier(**TINY_VERIFIER)
    ckpt = tmp_path / "verifier.pt"
    stage = create_verifier_stage(
        net, _fixed(tiny_module.pair_loader("train", 8)), tiny_module.pair_loader("val", 8), max_epochs=1, lr=1e-3,
        patience=5, ckpt_path=ckpt, progress=False,
    )
    summary = stage.run()
    losses = _losses(summary)
    assert losses[-1] < 0.8 * losses[0], losses
    assert {"val_loss", "val_auc"} <= set(summary["history"][0])
    model, meta = load_network(ckpt)
    assert isinstance(model, SiameseVerifier) and meta["stage"] == "verifier_pretrain" and meta["patience"] == 5


@pytest.mark.parametrize("kind", ["prichexy", "privacy_net"])
def test_reconstruction_stage_learns_and_reloads(tiny_module, tmp_path, kind):
    seed_everything(0)
    if kind == "prichexy":
        # a large mu and clean smoothing so that the random initial flow visibly distorts the image
        net = PriCheXyNet(FlowFieldGenerator(**TINY_GENERATOR), mu=0.2, smoothing="displacement", working_size=32)
    else:
        net = PrivacyNetEncoder(init_features=2)
    ckpt = tmp_path / f"{kind}.pt"
    stage = create_reconstruction_stage(
        net, _fixed(tiny_module.image_loader("train", 8)), tiny_module.image_loader("val", 8), max_epochs=1, lr=1e-2,
        ckpt_path=ckpt, progress=False,
    )
    summary = stage.run()
    losses = _losses(summary)
    assert losses[-1] < 0.8 * losses[0], losses
    model, meta = load_network(ckpt)
    if kind == "prichexy":
        assert isinstance(model, FlowFieldGenerator)
        assert meta["mu"] == 0.2 and meta["smoothing"] == "displacement" and meta["anonymizer"] == "prichexy"
    else:
        assert isinstance(model, PrivacyNetEncoder) and meta["anonymizer"] == "privacy_net"


def test_privacy_loss_is_stable_softplus():
    logits = torch.tensor([-50.0, -1.0, 0.0, 2.0, 80.0])
    expected = -torch.log1p(-torch.sigmoid(logits[:4].double())).float()
    assert torch.allclose(privacy_loss(logits, "none")[:4], expected, atol=1e-6)
    assert torch.isfinite(privacy_loss(logits)).all() and privacy_loss(logits, "none")[-1] == pytest.approx(80.0)


def _tiny_nets(mu=0.05):
    seed_everything(0)
    anonymizer = PriCheXyNet(FlowFieldGenerator(**TINY_GENERATOR), mu=mu, smoothing="grid", working_size=32)
    return anonymizer, AbnormalityClassifier(**TINY_CLASSIFIER), SiameseVerifier(**TINY_VERIFIER)


def _step(anonymizer, classifier, verifier, freeze):
    opt = lambda net, lr=1e-3: torch.optim.Adam(net.parameters(), lr=lr)  # noqa: E731
    return AdversarialStep(
        anonymizer, classifier, verifier, opt(anonymizer),
        None if freeze else torch.optim.SGD(classifier.parameters(), lr=1e-2, momentum=0.9, weight_decay=1e-4),
        None if freeze else opt(verifier), torch.device("cpu"), freeze_classifier=freeze, freeze_verifier=freeze,
    )


@pytest.mark.parametrize("freeze", [False, True])
def test_adversarial_step_updates_the_right_networks(tiny_module, freeze):
    anonymizer, classifier, verifier = _tiny_nets()
    if freeze:
        from monai_prichexy.engines.utils import set_requires_grad

        set_requires_grad([classifier, verifier], False)
    before = {n: _state(m) for n, m in (("g", anonymizer), ("c", classifier), ("v", verifier))}
    step = _step(anonymizer, classifier, verifier, freeze)
    batch = next(iter(tiny_module.pair_loader("train", 8)))
    out = step(None, batch)
    assert _changed(before["g"], anonymizer)
    assert _changed(before["c"], classifier) is not freeze
    assert _changed(before["v"], verifier) is not freeze
    assert {"loss_g", "loss_cls", "loss_priv"} <= set(out)
    assert ("loss_v" in out) is not freeze and ("loss_c" in out) is not freeze
    # L_G is exactly the weighted sum of its two terms
    assert out["loss_g"] == pytest.approx(out["loss_cls"] + out["loss_priv"], rel=1e-5)


def test_adversarial_generator_loss_falls_against_frozen_adversaries(tiny_module):
    # random tiny adversaries are insensitive to small deformations: L_G moves by ~1e-3 over 8
    # steps, but it must move down at every step (a wrong sign or no generator update fails)
    anonymizer, classifier, verifier = _tiny_nets()
    from monai_prichexy.engines.utils import set_requires_grad

    set_requires_grad([classifier, verifier], False)
    step = _step(anonymizer, classifier, verifier, freeze=True)
    batch = next(iter(tiny_module.pair_loader("train", 8)))
    for g in step.opt_anonymizer.param_groups:
        g["lr"] = 1e-2
    losses = [step(None, batch)["loss_g"] for _ in range(STEPS)]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < losses[0] - 2e-4, losses


def test_adversarial_stage_runs_keeps_best_and_reloads(tiny_module, tmp_path):
    anonymizer, classifier, verifier = _tiny_nets()
    c0, v0 = copy.deepcopy(classifier), copy.deepcopy(verifier)
    stage = create_adversarial_stage(
        anonymizer, classifier, verifier, tiny_module.pair_loader("train", 8, shuffle=True),
        tiny_module.pair_loader("val", 8), max_epochs=2, ckpt_path=tmp_path / "adv.pt",
        classifier_ckpt_path=tmp_path / "adv_c.pt", verifier_ckpt_path=tmp_path / "adv_v.pt",
        export_path=tmp_path / "models" / "model.pt", meta={"seed": 0}, progress=False,
    )
    summary = stage.run()
    assert summary["epochs_run"] == 2 and summary["select_metric"] == "val_total"
    hist = summary["history"]
    assert {"val_total", "val_cls", "val_priv", "val_v_loss", "val_mse", "val_v_auc"} <= set(hist[0])
    assert summary["best_metric"] == pytest.approx(min(h["val_total"] for h in hist))
    for h in hist:  # total = cls + priv (weights 1, 1)
        assert h["val_total"] == pytest.approx(h["val_cls"] + h["val_priv"], rel=1e-5)
    gen, meta = load_network(tmp_path / "adv.pt")
    assert isinstance(gen, FlowFieldGenerator) and meta["mu"] == 0.05 and meta["stage"] == "adversarial"
    assert meta["epoch"] == summary["best_epoch"]
    c, _ = load_network(tmp_path / "adv_c.pt")
    v, _ = load_network(tmp_path / "adv_v.pt")
    assert _changed(_state(c0), c) and _changed(_state(v0), v)
    # the bundle model: bare generator state dict + meta JSON
    from monai_prichexy.weights import load_generator

    g2, _ = load_generator(tmp_path / "models" / "model.pt")
    assert all(torch.equal(a, b) for a, b in zip(g2.state_dict().values(), gen.state_dict().values()))
    info = json.loads((tmp_path / "models" / "model.json").read_text())
    assert info["mu"] == 0.05 and info["network"] == "FlowFieldGenerator"
    assert info["stage"] == "adversarial" and info["seed"] == 0 and info["best_epoch"] == summary["best_epoch"]


def test_adversarial_stage_frozen_keeps_classifier_and_verifier(tiny_module, tmp_path):
    anonymizer, classifier, verifier = _tiny_nets()
    c0, v0, g0 = _state(classifier), _state(verifier), _state(anonymizer)
    stage = create_adversarial_stage(
        anonymizer, classifier, verifier, tiny_module.pair_loader("train", 8), tiny_module.pair_loader("val", 8),
        max_epochs=1, freeze_classifier=True, freeze_verifier=True, progress=False,
    )
    summary = stage.run()
    assert not _changed(c0, classifier) and not _changed(v0, verifier)
    assert _changed(g0, anonymizer)
    assert "loss_v" not in summary["iterations"][0]


def test_stage_loss_uses_bce_over_14_labels():
    # the classifier stage optimises BCE with logits over the 14 findings
    logits, labels = torch.zeros(2, 14), torch.ones(2, 14)
    assert F.binary_cross_entropy_with_logits(logits, labels).item() == pytest.approx(0.6931, abs=1e-4)


def test_verifier_stage_can_select_by_validation_auc(tiny_module):
    seed_everything(0)
    stage = create_verifier_stage(
        SiameseVerifier(**TINY_VERIFIER), tiny_module.pair_loader("train", 8), tiny_module.pair_loader("val", 8),
        max_epochs=2, lr=1e-3, patience=1, select="val_auc", progress=True,  # also exercises the progress bar
    )
    summary = stage.run()
    assert summary["select_metric"] == "val_auc" and summary["meta"]["select"] == "val_auc"
    assert summary["best_metric"] == pytest.approx(max(h["val_auc"] for h in summary["history"]))
    with pytest.raises(ValueError):
        create_verifier_stage(SiameseVerifier(**TINY_VERIFIER), [], [], select="auc")


def test_verifier_stage_can_keep_the_last_epoch(tiny_module):
    seed_everything(0)
    net = SiameseVerifier(**TINY_VERIFIER)
    stage = create_verifier_stage(
        net, tiny_module.pair_loader("train", 8), tiny_module.pair_loader("val", 8), max_epochs=2, lr=1e-3,
        patience=None, select="last", progress=False,
    )
    summary = stage.run()
    assert summary["best_epoch"] == 2 and summary["epochs_run"] == 2
    assert summary["best_metric"] == pytest.approx(summary["history"][-1]["val_auc"])
    with pytest.raises(ValueError, match="patience"):
        create_verifier_stage(SiameseVerifier(**TINY_VERIFIER), [], [], patience=3, select="last")
