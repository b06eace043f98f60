"""The seven DeeperForensics-1.0 distortions at five levels, on uint8 frames (H x W x 3), one frame at a time.

Each function gives exactly the output of the official `perturbation/distortions.py` for the same frame and the
same random state (where bit-exactness holds: see the README); tests check this against reference outputs of
the official functions stored as fixtures. Frames are RGB by default (pixforge's convention); pass
`channels="bgr"` for OpenCV-ordered frames (only CS and GNC depend on the order: they go through YCbCr).
Facts of the method:

* CS (colour saturation): chroma of the official float YCbCr scaled towards 0.5 by the level's factor.
* CC (colour contrast): pixels multiplied by the factor (multiplicative, truncated).
* BW (local block-wise): `min(h, w) // 256 * param` grey (128) 8x8 blocks at random places: none below 256 px.
* GNC (white Gaussian noise in colour components): N(0, param) added to Y, Cb and Cr in [0, 1] units.
* GB (Gaussian blur): `cv2.GaussianBlur`, kernel `param` x `param`, sigma `param / 6`.
* JPEG: down-then-up `cv2.resize` (bilinear) by `param` (no JPEG codec).
* VC (video compression): a libx264 re-encode at CRF `param` (see `pixforge.forensics.video`).

Random distortions (BW, GNC) take a `Randomness`: `Randomness(seed, exact=True)` draws exactly what the
official script draws after `random.seed(seed); np.random.seed(seed)`; `exact=False` draws the GNC noise from
numpy's `Generator` and adds it in float32 (same distribution, different numbers, several times faster: what
videos use by default). Successive frames continue the streams.

Speed: where the official function is one OpenCV call (GB, JPEG) it is that call (OpenCV, the field's own
library, is exact by construction and as fast); CC is a table of the official products (`cv2.LUT`). CS and
GNC's fast mode are our own float32 matrix products (the YCbCr round trip is affine) on blocks of rows whose
temporaries stay in the CPU cache; CS stays bit-exact by redoing, in the official arithmetic, the few colours
whose value lies near an integer. GNC's exact mode is the official arithmetic on blocks of rows. With
`inplace=True` (what the video path uses) all but CS and GB write over the frame they are given (no new frame
to allocate), as the official BW does.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from pixforge.export.errors import PixforgeError

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
YCRCB_RANGE = np.array([219, 224, 224], dtype=F32)  # the official [16, 235] / [16, 240] ranges of Y, Cr, Cb


@lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread():
    """A context in which BLAS runs on one thread: the matrix products here are small, and OpenBLAS's
    spinning worker threads cost far more than they give on a busy machine or beside a video encoder."""
    return _blas_controller().limit(limits=1, user_api="blas")


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
        if self.exact:  # numpy's legacy seeding takes 32 bits: what np.random.seed(seed) does for 0 <= seed < 2**32
            self.numpy = np.random.RandomState(None if self.seed is None else self.seed % 2**32)
        else:
            self.numpy = np.random.default_rng(self.seed)


def _check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected a uint8 H x W x 3 frame, got {frame.dtype} {frame.shape}")
    return frame


SWAP_CHROMA = [0, 0, 1, 2, 2, 1]  # cv2.mixChannels: (Y, Cr, Cb) <-> (Y, Cb, Cr)


def _per_channel(x: np.ndarray, values: np.ndarray, op) -> None:
    """`op(x, values, out=x)` for a contiguous H x W x 3 float32 `x` and 3 `values`, along rows of 64 pixels
    (numpy is slow on a last axis of length 3)."""
    flat = x.reshape(-1)
    body = flat.size - flat.size % 192
    op(flat[:body].reshape(-1, 192), np.tile(values, 64), out=flat[:body].reshape(-1, 192))
    op(flat[body:].reshape(-1, 3), values, out=flat[body:].reshape(-1, 3))


def _to_ycrcb(bgr: np.ndarray) -> np.ndarray:
    """The official `bgr2ycbcr` on uint8 BGR rows (float32), kept in OpenCV's Y, Cr, Cb channel order: the
    official reorders to Y, Cb, Cr and back, but treats Cb and Cr alike, so the values are the same."""
    x = cv2.cvtColor(bgr.astype(F32), cv2.COLOR_BGR2YCrCb)
    _per_channel(x, YCRCB_RANGE, np.multiply)
    x += F32(16)
    x /= F32(255.0)
    return x


def _to_bgr(ycrcb: np.ndarray) -> np.ndarray:
    """The official `ycbcr2bgr` on float32 Y, Cr, Cb rows (overwritten): undo the rescaling, then OpenCV's
    float YCrCb -> BGR (float32 result)."""
    ycrcb *= F32(255.0)
    ycrcb -= F32(16)
    _per_channel(ycrcb, YCRCB_RANGE, np.divide)
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR)


def _as_bgr(frame: np.ndarray, channels: str) -> np.ndarray:
    return frame if channels == "bgr" else frame[..., ::-1]


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
    with one_blas_thread():
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


SIMD_SPAN = 64  # pixels: a multiple of every SIMD step of OpenCV's row loops (4, 8 or 16 float32 lanes)


def _exact_colours(colours: np.ndarray, p: np.float32, channels: str) -> np.ndarray:
    """CS in the official arithmetic for N x 3 colours, as OpenCV's vector loop computes them (the colours
    are padded to whole SIMD steps: a row's last few pixels take OpenCV's scalar loop, whose rounding may
    differ), each distinct colour computed once per level."""
    packed = np.zeros((len(colours), 4), dtype=np.uint8)
    packed[:, :3] = colours
    keys = packed.view(np.uint32)[:, 0]
    memo = _colour_memo(p, channels)
    found = memo[keys]
    missing = _distinct(np.sort(keys[found == 0]))
    if missing.size:
        padded = np.zeros((1, -(-missing.size // SIMD_SPAN) * SIMD_SPAN, 3), dtype=np.uint8)
        padded[0, :missing.size] = missing.view(np.uint8).reshape(-1, 4)[:, :3]
        result = np.zeros((missing.size, 4), dtype=np.uint8)
        result[:, :3] = color_saturation_official(padded, p, channels)[0, :missing.size]
        memo[missing] = result.view(np.uint32)[:, 0] | KNOWN
        found = memo[keys]
    return found.view(np.uint8).reshape(-1, 4)[:, :3]


def color_saturation_official(frame: np.ndarray, p: float, channels: str = "rgb") -> np.ndarray:
    """CS exactly as the official code computes it (OpenCV's float conversions), for the factor `p`."""
    x = _to_ycrcb(_as_bgr(frame, channels))
    chroma = x[..., 1:]
    chroma -= F32(0.5)
    chroma *= F32(p)
    chroma += F32(0.5)
    return np.ascontiguousarray(_as_bgr(_to_bgr(x).astype(np.uint8), channels))


def color_saturation(frame: np.ndarray, level: int, channels: str = "rgb") -> np.ndarray:
    """CS: scale Cb and Cr towards 0.5 by 0.4/0.3/0.2/0.1/0.0.

    Bit-exact and fast: the round trip is affine, so one float32 matrix product gives every value to within
    6.1e-5 of OpenCV's float result (checked on all 2**24 colours); truncation can only differ where a value
    lies within `NEAR_INTEGER` of an integer, and those pixels (distinct colours only) take the official
    arithmetic; near pixels among a row's last `width % SIMD_SPAN` (OpenCV's scalar loop) redo that stretch."""
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
        width = frame.shape[1]
        start = width - width % SIMD_SPAN  # a stretch aligned as in the frame's rows: same vector / scalar split
        for r in np.unique(pixels[pixels % width >= start] // width):
            out[r, start:] = color_saturation_official(frame[r:r + 1, start:], p, channels)[0]
    return out


@lru_cache(maxsize=8)
def _contrast_table(level: int) -> np.ndarray:
    """The official `uint8(float32(x) * factor)` for every x in 0..255."""
    return (np.arange(256, dtype=F32) * F32(parameter("CC", level))).astype(np.uint8)


def color_contrast(frame: np.ndarray, level: int, inplace: bool = False) -> np.ndarray:
    """CC: every value times 0.85/0.725/0.6/0.475/0.35, truncated: a 256-entry table of the official products
    (`cv2.LUT`); with `inplace` written over `frame`."""
    frame = _check_frame(frame)
    return cv2.LUT(frame, _contrast_table(check_level(level)), dst=frame if inplace else None)


def block_count(height: int, width: int, level: int) -> int:
    """How many 8x8 blocks BW draws on a frame: `min(h, w) // 256 * param` (0 below 256 px)."""
    return min(height, width) // 256 * parameter("BW", level)


def block_wise(frame: np.ndarray, level: int, rng: random.Random, inplace: bool = False) -> np.ndarray:
    """BW: grey (128) 8x8 blocks at uniform random places (`rng.randint`, x then y, as the official). With
    `inplace` the blocks are drawn on `frame` itself, as the official does; otherwise on a copy."""
    out = _check_frame(frame) if inplace else _check_frame(frame).copy()
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
                         channels: str = "rgb", noise: np.ndarray | None = None, inplace: bool = False) -> np.ndarray:
    """GNC: N(0, 0.001/0.002/0.005/0.01/0.05) added to Y, Cb and Cr (scaled to [0, 1]), back to RGB, clipped.

    The noise comes from `rng` (see `gnc_noise`) or is given as `noise` (H, W, 3), Y/Cb/Cr order. A RandomState
    or float64 noise (the official stream) takes the official arithmetic (`_noise_official`); a Generator or
    float32 noise the same affine map in float32 (one matrix product: what differs is float rounding, far below
    the noise). Both work on blocks of rows and draw the noise block by block, in order; a block is read before
    it is written, so with `inplace` the result overwrites `frame`."""
    frame, channels = _check_frame(frame), _channels(channels)
    if noise is None and rng is None:
        raise ValueError("gaussian_noise_color needs rng or noise")
    out = frame if inplace else np.empty(frame.shape, dtype=np.uint8)
    if isinstance(rng, np.random.RandomState) if noise is None else noise.dtype == np.float64:
        return _noise_official(frame, level, rng, channels, noise, out)
    mix = _noise_matrix(check_level(level), channels)
    quad = np.kron(np.eye(4, dtype=F32), mix)
    flat, row = out.reshape(-1), frame.shape[1] * 3
    for r0, r1, values in _affine_rows(frame, *_affine(1.0, channels)):
        n = len(values)
        draws = gnc_noise(rng, (n,)) if noise is None else np.asarray(noise[r0:r1], dtype=F32).reshape(-1)
        width = 12 if n % 12 == 0 else 3
        values.reshape(-1, width)[...] += draws.reshape(-1, width) @ (quad if width == 12 else mix)
        np.clip(values, 0, 255, out=values)
        flat[r0 * row:r1 * row] = values
    return out


def _noise_official(frame: np.ndarray, level: int, rng: np.random.RandomState | None, channels: str,
                    noise: np.ndarray | None, out: np.ndarray) -> np.ndarray:
    """The official GNC arithmetic, operation for operation (OpenCV's float conversions, float64 noise), on
    blocks of rows: the same values as on the whole frame (OpenCV converts row by row, numpy's legacy normals
    are one stream however they are split), with the temporaries in the CPU cache."""
    std = math.sqrt(parameter("GNC", level))
    h, w, _ = frame.shape
    rows = _block_rows(w)
    bgr, swapped = np.empty((min(h, rows), w, 3), dtype=np.uint8), np.empty((min(h, rows), w, 3), dtype=F32)
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        src = frame[r0:r1] if channels == "bgr" else cv2.cvtColor(frame[r0:r1], cv2.COLOR_RGB2BGR, dst=bgr[:r1 - r0])
        x = _to_ycrcb(src)
        x /= F32(255)
        ycbcr = cv2.mixChannels([x], [swapped[:r1 - r0]], SWAP_CHROMA)[0]  # the noise is drawn in Y, Cb, Cr order
        noisy = rng.randn(r1 - r0, w, 3) if noise is None else noise[r0:r1].copy()
        noisy *= std
        noisy += ycbcr
        noisy *= 255
        x = cv2.mixChannels([noisy.astype(F32)], [x], SWAP_CHROMA)[0]
        result = _to_bgr(x)
        np.clip(result, 0, 255, out=result)
        if channels == "bgr":
            out[r0:r1] = result
        else:
            cv2.cvtColor(result.astype(np.uint8), cv2.COLOR_BGR2RGB, dst=out[r0:r1])
    return out


def gaussian_blur(frame: np.ndarray, level: int) -> np.ndarray:
    """GB: `cv2.GaussianBlur` with kernel 7/9/13/17/21 and sigma k/6, as the official calls it (a new frame:
    OpenCV copies the source of an in-place blur first)."""
    p = int(parameter("GB", level))
    return cv2.GaussianBlur(_check_frame(frame), (p, p), p * 1.0 / 6)


def jpeg_compression(frame: np.ndarray, level: int, inplace: bool = False) -> np.ndarray:
    """JPEG: `cv2.resize` (bilinear) down by 2/3/4/5/6 (`h // p`, `w // p`), then back up to the frame's size;
    with `inplace` written over `frame`."""
    frame = _check_frame(frame)
    p = int(parameter("JPEG", level))
    h, w = frame.shape[:2]
    if h // p < 1 or w // p < 1:
        raise PixforgeError(f"a {w}x{h} frame is too small for JPEG level {level} (needs at least {p} px a side)")
    return cv2.resize(cv2.resize(frame, (w // p, h // p)), (w, h), dst=frame if inplace else None)


def distort(frame: np.ndarray, kind: str, level: int, randomness: Randomness | None = None,
            channels: str = "rgb", inplace: bool = False) -> np.ndarray:
    """Apply one frame distortion (any type but VC, which is an encoder setting) at `level`. With `inplace`
    the result may be written over `frame` (all but CS and GB do so); use the returned frame."""
    kind = check_type(kind)
    level = check_level(level)
    if kind == "VC":
        raise ValueError("VC is a video re-encode, not a frame distortion: use pixforge.forensics.video")
    if kind in ("BW", "GNC") and randomness is None:
        raise ValueError(f"{kind} is random: pass a Randomness")
    if kind == "CS":
        return color_saturation(frame, level, channels)
    if kind == "CC":
        return color_contrast(frame, level, inplace)
    if kind == "BW":
        return block_wise(frame, level, randomness.python, inplace)
    if kind == "GNC":
        return gaussian_noise_color(frame, level, randomness.numpy, channels, inplace=inplace)
    if kind == "GB":
        return gaussian_blur(frame, level)
    return jpeg_compression(frame, level, inplace)
