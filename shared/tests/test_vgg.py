"""VGG19: torchvision's key format and parameter count, strict loading from a file or URL, the feature taps."""

import pytest
import torch
import torch.nn.functional as F

from pixforge.core.nets import vgg
from pixforge.core.nets.vgg import LAYERS, VGG19, VGG19Features, load_vgg19
from pixforge.export.errors import PixforgeError

# torchvision's vgg19 ("E" without batch norm): conv indices in `features`, linear indices in `classifier`
CONV_SHAPES = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256),
               14: (256, 256), 16: (256, 256), 19: (512, 256), 21: (512, 512), 23: (512, 512), 25: (512, 512),
               28: (512, 512), 30: (512, 512), 32: (512, 512), 34: (512, 512)}
LINEAR_SHAPES = {0: (4096, 25088), 3: (4096, 4096), 6: (1000, 4096)}


def official_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights laid out exactly as torchvision's vgg19-dcbb9e9d.pth (keys and shapes written out by hand)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for i, (out_c, in_c) in CONV_SHAPES.items():
        state[f"features.{i}.weight"] = torch.randn(out_c, in_c, 3, 3, generator=g) * (2 / (9 * in_c)) ** 0.5
        state[f"features.{i}.bias"] = torch.randn(out_c, generator=g) * 0.01
    for i, (out_f, in_f) in LINEAR_SHAPES.items():
        state[f"classifier.{i}.weight"] = torch.randn(out_f, in_f, generator=g) * 0.01
        state[f"classifier.{i}.bias"] = torch.zeros(out_f)
    return state


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg19-dcbb9e9d.pth"
    state = official_state()
    torch.save(state, path)
    return state, path


def test_parameter_count_and_keys_match_torchvision():
    net = VGG19()
    assert sum(p.numel() for p in net.parameters()) == 143_667_240
    own = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    expected = {k: tuple(v.shape) for k, v in official_state().items()}
    assert own == expected


def test_layer_names_follow_torchvision_indices():
    assert LAYERS["relu1_1"] == 1 and LAYERS["relu2_1"] == 6 and LAYERS["relu3_1"] == 11
    assert LAYERS["relu4_1"] == 20 and LAYERS["relu5_1"] == 29 and LAYERS["pool5"] == 36
    trunk = VGG19().features
    assert all(isinstance(trunk[LAYERS[f"conv{b}_1"]], torch.nn.Conv2d) for b in range(1, 6))


def test_strict_load_from_file_gives_the_same_network(weights_file):
    state, path = weights_file
    net = load_vgg19(path)
    assert not net.training
    for key, value in state.items():
        assert torch.equal(net.state_dict()[key], value)


def test_features_equal_a_hand_written_forward(weights_file):
    state, path = weights_file
    feats = VGG19Features(path, layers=("relu1_1", "relu2_1", "relu3_1"))
    x = torch.rand(2, 3, 32, 40) * 2 - 1
    with torch.no_grad():
        got = feats(x)
        h = F.relu(F.conv2d(x, state["features.0.weight"], state["features.0.bias"], padding=1))
        r11 = h
        h = F.relu(F.conv2d(h, state["features.2.weight"], state["features.2.bias"], padding=1))
        h = F.max_pool2d(h, 2)
        r21 = F.relu(F.conv2d(h, state["features.5.weight"], state["features.5.bias"], padding=1))
        h = F.relu(F.conv2d(r21, state["features.7.weight"], state["features.7.bias"], padding=1))
        h = F.max_pool2d(h, 2)
        r31 = F.relu(F.conv2d(h, state["features.10.weight"], state["features.10.bias"], padding=1))
    for a, b in zip(got, (r11, r21, r31), strict=True):
        torch.testing.assert_close(a, b)
    assert len(feats.features) == LAYERS["relu3_1"] + 1  # the trunk stops at the deepest tap
    assert not any(p.requires_grad for p in feats.parameters())


def test_imagenet_norm_maps_the_input_range(weights_file):
    _, path = weights_file
    plain = VGG19Features(path, layers=("relu1_1",))
    normed = VGG19Features(path, layers=("relu1_1",), imagenet_norm=True)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    mean = torch.tensor(vgg.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(vgg.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(normed(x)[0], plain(((x + 1) / 2 - mean) / std)[0])


def test_url_goes_through_torch_hub(weights_file, monkeypatch):
    state, _ = weights_file
    seen = {}

    def fake_download(url, **kwargs):
        seen.update(url=url, **kwargs)
        return state

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    net = load_vgg19(vgg.WEIGHTS_URL)
    assert seen["url"] == vgg.WEIGHTS_URL and seen["weights_only"] is True
    assert torch.equal(net.features[0].weight, state["features.0.weight"])


def test_bad_weight_files_are_clear_errors(tmp_path, weights_file):
    with pytest.raises(PixforgeError, match="does not exist"):
        load_vgg19(tmp_path / "missing.pth")
    state, _ = weights_file
    bn_like = {k.replace("features.2.", "features.3."): v for k, v in state.items()}
    path = tmp_path / "vgg19_bn.pth"
    torch.save(bn_like, path)
    with pytest.raises(PixforgeError, match="not a torchvision vgg19 state dict"):
        load_vgg19(path)
    with pytest.raises(PixforgeError, match="unknown VGG19 layer"):
        VGG19Features(weights_file[1], layers=("relu9_9",))


def test_resolve_weights_order(tmp_path, monkeypatch):
    monkeypatch.setenv(vgg.WEIGHTS_ENV, "/from/env.pth")
    assert vgg.resolve_weights("given.pth") == "given.pth"
    assert vgg.resolve_weights(None) == "/from/env.pth"
    monkeypatch.delenv(vgg.WEIGHTS_ENV)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert vgg.resolve_weights(None) is None
