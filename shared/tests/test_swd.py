"""Sliced Wasserstein distance (ProGAN "SWD x1e3"): pyramid against its formula, SW against closed forms."""

import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
import torch

from pixforge.core.io import RandomCrops, embedded_images
from pixforge.core.swd import (
    SWD,
    SWDInputError,
    _patches,
    descriptors,
    gaussian_pyramid,
    laplacian_pyramid,
    normalize_descriptors,
    num_levels,
    pyr_down,
    pyr_up,
    random_directions,
    reconstruct_laplacian_pyramid,
    sliced_wasserstein,
)
from pixforge.export.errors import PixforgeError

K = np.array([1.0, 4.0, 6.0, 4.0, 1.0])
K2 = np.outer(K, K) / 256.0  # ProGAN's 5x5 Gaussian filter


def _rand(shape, seed=0, dtype=torch.float64):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2 - 1


# --- the binomial pyramid ---------------------------------------------------------------------------------


def test_num_levels_as_progan():
    assert [num_levels(s) for s in (15, 16, 31, 32, 64, 128, 256, 1024)] == [0, 1, 1, 2, 3, 4, 5, 7]
    assert num_levels(64, 32) == num_levels(32, 64) == 2  # the smaller side decides
    assert num_levels(64, min_resolution=8) == 4


def test_pyr_down_of_a_delta_is_the_subsampled_filter():
    x = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    x[0, 0, 8, 8] = 1.0
    y = pyr_down(x)[0, 0].numpy()
    expected = np.zeros((8, 8))
    expected[3:6, 3:6] = np.outer([1, 6, 1], [1, 6, 1]) / 256.0  # rows/cols 6, 8, 10 of the blurred delta
    np.testing.assert_allclose(y, expected, atol=1e-15)
    assert y.sum() == pytest.approx(0.25)


def test_pyr_up_of_a_delta_is_four_times_the_filter():
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    x[0, 0, 4, 4] = 1.0
    y = pyr_up(x)[0, 0].numpy()
    expected = np.zeros((16, 16))
    expected[6:11, 6:11] = 4 * K2
    np.testing.assert_allclose(y, expected, atol=1e-15)
    assert y.sum() == pytest.approx(4.0)


