"""Training stages: each trains on tiny synthetic data, its loss falls on a fixed batch, its
checkpoint reloads, and the adversarial step updates (or, frozen, keeps) the right networks."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

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


def _bce(logit: float, y: float) -> float:
    """-(y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))), by hand."""
    p = 1.0 / (1.0 + math.exp(-logit))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


class _Fixed(torch.nn.Module):
    """Known logits whatever the input (plus a zero parameter, so that optimizers and the
    gradient path exist): ``forward(x)`` or ``forward(x1, x2)`` -> ``logits + p + 0 * mean(x)``."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, x2=None):
        return self.logits + self.p + 0.0 * x.mean(dim=(1, 2, 3))[:, None]


class _Gain(torch.nn.Module):
    """A stand-in anonymizer ``x -> a * x`` with one parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.a * x


def _known_batch():
    gen = torch.Generator().manual_seed(0)
    labels = (torch.rand(4, 14, generator=gen) < 0.3).float()
    return {
        "image1": torch.rand(4, 1, 8, 8, generator=gen), "image2": torch.rand(4, 1, 8, 8, generator=gen),
        "label": torch.tensor([1, 0, 1, 0]), "labels1": labels,
    }


def test_classifier_stage_loss_is_bce_over_the_14_labels():
    """The first iteration's recorded loss equals the mean BCE over 4 x 14 (logit, label) pairs, by hand."""
    batch = _known_batch()
    logits = torch.linspace(-2.0, 2.5, 14).expand(4, 14)
    net = _Fixed(logits)
    data = [{"image": batch["image1"], "label": batch["labels1"]}]
    summary = create_classifier_stage(net, data, data, max_epochs=1, lr=1e-3, select="val_loss", progress=False).run()
    expected = sum(_bce(float(logits[i, j]), float(batch["labels1"][i, j])) for i in range(4) for j in range(14)) / 56
    assert summary["iterations"][0]["loss"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("frozen", [True, False])
def test_adversarial_loss_terms_by_hand(frozen):
    """L_G = w_cls * mean BCE(C(x1'), labels) + w_priv * mean(-log(1 - sigmoid(V(x1', x2)))) over ALL
    pairs, whatever y; then V's BCE on (x1', x2, y) and C's BCE on (x1', labels): each term by hand."""
    batch = _known_batch()
    c_logits = torch.linspace(-1.5, 1.5, 56).reshape(4, 14)
    v_logits = torch.tensor([[2.0], [-1.0], [0.5], [1.5]])
    anonymizer, classifier, verifier = _Gain(), _Fixed(c_logits), _Fixed(v_logits)
    opt = None if frozen else torch.optim.SGD
    step = AdversarialStep(
        anonymizer, classifier, verifier, torch.optim.SGD(anonymizer.parameters(), lr=0.1),
        opt and opt(classifier.parameters(), lr=0.1), opt and opt(verifier.parameters(), lr=0.1), torch.device("cpu"),
        weight_cls=2.0, weight_priv=3.0, freeze_classifier=frozen, freeze_verifier=frozen,
    )
    out = step(None, batch)
    labels, same = batch["labels1"], batch["label"]
    cls = sum(_bce(float(c_logits[i, j]), float(labels[i, j])) for i in range(4) for j in range(14)) / 56
    priv = sum(-math.log(1 - 1 / (1 + math.exp(-float(v)))) for v in v_logits[:, 0]) / 4
    assert out["loss_cls"] == pytest.approx(cls, abs=1e-6)
    assert out["loss_priv"] == pytest.approx(priv, abs=1e-6)
    assert out["loss_g"] == pytest.approx(2.0 * cls + 3.0 * priv, abs=1e-5)
    if not frozen:
        assert out["loss_v"] == pytest.approx(sum(_bce(float(v_logits[i, 0]), float(same[i])) for i in range(4)) / 4, abs=1e-6)
        assert out["loss_c"] == pytest.approx(cls, abs=1e-6)  # C's own step: the same BCE, on x1'.detach()
    # validation: per pair, the same two terms (C's BCE averaged over the 14 labels)
    from monai_prichexy.engines.adversarial import AdversarialEvalStep

    classifier.p.data.zero_()
    verifier.p.data.zero_()
    engine = type("E", (), {"state": type("S", (), {"device": torch.device("cpu")})()})()
    val = AdversarialEvalStep(anonymizer, classifier, verifier, weight_cls=2.0, weight_priv=3.0)(engine, batch)
    for i in range(4):
        cls_i = sum(_bce(float(c_logits[i, j]), float(labels[i, j])) for j in range(14)) / 14
        priv_i = -math.log(1 - 1 / (1 + math.exp(-float(v_logits[i, 0]))))
        assert float(val["cls"][i]) == pytest.approx(cls_i, abs=1e-6)
        assert float(val["priv"][i]) == pytest.approx(priv_i, abs=1e-6)
        assert float(val["total"][i]) == pytest.approx(2.0 * cls_i + 3.0 * priv_i, abs=1e-5)


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
