"""DeformAnonymize(d) and DPPix(d): shape, type, dtype, range, determinism, privacy of metadata."""

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, InvertibleTransform

from monai_prichexy.networks import FlowFieldGenerator, PriCheXyNet
from monai_prichexy.transforms import (
    DeformAnonymize,
    DeformAnonymized,
    DeformAnonymizeD,
    DPPix,
    DPPixd,
    pseudonymize_name,
)
from monai_prichexy.weights import save_checkpoint


class ConstantFlow(torch.nn.Module):
    """A 'generator' whose flow is +1 in x everywhere."""

    def forward(self, x):
        flow = torch.zeros(x.shape[0], 2, *x.shape[-2:], dtype=x.dtype)
        flow[:, 0] = 1.0
        return flow


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return PriCheXyNet(FlowFieldGenerator(init_features=2), mu=0.01, working_size=32)


@pytest.mark.parametrize(
    "make",
    [
        lambda: (np.random.rand(1, 40, 56) * 255).astype(np.uint8),
        lambda: (np.random.rand(1, 40, 56) * 4095).astype(np.uint16),
        lambda: (np.random.rand(1, 40, 56) * 2000 - 1000).astype(np.int16),
        lambda: np.random.rand(1, 40, 56).astype(np.float32),
        lambda: np.random.rand(1, 37, 53),
        lambda: torch.rand(1, 40, 56),
        lambda: (torch.rand(1, 33, 47) * 1000).to(torch.int32),
        lambda: MetaTensor(torch.rand(1, 40, 56)),
    ],
)
def test_output_keeps_shape_type_dtype_and_range(tiny, make):
    img = make()
    out = DeformAnonymize(tiny)(img)
    assert type(out) is type(img)
    assert out.shape == img.shape and out.dtype == img.dtype
    assert out.min() >= img.min() and out.max() <= img.max()


def test_deterministic_and_changes_pixels(tiny):
    img = np.random.rand(1, 64, 64).astype(np.float32)
    t = DeformAnonymize(tiny)
    a, b = t(img), t(img)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, img)


def test_full_resolution_image_is_deformed_at_full_resolution():
    """The flow is computed at the working size and applied at the input's size."""
    with pytest.warns(UserWarning, match="not a FlowFieldGenerator"):
        t = DeformAnonymize(ConstantFlow(), mu=0.01, smoothing="displacement", working_size=32)
    ramp = np.tile(np.arange(512, dtype=np.float64), (1, 300, 1))
    out = t(ramp)
    # zero padding of the smoothing at 32 px reaches 4/31 of the width: look further inside
    assert np.allclose(out[0, 80:-80, 80:-80], ramp[0, 80:-80, 80:-80] - 0.01 * 511 / 2, atol=1e-3)


def test_not_invertible_and_nothing_recorded(tiny):
    assert not isinstance(DeformAnonymize(tiny), InvertibleTransform)
    assert not hasattr(DeformAnonymize(tiny), "inverse")
    meta = {
        "filename_or_obj": "/archive/00000123_004.png",
        "PatientName": "DOE^JOHN",
        "0010|0020": "00000123",
        "affine": torch.eye(4),
    }
    img = MetaTensor(torch.rand(1, 32, 32), meta=meta)
    img.applied_operations = [{"class": "Resize", "extra_info": {"note": "00000123"}}]
    out = DeformAnonymize(tiny, name_key="k")(img)
    assert out.applied_operations == []
    assert set(out.meta) <= {"affine", "original_affine", "spatial_shape", "original_channel_dim", "space", "filename_or_obj"}
    assert "00000123" not in out.meta["filename_or_obj"] and out.meta["filename_or_obj"].endswith(".png")
    assert out.meta["filename_or_obj"] == pseudonymize_name("00000123_004.png", "k")
    assert not any(torch.is_tensor(v) and v.ndim >= 3 for v in out.meta.values())  # no flow field


def test_dictionary_version_and_aliases(tiny):
    assert DeformAnonymizeD is DeformAnonymized
    data = {
        "image": MetaTensor(torch.rand(1, 32, 48), meta={"PatientID": "X1"}),
        "image_meta_dict": {"PatientID": "X1", "filename_or_obj": "X1.dcm"},
        "label": 3,
    }
    out = Compose([DeformAnonymized(keys="image", generator=tiny)])(data)
    assert out["image"].shape == (1, 32, 48) and out["label"] == 3
    assert "PatientID" not in out["image"].meta and "PatientID" not in out["image_meta_dict"]
    with pytest.raises(KeyError):
        DeformAnonymized(keys="other", generator=tiny)(data)
    assert "image" in DeformAnonymized(keys="other", generator=tiny, allow_missing_keys=True)(data)


