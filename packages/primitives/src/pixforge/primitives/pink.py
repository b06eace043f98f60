"""PinkNoise (paper §3.1, official `generate_pink_noise` / `generate_rgb_noise` / `renormalize`).

Per colour channel: white Gaussian noise, its FFT weighted by `w = 1 / (|f_row|^a + eps + |f_col|^b + eps)`,
inverse FFT (real part). The official frequencies are `|fftfreq(S, d=0.2)|` (both axes use the row count) with
the DC term replaced by a tenth of the first frequency, eps = 1e-6, and `a`, `b` drawn independently from
U(0.5, 3.5) for every channel (the paper writes one exponent for both axes: `paper_exponents=True`).
The three channels are then min-max scaled together to 0..255 and truncated to uint8.

Noise and exponents are drawn on the CPU from the per-image generator; the filtering runs batched in torch
on any device (rfft2: the weight is even, so the result is the real part of the full inverse FFT).
"""

from __future__ import annotations

import numpy as np
import torch

EXPONENT_RANGE = (0.5, 3.5)
FREQ_SPACING = 0.2  # official `np.fft.fftfreq(n, d=0.2)`
EPS = 1e-6


def draw(rng: np.random.Generator, size: int, paper_exponents: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """White noise (3 x S x S float32) and exponents (3 x 2: row, column) of one PinkNoise image."""
    noise = rng.standard_normal((3, size, size), dtype=np.float32)
    lo, hi = EXPONENT_RANGE
    exps = rng.uniform(lo, hi, size=(3, 1 if paper_exponents else 2))
    return noise, np.repeat(exps, 2, axis=1) if paper_exponents else exps


def frequencies(size: int, device: torch.device) -> torch.Tensor:
    freq = torch.from_numpy(np.abs(np.fft.fftfreq(size, d=FREQ_SPACING)))
    freq[0] = freq[1] * 0.1
    return freq.to(device)


def filter_noise(noise: torch.Tensor, exps: torch.Tensor) -> torch.Tensor:
    """N x 3 x S x S white noise, N x 3 x 2 exponents -> N x 3 x S x S pink noise (float32)."""
    size = noise.shape[-1]
    freq = frequencies(size, noise.device)
    a = exps[..., 0, None, None].to(torch.float64)
    b = exps[..., 1, None, None].to(torch.float64)
    rows = freq[:, None].pow(a) + EPS                      # N x 3 x S x 1
    cols = freq[None, : size // 2 + 1].pow(b) + EPS        # N x 3 x 1 x (S/2+1)
    weight = (1.0 / (rows + cols)).to(torch.float32)
    spectrum = torch.fft.rfft2(noise.to(torch.float32))
    return torch.fft.irfft2(spectrum * weight, s=(size, size))


def renormalize(images: torch.Tensor) -> np.ndarray:
    """Official `renormalize`: each image min-max scaled over all channels, x255, truncated -> uint8 N x S x S x 3.
    The scaled values lie in [0, 255] by construction, so the cast truncates as the official `astype` does; on
    the CPU NumPy does it (a few times faster than torch's single-thread kernels here), elsewhere torch."""
    if images.device.type == "cpu":
        x = images.numpy()
        flat = x.reshape(len(x), -1)
        lo, hi = flat.min(axis=1)[:, None, None, None], flat.max(axis=1)[:, None, None, None]
        scaled = (x - lo) / np.maximum(hi - lo, np.float32(1e-12)) * np.float32(255.0)
        return np.ascontiguousarray(scaled.astype(np.uint8).transpose(0, 2, 3, 1))
    lo, hi = (v[:, None, None, None] for v in images.flatten(1).aminmax(dim=1))
    scaled = (images - lo) / (hi - lo).clamp_min(1e-12) * 255.0
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def pink_noise(noises: list[np.ndarray], exps: list[np.ndarray], device: torch.device) -> np.ndarray:
    """PinkNoise images (uint8 N x S x S x 3) from drawn noise and exponents."""
    noise = torch.from_numpy(np.stack(noises)).to(device)
    exp = torch.from_numpy(np.stack(exps)).to(device)
    return renormalize(filter_noise(noise, exp))
