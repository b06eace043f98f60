"""The convolutional VAE of the thesis's reconstruction experiments (Sec. 5.3), scaled down.

The thesis trains a CNN VAE (Kingma & Welling) on 64x64 CelebA and 256x256 CelebA-HQ without giving its
layers; this is the usual DCGAN-shaped one. Encoder: 4x4 stride-2 convolutions (BatchNorm + LeakyReLU 0.2)
halve the image down to 4x4, channels doubling from `width` up to 8 x `width`, then a linear layer gives the
posterior mean and log-variance. Decoder: the mirror image with 4x4 stride-2 transposed convolutions
(BatchNorm + ReLU) and a tanh output in [-1, 1]. Transposed convolutions are kept on purpose: their
checkerboard artifacts are among the frequency gaps FFL is meant to close.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def check_size(size: int) -> None:
    """ValueError unless `size` is a power of two from 8 to 1024 (the VAE halves it down to 4x4)."""
    if size < 8 or size > 1024 or size & (size - 1):
        raise ValueError(f"the VAE needs a square image size that is a power of two from 8 to 1024, got {size}")


class VAE(nn.Module):
    """`forward(x, noise)` -> (reconstruction, mu, logvar) of the sample mu + noise * sigma; `reconstruct(x)`
    decodes mu."""

    def __init__(self, size: int = 64, width: int = 32, latent: int = 128, channels: int = 3):
        super().__init__()
        check_size(size)
        self.latent = latent
        levels = int(math.log2(size)) - 2
        widths = [min(width * 2**i, width * 8) for i in range(levels)]
        down, c_in = [], channels
        for i, c_out in enumerate(widths):
            down += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=i == 0)]
            down += [nn.LeakyReLU(0.2)] if i == 0 else [nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.encoder = nn.Sequential(*down, nn.Flatten(), nn.Linear(c_in * 16, 2 * latent))
        up = []
        for c_out in reversed(widths[:-1]):
            up += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
        self.project = nn.Linear(latent, widths[-1] * 16)
        self.decoder = nn.Sequential(nn.Unflatten(1, (widths[-1], 4, 4)), nn.BatchNorm2d(widths[-1]), nn.ReLU(),
                                     *up, nn.ConvTranspose2d(c_in, channels, 4, 2, 1), nn.Tanh())

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.project(z))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`noise`: standard normal, len(x) x latent (the caller draws it, so a run can reproduce it)."""
        mu, logvar = self.encode(x)
        z = mu + noise * (0.5 * logvar).exp()
        return self.decode(z), mu, logvar

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior-mean reconstruction (deterministic), as evaluated in the thesis."""
        return self.decode(self.encode(x)[0])

