"""Saving and safely loading checkpoints."""

import pickle

import pytest
import torch

from monai_prichexy.networks import AbnormalityClassifier, FlowFieldGenerator, PriCheXyNet, SiameseVerifier
from monai_prichexy.weights import (
    ChecksumMismatchError,
    UnsafeCheckpointError,
    load_checkpoint,
    load_generator,
    load_into_prichexynet,
    load_network,
    save_checkpoint,
    sha256_file,
)


def test_generator_round_trip_keeps_weights_and_meta(tmp_path):
    net = PriCheXyNet(mu=0.005, working_size=32, init_features=2)
    path = save_checkpoint(tmp_path / "g.pt", net, meta={"trained_on": "unit test"})
    generator, meta = load_generator(path)
    assert meta["mu"] == 0.005 and meta["smoothing"] == "grid" and meta["trained_on"] == "unit test"
    for a, b in zip(generator.state_dict().values(), net.generator.state_dict().values()):
        assert torch.equal(a, b)
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize(
    "network",
    [lambda: AbnormalityClassifier(input_size=None), lambda: SiameseVerifier(backbone="resnet10", widen_factor=0.25)],
)
def test_other_networks_round_trip(tmp_path, network):
    net = network()
    path = save_checkpoint(tmp_path / "n.pt", net)
    loaded, _ = load_network(path)
    assert type(loaded) is type(net)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))


def test_bare_state_dict_of_generator_or_bundle_network_loads(tmp_path):
    g = FlowFieldGenerator(init_features=3)
    torch.save(g.state_dict(), tmp_path / "bare.pt")
    torch.save(PriCheXyNet(g, mu=0.005, working_size=32).state_dict(), tmp_path / "bundle.pt")
    bundle_meta = {"mu": 0.005, "smoothing": "grid", "working_size": [32, 32], "budget_px": None}
    for name, expected_meta in (("bare.pt", {}), ("bundle.pt", bundle_meta)):
        loaded, meta = load_generator(tmp_path / name)
        assert loaded.init_features == 3 and meta == expected_meta


def test_mu_travels_with_a_prichexynet_state_dict(tmp_path):
    trained = PriCheXyNet(FlowFieldGenerator(init_features=2), mu=0.005, smoothing="displacement", working_size=32)
    torch.save(trained.state_dict(), tmp_path / "model.pt")
    fresh = PriCheXyNet(mu=0.01, working_size=256, init_features=2)
    load_into_prichexynet(fresh, tmp_path / "model.pt")
    assert (fresh.mu, fresh.smoothing, fresh.working_size) == (0.005, "displacement", (32, 32))
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), trained.state_dict().values()))
    plain = PriCheXyNet(mu=0.01, working_size=None, init_features=2)
    plain.load_state_dict(trained.state_dict())  # the plain MONAI way (ckpt_export) restores the set-up too
    assert (plain.mu, plain.smoothing, plain.working_size) == (0.005, "displacement", (32, 32))
    with pytest.raises(ValueError, match="network_def"):
        load_into_prichexynet(PriCheXyNet(init_features=4, working_size=32), tmp_path / "model.pt")


def test_transform_takes_the_working_size_from_the_checkpoint(tmp_path):
    from monai_prichexy.transforms import DeformAnonymize

    torch.save(PriCheXyNet(FlowFieldGenerator(init_features=2), mu=0.005, working_size=32).state_dict(), tmp_path / "m.pt")
    t = DeformAnonymize(str(tmp_path / "m.pt"))
    assert (t.network.mu, t.network.working_size) == (0.005, (32, 32))
    assert DeformAnonymize(str(tmp_path / "m.pt"), working_size=64).network.working_size == (64, 64)
    torch.save(FlowFieldGenerator(init_features=2).state_dict(), tmp_path / "bare.pt")
    assert DeformAnonymize(str(tmp_path / "bare.pt"), mu=0.01).network.working_size == (256, 256)


class _Evil:
    def __reduce__(self):
        return (print, ("this would run code",))


def test_checkpoint_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _Evil()}, path, _use_new_zipfile_serialization=True)
    with pytest.raises(UnsafeCheckpointError, match="evil.pt"):
        load_checkpoint(path)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(UnsafeCheckpointError, match="raw.pt"):
        load_checkpoint(raw)


