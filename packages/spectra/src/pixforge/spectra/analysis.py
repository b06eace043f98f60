"""Image statistics of a dataset (paper §5.1 measures and the classic natural-image ones):

* power spectrum: radially averaged amplitude `|FFT|` of the luma (mean removed, Hann-windowed), and the
  slope alpha of `A / f^alpha` fitted in log-log between 4 cycles per image and a quarter of the sampling rate
  (natural images: alpha ~ 1, typically 0.5-2), per image and for the dataset-average spectrum;
* colour: per-channel 64-bin RGB histograms, and the L*a*b* mean and covariance (the paper compares data sets
  by the symmetric KL divergence of these Gaussians);
* wavelet marginals: kurtosis of the first-scale steerable-pyramid bands (Gaussian: 3; natural images: heavy
  tails, >> 3), and sparsity (Hoyer's measure of the gradient magnitudes: 0 = flat, 1 = one spike).
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from pixforge.core.datagen import read_images
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


def analyze_images(images, size: int = 128) -> dict:
    """Statistics of an iterable of uint8 H x W x 3 images (resized/cropped to `size`)."""
    from kornia.color import rgb_to_lab

    spectra, slopes, kurt, sparsity, labs = [], [], [], [], []
    hist = np.zeros((3, BINS))
    for image in images:
        img = _square(np.ascontiguousarray(image[..., :3]), size)
        gray = img.astype(np.float64) @ LUMA
        spec = radial_spectrum(gray)
        spectra.append(spec)
        slopes.append(fit_slope(spec))
        for c in range(3):
            hist[c] += np.bincount(img[..., c].ravel() // (256 // BINS), minlength=BINS)
        bands = pyramid.build(torch.from_numpy(gray).float()[None], scales=1)
        kurt.append(float(np.mean([_kurtosis(b) for b in bands[1:-1]])))
        gy, gx = np.gradient(gray)
        sparsity.append(_hoyer(np.hypot(gx, gy)))
        lab = rgb_to_lab(torch.tensor(img).permute(2, 0, 1).float()[None] / 255.0)[0]
        labs.append(lab.reshape(3, -1)[:, :: max(1, size * size // 1024)].T.numpy())
    if not spectra:
        raise PixforgeError("no images to analyse")
    lab = np.concatenate(labs).astype(np.float64)
    mean_spectrum = np.mean(spectra, axis=0)
    slopes = np.asarray(slopes)
    return {
        "images": len(spectra), "size": size,
        "spectrum_slope": {"mean": _r(np.nanmean(slopes)), "std": _r(np.nanstd(slopes)),
                           "of_mean_spectrum": _r(fit_slope(mean_spectrum))},
        "radial_spectrum": [_r(v, 6) for v in mean_spectrum],
        "wavelet_kurtosis": {"mean": _r(np.mean(kurt)), "std": _r(np.std(kurt))},
        "sparsity": {"mean": _r(np.mean(sparsity)), "std": _r(np.std(sparsity))},
        "color": {"histogram": (hist / hist.sum(axis=1, keepdims=True)).round(6).tolist(),
                  "lab_mean": [_r(v) for v in lab.mean(axis=0)],
                  "lab_cov": np.cov(lab.T).round(4).tolist()},
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


def source_images(source: str | os.PathLike, n: int, size: int, seed: int = 0):
    """Images of a folder / shard folder, or `n` freshly generated images of a model name."""
    from pixforge.spectra.models import NAMES, get

    key = str(source).lower().replace("_", "-")
    if key in NAMES and not os.path.exists(source):
        model = get(key)
        model.check_size(size)
        for start in range(0, n, 8):
            yield from model.sample(seed, range(start, min(n, start + 8)), size, torch.device("cpu"))
        return
    yield from read_images(source, limit=n)


def compare(a: dict, b: dict) -> dict:
    """Side-by-side numbers of two `analyze_images` results, with the colour distance between them."""
    def pick(stats):
        return {"images": stats["images"], "spectrum_slope": stats["spectrum_slope"]["mean"],
                "slope_of_mean_spectrum": stats["spectrum_slope"]["of_mean_spectrum"],
                "wavelet_kurtosis": stats["wavelet_kurtosis"]["mean"], "sparsity": stats["sparsity"]["mean"]}

    return {"a": pick(a), "b": pick(b),
            "lab_symmetric_kl": _r(gaussian_symmetric_kl(a["color"]["lab_mean"], a["color"]["lab_cov"],
                                                         b["color"]["lab_mean"], b["color"]["lab_cov"])),
            "histogram_l1": _r(np.abs(np.asarray(a["color"]["histogram"]) -
                                      np.asarray(b["color"]["histogram"])).sum(axis=1).mean())}


def plot(results: dict[str, dict], path: str | os.PathLike) -> str:
    """Radial spectra (log-log), colour histograms and kurtosis/sparsity of one or more analysed sets."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PixforgeError("plots need matplotlib: pip install 'pixforge-spectra[plots]'") from None
    from pixforge.export.atomic import atomic_path

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, stats in results.items():
        spec = np.asarray(stats["radial_spectrum"])
        axes[0].loglog(np.arange(1, len(spec) + 1), spec / spec[0],
                       label=f"{name} (alpha {stats['spectrum_slope']['of_mean_spectrum']:.2f})")
        hist = np.asarray(stats["color"]["histogram"])
        for c, colour in enumerate(("r", "g", "b")):
            axes[1].plot(np.arange(BINS) * (256 // BINS), hist[c], colour, alpha=0.7,
                         linestyle="-" if name == next(iter(results)) else "--")
    axes[0].set(xlabel="cycles per image", ylabel="relative amplitude", title="radially averaged spectrum")
    axes[0].legend(fontsize=8)
    axes[1].set(xlabel="value", ylabel="share", title="RGB histograms (first set solid)")
    names = list(results)
    x = np.arange(len(names))
    axes[2].bar(x - 0.2, [results[n]["wavelet_kurtosis"]["mean"] for n in names], 0.4, label="wavelet kurtosis")
    axes[2].bar(x + 0.2, [10 * results[n]["sparsity"]["mean"] for n in names], 0.4, label="10 x sparsity")
    axes[2].set_xticks(x, names, fontsize=8)
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return str(path)
