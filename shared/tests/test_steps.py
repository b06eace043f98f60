"""The per-step pieces every training loop uses: samples, noise and learning rate as functions of the step."""

import math

import pytest
import torch

from pixforge.core.steps import StepSampler, cosine_lr, linear_decay_lr, sample_noise, set_lr


def test_ranks_split_the_global_batch_and_resume_continues():
    one = list(StepSampler(0, 3, batch=4))
    two = [list(StepSampler(0, 3, batch=2, rank=r, world=2)) for r in range(2)]
    for step in range(3):
        assert one[step] == list(range(4 * step, 4 * step + 4))
        assert two[0][step] + two[1][step] == one[step]
    assert list(StepSampler(1, 3, batch=4)) == one[1:] and len(StepSampler(5, 3, batch=4)) == 0


def test_noise_belongs_to_the_sample_not_the_batch():
    whole = sample_noise((2, 3), range(0, 4), seed=7, salt=1)
    halves = torch.cat([sample_noise((2, 3), range(0, 2), seed=7, salt=1),
                        sample_noise((2, 3), range(2, 4), seed=7, salt=1)])
    assert torch.equal(whole, halves) and whole.shape == (4, 2, 3)
    assert not torch.equal(whole, sample_noise((2, 3), range(0, 4), seed=7, salt=2))
    assert not torch.equal(whole, sample_noise((2, 3), range(0, 4), seed=8, salt=1))
    assert abs(sample_noise((64, 64), range(4), seed=0).std().item() - 1) < 0.05


def test_learning_rate_schedules():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    set_lr(opt, 0.25)
    assert opt.param_groups[0]["lr"] == 0.25
    assert cosine_lr(2.0, 0, 10) == 2.0 and cosine_lr(2.0, 5, 10) == pytest.approx(1.0)
    assert cosine_lr(2.0, 10, 10) == pytest.approx(0.0) and cosine_lr(1, 3, 10) == 0.5 * (1 + math.cos(0.3 * math.pi))
    assert [linear_decay_lr(1.0, s, 10, 4) for s in (0, 6, 8, 10)] == [1.0, 1.0, 0.5, 0.0]
    assert linear_decay_lr(1.0, 9, 10, 0) == 1.0


def test_noise_keys_far_apart_draw_different_noise():
    """torch's CPU generator keeps a seed's low 32 bits: a key folded into one seed made index 2**40 (SinGAN's
    z_opt) draw index 0's noise, and 2**32 apart in general."""
    first = sample_noise((8,), [0], seed=3)
    for far in (2**32, 2**40, 2**61):
        assert not torch.equal(first, sample_noise((8,), [far], seed=3))
    assert not torch.equal(first, sample_noise((8,), [0], seed=3 + 2**32))
    assert sample_noise([], [0, 1, 2], seed=0).shape == (3,) and sample_noise((2,), [], seed=0).shape == (0, 2)
