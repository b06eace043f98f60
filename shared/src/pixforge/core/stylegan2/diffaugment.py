"""DiffAugment (Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training", 2020; mit-han-lab
data-efficient-gans `DiffAugment_pytorch.py`): `diff_augment(x, "color,translation,cutout")` with the official
operations: colour = brightness `+ U(-0.5, 0.5)`, saturation `x (U(0, 2))` about the channel mean, contrast
`x (U(0.5, 1.5))` about the image mean; translation by integers up to `int(size / 8 + 0.5)` per axis with zero
fill; cutout of an `int(size / 2 + 0.5)` square whose centre is uniform over the image (clipped at the borders).

Translation and cutout are integer index operations (exact), as in the official code.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from pixforge.core.stylegan2.augment import rand, randint


def _uniform_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return rand([x.shape[0], 1, 1, 1], x.device, generator).to(x.dtype)


def diffaug_brightness(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add `U(-0.5, 0.5)` per sample."""
    return x + (_uniform_like(x, generator) - 0.5)


def diffaug_saturation(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Scale the deviation from the per-pixel channel mean by `U(0, 2)` per sample."""
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_uniform_like(x, generator) * 2) + mean


def diffaug_contrast(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Scale the deviation from the per-sample mean by `U(0.5, 1.5)`."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform_like(x, generator) + 0.5) + mean


def diffaug_translation(x: torch.Tensor, generator: torch.Generator | None = None,
                        ratio: float = 0.125) -> torch.Tensor:
    """Shift each sample by integers `(dy, dx)`, uniform in `[-int(H ratio + 0.5), +...]` per axis (rows first):
    `out[y, x] = in[y + dy, x + dx]`, zero where that falls outside."""
    batch, channels, height, width = x.shape
    sh, sw = int(height * ratio + 0.5), int(width * ratio + 0.5)
    dy = randint(-sh, sh + 1, [batch], x.device, generator)
    dx = randint(-sw, sw + 1, [batch], x.device, generator)
    padded = F.pad(x, [sw, sw, sh, sh])
    rows = torch.arange(height, device=x.device)[None] + dy[:, None] + sh  # [B, H]
    cols = torch.arange(width, device=x.device)[None] + dx[:, None] + sw  # [B, W]
    index = (rows[:, :, None] * (width + 2 * sw) + cols[:, None, :]).reshape(batch, 1, height * width)
    out = padded.reshape(batch, channels, -1).gather(2, index.expand(batch, channels, height * width))
    return out.reshape(batch, channels, height, width)


def diffaug_cutout(x: torch.Tensor, generator: torch.Generator | None = None, ratio: float = 0.5) -> torch.Tensor:
    """Zero an `int(H ratio + 0.5)` x `int(W ratio + 0.5)` rectangle per sample whose centre pixel is uniform over
    the image (the official offsets: one more position for even sizes), clipped at the borders."""
    batch, _, height, width = x.shape
    ch, cw = int(height * ratio + 0.5), int(width * ratio + 0.5)
    oy = randint(0, height + (1 - ch % 2), [batch], x.device, generator)
    ox = randint(0, width + (1 - cw % 2), [batch], x.device, generator)
    ys = torch.arange(height, device=x.device)[None] - (oy[:, None] - ch // 2)  # [B, H], 0 at the first cut row
    xs = torch.arange(width, device=x.device)[None] - (ox[:, None] - cw // 2)
    cut = ((ys >= 0) & (ys < ch))[:, :, None] & ((xs >= 0) & (xs < cw))[:, None, :]
    return x * (~cut)[:, None].to(x.dtype)


DIFFAUG_POLICIES: dict[str, tuple[Callable[..., torch.Tensor], ...]] = {
    "color": (diffaug_brightness, diffaug_saturation, diffaug_contrast),
    "translation": (diffaug_translation,),
    "cutout": (diffaug_cutout,),
}


def diff_augment(x: torch.Tensor, policy: str = "color,translation,cutout",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """DiffAugment: apply the comma-separated `policy` groups of `DIFFAUG_POLICIES` in order (every sample, every
    call; no probability). Differentiable w.r.t. `x` [B, C, H, W]; an empty policy returns `x`."""
    names = [name.strip() for name in policy.split(",") if name.strip()]
    unknown = [name for name in names if name not in DIFFAUG_POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {unknown}; expected names from {sorted(DIFFAUG_POLICIES)}")
    for name in names:
        for op in DIFFAUG_POLICIES[name]:
            x = op(x, generator=generator)
    return x
