"""StyleGAN2 discriminator (Karras et al., CVPR 2020) in plain PyTorch, with NVlabs' parameter names.

The module tree and every parameter / buffer name and shape equal `training/networks.py` of NVlabs'
`stylegan2-ada-pytorch` (`b{res}.fromrgb|conv0|conv1|skip.weight`, `.bias`, `.resample_filter`,
`b4.conv|fc|out.weight`, `b4.fromrgb` for 'skip', `mapping.embed|fc{i}` for a conditional D, ...), so a state
dict converted from an official pickle loads strictly; the constructor takes NVlabs' arguments (`block_kwargs`,
`mapping_kwargs`, `epilogue_kwargs` included). Defaults: 'resnet', `channel_base` 32768, `channel_max` 512.

* Blocks from `img_resolution` down to 8 px, each `conv0` (3 x 3) then `conv1` (3 x 3, downsampling x2), the
  first block (and every block for 'skip') starting with `fromrgb` (1 x 1). Architectures: 'orig' (plain),
  'skip' (the image is FIR-downsampled alongside and added through each block's `fromrgb`), 'resnet' (a 1 x 1
  bias-free downsampling `skip` convolution, the sum of both paths scaled by sqrt(1/2)).
* `Conv2dLayer`: equalised learning rate (weight scaled by `1 / sqrt(fan_in)` at run time), bias, activation
  (lrelu 0.2 with gain sqrt(2) by default), clamp to +-`conv_clamp * gain`; downsampling is the separable
  [1, 3, 3, 1] FIR filter (normalised to sum 1) followed by a stride-2 convolution (for 1 x 1 kernels FIR
  downsampling, then the convolution), as NVlabs' `conv2d_resample(down=2)`. `trainable=False` registers
  `weight` / `bias` as buffers under the same names: with `block_kwargs={'freeze_layers': k}` the first k
  layers (counted from the highest resolution, `fromrgb` included) are frozen (Freeze-D).
* Epilogue at 4 px: minibatch standard deviation (`mbstd_group_size`, `mbstd_num_channels`), 3 x 3 `conv`,
  `fc`, `out`. A conditional D (`c_dim` > 0) maps c with a z-less `MappingNetwork` (no `w_avg`) to `cmap`
  (`cmap_dim`, default the 4 px channel count) and projects: `(out * cmap).sum(1) / sqrt(cmap_dim)`.
* Mixed precision as NVlabs' `use_fp16`: the top `num_fp16_res` resolutions (never below 8 px) run in
  `low_precision` (float16 as NVlabs, or bfloat16), optionally channels-last (`fp16_channels_last`); the
  epilogue runs in float32 and the logits are float32. `forward(..., force_fp32=True)` runs all in float32.
  `conv_clamp` applies wherever it is set, as in NVlabs (its configs set 256 with mixed precision).

Not ported: custom CUDA ops (`bias_act`, `upfirdn2d` and `conv2d_gradfix` are the reference arithmetic in plain
PyTorch; double backward for R1 works through autograd), `persistence` pickling, the augmentation pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from pixforge.core.nets.stylegan2 import (
    ACTIVATIONS,
    FullyConnectedLayer,
    MappingNetwork,
    bias_act,
    conv2d_resample,
    setup_filter,
    upfirdn2d,
)

ARCHITECTURES = ("orig", "skip", "resnet")
LOW_PRECISION = (torch.float16, torch.bfloat16)
SQRT_HALF = math.sqrt(0.5)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """FIR downsampling to exactly `H / down` (the image path of the 'skip' architecture)."""
    fw = f.shape[-1]
    p0, p1 = (fw - down + 1) // 2, (fw - down) // 2
    return upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))


class Conv2dLayer(nn.Module):
    """Equalised-lr convolution (optionally FIR up- or downsampling x2), bias, activation, optional clamp."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1,
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None,
                 channels_last: bool = False, trainable: bool = True) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
        if up > 1 and down > 1:
            raise ValueError("Conv2dLayer does either up- or downsampling, not both")
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        bias_init = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(bias_init) if bias else None
        else:  # Freeze-D: same names, but buffers, so that no optimiser sees them
            self.register_buffer("weight", weight)
            if bias:
                self.register_buffer("bias", bias_init)
            else:
                self.bias = None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample(x, w, self.resample_filter, up=self.up, down=self.down, padding=self.padding)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(x, self.bias, act=self.activation, gain=gain, clamp=clamp)


