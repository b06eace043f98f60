"""Dead leaves (paper §3.2; official `dead_leaves/generate_dataset.py`): opaque leaves dropped one on top of
the other at uniform positions until the canvas is covered.

Per leaf, as the official code: a radius from the discretised power law `p(r) ~ 1/r^3 - 1` on 200 values
in [0.03, 1] x size (the paper says "exponential"; the code's sigma = 3), a colour `int(255 U)` per channel,
a centre `int(U(0, size))`, and a shape:
* `squares`: axis-aligned squares of side `r sqrt 2`; `oriented`: the same rotated by `U(0, 2 pi)`;
* `shapes` (the code's "mixed"): one of circle, square, oriented square, rectangle (corner at angle
  `U(0, pi/2)` on the circle), triangle, quadrilateral (3 / 4 sorted uniform angles on the circle) — the paper
  names three shapes (`paper_shapes=True`: circle, triangle, rectangle);
* `textured`: `shapes` whose leaves show a texture of the statistical model (official: Spectrum + Color +
  WMM images, 128 px, nearest-resized) instead of a flat colour.
Leaves are painted until no pixel is uncovered (the official loop stops at 5,000 leaves and tests coverage
as "not black", so black leaves and the cap can leave holes). Rasterised here (pixel centres, boundaries
within half a pixel of OpenCV's `fillPoly` / `circle`), vectorised per leaf over the rows it spans.
"""

from __future__ import annotations

import functools

import numpy as np

R_MIN, R_MAX, SIGMA, R_STEPS = 0.03, 1.0, 3.0, 200
CHUNK = 256  # leaves drawn from the generator at a time
MAX_LEAVES = 1_000_000
CIRCLE, SQUARE, ORIENTED, RECTANGLE, TRIANGLE, QUAD = range(6)
MIXED = (CIRCLE, SQUARE, ORIENTED, RECTANGLE, TRIANGLE, QUAD)
PAPER_MIXED = (CIRCLE, TRIANGLE, RECTANGLE)
KINDS = {"squares": (SQUARE,), "oriented": (ORIENTED,), "shapes": MIXED, "textured": MIXED}


def _radius_cdf() -> tuple[np.ndarray, np.ndarray]:
    r = np.linspace(R_MIN, R_MAX, R_STEPS)
    dist = np.cumsum(1.0 / r ** SIGMA - 1.0 / R_MAX ** SIGMA)
    return r, dist / dist.max()


R_LIST, R_CDF = _radius_cdf()


def _nearest_radius(u: np.ndarray) -> np.ndarray:
    """Index of the CDF value nearest to each `u` (the lower index on ties): `argmin |R_CDF - u|`, in O(log n)."""
    j = np.searchsorted(R_CDF, u)
    below = np.maximum(j - 1, 0)
    return np.where((j > 0) & (u - R_CDF[below] <= R_CDF[np.minimum(j, R_STEPS - 1)] - u), below, j)


