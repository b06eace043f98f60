"""RAFT-small: the official state-dict layout loads (the `module.` prefix of DataParallel), outputs survive the round
trip through a file, the correlation lookup orders its window as the official code, shapes, padding, frozen
gradients and autocast, and bad weight files refused (as a ValueError, and by `train --flow` in one line, exit 2)."""

import pytest
import torch
import torch.nn.functional as F

from pixforge.dfvae.flow import flow_estimator
from pixforge.dfvae.raft import RAFTSmall, correlation_pyramid, lookup

# a few of the official raft-small.pth keys and shapes (princeton-vl/RAFT, core/extractor.py and core/update.py)
OFFICIAL = {
    "module.fnet.conv1.weight": (32, 3, 7, 7),
    "module.fnet.layer2.0.downsample.0.weight": (64, 32, 1, 1),
    "module.fnet.layer3.1.conv3.bias": (96,),
    "module.fnet.conv2.weight": (128, 96, 1, 1),
    "module.cnet.conv2.weight": (160, 96, 1, 1),
    "module.update_block.encoder.convc1.weight": (96, 196, 1, 1),
    "module.update_block.encoder.conv.weight": (80, 128, 3, 3),
    "module.update_block.gru.convz.weight": (96, 242, 3, 3),
    "module.update_block.flow_head.conv2.weight": (2, 128, 3, 3),
}


def official_file(path, model: RAFTSmall):
    """`model`'s weights saved as the official file is: every key prefixed with `module.`."""
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    return official_file(tmp_path_factory.mktemp("raft") / "raft-small.pth", RAFTSmall())


def _pair(side: tuple[int, int] = (48, 40), shift: int = 2):
    """Two smooth random images in [-1, 1], the second the first moved `shift` px right."""
    g = torch.Generator().manual_seed(1)
    base = F.interpolate(torch.rand(1, 3, 16, 16, generator=g), size=(side[0], side[1] + shift), mode="bilinear")
    base = base * 2 - 1
    return base[..., shift:].contiguous(), base[..., :-shift].contiguous()


def test_official_layout_loads_and_round_trips(weights):
    state = torch.load(weights, weights_only=True)
    for key, shape in OFFICIAL.items():
        assert tuple(state[key].shape) == shape
    assert len(state) == 106 and sum(v.numel() for v in state.values()) == 990_162  # RAFT-small: "1.0M parameters"
    torch.manual_seed(0)
    fresh = RAFTSmall()  # the weights the file was saved from
    loaded = RAFTSmall.load(weights)
    first, second = _pair()
    with torch.no_grad():
        assert torch.equal(loaded(first, second), fresh(first, second))
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    unprefixed = weights.with_name("plain.pth")
    torch.save({k.removeprefix("module."): v for k, v in state.items()}, unprefixed)
    assert all(torch.equal(a, b) for a, b in zip(RAFTSmall.load(unprefixed).state_dict().values(),
                                                  loaded.state_dict().values(), strict=True))


def test_lookup_orders_the_window_as_the_official_code():
    """At integer coordinates level 0 of the lookup is the dot product of the features at p and at p + offset,
    with window index (i, j) offsetting x by i - 3 and y by j - 3; zero outside."""
    g = torch.Generator().manual_seed(0)
    h, w = 16, 24  # the smallest feature map (128 px / 8) keeps its coarsest level 2 x 2 or more
    fmap1, fmap2 = torch.randn(1, 8, h, w, generator=g), torch.randn(1, 8, h, w, generator=g)
    ys, xs = torch.meshgrid(torch.arange(float(h)), torch.arange(float(w)), indexing="ij")
    corr = lookup(correlation_pyramid(fmap1, fmap2), torch.stack([xs, ys])[None])
    assert corr.shape == (1, 4 * 49, h, w)
    for y, x in [(5, 9), (0, 0), (h - 1, w - 1), (1, w - 2)]:
        for i in range(7):
            for j in range(7):
                px, py = x + i - 3, y + j - 3
                inside = 0 <= px < w and 0 <= py < h
                expected = (fmap1[0, :, y, x] @ fmap2[0, :, py, px]) / 8**0.5 if inside else torch.tensor(0.0)
                assert torch.allclose(corr[0, i * 7 + j, y, x], expected, atol=1e-5)


def test_shapes_padding_gradients_and_autocast(weights):
    net = RAFTSmall.load(weights)
    first, second = _pair((37, 52))  # not a multiple of 8, under 128: padded, the flow cropped back
    first.requires_grad_()
    flow = net(first, second)
    assert flow.shape == (1, 2, 37, 52) and flow.dtype == torch.float32 and torch.isfinite(flow).all()
    flow.abs().mean().backward()
    assert torch.isfinite(first.grad).all() and first.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())
    batched = net(torch.cat([first.detach()] * 2), torch.cat([second] * 2))
    assert torch.allclose(batched[1:], flow.detach(), atol=1e-4)
    grey = net(first.detach()[:, :1], second[:, :1])
    assert grey.shape == (1, 2, 37, 52)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = net(first.detach().bfloat16(), second.bfloat16())
    assert amp.dtype == torch.float32
    with pytest.raises(ValueError, match="one shape"):
        net(first, second[..., :-1])


def test_flow_estimator_names(weights):
    assert type(flow_estimator()).__name__ == "HornSchunckFlow"
    assert isinstance(flow_estimator(f"raft-small:{weights}"), RAFTSmall)
    for bad in ("raft", "raft-small", "horn-schunck:x", "raft-small:/nowhere/raft-small.pth"):
        with pytest.raises(ValueError, match="unknown flow|not found"):
            flow_estimator(bad)


@pytest.mark.parametrize("content, message", [
    (b"not a checkpoint", "is not a torch weight file"),
    ({"fnet.conv1.weight": torch.zeros(32, 3, 7, 7)}, "is not a RAFT-small state dict: 105 weight"),
    (torch.nn.Linear(2, 2), "is not a torch weight file"),  # a pickled module: weights_only refuses it
    ([1, 2], "is not a state dict"),
])
def test_wrong_files_are_refused(tmp_path, content, message):
    path = tmp_path / "weights.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(ValueError, match=message):
        RAFTSmall.load(path)


def test_wrong_shapes_are_refused(tmp_path, weights):
    path = tmp_path / "raft-things.pth"
    shapes = torch.load(weights, weights_only=True)
    shapes["module.fnet.conv2.weight"] = torch.zeros(256, 96, 1, 1)  # the full RAFT's feature width
    torch.save(shapes, path)
    with pytest.raises(ValueError, match=r"fnet.conv2.weight has shape \(256, 96, 1, 1\)"):
        RAFTSmall.load(path)
