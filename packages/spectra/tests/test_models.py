"""Image models: options, the commanded statistics, coverage, rasterisation, pyramid (golden outputs: test_golden)."""

import numpy as np
import pytest
import torch

from pixforge.core.datagen import rng
from pixforge.export.errors import PixforgeError
from pixforge.spectra import NAMES, analysis, deadleaves, get, pyramid, statistical

CPU = torch.device("cpu")
SMALL_TEXTURES = {"texture_pool": 3, "texture_model": "spectrum-color", "texture_size": 32}


def test_unknown_model_option_and_size():
    with pytest.raises(PixforgeError, match="unknown model"):
        get("stylegan-foo")
    with pytest.raises(PixforgeError, match="no option"):
        get("spectrum", paper_shapes=True)
    with pytest.raises(PixforgeError, match="power-of-two"):
        get("wmm").check_size(96)
    with pytest.raises(PixforgeError, match="even sizes"):
        get("spectrum").check_size(33)


@pytest.mark.parametrize("index", range(4))
def test_spectrum_images_have_the_commanded_slope(index):
    size = 128
    m = get("spectrum", correlate_channels=False)
    slopes = m.recipe(0, index, size)["slopes"]
    image = m.sample(0, [index], size, CPU)[0].astype(np.float64)
    assert abs(slopes[0, 0] - slopes[0, 1]) < 0.5  # the code's nearly equal exponents
    f = np.arange(1, size // 8)
    for c in range(3):
        amp = np.abs(np.fft.fft2(image[..., c]))
        along_x = np.polyfit(np.log(f), np.log(amp[0, f]), 1)[0]  # fy = 0: 1 / |fx/S|^sx
        along_y = np.polyfit(np.log(f), np.log(amp[f, 0]), 1)[0]
        assert abs(along_x + slopes[c, 0]) < 0.1 and abs(along_y + slopes[c, 1]) < 0.1


def test_paper_spectrum_draws_independent_exponents():
    slopes = np.concatenate([get("spectrum", paper_spectrum=True).recipe(0, i, 32)["slopes"] for i in range(20)])
    assert np.abs(slopes[:, 0] - slopes[:, 1]).max() > 0.5
    assert slopes.min() >= 0.5 and slopes.max() <= 3.5


@pytest.mark.parametrize("alpha", [0.8, 1.2, 1.8])
def test_analysis_recovers_the_slope_of_power_law_noise(alpha):
    size = 128
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size)))
    f[0, 0] = 1
    noise = np.random.default_rng(0).standard_normal((16, size, size))
    fits = [analysis.fit_slope(analysis.radial_spectrum(np.fft.ifft2(np.fft.fft2(n) / f ** alpha).real))
            for n in noise]
    assert abs(np.mean(fits) - alpha) < 0.1


def test_histogram_matching_reproduces_the_target():
    x = torch.randn(2, 64, 64)
    target = torch.from_numpy(np.stack([np.exp(-np.abs(statistical.WMM_BINS / 20) ** 0.6)] * 2)).float()
    bins = torch.from_numpy(statistical.WMM_BINS).float().expand(2, -1)
    y = statistical.histo_match(x, *statistical.histogram_target(target, bins))
    for k in range(2):
        hist = np.histogram(y[k].numpy(), bins=np.append(statistical.WMM_BINS - 0.25, 200.25))[0]
        cdf, want = np.cumsum(hist) / hist.sum(), np.cumsum(target[k].numpy()) / target[k].sum().item()
        assert np.abs(cdf - want).max() < 0.02  # Kolmogorov-Smirnov distance


def test_color_model_output_has_the_sampled_decorrelated_histograms():
    size = 64
    m = get("color", iterations=1)
    color = m.recipe(3, 0, size)["color"]
    image = m.sample(3, [0], size, CPU)[0].reshape(-1, 3).astype(np.float64)
    decor = (image - image.mean(0)) @ color["basis"]  # back into the model's colour basis (up to scale)
    for c in range(3):
        target_cdf = np.cumsum(color["hist"][c]) / color["hist"][c].sum()
        centres = color["centres"][c]
        # standardise both: the output went through an affine min-max scaling
        values = np.sort(decor[:, c])
        quantiles = (np.arange(values.size) + 0.5) / values.size
        target = np.interp(quantiles, target_cdf, centres)
        standard = (values - values.mean()) / values.std()
        target = (target - target.mean()) / target.std()
        assert np.abs(standard - target).mean() < 0.1


