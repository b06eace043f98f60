"""The six frame distortions on batches of torch tensors (N x 3 x H x W, RGB, values in [0, 255]), CPU or CUDA.

Integer-valued inputs give the reference path's output (`pixforge.forensics.distortions`) within one grey
level: CC, BW, GB and JPEG exactly (integer arithmetic held exactly in float32 / int32), CS and GNC up to the
last-bit rounding of float32 (the reference reproduces OpenCV's fused multiply-adds, which eager torch does not).
With `differentiable=True` every rounding step passes gradients straight through and JPEG interpolates in
float, so the distortions can sit inside a training graph (BW's grey blocks simply have zero gradient).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from pixforge.forensics.distortions import FRAME_TYPES, block_count, check_level, check_type, parameter
from pixforge.forensics.resample import gaussian_kernel, reflect101, resize_weights

Tensor = torch.Tensor


def _round_step(x: Tensor, rounded: Tensor, differentiable: bool) -> Tensor:
    """`rounded` forward; with `differentiable` the gradient of identity (straight-through estimator)."""
    return x + (rounded - x).detach() if differentiable else rounded


def _rgb(x: Tensor, channels: str) -> tuple[Tensor, Tensor, Tensor]:
    return (x[:, 0], x[:, 1], x[:, 2]) if channels == "rgb" else (x[:, 2], x[:, 1], x[:, 0])


def _to_ycbcr(x: Tensor, channels: str) -> tuple[Tensor, Tensor, Tensor]:
    r, g, b = _rgb(x, channels)
    y = b * 0.114 + (g * 0.587 + r * 0.299)
    cr = (r - y) * 0.713 + 0.5
    cb = (b - y) * 0.564 + 0.5
    return (y * 219 + 16) / 255.0, (cb * 224 + 16) / 255.0, (cr * 224 + 16) / 255.0


def _from_ycbcr(y: Tensor, cb: Tensor, cr: Tensor, channels: str) -> Tensor:
    y = (y * 255.0 - 16) / 219
    cb = (cb * 255.0 - 16) / 224 - 0.5
    cr = (cr * 255.0 - 16) / 224 - 0.5
    b = cb * 1.773 + y
    g = cr * -0.714 + (cb * -0.344 + y)
    r = cr * 1.403 + y
    return torch.stack((r, g, b) if channels == "rgb" else (b, g, r), dim=1)


def color_saturation(x: Tensor, level: int, channels: str = "rgb", differentiable: bool = False) -> Tensor:
    p = float(parameter("CS", level))
    y, cb, cr = _to_ycbcr(x.float(), channels)
    out = _from_ycbcr(y, 0.5 + (cb - 0.5) * p, 0.5 + (cr - 0.5) * p, channels)
    return _round_step(out, out.trunc().clamp(0, 255), differentiable)


def color_contrast(x: Tensor, level: int, differentiable: bool = False) -> Tensor:
    out = x.float() * float(parameter("CC", level))
    return _round_step(out, out.trunc(), differentiable)


def block_wise(x: Tensor, level: int, generator: torch.Generator | None = None,
               positions: Tensor | None = None) -> Tensor:
    """Grey 8x8 blocks at `positions` (N x B x 2 of (x, y)), or at places drawn from `generator`."""
    n, _, h, w = x.shape
    count = block_count(h, w, level)
    if count == 0:
        return x
    if positions is None:  # drawn where the generator lives (a CUDA generator cannot draw CPU numbers), as GNC's noise
        where = "cpu" if generator is None else generator.device
        cols = torch.randint(0, w - 8, (n, count), generator=generator, device=where)
        rows = torch.randint(0, h - 8, (n, count), generator=generator, device=where)
        positions = torch.stack([cols, rows], dim=-1)
    positions = positions.to(x.device)
    offsets = torch.arange(8, device=x.device)
    rows = (positions[..., 1, None] + offsets)[:, :, :, None]  # N x B x 8 x 1
    cols = (positions[..., 0, None] + offsets)[:, :, None, :]  # N x B x 1 x 8
    mask = torch.zeros(n, h, w, dtype=torch.bool, device=x.device)
    mask[torch.arange(n, device=x.device)[:, None, None, None], rows, cols] = True
    return torch.where(mask[:, None], torch.full_like(x, 128.0), x)


def gaussian_noise_color(x: Tensor, level: int, generator: torch.Generator | None = None,
                         noise: Tensor | None = None, channels: str = "rgb", differentiable: bool = False) -> Tensor:
    """Noise N x 3 x H x W in (Y, Cb, Cr) order, drawn from `generator` unless given."""
    if noise is None:
        noise = torch.randn(x.shape, generator=generator, device="cpu" if generator is None else generator.device)
    noise = noise.to(x.device, torch.float32)
    std = math.sqrt(parameter("GNC", level))
    planes = [(p / 255 + std * noise[:, i]) * 255 for i, p in enumerate(_to_ycbcr(x.float(), channels))]
    out = _from_ycbcr(*planes, channels).clamp(0, 255)
    return _round_step(out, out.trunc(), differentiable)


@contextlib.contextmanager
def _exact_float32():
    """No TF32 in cuDNN convolutions: the integer sums must stay exact."""
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
        yield


def fixed_point_blur(x: Tensor, size: int, differentiable: bool = False) -> Tensor:
    """OpenCV's 8-bit GaussianBlur (kernel `size`, sigma size/6, reflect-101) on N x C x H x W floats."""
    n, c, h, w = x.shape
    kernel = torch.tensor(gaussian_kernel(size), dtype=torch.float32, device=x.device)
    r = size // 2
    cols = torch.from_numpy(reflect101(torch.arange(-r, w + r).numpy(), w)).to(x.device)
    rows = torch.from_numpy(reflect101(torch.arange(-r, h + r).numpy(), h)).to(x.device)
    padded = x.float().index_select(3, cols).index_select(2, rows)
    with _exact_float32():  # every partial sum is an integer below 2**24, so float32 holds it exactly
        horiz = F.conv2d(padded, kernel.view(1, 1, 1, size).expand(c, 1, 1, size), groups=c)
        total = F.conv2d(horiz, kernel.view(1, 1, size, 1).expand(c, 1, size, 1), groups=c)
    return _round_step(total / 65536.0, torch.floor((total + 32768.0) / 65536.0), differentiable)


