"""APA as the official code defines it: which reals D sees, and how p moves."""

from __future__ import annotations

import pytest
import torch

from pixforge.apa.pseudo import STRATEGIES, PseudoAugmentation
from pixforge.core.steps import sample_noise
from pixforge.core.stylegan2 import configs
from pixforge.core.stylegan2.augment import AugmentPipe
from pixforge.core.stylegan2.loss import SALTS, StyleGAN2Loss
from pixforge.core.stylegan2.strategy import AdaptiveP
from pixforge.core.stylegan2.train import build_networks


def test_mix_replaces_exactly_the_flagged_samples():
    reals, fakes = torch.zeros(6, 3, 4, 4), torch.ones(6, 3, 4, 4)
    uniform = torch.tensor([0.05, 0.5, 0.29, 0.31, 0.99, 0.0])
    strategy = PseudoAugmentation(p=0.3)
    mixed = strategy.mix_reals(reals, fakes, uniform)
    assert mixed[:, 0, 0, 0].tolist() == [1, 0, 1, 0, 0, 1]  # u < p -> the fake of the same index
    assert torch.equal(PseudoAugmentation(p=0.0).mix_reals(reals, fakes, uniform), reals)
    assert torch.equal(PseudoAugmentation(p=1.0).mix_reals(reals, fakes, uniform), fakes)
    assert torch.equal(strategy.mix_reals(reals, None, uniform), reals)  # no fakes yet: the reals


def test_p_follows_the_official_update_rule():
    """p <- max(0, p + sign(lambda_r - target) * batch * interval / (apa_kimg * 1000)) every 4 steps, lambda_r being
    the mean sign of every real logit since the last update (a scripted sequence)."""
    strategy = STRATEGIES["apa"](p=0.0, target=0.6, kimg=500)
    batch, step_size = 64, 64 * 4 / (500 * 1000)
    expected, p = [], 0.0
    script = [0.9, 0.9, 0.9, 0.9, -0.2, -0.2, 0.1, 1.0, 0.5, 0.5, 0.5, 0.5, 1, 1, 1, 1, -1, -1, -1, -1] * 3
    for step, level in enumerate(script, start=1):
        logits = torch.full([batch // 2, 1], 1.0)
        logits[: int(round(batch // 2 * (1 - level) / 2))] = -1.0  # mean sign == level
        strategy.observe(logits)
        strategy.observe(logits)  # two rounds per step
        strategy.adjust(step, batch)
        if step % 4 == 0:
            window = script[step - 4: step]
            signs = [(1 - 2 * round(batch // 2 * (1 - v) / 2) / (batch // 2)) for v in window]
            lam = sum(signs) / 4
            p = max(0.0, p + ((lam > 0.6) - (lam < 0.6)) * step_size)
            assert strategy.signal == pytest.approx(lam)
        expected.append(p)
        assert strategy.p == pytest.approx(p, abs=1e-12), step
    assert max(expected) > 0 and min(expected[8:]) >= 0


def test_apa_kimg_100_when_starting_from_weights():
    assert STRATEGIES["apa"](kimg=100).controller.kimg == 100
    assert STRATEGIES["apa-fixed"](p=0.4).p == 0.4 and STRATEGIES["apa-fixed"](p=0.4).controller is None


def test_ada_apa_shares_one_p_between_pipe_and_pseudo_data():
    strategy = STRATEGIES["ada+apa"](p=0.25, augpipe="bgc")
    assert isinstance(strategy.pipe, AugmentPipe) and isinstance(strategy.controller, AdaptiveP)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    strategy.augment(x, generator=torch.Generator().manual_seed(0))
    assert float(strategy.pipe.p) == 0.25  # the pipe runs at APA's p
    strategy.controller.p = 0.5
    strategy.augment(x, generator=torch.Generator().manual_seed(0))
    assert float(strategy.pipe.p) == 0.5
    assert STRATEGIES["apa"]().pipe is None  # plain APA leaves D's inputs unaugmented (DeceiveD's default)


@pytest.mark.parametrize("phase", ["Dmain", "Dreg"])
def test_loss_shows_D_this_steps_fakes_as_reals(phase):
    """Through StyleGAN2Loss: in the D main and R1 steps D's 'real' input holds Gmain's fakes of the same step and
    sample index where the per-sample draw is below p, the reals elsewhere; R1 is taken on the mixed batch."""
    spec = configs.spec("auto", 16, 1, batch=4, cbase=256, cmax=32, map_layers=2)

    class Data:
        label_dim, resolution, num_channels = 0, 16, 3

    G, D = build_networks(spec, Data, None)
    strategy = PseudoAugmentation(p=0.5)
    loss = StyleGAN2Loss(G, D, strategy, seed=3, r1_gamma=1.0, pl_weight=0)
    seen = []
    D.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    reals, c, indices = torch.full([8, 3, 16, 16], 5.0), torch.zeros(8, 0), range(8, 16)
    G.requires_grad_(True)
    loss.accumulate_gradients("Gmain", reals, c, c, indices, step=2, gain=1)
    fakes = loss.fakes[8]
    G.requires_grad_(False)
    D.requires_grad_(True)
    seen.clear()
    loss.accumulate_gradients(phase, reals, c, c, indices, step=2, gain=1)
    shown = seen[-1]
    flagged = torch.special.ndtr(sample_noise([], indices, 3, SALTS[phase] + 30)) < 0.5  # the loss's draw
    assert 0 < int(flagged.sum()) < 8  # this seed flags some samples and not others
    for i in range(8):
        assert torch.equal(shown[i], fakes[i] if flagged[i] else reals[i]), i
    if phase == "Dreg":
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in D.parameters())
