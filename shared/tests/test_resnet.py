"""ResNet: torchvision's parameter names and counts, seeded init, loading torchvision / DDP / MoCo / safetensors
files with identical outputs, clear errors for bad files."""

import pytest
import torch

from pixforge.core.nets import ResNet, load_resnet, resnet, resnet18, resnet50
from pixforge.core.nets.resnet import read_state
from pixforge.export.errors import PixforgeError

# torchvision's parameter counts (ImageNet head)
COUNTS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160}


def seeded(arch="resnet18", seed=0, **kwargs):
    return resnet(arch, generator=torch.Generator().manual_seed(seed), **kwargs).eval()


@pytest.fixture(scope="module")
def net18():
    return seeded()


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("arch", list(COUNTS))
def test_parameter_counts_match_torchvision(arch):
    assert sum(p.numel() for p in ResNet(arch).parameters()) == COUNTS[arch]


def test_torchvision_names_shapes_and_strides():
    state = resnet50().state_dict()
    assert len(state) == 320  # 161 parameter tensors + 3 buffers for each of the 53 BatchNorms
    assert state["conv1.weight"].shape == (64, 3, 7, 7)
    assert state["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert state["layer3.5.bn3.running_var"].shape == (1024,)
    assert state["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert state["fc.weight"].shape == (1000, 2048) and "fc.bias" in state
    net = resnet50()
    assert net.layer2[0].conv2.stride == (2, 2) and net.layer2[0].conv1.stride == (1, 1)  # v1.5
    small = resnet18().state_dict()
    assert len(small) == 122 and small["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert "layer1.0.conv3.weight" not in small and small["fc.weight"].shape == (1000, 512)


def test_seeded_init_is_reproducible_and_follows_torchvision(net18):
    again, other = seeded(), seeded(seed=1)
    assert all(torch.equal(a, b) for a, b in zip(net18.state_dict().values(), again.state_dict().values(),
                                                   strict=True))
    assert not torch.equal(net18.conv1.weight, other.conv1.weight)
    fan_out = 512 * 9
    assert net18.layer4[1].conv2.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.05)
    assert torch.all(net18.bn1.weight == 1) and torch.all(net18.bn1.bias == 0)
    assert torch.all(net18.layer1[0].bn1.running_var == 1) and net18.bn1.num_batches_tracked.item() == 0
    assert net18.fc.weight.abs().max().item() <= 1 / 512**0.5


def test_state_dict_file_round_trip(tmp_path, net18, images):
    path = tmp_path / "resnet18.pth"
    torch.save(net18.state_dict(), path)
    loaded = resnet18(weights=path)
    assert not loaded.training
    assert list(loaded.state_dict()) == list(net18.state_dict())
    with torch.no_grad():
        assert torch.equal(loaded(images), net18(images))
    from safetensors.torch import save_file

    save_file(net18.state_dict(), str(tmp_path / "resnet18.safetensors"))
    with torch.no_grad():
        assert torch.equal(resnet18(weights=tmp_path / "resnet18.safetensors")(images), net18(images))


def test_ddp_and_moco_checkpoints_load(tmp_path, net18, images):
    ddp = {"state_dict": {f"module.{k}": v for k, v in net18.state_dict().items()}, "epoch": 3}
    torch.save(ddp, tmp_path / "ddp.pth.tar")
    with torch.no_grad():
        assert torch.equal(load_resnet("resnet18", tmp_path / "ddp.pth.tar")(images), net18(images))

    other = seeded(seed=5).state_dict()
    moco = {f"module.encoder_q.{k}": v for k, v in net18.state_dict().items() if not k.startswith("fc.")}
    moco |= {f"module.encoder_k.{k}": v for k, v in other.items() if not k.startswith("fc.")}
    moco |= {"module.encoder_q.fc.0.weight": torch.randn(512, 512), "module.encoder_q.fc.0.bias": torch.zeros(512),
             "module.encoder_q.fc.2.weight": torch.randn(128, 512), "module.encoder_q.fc.2.bias": torch.zeros(128),
             "module.queue": torch.randn(128, 64), "module.queue_ptr": torch.zeros(1, dtype=torch.long)}
    torch.save({"epoch": 200, "arch": "resnet18", "state_dict": moco,
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.03, "params": [0, 1]}]}},
               tmp_path / "checkpoint_0199.pth.tar")
    state = read_state(tmp_path / "checkpoint_0199.pth.tar")
    assert set(state) == {k for k in net18.state_dict() if not k.startswith("fc.")}
    headless = resnet18(weights=tmp_path / "checkpoint_0199.pth.tar")
    assert isinstance(headless.fc, torch.nn.Identity)
    with torch.no_grad():
        assert torch.equal(headless(images), net18.features(images))


def test_bad_files_raise_one_clear_error(tmp_path, net18):
    with pytest.raises(PixforgeError, match="nope.pth does not exist"):
        resnet50(weights=tmp_path / "nope.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(PixforgeError, match="corrupt.pth"):
        resnet50(weights=corrupt)
    small = tmp_path / "small.pth"
    torch.save(net18.state_dict(), small)
    with pytest.raises(PixforgeError, match=r"small.pth are not a resnet50 state dict: missing: .*wrong shape"):
        resnet50(weights=small)
    with pytest.raises(PixforgeError, match="1000-class fc layer, not 2"):
        resnet18(weights=small, num_classes=2)
    pickled = tmp_path / "objects.pth"
    torch.save({"state_dict": net18.state_dict(), "net": torch.nn.ReLU()}, pickled)
    with pytest.raises(PixforgeError, match="objects.pth holds Python objects"):
        resnet18(weights=pickled)
    torch.save({"weights": [1, 2]}, tmp_path / "list.pth")
    with pytest.raises(PixforgeError, match="list.pth does not hold a state dict"):
        resnet18(weights=tmp_path / "list.pth")
    with pytest.raises(PixforgeError, match="unknown ResNet"):
        ResNet("resnet19")
