"""Statistical image models (paper §3.3; official `statistical/matlab/image_model.m`, which made the published
datasets, and its python port `statistical/generate_datasets.py`).

An image starts as uniform noise `256 U(0, 1)` in a decorrelated colour space and is pushed `iterations` (10)
times through the enabled constraints, in this order: the power spectrum (keep the phase, impose the sampled
magnitude, restore mean and std), the wavelet-marginal model (steerable pyramid bands normalised, histogram-
matched to generalised-normal marginals, normalised again), the colour histograms. The result is rotated back
to RGB with the sampled colour basis and min-max scaled to 0..255.

Sampled parameters, per image:
* spectrum: `1 / (|fx/S|^sx + |fy/S|^sy)` with `s ~ U(0.5, 3.5)`, `d ~ N(0, 1) * 3 / 60`, `sx = s + d`,
  `sy = s - d`, the same for all three channels (official); `paper_spectrum=True`: `sx, sy ~ U(0.5, 3.5)`
  independently for every channel (paper: "a and b ... uniformly sampled in [0.5, 3.5]").
* colour: a reference image of `3 + floor(U(0, 20))` flat colours with proportions `0.001 + U(0, 1)`, box-
  blurred (`ceil(10 U)` pixels, zero borders), plus `10 U` per-pixel noise; its colour PCA gives the basis and
  its per-channel 256-bin histograms the targets.
* WMM: per channel and band, `p(c) ~ exp(-|c / alpha|^beta)` on -200:0.5:200 with `alpha = 4^(S / band size)`
  and `beta = 0.4 + 0.4 U`, 4 orientations, `log2(S) - 4` scales (3 at 128 px, 4 at 256 px as the code).
Histogram matching follows matlabPyrTools' `histoMatch` (piecewise-linear map between the cumulative
histograms, as many source bins as target bins). Batched in torch on any device.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from pixforge.spectra import pyramid

SLOPE_RANGE = (0.5, 3.5)
WMM_BINS = np.arange(-200.0, 200.25, 0.5)  # official `x = -200:0.5:200`
ORIENTATIONS = 4


def wmm_scales(size: int) -> int:
    return max(1, int(math.log2(size)) - 4)


def sample_spectrum(rng: np.random.Generator, size: int, paper: bool = False) -> np.ndarray:
    """Magnitude (3 x S x S, unshifted FFT layout, zero at DC) and the slopes (3 x 2) it was made with."""
    lo, hi = SLOPE_RANGE
    if paper:
        slopes = rng.uniform(lo, hi, size=(3, 2))
    else:
        s = rng.uniform(lo, hi)
        d = rng.standard_normal() * abs(hi - lo) / 15 / 4
        slopes = np.tile([s + d, s - d], (3, 1))
    f = np.fft.fftshift(np.abs(np.arange(size) - size / 2) / size)  # official: |k - S/2| / S, fftshift-ed
    mags = []
    for sx, sy in slopes:
        fr = 1e-16 + f[None, :] ** sx + f[:, None] ** sy
        mag = 1.0 / fr
        mag[0, 0] = 0.0
        mags.append(mag)
    return np.stack(mags).astype(np.float32), slopes


def sample_color_model(rng: np.random.Generator, size: int) -> dict:
    """Colour basis (3 x 3, columns = principal directions, largest first), mean colour and the 256-bin
    histograms (counts, centres) of the reference image's decorrelated channels."""
    n = int(3 + np.floor(rng.uniform(0, 20)))
    colors = rng.uniform(0, 1, (n, 3))
    p = 0.001 + rng.uniform(0, 1, n)
    counts = rng.multinomial(size * size, p / p.sum())
    index = np.repeat(np.arange(n), counts).reshape(size, size).T  # sorted labels, column-major as MATLAB
    ref = torch.from_numpy(256.0 * colors[index]).permute(2, 0, 1)[None]  # 1 x 3 x S x S
    m = int(np.ceil(rng.uniform(0, 10)))
    if m > 1:  # MATLAB convn(..., 'same'): zero padding, the centre of an even kernel after its middle
        ref = F.conv2d(F.pad(ref, ((m - 1) // 2, m // 2, (m - 1) // 2, m // 2)),
                       torch.full((3, 1, m, m), 1.0 / (m * m), dtype=ref.dtype), groups=3)
    ref = ref[0].numpy() + 10.0 * rng.uniform(0, 1, (3, size, size))
    ref = ref - ref.min()
    ref = 256.0 * ref / ref.max()
    mean = ref.reshape(3, -1).mean(axis=1)
    centred = ref.reshape(3, -1) - mean[:, None]
    _, vectors = np.linalg.eigh(centred @ centred.T)
    basis = vectors[:, ::-1].copy()  # largest variance first, as MATLAB's eigs
    decor = basis.T @ centred
    hists, centres = [], []
    for c in range(3):
        h, edges = np.histogram(decor[c], bins=256)
        hists.append(h.astype(np.float64))
        centres.append((edges[1:] + edges[:-1]) / 2)
    return {"basis": basis, "mean": mean, "hist": np.stack(hists), "centres": np.stack(centres)}


def sample_wmm(rng: np.random.Generator, size: int) -> dict:
    """Target marginals of every band but the low-pass residual: (bands x 3) histograms on WMM_BINS, mean, std."""
    scales = wmm_scales(size)
    band_sizes = [size] + [size >> s for s in range(scales) for _ in range(ORIENTATIONS)]
    hists, means, stds = [], [], []
    for _ in range(3):  # official loop order: channel, then band
        for band in band_sizes:
            alpha = 4.0 ** (size / band)
            beta = 0.4 + 0.4 * rng.uniform(0, 1)
            h = np.exp(-np.abs(WMM_BINS / alpha) ** beta)
            mean = np.sum(WMM_BINS * h) / np.sum(h)
            hists.append(h)
            means.append(mean)
            stds.append(np.sqrt(np.sum((WMM_BINS - mean) ** 2 * h) / np.sum(h)))
    shape = (3, len(band_sizes))
    return {"hist": np.stack(hists).reshape(*shape, -1).transpose(1, 0, 2),
            "mean": np.array(means).reshape(shape).T, "std": np.array(stds).reshape(shape).T}


def histo_match(x: torch.Tensor, hist: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """matlabPyrTools `histoMatch`, batched: x ... x H x W; hist, centres ... x B (equal-width bins)."""
    shape = x.shape
    flat = x.reshape(-1, shape[-2] * shape[-1])
    hist = hist.reshape(-1, hist.shape[-1]).to(flat.dtype)
    centres = centres.reshape(-1, centres.shape[-1]).to(flat.dtype)
    rows, nbins = hist.shape
    lo, hi = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    step = ((hi - lo) / nbins).clamp_min(1e-12)
    pos = (flat - lo) / step
    idx = pos.floor().clamp(0, nbins - 1).long()
    counts = torch.zeros(rows, nbins, dtype=flat.dtype, device=flat.device).scatter_add_(1, idx, torch.ones_like(flat))
    zero = torch.zeros(rows, 1, dtype=flat.dtype, device=flat.device)
    source_cdf = torch.cat([zero, counts.cumsum(1)], 1) / flat.shape[1]
    hist = hist + hist.mean(dim=1, keepdim=True) / 1e8  # no empty target bins: a strictly increasing CDF
    target_cdf = torch.cat([zero, hist.cumsum(1)], 1) / hist.sum(dim=1, keepdim=True)
    tstep = centres[:, 1:2] - centres[:, 0:1]
    target_edges = torch.cat([centres[:, :1] - tstep / 2, centres + tstep / 2], 1)
    mapped = _interp(source_cdf, target_cdf, target_edges)  # where each source bin edge goes
    frac = (pos - idx).clamp(0, 1)
    left, right = mapped.gather(1, idx), mapped.gather(1, idx + 1)
    return (left + frac * (right - left)).reshape(shape)


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """np.interp row by row (xp increasing)."""
    i = torch.searchsorted(xp.contiguous(), x.contiguous()).clamp(1, xp.shape[1] - 1)
    x0, x1, f0, f1 = xp.gather(1, i - 1), xp.gather(1, i), fp.gather(1, i - 1), fp.gather(1, i)
    t = ((x - x0) / (x1 - x0).clamp_min(1e-30)).clamp(0, 1)
    return f0 + t * (f1 - f0)


def _normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    m = x.mean(dim=(-2, -1), keepdim=True)
    s = x.std(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return (x - m) / s * std[..., None, None] + mean[..., None, None]


def impose_spectrum(x: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    m = x.mean(dim=(-2, -1), keepdim=True)
    s = x.std(dim=(-2, -1), keepdim=True)
    phase = torch.angle(torch.fft.fft2(x - m))
    y = torch.fft.ifft2(torch.polar(magnitude, phase)).real
    return _normalise(y, m[..., 0, 0], s[..., 0, 0])


def impose_wmm(x: torch.Tensor, wmm: dict, scales: int) -> torch.Tensor:
    bands = pyramid.build(x, scales, ORIENTATIONS)
    bins = torch.from_numpy(WMM_BINS).to(x.device)
    for b in range(len(bands) - 1):  # every band but the low-pass residual
        mean, std = wmm["mean"][:, b], wmm["std"][:, b]  # N x 3
        y = _normalise(bands[b], mean, std)
        y = histo_match(y, wmm["hist"][:, b], bins.expand(*wmm["hist"].shape[:1], 3, -1))
        bands[b] = _normalise(y, mean, std)
    return pyramid.reconstruct(bands, scales, ORIENTATIONS)


def synthesize(start: torch.Tensor, *, magnitude: torch.Tensor | None, wmm: dict | None, color: dict | None,
               basis: torch.Tensor | None, mean: torch.Tensor | None, iterations: int = 10) -> torch.Tensor:
    """Run the constraints on N x 3 x S x S start images -> uint8 N x S x S x 3."""
    x = start
    scales = wmm_scales(x.shape[-1])
    for _ in range(iterations):
        if magnitude is not None:
            x = impose_spectrum(x, magnitude)
        if wmm is not None:
            x = impose_wmm(x, wmm, scales).to(x.dtype)
        if color is not None:
            x = histo_match(x, color["hist"], color["centres"])
    if basis is not None:  # back to RGB: out = basis @ decorrelated + mean
        x = torch.einsum("nij,njhw->nihw", basis.to(x.dtype), x) + mean.to(x.dtype)[..., None, None]
    flat = x.flatten(1)
    lo = flat.min(dim=1).values[:, None, None, None]
    hi = flat.max(dim=1).values[:, None, None, None]
    return ((x - lo) / (hi - lo).clamp_min(1e-12) * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
