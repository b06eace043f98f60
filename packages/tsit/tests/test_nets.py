"""TSIT networks: FADE / FAdaIN against their formulas, shapes, the official parameter count, folding, init."""

import pytest
import torch
import torch.nn.functional as F

from pixforge.tsit.nets import (
    FADE,
    FADEBlock,
    Stream,
    StreamBlock,
    TSITGenerator,
    fadain,
    for_inference,
    init_weights,
    widths,
)


def test_fade_is_batchnorm_then_elementwise_affine_from_features():
    torch.manual_seed(0)
    fade = FADE(6, 5).train()
    x, feat = torch.randn(3, 6, 8, 10) * 2 + 1, torch.randn(3, 5, 8, 10)
    out = fade(x, feat)
    mu = x.mean(dim=(0, 2, 3), keepdim=True)  # Eq. 4.2
    sigma = (x.pow(2).mean(dim=(0, 2, 3), keepdim=True) - mu**2 + 1e-5).sqrt()  # Eq. 4.3 (+ BN's eps)
    gamma = F.conv2d(feat, fade.mlp_gamma.weight, fade.mlp_gamma.bias, padding=1)
    beta = F.conv2d(feat, fade.mlp_beta.weight, fade.mlp_beta.bias, padding=1)
    torch.testing.assert_close(out, (x - mu) / sigma * (1 + gamma) + beta, rtol=1e-4, atol=1e-4)  # Eq. 4.1
    assert not list(fade.param_free_norm.parameters())  # parameter-free
    fade.eval()  # inference uses the running statistics
    bn = fade.param_free_norm
    expect = (x - bn.running_mean.view(1, -1, 1, 1)) / (bn.running_var.view(1, -1, 1, 1) + 1e-5).sqrt()
    torch.testing.assert_close(fade(x, feat), expect * (1 + gamma) + beta, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("alpha", [1.0, 0.3, 0.0])
def test_fadain_formula(alpha):
    x, s = torch.randn(2, 4, 6, 5) * 3 + 2, torch.randn(2, 4, 3, 7) * 0.5 - 1
    out = fadain(x, s, alpha)
    n = 6 * 5
    mx = x.sum(dim=(2, 3), keepdim=True) / n
    sx = (((x - mx) ** 2).sum(dim=(2, 3), keepdim=True) / (n - 1) + 1e-5).sqrt()  # unbiased + eps (official)
    ms = s.mean(dim=(2, 3), keepdim=True)
    ss = (((s - ms) ** 2).sum(dim=(2, 3), keepdim=True) / (3 * 7 - 1) + 1e-5).sqrt()
    adain = ss * (x - mx) / sx + ms  # Eq. 4.4
    torch.testing.assert_close(out, alpha * adain + (1 - alpha) * x, rtol=1e-5, atol=1e-5)
    if alpha == 1.0:  # the output carries the style's channel statistics
        torch.testing.assert_close(out.mean(dim=(2, 3)), ms.flatten(2).squeeze(-1), atol=1e-4, rtol=0)
    assert fadain(x.bfloat16(), s.bfloat16(), alpha).dtype == torch.bfloat16


def test_stream_levels_widths_and_sizes():
    stream = Stream(3, ngf=4, levels=8)
    feats = stream(torch.randn(1, 3, 128, 256))
    assert [f.shape[1] for f in feats] == widths(4, 8) == [4, 8, 16, 32, 64, 64, 64, 64]
    assert [tuple(f.shape[-2:]) for f in feats] == [(128 >> i, 256 >> i) for i in range(8)]
    block = StreamBlock(4, 8)
    assert block.learned_shortcut and block.conv_s.bias is None and not StreamBlock(8, 8).learned_shortcut


@pytest.mark.parametrize("hw", [(128, 256), (256, 256), (256, 128), (512, 512)])
def test_generator_shapes_at_full_depth(hw):
    torch.manual_seed(0)
    g = TSITGenerator(ngf=4).eval()
    assert g.stride == 128 and g.noise_shape(1, *hw) == (1, 3, hw[0] // 128, hw[1] // 128)
    with torch.no_grad():
        out = g(torch.rand(1, 3, *hw) * 2 - 1, torch.rand(1, 3, *hw) * 2 - 1)
    assert out.shape == (1, 3, *hw) and out.abs().max() <= 1 and torch.isfinite(out).all()


@pytest.fixture(scope="module")
def official():
    """The official-size generator (ngf 64, 8 levels) on the meta device: its layout, no memory (built once: its
    spectral norms' power iterations run through meta kernels, seconds)."""
    with torch.device("meta"):
        return TSITGenerator(ngf=64)


def test_generator_shallower_and_128(official):
    g = TSITGenerator(ngf=4, levels=7).eval()
    with torch.no_grad():
        assert g(torch.rand(2, 3, 128, 128), torch.rand(2, 3, 128, 128)).shape == (2, 3, 128, 128)
    assert [b.conv_1.out_channels for b in official.blocks] == [1024, 1024, 1024, 512, 256, 128, 64]


def _official_generator_params(ngf: int) -> int:
    """Written from the official TSITGenerator / Stream / FADEResnetBlock definitions (ngf, 'more' upsampling)."""
    def conv(i, o, k, bias=True):
        return i * o * k * k + (o if bias else 0)

    def stream_block(fin, fout):
        return conv(fin, fin, 3) + conv(fin, fout, 3) + (conv(fin, fout, 1, False) if fin != fout else 0)

    def fade(c, label_nc):
        return 2 * conv(label_nc, c, 3)

    def fade_block(fin, fout):
        n = conv(fin, fin, 3) + conv(fin, fout, 3) + 2 * fade(fin, fin)
        return n + (conv(fin, fout, 1, False) + fade(fin, fin) if fin != fout else 0)

    m = [1, 2, 4, 8, 16, 16, 16, 16]
    stream = stream_block(3, ngf) + sum(stream_block(m[i - 1] * ngf, m[i] * ngf) for i in range(1, 8))
    decoder = sum(fade_block(a * ngf, b * ngf) for a, b in [(16, 16), (16, 16), (16, 16), (16, 8), (8, 4), (4, 2),
                                                            (2, 1)])
    return 2 * stream + conv(3, 16 * ngf, 3) + decoder + conv(ngf, 3, 3)


def test_official_parameter_count_at_ngf_64(official):
    count = sum(p.numel() for p in official.parameters())
    assert count == _official_generator_params(64) == 398_093_739  # "~398M" of the official model
    assert sum(p.numel() for p in TSITGenerator(ngf=8).parameters()) == _official_generator_params(8)


def test_alpha_zero_skips_the_style():
    torch.manual_seed(0)
    g = TSITGenerator(ngf=4, levels=4).eval()
    c, noise = torch.rand(1, 3, 32, 32), torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        a = g(c, torch.rand(1, 3, 32, 32), noise, alpha=0.0)
        b = g(c, torch.rand(1, 3, 32, 32), noise, alpha=0.0)
        c1 = g(c, torch.rand(1, 3, 32, 32), noise, alpha=1.0)
    torch.testing.assert_close(a, b)
    assert (a - c1).abs().max() > 0


def test_eval_inference_folds_spectral_norms_and_keeps_the_eval_output():
    torch.manual_seed(0)
    g = init_weights(TSITGenerator(ngf=4, levels=4))
    g.train()
    g(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))  # a training step moves BN stats and power iterations
    g.eval()
    c, s, n = torch.rand(1, 3, 40, 24), torch.rand(1, 3, 40, 24), torch.randn(1, 3, 5, 3)
    with torch.no_grad():
        before = g(c, s, n)
        for_inference(g, "eval")
        after = g(c, s, n)
    torch.testing.assert_close(before, after)
    assert not any("parametrizations" in k for k in g.state_dict())


def test_init_is_the_officials_as_it_runs_on_the_gpu():
    """Plain convs: Xavier-normal gain 0.02; spectral-normalised convs: PyTorch's default (kaiming-uniform a = sqrt 5,
    U(+-1 / sqrt(fan_in))), which the official init leaves as it writes into a stale copy after `.cuda()`; zero
    biases everywhere."""
    torch.manual_seed(0)
    block = init_weights(FADEBlock(64, 32))
    plain = block.norm_0.mlp_gamma.weight  # FADE's 3x3 conv producing gamma (no spectral norm)
    fan_in, fan_out = plain.shape[1] * 9, plain.shape[0] * 9
    assert abs(float(plain.detach().std()) / (0.02 * (2 / (fan_in + fan_out)) ** 0.5) - 1) < 0.05
    sn = block.conv_0.parametrizations.weight.original
    bound = 1 / (64 * 9) ** 0.5
    assert float(sn.detach().abs().max()) <= bound and abs(float(sn.detach().std()) / (bound / 3 ** 0.5) - 1) < 0.05
    assert not block.conv_0.bias.detach().any() and not block.norm_0.mlp_beta.bias.detach().any()
