"""Displacement statistics, folds, frame and SSIM against hand values; the budget's clamp."""

from __future__ import annotations

import pytest
import torch

from monai_prichexy.metrics.displacement import DisplacementAccumulator, frame_mask, ssim_and_change
from monai_prichexy.networks import PriCheXyNet
from monai_prichexy.networks.deformation import (
    clamp_displacement,
    frame_width_px,
    identity_grid,
    jacobian_determinant,
    px_to_normalised,
    sampling_grid,
)


def test_constant_displacement_in_every_unit():
    d = torch.zeros(2, 2, 64, 64)
    d[:, 0] = px_to_normalised(3.0, 64)  # 3 px along x at 64 px
    d[:, 1] = px_to_normalised(4.0, 64)  # 4 px along y: length 5 px
    acc = DisplacementAccumulator(working_size=32)
    acc.update(d)
    out = acc.compute()
    inner = out["interior"]
    assert inner["mean_px_image"] == pytest.approx(5.0) and inner["p99_px_image"] == pytest.approx(5.0)
    assert inner["mean_px_working"] == pytest.approx(5.0 * 31 / 63)
    assert inner["mean_px_256"] == pytest.approx(5.0 * 255 / 63)
    assert inner["mean_fraction_of_side"] == pytest.approx(5.0 / 63)
    assert out["frame_share"] == 0.0 and out["fold_share"] == 0.0 and out["n_images"] == 2
    assert out["min_jacobian_determinant"] == pytest.approx(1.0)


def test_frame_share_and_the_paper_operator_folds_its_frame():
    mask = frame_mask(64, 64, 4)
    assert int(mask.sum()) == 64 * 64 - 56 * 56
    assert frame_width_px("grid", 64, 128) == pytest.approx(4 * 127 / 63) and frame_width_px("displacement", 64, 128) == 0
    zero = torch.zeros(1, 2, 256, 256)
    grid = sampling_grid(zero, 0.01, "grid")  # the paper's smoothing of the full grid, no flow at all
    det = jacobian_determinant(grid)
    assert float(det[0, 128, 128]) == pytest.approx(1.0, abs=1e-4)
    assert float(det.min()) < 0  # zero padding pulls the frame inwards: the map folds there
    acc = DisplacementAccumulator(256, frame_width_px("grid", 256, 256))
    acc.update(grid - identity_grid(256, 256))
    out = acc.compute()
    assert out["frame_share"] == pytest.approx(1 - 248**2 / 256**2, abs=1e-6)
    # folds: the frame and the one-pixel ring where it meets the interior (the map reverses between them)
    ring = 4 * (247 + 247)
    assert out["fold_share"] > 0.05 and out["fold_share_interior"] <= ring / 248**2 + 1e-9
    assert out["interior"]["max_px_256"] == pytest.approx(0.0, abs=1e-3)
    assert out["whole_image"]["max_px_256"] > 51.47  # edges sample ~51.5 px inside (issue 16), corners more
    clean = sampling_grid(zero, 0.01, "displacement")
    assert float(jacobian_determinant(clean).min()) == pytest.approx(1.0, abs=1e-4)


def test_clamp_displacement_bounds_the_vector_length():
    d = torch.zeros(1, 2, 4, 4)
    d[0, 0, 0, 0], d[0, 1, 0, 0] = 0.03, 0.04  # length 0.05 normalised = 6.375 px at 256
    d[0, 0, 1, 1] = 0.001  # 0.1275 px: untouched
    out = clamp_displacement(d, 2.55)  # 0.02 normalised
    assert float(torch.linalg.vector_norm(out[0, :, 0, 0])) == pytest.approx(0.02, rel=1e-5)
    assert torch.allclose(out[0, :, 0, 0] / out[0, :, 0, 0].norm(), d[0, :, 0, 0] / d[0, :, 0, 0].norm())
    assert float(out[0, 0, 1, 1]) == pytest.approx(0.001)
    assert clamp_displacement(d, None) is d


@pytest.mark.parametrize("smoothing", ["displacement", "none"])
def test_a_saturated_generator_stays_within_its_budget(smoothing):
    torch.manual_seed(0)
    net = PriCheXyNet(mu=px_to_normalised(3.0), smoothing=smoothing, working_size=32, init_features=2, budget_px=2.0)
    with torch.no_grad():
        net.generator.head.bias.fill_(50.0)  # tanh saturates: mu * G = (mu, mu) per pixel, length sqrt(2) * 3 px
    x = torch.rand(2, 1, 64, 64)
    acc = DisplacementAccumulator(32, net.frame_px(64))
    acc.update(net.displacement(x))
    out = acc.compute()
    assert out["whole_image"]["max_px_256"] <= 2.0 + 1e-4
    # the budget is reached away from the border (the displacement's own smoothing fades it within 4 px of the edge)
    assert out["interior"]["p99_px_256"] == pytest.approx(2.0, abs=1e-3)
    assert out["fold_share"] == 0.0 and float(net.folds(x).max()) == 0.0


def test_ssim_and_change():
    x = torch.rand(3, 1, 32, 32)
    same = ssim_and_change(x, x)
    assert same["ssim_mean"] == pytest.approx(1.0) and same["mean_abs_change"] == 0.0
    noisy = ssim_and_change((x + 0.3 * torch.randn_like(x)).clamp(0, 1), x)
    assert noisy["ssim_mean"] < 0.8 and noisy["mean_abs_change"] > 0.1
    with pytest.raises(ValueError, match="shapes differ"):
        ssim_and_change(x, x[:, :, :16])
