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
numpy's `Generator` and adds it in float32 (same distribution, different numbers, several times faster: what
videos use by default). Successive frames continue the streams.

Speed: numpy only (no torch, no OpenCV), on blocks of rows whose temporaries stay in the CPU cache. CS and GNC
are float32 matrix products (the YCbCr round trip is affine); CS stays bit-exact by redoing, in OpenCV's
arithmetic, the few colours whose value lies near an integer. GB and JPEG are OpenCV's fixed-point integer
arithmetic (`pixforge.forensics.resample`), CC an exact integer multiply-shift.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from pixforge.core.cli import PixforgeError
from pixforge.forensics import resample

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


def _roundtrip_real(x: np.ndarray, p: float) -> np.ndarray:
    """The official YCbCr round trip (chroma scaled by `p` about 0.5) in exact arithmetic on float64 RGB rows:
    an affine map, whose float32 evaluation OpenCV's arithmetic follows to a few ulps."""
    c = [float(F32(v)) for v in (0.299, 0.587, 0.114, 0.713, 0.564, 1.403, -0.714, -0.344, 1.773)]
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    y = c[0] * r + c[1] * g + c[2] * b
    scaled = [(d * k * 224 + 0.5 * 224 + 16) / 255 for d, k in ((r - y, c[3]), (b - y, c[4]))]
    cr, cb = (((0.5 + (v - 0.5) * p) * 255 - 16) / 224 - 0.5 for v in scaled)
    return np.stack([y + c[5] * cr, y + c[6] * cr + c[7] * cb, y + c[8] * cb], axis=1)


@lru_cache(maxsize=16)
def _affine(p: float, channels: str) -> tuple[np.ndarray, np.ndarray]:
    """(M, c) with `pixels @ M + c` == `_roundtrip_real` for pixels in `channels` order (float32)."""
    order = [0, 1, 2] if channels == "rgb" else [2, 1, 0]
    v = _roundtrip_real(np.eye(4, 3, -1)[:, order], p)[:, order]  # rows: 0, then each unit colour
    return (v[1:] - v[0]).astype(F32), v[0].astype(F32)


BLOCK_PIXELS = 16384  # pixels per block of the colour maps: a block's float32 temporaries (190 KB) stay in L2


