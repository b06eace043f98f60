"""The seven DeeperForensics-1.0 distortions at five levels, on uint8 frames (H x W x 3), one frame at a time.

Each function gives exactly the output of the official `perturbation/distortions.py` (OpenCV 4.x, x86-64)
for the same frame and the same random state; tests check this against reference outputs of the official
functions stored as fixtures. Frames are RGB by default (pixforge's convention); pass `channels="bgr"` for
OpenCV-ordered frames (only CS and GNC depend on the order: they go through YCbCr). Facts of the method:

* CS (colour saturation): chroma of the official float YCbCr scaled towards 0.5 by the level's factor.
* CC (colour contrast): pixels multiplied by the factor (multiplicative, truncated).
* BW (local block-wise): `min(h, w) // 256 * param` grey (128) 8x8 blocks at random places: none below 256 px.
* GNC (white Gaussian noise in colour components): N(0, param) added to Y, Cb and Cr in [0, 1] units.
* GB (Gaussian blur): kernel `param` x `param`, sigma `param / 6`, OpenCV's bit-exact 8-bit fixed point.
* JPEG: down-then-up bilinear resize by `param` (no JPEG codec), OpenCV's fixed-point bilinear.
* VC (video compression): a libx264 re-encode at CRF `param` (see `pixforge.forensics.video`).

Random distortions (BW, GNC) take a `Randomness`: `Randomness(seed, exact=True)` draws exactly what the
official script draws after `random.seed(seed); np.random.seed(seed)`; `exact=False` draws the GNC noise from
numpy's faster `Generator` (same distribution, different numbers). Successive frames continue the streams.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from pixforge.core.cli import PixforgeError

TYPES = ("CS", "CC", "BW", "GNC", "GB", "JPEG", "VC")
FRAME_TYPES = TYPES[:-1]
LEVELS = (1, 2, 3, 4, 5)
NAMES = {"CS": "colour saturation change", "CC": "colour contrast change", "BW": "local block-wise",
         "GNC": "white Gaussian noise in colour components", "GB": "Gaussian blur", "JPEG": "JPEG compression",
         "VC": "video compression"}
# the official parameter table (level 1..5): smaller is worse for CS and CC, larger is worse for the others
PARAMS = {
    "CS": (0.4, 0.3, 0.2, 0.1, 0.0),
    "CC": (0.85, 0.725, 0.6, 0.475, 0.35),
    "BW": (16, 32, 48, 64, 80),
    "GNC": (0.001, 0.002, 0.005, 0.01, 0.05),
    "GB": (7, 9, 13, 17, 21),
    "JPEG": (2, 3, 4, 5, 6),
    "VC": (30, 32, 35, 38, 40),
}
F32 = np.float32


def check_type(kind: str) -> str:
    name = str(kind).upper()
    if name not in TYPES:
        raise PixforgeError(f"unknown distortion type {kind!r}: choose one of {', '.join(TYPES)}")
    return name


def check_level(level: int | str) -> int:
    try:
        value = int(level)
    except (TypeError, ValueError):
        value = 0
    if value not in LEVELS or str(level).strip() not in {str(value), f"{value}.0"}:
        raise PixforgeError(f"distortion level {level!r} is outside 1-5")
    return value


def parameter(kind: str, level: int) -> float | int:
    """The official parameter of distortion `kind` at `level` (1-5)."""
    return PARAMS[check_type(kind)][check_level(level) - 1]


@dataclass
class Randomness:
    """The random streams a video's frames draw from: Python's `random` (BW) and numpy (GNC noise)."""

    seed: int | None = None
    exact: bool = True
    python: random.Random = field(init=False)
    numpy: np.random.RandomState | np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.python = random.Random(self.seed)
        self.numpy = np.random.RandomState(self.seed) if self.exact else np.random.default_rng(self.seed)


def _check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected a uint8 H x W x 3 frame, got {frame.dtype} {frame.shape}")
    return frame


def _fma(a: np.ndarray, b: np.float32, c) -> np.ndarray:
    """float32 a*b + c with one rounding, as OpenCV's SIMD colour conversions compute it (via float64)."""
    return (a.astype(np.float64) * np.float64(b) + np.asarray(c, dtype=np.float64)).astype(F32)


