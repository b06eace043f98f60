"""How the discriminator's inputs are augmented, and how the augmentation probability p adapts.

One small interface that the loss and the loop call, so a method plugs in without touching either:

    strategy.mix_reals(reals, fakes, u)   the reals D sees in its main and R1 steps (APA replaces some by fakes)
    strategy.augment(images, generator)   every image D sees (reals and fakes alike): ADA's pipe, DiffAugment, none
    strategy.observe(real_logits)         D's outputs on those reals, the overfitting heuristic's evidence
    strategy.adjust(step, batch)          after each step: every `interval` steps, move p towards the target

`AdaptiveP` is ADA's controller (Karras et al., 2020, section 3): r_t = E[sign(D(real))] over the samples since the
last update, gathered across processes; every `interval` steps
`p <- max(0, p + sign(r_t - target) * batch * interval / (kimg * 1000))`. APA (Jiang et al., 2021) drives its
own p with the same rule on its lambda_r.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from pixforge.core import distributed


class AdaptiveP:
    """ADA's p controller: the mean sign of D's real logits against `target`, updated every `interval` steps."""

    def __init__(self, target: float = 0.6, interval: int = 4, kimg: float = 500, p: float = 0.0):
        self.target, self.interval, self.kimg, self.p = target, interval, kimg, p
        self.signal = float("nan")  # the last r_t (lambda_r), for the log
        self._sum: torch.Tensor | float = 0.0
        self._count = 0

    def observe(self, real_logits: torch.Tensor) -> None:
        self._sum = self._sum + real_logits.detach().float().sign().sum()
        self._count += real_logits.numel()

    def adjust(self, step: int, batch: int) -> None:
        """Called after step `step` (1-based) of `batch` images: update p on every `interval`-th step."""
        if step % self.interval:
            return
        stats = torch.as_tensor([float(self._sum), float(self._count)], dtype=torch.float64)
        if distributed.info().enabled:
            stats = distributed.all_reduce_mean(stats) * distributed.info().world_size
        self._sum, self._count = 0.0, 0
        if stats[1] == 0:
            return
        self.signal = float(stats[0] / stats[1])
        direction = (self.signal > self.target) - (self.signal < self.target)
        self.p = max(0.0, self.p + direction * batch * self.interval / (self.kimg * 1000))

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p, "signal": self.signal, "sum": float(self._sum), "count": self._count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p, self.signal, self._sum, self._count = state["p"], state["signal"], state["sum"], state["count"]


class Augmentation:
    """An augmentation strategy: `pipe` applied to every image D sees (with probability p when it is ADA's
    pipe), p fixed or adapted by `controller`. No pipe and no controller: `--aug noaug`."""

    name = "noaug"

    def __init__(self, pipe: Callable | None = None, p: float = 0.0, controller: AdaptiveP | None = None):
        self.pipe, self.controller, self._p = pipe, controller, p
        if controller is not None:
            controller.p = p

    @property
    def p(self) -> float:
        return self.controller.p if self.controller is not None else self._p

    @property
    def signal(self) -> float:
        """The controller's last lambda_r / r_t (NaN without a controller)."""
        return self.controller.signal if self.controller is not None else float("nan")

    def mix_reals(self, reals: torch.Tensor, fakes: torch.Tensor | None, uniform: torch.Tensor) -> torch.Tensor:
        """The reals D is shown in its main and R1 steps; `uniform` holds one U(0, 1) draw per sample."""
        return reals

    def augment(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.pipe is None:
            return images
        if isinstance(self.pipe, torch.nn.Module) and hasattr(self.pipe, "p"):
            if self.p <= 0:
                return images
            self.pipe.p.fill_(self.p)
        return self.pipe(images, generator=generator)

    def observe(self, real_logits: torch.Tensor) -> None:
        if self.controller is not None:
            self.controller.observe(real_logits)

    def adjust(self, step: int, batch: int) -> None:
        if self.controller is not None:
            self.controller.adjust(step, batch)

    def state_dict(self) -> dict[str, Any]:
        return {"p": self._p, "controller": None if self.controller is None else self.controller.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._p = state["p"]
        if self.controller is not None and state.get("controller") is not None:
            self.controller.load_state_dict(state["controller"])


CORE = ("noaug", "fixed", "ada", "diffaug")


def build(aug: str, *, p: float = 0.0, target: float = 0.6, interval: int = 4, kimg: float = 500,
          augpipe: str = "bgc", policy: str = "color,translation,cutout",
          device: torch.device | str = "cpu") -> Augmentation:
    """The core strategies by name: noaug, fixed (ADA's pipe at p), ada (its pipe, p adapted), diffaug (DiffAugment
    `policy`, no p). Tools add their own (pixforge-apa: apa, ada+apa) on top of these."""
    from pixforge.core.stylegan2.augment import AugmentPipe
    from pixforge.core.stylegan2.diffaugment import diff_augment

    if aug == "noaug":
        strategy = Augmentation()
    elif aug == "fixed":
        strategy = Augmentation(AugmentPipe.from_spec(augpipe).to(device), p=p)
    elif aug == "ada":
        strategy = Augmentation(AugmentPipe.from_spec(augpipe).to(device), p=p,
                                controller=AdaptiveP(target, interval, kimg))
    elif aug == "diffaug":
        strategy = Augmentation(functools.partial(diff_augment, policy=policy))
    else:
        raise ValueError(f"unknown augmentation {aug!r}: noaug, fixed, ada or diffaug")
    strategy.name = aug
    return strategy
