"""DF-VAE's fusion module: masked AdaIN (thesis Eq. 3.6) between the reenacted face and the target frame, decoder
D_δ, and the blend into the target's background with the blurred mask.

Eq. 3.6 is MAdaIN(c, s) = σ(s) (c - μ(c)) / σ(c) + μ(s) with c = m^b·d_t and s = m^b·y_t. The thesis places "a typical
AdaIN network" (Huang and Belongie: encoder, AdaIN on its features, decoder) after d_t, so the statistics are those of
encoder features, and D_δ decodes the result. pixforge's encoder is learned with the rest of the model (no VGG
weights to download), shared by content and style. μ and σ are weighted by the blurred mask (resized to the
features by average pooling): plain per-channel statistics of m^b·d_t would mostly measure how much of the crop is
background, not the face's style.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pixforge.dfvae.blocks import Down, Up, conv

EPS = 1e-5


def masked_moments(x: torch.Tensor, mask: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and std of `x` (N, C, H, W) weighted by `mask` (N, 1, H, W) in [0, 1]:
    μ = Σ m x / Σ m, σ = sqrt(Σ m (x - μ)^2 / Σ m + eps), both (N, C, 1, 1), computed in float32."""
    x, mask = x.float(), mask.float()
    total = mask.sum(dim=(2, 3), keepdim=True) + eps
    mean = (mask * x).sum(dim=(2, 3), keepdim=True) / total
    var = (mask * (x - mean).square()).sum(dim=(2, 3), keepdim=True) / total
    return mean, (var + eps).sqrt()


def madain(content: torch.Tensor, style: torch.Tensor, mask: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Eq. 3.6 with mask-weighted statistics: σ_m(s) (c - μ_m(c)) / σ_m(c) + μ_m(s), in float32.
    Identity when content == style."""
    mean_c, std_c = masked_moments(content, mask, eps)
    mean_s, std_s = masked_moments(style, mask, eps)
    return std_s * (content.float() - mean_c) / std_c + mean_s


class Fusion(nn.Module):
    """(face d_t, target y_t, blurred mask m^b) -> swapped face m^b·D_δ(MAdaIN(E(m^b·d_t), E(m^b·y_t))) + (1 - m^b)·y_t.

    Encoder: stem and two stride-2 levels (features at H/4, `width` x 4 channels), one pass over content and style
    together; D_δ mirrors it. Images in [-1, 1]."""

    DOWN = 4  # the encoder's stride: the mask is average-pooled by it to weight the feature statistics

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.encoder = nn.Sequential(conv(3, width), nn.LeakyReLU(0.2), Down(width, 2 * width),
                                     Down(2 * width, 4 * width))
        self.decoder = nn.Sequential(Up(4 * width, 2 * width), Up(2 * width, width), conv(width, 3), nn.Tanh())

    def forward(self, face: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        features = self.encoder(torch.cat([mask * face, mask * target]))
        content, style = features[:face.shape[0]], features[face.shape[0]:]
        small = F.avg_pool2d(mask.float(), self.DOWN)
        restyled = self.decoder(madain(content, style, small).to(features.dtype))
        return mask * restyled + (1 - mask) * target