def test_checksum_is_checked_before_loading(tmp_path):
    path = save_checkpoint(tmp_path / "g.pt", FlowFieldGenerator(init_features=2))
    load_checkpoint(path, expected_sha256=sha256_file(path))
    with pytest.raises(ChecksumMismatchError, match="g.pt"):
        load_checkpoint(path, expected_sha256="0" * 64)


def test_missing_and_garbage_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(UnsafeCheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save(SiameseVerifier(backbone="resnet10", widen_factor=0.25).state_dict(), tmp_path / "v.pt")
    with pytest.raises(ValueError, match="v.pt"):
        load_generator(tmp_path / "v.pt")


# ---------------------------------------------------------------------------- one set-up, one loader
def test_deformation_setup_validates_once_and_takes_overrides():
    from monai_prichexy.networks import DeformationSetup

    setup = DeformationSetup.from_meta({"mu": 0.01, "smoothing": "displacement", "working_size": [64, 64],
                                        "budget_px": 1.0, "other": 1}, smoothing=None, budget_px=0.5)
    assert setup == DeformationSetup(0.01, "displacement", (64, 64), 0.5)
    assert setup.with_overrides(mu=0.02, working_size=None).mu == 0.02 and setup.working_size == (64, 64)
    for bad in ({"mu": 1.5}, {"mu": 0.01, "smoothing": "gauss"}, {"mu": 0.01, "working_size": 60},
                {"mu": 0.01, "budget_px": 0.0}):
        with pytest.raises(ValueError):
            DeformationSetup(**bad)
    with pytest.raises(KeyError):
        DeformationSetup.from_meta({"smoothing": "grid"})
    with pytest.raises(TypeError, match="unknown set-up"):
        DeformationSetup.from_meta({"mu": 0.01}, sigma=2)


def test_every_door_gives_the_shipped_weights_the_same_set_up():
    """DeformAnonymize (CLI, Deploy, report), the benchmark's anonymizers and the bundle's initialize agree."""
    from monai_prichexy.engines.anonymizers import build_anonymizer
    from monai_prichexy.networks import PriCheXyNet
    from monai_prichexy.bundle_files import resolve_weights
    from monai_prichexy.transforms import DeformAnonymize
    from monai_prichexy.weights import load_into_prichexynet, load_prichexynet

    path, sha = resolve_weights()
    setups = {
        "loader": load_prichexynet(path, sha).setup,
        "transform": DeformAnonymize(path, expected_sha256=sha).network.setup,
        "benchmark": build_anonymizer("prichexy", checkpoint=path).setup,
        "bundle": load_into_prichexynet(PriCheXyNet(init_features=8, working_size=64), path, sha).setup,
    }
    assert len(set(setups.values())) == 1, setups
    assert setups["loader"].budget_px == pytest.approx(0.5) and setups["loader"].working_size == (64, 64)


def test_the_loader_says_when_mu_is_unknown_and_applies_overrides(tmp_path):
    from monai_prichexy.networks import FlowFieldGenerator, PriCheXyNet
    from monai_prichexy.weights import MissingSetupError, load_prichexynet

    bare = tmp_path / "bare.pt"
    torch.save(FlowFieldGenerator(init_features=2).state_dict(), bare)
    with pytest.raises(MissingSetupError, match="mu is not recorded"):
        load_prichexynet(bare)
    net = load_prichexynet(bare, mu=0.02)
    assert (net.mu, net.smoothing, net.working_size, net.budget_px) == (0.02, "grid", (256, 256), None)
    full = save_checkpoint(tmp_path / "g.pt", PriCheXyNet(FlowFieldGenerator(init_features=2), mu=0.01,
                                                          smoothing="displacement", working_size=32, budget_px=1.0))
    net = load_prichexynet(full, working_size=64)
    assert (net.mu, net.smoothing, net.working_size, net.budget_px) == (0.01, "displacement", (64, 64), 1.0)
    with pytest.raises(ValueError, match="mu must be in"):
        load_prichexynet(full, mu=2.0)
