"""Exact geometry of the PriCheXy-Net deformation operator."""

import pytest
import torch

from monai_prichexy.networks import (
    Deformation,
    PriCheXyNet,
    deform,
    gaussian_kernel,
    identity_grid,
    sampling_grid,
    smooth_field,
)


def _ramp(h=256, w=256):
    return torch.arange(w, dtype=torch.float64).expand(1, 1, h, w).clone()


def _constant_flow(h=256, w=256, x=1.0, y=0.0, dtype=torch.float64):
    flow = torch.zeros(1, 2, h, w, dtype=dtype)
    flow[:, 0] = x
    flow[:, 1] = y
    return flow


def test_identity_grid_is_x_first_and_spans_minus_one_to_one():
    grid = identity_grid(3, 5)
    assert grid.shape == (1, 2, 3, 5)
    assert torch.allclose(grid[0, 0, 0], torch.linspace(-1, 1, 5))
    assert torch.allclose(grid[0, 1, :, 0], torch.linspace(-1, 1, 3))


def test_gaussian_kernel_is_normalised_and_symmetric():
    k = gaussian_kernel(9, 2.0)
    assert k.shape == (9, 9)
    assert torch.isclose(k.sum(), torch.tensor(1.0))
    assert torch.allclose(k, k.T) and torch.allclose(k, k.flip(0))
    with pytest.raises(ValueError, match="odd"):
        gaussian_kernel(8, 2.0)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_kernel(9, 0.0)


def test_zero_flow_with_displacement_smoothing_is_identity():
    image = torch.rand(2, 1, 64, 48, dtype=torch.float64)
    out = deform(image, torch.zeros(2, 2, 64, 48, dtype=torch.float64), mu=0.01, smoothing="displacement")
    assert torch.allclose(out, image, atol=1e-10)
    out_none = deform(image, torch.zeros(2, 2, 64, 48, dtype=torch.float64), mu=0.01, smoothing="none")
    assert torch.allclose(out_none, image, atol=1e-10)


def test_paper_smoothing_keeps_interior_and_distorts_the_four_pixel_frame():
    image = torch.rand(1, 1, 256, 256, dtype=torch.float64)
    out = deform(image, torch.zeros(1, 2, 256, 256, dtype=torch.float64), mu=0.01, smoothing="grid")
    interior = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    assert torch.allclose(out[interior], image[interior], atol=1e-8)
    frame = torch.ones(256, 256, dtype=torch.bool)
    frame[4:-4, 4:-4] = False
    assert (out[0, 0][frame] - image[0, 0][frame]).abs().max() > 0.1
    # the edge column samples from far inside: the zero padding pulls the grid towards 0
    grid = sampling_grid(torch.zeros(1, 2, 256, 256, dtype=torch.float64), mu=0.01, smoothing="grid")
    edge_px = (grid[0, 0, 128, 0] + 1) * 127.5
    assert 30 < edge_px < 70


def test_constant_flow_shifts_interior_by_mu_times_half_width_pixels():
    """grid = I - mu * G: a flow of +1 in x samples 1.275 px to the left (content moves right)."""
    ramp = _ramp()
    for smoothing in ("grid", "displacement", "none"):
        out = deform(ramp, _constant_flow(), mu=0.01, smoothing=smoothing)
        interior = out[0, 0, 8:-8, 8:-8]
        expected = ramp[0, 0, 8:-8, 8:-8] - 1.275
        assert torch.allclose(interior, expected, atol=1e-6), smoothing


def test_y_flow_moves_along_rows():
    ramp_y = _ramp().transpose(-1, -2).contiguous()
    out = deform(ramp_y, _constant_flow(x=0.0, y=-1.0), mu=0.01, smoothing="none")
    assert torch.allclose(out[0, 0, 8:-8, 8:-8], ramp_y[0, 0, 8:-8, 8:-8] + 1.275, atol=1e-6)


def test_flow_is_resampled_to_a_larger_image_in_normalised_units():
    """A flow computed at 64 px deforms a 512-px image by the same fraction of its width."""
    big = _ramp(512, 512)
    out = deform(big, _constant_flow(64, 64), mu=0.01, smoothing="displacement")
    assert torch.allclose(out[0, 0, 40:-40, 40:-40], big[0, 0, 40:-40, 40:-40] - 0.01 * 511 / 2, atol=1e-6)


def test_operator_is_differentiable_and_batched():
    image = torch.rand(3, 1, 32, 32)
    flow = torch.zeros(3, 2, 32, 32, requires_grad=True)
    deform(image, flow, mu=0.01).sum().backward()
    assert flow.grad is not None and flow.grad.shape == flow.shape


def test_smooth_field_is_depthwise():
    field = torch.zeros(1, 2, 21, 21)
    field[0, 0, 10, 10] = 1.0
    out = smooth_field(field)
    assert out[0, 1].abs().max() == 0
    assert torch.isclose(out[0, 0].sum(), torch.tensor(1.0))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="smoothing"):
        Deformation(smoothing="blur")
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        sampling_grid(torch.zeros(1, 3, 8, 8), mu=0.01)
    with pytest.raises(ValueError, match="mu"):
        PriCheXyNet(mu=-1)
    with pytest.raises(ValueError, match="working_size"):
        PriCheXyNet(working_size=30)


def test_prichexynet_is_traceable_and_matches_eager():
    torch.manual_seed(0)
    net = PriCheXyNet(mu=0.01, working_size=32, init_features=2).eval()
    x = torch.rand(2, 1, 32, 32)
    traced = torch.jit.trace(net, x)
    assert torch.allclose(traced(x), net(x), atol=1e-6)


def test_module_form_equals_function():
    image, flow = torch.rand(1, 1, 16, 16), torch.rand(1, 2, 16, 16) * 2 - 1
    assert torch.equal(Deformation(mu=0.005)(image, flow), deform(image, flow, 0.005))