def _block_rows(width: int, scale: int = 1) -> int:
    """Rows per block for frames `width` pixels wide (8 at 1080p, 19 at 480p)."""
    return max(1, scale * BLOCK_PIXELS // width)


def _affine_rows(frame: np.ndarray, matrix: np.ndarray, offset: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
    """`pixels @ matrix + offset` in float32 for successive blocks of rows of an H x W x 3 frame: yields
    (first row, end row, the block's values, flat). The buffers are reused: use a block before the next.
    Four pixels share a row of a 12-wide product (BLAS is slow on rows of 3); the offset is added along rows of
    64 pixels (numpy is slow on a last axis of length 3)."""
    h, w, _ = frame.shape
    rows = _block_rows(w)
    size = min(h, rows) * w * 3
    pixels, values = np.empty(size, dtype=F32), np.empty(size, dtype=F32)
    quad = np.kron(np.eye(4, dtype=F32), matrix)
    tiled = np.tile(offset.astype(F32), 64)
    with resample.one_blas_thread():
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            n = (r1 - r0) * w * 3
            x, v = pixels[:n], values[:n]
            x[...] = frame[r0:r1].reshape(-1)
            if n % 12 == 0:
                np.matmul(x.reshape(-1, 12), quad, out=v.reshape(-1, 12))
            else:
                np.matmul(x.reshape(-1, 3), matrix, out=v.reshape(-1, 3))
            body = n - n % 192
            v[:body].reshape(-1, 192)[...] += tiled
            v[body:].reshape(-1, 3)[...] += tiled[:3]
            yield r0, r1, v


NEAR_INTEGER = 1e-3  # float32 affine vs OpenCV's arithmetic: at most 6.1e-5 apart over all 2**24 colours


KNOWN = np.uint32(1 << 24)


def _distinct(ordered: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array (cheaper than np.unique's hashing for millions of repeats)."""
    if ordered.size < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


@lru_cache(maxsize=2)
def _colour_memo(p: np.float32, channels: str) -> np.ndarray:
    """Exact CS outputs by packed input colour (RGBX as uint32; bit 24 marks an entry as known), filled as
    colours are met. 64 MB of address space, of which only the pages of the colours met become resident."""
    return np.zeros(1 << 24, dtype=np.uint32)


def _exact_colours(colours: np.ndarray, p: np.float32, channels: str) -> np.ndarray:
    """CS through OpenCV's exact arithmetic for N x 3 colours, each distinct colour computed once per level."""
    packed = np.zeros((len(colours), 4), dtype=np.uint8)
    packed[:, :3] = colours
    keys = packed.view(np.uint32)[:, 0]
    memo = _colour_memo(p, channels)
    found = memo[keys]
    missing = _distinct(np.sort(keys[found == 0]))
    if missing.size:
        exact = _color_saturation_exact(missing.view(np.uint8).reshape(1, -1, 4)[..., :3], p, channels)[0]
        result = np.zeros((missing.size, 4), dtype=np.uint8)
        result[:, :3] = exact
        memo[missing] = result.view(np.uint32)[:, 0] | KNOWN
        found = memo[keys]
    return found.view(np.uint8).reshape(-1, 4)[:, :3]


def _color_saturation_exact(frame: np.ndarray, p: np.float32, channels: str) -> np.ndarray:
    y, cb, cr = _to_ycbcr(frame, channels)
    cb = F32(0.5) + (cb - F32(0.5)) * p
    cr = F32(0.5) + (cr - F32(0.5)) * p
    return _from_ycbcr(y, cb, cr, channels).astype(np.uint8)


def color_saturation(frame: np.ndarray, level: int, channels: str = "rgb") -> np.ndarray:
    """CS: scale Cb and Cr towards 0.5 by 0.4/0.3/0.2/0.1/0.0.

    Bit-exact and fast: the round trip is affine, so one float32 matrix product gives every value to within
    6.1e-5 of OpenCV's float result (checked on all 2**24 colours); truncation can only differ where a value
    lies within `NEAR_INTEGER` of an integer, and those pixels (distinct colours only) take the exact path."""
    p = F32(parameter("CS", level))
    frame, channels = _check_frame(frame), _channels(channels)
    matrix, offset = _affine(float(p), channels)
    out = np.empty(frame.shape, dtype=np.uint8)
    flat, row = out.reshape(-1), frame.shape[1] * 3
    near = []
    for r0, r1, values in _affine_rows(frame, matrix, offset + F32(NEAR_INTEGER)):  # v + eps: one truncation
        block = flat[r0 * row:r1 * row]
        block[...] = values  # == trunc(v) unless v is within eps of an integer: then frac(v + eps) < 2 eps
        np.subtract(values, block, out=values)
        close = np.flatnonzero(values < F32(2 * NEAR_INTEGER))
        if close.size:
            near.append(close // 3 + r0 * frame.shape[1])
    if near:
        pixels = _distinct(np.concatenate(near))
        out.reshape(-1, 3)[pixels] = _exact_colours(frame.reshape(-1, 3)[pixels], p, channels)
    return out


@lru_cache(maxsize=8)
def _contrast_multiplier(level: int) -> tuple[int, int]:
    """(m, s) with `(x * m) >> s` == the official `uint8(float32(x) * factor)` for every x in 0..255."""
    factor = F32(parameter("CC", level))
    table = (np.arange(256, dtype=F32) * factor).astype(np.uint8)
    x = np.arange(256, dtype=np.uint32)
    for shift in range(8, 24):
        base = int(float(factor) * (1 << shift))
        for m in (base, base + 1, base - 1, base + 2):
            if np.array_equal((x * m) >> shift, table):
                return m, shift
    raise AssertionError(f"no multiply-shift form for CC level {level}")


def color_contrast(frame: np.ndarray, level: int) -> np.ndarray:
    """CC: every value times 0.85/0.725/0.6/0.475/0.35, truncated (as an exact integer multiply-shift)."""
    m, shift = _contrast_multiplier(check_level(level))
    frame = _check_frame(frame)
    out = np.empty(frame.shape, dtype=np.uint8)
    rows = _block_rows(frame.shape[1], 4)  # the uint32 products of a block stay in cache
    product = np.empty((min(rows, frame.shape[0]), *frame.shape[1:]), dtype=np.uint32)
    for r0 in range(0, frame.shape[0], rows):
        block = product[:min(rows, frame.shape[0] - r0)]
        np.multiply(frame[r0:r0 + rows], np.uint32(m), out=block, dtype=np.uint32)
        block >>= shift
        out[r0:r0 + rows] = block
    return out


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
    (the official `np.random.randn` stream), float32 from a Generator (Box-Muller on 24-bit uniforms, so
    tails end at 5.8 sigma; several times faster than numpy's float32 normals here)."""
    if isinstance(rng, np.random.RandomState):
        return rng.randn(*shape)
    count = math.prod(shape)
    half = (count + 1) // 2
    radius = rng.random(half, dtype=F32)
    np.subtract(F32(1), radius, out=radius)  # (0, 1]
    np.log(radius, out=radius)
    radius *= F32(-2)
    np.sqrt(radius, out=radius)
    angle = rng.random(half, dtype=F32)
    angle *= F32(2 * math.pi)
    noise = np.empty(2 * half, dtype=F32)
    np.cos(angle, out=noise[:half])
    np.sin(angle, out=noise[half:])
    noise[:half] *= radius
    noise[half:] *= radius
    return noise[:count].reshape(shape)


@lru_cache(maxsize=16)
def _noise_matrix(level: int, channels: str) -> np.ndarray:
    """How unit noise in (Y, Cb, Cr) moves the output pixel (3 x 3, rows: Y, Cb, Cr), in exact arithmetic."""
    std = math.sqrt(parameter("GNC", level))
    y, cb, cr = 255 * 255 / 219 * std, 255 * 255 / 224 * std, 255 * 255 / 224 * std
    c = [float(F32(v)) for v in (1.403, -0.714, -0.344, 1.773)]
    rgb = np.array([[y, y, y], [0, c[2] * cb, c[3] * cb], [c[0] * cr, c[1] * cr, 0]])
    return (rgb if channels == "rgb" else rgb[:, ::-1]).astype(F32)


def gaussian_noise_color(frame: np.ndarray, level: int, rng: np.random.RandomState | np.random.Generator | None = None,
                         channels: str = "rgb", noise: np.ndarray | None = None) -> np.ndarray:
    """GNC: N(0, 0.001/0.002/0.005/0.01/0.05) added to Y, Cb and Cr (scaled to [0, 1]), back to RGB, clipped.

    The noise comes from `rng` (see `gnc_noise`) or is given as `noise` (H, W, 3), Y/Cb/Cr order. float64
    noise (the official stream) takes OpenCV's exact arithmetic; float32 noise the same affine map in float32
    (one matrix product: what differs is float rounding, far below the noise)."""
    frame, channels = _check_frame(frame), _channels(channels)
    if noise is None and rng is None:
        raise ValueError("gaussian_noise_color needs rng or noise")
    if noise is None and isinstance(rng, np.random.RandomState):
        noise = gnc_noise(rng, frame.shape)
    if noise is None or noise.dtype != np.float64:
        mix = _noise_matrix(check_level(level), channels)
        quad = np.kron(np.eye(4, dtype=F32), mix)
        out = np.empty(frame.shape, dtype=np.uint8)
        flat, row = out.reshape(-1), frame.shape[1] * 3
        for r0, r1, values in _affine_rows(frame, *_affine(1.0, channels)):
            n = len(values)  # a Generator's noise is drawn block by block, in order: deterministic per seed
            draws = gnc_noise(rng, (n,)) if noise is None else np.asarray(noise[r0:r1], dtype=F32).reshape(-1)
            width = 12 if n % 12 == 0 else 3
            values.reshape(-1, width)[...] += draws.reshape(-1, width) @ (quad if width == 12 else mix)
            np.clip(values, 0, 255, out=values)
            flat[r0 * row:r1 * row] = values
        return out
    std = math.sqrt(parameter("GNC", level))
    planes = [((p / F32(255)) + std * noise[..., i]) * 255 for i, p in enumerate(_to_ycbcr(frame, channels))]
    out = _from_ycbcr(*(p.astype(F32) for p in planes), channels)
    return np.clip(out, 0, 255).astype(np.uint8)


def gaussian_blur(frame: np.ndarray, level: int) -> np.ndarray:
    """GB: separable Gaussian, kernel 7/9/13/17/21 with sigma k/6, reflect-101 border, OpenCV's exact 8-bit
    fixed point (see `pixforge.forensics.resample`)."""
    return resample.gaussian_blur(_check_frame(frame), int(parameter("GB", level)))


def jpeg_compression(frame: np.ndarray, level: int) -> np.ndarray:
    """JPEG: bilinear down by 2/3/4/5/6 (`h // p`, `w // p`), then bilinear back up to the frame's size."""
    frame = _check_frame(frame)
    p = int(parameter("JPEG", level))
    h, w = frame.shape[:2]
    if h // p < 1 or w // p < 1:
        raise PixforgeError(f"a {w}x{h} frame is too small for JPEG level {level} (needs at least {p} px a side)")
    return resample.resize_linear(resample.resize_linear(frame, w // p, h // p), w, h)


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
