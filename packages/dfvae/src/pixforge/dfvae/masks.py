"""Face masks from landmarks: the thesis' m_t and its Gaussian-blurred m_t^b, which weights MAdaIN's statistics and
blends the restyled face into the target frame.

The thesis does not say where m_t comes from; pixforge fills the face outline of the same 68 landmarks that draw the
heatmaps (jaw 0-16, then the brows 26 back to 17: the area a DeepFake replaces), so one landmark pass gives both.
"""

from __future__ import annotations

import math

import kornia
import torch

FACE_OUTLINE = (*range(17), *range(26, 16, -1))  # jaw left to right, brows right to left: a closed polygon


def face_mask(landmarks: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """(N, 68, 2) landmark (x, y) pixel coordinates -> (N, 1, H, W) float32 mask, 1 where the pixel centre lies
    inside the face outline (even-odd crossing rule, vectorised over pixels and edges)."""
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be (N, 68, 2), got {tuple(landmarks.shape)}")
    h, w = (size, size) if isinstance(size, int) else size
    poly = landmarks[:, list(FACE_OUTLINE)].float()  # N, E, 2
    x0, y0 = poly[..., 0, None, None], poly[..., 1, None, None]  # N, E, 1, 1
    nxt = poly.roll(-1, dims=1)
    x1, y1 = nxt[..., 0, None, None], nxt[..., 1, None, None]
    px = torch.arange(w, dtype=torch.float32, device=poly.device)[None, None, None, :]
    py = torch.arange(h, dtype=torch.float32, device=poly.device)[None, None, :, None]
    straddles = (y0 > py) != (y1 > py)  # the edge crosses the pixel's row
    dy = torch.where(y1 == y0, torch.ones_like(y0), y1 - y0)
    crossing = straddles & (px < x0 + (py - y0) * (x1 - x0) / dy)
    return (crossing.sum(dim=1, keepdim=True) % 2).float()


def blur_mask(mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """m_t -> m_t^b: Gaussian blur (kornia, kernel 2 * ceil(3 sigma) + 1, reflected borders), values kept in [0, 1]."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    k = 2 * math.ceil(3.0 * sigma) + 1
    return kornia.filters.gaussian_blur2d(mask.float(), (k, k), (sigma, sigma), border_type="reflect").clamp(0, 1)