def _to_ycbcr(frame: np.ndarray, channels: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The official `bgr2ycbcr`: OpenCV's float YCrCb (delta 0.5) rescaled to [16, 235] / [16, 240] over 255."""
    x = frame.astype(F32)
    r, g, b = (x[..., 0], x[..., 1], x[..., 2]) if channels == "rgb" else (x[..., 2], x[..., 1], x[..., 0])
    y = _fma(b, F32(0.114), _fma(g, F32(0.587), r * F32(0.299)))
    cr = _fma(r - y, F32(0.713), F32(0.5))
    cb = _fma(b - y, F32(0.564), F32(0.5))
    return ((y * F32(219) + F32(16)) / F32(255.0), (cb * F32(224) + F32(16)) / F32(255.0),
            (cr * F32(224) + F32(16)) / F32(255.0))


def _from_ycbcr(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, channels: str) -> np.ndarray:
    """The official `ycbcr2bgr`: undo the rescaling, then OpenCV's float YCrCb -> RGB/BGR (float32 result)."""
    y = (y * F32(255.0) - F32(16)) / F32(219)
    cb = (cb * F32(255.0) - F32(16)) / F32(224) - F32(0.5)
    cr = (cr * F32(255.0) - F32(16)) / F32(224) - F32(0.5)
    b = _fma(cb, F32(1.773), y)
    g = _fma(cr, F32(-0.714), _fma(cb, F32(-0.344), y))
    r = _fma(cr, F32(1.403), y)
    return np.stack((r, g, b) if channels == "rgb" else (b, g, r), axis=-1)


def _channels(channels: str) -> str:
    if channels not in ("rgb", "bgr"):
        raise ValueError(f"channels must be 'rgb' or 'bgr', got {channels!r}")
    return channels


def color_saturation(frame: np.ndarray, level: int, channels: str = "rgb") -> np.ndarray:
    """CS: scale Cb and Cr towards 0.5 by 0.4/0.3/0.2/0.1/0.0."""
    p = F32(parameter("CS", level))
    y, cb, cr = _to_ycbcr(_check_frame(frame), _channels(channels))
    cb = F32(0.5) + (cb - F32(0.5)) * p
    cr = F32(0.5) + (cr - F32(0.5)) * p
    return _from_ycbcr(y, cb, cr, channels).astype(np.uint8)


@lru_cache(maxsize=8)
def _contrast_table(level: int) -> np.ndarray:
    return (np.arange(256, dtype=F32) * F32(parameter("CC", level))).astype(np.uint8)


def color_contrast(frame: np.ndarray, level: int) -> np.ndarray:
    """CC: every value times 0.85/0.725/0.6/0.475/0.35, truncated (a 256-entry table)."""
    return _contrast_table(check_level(level))[_check_frame(frame)]


def block_count(height: int, width: int, level: int) -> int:
    """How many 8x8 blocks BW draws on a frame: `min(h, w) // 256 * param` (0 below 256 px)."""
    return min(height, width) // 256 * parameter("BW", level)


def block_wise(frame: np.ndarray, level: int, rng: random.Random) -> np.ndarray:
    """BW: grey (128) 8x8 blocks at uniform random places (`rng.randint`, x then y, as the official)."""
    out = _check_frame(frame).copy()
    h, w = out.shape[:2]
    for _ in range(block_count(h, w, level)):
        x = rng.randint(0, w - 1 - 8)
        y = rng.randint(0, h - 1 - 8)
        out[y:y + 8, x:x + 8] = 128
    return out


def gnc_noise(rng: np.random.RandomState | np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal noise for one frame, (H, W, 3) in (Y, Cb, Cr) order: float64 from a RandomState
    (the official `np.random.randn` stream), float32 from a Generator (faster)."""
    if isinstance(rng, np.random.RandomState):
        return rng.randn(*shape)
    return rng.standard_normal(shape, dtype=F32)


def gaussian_noise_color(frame: np.ndarray, level: int, rng: np.random.RandomState | np.random.Generator | None = None,
                         channels: str = "rgb", noise: np.ndarray | None = None) -> np.ndarray:
    """GNC: N(0, 0.001/0.002/0.005/0.01/0.05) added to Y, Cb and Cr (scaled to [0, 1]), back to RGB, clipped.

    The noise comes from `rng` (see `gnc_noise`) or is given as `noise` (H, W, 3), Y/Cb/Cr order."""
    frame = _check_frame(frame)
    if noise is None:
        if rng is None:
            raise ValueError("gaussian_noise_color needs rng or noise")
        noise = gnc_noise(rng, frame.shape)
    wide = noise.dtype == np.float64
    std = math.sqrt(parameter("GNC", level)) if wide else F32(math.sqrt(parameter("GNC", level)))
    scale = 255 if wide else F32(255)
    planes = [((p / F32(255)) + std * noise[..., i]) * scale
              for i, p in enumerate(_to_ycbcr(frame, _channels(channels)))]
    out = _from_ycbcr(*(p.astype(F32) for p in planes), channels)
    return np.clip(out, 0, 255).astype(np.uint8)


@lru_cache(maxsize=16)
def gaussian_kernel(size: int) -> np.ndarray:
    """OpenCV's 8-bit fixed-point Gaussian kernel (sums to 256) for ksize `size` and sigma `size / 6`:
    the normalised double kernel, then 8 fractional bits with error diffusion (centre takes the rest)."""
    scale = -0.125 / (size * 1.0 / 6) ** 2
    half = (size - 1) // 2
    values = [math.exp(float(x * x) * scale) for x in range(1 - size, 0, 2)]
    inv = 1.0 / (sum(values) * 2.0 + 1.0)
    fixed, err = [], 0.0
    for v in values:
        adjusted = v * inv * 256.0 + err
        fixed.append(int(np.rint(adjusted)))
        err = adjusted - fixed[-1]
    kernel = fixed + [256 - 2 * sum(fixed)] + fixed[::-1]
    assert len(kernel) == 2 * half + 1
    return np.array(kernel, dtype=np.int64)


def reflect101(index: np.ndarray, size: int) -> np.ndarray:
    """OpenCV's BORDER_REFLECT_101 (gfedcb|abcdefgh|gfedcba) for any index, also far outside."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    index = np.abs(index) % period
    return np.where(index >= size, period - index, index)


def gaussian_blur(frame: np.ndarray, level: int) -> np.ndarray:
    """GB: separable Gaussian, kernel 7/9/13/17/21 with sigma k/6, reflect-101 border, exact 8-bit fixed point
    (horizontal sums with 8 fractional bits, vertical with 16, rounded half up)."""
    import torch

    from pixforge.forensics.batch import fixed_point_blur

    frame = _check_frame(frame)
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()
    return fixed_point_blur(x, int(parameter("GB", level)))[0].permute(1, 2, 0).to(torch.uint8).numpy()


@lru_cache(maxsize=64)
def resize_weights(dst: int, src: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV INTER_LINEAR taps for one axis: first source index, and the two weights in 11-bit fixed point
    (float32 positions `(d + 0.5) * src / dst - 0.5`, rounded half to even). The second index is clamped."""
    scale = 1.0 / (dst / src)
    pos = ((np.arange(dst) + 0.5) * scale - 0.5).astype(F32)
    first = np.floor(pos)
    frac = (pos - first).astype(F32)
    first = first.astype(np.int64)
    return first, np.rint((F32(1) - frac) * F32(2048)).astype(np.int32), np.rint(frac * F32(2048)).astype(np.int32)


def resize_linear(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """`cv2.resize(frame, (width, height))` (INTER_LINEAR) bit for bit on uint8 frames."""
    h, w = frame.shape[:2]
    if w == 2 * width and h == 2 * height:  # OpenCV switches to INTER_AREA: the mean of each 2x2 cell
        x = frame.astype(np.int32)
        return ((x[0::2, 0::2] + x[0::2, 1::2] + x[1::2, 0::2] + x[1::2, 1::2] + 2) >> 2).astype(np.uint8)
    first, a0, a1 = resize_weights(width, w)
    outside = first < 0  # left of the first pixel: weight 1 on pixel 0
    right = first >= w - 1
    a0, a1 = np.where(outside | right, 2048, a0), np.where(outside | right, 0, a1)
    x0 = np.clip(first, 0, w - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    rows, b0, b1 = resize_weights(height, h)
    y0, y1 = np.clip(rows, 0, h - 1), np.clip(rows + 1, 0, h - 1)
    src = frame.astype(np.int32)
    # horizontal pass (exact integers), only on the rows the vertical pass reads; then OpenCV's SIMD vertical
    # rounding: each product keeps its top 16 bits of (S >> 4) * beta, then (sum + 2) >> 2
    needed = np.unique(np.concatenate([y0, y1]))
    horiz = np.zeros((h, width, 3), dtype=np.int32)
    horiz[needed] = (src[needed][:, x0] * a0[:, None] + src[needed][:, x1] * a1[:, None]) >> 4
    top = (horiz[y0] * b0[:, None, None]) >> 16
    bottom = (horiz[y1] * b1[:, None, None]) >> 16
    return np.clip((top + bottom + 2) >> 2, 0, 255).astype(np.uint8)


def jpeg_compression(frame: np.ndarray, level: int) -> np.ndarray:
    """JPEG: bilinear down by 2/3/4/5/6 (`h // p`, `w // p`), then bilinear back up to the frame's size."""
    frame = _check_frame(frame)
    p = int(parameter("JPEG", level))
    h, w = frame.shape[:2]
    if h // p < 1 or w // p < 1:
        raise PixforgeError(f"a {w}x{h} frame is too small for JPEG level {level} (needs at least {p} px a side)")
    return resize_linear(resize_linear(frame, w // p, h // p), w, h)


def distort(frame: np.ndarray, kind: str, level: int, randomness: Randomness | None = None,
            channels: str = "rgb") -> np.ndarray:
    """Apply one frame distortion (any type but VC, which is an encoder setting) at `level`."""
    kind = check_type(kind)
    level = check_level(level)
    if kind == "VC":
        raise ValueError("VC is a video re-encode, not a frame distortion: use pixforge.forensics.video")
    if kind in ("BW", "GNC") and randomness is None:
        raise ValueError(f"{kind} is random: pass a Randomness")
    if kind == "CS":
        return color_saturation(frame, level, channels)
    if kind == "CC":
        return color_contrast(frame, level)
    if kind == "BW":
        return block_wise(frame, level, randomness.python)
    if kind == "GNC":
        return gaussian_noise_color(frame, level, randomness.numpy, channels)
    if kind == "GB":
        return gaussian_blur(frame, level)
    return jpeg_compression(frame, level)
