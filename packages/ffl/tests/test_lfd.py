"""LFD against the official evaluation formula, its Parseval form, value ranges, PSNR/SSIM beside it, errors."""

import math

import numpy as np
import pytest
import torch

from pixforge.core.metrics import psnr, ssim
from pixforge.export.errors import PixforgeError
from pixforge.ffl import lfd
from pixforge.ffl.lfd import format_table, quality, summarize


def official_lfd(img1: np.ndarray, img2: np.ndarray) -> float:
    """metrics/metric_utils.py `lfd` of EndlessSora/focal-frequency-loss: H x W x C float64 images in 0..255."""
    freq1 = np.fft.fft2(img1.transpose(2, 0, 1))
    freq2 = np.fft.fft2(img2.transpose(2, 0, 1))
    return float(np.log(np.mean((freq1.real - freq2.real) ** 2 + (freq1.imag - freq2.imag) ** 2) + 1.0))


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (5, 24, 20, 3), dtype=np.uint8)
    noise = rng.normal(0, 12, real.shape)
    fake = np.clip(real + noise, 0, 255).astype(np.uint8)
    return real, fake


def _nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2)


def test_lfd_matches_the_official_evaluation_per_image_and_on_average(pair):
    real, fake = pair
    expected = [official_lfd(r.astype(np.float64), f.astype(np.float64)) for r, f in zip(real, fake, strict=True)]
    per_image = lfd(_nchw(real).double(), _nchw(fake).double(), reduction="none")
    assert per_image.dtype == torch.float64 and per_image.shape == (5,)
    np.testing.assert_allclose(per_image.numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(lfd(_nchw(real), _nchw(fake)).item(), np.mean(expected), rtol=1e-12)  # uint8 input


def test_lfd_is_log_of_hw_times_mse_plus_one(pair):
    real, fake = (_nchw(x).double() for x in pair)
    mse = (real - fake).square().mean(dim=(1, 2, 3))
    torch.testing.assert_close(lfd(real, fake, reduction="none"), torch.log(24 * 20 * mse + 1))


def test_value_range_maps_to_0_255(pair):
    real, fake = (_nchw(x).double() for x in pair)
    scaled = [x / 127.5 - 1 for x in (real, fake)]
    torch.testing.assert_close(lfd(*scaled, value_range=(-1.0, 1.0)), lfd(real, fake))


def test_identical_images_score_perfectly(pair):
    real = _nchw(pair[0]).float()
    scores = quality(real, real.clone())
    assert scores["lfd"].abs().max() == 0 and torch.isinf(scores["psnr"]).all()
    torch.testing.assert_close(scores["ssim"], torch.ones(5, dtype=torch.float64))


def test_quality_uses_core_psnr_and_ssim_on_0_255(pair):
    real, fake = (_nchw(x).float() for x in pair)
    scores = quality(real / 255, fake / 255, value_range=(0.0, 1.0))
    torch.testing.assert_close(scores["psnr"], psnr(fake, real, data_range=255.0, reduction="none").double(),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scores["ssim"], ssim(fake, real, data_range=255.0, reduction="none").double(),
                               rtol=1e-5, atol=1e-6)


def test_summary_and_table():
    summary = summarize({"lfd": [1.0, 3.0], "psnr": [math.inf, math.inf]})
    assert summary["lfd"] == {"mean": 2.0, "std": 1.0, "count": 2}
    assert math.isinf(summary["psnr"]["mean"]) and math.isnan(summary["psnr"]["std"])
    table = format_table(summary)
    assert "LFD" in table and "2.0000" in table and "lower is better" in table


def test_bad_inputs_are_pixforge_errors():
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(PixforgeError, match=r"same shape, got \(2, 3, 16, 16\) and \(2, 1, 16, 16\)"):
        lfd(x, x[:, :1])
    with pytest.raises(PixforgeError, match=r"\(2, 3, 16, 16\) and \(2, 3, 16, 12\)"):
        lfd(x, x[..., :12])
    bad = x.clone()
    bad[1, 0, 3, 3] = float("inf")
    with pytest.raises(PixforgeError, match="fake images hold NaN or infinite"):
        lfd(x, bad)
    with pytest.raises(PixforgeError, match="reduction"):
        lfd(x, x, reduction="sum")


def test_lpips_column_from_heads_file(tmp_path, monkeypatch):
    from pixforge.core.io import write_image
    from pixforge.core.lpips import LPIPS
    from pixforge.ffl.lfd import score_pairs

    g = torch.Generator().manual_seed(0)
    convs = {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}  # alexnet
    trunk = {}
    for i, (o, c, k) in convs.items():
        trunk[f"features.{i}.weight"] = torch.randn(o, c, k, k, generator=g) * (2 / (c * k * k)) ** 0.5
        trunk[f"features.{i}.bias"] = torch.zeros(o)
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g)
             for k, c in enumerate((64, 192, 384, 256, 256))}
    torch.save(trunk, tmp_path / "alexnet.pth")
    torch.save(heads, tmp_path / "alex.pth")
    monkeypatch.setenv("PIXFORGE_ALEXNET_WEIGHTS", str(tmp_path / "alexnet.pth"))
    rng = np.random.default_rng(1)
    real = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    fake = np.clip(real + rng.normal(0, 20, real.shape), 0, 255).astype(np.uint8)
    for folder, image in (("real", real), ("fake", fake)):
        (tmp_path / folder).mkdir()
        write_image(tmp_path / folder / "a.png", image)
    write_image(tmp_path / "real" / "b.png", real)
    write_image(tmp_path / "fake" / "b.png", real)
    report = score_pairs(str(tmp_path / "real"), str(tmp_path / "fake"), quiet=True,
                         lpips_weights=str(tmp_path / "alex.pth"))
    rows = {row["name"]: row for row in report["images"]}
    model = LPIPS("alex", lin_weights=tmp_path / "alex.pth")
    expected = model(_nchw(real[None]).float() / 127.5 - 1, _nchw(fake[None]).float() / 127.5 - 1)
    assert rows["a.png"]["lpips"] == pytest.approx(float(expected), rel=1e-6) and rows["b.png"]["lpips"] == 0
    assert report["metrics"]["lpips"]["count"] == 2 and "LPIPS" in format_table(report["metrics"])
    with pytest.raises(PixforgeError, match="not an lpips v0.1 alex.pth or vgg.pth heads file"):
        score_pairs(str(tmp_path / "real"), str(tmp_path / "fake"), lpips_weights=str(tmp_path / "alexnet.pth"))
