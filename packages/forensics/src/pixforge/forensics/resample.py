"""OpenCV's fixed-point Gaussian kernel, reflect-101 border and INTER_LINEAR taps, for the torch batch path
(`pixforge.forensics.batch`), which reproduces `cv2.GaussianBlur` and `cv2.resize` with them in integer-exact
float32 / int32 arithmetic."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

F32 = np.float32


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
