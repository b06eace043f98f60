"""Dead leaves rasterised in torch for a batch of images on any device, equal to `deadleaves.paint` / `render`.

Each image draws the same leaves as the NumPy reference (its own generator, the same chunks of
`deadleaves.CHUNK` leaves, stopping at the same chunk), and every leaf's covered columns per row come from the
same float64 operations (`_circle_spans`, `_polygon_spans`, one op at a time, so no fused multiply-add), so the
label maps and images are equal bit for bit. Instead of painting leaves one by one, a chunk of leaves (of every
image at once) is expanded into the pixels it covers and painted with one scatter-max: the visible leaf of a
pixel is the last leaf covering it, up to the leaf that completes the canvas (the chunk's first-cover scatter-min
finds that leaf). Work is proportional to the leaves' area, not leaves x pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pixforge.spectra import deadleaves


def _tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(device)


def row_spans(leaves: dict, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last covered column (int64 K x S, clipped to the canvas; first > last: row not covered) of each
    leaf on each row, from the same arithmetic as the NumPy rasteriser."""
    ys = torch.arange(size, dtype=torch.float64, device=device)
    centre, radius = _tensor(leaves["centre"], device), _tensor(leaves["radius"], device)[:, None]
    dy = ys[None, :] - centre[:, 1:2]
    d2 = radius * radius - dy * dy
    half = torch.sqrt(torch.clamp(d2, min=0.0))
    inf = torch.tensor(float("inf"), dtype=torch.float64, device=device)
    circle_lo = torch.where(d2 >= 0, centre[:, 0:1] - half, inf)
    circle_hi = torch.where(d2 >= 0, centre[:, 0:1] + half, -inf)

    h = {k: _tensor(v, device) for k, v in deadleaves.edges(leaves["poly"]).items()}
    a, c, e, used = (h[k][:, :, None] for k in ("a", "c", "e", "used"))  # K x 4 x 1
    rhs = c - e * ys
    bound = rhs / a
    lo = torch.where(used & (a > 0), bound, -inf).amax(dim=1)
    hi = torch.where(used & (a < 0), bound, inf).amin(dim=1)
    lo = torch.maximum(lo, h["xmin"][:, None])
    hi = torch.minimum(hi, h["xmax"][:, None])
    blocked = (used & (a == 0) & (rhs > 0)).any(dim=1) | (ys < h["ymin"][:, None]) | (ys > h["ymax"][:, None])
    lo = torch.where(blocked, inf, lo)

    circle = _tensor(leaves["kind"] == deadleaves.CIRCLE, device)[:, None]
    lo, hi = torch.where(circle, circle_lo, lo), torch.where(circle, circle_hi, hi)
    first = torch.ceil(lo).clamp(0, size).long()
    last = torch.floor(hi).clamp(-1, size - 1).long()
    return first, last


def covered_pixels(first: torch.Tensor, last: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Expand K x S column spans into (leaf, pixel = row * S + column) pairs, one per covered pixel."""
    counts = (last - first + 1).clamp(min=0).flatten()
    total = int(counts.sum())
    rows = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts, output_size=total)
    start = torch.cumsum(counts, 0) - counts
    cols = first.flatten()[rows] + torch.arange(total, device=counts.device) - start[rows]
    return rows // size, (rows % size) * size + cols


def paint(size: int, rngs: Sequence[np.random.Generator], kinds: tuple[int, ...], textures: int = 0,
          device: torch.device | str = "cpu") -> tuple[torch.Tensor, list[dict]]:
    """`deadleaves.paint` for a batch of images (one generator each): int64 label maps B x S x S on `device`
    and, per image, the leaves used."""
    device = torch.device(device)
    n, area = len(rngs), size * size
    labels = torch.full((n * area,), -1, dtype=torch.int64, device=device)
    chunks: list[list[dict]] = [[] for _ in range(n)]
    totals = [0] * n
    active = list(range(n))
    while active:
        drawn = [deadleaves.sample_leaves(rngs[i], size, kinds, deadleaves.CHUNK, textures) for i in active]
        for i, leaves in zip(active, drawn, strict=True):
            chunks[i].append(leaves)
        merged = {key: np.concatenate([d[key] for d in drawn]) for key in ("kind", "radius", "centre", "poly")}
        leaf, pixel = covered_pixels(*row_spans(merged, size, device), size)
        image = _tensor(np.asarray(active), device)[leaf // deadleaves.CHUNK]
        value = _tensor(np.asarray([totals[i] for i in active]), device)[leaf // deadleaves.CHUNK] \
            + leaf % deadleaves.CHUNK
        pixel = image * area + pixel
        before = labels.clone()
        labels.scatter_reduce_(0, pixel, value, "amax")
        uncovered = (labels.view(n, area) < 0).sum(dim=1).tolist()
        done = [i for i in active if uncovered[i] == 0]
        if done:  # the leaf that completes each finished canvas; later leaves of its chunk are not drawn
            first = torch.full_like(labels, torch.iinfo(torch.int64).max).scatter_reduce_(0, pixel, value, "amin")
            last_leaf = torch.where(before < 0, first, -1).view(n, area).amax(dim=1)
            finished = torch.zeros(n, dtype=torch.bool, device=device)
            finished[done] = True
            limit = torch.where(finished, last_leaf, torch.iinfo(torch.int64).max)
            keep = value <= limit[image]
            labels = before.scatter_reduce_(0, pixel[keep], value[keep], "amax")
            for i, t in zip(done, last_leaf[done].tolist(), strict=True):
                totals[i] = t + 1
        for i in active:
            if i not in done:
                totals[i] += deadleaves.CHUNK
        active = [i for i in active if i not in done and totals[i] < deadleaves.MAX_LEAVES]
    leaves = [{key: np.concatenate([c[key] for c in chunks[i]])[:totals[i]] for key in chunks[i][0]}
              for i in range(n)]
    return labels.view(n, size, size), leaves


def render(labels: torch.Tensor, leaves: Sequence[dict], textures: torch.Tensor | None = None) -> torch.Tensor:
    """`deadleaves.render` for a batch: uint8 B x S x S x 3 on the labels' device (`textures`: P x S x S x 3)."""
    device = labels.device
    counts = torch.tensor([len(leaf["kind"]) for leaf in leaves], device=device)
    offsets = (torch.cumsum(counts, 0) - counts)[:, None, None]
    index = torch.where(labels < 0, labels + counts[:, None, None], labels) + offsets  # -1: NumPy's last leaf
    if textures is None:
        return _tensor(np.concatenate([leaf["color"] for leaf in leaves]), device)[index]
    ids = _tensor(np.concatenate([leaf["texture"] for leaf in leaves]), device)[index]
    size = labels.shape[-1]
    rows = torch.arange(size, device=device)
    return textures[ids, rows[:, None], rows[None, :]]
