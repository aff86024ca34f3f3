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
