"""Exact geometry of the PriCheXy-Net deformation operator.

Pinned against independent references: the 9 x 9, sigma 2 Gaussian against its closed form,
the paper's edge sample against the value that closed form gives (51.4718 px), and a
non-constant flow against a NumPy / SciPy re-implementation of the operator
(``scipy.ndimage.correlate`` for the smoothing, ``map_coordinates`` for the resampling of the
displacement and for the bilinear border sampling).
"""

import numpy as np
import pytest
import torch
from scipy import ndimage

from monai_prichexy.networks import (
    PriCheXyNet,
    deform,
    gaussian_kernel,
    gaussian_kernel_1d,
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


def _closed_form_kernel(size: int = 9, sigma: float = 2.0) -> np.ndarray:
    """``G[i, j] = exp(-((i - c)^2 + (j - c)^2) / (2 sigma^2)) / sum``, c the centre (float64)."""
    i = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(i[:, None] ** 2 + i[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def test_gaussian_kernel_equals_its_closed_form():
    k = gaussian_kernel(dtype=torch.float64)  # the defaults: the paper's 9 x 9, sigma 2
    assert k.shape == (9, 9)
    np.testing.assert_allclose(k.numpy(), _closed_form_kernel(9, 2.0), rtol=0, atol=1e-15)
    assert k[4, 4].item() == pytest.approx(0.0416828118, abs=1e-10)  # 1 / (sum_i exp(-i^2/8))^2
    np.testing.assert_allclose(gaussian_kernel(5, 1.3, dtype=torch.float64).numpy(), _closed_form_kernel(5, 1.3), atol=1e-15)
    # the kernel the operator applies by default: impulse response of smooth_field
    impulse = torch.zeros(1, 2, 21, 21, dtype=torch.float64)
    impulse[0, :, 10, 10] = 1.0
    response = smooth_field(impulse)[0, 0, 6:15, 6:15]
    np.testing.assert_allclose(response.numpy(), _closed_form_kernel(9, 2.0), atol=1e-15)
    with pytest.raises(ValueError, match="odd"):
        gaussian_kernel(8, 2.0)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_kernel(9, 0.0)


def test_gaussian_kernel_1d_is_the_factor_of_the_2d_kernel():
    g = gaussian_kernel_1d(7, 1.5, dtype=torch.float64)
    x = np.arange(-3, 4, dtype=np.float64)
    np.testing.assert_allclose(g.numpy(), np.exp(-(x**2) / (2 * 1.5**2)) / np.exp(-(x**2) / (2 * 1.5**2)).sum(), atol=1e-15)
    assert torch.equal(gaussian_kernel(7, 1.5, dtype=torch.float64), g[:, None] * g[None, :])


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
    # closed form: sum_{j=0..4} g_j * (j * 2 / 255) + (1 - sum_{j=0..4} g_j) * 1, in px (g: 1-D, sigma 2)
    g = np.exp(-(np.arange(-4, 5) ** 2) / 8.0)
    g /= g.sum()
    expected = ((g[4:] * (-1 + np.arange(5) * 2 / 255)).sum() + 1) * 127.5
    assert expected == pytest.approx(51.4718, abs=1e-4)
    assert edge_px.item() == pytest.approx(51.4718, abs=1e-4)
    # the same for the top row (y channel) and, by symmetry, the right edge
    assert ((grid[0, 1, 0, 128] + 1) * 127.5).item() == pytest.approx(51.4718, abs=1e-4)
    assert ((1 - grid[0, 0, 128, 255]) * 127.5).item() == pytest.approx(51.4718, abs=1e-4)


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


def _reference_deform(image: np.ndarray, flow: np.ndarray, mu: float, smoothing: str) -> np.ndarray:
    """NumPy / SciPy re-implementation of the operator for one (H, W) image and a (2, h, w) flow."""
    h, w = flow.shape[1:]
    height, width = image.shape
    xs, ys = np.meshgrid(np.linspace(-1, 1, w), np.linspace(-1, 1, h), indexing="xy")
    identity = np.stack([xs, ys])  # x channel first
    kernel = _closed_form_kernel(9, 2.0)

    def smooth(field):  # depth-wise, zero padding
        return np.stack([ndimage.correlate(c, kernel, mode="constant", cval=0.0) for c in field])

    if smoothing == "grid":
        grid = smooth(identity - mu * flow)
    elif smoothing == "displacement":
        grid = identity - smooth(mu * flow)
    else:
        grid = identity - mu * flow
    displacement = grid - identity
    if (height, width) != (h, w):  # bilinear, corners onto corners (align_corners=True)
        rows, cols = np.meshgrid(np.arange(height) * (h - 1) / (height - 1), np.arange(width) * (w - 1) / (width - 1), indexing="ij")
        displacement = np.stack([ndimage.map_coordinates(c, [rows, cols], order=1, mode="nearest") for c in displacement])
    big_x, big_y = np.meshgrid(np.linspace(-1, 1, width), np.linspace(-1, 1, height), indexing="xy")
    px = np.clip((big_x + displacement[0] + 1) * (width - 1) / 2, 0, width - 1)  # border padding
    py = np.clip((big_y + displacement[1] + 1) * (height - 1) / 2, 0, height - 1)
    return ndimage.map_coordinates(image, [py, px], order=1, mode="nearest")


@pytest.mark.parametrize("smoothing", ["grid", "displacement", "none"])
@pytest.mark.parametrize("size", [(24, 32), (47, 61)], ids=["same-size", "upsampled"])
def test_non_constant_flow_matches_an_independent_scipy_reference(smoothing, size):
    rng = np.random.default_rng(7)
    flow = np.tanh(2 * rng.standard_normal((2, 24, 32)))  # rough, non-constant, within (-1, 1)
    image = rng.random(size)
    mu = 0.15  # up to ~2.3 px: samples between pixels, some beyond the border
    out = deform(torch.from_numpy(image)[None, None], torch.from_numpy(flow)[None], mu=mu, smoothing=smoothing)
    expected = _reference_deform(image, flow, mu, smoothing)
    assert np.abs(expected - image).max() > 0.1  # guard: a real deformation
    np.testing.assert_allclose(out[0, 0].numpy(), expected, rtol=0, atol=1e-10)


def test_operator_is_differentiable_and_batched():
    image = torch.rand(3, 1, 32, 32)
    flow = torch.zeros(3, 2, 32, 32, requires_grad=True)
    deform(image, flow, mu=0.01).sum().backward()
    assert flow.grad.shape == flow.shape and flow.grad.abs().sum() > 0  # a zero gradient trains nothing
    # the gradient itself, w.r.t. flow and image, against finite differences (float64)
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(2, 1, 10, 12, dtype=torch.float64, generator=gen, requires_grad=True)
    fl = (torch.rand(2, 2, 10, 12, dtype=torch.float64, generator=gen) * 2 - 1).requires_grad_(True)
    for smoothing in ("grid", "displacement", "none"):
        assert torch.autograd.gradcheck(lambda i, f: deform(i, f, mu=0.1, smoothing=smoothing), (img, fl), eps=1e-6, atol=1e-6)


def test_smooth_field_is_depthwise():
    field = torch.zeros(1, 2, 21, 21)
    field[0, 0, 10, 10] = 1.0
    out = smooth_field(field)
    assert out[0, 1].abs().max() == 0
    assert torch.isclose(out[0, 0].sum(), torch.tensor(1.0))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="smoothing"):
        sampling_grid(torch.zeros(1, 2, 8, 8), mu=0.01, smoothing="blur")
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        sampling_grid(torch.zeros(1, 3, 8, 8), mu=0.01)
    with pytest.raises(ValueError, match="mu"):
        PriCheXyNet(mu=-1)
    with pytest.raises(ValueError, match="working_size"):
        PriCheXyNet(working_size=30)


@pytest.mark.parametrize("smoothing", ["grid", "displacement"])
def test_prichexynet_trace_generalises_across_sizes(smoothing):
    """A trace at the working size gives the eager result at other sizes (no size frozen in)."""
    torch.manual_seed(0)
    net = PriCheXyNet(mu=0.01, smoothing=smoothing, working_size=32, init_features=2, budget_px=1.0).eval()
    with torch.no_grad():
        traced = torch.jit.trace(net, torch.rand(2, 1, 32, 32))
        for size in ((64, 64), (256, 256), (512, 576), (32, 32)):
            x = torch.rand(2, 1, *size)
            out = traced(x)
            assert out.shape == x.shape, size
            torch.testing.assert_close(out, net(x), rtol=0, atol=1e-6, msg=f"at {size}")


def test_prichexynet_without_working_size_refuses_tracing():
    net = PriCheXyNet(working_size=None, init_features=2).eval()
    with pytest.raises(RuntimeError, match="working_size=None cannot be traced"):
        torch.jit.trace(net, torch.rand(1, 1, 32, 32))
