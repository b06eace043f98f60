"""The training augmentation: probability, mixtures, determinism, value range, gradients."""

import pytest
import torch

from pixforge.forensics.augment import RandomDistortion


def _batch(n=6, size=40):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def test_probability_zero_and_one():
    x = _batch()
    assert torch.equal(RandomDistortion(p=0.0, seed=0)(x), x)
    out = RandomDistortion(p=1.0, types=["CC"], levels=[5], seed=0)(x)
    pixels = (x + 1) * 127.5
    assert torch.allclose((out + 1) * 127.5, (pixels * 0.35).trunc(), atol=1e-3)


def test_mixtures_are_distinct_and_seeded():
    aug = RandomDistortion(p=1.0, mix=(2, 4), seed=3)
    plans = aug.draw(50)
    assert all(2 <= len(p) <= 4 and len({k for k, _ in p}) == len(p) for p in plans)
    a, b = RandomDistortion(p=0.7, mix=(1, 3), seed=5), RandomDistortion(p=0.7, mix=(1, 3), seed=5)
    x = _batch()
    assert torch.equal(a(x), b(x))


def test_gradients_flow_and_range_is_kept():
    x = _batch().requires_grad_(True)
    out = RandomDistortion(p=1.0, types=["CS", "GB", "JPEG", "GNC"], mix=2, seed=1)(x)
    out.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert out.min() >= -1.0 - 1e-5 and out.max() <= 1.0 + 1e-5


def test_bad_settings():
    with pytest.raises(ValueError):
        RandomDistortion(types=["VC"])
    with pytest.raises(ValueError):
        RandomDistortion(mix=(3, 9))


def test_augmentation_stays_on_the_input_device():
    """Meta tensors stand in for CUDA ones: index tensors or distortion helpers made on the CPU would raise."""
    x = torch.empty(6, 3, 64, 64, device="meta")
    out = RandomDistortion(p=1.0, mix=(1, 3), seed=0)(x)
    assert out.device == x.device and out.shape == x.shape
