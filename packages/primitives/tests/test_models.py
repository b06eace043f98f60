"""The four synthesizers: determinism, golden checksums, the official shape/saliency rules, spectra, painters."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from pixforge.core.datagen import rng
from pixforge.export.errors import PixforgeError
from pixforge.primitives import NAMES, get, pink, shapes

CPU = torch.device("cpu")

# Golden outputs of sample(SEED, INDICES, SIZE) on the CPU: a silent change to a synthesizer fails here, on any CPU.
# Primitives and Primitives-S are exact computations (integer draws, float64 row spans with IEEE-exact arithmetic,
# palette lookups): exact sha256 checksums (16 hex digits). PinkNoise and Primitives-PS filter float32 noise
# with torch's FFT, which rounds differently with the CPU's kernels and FFT library: they are compared with the
# images in data/reference.npz, every pixel within 1 grey level and >= 99 % identical (see `close_to_reference`).
# Both hold under ATEN_CPU_CAPABILITY=default/avx2/avx512, NPY_DISABLE_CPU_FEATURES=X86_V3,X86_V4,AVX512_ICL and
# OMP_NUM_THREADS=1/2. Rewrite the reference after an intended change:
# `python packages/primitives/tests/test_models.py`.
SEED, INDICES, SIZE = 7, [0, 1, 2], 64
EXACT = {"primitives": "dda3d06f6fabb8bd", "primitives-s": "7af1b6fd3e52aebb"}
FLOAT = ("pinknoise", "primitives-ps")
REFERENCE = Path(__file__).parent / "data" / "reference.npz"


def close_to_reference(images: np.ndarray, reference: np.ndarray) -> bool:
    """Every pixel within 1 grey level of the reference and >= 99 % of them identical: float round-off moves a
    pixel by at most one level (truncation to uint8), a change to the model moves many by more."""
    diff = np.abs(images.astype(np.int16) - reference)
    return images.shape == reference.shape and diff.max() <= 1 and np.mean(diff == 0) >= 0.99


@pytest.mark.parametrize("name", NAMES)
def test_golden_outputs_and_determinism(name):
    model = get(name)
    images = model.sample(SEED, INDICES, SIZE, CPU)
    assert images.shape == (3, SIZE, SIZE, 3) and images.dtype == np.uint8
    if name in EXACT:
        assert hashlib.sha256(images.tobytes()).hexdigest()[:16] == EXACT[name]
    else:
        with np.load(REFERENCE) as reference:
            assert close_to_reference(images, reference[name])
    again = model.sample(SEED, INDICES[::-1], SIZE, CPU)  # order and batch contents do not matter
    np.testing.assert_array_equal(again, images[::-1])
    assert not np.array_equal(model.sample(SEED + 1, [0], SIZE, CPU)[0], images[0])


@pytest.mark.parametrize("change", ["exponent range 3.5 -> 3.4", "frequency spacing 0.2 -> 0.21",
                                    "channels scaled apart", "paper exponents"])
def test_the_float_reference_catches_a_change_to_the_model(change, monkeypatch):
    options = {}
    if change.startswith("exponent"):
        monkeypatch.setattr(pink, "EXPONENT_RANGE", (0.5, 3.4))
    elif change.startswith("frequency"):
        monkeypatch.setattr(pink, "FREQ_SPACING", 0.21)
    elif change.startswith("channels"):
        joint = pink.renormalize
        monkeypatch.setattr(pink, "renormalize",
                            lambda x: np.concatenate([joint(x[:, c:c + 1])[..., :1] for c in range(3)], axis=-1))
    else:
        options["paper_exponents"] = True
    with np.load(REFERENCE) as reference:
        for name in FLOAT:
            assert not close_to_reference(get(name, **options).sample(SEED, INDICES, SIZE, CPU), reference[name])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [16, 100, 300])
def test_any_size_works(name, size):
    img = get(name).sample(0, [3], size, CPU)[0]
    assert img.shape == (size, size, 3)
    assert img.std() > 0


def test_bad_model_and_size():
    with pytest.raises(PixforgeError, match="unknown model"):
        get("dead-leaves")
    with pytest.raises(PixforgeError, match="16 to 4096"):
        get("primitives").check_size(8)


def test_particles_follow_the_official_rules():
    size = 256
    kinds, geom, colors = shapes.sample_particles(rng(0, 1), size)
    assert len(kinds) == shapes.SHAPES and colors.max() <= 254
    counts = np.bincount(kinds, minlength=4) / len(kinds)
    assert counts[shapes.LINE] < counts[shapes.CIRCLE] + 0.15  # 1/7 lines, 2/7 of each other kind
    max_size = np.round(size // 5 * (100 - np.arange(100)) / 100 + 2)
    line, circle, ellipse, rect = (kinds == k for k in range(4))
    assert (geom[line, 4] >= 1).all() and (geom[line, 4] < max_size[line]).all()
    assert (geom[line, 0] <= geom[line, 2]).all() and (geom[line, 1] <= geom[line, 3]).all()  # down-right
    assert (geom[circle, 2] < max_size[circle]).all() and (geom[ellipse, 2:4] < max_size[ellipse, None]).all()
    assert (geom[ellipse, 4] < 180).all()
    assert ((geom[rect, 2] - geom[rect, 0]) < max_size[rect]).all()
    # many draws: every kind appears, with the 1:2:2:2 proportions
    many = np.concatenate([shapes.sample_particles(rng(1, i), size)[0] for i in range(40)])
    share = np.bincount(many, minlength=4) / len(many)
    np.testing.assert_allclose(share, [1 / 7, 2 / 7, 2 / 7, 2 / 7], atol=0.03)


def test_any_direction_lines_option():
    kinds, geom, _ = shapes.sample_particles(rng(0, 2), 256, any_direction=True)
    lines = geom[kinds == shapes.LINE]
    many = np.concatenate([g[k == shapes.LINE] for k, g, _ in
                           (shapes.sample_particles(rng(0, i), 256, any_direction=True) for i in range(20))])
    assert ((many[:, 2] - many[:, 0]) * (many[:, 3] - many[:, 1]) < 0).any()
    assert len(lines) > 0


@pytest.mark.parametrize("index", range(8))
def test_saliency_rule_on_generated_masks(index):
    size = 128
    model = get("primitives-s")
    recipe = model.recipe(0, index, size)
    kind, geom, _ = recipe["salient"]
    assert kind[0] != shapes.LINE and len(recipe["kinds"]) == 100
    g = geom[0]
    if kind[0] == shapes.RECTANGLE:
        assert size // 8 <= g[0] < size // 2 and 3 * size // 8 <= g[2] - g[0] < 3 * size // 4
    else:
        assert size // 2 - size // 10 <= g[0] < size // 2 + size // 10
        assert size // 2 - size // 10 <= g[1] < size // 2 + size // 10
        assert size // 4 <= g[2] < 3 * size // 8 and g[4] == 0
    labels = model.labels([recipe], size, CPU)[0]
    alone = shapes.paint_labels(np.full((size, size), -1, np.int16), kind, geom)
    salient = alone == 0
    assert salient.mean() > 0.1  # a large shape
    assert (labels[salient] == 100).all() and (labels[~salient] != 100).all()  # drawn last, on top of everything


def test_primitives_ps_composition():
    size = 96
    model = get("primitives-ps")
    recipe = model.recipe(3, 5, size)
    image = model.sample(3, [5], size, CPU)[0]
    labels = model.labels([recipe], size, CPU)[0]
    background = pink.pink_noise([recipe["noise"]], [recipe["exps"]], CPU)[0]
    inside = pink.pink_noise([recipe["inside_noise"]], [recipe["inside_exps"]], CPU)[0]
    free = labels < 0
    assert free.any()
    np.testing.assert_array_equal(image[free], background[free])
    np.testing.assert_array_equal(image[labels == 100], inside[labels == 100])
    particle = labels == labels[(labels >= 0) & (labels < 100)][0]
    assert len(np.unique(image[particle], axis=0)) == 1  # monotone shapes


def test_primitives_background_is_grey_unless_asked():
    recipe = get("primitives").recipe(0, 0, 64)
    assert len(set(recipe["background"].tolist())) == 1
    colours = [get("primitives", color_background=True).recipe(0, i, 64)["background"] for i in range(4)]
    assert any(len(set(c.tolist())) > 1 for c in colours)


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


@pytest.mark.parametrize("paper", [False, True])
def test_pink_noise_has_the_commanded_spectrum(paper):
    size, n = 128, 24
    _, exps = pink.draw(rng(0, 0), size, paper_exponents=paper)
    noise = np.stack([pink.draw(rng(1, i), size)[0] for i in range(n)])
    out = pink.filter_noise(torch.from_numpy(noise), torch.from_numpy(np.repeat(exps[None], n, 0))).numpy()
    amp = np.abs(np.fft.fft2(out)).mean(axis=0) / np.abs(np.fft.fft2(noise)).mean(axis=0)
    f = np.abs(np.fft.fftfreq(size, d=0.2))  # the official frequencies, DC replaced by a tenth of the first
    f[0] = f[1] / 10
    k = np.arange(1, size // 2)
    for c in range(3):
        a, b = exps[c]
        assert 0.5 <= a <= 3.5 and 0.5 <= b <= 3.5 and (a == b) == paper
        expected = 1 / (f[:, None] ** a + 1e-6 + f[None, :] ** b + 1e-6)
        np.testing.assert_allclose(amp[c], expected, rtol=0.35)  # 24 Rayleigh draws per bin
        for along, exponent, other in ((amp[c, k, 0], a, f[0] ** b), (amp[c, 0, k], b, f[0] ** a)):
            clean = f[k] ** exponent > 50 * (other + 2e-6)  # where the other axis' term is negligible
            if clean.sum() >= 8:
                assert abs(_slope(f[k][clean], along[clean]) + exponent) < 0.1


def test_renormalize_spans_full_range():
    img = get("pinknoise").sample(0, [0], 64, CPU)[0]
    assert img.min() == 0 and img.max() == 255


def test_torch_painter_matches_numpy_painter():
    size = 128
    for index in range(4):
        kinds, geom, _ = shapes.sample_particles(rng(2, index), size, any_direction=True)
        ref = shapes.paint_labels(np.full((size, size), -1, np.int16), kinds, geom)
        got = shapes.paint_labels_torch(torch.from_numpy(kinds)[None], torch.from_numpy(geom)[None], size)[0]
        assert (got.numpy() == ref).mean() > 0.999


def test_batched_torch_path_matches_cpu_path():
    model = get("primitives-ps", batch=4)
    recipes = [model.recipe(0, i, 64) for i in range(4)]
    ref = model.labels(recipes, 64, CPU)
    got = shapes.paint_labels_torch(torch.from_numpy(np.stack([r["kinds"] for r in recipes])),
                                    torch.from_numpy(np.stack([r["geom"] for r in recipes])), 64)
    got = shapes.paint_labels_torch(torch.from_numpy(np.stack([r["salient"][0] for r in recipes])),
                                    torch.from_numpy(np.stack([r["salient"][1] for r in recipes])), 64,
                                    first_label=100, labels=got)
    assert (got.numpy() == ref).mean() > 0.999


@pytest.mark.cuda
def test_cuda_matches_cpu_reference():
    model = get("primitives-ps", batch=8)
    cpu = model.sample(0, range(8), 128, CPU)
    gpu = model.sample(0, range(8), 128, torch.device("cuda"))
    assert (np.abs(cpu.astype(int) - gpu.astype(int)) <= 1).mean() > 0.99


def test_shapes_agree_with_opencv():
    cv2 = pytest.importorskip("cv2")
    size = 128
    cases = [(shapes.CIRCLE, (60, 64, 17, 0, 0)), (shapes.ELLIPSE, (64, 60, 20, 7, 100)),
             (shapes.ELLIPSE, (40, 70, 30, 30, 45)), (shapes.RECTANGLE, (10, 20, 70, 50, 0)),
             (shapes.LINE, (30, 30, 40, 120, 12)), (shapes.LINE, (10, 20, 100, 90, 1))]
    for kind, g in cases:
        ours = shapes.paint_labels(np.full((size, size), -1, np.int16), np.array([kind]),
                                   np.array([g], dtype=np.float64)) == 0
        ref = np.zeros((size, size), np.uint8)
        x1, y1, x2, y2, t = (int(v) for v in g)
        if kind == shapes.CIRCLE:
            cv2.circle(ref, (x1, y1), x2, 1, -1)
        elif kind == shapes.ELLIPSE:
            cv2.ellipse(ref, (x1, y1), (x2, y2), t, 0, 360, 1, -1)
        elif kind == shapes.RECTANGLE:
            cv2.rectangle(ref, (x1, y1), (x2, y2), 1, -1)
        else:
            cv2.line(ref, (x1, y1), (x2, y2), 1, t)
        ref = ref > 0
        iou = (ours & ref).sum() / (ours | ref).sum()
        assert iou > (0.8 if kind == shapes.LINE and t == 1 else 0.93), (kind, g, iou)


def test_painting_all_shapes_at_once_equals_painting_them_one_by_one():
    size = 96
    kinds, geom, _ = shapes.sample_particles(rng(3, 0), size, 60, any_direction=True)
    together = shapes.paint_labels(np.full((size, size), -1, np.int16), kinds, geom)
    alone = np.full((size, size), -1, np.int16)
    for k in range(60):
        shapes.paint_labels(alone, kinds[k:k + 1], geom[k:k + 1], first_label=k)
    np.testing.assert_array_equal(together, alone)
    ys = np.arange(size, dtype=np.float64)
    for k in range(60):  # the vectorised spans equal the one-shape (scalar) spans
        lo, hi = shapes.spans(int(kinds[k]), geom[k], ys)
        vlo, vhi = shapes.spans(int(kinds[k]), geom[k:k + 2].T[:, :, None], ys[None, :])
        np.testing.assert_array_equal(vlo[0], lo)
        np.testing.assert_array_equal(vhi[0], hi)


if __name__ == "__main__":  # rewrite the float reference after an intended change to PinkNoise / Primitives-PS
    REFERENCE.parent.mkdir(exist_ok=True)
    np.savez_compressed(REFERENCE, **{name: get(name).sample(SEED, INDICES, SIZE, CPU) for name in FLOAT})
    print(f"wrote {REFERENCE}")
