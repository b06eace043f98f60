"""DF-VAE networks: MAdaIN against Eq. 3.6 by hand, the Gaussian code (reparameterisation, KL), shapes, blending."""

import math

import numpy as np
import pytest
import torch

from pixforge.dfvae.fusion import madain, masked_moments
from pixforge.dfvae.loss import DFVAELoss, FrameBatch, LossWeights
from pixforge.dfvae.nets import DFVAE, DFVAEConfig, Posterior, reparameterise

TINY = DFVAEConfig(resolution=32, width=8, max_width=16, structure_channels=4, appearance_dim=8, fusion_width=4)


def _madain_by_hand(c: np.ndarray, s: np.ndarray, m: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Eq. 3.6 per sample and channel, statistics weighted by the mask, in float64 loops."""
    out = np.empty_like(c)
    for n in range(c.shape[0]):
        w = m[n, 0]
        for k in range(c.shape[1]):
            mc = (w * c[n, k]).sum() / (w.sum() + eps)
            ms = (w * s[n, k]).sum() / (w.sum() + eps)
            sc = math.sqrt((w * (c[n, k] - mc) ** 2).sum() / (w.sum() + eps) + eps)
            ss = math.sqrt((w * (s[n, k] - ms) ** 2).sum() / (w.sum() + eps) + eps)
            out[n, k] = ss * (c[n, k] - mc) / sc + ms
    return out


def test_madain_equals_its_formula():
    g = torch.Generator().manual_seed(0)
    c, s = torch.randn(2, 5, 9, 7, generator=g), 3 * torch.randn(2, 5, 9, 7, generator=g) + 1
    m = torch.rand(2, 1, 9, 7, generator=g)
    expected = _madain_by_hand(c.double().numpy(), s.double().numpy(), m.double().numpy())
    assert np.allclose(madain(c, s, m).numpy(), expected, atol=1e-5)
    mean, std = masked_moments(madain(c, s, m), m)  # the output has the style's weighted moments
    mean_s, std_s = masked_moments(s, m)
    assert torch.allclose(mean, mean_s, atol=1e-5) and torch.allclose(std, std_s, atol=1e-4)


def test_madain_is_identity_when_content_is_style():
    g = torch.Generator().manual_seed(1)
    x, m = torch.randn(3, 4, 8, 8, generator=g), torch.rand(3, 1, 8, 8, generator=g)
    assert torch.allclose(madain(x, x, m), x, atol=1e-6)


def test_madain_ignores_what_the_mask_hides():
    g = torch.Generator().manual_seed(2)
    c, s = torch.randn(1, 2, 8, 8, generator=g), torch.randn(1, 2, 8, 8, generator=g)
    m = torch.zeros(1, 1, 8, 8)
    m[..., 2:6, 2:6] = 1
    changed = s.clone()
    changed[..., 0, :] = 100.0  # outside the mask
    assert torch.allclose(madain(c, s, m), madain(c, changed, m), atol=1e-6)


def test_reparameterisation_has_the_posterior_moments():
    mu, logvar = torch.tensor([0.5, -2.0, 3.0]), torch.tensor([0.0, math.log(4.0), math.log(0.01)])
    noise = torch.randn(200_000, 3, generator=torch.Generator().manual_seed(0))
    z = reparameterise(Posterior(mu.expand(200_000, 3), logvar.expand(200_000, 3)), noise)
    assert torch.allclose(z.mean(0), mu, atol=0.02)
    assert torch.allclose(z.var(0), logvar.exp(), rtol=0.02)
    mu_, logvar_ = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
    reparameterise(Posterior(mu_, logvar_), torch.ones(3)).sum().backward()
    assert torch.allclose(mu_.grad, torch.ones(3)) and torch.allclose(logvar_.grad, 0.5 * torch.exp(0.5 * logvar))


def _batch(n: int, size: int, seed: int = 0) -> FrameBatch:
    g = torch.Generator().manual_seed(seed)
    frame = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    return FrameBatch(frame=frame, previous=frame.roll(1, 3), heatmaps=torch.rand(n, 68, size, size, generator=g),
                      reference=torch.rand(n, 3, size, size, generator=g) * 2 - 1,
                      mask=torch.rand(n, 1, size, size, generator=g))


def test_kl_term_is_the_closed_form_over_both_codes():
    torch.manual_seed(0)
    model = DFVAE(TINY)
    batch = _batch(2, 32)
    weights = LossWeights(rec_l1=0, fuse_l1=0, kl=1.0, temporal=0)
    terms = DFVAELoss(model, flow=None, weights=weights).terms(batch, [0, 1])
    assert set(terms) == {"rec_l1", "fuse_l1", "kl"}
    expected = 0.0
    for post in (model.structure(batch.heatmaps), model.appearance(batch.reference)):
        q = torch.distributions.Normal(post.mu, torch.exp(0.5 * post.logvar))
        p = torch.distributions.Normal(torch.zeros_like(post.mu), torch.ones_like(post.mu))
        expected = expected + torch.distributions.kl_divergence(q, p).flatten(1).sum(1).mean()
    assert terms["kl"].item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_shapes_at_each_resolution(resolution):
    config = DFVAEConfig(resolution=resolution, width=4, max_width=8, structure_channels=2, appearance_dim=4,
                         fusion_width=4)
    model = DFVAE(config)
    assert config.levels == int(math.log2(resolution)) - 3
    b = _batch(2, resolution)
    assert model.structure(b.heatmaps).mu.shape == (2, 2, 8, 8)
    assert model.appearance(b.reference).logvar.shape == (2, 4)
    assert model(b.heatmaps, b.reference, b.frame, b.mask).shape == (2, 3, resolution, resolution)


def test_fully_convolutional_channels_last_and_blend():
    torch.manual_seed(0)
    model = DFVAE(TINY).eval()
    g = torch.Generator().manual_seed(3)
    heat, ref = torch.rand(2, 68, 32, 48, generator=g), torch.rand(2, 3, 32, 48, generator=g) * 2 - 1
    target = torch.rand(2, 3, 32, 48, generator=g) * 2 - 1
    mask = torch.zeros(2, 1, 32, 48)
    mask[..., 8:24, 12:36] = 1
    with torch.no_grad():
        out = model(heat, ref, target, mask)
        cl = model.to(memory_format=torch.channels_last)(
            *(t.contiguous(memory_format=torch.channels_last) for t in (heat, ref, target, mask)))
    assert out.shape == (2, 3, 32, 48)
    assert torch.allclose(out, cl, atol=1e-5)
    assert torch.equal(out[..., mask[0, 0] == 0], target[..., mask[0, 0] == 0])  # background untouched
    assert out.min() >= -1 and out.max() <= 1


def test_config_rejects_bad_sizes():
    with pytest.raises(ValueError, match="power of two"):
        DFVAEConfig(resolution=100)
    with pytest.raises(ValueError, match="width"):
        DFVAEConfig(width=0)
