"""What a training loop needs at each step, as pure functions of the step: its samples, its noise, its lr.

* `StepSampler(start, steps, batch, rank, world)`: a DataLoader `batch_sampler` giving each rank the global
  sample indices of each step; the global batch is `batch * world`, and step s covers samples
  [s * batch * world, (s + 1) * batch * world), rank r taking its r-th slice.
* `sample_noise(shape, indices, seed, salt)`: standard normal noise per global sample index. Because both the
  samples and their noise depend only on (seed, step, rank, salt), a run resumed from a checkpoint continues
  exactly, and N processes on batch B train on what one process sees on batch N * B.
* `set_lr(optimizer, lr)`, `cosine_lr`, `linear_decay_lr`: learning-rate schedules, also pure functions of the
  step (nothing extra to checkpoint).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch


class StepSampler(torch.utils.data.Sampler):
    """Batches of global sample indices for steps `start` .. `steps - 1` of rank `rank` of `world`."""

    def __init__(self, start: int, steps: int, batch: int, rank: int = 0, world: int = 1):
        self.start, self.steps, self.batch, self.rank, self.world = start, steps, batch, rank, world

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            yield list(self.indices(step))

    def indices(self, step: int) -> range:
        """This rank's global sample indices at `step`."""
        first = (step * self.world + self.rank) * self.batch
        return range(first, first + self.batch)


def sample_noise(shape: Sequence[int], indices: Sequence[int], seed: int, salt: int = 0,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """len(indices) x `shape` standard normal noise, sample i drawn from (seed, global index i, salt) alone.

    Different `salt`s give independent streams for the different draws of one step (e.g. the G and D steps). Each
    draw is numpy's counter-based Philox with the 128-bit key (seed, i) and `salt` in the counter's top word, so no
    two keys share a stream: torch's CPU generator keeps only a seed's low 32 bits, and a key folded into one seed
    made far-apart indices (2**40, a SinGAN's z_opt, and 0, its first sample) draw the same noise.
    """
    shape, top = tuple(int(s) for s in shape), np.array([0, 0, 0, int(salt) % 2**64], np.uint64)
    draws = [np.random.Generator(np.random.Philox(key=np.array([int(seed) % 2**64, int(i) % 2**64], np.uint64),
                                                  counter=top)).standard_normal(shape, dtype=np.float32)
             for i in indices]
    return torch.from_numpy(np.stack(draws) if draws else np.empty((0, *shape), np.float32)).to(device)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every param group's learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def cosine_lr(base: float, step: int, steps: int) -> float:
    """A cosine from `base` at step 0 down to 0 at `steps`."""
    return base * 0.5 * (1 + math.cos(math.pi * step / steps))


def linear_decay_lr(base: float, step: int, steps: int, decay_steps: int) -> float:
    """`base` until the last `decay_steps` steps, then linearly down to 0 at `steps` (0: constant)."""
    return base if decay_steps <= 0 else base * min(1.0, (steps - step) / decay_steps)
