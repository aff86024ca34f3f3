"""Each attacker on tiny synthetic data: it trains, scores (Q, G) pairs, and learns identity where identity is there."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_prichexy.engines import AttackContext, MetricAttacker, PixelAttacker, SiameseAttacker, build_attacker
from monai_prichexy.engines.attack import score_attack
from monai_prichexy.engines.attackers import BatchAugment
from monai_prichexy.engines.metric_learning import metric_train_loader, patient_codes
from monai_prichexy.engines.release import TensorImageDataset, load_split_images
from monai_prichexy.networks import EmbeddingNet

from .test_engines_common import TINY_EMBEDDING, TINY_VERIFIER, tiny_data, tiny_module  # noqa: F401


def _context(dm):
    real = {s: load_split_images(dm, s) for s in ("train", "val", "test")}
    return real, AttackContext(real["train"], real["val"], real["val"], real["train"].pair_indices(dm.pairs("train")),
                               real["val"].pair_indices(dm.pairs("val")))


def test_pixel_attacker_is_the_correlation_of_centred_pixels(tiny_module):
    real, _ = _context(tiny_module)
    x = real["test"].images
    s = PixelAttacker().scores(x, x)
    a, b = x[0].flatten().double(), x[1].flatten().double()
    expected = float(torch.corrcoef(torch.stack((a, b)))[0, 1])
    assert s[0, 1] == pytest.approx(expected, abs=1e-9) and s[0, 0] == pytest.approx(1.0)
    # the synthetic patients are smooth patterns: pixel correlation re-identifies them perfectly
    res = score_attack(s, tiny_module, real["test"])
    assert res["auc_pair"] == pytest.approx(1.0)
    assert PixelAttacker(input_size=16).scores(x, x).shape == (9, 9)


@pytest.mark.parametrize("cls, kwargs", [
    (SiameseAttacker, {"network": TINY_VERIFIER, "max_epochs": 2, "batch_size": 8, "lr": 1e-3, "patience": None,
                       "select": "last"}),
    (MetricAttacker, {"network": TINY_EMBEDDING, "max_epochs": 3, "batch_size": 8, "lr": 3e-3,
                      "augment": {"degrees": 2, "scale": 0.02, "translate": 0.02}}),
])
def test_trained_attackers_fit_and_score(tiny_module, cls, kwargs):
    real, ctx = _context(tiny_module)
    attacker = cls(progress=False, **kwargs)
    with pytest.raises(RuntimeError, match="not trained"):
        attacker.scores(real["test"].images, real["test"].images)
    fit = attacker.fit(ctx, seed=0)
    assert fit["trained"] and fit["epochs_run"] == kwargs["max_epochs"]
    s = attacker.scores(real["test"].images, real["test"].images)
    assert s.shape == (9, 9) and np.all(np.isfinite(s))
    res = score_attack(s, tiny_module, real["test"])
    assert 0 <= res["auc_pair"] <= 1 and 0 <= res["precision_at_1"] <= 1
    # the same seed gives the same attacker
    again = cls(progress=False, **kwargs)
    again.fit(ctx, seed=0)
    np.testing.assert_allclose(again.scores(real["test"].images, real["test"].images), s, atol=1e-5)


def test_metric_attacker_learns_identity(tiny_module):
    """Patients are distinct smooth patterns: a few epochs of SupCon separate them (AUC well above chance)."""
    real, ctx = _context(tiny_module)
    attacker = MetricAttacker(network={**TINY_EMBEDDING, "widen_factor": 0.5}, max_epochs=15, batch_size=8, lr=3e-3,
                              progress=False)
    attacker.fit(ctx, seed=0)
    res = score_attack(attacker.scores(real["test"].images, real["test"].images), tiny_module, real["test"])
    assert res["auc_pair"] > 0.7


def test_metric_sampler_batches_hold_every_patient_twice():
    pids = np.array(["a"] * 3 + ["b"] * 2 + ["c"] * 4 + ["d"])
    codes, keep = patient_codes(pids)
    assert "d" not in set(pids[keep]) and len(keep) == 9
    ds = TensorImageDataset(torch.zeros(len(keep), 1, 8, 8), torch.zeros(len(keep), 3), codes[keep])
    loader = metric_train_loader(ds, codes[keep], batch_size=4, m_per_patient=2)
    for batch in loader:
        counts = np.bincount(batch["patient"].numpy())
        assert set(counts[counts > 0]) == {2}
    with pytest.raises(ValueError, match="multiple of m_per_patient"):
        metric_train_loader(ds, codes[keep], batch_size=5, m_per_patient=2)


def test_embedding_net_cosine_and_input_size():
    net = EmbeddingNet(**{**TINY_EMBEDDING, "input_size": 16}).eval()
    x = torch.rand(3, 1, 32, 32)
    e = net(x)
    assert e.shape == (3, 8) and torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(net(x, x), torch.ones(3, 1), atol=1e-5)


def test_batch_augment_is_seeded_and_small():
    x = torch.rand(4, 1, 32, 32)
    a, b = BatchAugment(seed=1)(x), BatchAugment(seed=1)(x)
    assert torch.equal(a, b) and not torch.equal(a, BatchAugment(seed=2)(x))
    assert torch.allclose(BatchAugment(0, 0, 0)(x), x, atol=1e-5)


def test_build_attacker_by_name():
    assert isinstance(build_attacker("pixel", input_size=8), PixelAttacker)
    assert isinstance(build_attacker("siamese", network=TINY_VERIFIER), SiameseAttacker)
    with pytest.raises(ValueError, match="unknown attacker"):
        build_attacker("oracle")
