"""Spectrum SSIM (paper §4.1, Table 1): how close a synthetic set's magnitude spectrum is to a target set's.

Each image is converted to luma, resized (bicubic, covering) and centre-cropped to `size`, and its centred
log-magnitude spectrum `log(1 + |FFT(y - mean y)|)` is taken; the spectra of a set are averaged, each average
is min-max scaled to [0, 1], and the score is the SSIM (Gaussian window 11, sigma 1.5) between the two
averages. 1 = identical average spectra. The paper reports the magnitude spectrum only (phase SSIM is
meaningless, it wraps around).

This is our reading of the paper's "average structural similarity (SSIM) between two datasets in the frequency
domain": the official code (FriedRonaldo/Primitives-PS) has no implementation, and the text leaves open whether
per-pair SSIMs are averaged, whether the magnitude is logged, and how colour is handled. So the scores are not
comparable with Table 1's numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixforge.core.cli import output_dir
from pixforge.core.datagen import read_images
from pixforge.core.metrics import ssim
from pixforge.export.errors import PixforgeError


def _square(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        img = Image.fromarray(image).resize((max(size, round(w * scale)), max(size, round(h * scale))),
                                            Image.Resampling.BICUBIC)
        image = np.asarray(img)
        h, w = image.shape[:2]
        top, left = (h - size) // 2, (w - size) // 2
        image = image[top:top + size, left:left + size]
    return image


def log_spectrum(image: np.ndarray) -> np.ndarray:
    """Centred log(1 + |FFT|) of the luma of a uint8 H x W x 3 (or H x W grey) image, mean removed."""
    y = image.astype(np.float64)
    if y.ndim == 3:
        y = y[..., :3] @ np.array([0.299, 0.587, 0.114])
    return np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(y - y.mean()))))


def average_log_spectrum(path: str | os.PathLike, size: int = 128, limit: int | None = 1000) -> tuple[np.ndarray, int]:
    total, count = np.zeros((size, size)), 0
    for image in read_images(path, limit=limit):  # a shard of anything but 8-bit images is refused there
        total += log_spectrum(_square(image, size))
        count += 1
    if count == 0:  # e.g. a tar shard with no image members
        raise PixforgeError(f"{path} holds no images")
    return total / count, count


def spectrum_ssim(real: str | os.PathLike, synthetic: str | os.PathLike, size: int = 128,
                  limit: int | None = 1000, out: str | os.PathLike | None = None, overwrite: bool = False) -> dict:
    """SSIM between the average log-magnitude spectra of two image sets (folders, npz or tar shards)."""
    if size < 11:
        raise PixforgeError(f"--size must be at least 11 pixels (the SSIM window), got {size}")
    if limit is not None and limit < 1:
        raise PixforgeError(f"--limit must be at least 1 image, got {limit}")
    for path in (real, synthetic):
        if not Path(path).exists():
            raise PixforgeError(f"{path} does not exist")
    if out is not None:
        _check_out(Path(out), overwrite, (real, synthetic))
    a, na = average_log_spectrum(real, size, limit)
    b, nb = average_log_spectrum(synthetic, size, limit)
    scaled = [(s - s.min()) / max(s.max() - s.min(), 1e-12) for s in (a, b)]
    tensors = [torch.from_numpy(s)[None, None].float() for s in scaled]
    score = float(ssim(tensors[0], tensors[1], data_range=1.0))
    report = {"real": str(real), "synthetic": str(synthetic), "real_images": na, "synthetic_images": nb,
              "size": size, "spectrum_ssim": round(score, 4),
              "l1": round(float(np.abs(scaled[0] - scaled[1]).mean()), 4)}
    if out is not None:
        from pixforge.core.io import write_image

        out = output_dir(out, overwrite)
        picture = np.concatenate([np.round(s * 255).astype(np.uint8) for s in scaled], axis=1)
        write_image(out / "average_spectra.png", picture)
        report["picture"] = str(out / "average_spectra.png")
    return report



def _check_out(out: Path, overwrite: bool, inputs: tuple) -> None:
    """Refuse, before any work, an --out inside an input, a file, or a non-empty folder without `overwrite`."""
    for path in inputs:
        source = Path(path).resolve()
        if source == out.resolve() or source in out.resolve().parents:
            raise PixforgeError(f"--out {out} is inside the input {path}: write the picture somewhere else")
    if out.exists():
        output_dir(out, overwrite)  # created when the picture is written
