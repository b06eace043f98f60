"""Primitive shapes: sampling as the official synthesizer does (`inject_particles`, `inject_saliency`) and
rasterising them (our own: pixel centres on the integer grid, filled, no anti-aliasing — within boundary
pixels of OpenCV's `circle` / `ellipse` / `rectangle` / `line`, which the official code calls).

A shape is `kind` (0 line, 1 circle, 2 ellipse, 3 rectangle) and 5 numbers:
line (x1, y1, x2, y2, thickness), circle (cx, cy, r, -, -), ellipse (cx, cy, r1, r2, angle in degrees),
rectangle (x1, y1, x2, y2, -), x = column, y = row, corners inclusive.

The official code hard-codes 256-pixel canvases (uint8 coordinates in 0..255); here every range is the same
fraction of the size `S`, which gives the official numbers at S = 256 and works at any size.
"""

from __future__ import annotations

import numpy as np
import torch

LINE, CIRCLE, ELLIPSE, RECTANGLE = range(4)
KINDS = ("line", "circle", "ellipse", "rectangle")
PARTICLE_KINDS = (LINE, CIRCLE, CIRCLE, ELLIPSE, ELLIPSE, RECTANGLE, RECTANGLE)  # official `shape_list`
SHAPES = 100  # official `iterations`


