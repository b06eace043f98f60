"""StyleGAN2 generator (Karras et al., CVPR 2020) in plain PyTorch, with NVlabs' parameter names.

The module tree and every parameter / buffer name and shape equal `training/networks.py` of NVlabs'
`stylegan2-ada-pytorch` (`mapping.fc{i}.weight`, `mapping.w_avg`, `synthesis.b{res}.const`,
`synthesis.b{res}.conv0|conv1|torgb.affine.weight`, `.weight`, `.bias`, `.noise_strength`, `.noise_const`,
`.resample_filter`, ...), so a state dict converted from an official pickle loads strictly. Config F is the
default: z = w = 512, 8 mapping layers with learning-rate multiplier 0.01, `channel_base` 32768, `channel_max`
512, the 'skip' architecture.

* Equalised learning rate: weights are stored N(0, 1) (divided by the lr multiplier) and scaled at run time by
  `lr_multiplier / sqrt(fan_in)`; biases by `lr_multiplier`.
* Modulated convolution: `styles = affine(w)` (bias initialised to 1) scale the input channels; with
  demodulation each output channel of the style-scaled weight is renormalised to unit L2 norm. It is computed
  unfused (scale inputs, shared convolution, scale outputs), which is the same arithmetic as the fused grouped
  convolution of the official code and keeps the batch axis free (ONNX).
* Upsampling (`conv0` and the skip path of `torgb` images) is `upfirdn2d` with the separable [1, 3, 3, 1]
  filter normalised to sum 1 and gain `up**2`; `conv0` is a stride-2 transposed convolution followed by it.
* `bias_act`: bias, activation (lrelu 0.2 or relu, gain sqrt(2); linear, gain 1), optional clamp.
* Noise: 'random' (per image, optionally from a `torch.Generator`), 'const' (the `noise_const` buffers) or
  'none', scaled by the learnt `noise_strength`.
* Truncation `w_avg + psi (w - w_avg)` on the first `truncation_cutoff` ws; `style_mix(ws, ws2, cutoff)`.

Not ported: the 'resnet' generator architecture, FP16 blocks (`num_fp16_res`; use autocast), custom CUDA ops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)
ACTIVATIONS = {"linear": 1.0, "relu": SQRT2, "lrelu": SQRT2}  # name: default gain
NOISE_MODES = ("random", "const", "none")


def setup_filter(f: Sequence[float]) -> torch.Tensor:
    """A 1-D filter as the 2-D separable outer product, normalised to sum 1 (the `resample_filter` buffers)."""
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 1:
        f = torch.outer(f, f)
    return f / f.sum()


def bias_act(x: torch.Tensor, b: torch.Tensor | None, act: str = "linear", gain: float = 1.0,
             clamp: float | None = None) -> torch.Tensor:
    """`clamp(act(x + b) * default_gain(act) * gain, -clamp, clamp)` with the bias on dimension 1."""
    if b is not None:
        x = x + b.to(x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))
    if act == "relu":
        x = F.relu(x)
    elif act == "lrelu":
        x = F.leaky_relu(x, 0.2)
    elif act != "linear":
        raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {act!r}")
    gain = ACTIVATIONS[act] * gain
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
              padding: Sequence[int] = (0, 0, 0, 0), gain: float = 1.0, flip_filter: bool = False) -> torch.Tensor:
    """Upsample by zero insertion, pad (x0, x1, y0, y1; negative crops), convolve with the 2-D FIR `f` times
    `gain` (a true convolution unless `flip_filter`), keep every `down`-th sample — NVlabs' reference op."""
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    f = (f * gain).to(x.dtype)
    if not flip_filter:
        f = f.flip([0, 1])
    x = F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """x2 upsampling that keeps the size exactly `up * H` (the skip path of the generator)."""
    fw = f.shape[-1]
    p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1,
                    padding: int = 0, down: int = 1) -> torch.Tensor:
    """Correlation with `w` (O x I x k x k); with `up` > 1 a stride-`up` transposed convolution followed by
    the FIR `f`, the output being `up * H` for `padding = k // 2`. With `down` > 1 the FIR `f` then a
    stride-`down` convolution (for 1 x 1 kernels: FIR downsampling, then the convolution), the output being
    `H / down` — NVlabs' two downsampling paths."""
    if down > 1:
        if up > 1:
            raise ValueError("conv2d_resample does either up- or downsampling, not both")
        fw = f.shape[-1]
        p0, p1 = padding + (fw - down + 1) // 2, padding + (fw - down) // 2
        if w.shape[-1] == 1 and w.shape[-2] == 1:
            return F.conv2d(upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1)), w)
        return F.conv2d(upfirdn2d(x, f, padding=(p0, p1, p0, p1)), w, stride=down)
    if up == 1:
        return F.conv2d(x, w, padding=padding)
    kw, fw = w.shape[-1], f.shape[-1]
    p0 = padding + (fw + up - 1) // 2 - (kw - 1)
    p1 = padding + (fw - up) // 2 - (kw - up)
    x = F.conv_transpose2d(x, w.transpose(0, 1), stride=up)
    return upfirdn2d(x, f, padding=(p0, p1, p0, p1), gain=up * up)


