"""The One Euro filter (Casiez, Roussel, Vogel, CHI 2012), vectorised: landmark jitter off, fast motion kept.

Per coordinate, with Te the time since the previous sample:
    alpha(fc) = 1 / (1 + tau / Te),  tau = 1 / (2 pi fc)
    dx  = (x - x_hat_prev) / Te;       dx_hat = alpha(d_cutoff) dx + (1 - alpha(d_cutoff)) dx_hat_prev
    fc  = min_cutoff + beta |dx_hat|;   x_hat  = alpha(fc) x + (1 - alpha(fc)) x_hat_prev
The first sample passes through (dx_hat = 0). `min_cutoff` (Hz) sets the smoothing at rest (lower: steadier,
more lag), `beta` how fast the cutoff opens with speed (higher: less lag on fast motion), `d_cutoff` (Hz) the
smoothing of the speed estimate. Speeds are in landmark units (pixels) per second, so `beta` depends on the face
size: the defaults suit faces of ~100-300 px at video frame rates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def smoothing_factor(te: float | np.ndarray, cutoff: float | np.ndarray) -> float | np.ndarray:
    """alpha = 1 / (1 + tau / Te) with tau = 1 / (2 pi cutoff)."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / te)


class OneEuroFilter:
    """A One Euro filter over arrays of any fixed shape (e.g. one face's (68, 2) landmarks), elementwise."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f"One Euro needs min_cutoff, d_cutoff > 0 and beta >= 0: {min_cutoff}, {d_cutoff}, {beta}")
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next sample passes through unchanged."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """The filtered value of sample `x` taken at time `t` (seconds, increasing)."""
        x = np.asarray(x, np.float64)
        if self._x is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        te = t - self._t
        if te <= 0:
            raise ValueError(f"One Euro: sample times must increase, got {t} after {self._t}")
        a_d = smoothing_factor(te, self.d_cutoff)
        self._dx = a_d * (x - self._x) / te + (1 - a_d) * self._dx
        a = smoothing_factor(te, self.min_cutoff + self.beta * np.abs(self._dx))
        self._x = a * x + (1 - a) * self._x
        self._t = t
        return self._x.copy()


def smooth_sequence(values: np.ndarray, frames: Sequence[int], fps: float, min_cutoff: float = 1.0,
                    beta: float = 0.05, d_cutoff: float = 1.0) -> np.ndarray:
    """One track's (T, ...) values (landmarks, boxes) at frame indices `frames` filtered offline (float32);
    frames missing from a track simply make a longer Te."""
    values = np.asarray(values)
    if len(values) != len(frames):
        raise ValueError(f"smooth_sequence: {len(values)} values for {len(frames)} frames")
    one_euro = OneEuroFilter(min_cutoff, beta, d_cutoff)
    return np.stack([one_euro(v, f / fps) for v, f in zip(values, frames, strict=True)]).astype(np.float32)
