"""GAN losses against their formulas; the perceptual loss with weights made here, and without any."""

import logging

import pytest
import torch
import torch.nn.functional as F

from pixforge.core.losses import VGGPerceptualLoss, feature_matching_loss, hinge_d_loss, hinge_g_loss
from pixforge.core.nets import vgg
from pixforge.core.nets.patchgan import MultiScaleDiscriminator
from pixforge.export.errors import PixforgeError


def test_hinge_losses_on_known_values():
    real = torch.tensor([2.0, 0.5, -1.0, 0.0])
    fake = torch.tensor([-2.0, -0.5, 1.0, 0.0])
    loss_real, loss_fake = hinge_d_loss(real, fake)
    assert loss_real.item() == pytest.approx((0 + 0.5 + 2 + 1) / 4)
    assert loss_fake.item() == pytest.approx((0 + 0.5 + 2 + 1) / 4)
    assert hinge_g_loss(fake).item() == pytest.approx(0.375)


def test_multiscale_losses_average_the_scales():
    a, b = torch.randn(2, 1, 5, 5), torch.randn(2, 1, 3, 3)
    f1, f2 = torch.randn(2, 4, 7, 7), torch.randn(2, 4, 4, 4)
    outputs = [[f1, a], [f2, b]]
    loss_real, loss_fake = hinge_d_loss(outputs, outputs)
    expect_real = (F.relu(1 - a).mean() + F.relu(1 - b).mean()) / 2
    expect_fake = (F.relu(1 + a).mean() + F.relu(1 + b).mean()) / 2
    torch.testing.assert_close(loss_real, expect_real)
    torch.testing.assert_close(loss_fake, expect_fake)
    torch.testing.assert_close(hinge_g_loss(outputs), -(a.mean() + b.mean()) / 2)


def test_feature_matching_formula_and_gradient_flow():
    md = MultiScaleDiscriminator(num_scales=2, ndf=4, n_layers=3)
    fake_img = torch.randn(2, 3, 32, 32, requires_grad=True)
    real_img = torch.randn(2, 3, 32, 32, requires_grad=True)
    fake, real = md(fake_img), md(real_img)
    loss = feature_matching_loss(fake, real)
    expect = sum(F.l1_loss(f, r) for fs, rs in zip(fake, real, strict=True)
                 for f, r in zip(fs[:-1], rs[:-1], strict=True)) / 2
    torch.testing.assert_close(loss, expect)
    loss.backward()
    assert fake_img.grad.abs().sum() > 0 and real_img.grad is None  # real features are detached
    assert feature_matching_loss(real, real).item() == 0


def _weights(tmp_path):
    net = vgg.VGG19()
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(net.state_dict(), path)
    return path


def test_perceptual_loss_formula(tmp_path):
    path = _weights(tmp_path)
    loss = VGGPerceptualLoss(path)
    assert loss.enabled
    x, y = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    feats = vgg.VGG19Features(path)
    with torch.no_grad():
        fx, fy = feats(x), feats(y)
        expect = sum(w * F.l1_loss(a, b) for w, a, b in zip((1 / 32, 1 / 16, 1 / 8, 1 / 4, 1), fx, fy, strict=True))
        torch.testing.assert_close(loss(x, y), expect)
        assert loss(x, x).item() == 0


def test_perceptual_loss_without_weights_warns_once_and_is_zero(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(vgg.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    logger = logging.getLogger("pixforge")
    logger.addHandler(caplog.handler)
    try:
        loss = VGGPerceptualLoss(None)
    finally:
        logger.removeHandler(caplog.handler)
    warnings = list({id(r): r for r in caplog.records if r.levelno == logging.WARNING}.values())
    assert len(warnings) == 1 and "perceptual loss is off" in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()
    assert not loss.enabled
    assert loss(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)).item() == 0


def test_perceptual_loss_missing_file_is_an_error(tmp_path):
    with pytest.raises(PixforgeError, match="does not exist"):
        VGGPerceptualLoss(tmp_path / "nope.pth")


def test_kl_divergence_reductions_match_the_closed_form():
    from pixforge.core.losses import kl_divergence

    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    per_sample = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(kl_divergence(mu, logvar, "none"), per_sample)
    torch.testing.assert_close(kl_divergence(mu, logvar, "sum"), per_sample.sum())
    torch.testing.assert_close(kl_divergence(mu, logvar, "batchmean"), per_sample.mean())
    maps = kl_divergence(mu.view(4, 6, 1, 1), logvar.view(4, 6, 1, 1), "none")  # codes of any shape
    torch.testing.assert_close(maps, per_sample)
    with pytest.raises(ValueError, match="reduction"):
        kl_divergence(mu, logvar, "mean")
