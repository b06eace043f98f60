"""The faster statistical models against their previous implementation (kept here, verbatim, as the reference): 64 and
128 px, three (seed, index) each, >= 99 % of their pixels (and >= 95 % of each image's) within 1 grey level, for
every model at one iteration and for spectrum and colour at the default ten. The changes are float-rounding level:
the spectrum imposed in the rfft2 domain with its std from Parseval, one pass for the spectrum alone (a projection),
the box blur as running sums, histogram targets computed once, the WMM bands matched per pyramid scale and their
first normalisation (ignored by histogram matching) skipped. The combined models are compared at one iteration only:
ten alternating projections amplify rounding, so that the previous implementation itself moves by tens of grey
levels on most pixels when its start image changes by one part in 10^7 (spectrum-color-wmm, seed 1, index 3, 128 px:
58% of pixels more than one level off); what a float-rounding change can keep there is the model, not the pixels."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pixforge.core.datagen import rng
from pixforge.spectra import get, pyramid, statistical
from pixforge.spectra.models import STATISTICAL

CPU = torch.device("cpu")


def old_sample_color_model(rng: np.random.Generator, size: int) -> dict:
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


def old_histo_match(x: torch.Tensor, hist: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
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
    mapped = old_interp(source_cdf, target_cdf, target_edges)  # where each source bin edge goes
    frac = (pos - idx).clamp(0, 1)
    left, right = mapped.gather(1, idx), mapped.gather(1, idx + 1)
    return (left + frac * (right - left)).reshape(shape)


def old_interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    i = torch.searchsorted(xp.contiguous(), x.contiguous()).clamp(1, xp.shape[1] - 1)
    x0, x1, f0, f1 = xp.gather(1, i - 1), xp.gather(1, i), fp.gather(1, i - 1), fp.gather(1, i)
    t = ((x - x0) / (x1 - x0).clamp_min(1e-30)).clamp(0, 1)
    return f0 + t * (f1 - f0)


def old_normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    m = x.mean(dim=(-2, -1), keepdim=True)
    s = x.std(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return (x - m) / s * std[..., None, None] + mean[..., None, None]


def old_impose_spectrum(x: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    m = x.mean(dim=(-2, -1), keepdim=True)
    s = x.std(dim=(-2, -1), keepdim=True)
    phase = torch.angle(torch.fft.fft2(x - m))
    y = torch.fft.ifft2(torch.polar(magnitude, phase)).real
    return old_normalise(y, m[..., 0, 0], s[..., 0, 0])


def old_impose_wmm(x: torch.Tensor, wmm: dict, scales: int) -> torch.Tensor:
    bands = pyramid.build(x, scales, statistical.ORIENTATIONS)
    bins = torch.from_numpy(statistical.WMM_BINS).to(x.device)
    for b in range(len(bands) - 1):  # every band but the low-pass residual
        mean, std = wmm["mean"][:, b], wmm["std"][:, b]  # N x 3
        y = old_normalise(bands[b], mean, std)
        y = old_histo_match(y, wmm["hist"][:, b], bins.expand(*wmm["hist"].shape[:1], 3, -1))
        bands[b] = old_normalise(y, mean, std)
    k = statistical.ORIENTATIONS
    levels = [torch.stack(bands[1 + s * k:1 + (s + 1) * k], dim=-3) for s in range(scales)]
    return pyramid.compose(bands[0], levels, bands[-1])  # the old `reconstruct`, the same operations


def old_synthesize(start, *, magnitude, wmm, color, basis, mean, iterations=10):
    x = start
    scales = statistical.wmm_scales(x.shape[-1])
    for _ in range(iterations):
        if magnitude is not None:
            x = old_impose_spectrum(x, magnitude)
        if wmm is not None:
            x = old_impose_wmm(x, wmm, scales).to(x.dtype)
        if color is not None:
            x = old_histo_match(x, color["hist"], color["centres"])
    if basis is not None:  # back to RGB: out = basis @ decorrelated + mean
        x = torch.einsum("nij,njhw->nihw", basis.to(x.dtype), x) + mean.to(x.dtype)[..., None, None]
    flat = x.flatten(1)
    lo = flat.min(dim=1).values[:, None, None, None]
    hi = flat.max(dim=1).values[:, None, None, None]
    return ((x - lo) / (hi - lo).clamp_min(1e-12) * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def old_sample(name: str, seed: int, index: int, size: int, iterations: int = 10) -> np.ndarray:
    """`Statistical.sample` of one image before the speed-up."""
    spectrum, wmm, color = STATISTICAL[name]
    r = rng(seed, index)
    model = old_sample_color_model(r, size)
    magnitude = statistical.sample_spectrum(r, size)[0] if spectrum else None
    wmm_model = statistical.sample_wmm(r, size) if wmm else None
    start = (256.0 * r.uniform(0, 1, (3, size, size))).astype(np.float32)

    def tensor(a):
        return torch.from_numpy(np.asarray(a)[None]).float()

    images = old_synthesize(
        tensor(start), magnitude=tensor(magnitude) if spectrum else None,
        wmm={k: tensor(v) for k, v in wmm_model.items()} if wmm else None,
        color={"hist": tensor(model["hist"]), "centres": tensor(model["centres"])} if color else None,
        basis=tensor(model["basis"]), mean=tensor(model["mean"]), iterations=iterations)
    return images[0].numpy()


def off_by_more_than_one(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.abs(a.astype(np.int16) - b) > 1).mean())


def assert_within_one_level(name: str, size: int, iterations: int | None) -> None:
    """<= 1 % of the pixels of three images, <= 5 % of each, off by more than one level. Not 0: histogram
    matching onto the heavy-tailed WMM targets moves a whole source bin's pixels by several levels when rounding
    moves one pixel across a bin edge (spectrum-color-wmm, seed 1, index 3, 128 px, one iteration: 1.4 % of its
    pixels under ATEN_CPU_CAPABILITY=default, 0 % under AVX-512)."""
    options = {} if iterations is None else {"iterations": iterations}
    off = [off_by_more_than_one(get(name, **options).sample(seed, [index], size, CPU)[0],
                                old_sample(name, seed, index, size, **options))
           for seed, index in [(0, 0), (1, 3), (7, 11)]]
    assert np.mean(off) <= 0.01 and max(off) <= 0.05, off


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("name", list(STATISTICAL))
def test_one_iteration_matches_the_previous_implementation(name, size):
    assert_within_one_level(name, size, iterations=1)


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("name", ["spectrum", "color"])
def test_ten_iterations_match_the_previous_implementation(name, size):
    """Spectrum: one pass against the old ten (a projection). Colour: ten histogram matchings."""
    assert_within_one_level(name, size, iterations=None)


def test_box_blur_equals_the_zero_padded_convolution():
    ref = np.random.default_rng(0).uniform(0, 256, (3, 21, 21))
    for m in range(2, 11):
        kernel = torch.full((3, 1, m, m), 1.0 / (m * m), dtype=torch.float64)
        padded = F.pad(torch.from_numpy(ref)[None], ((m - 1) // 2, m // 2, (m - 1) // 2, m // 2))
        np.testing.assert_allclose(statistical._box_blur(ref, m), F.conv2d(padded, kernel, groups=3)[0].numpy(),
                                   atol=1e-9)


def test_spectrum_projection_is_idempotent():
    size = 64
    magnitude = torch.from_numpy(statistical.sample_spectrum(rng(0, 0), size)[0])[None].double()
    unit = statistical.unit_spectrum(magnitude)
    x = torch.rand(1, 3, size, size, dtype=torch.float64) * 256
    once = statistical.impose_spectrum(x, unit)
    np.testing.assert_allclose(once.mean(dim=(-2, -1)), x.mean(dim=(-2, -1)), rtol=1e-9)
    np.testing.assert_allclose(once.std(dim=(-2, -1)), x.std(dim=(-2, -1)), rtol=1e-9)
    amp = torch.fft.fft2(once - once.mean(dim=(-2, -1), keepdim=True)).abs()
    np.testing.assert_allclose(amp / amp.flatten(-2).norm(dim=-1)[..., None, None],
                               magnitude / magnitude.flatten(-2).norm(dim=-1)[..., None, None],
                               atol=1e-9)
    np.testing.assert_allclose(statistical.impose_spectrum(once, unit), once, atol=1e-9)
