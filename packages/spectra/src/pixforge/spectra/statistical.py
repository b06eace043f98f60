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
    ref = 256.0 * colors.T[:, index]  # 3 x S x S
    m = int(np.ceil(rng.uniform(0, 10)))
    if m > 1:
        ref = _box_blur(ref, m)
    ref = ref + 10.0 * rng.uniform(0, 1, (3, size, size))
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


def _box_blur(ref: np.ndarray, m: int) -> np.ndarray:
    """MATLAB `convn(ref, ones(m) / m^2, 'same')` per channel (zero borders; the centre of an even kernel after
    its middle) as two running-sum differences: C x S x S -> C x S x S."""
    before, after = (m - 1) // 2, m // 2
    c = np.pad(ref, ((0, 0), (before + 1, after), (0, 0))).cumsum(axis=1)
    ref = (c[:, m:] - c[:, :-m]) / m
    c = np.pad(ref, ((0, 0), (0, 0), (before + 1, after))).cumsum(axis=2)
    return (c[:, :, m:] - c[:, :, :-m]) / m


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


def histogram_target(hist: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """... x B histograms on equal-width bins (their centres) -> the CDF at the B + 1 bin edges and the edges."""
    hist = hist.to(centres.dtype)
    hist = hist + hist.mean(dim=-1, keepdim=True) / 1e8  # no empty target bins: a strictly increasing CDF
    zero = torch.zeros_like(hist[..., :1])
    cdf = torch.cat([zero, hist.cumsum(-1)], -1) / hist.sum(dim=-1, keepdim=True)
    step = centres[..., 1:2] - centres[..., 0:1]
    return cdf, torch.cat([centres[..., :1] - step / 2, centres + step / 2], -1)


def histo_match(x: torch.Tensor, cdf: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """matlabPyrTools `histoMatch`, batched: x ... x H x W, the target (`histogram_target`) ... x (B + 1), as many
    source bins as target bins. Invariant to a positive affine map of x (the source bins span x's range)."""
    shape = x.shape
    flat = x.reshape(-1, shape[-2] * shape[-1])
    cdf = cdf.to(flat.dtype).expand(*shape[:-2], -1).reshape(flat.shape[0], -1)
    edges = edges.to(flat.dtype).expand(*shape[:-2], -1).reshape(flat.shape[0], -1)
    rows, nbins = flat.shape[0], cdf.shape[1] - 1
    lo, hi = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
    pos = (flat - lo).div_(((hi - lo) / nbins).clamp_min(1e-12))  # 0..nbins
    idx = pos.long()  # the source bin; nbins only at the maximum
    counts = torch.zeros(rows, nbins + 1, dtype=flat.dtype, device=flat.device)
    counts.scatter_add_(1, idx, torch.ones_like(flat))
    counts[:, -2] += counts[:, -1]  # the maximum belongs to the last bin
    counts[:, -1] = 0
    source_cdf = counts.roll(1, 1).cumsum_(1) / flat.shape[1]  # at the source bin edges
    mapped = _interp(source_cdf, cdf, edges)  # where each source bin edge goes
    slope = torch.cat([mapped.diff(dim=1), torch.zeros_like(lo)], 1)  # per unit of pos; 0 past the last edge
    return mapped.gather(1, idx).addcmul_(pos.frac_(), slope.gather(1, idx)).reshape(shape)


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """np.interp row by row (xp increasing)."""
    i = torch.searchsorted(xp.contiguous(), x.contiguous()).clamp(1, xp.shape[1] - 1)
    x0, x1, f0, f1 = xp.gather(1, i - 1), xp.gather(1, i), fp.gather(1, i - 1), fp.gather(1, i)
    t = ((x - x0) / (x1 - x0).clamp_min(1e-30)).clamp(0, 1)
    return f0 + t * (f1 - f0)


def _normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Shift and scale every ... x H x W image to `mean` and `std` (sample std, n - 1)."""
    m = x.mean(dim=(-2, -1), keepdim=True)
    d = x - m
    var = (d * d).sum(dim=(-2, -1), keepdim=True) / max(1, x.shape[-2] * x.shape[-1] - 1)
    scale = std[..., None, None] / var.sqrt_().clamp_min_(1e-12)
    return torch.addcmul(mean[..., None, None], d, scale)


def unit_spectrum(magnitude: torch.Tensor) -> torch.Tensor:
    """... x S x S magnitude (unshifted, Hermitian-symmetric, zero at DC) -> its rfft2 half, scaled so that the image
    it makes with any phase has unit std (Parseval: sum of squares = sum |Y|^2 / S^2)."""
    size = magnitude.shape[-1]
    std = magnitude.square().sum(dim=(-2, -1), keepdim=True).sqrt_() / (size * size)
    return (magnitude[..., : size // 2 + 1] / std).contiguous()


def impose_spectrum(x: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """Keep x's phase and its mean and std, impose the magnitude (`unit_spectrum`), all in the rfft2 domain: the
    phase of x - mean is x's phase away from DC, and the std of the result is known from its spectrum."""
    size = x.shape[-1]
    f = torch.fft.rfft2(x)
    power = torch.addcmul(torch.full((), 1e-30, dtype=x.dtype, device=x.device), f.real, f.real)
    power.addcmul_(f.imag, f.imag)
    mean = f.real[..., :1, :1] / (size * size)
    power[..., :1, :1] = 0.0  # DC: not part of the variance
    full = 2 * power.sum(dim=(-2, -1), keepdim=True) - power[..., 0].sum(-1)[..., None, None]
    if size % 2 == 0:
        full = full - power[..., -1].sum(-1)[..., None, None]  # the Nyquist column is not mirrored
    std = full.sqrt_() / (size * size)
    power[..., :1, :1] = 1.0  # the magnitude is 0 at DC
    ratio = power.rsqrt_().mul_(unit).mul_(std)
    g = f * ratio
    g[..., :1, :1] = mean * (size * size)
    return torch.fft.irfft2(g, s=(size, size))


def wmm_targets(wmm: dict, scales: int) -> list[tuple]:
    """Per pyramid group (the high-pass band, then the orientations of each scale): histogram target, mean, std,
    shaped as `pyramid.decompose` lays the bands out (N x 3 and N x 3 x orientations)."""
    hist, mean, std = wmm["hist"], wmm["mean"], wmm["std"]  # N x bands x 3 (x bins)
    cdf, edges = histogram_target(hist, torch.from_numpy(WMM_BINS).to(hist).expand_as(hist))
    groups = [(cdf[:, 0], edges[:, 0], mean[:, 0], std[:, 0])]
    for level in range(scales):
        band = slice(1 + level * ORIENTATIONS, 1 + (level + 1) * ORIENTATIONS)
        groups.append(tuple(t[:, band].transpose(1, 2) for t in (cdf, edges, mean, std)))
    return groups


def impose_wmm(x: torch.Tensor, targets: list[tuple]) -> torch.Tensor:
    """Steerable-pyramid bands (all but the low-pass residual) histogram-matched, then normalised. The official
    normalisation before the matching is skipped: histogram matching ignores a positive affine map."""
    high, levels, low = pyramid.decompose(x, len(targets) - 1, ORIENTATIONS)
    bands = [high, *levels]
    for k, (cdf, edges, mean, std) in enumerate(targets):
        bands[k] = _normalise(histo_match(bands[k], cdf, edges), mean, std)
    return pyramid.compose(bands[0], bands[1:], low).to(x.dtype)


def synthesize(start: torch.Tensor, *, magnitude: torch.Tensor | None, wmm: dict | None, color: dict | None,
               basis: torch.Tensor | None, mean: torch.Tensor | None, iterations: int = 10) -> torch.Tensor:
    """Run the constraints on N x 3 x S x S start images -> uint8 N x S x S x 3."""
    x = start
    unit = unit_spectrum(magnitude.to(x.dtype)) if magnitude is not None else None
    targets = wmm_targets(wmm, wmm_scales(x.shape[-1])) if wmm is not None else None
    color_target = histogram_target(color["hist"], color["centres"]) if color is not None else None
    if wmm is None and color is None:
        # the spectrum alone is a projection: a second pass keeps the phase, magnitude, mean and std it finds
        iterations = min(iterations, 1)
    for _ in range(iterations):
        if unit is not None:
            x = impose_spectrum(x, unit)
        if targets is not None:
            x = impose_wmm(x, targets)
        if color_target is not None:
            x = histo_match(x, *color_target)
    if basis is not None:  # back to RGB: out = basis @ decorrelated + mean
        x = torch.einsum("nij,njhw->nihw", basis.to(x.dtype), x) + mean.to(x.dtype)[..., None, None]
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    scale = 255.0 / (x.amax(dim=(1, 2, 3), keepdim=True) - lo).clamp_min(1e-12)
    out = torch.addcmul(-lo * scale, x, scale).round_().clamp_(0, 255)
    return out.to(torch.uint8).permute(0, 2, 3, 1)
