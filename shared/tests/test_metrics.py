"""PSNR / SSIM / FID / KID against reference formulas (numpy, scipy, scikit-image)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
import torch
from skimage.metrics import structural_similarity
from torch import nn

from pixforge.core.metrics import FrechetDistance, KernelDistance, feature_stats, frechet_distance, psnr, ssim
from pixforge.export.errors import PixforgeError


class TinyFeatures(nn.Module):
    """A small random conv net standing in for InceptionV3 (its numbers are not comparable FIDs)."""

    num_features = 8
    label = "tiny-random-conv (test only)"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 8)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.float())


def _images(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 16, 16, generator=g) * 0.8 + shift).clamp(0, 1)


def _np_features(net: nn.Module, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return net(images).double().numpy()


def _np_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def _np_kid(a: np.ndarray, b: np.ndarray) -> float:
    d, m = a.shape[1], a.shape[0]
    k_aa, k_bb, k_ab = ((x @ y.T / d + 1) ** 3 for x, y in ((a, a), (b, b), (a, b)))
    off_diag = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
    return float(off_diag - 2 * k_ab.mean())


def _noisy_pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(3, 3, 32, 40, generator=g, dtype=torch.float64)
    pred = (target + 0.1 * torch.randn(target.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return pred, target


def test_psnr_matches_the_formula_per_image_and_mean():
    pred, target = _noisy_pair()
    mse = ((pred - target) ** 2).mean(dim=(1, 2, 3))
    expected = 10 * torch.log10(1.0 / mse)
    # float64 throughout, except torchmetrics' float32 constant log(10): ~5e-8 relative
    torch.testing.assert_close(psnr(pred, target, reduction="none"), expected, rtol=1e-7, atol=0)
    torch.testing.assert_close(psnr(pred, target), expected.mean(), rtol=1e-7, atol=0)


def test_psnr_on_uint8_with_range_255():
    pred, target = (t.mul(255).round().to(torch.uint8) for t in _noisy_pair(1))
    mse = ((pred.double() - target.double()) ** 2).mean(dim=(1, 2, 3))
    expected = 10 * torch.log10(255.0**2 / mse)
    torch.testing.assert_close(
        psnr(pred, target, data_range=255.0, reduction="none").double(), expected, rtol=1e-5, atol=0
    )
    assert torch.isinf(psnr(target, target, data_range=255.0))


def test_ssim_matches_skimage():
    pred, target = _noisy_pair(2)
    ours = ssim(pred, target, reduction="none")
    reference = [
        structural_similarity(
            p.numpy(),
            t.numpy(),
            channel_axis=0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
        )
        for p, t in zip(pred, target, strict=True)
    ]
    np.testing.assert_allclose(ours.numpy(), reference, atol=1e-4)
    assert ssim(pred, target).item() == pytest.approx(float(np.mean(reference)), abs=1e-4)
    assert ssim(target, target).item() == pytest.approx(1.0, abs=1e-6)



def test_masked_psnr_and_ssim_average_over_the_marked_pixels_only():
    """PSNR's MSE over the masked pixels (all channels); SSIM's map averaged over them (inside the window border,
    the map skimage returns with full=True). An exact copy outside the mask does not raise either score."""
    pred, target = _noisy_pair(3)
    mask = torch.zeros(3, 1, 32, 40, dtype=torch.bool)
    mask[:, :, 8:24, 10:30] = True
    copied = torch.where(mask, pred, target)  # errors only inside the mask
    inside = mask.expand_as(pred)
    mse = torch.stack([((p - t)[m] ** 2).mean() for p, t, m in zip(pred, target, inside, strict=True)])
    torch.testing.assert_close(psnr(copied, target, reduction="none", mask=mask), 10 * torch.log10(1.0 / mse),
                               rtol=1e-7, atol=0)
    assert (psnr(copied, target, reduction="none") > psnr(copied, target, reduction="none", mask=mask) + 3).all()
    for p, t, m, got in zip(copied, target, mask, ssim(copied, target, reduction="none", mask=mask), strict=True):
        _, full = structural_similarity(p.numpy(), t.numpy(), channel_axis=0, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, data_range=1.0, full=True)
        assert got.item() == pytest.approx(float(full[:, 5:-5, 5:-5][:, m[0, 5:-5, 5:-5].numpy()].mean()), abs=1e-4)
    with pytest.raises(PixforgeError, match="mask must be 3 x 1 x 32 x 40"):
        psnr(pred, target, mask=mask[:, :, :16])

@pytest.mark.parametrize(
    ("pred", "target", "match"),
    [
        (torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 17), "same shape"),
        (torch.rand(3, 16, 16), torch.rand(3, 16, 16), "N x C x H x W"),
        (torch.full((1, 3, 16, 16), float("nan")), torch.rand(1, 3, 16, 16), "NaN"),
    ],
)
def test_psnr_ssim_reject_bad_input(pred, target, match):
    for metric in (psnr, ssim):
        with pytest.raises(PixforgeError, match=match):
            metric(pred, target)


def test_ssim_rejects_images_smaller_than_its_window():
    with pytest.raises(PixforgeError, match="at least 11x11"):
        ssim(torch.rand(1, 3, 8, 32), torch.rand(1, 3, 8, 32))
    with pytest.raises(PixforgeError, match="reduction"):
        psnr(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), reduction="sum")


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 6))
    b = rng.normal(size=(150, 6)) @ rng.normal(size=(6, 6)) * 0.7 + 0.3
    mu_a, sigma_a = feature_stats(torch.from_numpy(a))
    mu_b, sigma_b = feature_stats(torch.from_numpy(b))
    assert frechet_distance(mu_a, sigma_a, mu_b, sigma_b) == pytest.approx(_np_fid(a, b), rel=1e-9)
    assert frechet_distance(mu_a, sigma_a, mu_a, sigma_a) == pytest.approx(0.0, abs=1e-9)


def test_fid_with_a_custom_net_matches_the_closed_form():
    net = TinyFeatures()
    real, fake = _images(64, 1), _images(48, 2, shift=0.15)
    fid = FrechetDistance(net)
    for batch in real.split(20):
        fid.update(batch, real=True)
    for batch in fake.split(20):
        fid.update(batch, real=False)
    result = fid.compute()
    a, b = _np_features(net, real), _np_features(net, fake)
    assert result["fd"] == pytest.approx(_np_fid(a, b), rel=1e-3)
    assert result["fd"] == pytest.approx(
        frechet_distance(*feature_stats(torch.from_numpy(a)), *feature_stats(torch.from_numpy(b))), rel=1e-6
    )
    assert result["features"] == TinyFeatures.label
    assert (result["num_real"], result["num_fake"]) == (64, 48)
    assert "torch_fidelity" not in sys.modules


def test_fid_of_a_set_with_itself_is_zero_and_reset_keeps_real_features():
    net = TinyFeatures()
    images = _images(40, 3)
    fid = FrechetDistance(net, reset_real_features=False)
    fid.update(images, real=True)
    fid.update(images, real=False)
    a = _np_features(net, images)
    scale = np.trace(np.cov(a, rowvar=False))
    assert abs(fid.compute()["fd"]) < 1e-6 * scale
    fid.reset()
    fid.update(_images(40, 4, shift=0.2), real=False)
    assert fid.compute()["fd"] > 1e-3 * scale


def test_kid_matches_the_unbiased_polynomial_mmd():
    net = TinyFeatures()
    real, fake = _images(30, 5), _images(30, 6, shift=0.1)
    kid = KernelDistance(net, subsets=1, subset_size=30)
    kid.update(real, real=True)
    kid.update(fake, real=False)
    result = kid.compute()
    assert result["kd_mean"] == pytest.approx(_np_kid(_np_features(net, real), _np_features(net, fake)), rel=1e-6)
    assert result["kd_std"] == 0.0
    assert result["features"] == TinyFeatures.label


def test_kid_subsets_are_seeded_and_leave_the_global_rng_alone():
    net = TinyFeatures()
    real, fake = _images(25, 7), _images(25, 8, shift=0.1)
    torch.manual_seed(123)
    next_draw = torch.rand(1)
    results = []
    for seed in (3, 3, 4):
        kid = KernelDistance(net, subsets=5, subset_size=10, seed=seed)
        kid.update(real, real=True)
        kid.update(fake, real=False)
        torch.manual_seed(123)
        results.append(kid.compute())
        assert torch.equal(torch.rand(1), next_draw)
    assert results[0] == results[1] != results[2]
    assert results[0]["kd_std"] > 0


def test_kid_leaves_the_gpu_generators_alone(monkeypatch):
    """torch.manual_seed also reseeds every CUDA generator (lazily, even before CUDA starts): a KID evaluation inside
    a GPU training run must not restart the run's CUDA random stream."""
    kid = KernelDistance(TinyFeatures(), subsets=2, subset_size=10, seed=5)
    kid.update(_images(12, 1), real=True)
    kid.update(_images(12, 2, shift=0.1), real=False)
    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append(seed))
    kid.compute()
    assert reseeded == []


