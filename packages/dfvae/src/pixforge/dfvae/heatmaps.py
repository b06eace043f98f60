"""Landmark heatmaps: DF-VAE's explicit structure condition (the thesis' x̂_t, fed to the structure encoder E_α).

The thesis draws the heatmap from stacked-hourglass landmarks; pixforge takes the 68 landmarks of any frozen detector
(iBUG-300W order) in the aligned crop's pixel coordinates and rasterises one Gaussian channel per landmark, the form
an hourglass network itself predicts. Pixel (i, j) has its centre at x = j, y = i (the convention of dlib and of
every 68-point detector pixforge reads), so a landmark at integer coordinates peaks exactly on that pixel.
"""

from __future__ import annotations

import torch


def landmark_heatmaps(landmarks: torch.Tensor, size: int | tuple[int, int], sigma: float = 2.0,
                      channels_last: bool = False) -> torch.Tensor:
    """(N, K, 2) landmark (x, y) pixel coordinates -> (N, K, H, W) float32 heatmaps exp(-|p - l|^2 / (2 sigma^2)).

    One channel per landmark, peak value 1 at the landmark. The Gaussian is separable, so each map is the outer
    product of a row and a column profile: O(N K (H + W)) exponentials instead of O(N K H W). `channels_last`: the
    same values laid out in memory as (N, H, W, K) (what channels_last convolutions read; no transposing copy).
    """
    if landmarks.ndim != 3 or landmarks.shape[-1] != 2:
        raise ValueError(f"landmarks must be (N, K, 2), got {tuple(landmarks.shape)}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    h, w = (size, size) if isinstance(size, int) else size
    points = landmarks.float()
    xs = torch.arange(w, dtype=torch.float32, device=points.device)
    ys = torch.arange(h, dtype=torch.float32, device=points.device)
    scale = -0.5 / sigma**2
    gx = torch.exp(scale * (xs - points[..., 0:1]).square())  # N, K, W
    gy = torch.exp(scale * (ys - points[..., 1:2]).square())  # N, K, H
    if channels_last:
        gy, gx = gy.transpose(1, 2).contiguous(), gx.transpose(1, 2).contiguous()  # N, H, K and N, W, K
        return (gy[:, :, None, :] * gx[:, None, :, :]).permute(0, 3, 1, 2)
    return gy[..., :, None] * gx[..., None, :]