def sample_particles(rng: np.random.Generator, size: int, count: int = SHAPES, any_direction: bool = False):
    """`count` particles with shrinking maximum size (official `inject_particles`): kinds (K,), geometry (K x 5),
    colours (K x 3 uint8). Every integer is drawn uniformly from the official (half-open) range."""
    kinds = np.asarray(PARTICLE_KINDS)[rng.integers(len(PARTICLE_KINDS), size=count)]
    colors = rng.integers(0, 255, (count, 3)).astype(np.uint8)
    max_size = np.round(size // 5 * (count - np.arange(count)) / count + 2).astype(np.int64)[:, None]
    u = rng.random((count, 5))

    def pick(lo, hi):  # integers in [lo, hi) from the uniforms
        return lo + np.floor(u * (hi - lo))

    span = pick(1, max_size)  # thickness, radii, rectangle sides in [1, max_size)
    pos = pick(0, size)
    ends = pick(0, size - 1)
    if not any_direction:  # the official code sorts x and y separately: every line runs down-right
        ends[:, 0], ends[:, 1] = np.minimum(ends[:, 0], ends[:, 1]), np.maximum(ends[:, 0], ends[:, 1])
        ends[:, 2], ends[:, 3] = np.minimum(ends[:, 2], ends[:, 3]), np.maximum(ends[:, 2], ends[:, 3])
    corner = pick(0, size - 1 - max_size)
    geom = np.zeros((count, 5))
    line, circle, ellipse, rect = (kinds == k for k in range(4))
    geom[line] = np.stack([ends[:, 0], ends[:, 2], ends[:, 1], ends[:, 3], span[:, 4]], 1)[line]
    geom[circle] = np.stack([pos[:, 0], pos[:, 1], span[:, 2], 0 * span[:, 2], 0 * span[:, 2]], 1)[circle]
    angle = np.floor(u[:, 4] * 180)
    geom[ellipse] = np.stack([pos[:, 0], pos[:, 1], span[:, 2], span[:, 3], angle], 1)[ellipse]
    geom[rect] = np.stack([corner[:, 0], corner[:, 1], corner[:, 0] + span[:, 2], corner[:, 1] + span[:, 3],
                           0 * span[:, 2]], 1)[rect]
    return kinds, geom, colors


def sample_salient(rng: np.random.Generator, size: int):
    """The salient shape (official `inject_saliency`): a large circle, axis-aligned ellipse or rectangle, central."""
    kind = PARTICLE_KINDS[rng.integers(1, len(PARTICLE_KINDS))]  # never a line
    color = rng.integers(0, 255, 3).astype(np.uint8)
    lo, hi = size // 2 - size // 10, size // 2 + size // 10
    x, y = rng.integers(lo, hi, 2)
    if kind == CIRCLE:
        geom = (x, y, rng.integers(size // 4, 3 * size // 8), 0, 0)
    elif kind == ELLIPSE:
        r1, r2 = rng.integers(size // 4, 3 * size // 8, 2)
        geom = (x, y, r1, r2, 0)
    else:
        x1, y1 = rng.integers(size // 8, size // 2, 2)
        h, w = rng.integers(3 * size // 8, 3 * size // 4, 2)
        geom = (x1, y1, x1 + h, y1 + w, 0)
    return np.array([kind]), np.array([geom], dtype=np.float64), color[None]


# --- inside tests, written once for numpy scalars and torch tensors (xp = np or torch) -----------------------

def _line(g, x, y, xp):
    x1, y1, x2, y2, t = g[0], g[1], g[2], g[3], g[4]
    dx, dy = x2 - x1, y2 - y1
    length2 = dx * dx + dy * dy
    h = xp.clip(((x - x1) * dx + (y - y1) * dy) / xp.maximum(length2, 1e-12 + 0 * length2), 0.0, 1.0)
    ex, ey = x - x1 - h * dx, y - y1 - h * dy
    radius = xp.where(t > 1, t / 2 + 0.5, 0.5 + 0 * t)
    return ex * ex + ey * ey <= radius * radius


def _circle(g, x, y, xp):
    dx, dy = x - g[0], y - g[1]
    return dx * dx + dy * dy <= g[2] * g[2]


def _ellipse(g, x, y, xp):
    theta = g[4] * (np.pi / 180.0)
    c, s = xp.cos(theta), xp.sin(theta)
    dx, dy = x - g[0], y - g[1]
    u, v = (dx * c + dy * s) / (g[2] + 0.5), (-dx * s + dy * c) / (g[3] + 0.5)
    return u * u + v * v <= 1.0


def _rectangle(g, x, y, xp):
    return (x >= g[0]) & (x <= g[2]) & (y >= g[1]) & (y <= g[3])


INSIDE = (_line, _circle, _ellipse, _rectangle)


def _line_radius(t):
    return np.where(t > 1, t / 2 + 0.5, 0.5)


def _rows(kinds: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows each shape (K x 5 geometry) can touch."""
    r, ellipse = _line_radius(g[:, 4]), np.maximum(g[:, 2], g[:, 3]) + 1
    which = [kinds == LINE, kinds == CIRCLE, kinds == ELLIPSE]
    top = np.select(which, [np.minimum(g[:, 1], g[:, 3]) - r, g[:, 1] - g[:, 2], g[:, 1] - ellipse], g[:, 1])
    bottom = np.select(which, [np.maximum(g[:, 1], g[:, 3]) + r, g[:, 1] + g[:, 2], g[:, 1] + ellipse], g[:, 3])
    return top, bottom


def _slab(coef, offset, lo, hi):
    """Columns x of each row with lo <= coef * x + offset <= hi (offset per row)."""
    flat = np.abs(coef) < 1e-12
    ok = (offset >= lo) & (offset <= hi)
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = (lo - offset) / coef, (hi - offset) / coef
    return (np.where(flat, np.where(ok, -np.inf, np.inf), np.minimum(a, b)),
            np.where(flat, np.where(ok, np.inf, -np.inf), np.maximum(a, b)))


def _disc(cx, cy, r2, ys):
    d2 = r2 - (ys - cy) ** 2
    half = np.sqrt(np.maximum(d2, 0.0))
    return np.where(d2 >= 0, cx - half, np.inf), np.where(d2 >= 0, cx + half, -np.inf)


def spans(kind: int, g: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row `ys`, the closed column interval [lo, hi] shapes of one `kind` cover (lo > hi: none); the same sets
    as INSIDE. `g`: 5 numbers, or 5 x K x 1 for K shapes (then K x len(ys) intervals)."""
    if kind == CIRCLE:
        return _disc(g[0], g[1], g[2] * g[2], ys)
    if kind == RECTANGLE:
        ok = (ys >= g[1]) & (ys <= g[3])
        return np.where(ok, g[0], np.inf), np.where(ok, g[2], -np.inf)
    if kind == ELLIPSE:
        theta = g[4] * (np.pi / 180.0)
        c, s = np.cos(theta), np.sin(theta)
        ia, ib = 1.0 / (g[2] + 0.5) ** 2, 1.0 / (g[3] + 0.5) ** 2
        dy = ys - g[1]
        p = c * c * ia + s * s * ib
        q = dy * c * s * (ia - ib)
        disc = q * q - p * (dy * dy * (s * s * ia + c * c * ib) - 1.0)
        root = np.sqrt(np.maximum(disc, 0.0))
        return (np.where(disc >= 0, g[0] + (-q - root) / p, np.inf),
                np.where(disc >= 0, g[0] + (-q + root) / p, -np.inf))
    x1, y1, x2, y2 = g[0], g[1], g[2], g[3]
    r = _line_radius(g[4])
    lo1, hi1 = _disc(x1, y1, r * r, ys)
    lo2, hi2 = _disc(x2, y2, r * r, ys)
    lo, hi = np.minimum(lo1, lo2), np.maximum(hi1, hi2)
    length = np.hypot(x2 - x1, y2 - y1)
    with np.errstate(divide="ignore", invalid="ignore"):  # the band: |n.(p - p1)| <= r and 0 <= d.(p - p1) <= length
        dx, dy = (x2 - x1) / length, (y2 - y1) / length
    alo, ahi = _slab(-dy, dx * (ys - y1) + dy * x1, -r, r)
    blo, bhi = _slab(dx, dy * (ys - y1) - dx * x1, 0.0, length)
    blo, bhi = np.maximum(alo, blo), np.minimum(ahi, bhi)
    band = (blo <= bhi) & (length > 0)
    return np.where(band, np.minimum(lo, blo), lo), np.where(band, np.maximum(hi, bhi), hi)


def column_spans(kinds: np.ndarray, geom: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last covered column of every shape on every row (int64 K x S, clipped to the canvas;
    first > last: none), all shapes of a kind at once."""
    ys = np.arange(size, dtype=np.float64)
    lo, hi = np.full((len(kinds), size), np.inf), np.full((len(kinds), size), -np.inf)
    for kind in np.unique(kinds):
        sel = kinds == kind
        lo[sel], hi[sel] = spans(int(kind), geom[sel].T[:, :, None], ys[None, :])
    top, bottom = _rows(kinds, geom)
    rows = (ys >= np.floor(top)[:, None]) & (ys <= np.ceil(bottom)[:, None])
    first = np.where(rows, np.clip(np.ceil(lo), 0, size), size).astype(np.int64)
    last = np.where(rows, np.clip(np.floor(hi), -1, size - 1), -1).astype(np.int64)
    return first, last


def paint_labels(labels: np.ndarray, kinds: np.ndarray, geom: np.ndarray, first_label: int = 0) -> np.ndarray:
    """Paint shapes in order into an int16 S x S label map (later shapes on top): pixel = first_label + k."""
    size = labels.shape[0]
    first, last = column_spans(np.asarray(kinds), np.asarray(geom, dtype=np.float64), size)
    covered = first <= last
    any_row = covered.any(axis=1)
    y0s, y1s = covered.argmax(axis=1), size - 1 - covered[:, ::-1].argmax(axis=1)
    x0s = np.where(covered, first, size).min(axis=1)
    x1s = np.where(covered, last, -1).max(axis=1)
    for k, (ok, kind, y0, y1, x0, x1) in enumerate(zip(any_row.tolist(), np.asarray(kinds).tolist(), y0s.tolist(),
                                                       y1s.tolist(), x0s.tolist(), x1s.tolist(), strict=True)):
        if not ok:
            continue
        region = labels[y0:y1 + 1, x0:x1 + 1]
        if kind == RECTANGLE:  # full rows of one width
            region[...] = first_label + k
            continue
        xs = np.arange(x0, x1 + 1)[None, :]
        region[(xs >= first[k, y0:y1 + 1, None]) & (xs <= last[k, y0:y1 + 1, None])] = first_label + k
    return labels


def paint_labels_torch(kinds: torch.Tensor, geom: torch.Tensor, size: int, first_label: int = 0,
                       labels: torch.Tensor | None = None) -> torch.Tensor:
    """Batched full-frame painter for GPUs: kinds N x K, geom N x K x 5 -> int16 label maps N x S x S (-1 = none)."""
    n, count = kinds.shape
    device = geom.device
    if labels is None:
        labels = torch.full((n, size, size), -1, dtype=torch.int16, device=device)
    xs = torch.arange(size, device=device, dtype=geom.dtype)[None, None, :]
    ys = torch.arange(size, device=device, dtype=geom.dtype)[None, :, None]
    present = kinds.cpu().numpy()  # which kinds each shape slot uses, read once (not one GPU sync per slot and kind)
    for k in range(count):
        g = geom[:, k, :, None, None].unbind(1)  # 5 tensors of N x 1 x 1
        kind = kinds[:, k, None, None]
        mask = torch.zeros((n, size, size), dtype=torch.bool, device=device)
        for code, inside in enumerate(INSIDE):
            if (present[:, k] == code).any():
                mask |= (kind == code) & inside(g, xs, ys, torch)
        labels = torch.where(mask, torch.tensor(first_label + k, dtype=torch.int16, device=device), labels)
    return labels
