"""Spectrum pictures: log-magnitude spectra, batch-average spectra, FFL's focal weight map, and the radially
averaged power spectrum (RAPSD).

Images are N x C x H x W floats in [0, 1] (C = 3 or 1). Spectra are those of the luma (ITU-R BT.601, via
kornia) under the unnormalised DFT, drawn centred (zero frequency in the middle):

* log-magnitude spectrum: log(1 + |F|), drawn between its own minimum and maximum;
* batch-average spectrum: the mean of a group's log-magnitude spectra (thesis Fig. 5.10); the averages of
  several groups are drawn on one shared scale so that they compare;
* focal weight map: FFL's spectrum weight matrix (Eq. 5.9, normalised per channel, then averaged over the
  colour channels) between two images, or between the mean spectra of two groups (FFL's `ave_spectrum`);
  white marks the frequencies FFL would weigh most at this point;
* RAPSD: the mean of |F|^2 / (H W) over rings of radius k / min(H, W) cycles per pixel, k = 0 .. min(H, W) // 2.
"""

from __future__ import annotations

from pathlib import Path

import kornia
import numpy as np
import torch

from pixforge.core.cli import output_dir
from pixforge.core.io import write_image
from pixforge.export.atomic import write_text
from pixforge.export.errors import PixforgeError
from pixforge.ffl.images import Group
from pixforge.ffl.loss import spectrum_weight
from pixforge.ffl.plots import radial_power_plot


def luma(images: torch.Tensor) -> torch.Tensor:
    """N x 1 x H x W luma of RGB images (gray images pass through)."""
    return images if images.shape[1] == 1 else kornia.color.rgb_to_grayscale(images)


def log_magnitude(images: torch.Tensor) -> torch.Tensor:
    """N x H x W centred log(1 + |F|) of each image's luma (float64)."""
    spectrum = torch.fft.fft2(luma(images.double())[:, 0])
    return torch.fft.fftshift(spectrum.abs().log1p(), dim=(-2, -1))