def test_generator_from_checkpoint_path_takes_its_mu(tmp_path, tiny):
    path = save_checkpoint(tmp_path / "g.pt", PriCheXyNet(tiny.generator, mu=0.005, working_size=32))
    t = DeformAnonymize(str(path), working_size=32)
    assert t.network.mu == 0.005
    img = np.random.rand(1, 32, 32).astype(np.float32)
    assert np.allclose(t(img), DeformAnonymize(PriCheXyNet(tiny.generator, mu=0.005, working_size=32))(img))


def test_checkpoint_budget_bounds_the_displacement_through_the_transform(tmp_path):
    """The displacement budget travels with the weights: DeformAnonymize applies the bound they were measured with.

    mu = 1 / 127.5 lets each axis reach 1 px at 256, so vectors reach sqrt(2) px without the bound;
    the checkpoint's 1-px budget must keep every vector at or below 1 px at any image size.
    """
    torch.manual_seed(0)
    generator = FlowFieldGenerator(init_features=2)
    with torch.no_grad():  # saturate the tanh: flow ~ (1, 1) everywhere
        generator.head.weight.zero_()
        generator.head.bias.fill_(5.0)
    net = PriCheXyNet(generator, mu=1 / 127.5, smoothing="displacement", working_size=32, budget_px=1.0)
    path = save_checkpoint(tmp_path / "g.pt", net)
    transform = DeformAnonymize(path)
    assert transform.network.budget_px == pytest.approx(1.0)
    unbounded = PriCheXyNet(generator, mu=1 / 127.5, smoothing="displacement", working_size=32)
    for side in (64, 256, 300):
        x = torch.rand(2, 1, side, side)
        length = transform.network.displacement(x).pow(2).sum(1).sqrt() * 127.5
        assert float(length.max()) <= 1.0 + 1e-4
        free = unbounded.displacement(x).pow(2).sum(1).sqrt() * 127.5
        assert float(free.max()) > 1.05  # the bound is what keeps it: without it the vectors are longer


def test_bad_arguments_and_inputs(tiny):
    from monai_prichexy.weights import MissingSetupError, WeightsError

    with pytest.raises(MissingSetupError, match="mu is required") as info:
        DeformAnonymize(FlowFieldGenerator(init_features=2))
    assert isinstance(info.value, WeightsError) and isinstance(info.value, ValueError)
    with pytest.raises(TypeError, match="generator"):
        DeformAnonymize(42, mu=0.01)
    with pytest.raises(ValueError, match="smoothing"):
        DeformAnonymize(tiny, smoothing="blur")
    t = DeformAnonymize(tiny)
    for bad, match in [
        (np.zeros((32, 32)), r"\(1, H, W\)"),
        (np.zeros((3, 32, 32)), r"\(1, H, W\)"),
        (np.zeros((1, 1, 32)), "too small"),
        (np.full((1, 8, 8), np.nan), "NaN"),
        (np.full((1, 8, 8), np.inf), "NaN or infinite"),
        (np.zeros((1, 8, 8), dtype=bool), "boolean"),
    ]:
        with pytest.raises(ValueError, match=match):
            t(bad)


