"""The convolutional blocks DF-VAE's encoders and decoders are made of (no normalisation layers: eval equals train,
batch size 1 works, and the exported graph is the trained one; AdaIN in the fusion module is the only normalisation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Conv2d:
    """Convolution that keeps the size (stride 1) or halves it (stride 2, kernel 4)."""
    return nn.Conv2d(cin, cout, kernel, stride, padding=(kernel - stride + 1) // 2)


class Down(nn.Sequential):
    """Halve the resolution: 4x4 stride-2 convolution, then a 3x3 one, each followed by LeakyReLU(0.2)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(conv(cin, cout, 4, 2), nn.LeakyReLU(0.2), conv(cout, cout), nn.LeakyReLU(0.2))


class Up(nn.Module):
    """Double the resolution: nearest upsampling, then two 3x3 convolutions with LeakyReLU(0.2)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv(cin, cout), nn.LeakyReLU(0.2), conv(cout, cout), nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(F.interpolate(x, scale_factor=2.0, mode="nearest"))
