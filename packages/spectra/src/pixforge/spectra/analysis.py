"""Image statistics of a dataset (paper §5.1 measures and the classic natural-image ones):

* power spectrum: radially averaged amplitude `|FFT|` of the luma (mean removed, Hann-windowed), and the
  slope alpha of `A / f^alpha` fitted in log-log between 4 cycles per image and a quarter of the sampling rate
  (natural images: alpha ~ 1, typically 0.5-2), per image and for the dataset-average spectrum;
* colour: per-channel 64-bin RGB histograms, and the L*a*b* mean and covariance (the paper compares data sets
  by the symmetric KL divergence of these Gaussians);
* wavelet marginals: kurtosis of the first-scale steerable-pyramid bands (Gaussian: 3; natural images: heavy
  tails, >> 3), and sparsity (Hoyer's measure of the gradient magnitudes: 0 = flat, 1 = one spike);
* the number of distinct colours per image.

Every per-image statistic is kept per image (`Measured`), so a set is summarised with its spread and subsets
(the halves of `fidelity.compare`) can be measured again without re-reading images.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from pixforge.export.errors import PixforgeError
from pixforge.spectra import pyramid

BINS = 64
LUMA = np.array([0.299, 0.587, 0.114])


def _square(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    scale = size / min(h, w)
    img = Image.fromarray(image).resize((max(size, round(w * scale)), max(size, round(h * scale))),
                                        Image.Resampling.BICUBIC)
    arr = np.asarray(img)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return arr[top:top + size, left:left + size]


def radial_spectrum(gray: np.ndarray) -> np.ndarray:
    """Radially averaged amplitude spectrum of a square image, at integer radii 1 .. S/2 (cycles per image)."""
    size = gray.shape[0]
    window = np.outer(np.hanning(size), np.hanning(size))
    amp = np.abs(np.fft.fft2((gray - gray.mean()) * window))
    f = np.fft.fftfreq(size) * size
    radius = np.rint(np.hypot(f[:, None], f[None, :])).astype(np.int64)
    sums = np.bincount(radius.ravel(), amp.ravel(), minlength=size)
    counts = np.bincount(radius.ravel(), minlength=size)
    return sums[1: size // 2 + 1] / np.maximum(counts[1: size // 2 + 1], 1)


def fit_slope(spectrum: np.ndarray) -> float:
    """alpha of `A / f^alpha` fitted to a radial amplitude spectrum between 4 cycles/image and S/4."""
    f = np.arange(1, len(spectrum) + 1, dtype=np.float64)
    keep = (f >= 4) & (f <= max(len(spectrum) / 2, 5)) & (spectrum > 0)
    if keep.sum() < 2:
        return float("nan")
    return float(-np.polyfit(np.log(f[keep]), np.log(spectrum[keep]), 1)[0])


def _kurtosis(x: torch.Tensor) -> float:
    x = x.flatten().double()
    x = x - x.mean()
    var = (x * x).mean()
    return float((x ** 4).mean() / var.clamp_min(1e-20) ** 2)


def _hoyer(x: np.ndarray) -> float:
    x = np.abs(x.ravel())
    n = x.size
    l2 = math.sqrt(float((x * x).sum()))
    if l2 == 0:
        return 0.0
    return float((math.sqrt(n) - x.sum() / l2) / (math.sqrt(n) - 1))


# per-image statistics: name -> what it is
STATISTICS = {
    "spectrum_slope": "alpha of the radially averaged amplitude spectrum A ~ 1 / f^alpha (luma)",
    "wavelet_kurtosis": "kurtosis of the first-scale steerable-pyramid bands (Gaussian: 3)",
    "sparsity": "Hoyer sparsity of the gradient magnitudes (0 flat .. 1 one spike)",
    "distinct_colors": "number of distinct RGB colours",
    "lab_l": "mean L* (lightness)",
    "lab_a": "mean a* (green-red)",
    "lab_b": "mean b* (blue-yellow)",
}
LAB_PIXELS = 1024  # L*a*b* pixels kept per image for the colour Gaussian


@dataclass
class Measured:
    """What `measure` finds in a set of images, per image."""

    size: int
    values: dict[str, np.ndarray]  # STATISTICS name -> one value per image
    spectra: np.ndarray  # images x S/2 radially averaged amplitude spectra
    histograms: np.ndarray  # images x 3 x BINS RGB counts
    lab: list[np.ndarray]  # per image: pixels x 3 L*a*b* values

    def __len__(self) -> int:
        return len(self.spectra)

    def subset(self, index: np.ndarray) -> Measured:
        return Measured(self.size, {k: v[index] for k, v in self.values.items()}, self.spectra[index],
                        self.histograms[index], [self.lab[i] for i in index])

    def histogram(self) -> np.ndarray:
        """3 x BINS RGB histograms of the whole set (shares)."""
        counts = self.histograms.sum(axis=0)
        return counts / counts.sum(axis=1, keepdims=True)

    def lab_gaussian(self) -> tuple[np.ndarray, np.ndarray]:
        lab = np.concatenate(self.lab)
        return lab.mean(axis=0), np.cov(lab.T)


def measure(images, size: int = 128) -> Measured:
    """The per-image statistics of an iterable of uint8 H x W x 3 images (resized / centre-cropped to `size`)."""
    from kornia.color import rgb_to_lab

    values: dict[str, list[float]] = {name: [] for name in STATISTICS}
    spectra, histograms, labs = [], [], []
    for image in images:
        img = _square(np.ascontiguousarray(image[..., :3]), size)
        gray = img.astype(np.float64) @ LUMA
        spec = radial_spectrum(gray)
        spectra.append(spec)
        values["spectrum_slope"].append(fit_slope(spec))
        histograms.append([np.bincount(img[..., c].ravel() // (256 // BINS), minlength=BINS) for c in range(3)])
        bands = pyramid.build(torch.from_numpy(gray).float()[None], scales=1)
        values["wavelet_kurtosis"].append(float(np.mean([_kurtosis(b) for b in bands[1:-1]])))
        gy, gx = np.gradient(gray)
        values["sparsity"].append(_hoyer(np.hypot(gx, gy)))
        packed = (img[..., 0].astype(np.int32) << 16) | (img[..., 1].astype(np.int32) << 8) | img[..., 2]
        values["distinct_colors"].append(float(np.unique(packed).size))
        lab = rgb_to_lab(torch.tensor(img).permute(2, 0, 1).float()[None] / 255.0)[0].reshape(3, -1).double()
        for name, channel in zip(("lab_l", "lab_a", "lab_b"), lab.mean(dim=1).tolist(), strict=True):
            values[name].append(channel)
        labs.append(lab[:, :: max(1, size * size // LAB_PIXELS)].T.numpy())
    if not spectra:
        raise PixforgeError("no images to analyse")
    return Measured(size, {k: np.asarray(v) for k, v in values.items()}, np.asarray(spectra),
                    np.asarray(histograms, dtype=np.float64), labs)


def spread(values: np.ndarray, rng: np.random.Generator, resamples: int = 1000) -> dict:
    """One statistic over a set: mean, std, median, 2.5 / 97.5 percentiles, and the 95 % bootstrap (percentile)
    interval of the mean; NaN values (a failed slope fit) are left out (`images` counts the rest)."""
    x = values[np.isfinite(values)]
    if not x.size:
        return {"images": 0}
    means = x[rng.integers(0, x.size, (resamples, x.size))].mean(axis=1)
    return {"mean": _r(x.mean()), "std": _r(x.std(ddof=1) if x.size > 1 else 0.0), "median": _r(np.median(x)),
            "p2_5": _r(np.percentile(x, 2.5)), "p97_5": _r(np.percentile(x, 97.5)),
            "mean_ci95": [_r(np.percentile(means, 2.5)), _r(np.percentile(means, 97.5))], "images": int(x.size)}


def summarize(measured: Measured, seed: int = 0) -> dict:
    """`analyze`'s stats.json: every statistic with its spread, the set's mean spectrum (and its slope) and
    colours, and the per-image values."""
    rng = np.random.default_rng(seed)
    mean_spectrum = measured.spectra.mean(axis=0)
    lab_mean, lab_cov = measured.lab_gaussian()
    return {
        "images": len(measured), "size": measured.size,
        "statistics": {name: spread(measured.values[name], rng) for name in STATISTICS},
        "slope_of_mean_spectrum": _r(fit_slope(mean_spectrum)),
        "radial_spectrum": [_r(v, 6) for v in mean_spectrum],
        "color": {"histogram": measured.histogram().round(6).tolist(), "lab_mean": [_r(v) for v in lab_mean],
                  "lab_cov": lab_cov.round(4).tolist()},
        "per_image": {name: [_r(v) for v in values] for name, values in measured.values.items()},
    }


def _r(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def gaussian_symmetric_kl(mean_a, cov_a, mean_b, cov_b) -> float:
    """Symmetric KL divergence between two Gaussians (the paper's colour distance between data sets)."""
    ma, mb = np.asarray(mean_a), np.asarray(mean_b)
    ca, cb = np.asarray(cov_a) + 1e-6 * np.eye(3), np.asarray(cov_b) + 1e-6 * np.eye(3)
    ia, ib = np.linalg.inv(ca), np.linalg.inv(cb)
    d = ma - mb
    kl_ab = 0.5 * (np.trace(ib @ ca) + d @ ib @ d - 3 + np.log(np.linalg.det(cb) / np.linalg.det(ca)))
    kl_ba = 0.5 * (np.trace(ia @ cb) + d @ ia @ d - 3 + np.log(np.linalg.det(ca) / np.linalg.det(cb)))
    return float(kl_ab + kl_ba)



def require_matplotlib() -> None:
    """Raise the one-line error naming the extra when matplotlib is missing (call it before any work)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PixforgeError("plots need matplotlib: pip install 'pixforge-spectra[plots]', "
                            "or pass --no-plots") from None


def plot(results: dict[str, dict], path: str | os.PathLike) -> str:
    """Radial spectra (log-log), colour histograms and kurtosis / sparsity (mean +- std) of `summarize` results."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pixforge.export.atomic import atomic_path

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, stats in results.items():
        spec = np.asarray(stats["radial_spectrum"])
        axes[0].loglog(np.arange(1, len(spec) + 1), spec / spec[0],
                       label=f"{name} (alpha {stats['slope_of_mean_spectrum']:.2f})")
        hist = np.asarray(stats["color"]["histogram"])
        for c, colour in enumerate(("r", "g", "b")):
            axes[1].plot(np.arange(BINS) * (256 // BINS), hist[c], colour, alpha=0.7,
                         linestyle="-" if name == next(iter(results)) else "--")
    axes[0].set(xlabel="cycles per image", ylabel="relative amplitude", title="radially averaged spectrum")
    axes[0].legend(fontsize=8)
    axes[1].set(xlabel="value", ylabel="share", title="RGB histograms (first set solid)")
    names = list(results)
    x = np.arange(len(names))
    for offset, key, scale, label in ((-0.2, "wavelet_kurtosis", 1, "wavelet kurtosis"),
                                      (0.2, "sparsity", 10, "10 x sparsity")):
        stats = [results[n]["statistics"][key] for n in names]
        axes[2].bar(x + offset, [scale * s["mean"] for s in stats], 0.4, yerr=[scale * s["std"] for s in stats],
                    label=label)
    axes[2].set_xticks(x, names, fontsize=8)
    axes[2].set(title="mean +- std over images")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return str(path)