def test_risky_mu_warns():
    g = FlowFieldGenerator(init_features=2)
    with pytest.warns(UserWarning, match="too small"):
        DeformAnonymize(g, mu=1e-5)
    with pytest.warns(UserWarning, match="large utility cost"):
        DeformAnonymize(g, mu=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DeformAnonymize(g, mu=0.01)


def test_constant_image_stays_constant(tiny):
    img = np.full((1, 32, 32), 7, dtype=np.uint16)
    assert np.array_equal(DeformAnonymize(tiny)(img), img)


def test_dppix_pixelizes_adds_laplace_noise_and_clips():
    img = np.random.rand(1, 32, 32).astype(np.float32)
    t = DPPix(b=4, m=1, eps=100.0)
    t.set_random_state(0)
    out = t(img)
    assert out.shape == img.shape and out.dtype == img.dtype
    assert np.all((out >= 0) & (out <= 1))
    cells = out[0].reshape(8, 4, 8, 4)
    assert np.allclose(cells, cells[:, :1, :, :1])  # constant within each 4x4 cell
    assert t.scale == pytest.approx(1 / (16 * 100))
    t2 = DPPix(b=4, m=1, eps=100.0)
    t2.set_random_state(0)
    assert np.array_equal(t2(img), out)
    noisy = DPPix(b=1, m=1, eps=0.1).set_random_state(1)(img)
    assert np.mean((noisy == 0) | (noisy == 1)) > 0.8  # the paper's b=1 setting destroys the image


def test_dppix_on_8bit_uses_the_8bit_scale():
    t = DPPix(b=2, m=1, eps=0.1, intensity_range=(0, 255))
    assert t.scale == pytest.approx(255 / (4 * 0.1))
    out = t.set_random_state(0)(np.full((1, 8, 8), 128, dtype=np.uint8))
    assert out.dtype == np.uint8


def test_dppix_errors_and_dictionary_version():
    with pytest.raises(ValueError, match="does not divide"):
        DPPix(b=3)(np.zeros((1, 32, 32), dtype=np.float32))
    with pytest.raises(ValueError, match="positive integer"):
        DPPix(b=0)
    with pytest.raises(ValueError, match="eps"):
        DPPix(eps=0)
    d = DPPixd(keys=["a", "b"], b=2).set_random_state(0)
    data = d({"a": torch.rand(1, 8, 8), "b": torch.rand(1, 8, 8)})
    again = DPPixd(keys=["a", "b"], b=2).set_random_state(0)({"a": torch.rand(1, 8, 8), "b": torch.rand(1, 8, 8)})
    assert data["a"].shape == (1, 8, 8)
    assert not torch.equal(data["a"], data["b"])  # independent noise per key
    # the same seed draws the same noise for each key, whatever the image: noise = output - block means
    quiet = {"keys": ["a", "b"], "b": 2, "eps": 1e3}  # scale 2.5e-4: nothing is clipped
    first = {"a": 0.4 + 0.2 * torch.rand(1, 8, 8), "b": 0.4 + 0.2 * torch.rand(1, 8, 8)}
    second = {"a": 0.4 + 0.2 * torch.rand(1, 8, 8), "b": 0.4 + 0.2 * torch.rand(1, 8, 8)}
    out1 = DPPixd(**quiet).set_random_state(0)(dict(first))
    out2 = DPPixd(**quiet).set_random_state(0)(dict(second))

    def noise(out, img):
        return np.asarray(out)[0, ::2, ::2] - _block_means(np.asarray(img, dtype=np.float64), 2)[0]

    assert np.allclose(noise(out1["a"], first["a"]), noise(out2["a"], second["a"]), atol=1e-6)
    assert np.allclose(noise(out1["b"], first["b"]), noise(out2["b"], second["b"]), atol=1e-6)
    assert not np.allclose(noise(out1["a"], first["a"]), noise(out1["b"], first["b"]), atol=1e-6)


def _block_means(img: np.ndarray, b: int) -> np.ndarray:
    """Mean of every b x b cell, by explicit loops (C, H / b, W / b)."""
    c, h, w = img.shape
    out = np.empty((c, h // b, w // b))
    for ch in range(c):
        for i in range(h // b):
            for j in range(w // b):
                out[ch, i, j] = img[ch, i * b : (i + 1) * b, j * b : (j + 1) * b].mean()
    return out


@pytest.mark.parametrize("b", [1, 2, 4, 8])
def test_dppix_cells_equal_block_means_at_large_epsilon(b):
    """With eps so large that the noise vanishes, DP-Pix is exactly pixelization."""
    from monai_prichexy.engines import DPPixAnonymizer

    img = np.random.default_rng(b).random((1, 32, 24))
    expected = np.kron(_block_means(img, b), np.ones((1, b, b)))
    out = DPPix(b=b, m=1, eps=1e12).set_random_state(0)(img.astype(np.float32))
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    batch = DPPixAnonymizer(b=b, eps=1e12, seed=0)(torch.from_numpy(img[None]).float())
    np.testing.assert_allclose(batch[0].numpy(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "b, m, eps, intensity_range",
    [(1, 1.0, 50.0, (0.0, 1.0)), (2, 1.0, 10.0, (0.0, 1.0)), (4, 2.0, 4.0, (0.0, 1.0)), (2, 1.0, 10.0, (0.0, 255.0))],
)
def test_dppix_noise_is_laplace_of_the_stated_scale(b, m, eps, intensity_range):
    """noise = cell - block mean is Laplace(0, range * m / (b^2 eps)): mean |noise| = scale,
    std = sqrt(2) scale, and a Kolmogorov-Smirnov test against scipy's Laplace passes (the image
    sits mid-range and the scale is at most 3 % of the range, so nothing is clipped)."""
    from scipy import stats

    low, high = intensity_range
    scale = (high - low) * m / (b**2 * eps)
    img = low + (high - low) * (0.4 + 0.2 * np.random.default_rng(0).random((1, 256, 256)))
    out = DPPix(b=b, m=m, eps=eps, intensity_range=intensity_range).set_random_state(3)(img)
    noise = (np.asarray(out, dtype=np.float64)[:, ::b, ::b] - _block_means(img, b)).ravel()
    assert noise.size == (256 // b) ** 2
    assert np.abs(noise).mean() == pytest.approx(scale, rel=0.06)
    assert noise.std() == pytest.approx(np.sqrt(2) * scale, rel=0.08)
    assert abs(noise.mean()) < 5 * np.sqrt(2) * scale / np.sqrt(noise.size)
    assert stats.kstest(noise, stats.laplace(scale=scale).cdf).pvalue > 1e-3


def test_readme_chain_gives_the_clis_pixels(tmp_path):
    """The README's ``Compose`` snippet, run as written (paths swapped), gives the pixels the CLI writes (issue 13)."""
    import re

    from PIL import Image

    from monai_prichexy.cli import main
    from tests.test_pipeline_support import png_array, tiny_weights, write_png

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## DeformAnonymize in a MONAI chain", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    weights = tiny_weights(tmp_path / "g.pt")
    source = write_png(tmp_path / "in" / "radiograph.png", png_array(rows=60, cols=84))  # not square: orientation shows
    assert '"bundle/models/model.pt"' in code and '"radiograph.png"' in code
    code = code.replace('"bundle/models/model.pt"', repr(str(weights))).replace('"radiograph.png"', repr(str(source)))
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    chain = scope["out"].as_tensor()[0].numpy()
    assert main(["anonymize", str(tmp_path / "in"), str(tmp_path / "out"), "--weights", str(weights),
                 "--key-file", str(tmp_path / "k.key"), "--new-key", "--no-progress", "-q"]) == 0
    (written,) = [p for p in (tmp_path / "out").rglob("*.png")]
    cli = np.asarray(Image.open(written))
    assert cli.shape == chain.shape == (60, 84) and chain.dtype == cli.dtype == np.uint8
    np.testing.assert_array_equal(chain, cli)  # native values in, the CLI's very pixels out
    assert np.abs(cli - png_array(rows=60, cols=84)).max() > 0  # and the deformation did move something


def test_the_transform_output_is_warped_within_the_checkpoint_budget(tmp_path):
    """Not only the network's displacement: the pixels DeformAnonymize writes move by at most the budget."""
    from monai_prichexy.networks.deformation import warp

    torch.manual_seed(0)
    generator = FlowFieldGenerator(init_features=2)
    with torch.no_grad():  # saturate the tanh: flow ~ (1, 1) everywhere, sqrt(2) px long without the bound
        generator.head.weight.zero_()
        generator.head.bias.fill_(5.0)
    net = PriCheXyNet(generator, mu=1 / 127.5, smoothing="displacement", working_size=32, budget_px=1.0)
    transform = DeformAnonymize(save_checkpoint(tmp_path / "g.pt", net))
    unbounded = PriCheXyNet(generator, mu=1 / 127.5, smoothing="displacement", working_size=32)
    rows, cols = torch.meshgrid(torch.arange(96.0), torch.arange(80.0), indexing="ij")
    image = (rows * 80 + cols)[None]  # a ramp: every shift changes the value
    view = ((image - image.min()) / (image.max() - image.min()))[None]
    out = torch.as_tensor(transform(image))
    bounded = warp(image[None], net.sampling_grid(view))[0]
    free = warp(image[None], unbounded.sampling_grid(view))[0]
    assert torch.allclose(out, bounded, atol=1e-2)
    assert float((out - free).abs().max()) > 1.0  # without the bound the output would differ


def test_bf16_precision_is_opt_in_close_to_fp32_and_checked(tiny):
    """bf16 runs the generator's body under autocast: near the fp32 result, never the default,
    refused if misspelt, and refused for weights whose grid it moves too far (a self-check)."""
    torch.manual_seed(0)
    net = PriCheXyNet(FlowFieldGenerator(init_features=16), mu=0.002, working_size=64)
    image = torch.rand(1, 64, 80) * 4095
    exact = torch.as_tensor(DeformAnonymize(copy.deepcopy(net))(image))
    fast_transform = DeformAnonymize(copy.deepcopy(net), precision="bf16")
    fast = torch.as_tensor(fast_transform(image))
    assert DeformAnonymize(copy.deepcopy(net)).precision == "fp32" and fast_transform.precision == "bf16"
    assert fast.shape == exact.shape and float((fast - exact).abs().max()) < 0.01 * 4095
    with pytest.raises(ValueError, match="precision"):
        DeformAnonymize(net, precision="fp16")
    torch.manual_seed(0)
    coarse = PriCheXyNet(FlowFieldGenerator(init_features=4), mu=0.2, working_size=32)  # 10x the grid change
    with pytest.raises(ValueError, match="bf16 moves these weights' sampling grid by up to .* use precision fp32"):
        DeformAnonymize(coarse, precision="bf16")