def radial_power(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(frequencies in cycles per pixel (K), N x K ring means of |F|^2 / (H W)) of each image's luma."""
    gray = luma(images.double())[:, 0]
    h, w = gray.shape[-2:]
    side = min(h, w)
    radius = torch.hypot(*torch.meshgrid(torch.fft.fftfreq(h, dtype=torch.float64),
                                         torch.fft.fftfreq(w, dtype=torch.float64), indexing="ij"))
    ring = (radius * side).round().long().flatten()
    keep = ring <= side // 2
    power = torch.fft.fft2(gray).abs().square().flatten(1)[:, keep] / (h * w)
    counts = torch.bincount(ring[keep], minlength=side // 2 + 1)
    sums = torch.zeros(len(power), len(counts), dtype=torch.float64).index_add_(1, ring[keep], power)
    return torch.arange(len(counts), dtype=torch.float64) / side, sums / counts


def focal_weight_map(real: torch.Tensor, fake: torch.Tensor, alpha: float = 1.0,
                     log_matrix: bool = False) -> torch.Tensor:
    """H x W centred FFL weights in [0, 1] between the (batch-mean) spectra of `real` and `fake` (N x C x H x W)."""
    diff = (real.double() - fake.double()).mean(0)
    distance = torch.fft.fft2(diff, norm="ortho").abs().square()
    weight = spectrum_weight(distance, alpha=alpha, log_matrix=log_matrix).mean(0)
    return torch.fft.fftshift(weight, dim=(-2, -1))


def picture(values: torch.Tensor, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """H x W values drawn linearly from `lo` (black) to `hi` (white), by default their own range: uint8 H x W x 1."""
    lo = float(values.min()) if lo is None else lo
    hi = float(values.max()) if hi is None else hi
    scaled = (values - lo) / (hi - lo) if hi > lo else torch.zeros_like(values)
    return (scaled.clamp(0, 1) * 255).round().to(torch.uint8).numpy()[..., None]


class _GroupStats:
    """Streams a group's images once: the first `keep` spectrum pictures, and sums for the averages."""

    def __init__(self, group: Group, keep: int):
        self.group, self.pictures = group, []
        self.shape = first = None
        log_sum = power_sum = image_sum = None
        for name, image in group:
            if self.shape is None:
                self.shape, first = tuple(image.shape), name
            elif tuple(image.shape) != self.shape:
                raise PixforgeError(
                    f"{group.path / name if group.path.is_dir() else group.path} is {image.shape[2]}x{image.shape[1]} "
                    f"but {first} is {self.shape[2]}x{self.shape[1]}: averaging needs one size (pass --size N)")
            spectrum = log_magnitude(image[None])[0]
            self.frequencies, power = radial_power(image[None])
            if len(self.pictures) < keep:
                self.pictures.append((name, picture(spectrum)))
            log_sum = spectrum if log_sum is None else log_sum + spectrum
            power_sum = power[0] if power_sum is None else power_sum + power[0]
            image_sum = image.double() if image_sum is None else image_sum + image
        self.average = log_sum / len(group)
        self.power = power_sum / len(group)
        self.mean_image = image_sum / len(group)


def _labels(groups: list[Group]) -> list[str]:
    labels = []
    for group in groups:
        label, n = group.label, 2
        while label in labels:
            label, n = f"{group.label}-{n}", n + 1
        labels.append(label)
    return labels


def write_spectra(*inputs: str, out: str = "spectra", size: int | None = None, alpha: float = 1.0,
                  log_matrix: bool = False, pictures: int = 16, overwrite: bool = False) -> str:
    """Spectrum pictures of each input (an image or a folder = one group) under --out: log-magnitude spectra
    (at most --pictures per group), the batch-average spectrum of each folder, the radially averaged power
    spectrum of every group (CSV, and a plot with the [plots] extra), and with exactly two inputs FFL's
    focal weight map between them (--alpha, --log-matrix). --size N resizes and centre-crops to N x N.
    Every input is read and every picture computed before anything is written (spectra/<group>/, average/,
    focal_weight.png, radial_power.csv/.png); returns a summary of what was written."""
    if size is not None and size < 1:
        raise PixforgeError(f"--size must be a positive number of pixels, got {size}")
    if alpha < 0:
        raise PixforgeError(f"--alpha must be at least 0, got {alpha}")
    if pictures < 0:
        raise PixforgeError(f"--pictures must be at least 0, got {pictures}")
    if not inputs:
        raise PixforgeError("spectrum needs at least one image or folder")
    groups = [Group(path, size) for path in inputs]
    labels = _labels(groups)
    stats = [_GroupStats(group, pictures) for group in groups]
    focal = None
    if len(stats) == 2:
        (a, b), (la, lb) = stats, labels
        if a.shape != b.shape:
            raise PixforgeError(f"the focal weight map compares images of one size, but {la} is {a.shape[2]}x"
                                f"{a.shape[1]} and {lb} is {b.shape[2]}x{b.shape[1]} (pass --size N)")
        focal = focal_weight_map(a.mean_image[None], b.mean_image[None], alpha, log_matrix)
    averaged = [(label, s) for label, s in zip(labels, stats, strict=True) if len(s.group) > 1]
    lo = min((float(s.average.min()) for _, s in averaged), default=0.0)
    hi = max((float(s.average.max()) for _, s in averaged), default=1.0)

    out_dir = output_dir(out, overwrite, inputs=[p for p in inputs if Path(p).is_dir()])
    written = []
    for label, s in zip(labels, stats, strict=True):
        for name, pic in s.pictures:
            write_image(out_dir / "spectra" / label / Path(name).with_suffix(".png"), pic)
        written.append(f"{len(s.pictures)} spectrum picture(s) of {label} ({len(s.group)} image(s)) in "
                       f"{out_dir / 'spectra' / label}")
    for label, s in averaged:
        write_image(out_dir / "average" / f"{label}.png", picture(s.average, lo, hi))
    if averaged:
        written.append(f"batch-average spectra (one shared scale) in {out_dir / 'average'}")
    if focal is not None:
        write_image(out_dir / "focal_weight.png", picture(focal, 0.0, 1.0))
        written.append(f"focal weight map {labels[0]} vs {labels[1]} (alpha {alpha}"
                       f"{', log matrix' if log_matrix else ''}): {out_dir / 'focal_weight.png'}")
    rows = ["group,frequency_cycles_per_pixel,power"]
    rows += [f"{label},{f:.6f},{p:.9g}" for label, s in zip(labels, stats, strict=True)
             for f, p in zip(s.frequencies.tolist(), s.power.tolist(), strict=True)]
    write_text(out_dir / "radial_power.csv", "\n".join(rows) + "\n")
    curves = {label: (s.frequencies, s.power) for label, s in zip(labels, stats, strict=True)}
    if radial_power_plot(curves, out_dir / "radial_power.png"):
        written.append(f"radially averaged power spectra: {out_dir / 'radial_power.png'} (+ .csv)")
    else:
        written.append(f"radially averaged power spectra: {out_dir / 'radial_power.csv'} "
                       "(the plot needs matplotlib: pip install 'pixforge-ffl[plots]')")
    return "\n".join(written)
