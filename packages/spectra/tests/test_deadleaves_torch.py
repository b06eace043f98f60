"""The batched torch dead-leaves rasteriser against the NumPy reference: equal label maps, leaves and images."""

import numpy as np
import pytest
import torch

from pixforge.core.datagen import rng
from pixforge.spectra import deadleaves, deadleaves_torch, get

SMALL_TEXTURES = {"texture_pool": 3, "texture_model": "spectrum-color", "texture_size": 32}


def reference(size, seed, indices, kinds, textures=0):
    return [deadleaves.paint(size, rng(seed, i), kinds, textures) for i in indices]


@pytest.mark.parametrize("size", [64, 128, 256])
@pytest.mark.parametrize("style", list(deadleaves.KINDS))
def test_label_maps_and_leaves_equal_the_numpy_rasteriser(style, size):
    kinds, textures = deadleaves.KINDS[style], 7 if style == "textured" else 0
    indices = [0, 5] if size == 256 else [0, 5, 9]
    labels, leaves = deadleaves_torch.paint(size, [rng(2, i) for i in indices], kinds, textures)
    assert labels.shape == (len(indices), size, size) and (labels >= 0).all()
    for (ref_labels, ref_leaves), lab, got in zip(reference(size, 2, indices, kinds, textures), labels, leaves,
                                                  strict=True):
        np.testing.assert_array_equal(lab.numpy(), ref_labels)
        assert got.keys() == ref_leaves.keys()
        for key in ref_leaves:
            np.testing.assert_array_equal(got[key], ref_leaves[key])


def test_a_leaf_inside_no_row_paints_nothing():
    """Image 303437 of seed 0 at 128 px (dead-leaves-shapes) holds a degenerate quadrilateral (y -1..0) whose two
    horizontal edges run the same way, so no pixel row lies inside it: it stopped a pretraining run (OverflowError in
    the NumPy rasteriser). Both rasterisers skip it and agree."""
    kinds = get("dead-leaves-shapes").kinds()
    (ref_labels, _), = reference(128, 0, [303437], kinds)
    labels, _ = deadleaves_torch.paint(128, [rng(0, 303437)], kinds, 0)
    assert (ref_labels >= 0).all() and 203 not in ref_labels
    np.testing.assert_array_equal(labels[0].numpy(), ref_labels)


def test_images_equal_the_numpy_render_with_colours_and_textures():
    size, indices = 48, [3, 1, 4]
    pool = np.random.default_rng(0).integers(0, 256, (5, size, size, 3), dtype=np.uint8)
    labels, leaves = deadleaves_torch.paint(size, [rng(0, i) for i in indices], deadleaves.MIXED, 5)
    flat = deadleaves_torch.render(labels, leaves)
    textured = deadleaves_torch.render(labels, leaves, torch.from_numpy(pool))
    assert flat.dtype == textured.dtype == torch.uint8 and flat.shape == (3, size, size, 3)
    for k, (ref_labels, ref_leaves) in enumerate(reference(size, 0, indices, deadleaves.MIXED, 5)):
        np.testing.assert_array_equal(flat[k].numpy(), deadleaves.render(ref_labels, ref_leaves))
        np.testing.assert_array_equal(textured[k].numpy(), deadleaves.render(ref_labels, ref_leaves, pool))


def test_each_image_is_independent_of_the_batch_it_is_painted_in():
    kinds = deadleaves.KINDS["oriented"]
    together, leaves = deadleaves_torch.paint(96, [rng(1, i) for i in range(4)], kinds)
    for i in (2, 0):
        alone, alone_leaves = deadleaves_torch.paint(96, [rng(1, i)], kinds)
        assert torch.equal(alone[0], together[i])
        np.testing.assert_array_equal(alone_leaves[0]["color"], leaves[i]["color"])
    assert not torch.equal(together[0], together[1])


def test_leaf_cap_leaves_the_same_holes(monkeypatch):
    monkeypatch.setattr(deadleaves, "MAX_LEAVES", deadleaves.CHUNK)  # stop after one chunk: canvas not covered
    (ref_labels, ref_leaves), = reference(128, 0, [0], deadleaves.MIXED)
    labels, leaves = deadleaves_torch.paint(128, [rng(0, 0)], deadleaves.MIXED)
    assert (ref_labels < 0).any() and len(leaves[0]["kind"]) == deadleaves.CHUNK
    np.testing.assert_array_equal(labels[0].numpy(), ref_labels)
    np.testing.assert_array_equal(deadleaves_torch.render(labels, leaves)[0].numpy(),
                                  deadleaves.render(ref_labels, ref_leaves))


def test_row_spans_of_a_square_and_a_circle():
    leaves = {"kind": np.array([deadleaves.SQUARE, deadleaves.CIRCLE]), "radius": np.array([3.0, 2.0]),
              "centre": np.array([[5.0, 5.0], [0.0, 9.0]]),
              "poly": np.array([[[3, 3], [7, 3], [7, 7], [3, 7]], [[0, 0]] * 4], dtype=np.float64)}
    first, last = deadleaves_torch.row_spans(leaves, 12, torch.device("cpu"))
    covered = [[(int(a), int(b)) for a, b in zip(f, la, strict=True) if a <= b] for f, la in zip(first, last,
                                                                                                  strict=True)]
    assert covered[0] == [(3, 7)] * 5  # rows 3..7 (the half-pixel tolerance reaches 2.5 .. 7.5)
    assert covered[1] == [(0, 0), (0, 1), (0, 2), (0, 1), (0, 0)]  # rows 7..11, clipped at column 0


@pytest.mark.parametrize("name", ["dead-leaves-squares", "dead-leaves-textured"])
def test_model_batched_sampling_equals_the_reference_on_the_cpu(name):
    m = get(name, **(SMALL_TEXTURES if "textured" in name else {}))
    np.testing.assert_array_equal(m.sample_batched(4, [2, 0, 7], 64, torch.device("cpu")),
                                  m.sample(4, [2, 0, 7], 64, torch.device("cpu")))


def test_texture_pool_is_copied_to_a_device_once_per_pool(monkeypatch):
    m, cpu = get("dead-leaves-textured", **SMALL_TEXTURES), torch.device("cpu")
    pool = m.device_textures(4, 64, cpu)
    assert torch.equal(pool, torch.from_numpy(m.textures(4, 64)))
    copies = []
    from_numpy = torch.from_numpy
    monkeypatch.setattr(torch, "from_numpy", lambda a: copies.append(a.shape) or from_numpy(a))
    for indices in ([0, 1], [2]):
        m.sample_batched(4, indices, 64, cpu)
    assert m.device_textures(4, 64, cpu) is pool and pool.shape not in copies
    other = m.device_textures(5, 64, cpu)  # another pool (seed) replaces it
    assert copies.count(pool.shape) == 1 and not torch.equal(other, pool)
    assert torch.equal(other, from_numpy(m.textures(5, 64)))


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["dead-leaves-shapes", "dead-leaves-textured"])
def test_cuda_images_equal_the_cpu_reference(name):
    m = get(name, **(SMALL_TEXTURES if "textured" in name else {}))
    cpu = m.sample(0, range(6), 128, torch.device("cpu"))
    np.testing.assert_array_equal(m.sample(0, range(6), 128, torch.device("cuda")), cpu)