def test_pyramid_sums_are_preserved_away_from_the_border():
    x = torch.zeros(2, 3, 32, 32, dtype=torch.float64)
    x[..., 4:28, 4:28] = _rand((2, 3, 24, 24))
    down = pyr_down(x)
    torch.testing.assert_close(down.sum(dim=(-2, -1)) * 4, x.sum(dim=(-2, -1)), rtol=1e-12, atol=1e-12)
    y = torch.zeros(2, 3, 16, 16, dtype=torch.float64)
    y[..., 3:13, 3:13] = _rand((2, 3, 10, 10), seed=1)
    torch.testing.assert_close(pyr_up(y).sum(dim=(-2, -1)), 4 * y.sum(dim=(-2, -1)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size", [(16, 16), (17, 15), (9, 12)])
def test_constant_images_are_kept_by_both_filters(size):
    x = torch.full((1, 2, *size), 0.3, dtype=torch.float64)
    down = pyr_down(x)
    assert down.shape[-2:] == ((size[0] + 1) // 2, (size[1] + 1) // 2)
    torch.testing.assert_close(down, torch.full_like(down, 0.3))
    up = pyr_up(down, size)
    torch.testing.assert_close(up, x)


@pytest.mark.parametrize("size", [(16, 16), (13, 18)])
def test_pyr_down_and_up_match_progans_mirror_convolution(size):
    """ProGAN: ``convolve(x, g, mode="mirror")[::2, ::2]`` and ``convolve(zero_inserted, 4 g, mode="mirror")``."""
    x = _rand((2, 3, *size), seed=2)
    xn = x.numpy()
    ref_down = scipy.ndimage.convolve(xn, K2[None, None], mode="mirror")[:, :, ::2, ::2]
    np.testing.assert_allclose(pyr_down(x).numpy(), ref_down, atol=1e-12)
    zero_inserted = np.zeros((2, 3, 2 * size[0], 2 * size[1]))
    zero_inserted[:, :, ::2, ::2] = xn
    ref_up = scipy.ndimage.convolve(zero_inserted, 4 * K2[None, None], mode="mirror")
    np.testing.assert_allclose(pyr_up(x).numpy(), ref_up, atol=1e-12)


def test_pyr_up_rejects_sizes_pyr_down_cannot_come_from():
    with pytest.raises(ValueError, match="2n or 2n - 1"):
        pyr_up(torch.zeros(1, 1, 8, 8), (18, 16))


def test_laplacian_pyramid_levels_and_exact_reconstruction():
    x = _rand((3, 3, 64, 48), seed=3)
    pyramid = laplacian_pyramid(x, num_levels(64, 48))
    assert [tuple(p.shape[-2:]) for p in pyramid] == [(64, 48), (32, 24)]
    gauss = gaussian_pyramid(x, 2)
    torch.testing.assert_close(pyramid[-1], gauss[-1])
    torch.testing.assert_close(pyramid[0], x - pyr_up(gauss[1]))
    torch.testing.assert_close(reconstruct_laplacian_pyramid(pyramid), x, rtol=0, atol=1e-12)

    x32 = _rand((2, 3, 67, 129), seed=4, dtype=torch.float32)  # odd sizes, float32
    pyramid = laplacian_pyramid(x32, 4)
    assert [tuple(p.shape[-2:]) for p in pyramid] == [(67, 129), (34, 65), (17, 33), (9, 17)]
    torch.testing.assert_close(reconstruct_laplacian_pyramid(pyramid), x32, rtol=0, atol=1e-5)


def test_laplacian_of_a_constant_image_has_zero_detail():
    pyramid = laplacian_pyramid(torch.full((1, 3, 32, 32), -0.5), 3)
    for detail in pyramid[:-1]:
        assert detail.abs().max() < 1e-6
    torch.testing.assert_close(pyramid[-1], torch.full((1, 3, 8, 8), -0.5))


# --- descriptors ------------------------------------------------------------------------------------------


def test_patches_are_windows_inside_the_image():
    n, c, h, w = 2, 3, 16, 20
    coords = torch.arange(n * c * h * w, dtype=torch.float64).reshape(n, c, h, w)  # value = flat index
    draws = torch.randint(0, 2**62, (n, 2, 500), generator=torch.Generator().manual_seed(0))
    patches = _patches(coords, 7, 500, draws)
    assert patches.shape == (n * 500, c, 7, 7)
    flat = patches.long()
    img, rem = flat // (c * h * w), flat % (c * h * w)
    chan, y, x = rem // (h * w), rem % (h * w) // w, rem % w
    assert (img == torch.arange(n).repeat_interleave(500)[:, None, None, None]).all()
    assert (chan == torch.arange(c)[None, :, None, None]).all()
    assert (y[..., 1:, :] - y[..., :-1, :] == 1).all() and (x[..., 1:] - x[..., :-1] == 1).all()
    centres_y, centres_x = y[:, 0, 3, 3], x[:, 0, 3, 3]
    # ProGAN: randint(3, size - 3), i.e. centres 3 .. size - 4, every one of them reached
    assert set(centres_y.tolist()) == set(range(3, h - 3)) and set(centres_x.tolist()) == set(range(3, w - 3))


def test_descriptors_shapes_and_normalisation():
    x = _rand((4, 3, 32, 32), seed=5, dtype=torch.float32)
    levels = descriptors(x, generator=torch.Generator().manual_seed(0))
    assert [tuple(d.shape) for d in levels] == [(4 * 128, 147), (4 * 128, 147)]
    for d in levels:
        per_channel = d.reshape(-1, 3, 49).transpose(0, 1).reshape(3, -1)
        torch.testing.assert_close(per_channel.mean(1), torch.zeros(3), atol=1e-5, rtol=0)
        torch.testing.assert_close(per_channel.std(1, correction=0), torch.ones(3), atol=1e-5, rtol=0)
    raw = descriptors(x, nhoods_per_image=5, generator=torch.Generator().manual_seed(0), normalize=False)
    assert [tuple(d.shape) for d in raw] == [(20, 3, 7, 7), (20, 3, 7, 7)]
    torch.testing.assert_close(normalize_descriptors([raw[0][:7], raw[0][7:]]), normalize_descriptors(raw[0]))
    with pytest.raises(ValueError, match="at least 16x16"):
        descriptors(torch.zeros(2, 3, 15, 32))


def test_descriptors_same_for_uint8_and_float_and_across_batching():
    u8 = (torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(6)) * 255).round().to(torch.uint8)
    as_float = u8.double() / 127.5 - 1
    a = descriptors(u8, generator=torch.Generator().manual_seed(1))
    b = descriptors(as_float, generator=torch.Generator().manual_seed(1))
    for da, db in zip(a, b, strict=True):
        torch.testing.assert_close(da.double(), db, atol=1e-4, rtol=0)
    g = torch.Generator().manual_seed(1)
    split = [descriptors(part, generator=g, normalize=False) for part in (as_float[:2], as_float[2:])]
    whole = descriptors(as_float, generator=torch.Generator().manual_seed(1), normalize=False)
    for level, (first, second) in enumerate(zip(*split, strict=True)):
        torch.testing.assert_close(torch.cat([first, second]), whole[level])


# --- sliced Wasserstein -----------------------------------------------------------------------------------


def test_random_directions_are_unit_vectors():
    dirs = random_directions(147, 128, torch.Generator().manual_seed(0))
    assert dirs.shape == (147, 128) and dirs.dtype == torch.float32
    torch.testing.assert_close(dirs.norm(dim=0), torch.ones(128))


def test_identical_sets_give_zero():
    a = _rand((500, 20), seed=7)
    assert sliced_wasserstein(a, a.clone(), generator=torch.Generator().manual_seed(0)) == 0.0


def test_one_dimension_is_the_closed_form_w1():
    a, b = _rand((300, 1), seed=8), _rand((300, 1), seed=9) * 0.5 + 0.2
    w1 = scipy.stats.wasserstein_distance(a[:, 0].numpy(), b[:, 0].numpy())
    by_sorting = np.abs(np.sort(a[:, 0].numpy()) - np.sort(b[:, 0].numpy())).mean()
    assert w1 == pytest.approx(by_sorting, rel=1e-12)  # directions are +-1; |sort(-a) - sort(-b)| is the same
    assert sliced_wasserstein(a, b, 3, 5, torch.Generator().manual_seed(0)) == pytest.approx(w1, rel=1e-12)


def test_symmetric():
    a, b = _rand((400, 10), seed=10), _rand((400, 10), seed=11) ** 3
    ab = sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(3))
    ba = sliced_wasserstein(b, a, generator=torch.Generator().manual_seed(3))
    assert ab == pytest.approx(ba, rel=1e-12) and ab > 0


def _numpy_sliced_wasserstein(a, b, dirs_list):
    return np.mean([np.abs(np.sort(a @ d, axis=0) - np.sort(b @ d, axis=0)).mean() for d in dirs_list])


def test_matches_numpy_on_the_same_directions_and_a_shift_gives_its_projection():
    a = _rand((256, 12), seed=12)
    b = torch.sin(3 * _rand((256, 12), seed=13))
    g = torch.Generator().manual_seed(5)
    dirs = [random_directions(12, 16, g, dtype=torch.float64).numpy() for _ in range(3)]
    got = sliced_wasserstein(a, b, 3, 16, torch.Generator().manual_seed(5))
    assert got == pytest.approx(_numpy_sliced_wasserstein(a.numpy(), b.numpy(), dirs), rel=1e-12)

    shift = 0.7
    got = sliced_wasserstein(a, a + shift, 3, 16, torch.Generator().manual_seed(5))
    expected = np.mean([np.abs(shift * d.sum(axis=0)).mean() for d in dirs])  # |<shift * 1, d>| per direction
    assert got == pytest.approx(expected, rel=1e-10)
    assert got == pytest.approx(_numpy_sliced_wasserstein(a.numpy(), a.numpy() + shift, dirs), rel=1e-10)


def test_sliced_wasserstein_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        sliced_wasserstein(torch.zeros(10, 3), torch.zeros(11, 3))


# --- the SWD metric on image sets -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crops():
    dataset = RandomCrops(embedded_images(["chelsea"]), 32, 256, seed=0)
    return torch.stack([dataset[i] for i in range(len(dataset))]).float()


def _swd(real, fake, **kwargs):
    kwargs = {"nhoods_per_image": 32, "dir_repeats": 1, **kwargs}
    metric = SWD(**kwargs)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return metric.compute()


def test_same_images_score_zero(crops):
    result = _swd(crops[:40], crops[:40])
    assert result["swd"] == 0.0 and result["swd_levels"] == {"32": 0.0, "16": 0.0}
    assert result["num_real"] == result["num_fake"] == 40


def test_same_distribution_scores_lower_than_blurred_or_noise(crops):
    real, other = crops[:128], crops[128:]
    same = _swd(real, other)
    blurred = _swd(real, pyr_up(pyr_down(other), other.shape[-2:]))
    noise = _swd(real, torch.rand(other.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    assert list(same["swd_levels"]) == ["32", "16"]
    assert same["swd"] == pytest.approx(np.mean(list(same["swd_levels"].values())))
    assert same["swd"] < 0.75 * blurred["swd"]
    assert same["swd_levels"]["32"] < 0.75 * blurred["swd_levels"]["32"]  # the blur removes the finest band
    assert noise["swd"] > 3 * same["swd"] and noise["swd"] > 2 * blurred["swd"]


def test_deterministic_with_a_seed_and_independent_of_batching_and_uint8(crops):
    real, fake = crops[:48], torch.flip(crops[48:96], dims=[-2])
    first = _swd(real, fake, seed=3)
    assert _swd(real, fake, seed=3) == first
    assert _swd(real, fake, seed=4)["swd"] != first["swd"]
    batched = SWD(nhoods_per_image=32, dir_repeats=1, seed=3)
    for part in real.split(20):
        batched.update(part, real=True)
    for part in fake.split(7):
        batched.update(part, real=False)
    assert batched.compute() == first
    to_u8 = ((real + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    from_u8 = _swd(to_u8, to_u8.float() / 127.5 - 1, seed=3)
    assert from_u8["swd"] < 1e-3  # same descriptors up to float rounding


def test_reset_real_false_keeps_the_real_side(crops):
    real, fake_a, fake_b = crops[:32], crops[32:64], crops[64:96]
    metric = SWD(nhoods_per_image=16, dir_repeats=1, reset_real=False)
    metric.update(real, real=True)
    metric.update(fake_a, real=False)
    first = metric.compute()
    metric.reset()
    assert metric.num_real == 32 and metric.num_fake == 0
    metric.update(fake_b, real=False)
    assert metric.compute() == _swd(real, fake_b, nhoods_per_image=16)
    metric.reset()
    metric.update(fake_a, real=False)
    assert metric.compute() == first  # the fake side's positions restart with the seed at reset

    resetting = SWD(nhoods_per_image=16, dir_repeats=1)
    resetting.update(real, real=True)
    resetting.update(fake_a, real=False)
    resetting.reset()
    resetting.update(fake_a, real=False)
    with pytest.raises(ValueError, match="got 0 real"):
        resetting.compute()


def test_unequal_set_sizes_subsample_the_larger(crops):
    result = _swd(crops[:20], crops[100:130])
    assert result["num_real"] == 20 and result["num_fake"] == 30 and result["swd"] > 0


def test_errors_too_few_too_small_mismatched(crops):
    metric = SWD()
    metric.update(crops[:1], real=True)
    metric.update(crops[1:3], real=False)
    with pytest.raises(SWDInputError, match="at least 2 real and 2 generated images, got 1 real"):
        metric.compute()
    with pytest.raises(PixforgeError, match="at least 16x16, got 15x32"):
        metric.update(torch.zeros(2, 3, 15, 32), real=False)
    with pytest.raises(ValueError, match=r"C x H x W = \(3, 32, 32\)"):
        metric.update(torch.zeros(2, 3, 64, 64), real=False)
    with pytest.raises(ValueError, match="N x C x H x W"):
        metric.update(torch.zeros(3, 32, 32), real=True)
    with pytest.raises(ValueError, match="float images in"):
        SWD().update(torch.zeros(2, 3, 32, 32, dtype=torch.int32), real=True)


def test_to_device_moves_descriptors(crops):
    metric = SWD(nhoods_per_image=8, dir_repeats=1).to("cpu")
    metric.update(crops[:4], real=True)
    metric.update(crops[4:8], real=False)
    assert metric.to(torch.device("cpu")).compute()["swd"] > 0
    if torch.cuda.is_available():
        on_gpu = SWD(nhoods_per_image=8, dir_repeats=1).to("cuda")
        on_gpu.update(crops[:4], real=True)
        on_gpu.update(crops[4:8], real=False)
        assert on_gpu.compute()["swd"] == pytest.approx(metric.compute()["swd"], rel=1e-3)
