"""OpenCV's 8-bit `GaussianBlur` and `resize(INTER_LINEAR)`, bit for bit, in numpy (no OpenCV, no torch).

Both are fixed-point in OpenCV, so exact integer arithmetic reproduces them; the work is arranged so that numpy
spends its time in a few large operations on cache-sized blocks of rows:

* Blur: OpenCV's kernel (8 fractional bits, error diffusion) applied separably with reflect-101 borders; the
  result is `(sum_j k_j sum_i k_i x + 2**15) >> 16`. The horizontal sums (at most 255 * 256) are exact in
  uint16 on the interleaved frame; the vertical pass is a float32 matrix product with a banded kernel matrix
  (borders folded in) scaled by 2**-16: every partial sum is an integer times 2**-16 below 2**8, which float32
  holds exactly, so adding 0.5 and truncating gives OpenCV's rounding.
* Resize: OpenCV's 11-bit taps, horizontal sums `>> 4`, then its SIMD vertical rounding
  `((h0 * b0) >> 16) + ((h1 * b1) >> 16) + 2 >> 2` in int32, block by block; exact 2x shrinks take OpenCV's
  INTER_AREA branch (mean of each 2 x 2 cell).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

F32 = np.float32
BLOCK = 32  # output rows per block: a block's temporaries stay in the CPU's L2 cache at 1080p


@lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread():
    """A context in which BLAS runs on one thread: the matrix products here are small, and OpenBLAS's
    spinning worker threads cost far more than they give on a busy machine or beside a video encoder."""
    return _blas_controller().limit(limits=1, user_api="blas")


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


@lru_cache(maxsize=32)
def _vertical_blocks(height: int, size: int) -> tuple[tuple[int, int, int, int, np.ndarray], ...]:
    """Per block of output rows [t0, t1): the input rows [w0, w1) it reads and its banded kernel matrix
    (t1 - t0) x (w1 - w0), reflect-101 folded in, scaled by 2**-16 (exact: powers of two)."""
    kernel = gaussian_kernel(size).astype(F32) * F32(2.0 ** -16)
    r = size // 2
    blocks = []
    for t0 in range(0, height, BLOCK):
        t1 = min(height, t0 + BLOCK)
        src = reflect101(np.arange(t0, t1)[:, None] + np.arange(-r, r + 1)[None, :], height)
        w0, w1 = int(src.min()), int(src.max()) + 1
        matrix = np.zeros((t1 - t0, w1 - w0), dtype=F32)
        for row, taps in enumerate(src):
            np.add.at(matrix[row], taps - w0, kernel)
        blocks.append((t0, t1, w0, w1, matrix))
    return tuple(blocks)


def gaussian_blur(frame: np.ndarray, size: int) -> np.ndarray:
    """`cv2.GaussianBlur(frame, (size, size), size / 6)` on a uint8 H x W x C frame (reflect-101 border)."""
    h, w, c = frame.shape
    kernel = gaussian_kernel(size).astype(np.uint16)
    r = size // 2
    n = w * c
    left, right = reflect101(np.arange(-r, 0), w), reflect101(np.arange(w, w + r), w)
    out = np.empty((h, n), dtype=np.uint8)
    with one_blas_thread():
        for block in _vertical_blocks(h, size):
            _blur_block(frame, block, kernel, left, right, out)
    return out.reshape(h, w, c)


def _blur_block(frame: np.ndarray, block: tuple, kernel: np.ndarray, left: np.ndarray, right: np.ndarray,
                out: np.ndarray) -> None:
    """Output rows [t0, t1) of the blur: horizontal sums of the rows they read, then the banded product."""
    t0, t1, w0, w1, matrix = block
    _, w, c = frame.shape
    size = len(kernel)
    r, n = size // 2, w * c
    rows = frame[w0:w1]
    padded = np.empty((w1 - w0, w + 2 * r, c), dtype=np.uint16)
    padded[:, r:r + w] = rows
    padded[:, :r] = rows[:, left]
    padded[:, r + w:] = rows[:, right]
    padded = padded.reshape(w1 - w0, -1)
    acc = padded[:, r * c:r * c + n] * kernel[r]  # symmetric kernel: pair the taps, then scale
    pair = np.empty_like(acc)
    for i in range(r):
        j = size - 1 - i
        np.add(padded[:, i * c:i * c + n], padded[:, j * c:j * c + n], out=pair)
        pair *= kernel[i]
        acc += pair
    total = matrix @ acc.astype(F32)
    total += F32(0.5)
    out[t0:t1] = total  # truncation == (sum + 2**15) >> 16


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


@lru_cache(maxsize=32)
def _horizontal_taps(dst: int, src: int) -> tuple[np.ndarray, ...]:
    """Clamped source columns and weights; outside the image all the weight goes to the edge pixel."""
    first, a0, a1 = resize_weights(dst, src)
    edge = (first < 0) | (first >= src - 1)
    x0 = np.clip(first, 0, src - 1)
    return x0, np.minimum(x0 + 1, src - 1), np.where(edge, 2048, a0)[:, None], np.where(edge, 0, a1)[:, None]


@lru_cache(maxsize=32)
def _vertical_taps(dst: int, src: int) -> tuple[np.ndarray, ...]:
    """The source rows read (sorted, unique), each output row's two positions among them, and the weights."""
    first, b0, b1 = resize_weights(dst, src)
    y0, y1 = np.clip(first, 0, src - 1), np.clip(first + 1, 0, src - 1)
    rows = np.unique(np.concatenate([y0, y1]))
    return rows, np.searchsorted(rows, y0), np.searchsorted(rows, y1), b0[:, None, None], b1[:, None, None]


def resize_linear(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """`cv2.resize(frame, (width, height))` (INTER_LINEAR) bit for bit on uint8 H x W x C frames."""
    h, w, c = frame.shape
    if w == 2 * width and h == 2 * height:  # OpenCV switches to INTER_AREA: the mean of each 2x2 cell
        x = frame.astype(np.uint16)
        x = x[0::2, 0::2] + x[0::2, 1::2] + x[1::2, 0::2] + x[1::2, 1::2] + 2
        return (x >> 2).astype(np.uint8)
    x0, x1, a0, a1 = _horizontal_taps(width, w)
    rows, y0, y1, b0, b1 = _vertical_taps(height, h)
    # horizontal pass (exact integers, >> 4) on the source rows the vertical pass reads
    src = frame if len(rows) == h else np.take(frame, rows, axis=0)
    horiz = np.take(src, x0, axis=1).astype(np.int32)
    horiz *= a0
    horiz += np.take(src, x1, axis=1) * a1
    horiz >>= 4
    # vertical pass, OpenCV's SIMD rounding: each product keeps its top 16 bits, then (sum + 2) >> 2 (<= 255)
    out = np.empty((height, width, c), dtype=np.uint8)
    for t0 in range(0, height, BLOCK):
        t1 = min(height, t0 + BLOCK)
        top = np.take(horiz, y0[t0:t1], axis=0)
        top *= b0[t0:t1]
        top >>= 16
        bottom = np.take(horiz, y1[t0:t1], axis=0)
        bottom *= b1[t0:t1]
        bottom >>= 16
        top += bottom
        top += 2
        top >>= 2
        out[t0:t1] = top
    return out
