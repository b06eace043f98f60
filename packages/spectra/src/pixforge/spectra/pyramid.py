"""A frequency-domain steerable pyramid (Simoncelli & Freeman; the `buildSFpyr` / `reconSFpyr` design of
matlabPyrTools and pyrtools' `SteerablePyramidFreq`), batched in torch.

`decompose(x, scales, orientations=4)` -> (high-pass residual, [scale 0 bands (full size, orientations stacked),
scale 1 bands (half size), ...], low-pass residual); `compose` inverts it exactly (a tight frame); `build` lists
the bands one by one.
Masks: raised-cosine radial transitions one octave wide, angular `cos^(K-1)` lobes, as in the reference code.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch


def _radial(log_rad: torch.Tensor, position: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) raised-cosine masks: high rises from 0 at log2 radius `position - 1/2` to 1 at `position + 1/2`."""
    phase = ((log_rad - position) * (math.pi / 2) - math.pi / 4).clamp(-math.pi / 2, 0.0)
    high = torch.cos(phase)
    return high, torch.sqrt((1.0 - high * high).clamp_min(0.0))


def _half(mask: torch.Tensor) -> torch.Tensor:
    """A mask on the centred frequency grid -> the unshifted rfft2 layout (n x n/2+1)."""
    return torch.fft.ifftshift(mask)[:, : mask.shape[-1] // 2 + 1].contiguous()


@lru_cache(maxsize=16)
def _masks(size: int, scales: int, orientations: int, device: str) -> dict:
    ramp = (torch.arange(size, dtype=torch.float64) - size // 2) / (size / 2)
    yy, xx = torch.meshgrid(ramp, ramp, indexing="ij")
    rad = torch.sqrt(xx * xx + yy * yy)
    rad[size // 2, size // 2] = rad[size // 2, size // 2 - 1]
    log_rad, angle = torch.log2(rad), torch.atan2(yy, xx)
    hi0, lo0 = _radial(log_rad, -0.5)
    order = orientations - 1
    const = (2 ** (2 * order)) * math.factorial(order) ** 2 / (orientations * math.factorial(2 * order))
    levels = []
    for level in range(scales):
        n = log_rad.shape[0]
        high, low = _radial(log_rad, -1.5 - level)
        angular = torch.stack([_half(math.sqrt(const) * torch.cos(angle - math.pi * b / orientations) ** order
                                     * high) for b in range(orientations)])
        start, end = n // 4, n // 4 + n // 2
        rows = torch.cat([torch.arange(0, n // 4), torch.arange(n - n // 4, n)])
        levels.append({"bands": (angular * ((-1j) ** order)).to(torch.complex64).to(device),
                       "low": _half(low[start:end, start:end]).float().to(device),
                       "rows": rows.to(device), "cols": n // 4 + 1, "size": n})
        log_rad, angle = log_rad[start:end, start:end], angle[start:end, start:end]
    return {"hi0": _half(hi0).float().to(device), "lo0": _half(lo0).float().to(device), "levels": levels}


def check(size: int, scales: int) -> None:
    if size % (2 ** (scales + 1)) != 0:
        raise ValueError(f"a {scales}-scale pyramid needs a size divisible by {2 ** (scales + 1)}, got {size}")


def decompose(x: torch.Tensor, scales: int, orientations: int = 4) -> tuple:
    """x: ... x S x S real -> (high-pass residual ... x S x S, [scale k bands ... x orientations x S/2^k x S/2^k],
    low-pass residual ... x S/2^scales x S/2^scales), float32."""
    size = x.shape[-1]
    check(size, scales)
    m = _masks(size, scales, orientations, str(x.device))
    dft = torch.fft.rfft2(x.float())
    high = torch.fft.irfft2(dft * m["hi0"], s=(size, size))
    lo = dft * m["lo0"]
    levels = []
    for level in m["levels"]:
        n = level["size"]
        levels.append(torch.fft.irfft2(lo.unsqueeze(-3) * level["bands"], s=(n, n)))
        lo = lo.index_select(-2, level["rows"])[..., : level["cols"]] * level["low"]
    return high, levels, torch.fft.irfft2(lo, s=(size >> scales, size >> scales))


def compose(high: torch.Tensor, levels: list[torch.Tensor], low: torch.Tensor) -> torch.Tensor:
    """The inverse of `decompose`."""
    size, orientations = high.shape[-1], levels[0].shape[-3]
    m = _masks(size, len(levels), orientations, str(high.device))
    lo = torch.fft.rfft2(low)
    for level, bands in zip(reversed(m["levels"]), reversed(levels), strict=True):
        full = (torch.fft.rfft2(bands) * level["bands"].conj()).sum(dim=-3)
        full[..., level["rows"], : level["cols"]] += lo * level["low"]
        lo = full
    return torch.fft.irfft2(lo * m["lo0"] + torch.fft.rfft2(high) * m["hi0"], s=(size, size))


def build(x: torch.Tensor, scales: int, orientations: int = 4) -> list[torch.Tensor]:
    """`decompose` as a flat list: [high-pass, scale 0 bands, ..., low-pass residual], each ... x s x s."""
    high, levels, low = decompose(x, scales, orientations)
    return [high, *(band for bands in levels for band in bands.unbind(-3)), low]