def test_steerable_pyramid_is_a_tight_frame():
    x = torch.rand(2, 3, 64, 64, dtype=torch.float32)
    bands = pyramid.build(x, scales=2)
    assert [b.shape[-1] for b in bands] == [64] * 5 + [32] * 4 + [16]
    high, levels, low = pyramid.decompose(x, scales=2)
    assert [b.shape for b in levels] == [(2, 3, 4, 64, 64), (2, 3, 4, 32, 32)]
    np.testing.assert_allclose(pyramid.compose(high, levels, low).numpy(), x.numpy(), atol=1e-5)
    energy = sum(float((b.double() ** 2).sum()) * (b.shape[-1] / 64) ** 2 for b in bands)  # Parseval per size
    assert energy == pytest.approx(float((x.double() ** 2).sum()), rel=0.05)


@pytest.mark.parametrize("name", ["dead-leaves-squares", "dead-leaves-oriented", "dead-leaves-shapes"])
def test_dead_leaves_cover_the_whole_canvas(name):
    m = get(name)
    for index in range(3):
        labels, leaves = deadleaves.paint(48, rng(0, index), m.kinds())
        assert (labels >= 0).all() and labels.max() == len(leaves["kind"]) - 1  # the last leaf completes it
        if name == "dead-leaves-squares":
            poly = leaves["poly"]
            assert np.allclose(poly[:, 0, 1], poly[:, 1, 1]) and np.allclose(poly[:, 1, 0], poly[:, 2, 0])


def test_leaf_radii_follow_the_official_power_law():
    leaves = deadleaves.sample_leaves(rng(0, 0), 1000, deadleaves.MIXED, count=20000)
    r = leaves["radius"] / 1000
    assert r.min() >= 0.029 and r.max() <= 1.0
    for q in (0.05, 0.1, 0.3):
        expected = deadleaves.R_CDF[np.searchsorted(deadleaves.R_LIST, q) - 1]
        assert abs((r < q).mean() - expected) < 0.03
    share = np.bincount(leaves["kind"], minlength=6) / len(r)
    np.testing.assert_allclose(share, 1 / 6, atol=0.02)  # the code's six shapes
    paper = np.unique(deadleaves.sample_leaves(rng(0, 1), 100, deadleaves.PAPER_MIXED, 500)["kind"])
    assert set(paper.tolist()) == {deadleaves.CIRCLE, deadleaves.RECTANGLE, deadleaves.TRIANGLE}


def test_textured_leaves_show_pool_textures():
    m = get("dead-leaves-textured", **SMALL_TEXTURES)
    image = m.sample(0, [0], 32, CPU)[0]
    pool = m.textures(0, 32)
    labels, leaves = deadleaves.paint(32, rng(0, 0), m.kinds(), m.texture_pool)
    ids = leaves["texture"][labels]
    rows, cols = np.indices((32, 32))
    np.testing.assert_array_equal(image, pool[ids, rows, cols])


def test_leaf_rasterisation_agrees_with_opencv():
    cv2 = pytest.importorskip("cv2")
    size = 96
    leaves = deadleaves.sample_leaves(rng(5, 0), size, deadleaves.MIXED, count=60)
    ious = []
    for k in range(60):
        single = {key: value[k:k + 1] for key, value in leaves.items()}
        labels = np.full((size, size), -1, np.int32)
        half = deadleaves.edges(single["poly"])
        ys = np.arange(size, dtype=np.float64)
        if single["kind"][0] == deadleaves.CIRCLE:
            lo, hi = deadleaves._circle_spans(*single["centre"][0], single["radius"][0], ys)
        else:
            lo, hi = deadleaves._polygon_spans(half, 0, ys)
        xs = np.arange(size)[None, :]
        ours = (xs >= lo[:, None]) & (xs <= hi[:, None])
        ref = np.zeros((size, size), np.uint8)
        if single["kind"][0] == deadleaves.CIRCLE:
            cx, cy = single["centre"][0].astype(int)
            cv2.circle(ref, (int(cx), int(cy)), int(single["radius"][0]), 1, -1)
        else:
            cv2.fillPoly(ref, single["poly"].astype(np.int32), 1)
        ref = ref > 0
        if (ours | ref).sum() >= 20:
            ious.append((ours & ref).sum() / (ours | ref).sum())
        assert labels.size
    assert np.mean(ious) > 0.9 and np.min(ious) > 0.6


def test_every_model_class_is_exported():
    import pixforge.spectra as spectra

    public = {spectra.DeadLeaves, spectra.Statistical, spectra.RandomStyleGAN, spectra.FeatureVis}
    assert {type(get(name)) for name in NAMES if name != "featurevis-deadleaves"} == public
    assert set(spectra.__all__) >= {cls.__name__ for cls in public}