def test_too_few_images_is_a_clear_error():
    fid = FrechetDistance(TinyFeatures())
    fid.update(_images(1, 0), real=True)
    fid.update(_images(5, 1), real=False)
    with pytest.raises(PixforgeError, match="at least 2 real"):
        fid.compute()
    kid = KernelDistance(TinyFeatures(), subset_size=50)
    kid.update(_images(10, 0), real=True)
    kid.update(_images(10, 1), real=False)
    with pytest.raises(PixforgeError, match="subset_size=50"):
        kid.compute()


def test_feature_net_contract_is_checked():
    bare = nn.Sequential(nn.Flatten(), nn.LazyLinear(4))
    with pytest.raises(PixforgeError, match="num_features"):
        FrechetDistance(bare)
    fid = FrechetDistance(bare, num_features=5)
    with pytest.raises(PixforgeError, match=r"returned shape \(2, 4\), expected \(2, 5\)"):
        fid.update(_images(2, 0), real=True)


def test_folder_scores_match_the_closed_form(tmp_path):
    from pixforge.core.io import write_image
    from pixforge.core.metrics import feature_stats, folder_batches, folder_scores, frechet_distance

    rng = np.random.default_rng(0)
    kept = {}
    for name, shift in (("real", 0), ("fake", 60)):
        kept[name] = []
        for i in range(6):
            size = (16, 20) if i < 3 else (16, 16)  # mixed sizes: a batch ends at a size change
            img = np.clip(rng.normal(100 + shift, 30, (*size, 3)), 0, 255).astype(np.uint8)
            write_image(tmp_path / name / f"{i}.png", img)
            kept[name].append(img)

    class MeanStd(torch.nn.Module):
        num_features = 6

        def forward(self, x):
            x = x.double() / 255
            return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)

    net = MeanStd()
    batches = list(folder_batches(tmp_path / "real", 2))
    assert [tuple(b.shape) for b in batches] == [(2, 3, 16, 20), (1, 3, 16, 20), (2, 3, 16, 16), (1, 3, 16, 16)]
    np.testing.assert_array_equal(torch.cat([b.flatten(1) for b in batches[:2]]).numpy(),
                                  np.stack([i.transpose(2, 0, 1).ravel() for i in kept["real"][:3]]))
    result = folder_scores(tmp_path / "real", tmp_path / "fake", net, kid=True, kid_subset_size=4, batch_size=2)
    # the expected features from the images the test wrote (PNG is lossless), one image at a time
    feats = {k: torch.cat([net(torch.from_numpy(i).permute(2, 0, 1)[None]) for i in v]) for k, v in kept.items()}
    expected = frechet_distance(*feature_stats(feats["real"]), *feature_stats(feats["fake"]))
    assert result["fd"] == pytest.approx(expected, rel=1e-3)
    assert result["num_real"] == result["num_fake"] == 6 and "kd_mean" in result


def test_fid_cli_without_weights_is_one_clear_line(tmp_path):
    from pixforge.core.io import write_image

    for name in ("real", "fake"):
        write_image(tmp_path / name / "a.png", np.zeros((8, 8, 3), np.uint8))
    env = {k: v for k, v in os.environ.items() if k != "PIXFORGE_INCEPTION_WEIGHTS"}
    env["TORCH_HOME"] = str(tmp_path / "torch-home")  # an empty hub cache
    cmd = [sys.executable, "-m", "pixforge.core.tool", "fid", str(tmp_path / "real"), str(tmp_path / "fake")]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "pt_inception-2015-12-05-6726825d.pth" in result.stderr
    result = subprocess.run([*cmd[:-2], str(tmp_path / "nothing"), str(tmp_path / "fake")], capture_output=True,
                            text=True, env=env)
    assert result.returncode == 2 and "nothing" in result.stderr
