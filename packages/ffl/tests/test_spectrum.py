"""Spectrum pictures: log-magnitude spectra, the radially averaged power spectrum, the focal weight map."""

import math
import sys

import torch

from pixforge.ffl.plots import loss_curves, radial_power_plot
from pixforge.ffl.spectrum import focal_weight_map, log_magnitude, picture, radial_power


def _wave(h: int, w: int, cycles_y: int, cycles_x: int) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return (0.5 + 0.4 * torch.cos(2 * math.pi * (cycles_y * y / h + cycles_x * x / w))).expand(1, 3, h, w)


def test_constant_image_has_only_the_centred_dc_term():
    spectrum = log_magnitude(torch.full((1, 3, 8, 6), 0.5))[0]
    assert spectrum[4, 3] == spectrum.max() and spectrum[4, 3] > 0
    spectrum[4, 3] = 0
    assert spectrum.abs().max() < 1e-12


def test_radial_power_puts_a_wave_in_its_ring():
    frequencies, power = radial_power(_wave(32, 32, 0, 5))
    assert frequencies.shape == (17,) and power.shape == (1, 17)
    assert frequencies[-1] == 0.5
    assert power[0, 1:].argmax() + 1 == 5  # 5 cycles over 32 pixels
    frequencies, power = radial_power(_wave(24, 40, 3, 0))  # rectangular: rings of width 1 / 24 cycles per pixel
    assert frequencies.shape == (13,) and power[0, 1:].argmax() + 1 == 3


def test_focal_weight_map_lies_in_0_1_and_is_point_symmetric():
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.rand(2, 3, 16, 16, generator=gen), torch.rand(2, 3, 16, 16, generator=gen)
    weights = focal_weight_map(real, fake)
    assert weights.shape == (16, 16) and 0 <= weights.min() and weights.max() <= 1
    # centred spectrum of a real signal: w(u, v) = w(-u, -v) around the centre (8, 8)
    inner = weights[1:, 1:]
    torch.testing.assert_close(inner, inner.flip(0, 1))
    assert focal_weight_map(real, real).abs().max() == 0
    assert focal_weight_map(real, fake, log_matrix=True).max() <= 1


def test_picture_scales_linearly():
    values = torch.tensor([[0.0, 1.0], [2.0, 4.0]])
    assert picture(values)[..., 0].tolist() == [[0, 64], [128, 255]]
    assert picture(values, 0.0, 2.0)[..., 0].tolist() == [[0, 128], [255, 255]]
    assert picture(torch.zeros(2, 2)).max() == 0


def test_plots_are_written_and_skipped_without_matplotlib(tmp_path, monkeypatch):
    curves = {"a": radial_power(_wave(16, 16, 0, 2))}
    records = [{"step": s, "mse": 1 / s, "ffl": 0.5 / s} for s in range(1, 40)]
    assert radial_power_plot({k: (f, p[0]) for k, (f, p) in curves.items()}, tmp_path / "r.png")
    assert loss_curves({"x": records, "y": records}, tmp_path / "l.png")
    assert (tmp_path / "r.png").stat().st_size > 1000 and (tmp_path / "l.png").stat().st_size > 1000
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert not loss_curves({"x": records}, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
