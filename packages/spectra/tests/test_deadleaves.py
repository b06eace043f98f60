"""The NumPy leaf sampler against its direct formulation: the same draws, radii, centres and vertices."""

import numpy as np
import pytest

from pixforge.core.datagen import rng
from pixforge.spectra import deadleaves as dl


def direct_leaves(r: np.random.Generator, size: int, kinds: tuple[int, ...], count: int, textures: int) -> dict:
    """Every vertex formula on every leaf, then one picked per leaf by its kind (radius: argmin over the CDF)."""
    kind = np.asarray(kinds)[r.integers(len(kinds), size=count)]
    color = (r.uniform(0, 1, (count, 3)) * 255).astype(np.uint8)
    r_i = np.argmin(np.abs(dl.R_CDF[None, :] - r.uniform(0, 1, count)[:, None]), axis=1)
    radius = np.maximum((dl.R_LIST[r_i] * size).astype(np.int64), 1).astype(np.float64)
    centre = r.uniform(0, size, (count, 2)).astype(np.int32).astype(np.float64)
    theta, corner = r.uniform(0, 2 * np.pi, count), r.uniform(0, 0.5 * np.pi, count)
    draws = r.uniform(0, 2 * np.pi, (count, 4))
    angles = np.sort(draws, axis=1)
    texture = r.integers(0, max(textures, 1), count)
    h = np.trunc(radius * np.sqrt(2) / 2)
    square = np.stack([-h, -h, h, -h, h, h, -h, h], 1).reshape(count, 4, 2)
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
    oriented = np.stack([c * square[..., 0] - s * square[..., 1], s * square[..., 0] + c * square[..., 1]], -1)
    rx, ry = np.trunc(radius * np.cos(corner)), np.trunc(radius * np.sin(corner))
    rect = np.stack([rx, ry, rx, -ry, -rx, -ry, -rx, ry], 1).reshape(count, 4, 2)
    circle = lambda a: np.stack([radius[:, None] * np.cos(a), radius[:, None] * np.sin(a)], -1)  # noqa: E731
    three = np.sort(draws[:, :3], axis=1)  # official: sorted(uniform(0, 2 pi, 3)) for a triangle
    triangle = circle(np.concatenate([three, three[:, 2:3]], 1))
    poly = np.select([kind[:, None, None] == k for k in (dl.SQUARE, dl.ORIENTED, dl.RECTANGLE, dl.TRIANGLE, dl.QUAD)],
                     [square, oriented, rect, triangle, circle(angles)], np.zeros_like(square))
    poly = np.trunc(centre[:, None, :] + poly)
    return {"kind": kind, "radius": radius, "centre": centre, "color": color, "poly": poly, "texture": texture}


@pytest.mark.parametrize("kinds", [dl.MIXED, dl.PAPER_MIXED, (dl.SQUARE,), (dl.ORIENTED,), (dl.CIRCLE,),
                                   (dl.TRIANGLE, dl.QUAD)])
@pytest.mark.parametrize("size,textures", [(16, 0), (100, 7), (256, 0), (4096, 3)])
def test_sampled_leaves_equal_the_direct_formulas(kinds, size, textures):
    ours, ref = rng(size, 1), rng(size, 1)
    for _ in range(3):  # consecutive chunks: the generator advances the same way
        got, want = dl.sample_leaves(ours, size, kinds, 300, textures), direct_leaves(ref, size, kinds, 300, textures)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key].dtype == want[key].dtype, key
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_triangle_vertices_are_three_uniform_angles():
    """Official: a triangle's vertices at sorted(U(0, 2 pi), 3 draws). Three uniform points on the circle have
    their centroid at the centre on average and a mean area 3 / (2 pi) r^2 = 0.477 r^2; the 3 smallest of 4 draws
    (a former bug) put it 0.2 r off centre and made the area 0.40 r^2."""
    leaves = dl.sample_leaves(rng(5, 0), 4096, (dl.TRIANGLE,), 20000)
    r = leaves["radius"][:, None]
    v = (leaves["poly"][:, :3] - leaves["centre"][:, None]) / r[..., None]  # unit-circle vertices (truncated)
    big = r[:, 0] >= 400  # truncation to integers is under 0.25 % of these radii
    centroid = v[big].mean(1).mean(0)
    x, y = v[big, :, 0], v[big, :, 1]
    area = 0.5 * np.abs(x[:, 0] * (y[:, 1] - y[:, 2]) + x[:, 1] * (y[:, 2] - y[:, 0]) + x[:, 2] * (y[:, 0] - y[:, 1]))
    assert big.sum() > 1000
    assert np.abs(centroid).max() < 0.05, centroid  # the standard error is about 0.41 / sqrt(n) < 0.013
    assert abs(area.mean() - 3 / (2 * np.pi)) < 0.02, area.mean()


def test_circle_leaves_carry_their_centre_as_polygon():
    leaves = dl.sample_leaves(rng(0, 0), 64, dl.MIXED, 200)
    circles = leaves["kind"] == dl.CIRCLE
    assert circles.any() and (~circles).any()
    np.testing.assert_array_equal(leaves["poly"][circles], np.repeat(leaves["centre"][circles][:, None], 4, 1))


def test_sorting_network_sorts_rows_of_four():
    a = np.random.default_rng(0).integers(0, 5, (500, 4)).astype(np.float64)  # many ties
    np.testing.assert_array_equal(dl._sorted4(a), np.sort(a, axis=1))


def test_edges_equal_the_rolled_vertex_formulas():
    poly = dl.sample_leaves(rng(3, 0), 128, dl.MIXED, 400)["poly"]
    poly[::7] = poly[::7, ::-1]  # clockwise polygons too
    x, y = poly[..., 0], poly[..., 1]
    flip = np.sum(x * np.roll(y, -1, 1) - np.roll(x, -1, 1) * y, axis=1) < 0
    x, y = np.where(flip[:, None], x[:, ::-1], x), np.where(flip[:, None], y[:, ::-1], y)
    ex, ey = np.roll(x, -1, 1) - x, np.roll(y, -1, 1) - y
    length = np.hypot(ex, ey)
    want = {"a": -ey, "c": -0.5 * length + ex * y - ey * x, "e": ex, "used": length > 0,
            "xmin": x.min(1) - 0.5, "xmax": x.max(1) + 0.5, "ymin": y.min(1) - 0.5, "ymax": y.max(1) + 0.5}
    got = dl.edges(poly)
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