class DiscriminatorBlock(nn.Module):
    """One resolution R -> R / 2: (fromrgb) -> conv0 -> conv1 (down x2), with the 'skip' / 'resnet' paths."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int, img_channels: int,
                 first_layer_idx: int, architecture: str = "resnet", activation: str = "lrelu",
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None,
                 use_fp16: bool = False, fp16_channels_last: bool = False, freeze_layers: int = 0,
                 low_precision: torch.dtype = torch.float16) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"discriminator architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        if in_channels not in (0, tmp_channels):
            raise ValueError(f"in_channels must be 0 (first block) or tmp_channels ({tmp_channels}), got {in_channels}")
        if low_precision not in LOW_PRECISION:
            raise ValueError(f"low_precision must be one of {LOW_PRECISION}, got {low_precision}")
        self.in_channels, self.resolution, self.img_channels = in_channels, resolution, img_channels
        self.first_layer_idx, self.architecture = first_layer_idx, architecture
        self.use_fp16, self.low_precision = use_fp16, low_precision
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_layers = 0

        def layer(*args, **kwargs) -> Conv2dLayer:
            trainable = first_layer_idx + self.num_layers >= freeze_layers
            self.num_layers += 1
            return Conv2dLayer(*args, activation=kwargs.pop("activation", activation), trainable=trainable,
                               resample_filter=resample_filter, channels_last=self.channels_last, **kwargs)

        if in_channels == 0 or architecture == "skip":
            self.fromrgb = layer(img_channels, tmp_channels, 1, conv_clamp=conv_clamp)
        self.conv0 = layer(tmp_channels, tmp_channels, 3, conv_clamp=conv_clamp)
        self.conv1 = layer(tmp_channels, out_channels, 3, down=2, conv_clamp=conv_clamp)
        if architecture == "resnet":
            self.skip = layer(tmp_channels, out_channels, 1, bias=False, down=2, activation="linear")

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None,
                force_fp32: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        low = self.use_fp16 and not force_fp32
        dtype = self.low_precision if low else torch.float32
        memory_format = torch.channels_last if self.channels_last and low else torch.contiguous_format
        if x is not None:
            x = x.to(dtype=dtype, memory_format=memory_format)
        if self.in_channels == 0 or self.architecture == "skip":
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=SQRT_HALF)
            x = self.conv1(self.conv0(x), gain=SQRT_HALF)
            x = y + x
        else:
            x = self.conv1(self.conv0(x))
        return x, img


class MinibatchStdLayer(nn.Module):
    """Appends `num_channels` feature maps: the standard deviation over groups of `group_size` images (image i
    is in group i mod (N / G)), averaged over each of `num_channels` channel slices and all pixels."""

    def __init__(self, group_size: int | None, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = n if self.group_size is None else min(self.group_size, n)
        f = self.num_channels
        if n % g or c % f:
            raise ValueError(f"minibatch stddev needs the batch ({n}) divisible by the group size ({g}) and the "
                             f"channels ({c}) by num_channels ({f})")
        y = x.reshape(g, -1, f, c // f, h, w)
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """4 px head in float32: (fromrgb for 'skip') -> mbstd -> conv -> fc -> out, projected onto `cmap`."""

    def __init__(self, in_channels: int, cmap_dim: int, resolution: int, img_channels: int,
                 architecture: str = "resnet", mbstd_group_size: int | None = 4, mbstd_num_channels: int = 1,
                 activation: str = "lrelu", conv_clamp: float | None = None) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"discriminator architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        self.in_channels, self.cmap_dim, self.resolution = in_channels, cmap_dim, resolution
        self.img_channels, self.architecture = img_channels, architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, 1, activation=activation)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, 3, activation=activation,
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, img: torch.Tensor | None, cmap: torch.Tensor | None = None,
                force_fp32: bool = False) -> torch.Tensor:
        del force_fp32  # the epilogue always runs in float32
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == "skip":
            x = x + self.fromrgb(img.to(dtype=torch.float32, memory_format=torch.contiguous_format))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """Image (and class label c) -> N x 1 logits. Defaults: 'resnet', channel_base 32768, channel_max 512."""

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int, architecture: str = "resnet",
                 channel_base: int = 32768, channel_max: int = 512, num_fp16_res: int = 0,
                 conv_clamp: float | None = None, cmap_dim: int | None = None, block_kwargs: dict | None = None,
                 mapping_kwargs: dict | None = None, epilogue_kwargs: dict | None = None,
                 low_precision: torch.dtype = torch.float16) -> None:
        super().__init__()
        if img_resolution < 8 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
        if low_precision not in LOW_PRECISION:
            raise ValueError(f"low_precision must be one of {LOW_PRECISION}, got {low_precision}")
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.block_resolutions = [2 ** i for i in range(self.img_resolution_log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in [*self.block_resolutions, 4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        cmap_dim = 0 if c_dim == 0 else (channels[4] if cmap_dim is None else cmap_dim)
        self.cmap_dim = cmap_dim
        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(channels[res] if res < img_resolution else 0, channels[res],
                                       channels[res // 2], res, first_layer_idx=layer_idx,
                                       use_fp16=res >= fp16_resolution, low_precision=low_precision,
                                       **(block_kwargs or {}), **common)
            setattr(self, f"b{res}", block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                                          **(mapping_kwargs or {}))
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4, **(epilogue_kwargs or {}),
                                        **common)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None, force_fp32: bool = False) -> torch.Tensor:
        r = self.img_resolution
        if img.ndim != 4 or tuple(img.shape[1:]) != (self.img_channels, r, r):
            raise ValueError(f"img must be N x {self.img_channels} x {r} x {r}, got {tuple(img.shape)}")
        cmap = None
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(f"this discriminator is conditional: pass c of shape N x {self.c_dim}")
            cmap = self.mapping(None, c)
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, force_fp32=force_fp32)
        return self.b4(x, img, cmap)
