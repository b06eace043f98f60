"""Random-StyleGAN image models: determinism per (seed, index), the 400-image network rule, shards, statistics."""

import numpy as np
import pytest
import torch

from pixforge.core.datagen import generate, read_images, rng
from pixforge.export.errors import PixforgeError
from pixforge.spectra import analysis, get
from pixforge.spectra.stylegan import VARIANTS, pink_noise, wavelet_bank

CPU = torch.device("cpu")
SMALL = {"channel_max": 32}


@pytest.mark.parametrize("name", VARIANTS)
def test_images_depend_only_on_seed_and_index(name):
    m = get(name, **SMALL)
    images = m.sample(3, range(4), 32, CPU)
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8 and images.std() > 10
    np.testing.assert_array_equal(m.sample(3, [3, 0], 32, CPU), images[[3, 0]])
    assert not np.array_equal(m.sample(4, [0], 32, CPU)[0], images[0])
    assert not np.array_equal(images[0], images[1])


def test_a_new_network_every_images_per_network():
    small, large = get("stylegan-highfreq", images_per_network=4, **SMALL), get("stylegan-highfreq", **SMALL)
    a, b = small.sample(0, range(8), 16, CPU), large.sample(0, range(8), 16, CPU)
    np.testing.assert_array_equal(a[:4], b[:4])  # images 0..3 come from network 0 in both
    assert not np.array_equal(a[4:], b[4:])  # images 4..7: network 1 vs network 0
    net0, _ = small.network(0, 0, 16)
    const0 = net0.b4.const.clone()
    assert not torch.equal(small.network(0, 1, 16)[0].b4.const, const0)
    assert torch.equal(small.network(0, 0, 16)[0].b4.const, const0)


def test_shards_and_batches_give_the_same_dataset(tmp_path):
    m = get("stylegan-oriented", **SMALL)
    generate(m, tmp_path / "one", n=6, size=16, seed=1, fmt="npz-shards", per_shard=6, show_progress=False)
    for k in (2, 1):
        generate(get("stylegan-oriented", batch=4, **SMALL), tmp_path / "split", n=6, size=16, seed=1,
                 shard=f"{k}/2", fmt="png", show_progress=False)
    one, split = (np.stack(list(read_images(tmp_path / d))) for d in ("one", "split"))
    np.testing.assert_array_equal(one, split)


def test_high_freq_is_flatter_and_sparse_is_sparser():
    stats = {name: analysis.analyze_images(get(name, **SMALL).sample(0, range(8), 64, CPU), size=64)
             for name in ("stylegan-random", "stylegan-highfreq", "stylegan-sparse")}
    slope = {k: v["spectrum_slope"]["of_mean_spectrum"] for k, v in stats.items()}
    assert slope["stylegan-random"] > 2.5 > slope["stylegan-highfreq"] + 0.5  # paper Fig. 6b: default is steep
    assert stats["stylegan-sparse"]["sparsity"]["mean"] > stats["stylegan-highfreq"]["sparsity"]["mean"] + 0.05


@pytest.mark.parametrize("alpha", [0.7, 1.4])
def test_noise_maps_have_the_commanded_spectrum(alpha):
    maps = [pink_noise(rng(0, i), 128, alpha, envelope=False) for i in range(4)]
    assert all(abs(m.std(ddof=1) - 1) < 1e-5 and abs(m.mean()) < 1e-5 for m in maps)
    assert analysis.fit_slope(np.mean([analysis.radial_spectrum(m) for m in maps], 0)) == pytest.approx(alpha,
                                                                                                       abs=0.1)


def test_wavelet_banks():
    high, sparse = wavelet_bank("highfreq"), wavelet_bank("sparse")
    assert high.shape == sparse.shape == (40, 3, 3)
    assert set(np.unique(high)) <= {-1.0, 0.0, 1.0}
    np.testing.assert_allclose(sparse[20:], -sparse[:20])  # the second half: negatives
    np.testing.assert_allclose(sparse[:16].mean(axis=(1, 2)), 0, atol=1e-6)  # rotated edges/lines: mean-free


def test_paper_options_change_the_images():
    base = get("stylegan-sparse", **SMALL).sample(0, [0], 16, CPU)
    for option in ("paper_alpha", "paper_filters"):
        assert not np.array_equal(get("stylegan-sparse", **{option: True}, **SMALL).sample(0, [0], 16, CPU), base)


def test_bad_sizes_and_options():
    with pytest.raises(PixforgeError, match="power-of-two sizes from 8"):
        get("stylegan-random").check_size(96)
    with pytest.raises(PixforgeError, match="multiple of 2"):
        get("stylegan-random", images_per_network=3).check_size(32)
    assert get("stylegan-random", batch=1).batch == 2 and get("stylegan-random", batch=5).batch == 6
