"""DF-VAE's networks (thesis §3.2.2, Fig. 3.6): structure encoder E_α on landmark heatmaps, appearance encoder E_β on
another frame of the same identity, a conditional VAE bottleneck, decoder D_γ, and the MAdaIN fusion module.

Reconstruction (training): x̃_t = D_γ(z_s, z_a), z_s ~ q(· | heatmap of x_t) from E_α, z_a ~ q(· | x') from E_β with x'
another frame of x_t's identity (the unpaired sample); the fusion then restyles x̃_t with x_t's face statistics and
blends it into x_t. Swapping (inference): d_t = D_γ(μ_s(ŷ_t), μ_a(x')), then fused into the target frame y_t. One
model serves every identity it was trained on (many-to-many): nothing in it is per identity.

The structure code is a spatial map (H/2^levels = 8 x 8 at every supported resolution), the appearance code a vector
tiled over it before D_γ: a vector cannot carry x''s pose, which the unpaired construction asks it to drop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from pixforge.dfvae.blocks import Down, Up, conv
from pixforge.dfvae.fusion import Fusion


@dataclass(frozen=True)
class DFVAEConfig:
    """Sizes of a DF-VAE model. `resolution`: side of the aligned face crop (a power of two, 32..1024; 128 by
    default); the encoders halve it down to 8 x 8 (`levels` times), and any input whose sides are multiples of
    2^levels runs. `width`: channels of the first level, doubled per level up to `max_width`. `structure_channels`:
    channels of the spatial structure code z_s; `appearance_dim`: length of the appearance code z_a.
    `fusion_width`: first-level channels of the MAdaIN encoder / D_δ. `landmarks`: heatmap channels."""

    resolution: int = 128
    width: int = 32
    max_width: int = 256
    structure_channels: int = 64
    appearance_dim: int = 256
    fusion_width: int = 32
    landmarks: int = 68

    def __post_init__(self) -> None:
        if self.resolution not in [2**k for k in range(5, 11)]:
            raise ValueError(f"resolution must be a power of two from 32 to 1024, got {self.resolution}")
        for name in ("width", "max_width", "structure_channels", "appearance_dim", "fusion_width", "landmarks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def levels(self) -> int:
        """Stride-2 levels of E_α / E_β (and upsampling levels of D_γ): resolution / 2^levels = 8."""
        return int(math.log2(self.resolution)) - 3

    def widths(self) -> list[int]:
        """Channels at each resolution, finest first (levels + 1 entries)."""
        return [min(self.width * 2**i, self.max_width) for i in range(self.levels + 1)]


class Posterior(NamedTuple):
    """A diagonal Gaussian q(z | ·) = N(mu, exp(logvar))."""

    mu: torch.Tensor
    logvar: torch.Tensor


def reparameterise(posterior: Posterior, noise: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I) given (`noise`, the shape of mu): differentiable in mu and logvar."""
    return posterior.mu + torch.exp(0.5 * posterior.logvar) * noise


def _trunk(cin: int, widths: list[int]) -> nn.Sequential:
    """Stem at full resolution, then one `Down` per further width."""
    layers: list[nn.Module] = [conv(cin, widths[0]), nn.LeakyReLU(0.2)]
    layers += [Down(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)]
    return nn.Sequential(*layers)


class StructureEncoder(nn.Module):
    """E_α: (N, landmarks, H, W) heatmaps -> posterior of the spatial structure code (N, structure_channels, H/2^L,
    W/2^L)."""

    def __init__(self, config: DFVAEConfig) -> None:
        super().__init__()
        widths = config.widths()
        self.trunk = _trunk(config.landmarks, widths)
        self.head = nn.Conv2d(widths[-1], 2 * config.structure_channels, 1)

    def forward(self, heatmaps: torch.Tensor) -> Posterior:
        mu, logvar = self.head(self.trunk(heatmaps)).chunk(2, dim=1)
        return Posterior(mu, logvar)


class AppearanceEncoder(nn.Module):
    """E_β: (N, 3, H, W) face in [-1, 1] -> posterior of the appearance code (N, appearance_dim), from the
    trunk's features averaged over space (so any pose information is pooled away)."""

    def __init__(self, config: DFVAEConfig) -> None:
        super().__init__()
        widths = config.widths()
        self.trunk = _trunk(3, widths)
        self.head = nn.Linear(widths[-1], 2 * config.appearance_dim)

    def forward(self, face: torch.Tensor) -> Posterior:
        mu, logvar = self.head(self.trunk(face).mean(dim=(2, 3))).chunk(2, dim=1)
        return Posterior(mu, logvar)


class Decoder(nn.Module):
    """D_γ: structure code (N, Cs, h, w) and appearance code (N, Ca), tiled and concatenated -> face (N, 3, h 2^L,
    w 2^L) in [-1, 1]."""

    def __init__(self, config: DFVAEConfig) -> None:
        super().__init__()
        widths = config.widths()[::-1]
        self.stem = nn.Sequential(conv(config.structure_channels + config.appearance_dim, widths[0]), nn.LeakyReLU(0.2))
        self.ups = nn.Sequential(*[Up(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)])
        self.out = nn.Sequential(conv(widths[-1], 3), nn.Tanh())

    def forward(self, structure: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        tiled = appearance[:, :, None, None].expand(-1, -1, structure.shape[2], structure.shape[3])
        return self.out(self.ups(self.stem(torch.cat([structure, tiled.to(structure.dtype)], dim=1))))


class Reconstruction(NamedTuple):
    """One training forward: D_γ's face x̃_t, the fused output, and both posteriors (for the KL)."""

    face: torch.Tensor
    fused: torch.Tensor
    structure: Posterior
    appearance: Posterior


class DFVAE(nn.Module):
    """The whole DF-VAE: E_α, E_β, D_γ and the fusion module (MAdaIN + D_δ + blend). Images in [-1, 1], NCHW (or
    channels_last); `mask` is the blurred face mask m^b (N, 1, H, W) in [0, 1] of the frame the face goes into."""

    def __init__(self, config: DFVAEConfig = DFVAEConfig()) -> None:
        super().__init__()
        self.config = config
        self.structure = StructureEncoder(config)
        self.appearance = AppearanceEncoder(config)
        self.decoder = Decoder(config)
        self.fusion = Fusion(config.fusion_width)

    def reconstruct(self, heatmaps: torch.Tensor, reference: torch.Tensor, frame: torch.Tensor, mask: torch.Tensor,
                    structure_noise: torch.Tensor, appearance_noise: torch.Tensor) -> Reconstruction:
        """Training pass for frame x_t: `heatmaps` of x_t, `reference` x' (same identity, another frame), `mask` of
        x_t; the codes are sampled with the given N(0, I) noise (shapes of the posteriors' mu)."""
        structure, appearance = self.structure(heatmaps), self.appearance(reference)
        face = self.decoder(reparameterise(structure, structure_noise), reparameterise(appearance, appearance_noise))
        return Reconstruction(face, self.fusion(face, frame, mask), structure, appearance)

    def reenact(self, heatmaps: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """d_t: the face with the structure of `heatmaps` and the appearance of `reference` (posterior means)."""
        return self.decoder(self.structure(heatmaps).mu, self.appearance(reference).mu)

    def forward(self, heatmaps: torch.Tensor, reference: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """Swap: the face of `reference` (x') reenacted with the target's `heatmaps` (ŷ_t), restyled by MAdaIN with
        the target frame y_t's face statistics, blended into `target` with `mask` (m^b of y_t). The exported graph."""
        return self.fusion(self.reenact(heatmaps, reference), target, mask)
