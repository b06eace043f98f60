"""LPIPS v0.1: torchvision trunk layouts, strict weight loading, the distance formula by hand, the shipped heads."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pixforge.core.lpips import LPIPS
from pixforge.export.errors import PixforgeError

FIXTURES = Path(__file__).parent / "fixtures"
# torchvision's `features` convolutions, written out by hand: index -> (out, in, kernel)
TRUNKS = {
    "alex": {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)},
    "vgg": {0: (64, 3, 3), 2: (64, 64, 3), 5: (128, 64, 3), 7: (128, 128, 3), 10: (256, 128, 3),
            12: (256, 256, 3), 14: (256, 256, 3), 17: (512, 256, 3), 19: (512, 512, 3), 21: (512, 512, 3),
            24: (512, 512, 3), 26: (512, 512, 3), 28: (512, 512, 3)},
}
HEADS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
SIZE = {"alex": 36, "vgg": 20}


def trunk_state(net: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for i, (out_c, in_c, k) in TRUNKS[net].items():
        state[f"features.{i}.weight"] = torch.randn(out_c, in_c, k, k, generator=g) * (2 / (k * k * in_c)) ** 0.5
        state[f"features.{i}.bias"] = torch.randn(out_c, generator=g) * 0.1
    return state


def head_state(net: str, seed: int = 1, only_first: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) * (k == 0 or not only_first)
            for k, c in enumerate(HEADS[net])}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("lpips")
    paths = {}
    for net in HEADS:
        paths[net, "trunk"] = root / f"{net}-trunk.pth"
        torch.save(trunk_state(net), paths[net, "trunk"])
        paths[net, "lin"] = root / f"{net}-lin.pth"
        torch.save(head_state(net), paths[net, "lin"])
        paths[net, "lin0"] = root / f"{net}-lin0.pth"
        torch.save(head_state(net, only_first=True), paths[net, "lin0"])
    return paths


@pytest.fixture(scope="module", params=["alex", "vgg"])
def model(request, files):
    net = request.param
    return net, LPIPS(net, backbone_weights=files[net, "trunk"], lin_weights=files[net, "lin"])


def images(net: str, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, SIZE[net], SIZE[net] + 3, generator=g) * 2 - 1


def test_trunks_have_torchvision_parameter_counts(model):
    net, lpips = model
    count = sum(p.numel() for p in lpips.features.parameters())
    assert count == {"alex": 2_469_696, "vgg": 14_714_688}[net]  # torchvision alexnet / vgg16 `features`
    assert lpips.taps == {"alex": [1, 4, 7, 9, 11], "vgg": [3, 8, 15, 22, 29]}[net]


def test_identical_images_are_at_distance_zero_and_distance_is_symmetric(model):
    net, lpips = model
    x, y = images(net, 3, 0), images(net, 3, 1)
    assert torch.equal(lpips(x, x), torch.zeros(3))
    d = lpips(x, y)
    assert d.shape == (3,) and (d > 0).all()
    torch.testing.assert_close(lpips(y, x), d)


def test_batch_equals_one_by_one_and_normalize_maps_unit_range(model):
    net, lpips = model
    x, y = images(net, 4, 2), images(net, 4, 3)
    one_by_one = torch.cat([lpips(x[i:i + 1], y[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(lpips(x, y), one_by_one, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(lpips((x + 1) / 2, (y + 1) / 2, normalize=True), lpips(x, y), rtol=1e-5, atol=1e-7)


def test_spatial_map_and_gradients(model):
    net, lpips = model
    x, y = images(net, 2, 4).requires_grad_(True), images(net, 2, 5)
    assert torch.equal(lpips(y, y, spatial=True), torch.zeros(2, 1, *y.shape[2:]))
    lpips(x, y).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in lpips.parameters()) and not lpips.training


def test_autocast_keeps_the_distance_in_float32(model):
    net, lpips = model
    x, y = images(net, 2, 10), images(net, 2, 11)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d = lpips(x, y)
    assert d.dtype == torch.float32
    torch.testing.assert_close(d, lpips(x, y), rtol=0.1, atol=0)


@pytest.mark.cuda
def test_cuda_fp16_matches_cpu(files):
    lpips = LPIPS("alex", backbone_weights=files["alex", "trunk"], lin_weights=files["alex", "lin"])
    x, y = images("alex", 2, 12), images("alex", 2, 13)
    expected = lpips(x, y)
    gpu = lpips.cuda()
    torch.testing.assert_close(gpu(x.cuda(), y.cuda()).cpu(), expected, rtol=1e-2, atol=1e-6)  # TF32 convolutions
    with torch.autocast("cuda", dtype=torch.float16):
        d = gpu(x.cuda(), y.cuda())
    assert d.dtype == torch.float32
    torch.testing.assert_close(d.cpu(), expected, rtol=0.05, atol=0)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_first_layer_matches_the_formula_by_hand(files, net):
    """With lin1..lin4 zero, LPIPS is layer 1 alone: computed here from the raw weights with F.conv2d."""
    lpips = LPIPS(net, backbone_weights=files[net, "trunk"], lin_weights=files[net, "lin0"])
    trunk, w = trunk_state(net), head_state(net, only_first=True)["lin0.model.1.weight"].flatten()
    x, y = images(net, 2, 6), images(net, 2, 7)

    def relu1(img):
        img = (img - torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)) / torch.tensor(
            [0.458, 0.448, 0.450]).view(1, 3, 1, 1)
        if net == "alex":
            return F.conv2d(img, trunk["features.0.weight"], trunk["features.0.bias"], stride=4, padding=2).relu()
        h = F.conv2d(img, trunk["features.0.weight"], trunk["features.0.bias"], padding=1).relu()
        return F.conv2d(h, trunk["features.2.weight"], trunk["features.2.bias"], padding=1).relu()

    expected = []
    for i in range(2):
        fx, fy = relu1(x[i:i + 1])[0], relu1(y[i:i + 1])[0]  # C x H x W
        fx = fx / (fx.norm(dim=0, keepdim=True) + 1e-10)
        fy = fy / (fy.norm(dim=0, keepdim=True) + 1e-10)
        per_pixel = torch.einsum("c,chw->hw", w, (fx - fy) ** 2)
        expected.append(per_pixel.mean())
    torch.testing.assert_close(lpips(x, y), torch.stack(expected), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_official_v01_heads_load(files, net):
    path = FIXTURES / f"lpips_v0.1_{net}.pth"
    lpips = LPIPS(net, backbone_weights=files[net, "trunk"], lin_weights=path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    for k, lin in enumerate(lpips.lins):
        assert torch.equal(lin.weight, state[f"lin{k}.model.1.weight"])
        assert (lin.weight >= 0).all()  # the shipped heads are non-negative, so LPIPS >= 0
    assert (lpips(images(net, 2, 8), images(net, 2, 9)) > 0).all()


def test_torchvision_classifier_keys_are_ignored_and_safetensors_load(tmp_path, files):
    from safetensors.torch import save_file

    state = {**trunk_state("alex"), "classifier.6.weight": torch.zeros(10, 4), "classifier.6.bias": torch.zeros(10)}
    path = tmp_path / "alexnet.safetensors"
    save_file(state, str(path))
    lpips = LPIPS("alex", backbone_weights=path, lin_weights=files["alex", "lin"])
    assert torch.equal(lpips.features[0].weight, state["features.0.weight"])


def test_missing_backbone_names_the_torchvision_file(tmp_path, monkeypatch, files):
    monkeypatch.delenv("PIXFORGE_VGG16_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(PixforgeError, match="vgg16-397923af.pth"):
        LPIPS("vgg", lin_weights=files["vgg", "lin"])
    with pytest.raises(PixforgeError, match="nope.pth does not exist"):
        LPIPS("vgg", backbone_weights=tmp_path / "nope.pth", lin_weights=files["vgg", "lin"])


def test_missing_heads_name_the_lpips_wheel(monkeypatch, files):
    monkeypatch.delenv("PIXFORGE_LPIPS_LIN_WEIGHTS", raising=False)
    with pytest.raises(PixforgeError, match=r"lpips/weights/v0.1/alex.pth from the `lpips` 0.1.4 wheel"):
        LPIPS("alex", backbone_weights=files["alex", "trunk"])
    monkeypatch.setenv("PIXFORGE_LPIPS_LIN_WEIGHTS", str(files["alex", "lin"]))
    assert LPIPS("alex", backbone_weights=files["alex", "trunk"]).lins[0].weight.shape == (1, 64, 1, 1)


def test_wrong_files_are_refused(tmp_path, files):
    with pytest.raises(PixforgeError, match="not a torchvision alexnet-owt-7be5be79.pth state dict: missing"):
        LPIPS("alex", backbone_weights=files["vgg", "trunk"], lin_weights=files["alex", "lin"])
    with pytest.raises(PixforgeError, match="not lpips v0.1 alex.pth linear heads: wrong shape: lin1"):
        LPIPS("alex", backbone_weights=files["alex", "trunk"], lin_weights=files["vgg", "lin"])
    extra = tmp_path / "extra.pth"
    torch.save({**trunk_state("alex"), "features.99.weight": torch.zeros(1)}, extra)
    with pytest.raises(PixforgeError, match="unexpected: features.99.weight"):
        LPIPS("alex", backbone_weights=extra, lin_weights=files["alex", "lin"])
    with pytest.raises(PixforgeError, match="unknown LPIPS net 'squeeze'"):
        LPIPS("squeeze", backbone_weights=extra, lin_weights=extra)


def test_bad_inputs_are_refused(files):
    lpips = LPIPS("alex", backbone_weights=files["alex", "trunk"], lin_weights=files["alex", "lin"])
    with pytest.raises(PixforgeError, match="at least 31 x 31"):
        lpips(torch.zeros(1, 3, 30, 40), torch.zeros(1, 3, 30, 40))
    with pytest.raises(PixforgeError, match="same shape"):
        lpips(torch.zeros(1, 3, 32, 32), torch.zeros(2, 3, 32, 32))
