"""Multi-scale PatchGAN discriminator (pix2pixHD / SPADE / TSIT), returning intermediate features for feature matching.

One `PatchDiscriminator` is a stack of 4 x 4 convolutions (padding 2) with LeakyReLU 0.2: the first convolution
(stride 2) has no normalisation, each of the `n_layers - 1` following ones doubles the channels (at most
`max_channels`) with stride 2 (stride 1 for the fourth layer, as TSIT's code sets it), spectral normalisation and a
parameter-free instance norm (its bias is dropped: the norm would cancel it), and a final 4 x 4 convolution gives a
one-channel map of patch logits. `MultiScaleDiscriminator` runs `num_scales` of them on the image and on copies
average-pooled by 2 (3 x 3, stride 2, padding ignored), coarser each time.

`forward` returns, per scale, the list of every block's output: the intermediate features first, the patch logits
last, so `outputs[i][-1]` is scale i's prediction and `outputs[i][:-1]` feed a feature-matching loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

NORMS = ("instance", "batch", "none")


class PatchDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                 spectral: bool = True, max_channels: int = 512) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if n_layers < 1:
            raise ValueError(f"n_layers must be at least 1, got {n_layers}")
        blocks = [nn.Sequential(nn.Conv2d(in_channels, ndf, 4, stride=2, padding=2), nn.LeakyReLU(0.2))]
        channels = ndf
        for n in range(1, n_layers):
            previous, channels = channels, min(channels * 2, max_channels)
            conv = nn.Conv2d(previous, channels, 4, stride=1 if n == 3 else 2, padding=2, bias=norm == "none")
            layers: list[nn.Module] = [spectral_norm(conv) if spectral else conv]
            if norm == "instance":
                layers.append(nn.InstanceNorm2d(channels, affine=False))
            elif norm == "batch":
                layers.append(nn.BatchNorm2d(channels))
            blocks.append(nn.Sequential(*layers, nn.LeakyReLU(0.2)))
        blocks.append(nn.Sequential(nn.Conv2d(channels, 1, 4, stride=1, padding=2)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return outputs


class MultiScaleDiscriminator(nn.Module):
    """`num_scales` PatchDiscriminators on the image and on 2x, 4x, ... average-pooled copies of it."""

    def __init__(self, in_channels: int = 3, num_scales: int = 2, ndf: int = 64, n_layers: int = 3,
                 norm: str = "instance", spectral: bool = True, max_channels: int = 512) -> None:
        super().__init__()
        if num_scales < 1:
            raise ValueError(f"num_scales must be at least 1, got {num_scales}")
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, ndf, n_layers, norm, spectral, max_channels)
                                    for _ in range(num_scales))

    @staticmethod
    def downsample(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        results = []
        for k, scale in enumerate(self.scales):
            if k:
                x = self.downsample(x)
            results.append(scale(x))
        return results
