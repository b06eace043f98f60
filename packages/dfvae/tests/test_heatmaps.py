"""Landmark heatmaps and face masks: peak, width, shape, polygon fill, blur."""

import math

import pytest
import torch

from pixforge.dfvae.heatmaps import landmark_heatmaps
from pixforge.dfvae.masks import FACE_OUTLINE, blur_mask, face_mask


def test_heatmap_peaks_at_the_landmark_with_value_one():
    points = torch.tensor([[[10.0, 20.0], [40.0, 5.0], [0.0, 63.0]]])
    maps = landmark_heatmaps(points, 64, sigma=2.0)
    assert maps.shape == (1, 3, 64, 64) and maps.dtype == torch.float32
    for k, (x, y) in enumerate(points[0].long().tolist()):
        assert maps[0, k, y, x] == 1.0
        assert maps[0, k].flatten().argmax().item() == y * 64 + x


@pytest.mark.parametrize("sigma", [1.5, 3.0])
def test_heatmap_has_the_requested_sigma(sigma):
    maps = landmark_heatmaps(torch.tensor([[[31.3, 30.6]]]), (64, 70), sigma=sigma)[0, 0]
    assert maps.shape == (64, 70)
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(70.0), indexing="ij")
    mass = maps.sum()
    assert mass.item() == pytest.approx(2 * math.pi * sigma**2, rel=1e-3)  # integral of the unnormalised Gaussian
    mx, my = (maps * xs).sum() / mass, (maps * ys).sum() / mass
    assert (mx.item(), my.item()) == pytest.approx((31.3, 30.6), abs=1e-3)
    assert ((maps * (xs - mx).square()).sum() / mass).item() == pytest.approx(sigma**2, rel=1e-3)
    assert maps[30, 31].item() == pytest.approx(math.exp(-(0.3**2 + 0.6**2) / (2 * sigma**2)), rel=1e-5)


def test_heatmap_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(N, K, 2\)"):
        landmark_heatmaps(torch.zeros(68, 2), 32)
    with pytest.raises(ValueError, match="sigma"):
        landmark_heatmaps(torch.zeros(1, 68, 2), 32, sigma=0)


def _shoelace(poly: torch.Tensor) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float((x * y.roll(-1) - x.roll(-1) * y).sum()))


def test_face_mask_fills_the_face_outline(synthetic_landmarks):
    points = synthetic_landmarks(2, 64)
    mask = face_mask(points, 64)
    assert mask.shape == (2, 1, 64, 64) and set(mask.unique().tolist()) == {0.0, 1.0}
    for i in range(2):
        outline = points[i, list(FACE_OUTLINE)]
        perimeter = float((outline - outline.roll(-1, 0)).norm(dim=1).sum())
        assert abs(mask[i].sum().item() - _shoelace(outline)) < 0.5 * perimeter  # pixel-centre sampling error
        nose = points[i, 30].round().long()
        assert mask[i, 0, nose[1], nose[0]] == 1 and mask[i, 0, 0, 0] == 0 and mask[i, 0, 63, 63] == 0


def test_blurred_mask_is_smooth_and_in_range(synthetic_landmarks):
    mask = face_mask(synthetic_landmarks(1, 64), 64)
    soft = blur_mask(mask, sigma=2.0)
    assert soft.shape == mask.shape and soft.min() >= 0 and soft.max() <= 1
    assert soft.sum().item() == pytest.approx(mask.sum().item(), rel=0.02)
    edge = (soft > 0.05) & (soft < 0.95)
    assert edge.sum() > (mask - mask.roll(1, 3)).abs().sum()  # a band, wider than the hard edge
