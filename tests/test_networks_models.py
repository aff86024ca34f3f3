"""The three PriCheXy-Net networks and the Privacy-Net encoder: shapes, sizes, interfaces."""

import pytest
import torch

from monai_prichexy.networks import (
    CXR14_LABELS,
    AbnormalityClassifier,
    FlowFieldGenerator,
    PriCheXyNet,
    PrivacyNetEncoder,
    SiameseVerifier,
)


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_paper_sizes():
    assert 7.7e6 < _count(FlowFieldGenerator()) < 7.9e6  # ~7.8 M in the paper
    assert 6.9e6 < _count(AbnormalityClassifier()) < 7.1e6  # DenseNet-121
    assert 23e6 < _count(SiameseVerifier()) < 24.5e6  # ResNet-50 branch + 128-d head


def test_generator_outputs_a_bounded_two_channel_field():
    g = FlowFieldGenerator(init_features=4)
    flow = g(torch.rand(2, 1, 32, 48))
    assert flow.shape == (2, 2, 32, 48)
    assert flow.abs().max() <= 1
    with pytest.raises(ValueError, match="divisible by 16"):
        g(torch.rand(1, 1, 30, 32))


def test_generator_architecture_matches_the_paper():
    g = FlowFieldGenerator()
    assert [e[0].out_channels for e in g.encoders] == [32, 64, 128, 256]
    assert g.bottleneck[0].out_channels == 512
    assert all(e[0].bias is None for e in g.encoders)
    assert isinstance(g.upconvs[0], torch.nn.ConvTranspose2d) and g.upconvs[0].stride == (2, 2)
    assert isinstance(g.activation, torch.nn.Tanh)


def test_privacy_net_encoder_outputs_an_image_in_unit_range():
    p = PrivacyNetEncoder(init_features=4)
    out = p(torch.rand(1, 1, 32, 32))
    assert out.shape == (1, 1, 32, 32) and 0 <= out.min() and out.max() <= 1
    assert PrivacyNetEncoder().encoders[0][0].out_channels == 16


def test_classifier_interface():
    c = AbnormalityClassifier(input_size=64).eval()
    x = torch.rand(2, 1, 80, 80)
    assert c.targets == CXR14_LABELS and len(c.targets) == 14 and c.targets[-1] == "Hernia"
    assert c(x).shape == (2, 14)
    assert c.features(x).shape == (2, 1024)
    p = c.predict(x)
    assert ((p >= 0) & (p <= 1)).all()
    with pytest.raises(ValueError, match="grayscale"):
        c(torch.rand(2, 3, 64, 64))
    c3 = AbnormalityClassifier(in_channels=3, input_size=64)
    assert c3(x).shape == (2, 14)
    with pytest.raises(ValueError, match="in_channels=3"):
        AbnormalityClassifier(imagenet_weights="x.pt")


def test_verifier_is_symmetric_and_exposes_embeddings():
    v = SiameseVerifier(backbone="resnet10", widen_factor=0.25).eval()
    a, b = torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert v(a, b).shape == (2, 1)
        assert torch.allclose(v(a, b), v(b, a), atol=1e-6)
        e = v.embed(a)
        assert e.shape == (2, 128) and ((e > 0) & (e < 1)).all()
        assert torch.allclose(v.score_embeddings(e, v.embed(b)), v(a, b), atol=1e-6)
    assert v.branch.conv1.stride == (2, 2)
    with pytest.raises(ValueError, match="backbone"):
        SiameseVerifier(backbone="vgg")


def test_prichexynet_resizes_to_working_size_and_returns_input_size():
    net = PriCheXyNet(mu=0.01, working_size=32, init_features=2).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 1, 70, 50)).shape == (1, 1, 70, 50)
        assert net.flow(torch.rand(1, 1, 70, 50)).shape == (1, 2, 32, 32)
