"""Multi-scale PatchGAN: layer layout (TSIT's strides, spectral + instance norm), outputs per scale, pooling."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pixforge.core.nets.patchgan import MultiScaleDiscriminator, PatchDiscriminator


def _conv_out(n: int, stride: int) -> int:
    return (n + 2 * 2 - 4) // stride + 1


@pytest.mark.parametrize("n_layers", [3, 4])
def test_feature_shapes_follow_the_layer_rule(n_layers):
    d = PatchDiscriminator(in_channels=5, ndf=8, n_layers=n_layers)
    x = torch.randn(2, 5, 40, 56)
    outs = d(x)
    assert len(outs) == n_layers + 1
    h, w, channels = 40, 56, 8
    for n, out in enumerate(outs[:-1]):
        stride = 1 if n == 3 else 2
        h, w = _conv_out(h, stride), _conv_out(w, stride)
        assert out.shape == (2, channels, h, w)
        channels = min(channels * 2, 512)
    assert outs[-1].shape == (2, 1, _conv_out(h, 1), _conv_out(w, 1))


def test_layers_are_spectral_and_instance_normalised_except_first_and_last():
    d = PatchDiscriminator(ndf=8, n_layers=3)
    first, middle, last = d.blocks[0][0], d.blocks[1][0], d.blocks[-1][0]
    assert not hasattr(first, "parametrizations") and first.bias is not None
    assert hasattr(middle, "parametrizations") and middle.bias is None
    assert isinstance(d.blocks[1][1], nn.InstanceNorm2d) and not d.blocks[1][1].affine
    assert not hasattr(last, "parametrizations") and last.out_channels == 1
    d.train()
    for _ in range(30):  # power iterations converge: the normalised weight has spectral norm ~1
        d(torch.randn(1, 3, 16, 16))
    sigma = torch.linalg.matrix_norm(middle.weight.detach().flatten(1), ord=2)
    assert abs(float(sigma) - 1.0) < 0.05
    plain = PatchDiscriminator(ndf=8, n_layers=3, spectral=False, norm="none")
    assert not hasattr(plain.blocks[1][0], "parametrizations") and plain.blocks[1][0].bias is not None


def test_channel_cap():
    d = PatchDiscriminator(ndf=64, n_layers=5, max_channels=128)
    assert [b[0].out_channels for b in d.blocks] == [64, 128, 128, 128, 128, 1]


def test_multiscale_runs_each_scale_on_pooled_copies():
    torch.manual_seed(0)
    md = MultiScaleDiscriminator(in_channels=3, num_scales=3, ndf=4, n_layers=3).eval()
    x = torch.randn(1, 3, 32, 48)
    outs = md(x)
    assert len(outs) == 3 and all(len(o) == 4 for o in outs)
    pooled = x
    for k, scale in enumerate(md.scales):
        if k:
            pooled = F.avg_pool2d(pooled, 3, 2, 1, count_include_pad=False)
        for a, b in zip(outs[k], scale(pooled), strict=True):
            torch.testing.assert_close(a, b)
    assert outs[1][0].shape[-2:] == (9, 13) and outs[2][0].shape[-2:] == (5, 7)


def test_border_pooling_ignores_padding():
    x = torch.ones(1, 1, 6, 6)
    torch.testing.assert_close(MultiScaleDiscriminator.downsample(x), torch.ones(1, 1, 3, 3))


def test_bad_options():
    with pytest.raises(ValueError):
        PatchDiscriminator(norm="group")
    with pytest.raises(ValueError):
        MultiScaleDiscriminator(num_scales=0)
