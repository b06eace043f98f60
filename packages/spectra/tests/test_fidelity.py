"""analyze / compare as a fidelity tool: spreads, the KS test, split-half baselines, seeded random sampling."""

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from pixforge.core.io import write_image
from pixforge.spectra import get
from pixforge.spectra.analysis import measure, spread
from pixforge.spectra.fidelity import compare, ks_statistic
from pixforge.spectra.sources import open_source

SIZE, N = 32, 16


def measured(name, seed):
    return measure(get(name).sample(seed, range(N), SIZE, torch.device("cpu")), size=SIZE)


@pytest.fixture(scope="module")
def reports():
    spectrum = measured("spectrum", 0)
    return {"same": compare(spectrum, measured("spectrum", 1)),
            "different": compare(spectrum, measured("dead-leaves-squares", 0))}


def test_ks_separates_generators_and_not_seeds(reports):
    same = {k: v["ks_p_value"] for k, v in reports["same"]["statistics"].items()}
    different = {k: v["ks_p_value"] for k, v in reports["different"]["statistics"].items()}
    assert min(same.values()) > 0.05, same  # two datasets of one generator: no statistic tells them apart
    for name in ("wavelet_kurtosis", "sparsity", "distinct_colors"):  # smooth noise vs flat leaves
        assert different[name] < 1e-6, different


def test_split_half_baseline_is_below_the_distance_between_different_models(reports):
    report = reports["different"]
    for name in ("wavelet_kurtosis", "sparsity"):
        halves = report["statistics"][name]["ks_split_half"]
        assert report["statistics"][name]["ks_statistic"] == 1.0
        assert max(halves["a"], halves["b"]) < 0.6 < halves["between"], halves
    same = reports["same"]["statistics"]["sparsity"]["ks_split_half"]
    assert same["between"] < 2 * max(same["a"], same["b"]), same  # one generator: as far apart as its own halves


def test_spread_and_bootstrap_interval():
    values = np.random.default_rng(0).normal(5.0, 2.0, 400)
    s = spread(values, np.random.default_rng(1))
    assert s["mean"] == pytest.approx(values.mean(), abs=1e-4) and s["std"] == pytest.approx(2.0, abs=0.2)
    low, high = s["mean_ci95"]
    assert low < 5.0 < high and high - low == pytest.approx(2 * 1.96 * 2.0 / 20, rel=0.2)  # 1.96 sigma / sqrt(n)
    assert spread(np.array([np.nan, 1.0, 3.0]), np.random.default_rng(0))["images"] == 2


def test_ks_statistic_equals_scipy():
    rng = np.random.default_rng(0)
    for _ in range(50):
        x, y = rng.normal(size=rng.integers(1, 30)).round(1), rng.normal(0.5, size=rng.integers(1, 30)).round(1)
        assert ks_statistic(x, y) == pytest.approx(ks_2samp(x, y).statistic)


def test_files_are_drawn_at_random_with_the_seed(tmp_path):
    for i in range(12):
        write_image(tmp_path / f"{i:02d}.png", np.full((16, 16, 3), i, np.uint8))
    first = [path.name for path, _ in open_source(tmp_path, 5, SIZE, seed=0).items]
    assert first == [path.name for path, _ in open_source(tmp_path, 5, SIZE, seed=0).items] == sorted(first)
    assert first != [f"{i:02d}.png" for i in range(5)]  # not the first n
    assert first != [path.name for path, _ in open_source(tmp_path, 5, SIZE, seed=1).items]
    everything = open_source(tmp_path, 50, SIZE, seed=0)
    assert everything.count == everything.available == 12
    values = [int(image[0, 0, 0]) for image in open_source(tmp_path, 5, SIZE, seed=0).images()]
    assert values == [int(name[:2]) for name in first]


def test_shard_members_are_drawn_at_random(tmp_path):
    images = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 8, 8, 3), np.uint8)
    np.savez(tmp_path / "shard-000000.npz", images=images[:6])
    np.savez(tmp_path / "shard-000001.npz", images=images[6:])
    source = open_source(tmp_path, 4, SIZE, seed=3)
    got = [int(image[0, 0, 0]) for image in source.images()]
    assert source.available == 10 and len(set(got)) == 4 and got == sorted(got) and got != [0, 1, 2, 3]


def test_tar_shard_members_are_drawn_at_random(tmp_path):
    from pixforge.core.datagen import read_images
    from pixforge.spectra.cli import Spectra

    Spectra().generate("spectrum", n=5, size=16, out=str(tmp_path), format="webdataset-tar", per_shard=2, quiet=True)
    everything = np.stack(list(read_images(tmp_path)))
    source = open_source(tmp_path, 3, SIZE, seed=0)
    got = np.stack(list(source.images()))
    assert source.available == 5 and len(got) == 3
    picked = [int(np.flatnonzero((everything == image).all(axis=(1, 2, 3)))[0]) for image in got]
    assert picked == sorted(set(picked))