@functools.cache
def _radius_table(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per radius step: the leaf radius in pixels (the official `int(r * size)`, at least 1) and the square's
    half side (the official int32 corners)."""
    radius = np.maximum((R_LIST * size).astype(np.int64), 1).astype(np.float64)
    return radius, np.trunc(radius * np.sqrt(2) / 2)


def _sorted4(a: np.ndarray) -> np.ndarray:
    """Rows of 4 values sorted ascending (a sorting network: the values of `np.sort(a, axis=1)`)."""
    a, b, c, d = a.T
    a, b = np.minimum(a, b), np.maximum(a, b)
    c, d = np.minimum(c, d), np.maximum(c, d)
    a, c = np.minimum(a, c), np.maximum(a, c)
    b, d = np.minimum(b, d), np.maximum(b, d)
    b, c = np.minimum(b, c), np.maximum(b, c)
    return np.stack([a, b, c, d], 1)


_SQUARE = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])  # corner signs (exact products)
_RECTANGLE = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [-1.0, 1.0]])


def _outline(kind: int, out: np.ndarray, radius, half, theta, corner, angles) -> None:
    """Write into `out` (N x 4 x 2) the vertices, relative to the centre, of N leaves of one polygon kind."""
    if kind in (SQUARE, ORIENTED):
        square = half[:, None, None] * _SQUARE
        if kind == SQUARE:
            out[:] = square
            return
        c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
        out[..., 0] = c * square[..., 0] - s * square[..., 1]
        out[..., 1] = s * square[..., 0] + c * square[..., 1]
    elif kind == RECTANGLE:
        out[:] = np.trunc(radius * np.cos(corner))[:, None, None] * _RECTANGLE
        out[..., 1] = np.trunc(radius * np.sin(corner))[:, None] * _RECTANGLE[:, 1]
    else:  # on the circle at sorted angles: a quadrilateral's 4, a triangle's first 3 (its last vertex repeated)
        if kind == TRIANGLE:
            angles = np.sort(angles[:, :3], axis=1)[:, [0, 1, 2, 2]]
        else:
            angles = _sorted4(angles)
        out[..., 0] = radius[:, None] * np.cos(angles)
        out[..., 1] = radius[:, None] * np.sin(angles)


def sample_leaves(rng: np.random.Generator, size: int, kinds: tuple[int, ...], count: int = CHUNK,
                  textures: int = 0) -> dict:
    """`count` leaves: kind, radius, centre, colour, polygon (4 x 2 int-valued vertices, x = column; a circle's
    is its centre, 4 times) and texture id. Every leaf draws the same numbers whatever its kind; the vertices
    of each polygon kind are computed for its own leaves only (leaves grouped by kind)."""
    kind = np.asarray(kinds)[rng.integers(len(kinds), size=count)]
    color = (rng.uniform(0, 1, (count, 3)) * 255).astype(np.uint8)
    r_i = _nearest_radius(rng.uniform(0, 1, count))
    radius_table, half_table = _radius_table(size)
    radius, half = radius_table[r_i], half_table[r_i]
    centre = rng.uniform(0, size, (count, 2)).astype(np.int32).astype(np.float64)
    theta = rng.uniform(0, 2 * np.pi, count)
    corner = rng.uniform(0, 0.5 * np.pi, count)
    angles = rng.uniform(0, 2 * np.pi, (count, 4))
    texture = rng.integers(0, max(textures, 1), count)
    poly = np.zeros((count, 4, 2))
    if len(set(kinds)) == 1:
        if kinds[0] != CIRCLE:
            _outline(kinds[0], poly, radius, half, theta, corner, angles)
    else:
        order = np.argsort(kind, kind="stable")
        ends = np.cumsum(np.bincount(kind, minlength=len(MIXED)))
        grouped = np.zeros_like(poly)
        args = [a[order] for a in (radius, half, theta, corner, angles)]
        for k in set(kinds) - {CIRCLE}:
            at = slice(ends[k - 1] if k else 0, ends[k])
            _outline(k, grouped[at], *(a[at] for a in args))
        poly[order] = grouped
    poly = np.trunc(centre[:, None, :] + poly)  # fillPoly's int32 vertices
    return {"kind": kind, "radius": radius, "centre": centre, "color": color, "poly": poly, "texture": texture}


def _circle_spans(cx, cy, r, ys):
    """Row spans [lo, hi] of circles at rows `ys` (arrays of one length, or scalars broadcast against `ys`)."""
    d2 = r * r - (ys - cy) ** 2
    half = np.sqrt(np.maximum(d2, 0.0))
    return np.where(d2 >= 0, cx - half, np.inf), np.where(d2 >= 0, cx + half, -np.inf)


def edges(poly: np.ndarray, tol: float = 0.5) -> dict:
    """Half-planes of convex polygons (K x 4 x 2, any winding, repeated vertices allowed), widened by `tol` px:
    a pixel (x, y) is inside when `a x >= c - e y` for every edge (a, c, e). (Per-vertex columns combined one
    by one: NumPy's reductions over a short axis cost more than the arithmetic here.)"""
    x, y = np.ascontiguousarray(poly[..., 0]), np.ascontiguousarray(poly[..., 1])
    after = [*range(1, poly.shape[1]), 0]  # the next vertex
    flip = functools.reduce(np.add, (x * y[:, after] - x[:, after] * y).T) < 0  # the sign of the area
    x, y = np.where(flip[:, None], x[:, ::-1], x), np.where(flip[:, None], y[:, ::-1], y)
    ex, ey = x[:, after] - x, y[:, after] - y
    length = np.hypot(ex, ey)
    # inside: (ex (py - y) - ey (px - x)) / length >= -tol  <=>  -ey px >= -tol length + ex y - ey x - ex py
    return {"a": -ey, "c": -tol * length + ex * y - ey * x, "e": ex, "used": length > 0,
            "xmin": functools.reduce(np.minimum, x.T) - tol, "xmax": functools.reduce(np.maximum, x.T) + tol,
            "ymin": functools.reduce(np.minimum, y.T) - tol, "ymax": functools.reduce(np.maximum, y.T) + tol}


def _polygon_spans(h: dict, k, ys: np.ndarray):
    """Row spans [lo, hi] of polygon `k` of `edges` `h` at rows `ys` (`k` one index, or one per row); lo is inf
    where the row misses the polygon."""
    k = np.broadcast_to(k, ys.shape)
    a, c, e, used = h["a"][k], h["c"][k], h["e"][k], h["used"][k]
    rhs = c - e * ys[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = rhs / a
    lo = np.maximum(np.where(used & (a > 0), bound, -np.inf).max(axis=1), h["xmin"][k])
    hi = np.minimum(np.where(used & (a < 0), bound, np.inf).min(axis=1), h["xmax"][k])
    blocked = np.any(used & (a == 0) & (rhs > 0), axis=1) | (ys < h["ymin"][k]) | (ys > h["ymax"][k])
    return np.where(blocked, np.inf, lo), hi


def _chunk_spans(leaves: dict, half: dict, y0s: np.ndarray, y1s: np.ndarray):
    """Every leaf's row spans at once: `lo`, `hi` over the rows y0s[k]..y1s[k] of leaf k, leaf after leaf, and
    `starts` (leaf k's rows are starts[k]:starts[k + 1])."""
    rows = np.maximum(y1s - y0s + 1, 0)
    starts = np.concatenate([[0], np.cumsum(rows)])
    leaf = np.repeat(np.arange(len(rows)), rows)
    ys = (y0s[leaf] + np.arange(len(leaf)) - starts[leaf]).astype(np.float64)
    centre = leaves["centre"][leaf]
    circle_lo, circle_hi = _circle_spans(centre[:, 0], centre[:, 1], leaves["radius"][leaf], ys)
    poly_lo, poly_hi = _polygon_spans(half, leaf, ys)
    circle = leaves["kind"][leaf] == CIRCLE
    return np.where(circle, circle_lo, poly_lo), np.where(circle, circle_hi, poly_hi), starts


def paint(size: int, rng: np.random.Generator, kinds: tuple[int, ...], textures: int = 0) -> tuple[np.ndarray, dict]:
    """Leaves until the canvas is covered: int32 label map (index of the visible leaf) and the leaves used."""
    labels = np.full((size, size), -1, dtype=np.int32)
    uncovered = size * size
    chunks: list[dict] = []
    total = 0
    while uncovered > 0 and total < MAX_LEAVES:
        leaves = sample_leaves(rng, size, kinds, CHUNK, textures)
        chunks.append(leaves)
        half = edges(leaves["poly"])
        top = np.where(leaves["kind"] == CIRCLE, leaves["centre"][:, 1] - leaves["radius"],
                       leaves["poly"][:, :, 1].min(axis=1) - 0.5)
        bottom = np.where(leaves["kind"] == CIRCLE, leaves["centre"][:, 1] + leaves["radius"],
                          leaves["poly"][:, :, 1].max(axis=1) + 0.5)
        y0s = np.maximum(np.ceil(top), 0).astype(np.int64)
        y1s = np.minimum(np.floor(bottom), size - 1).astype(np.int64)
        spans_lo, spans_hi, starts = _chunk_spans(leaves, half, y0s, y1s)
        for k in range(CHUNK):
            y0, y1 = y0s[k], y1s[k]
            if y1 < y0:
                continue
            lo, hi = spans_lo[starts[k]:starts[k + 1]], spans_hi[starts[k]:starts[k + 1]]
            left = lo.min()
            if left == np.inf:  # no row inside (a degenerate polygon whose horizontal edges run the same way)
                continue
            x0, x1 = max(int(np.ceil(left)), 0), min(int(np.floor(hi.max())), size - 1)
            if x1 < x0:
                continue
            xs = np.arange(x0, x1 + 1, dtype=np.float64)[None, :]
            mask = (xs >= lo[:, None]) & (xs <= hi[:, None])
            region = labels[y0:y1 + 1, x0:x1 + 1]
            uncovered -= int(np.count_nonzero(mask & (region < 0)))
            region[mask] = total + k
            if uncovered == 0:
                total += k + 1
                break
        else:
            total += CHUNK
    merged = {key: np.concatenate([c[key] for c in chunks])[:total] for key in chunks[0]}
    return labels, merged


def render(labels: np.ndarray, leaves: dict, textures: np.ndarray | None = None) -> np.ndarray:
    """uint8 S x S x 3: each pixel the colour (or texture pixel) of its visible leaf."""
    if textures is None:
        return leaves["color"][labels]
    size = labels.shape[0]
    tex = leaves["texture"][labels]  # S x S texture ids
    rows, cols = np.indices((size, size))
    return textures[tex, rows, cols]
