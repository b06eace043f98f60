"""Random-StyleGAN image models: determinism per (seed, index), the 400-image network rule, shards, statistics."""

import numpy as np
import pytest
import torch

from pixforge.core.datagen import generate, read_images, rng
from pixforge.core.nets.stylegan2 import modulated_conv2d
from pixforge.export.errors import PixforgeError
from pixforge.spectra import analysis, get
from pixforge.spectra.stylegan import (
    VARIANTS,
    normalize_colors,
    normalize_colors_torch,
    pair_modulated_conv2d,
    pink_noise,
    wavelet_bank,
)

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
    stats = {name: analysis.summarize(analysis.measure(get(name, **SMALL).sample(0, range(8), 64, CPU), size=64))
             for name in ("stylegan-random", "stylegan-highfreq", "stylegan-sparse")}
    slope = {k: v["slope_of_mean_spectrum"] for k, v in stats.items()}
    assert slope["stylegan-random"] > 2.5 > slope["stylegan-highfreq"] + 0.5  # paper Fig. 6b: default is steep
    sparsity = {k: v["statistics"]["sparsity"]["mean"] for k, v in stats.items()}
    assert sparsity["stylegan-sparse"] > sparsity["stylegan-highfreq"] + 0.05


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
    with pytest.raises(PixforgeError, match="multiple of --per-forward 2"):
        get("stylegan-random", images_per_network=3).check_size(32)
    with pytest.raises(PixforgeError, match="multiple of --per-forward 4"):
        get("stylegan-random", images_per_network=6, per_forward=4).check_size(32)
    with pytest.raises(PixforgeError, match="--per-forward must be one of 1, 2, 4"):
        get("stylegan-random", per_forward=3)
    assert get("stylegan-random", batch=1).batch == 2 and get("stylegan-random", batch=5).batch == 6
    assert get("stylegan-random", batch=5, per_forward=4).batch == 8


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
def test_pair_modulated_conv_equals_core_modulated_conv_per_pair(up, demodulate):
    g = torch.Generator().manual_seed(0)
    x, styles = torch.randn(6, 5, 8, 8, generator=g), torch.randn(6, 5, generator=g)
    weight, f = torch.randn(3, 4, 5, 3, 3, generator=g), torch.outer(*[torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8] * 2)
    out = pair_modulated_conv2d(x, weight, styles, up=up, padding=1, resample_filter=f, demodulate=demodulate)
    for p in range(3):
        ref = modulated_conv2d(x[2 * p: 2 * p + 2], weight[p], styles[2 * p: 2 * p + 2], up=up, padding=1,
                               resample_filter=f, demodulate=demodulate)
        torch.testing.assert_close(out[2 * p: 2 * p + 2], ref, rtol=1e-5, atol=1e-5)
    fours = pair_modulated_conv2d(x[:4], weight[:1], styles[:4], up=up, padding=1, resample_filter=f,
                                  demodulate=demodulate)  # one pass of 4 images
    ref = modulated_conv2d(x[:4], weight[0], styles[:4], up=up, padding=1, resample_filter=f, demodulate=demodulate)
    torch.testing.assert_close(fours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("per_forward", [1, 4])
def test_images_are_made_per_forward_at_a_time(per_forward, monkeypatch):
    """Official `generate_dataset.py`: the random layer weights, biases and noise picks are drawn per forward pass
    of BS images (`--per-forward`): the CPU reference makes pass `i // per_forward` at once, each image a function
    of (seed, index) whatever else is asked for, and the batched path agrees."""
    from pixforge.spectra.stylegan import RandomStyleGAN

    calls, forward = [], RandomStyleGAN.forward

    def counted(self, synthesis, pools, seed, pairs, device):
        images = forward(self, synthesis, pools, seed, pairs, device)
        calls.append((list(pairs), len(images)))
        return images

    monkeypatch.setattr(RandomStyleGAN, "forward", counted)
    m = get("stylegan-sparse", per_forward=per_forward, images_per_network=8, **SMALL)
    images = m.sample(0, range(8), 16, CPU)
    assert calls == [([k], per_forward) for k in range(8 // per_forward)]
    assert images.shape == (8, 16, 16, 3) and len({im.tobytes() for im in images}) == 8
    np.testing.assert_array_equal(m.sample(0, [5], 16, CPU)[0], images[5])
    assert not np.array_equal(images, get("stylegan-sparse", images_per_network=8, **SMALL).sample(0, range(8), 16,
                                                                                                  CPU))
    batched = m.sample_batched(0, range(8), 16, CPU)
    assert np.abs(batched.astype(int) - images.astype(int)).max() <= 1


@pytest.mark.parametrize("name", VARIANTS)
def test_batched_forward_equals_the_pairwise_reference(name):
    m = get(name, images_per_network=4, batch=6, paper_filters=name == "stylegan-oriented", **SMALL)  # blocks of 3
    ref = m.sample(0, range(12), 32, CPU)  # pairs straddle blocks and networks
    batched = m.sample_batched(0, range(12), 32, CPU)
    diff = np.abs(ref.astype(int) - batched.astype(int))
    assert batched.shape == ref.shape and batched.dtype == np.uint8
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # float rounding only
    np.testing.assert_array_equal(m.sample_batched(0, [9, 2], 32, CPU), batched[[9, 2]])  # not the batch's mix
    assert not np.array_equal(batched[4], batched[6])


def test_batched_colour_normalisation_equals_the_numpy_one():
    images = torch.randn(3, 3, 16, 16, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.1])[:, None, None]
    got = normalize_colors_torch(images, [rng(0, i, 2) for i in range(3)]).numpy()
    for i in range(3):
        np.testing.assert_array_equal(got[i], normalize_colors(images[i].numpy(), rng(0, i, 2)))


@pytest.mark.cuda
@pytest.mark.parametrize("name", VARIANTS)
def test_cuda_batches_agree_with_the_cpu_reference(name):
    m = get(name, batch=8, **SMALL)
    cpu = m.sample(0, range(8), 64, CPU).astype(int)
    cuda = m.sample(0, range(8), 64, torch.device("cuda")).astype(int)  # TF32 convolutions: a few levels
    assert np.abs(cuda - cpu).mean() < 1.0 and np.percentile(np.abs(cuda - cpu), 99) <= 4
    np.testing.assert_array_equal(m.sample(0, [5], 64, torch.device("cuda"))[0], cuda[5].astype(np.uint8))


@pytest.mark.parametrize("name", VARIANTS)
def test_batched_forward_keeps_every_tensor_on_the_device(name):
    """The GPU path on the meta device: any tensor left on the CPU (weights, noise maps, biases drawn with NumPy)
    raises there, as it would on CUDA."""
    import copy

    meta = torch.device("meta")
    m = get(name, batch=4, **SMALL)
    synthesis, pools = m.network(0, 0, 32)
    out = m.forward(copy.deepcopy(synthesis).to(meta), pools, 0, range(2), meta)
    assert out.device == meta and out.shape == (4, 3, 32, 32)


def test_building_a_network_leaves_the_gpu_generators_alone(monkeypatch):
    """torch.manual_seed would reseed every CUDA generator too (a training run's stream, when generated on the fly)."""
    torch.manual_seed(7)
    expected = torch.rand(2)
    torch.manual_seed(7)
    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append(seed))
    get("stylegan-random", **SMALL).network(12345, 0, 16)
    assert reseeded == [] and torch.equal(torch.rand(2), expected)