def gaussian_blur(x: Tensor, level: int, differentiable: bool = False) -> Tensor:
    return fixed_point_blur(x, int(parameter("GB", level)), differentiable)


def _axis_taps(dst: int, src: int, clamp_weights: bool, device: torch.device) -> tuple[Tensor, ...]:
    first, a0, a1 = (torch.from_numpy(v) for v in resize_weights(dst, src))
    if clamp_weights:  # horizontal: outside the image all the weight goes to the edge pixel
        edge = (first < 0) | (first >= src - 1)
        a0, a1 = torch.where(edge, 2048, a0), torch.where(edge, 0, a1)
    taps = (first.clamp(0, src - 1), (first + 1).clamp(0, src - 1), a0, a1)
    return tuple(t.to(device) for t in taps)


def resize_linear(x: Tensor, width: int, height: int, differentiable: bool = False) -> Tensor:
    """`cv2.resize` INTER_LINEAR on N x C x H x W: exact on integer values (int32 fixed point), or in float
    with the same weights and a straight-through rounding when `differentiable`."""
    h, w = x.shape[-2:]
    if w == 2 * width and h == 2 * height:  # OpenCV's INTER_AREA switch: (sum of the 2x2 cell + 2) >> 2
        mean = F.avg_pool2d(x.float(), 2)
        return _round_step(mean, torch.floor(mean + 0.5), differentiable)
    x0, x1, a0, a1 = _axis_taps(width, w, True, x.device)
    y0, y1, b0, b1 = _axis_taps(height, h, False, x.device)
    if differentiable:
        xf = x.float()
        horiz = xf.index_select(3, x0) * (a0 / 2048.0) + xf.index_select(3, x1) * (a1 / 2048.0)
        out = horiz.index_select(2, y0) * (b0 / 2048.0)[:, None] + horiz.index_select(2, y1) * (b1 / 2048.0)[:, None]
        return _round_step(out, torch.floor(out + 0.5).clamp(0, 255), True)
    xi = x.round().int()
    horiz = (xi.index_select(3, x0) * a0 + xi.index_select(3, x1) * a1) >> 4
    top = (horiz.index_select(2, y0) * b0[:, None]) >> 16
    bottom = (horiz.index_select(2, y1) * b1[:, None]) >> 16
    return ((top + bottom + 2) >> 2).clamp(0, 255).float()


def jpeg_compression(x: Tensor, level: int, differentiable: bool = False) -> Tensor:
    p = int(parameter("JPEG", level))
    h, w = x.shape[-2:]
    small = resize_linear(x, w // p, h // p, differentiable)
    return resize_linear(small, w, h, differentiable)


def distort_batch(x: Tensor, kind: str, level: int, *, generator: torch.Generator | None = None,
                  channels: str = "rgb", differentiable: bool = False) -> Tensor:
    """One distortion on a whole batch (N x 3 x H x W, [0, 255]); random ones draw per sample from `generator`."""
    kind, level = check_type(kind), check_level(level)
    if kind not in FRAME_TYPES:
        raise ValueError("VC is a video re-encode and has no batch form")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected N x 3 x H x W, got {tuple(x.shape)}")
    if kind == "CS":
        return color_saturation(x, level, channels, differentiable)
    if kind == "CC":
        return color_contrast(x, level, differentiable)
    if kind == "BW":
        return block_wise(x.float(), level, generator)
    if kind == "GNC":
        return gaussian_noise_color(x, level, generator, channels=channels, differentiable=differentiable)
    if kind == "GB":
        return gaussian_blur(x, level, differentiable)
    return jpeg_compression(x, level, differentiable)
