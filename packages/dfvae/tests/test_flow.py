"""Pyramid Horn-Schunck: known translations of a textured photo, zero motion, batches, gradients, autocast."""

import pytest
import torch
import torch.nn.functional as F

from pixforge.dfvae.flow import HornSchunckFlow, warp

skimage = pytest.importorskip("skimage")


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """scikit-image's astronaut, grey, 512 x 512 in [0, 1]."""
    from skimage import color, data

    return torch.tensor(color.rgb2gray(data.astronaut()), dtype=torch.float32)[None, None]


def _pair(photo: torch.Tensor, dx: float, dy: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, second) 112 x 112 in [-1, 1] with second(p) = first(p - (dx, dy)) exactly: integer shifts of the
    512-px photo by 4 (dx, dy), then 4 x 4 average pooling (quarter-pixel translations, no interpolation)."""
    sx, sy = round(4 * dx), round(4 * dy)
    first = photo[..., 32:480, 32:480]
    second = photo[..., 32 - sy:480 - sy, 32 - sx:480 - sx]
    return F.avg_pool2d(first, 4) * 2 - 1, F.avg_pool2d(second, 4) * 2 - 1


def _endpoint_error(flow: torch.Tensor, dx: float, dy: float, border: int = 16) -> torch.Tensor:
    truth = torch.tensor([dx, dy]).view(1, 2, 1, 1)
    return (flow - truth).norm(dim=1)[:, border:-border, border:-border].mean(dim=(1, 2))


@pytest.mark.parametrize("dx, dy", [(1.5, -0.75), (2.0, 0.0), (-2.5, 1.25)])
def test_recovers_a_known_translation(photo, dx, dy):
    first, second = _pair(photo, dx, dy)
    flow = HornSchunckFlow()(first, second)
    assert flow.shape == (1, 2, 112, 112) and flow.dtype == torch.float32
    assert _endpoint_error(flow, dx, dy).item() < 0.3  # mean endpoint error on interior pixels, in pixels
    assert (warp(second, flow) - first)[..., 16:-16, 16:-16].abs().mean() < 0.5 * (second - first).abs().mean()


def test_identical_frames_have_zero_flow(photo):
    first, _ = _pair(photo, 0, 0)
    assert HornSchunckFlow()(first, first).abs().max() < 1e-4  # grid_sample's identity warp rounds, no more


def test_batches_rgb_and_matches_single_items(photo):
    pairs = [_pair(photo, 1.0, 0.5), _pair(photo, -0.5, 1.5)]
    first = torch.cat([p[0] for p in pairs]).expand(-1, 3, -1, -1)  # grey RGB: luma equals the grey value
    second = torch.cat([p[1] for p in pairs]).expand(-1, 3, -1, -1)
    net = HornSchunckFlow()
    batched = net(first, second)
    for i, (a, b) in enumerate(pairs):
        assert torch.allclose(batched[i:i + 1], net(a, b), atol=1e-4)


def test_is_frozen_differentiable_and_autocast_safe(photo):
    net = HornSchunckFlow()
    assert not list(net.parameters()) and not net.state_dict()
    first, second = _pair(photo, 1.0, 0.0)
    first = first.clone().requires_grad_()
    flow = net(first, second)
    flow.abs().mean().backward()
    assert torch.isfinite(first.grad).all() and first.grad.abs().sum() > 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = net(first.detach().bfloat16(), second.bfloat16())
    assert amp.dtype == torch.float32
    assert (amp - flow.detach()).abs().mean() < 0.05  # only the inputs' bf16 rounding differs


def test_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="one shape"):
        HornSchunckFlow()(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 16))
