"""DeeperForensics-1.0 distortions as a training augmentation on batches (CPU or CUDA), differentiable where
possible (straight-through rounding; see `pixforge.forensics.batch`).

    aug = RandomDistortion(p=0.5, mix=(1, 3), value_range=(-1, 1), seed=0)
    x = aug(x)   # N x 3 x H x W floats: each sample, with probability p, gets 1-3 distinct random types in random
                 # order, each at a random level from `levels`
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pixforge.forensics.batch import distort_batch
from pixforge.forensics.distortions import FRAME_TYPES, LEVELS, check_level, check_type


class RandomDistortion(torch.nn.Module):
    """Random DeeperForensics distortions per sample: probability `p`, `mix` = (fewest, most) distinct types per
    sample, drawn from `types` at `levels`. Inputs are RGB floats in `value_range`; outputs too."""

    def __init__(self, p: float = 0.5, types: Sequence[str] = FRAME_TYPES, levels: Sequence[int] = LEVELS,
                 mix: int | tuple[int, int] = 1, value_range: tuple[float, float] = (-1.0, 1.0),
                 differentiable: bool = True, seed: int | None = None):
        super().__init__()
        self.types = [check_type(t) for t in types]
        if "VC" in self.types or not self.types:
            raise ValueError("types must be a non-empty subset of CS, CC, BW, GNC, GB, JPEG (VC is video-only)")
        self.levels = [check_level(lv) for lv in levels]
        self.mix = (mix, mix) if isinstance(mix, int) else tuple(mix)
        if not 1 <= self.mix[0] <= self.mix[1] <= len(self.types):
            raise ValueError(f"mix must lie within 1..{len(self.types)}, got {mix}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability, got {p}")
        self.p, self.value_range, self.differentiable = p, value_range, differentiable
        self.generator = torch.Generator()
        self.generator.manual_seed(torch.seed() if seed is None else seed)

    def draw(self, n: int) -> list[list[tuple[str, int]]]:
        """The steps of each of `n` samples (empty when it is left alone)."""
        g, plans = self.generator, []
        for _ in range(n):
            if torch.rand((), generator=g) >= self.p:
                plans.append([])
                continue
            count = int(torch.randint(self.mix[0], self.mix[1] + 1, (), generator=g))
            order = torch.randperm(len(self.types), generator=g)[:count].tolist()
            plans.append([(self.types[i], self.levels[int(torch.randint(len(self.levels), (), generator=g))])
                          for i in order])
        return plans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.value_range
        plans = self.draw(x.shape[0])
        touched = [i for i, plan in enumerate(plans) if plan]
        if not touched:
            return x
        plans = [plans[i] for i in touched]
        chosen = torch.tensor(touched, device=x.device)
        pixels = (x.index_select(0, chosen) - lo) * (255.0 / (hi - lo))
        for step in range(max(len(p) for p in plans)):
            groups: dict[tuple[str, int], list[int]] = {}
            for i, plan in enumerate(plans):
                if step < len(plan):
                    groups.setdefault(plan[step], []).append(i)
            for (kind, level), rows in groups.items():
                index = torch.tensor(rows, device=x.device)
                out = distort_batch(pixels.index_select(0, index), kind, level, generator=self.generator,
                                    differentiable=self.differentiable)
                pixels = pixels.index_copy(0, index, out.to(pixels.dtype))
        return x.index_copy(0, chosen, (pixels * ((hi - lo) / 255.0) + lo).to(x.dtype))