def modulate(weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True) -> torch.Tensor:
    """The per-image weights N x O x I x k x k: `weight * styles`, each output filter renormalised to unit
    L2 norm when `demodulate` (what the unfused `modulated_conv2d` computes implicitly)."""
    w = weight[None] * styles[:, None, :, None, None]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    return w


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, noise: torch.Tensor | None = None,
                     up: int = 1, padding: int = 0, resample_filter: torch.Tensor | None = None,
                     demodulate: bool = True) -> torch.Tensor:
    """Modulated (and demodulated) convolution, then `+ noise`."""
    n = x.shape[0]
    dcoefs = None
    if demodulate:
        w = weight[None] * styles.reshape(n, 1, -1, 1, 1)
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
    x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up=up, padding=padding)
    if dcoefs is not None:
        x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def style_mix(ws: torch.Tensor, ws2: torch.Tensor, cutoff: int) -> torch.Tensor:
    """Style mixing: the ws of layers `cutoff..` taken from `ws2` (N x num_ws x w_dim each)."""
    return torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)


class FullyConnectedLayer(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = None if self.bias is None else self.bias.to(x.dtype) * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class MappingNetwork(nn.Module):
    """z (and an optional class label c) -> w, broadcast to `num_ws` copies, with the `w_avg` tracker."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8,
                 embed_features: int | None = None, layer_features: int | None = None, activation: str = "lrelu",
                 lr_multiplier: float = 0.01, w_avg_beta: float | None = 0.995) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        embed_features = 0 if c_dim == 0 else (w_dim if embed_features is None else embed_features)
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                                          lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor | None, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, update_w_avg: bool = True) -> torch.Tensor:
        x = normalize_2nd_moment(z.float()) if self.z_dim > 0 else None
        if self.c_dim > 0:
            if c is None:
                raise ValueError(f"this mapping network is conditional: pass c of shape N x {self.c_dim}")
            y = normalize_2nd_moment(self.embed(c.float()))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if self.w_avg_beta is not None and self.training and update_w_avg:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                head = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
                x = torch.cat([head, x[:, truncation_cutoff:]], dim=1)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3 x 3 convolution (upsampling x2 when `up` = 2), noise, bias, activation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def noise(self, n: int, noise_mode: str, generator: torch.Generator | None) -> torch.Tensor | None:
        if not self.use_noise or noise_mode == "none":
            return None
        if noise_mode == "const":
            return self.noise_const * self.noise_strength
        shape = [n, 1, self.resolution, self.resolution]
        device = self.weight.device
        if generator is not None and generator.device != device:
            return torch.randn(shape, generator=generator).to(device) * self.noise_strength
        return torch.randn(shape, device=device, generator=generator) * self.noise_strength

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random",
                generator: torch.Generator | None = None, gain: float = 1.0) -> torch.Tensor:
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, noise=self.noise(x.shape[0], noise_mode, generator), up=self.up,
                             padding=self.padding, resample_filter=self.resample_filter)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(x, self.bias, act=self.activation, gain=gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1 x 1 convolution to colour, without demodulation; linear, optional clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, padding=self.padding, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (const | conv0 up x2) -> conv1 -> torgb, the image path upsampled and summed ('skip')."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: float | None = None, **layer_kwargs) -> None:
        super().__init__()
        if architecture not in ("orig", "skip"):
            raise ValueError(f"generator architecture must be 'orig' or 'skip', got {architecture!r}")
        self.in_channels, self.resolution, self.img_channels = in_channels, resolution, img_channels
        self.is_last, self.architecture = is_last, architecture
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp,
                                    **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, noise_mode: str = "random",
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.to(ws.dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        else:
            x = self.conv0(x, next(w_iter), noise_mode, generator)
        x = self.conv1(x, next(w_iter), noise_mode, generator)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter)).float()
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws (N x num_ws x w_dim) -> image N x C x R x R (values around [-1, 1])."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, **block_kwargs) -> None:
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(2, int(math.log2(img_resolution)) + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = res == img_resolution
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim, res, img_channels,
                                   is_last, **block_kwargs)
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f"b{res}", block)

    def forward(self, ws: torch.Tensor, noise_mode: str = "random",
                generator: torch.Generator | None = None) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be N x {self.num_ws} x {self.w_dim}, got {tuple(ws.shape)}")
        ws = ws.float()
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + block.num_torgb), noise_mode, generator)
            w_idx += block.num_conv
        return img


class Generator(nn.Module):
    """Mapping + synthesis; `forward(z, c)` -> N x img_channels x R x R. Defaults: config F at 1024 px."""

    def __init__(self, z_dim: int = 512, c_dim: int = 0, w_dim: int = 512, img_resolution: int = 1024,
                 img_channels: int = 3, mapping_kwargs: dict | None = None,
                 synthesis_kwargs: dict | None = None) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **(synthesis_kwargs or {}))
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **(mapping_kwargs or {}))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "random",
                generator: torch.Generator | None = None, mix_z: torch.Tensor | None = None,
                mix_cutoff: int | None = None) -> torch.Tensor:
        """`mix_z` with `mix_cutoff`: style mixing, layers `mix_cutoff..` driven by `mix_z`."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        if mix_z is not None:
            if mix_cutoff is None:
                raise ValueError("style mixing needs mix_cutoff (the first layer driven by mix_z)")
            ws2 = self.mapping(mix_z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                               update_w_avg=False)
            ws = style_mix(ws, ws2, mix_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, generator=generator)
