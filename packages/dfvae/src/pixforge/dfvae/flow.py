"""A frozen, differentiable optical-flow estimator for DF-VAE's temporal loss: pyramid Horn-Schunck in torch.

The thesis estimates the flows of (x̃_t, x_{t-1}) and (x_t, x_{t-1}) with FlowNet 2.0, frozen. pixforge's default needs
no weights: the Horn-Schunck energy sum (I_x u + I_y v + I_t)^2 + alpha^2 (|grad u|^2 + |grad v|^2), minimised coarse
to fine. At each pyramid level the second image is warped by the current flow (grid_sample) and a fixed number of
Jacobi iterations solve the linearised equations for the whole flow around it. Every step is a torch op, so the
gradient of the flow w.r.t. the images exists (unrolled), and with a fixed iteration count the graph has no
data-dependent control flow. Intensities are the luma of the images rescaled to [0, 1]; alpha is in those units.
"""

from __future__ import annotations

import math
from pathlib import Path

import kornia
import torch
import torch.nn.functional as F
from torch import nn

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample `image` (N, C, H, W) at p + flow(p) (flow (N, 2, H, W) in pixels, (dx, dy)); bilinear, border values."""
    n, _, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype, device=flow.device),
                            torch.arange(w, dtype=flow.dtype, device=flow.device), indexing="ij")
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    return F.grid_sample(image, torch.stack([gx, gy], dim=-1), mode="bilinear", padding_mode="border",
                         align_corners=True)


class HornSchunckFlow(nn.Module):
    """flow(first, second): (N, 2, H, W) float32 flow in pixels with first(p) ≈ second(p + flow(p)).

    `levels`: pyramid levels at most (fewer when the coarsest side would drop under `min_size`); `iterations`:
    Jacobi iterations per level; `alpha`: smoothness weight (intensity units, [0, 1] luma); `sigma`: Gaussian
    pre-smoothing of the finest level (the coarser ones come from kornia's pyrdown, which blurs);
    `value_range`: the images' range, mapped to [0, 1]. No parameters: nothing to train or download. Runs in
    float32 even under autocast.
    """

    def __init__(self, levels: int = 4, iterations: int = 30, alpha: float = 0.05, sigma: float = 1.0,
                 min_size: int = 16, value_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__()
        if levels < 1 or iterations < 1 or alpha <= 0 or sigma <= 0 or min_size < 4:
            raise ValueError("levels and iterations must be >= 1, alpha and sigma > 0, min_size >= 4")
        self.levels, self.iterations, self.alpha, self.sigma, self.min_size = levels, iterations, alpha, sigma, min_size
        self.value_range = value_range
        # Horn and Schunck's neighbourhood average (the Laplacian's off-centre weights)
        average = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])
        self.register_buffer("average", average[None], persistent=False)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        if first.shape != second.shape or first.ndim != 4 or first.shape[1] not in (1, 3):
            raise ValueError(f"flow needs two (N, 1|3, H, W) images of one shape, got {tuple(first.shape)} and "
                             f"{tuple(second.shape)}")
        with torch.autocast(first.device.type, enabled=False):
            pyramid_a = self._pyramid(self._intensity(first))
            pyramid_b = self._pyramid(self._intensity(second))
            flow = torch.zeros_like(pyramid_a[-1]).expand(-1, 2, -1, -1)
            for a, b in zip(reversed(pyramid_a), reversed(pyramid_b), strict=True):
                if flow.shape[-2:] != a.shape[-2:]:
                    scale = torch.tensor([a.shape[-1] / flow.shape[-1], a.shape[-2] / flow.shape[-2]],
                                         device=flow.device).view(1, 2, 1, 1)
                    flow = F.interpolate(flow, size=a.shape[-2:], mode="bilinear", align_corners=False) * scale
                flow = self._refine(a, b, flow)
        return flow

    def _intensity(self, image: torch.Tensor) -> torch.Tensor:
        image = image.float()
        if image.shape[1] == 3:
            image = sum(w * image[:, i:i + 1] for i, w in enumerate(LUMA))
        lo, hi = self.value_range
        image = (image - lo) / (hi - lo)
        k = 2 * math.ceil(3 * self.sigma) + 1
        return kornia.filters.gaussian_blur2d(image, (k, k), (self.sigma, self.sigma), border_type="replicate")

    def _pyramid(self, image: torch.Tensor) -> list[torch.Tensor]:
        levels = [image]
        while len(levels) < self.levels and min(levels[-1].shape[-2:]) // 2 >= self.min_size:
            levels.append(kornia.geometry.transform.pyrdown(levels[-1], border_type="replicate"))
        return levels

    def _refine(self, a: torch.Tensor, b: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """Jacobi iterations on the equations linearised around `flow` (b warped by it)."""
        warped = warp(b, flow)
        grad = kornia.filters.spatial_gradient(0.5 * (a + warped), mode="sobel", normalized=True)[:, 0]  # N, 2, H, W
        dt = warped - a
        denom = self.alpha**2 + grad.square().sum(dim=1, keepdim=True)
        base = flow
        for _ in range(self.iterations):
            mean = kornia.filters.filter2d(flow, self.average, border_type="replicate")
            residual = ((grad * (mean - base)).sum(dim=1, keepdim=True) + dt) / denom
            flow = mean - grad * residual
        return flow


FLOW_CHOICES = "horn-schunck (default, no weights) or raft-small:PATH (the official raft-small.pth)"


def flow_estimator(spec: str = "horn-schunck") -> nn.Module:
    """The frozen flow estimator `train --flow SPEC` names: `horn-schunck` (`HornSchunckFlow`) or `raft-small:PATH`
    (`pixforge.dfvae.raft.RAFTSmall` with the weights at PATH). A bad SPEC or weight file is a ValueError."""
    kind, _, path = str(spec).partition(":")
    if kind == "horn-schunck" and not path:
        return HornSchunckFlow()
    if kind == "raft-small" and path:
        from pixforge.dfvae.raft import RAFTSmall

        if not Path(path).is_file():
            raise ValueError(f"raft-small weights {path} not found")
        return RAFTSmall.load(path)
    raise ValueError(f"unknown flow {spec!r}: {FLOW_CHOICES}")
