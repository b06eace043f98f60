"""APA: deceive the discriminator with its generator's own fakes, presented as real, with an adaptive probability.

As the official code (EndlessSora/DeceiveD, `training/loss.py` and `training/training_loop.py`):

* In the discriminator's main step and in its R1 step, each real image is replaced, with probability p and
  independently per sample, by the generator's fake of the same batch index from this step's G main phase
  (detached): `x_mixed = flag * G(z) + (1 - flag) * x`, `flag ~ Bernoulli(p)`. R1 is taken on the mixed batch.
* lambda_r = E[sign(D(x_mixed))] over the samples since the last update, gathered across processes; every 4 steps
  `p <- max(0, p + sign(lambda_r - target) * batch * 4 / (apa_kimg * 1000))`, target 0.6, apa_kimg 500 (100 when
  the run starts from trained weights). This is ADA's rule on APA's evidence (`pixforge.core.stylegan2.strategy`).
* `--aug ada+apa` (DeceiveD's `--with-dataaug`): ADA's pipe is also applied to every image D sees, with the same p.
"""

from __future__ import annotations

import torch

from pixforge.core.stylegan2.augment import AugmentPipe
from pixforge.core.stylegan2.strategy import AdaptiveP, Augmentation


class PseudoAugmentation(Augmentation):
    """The APA strategy: `mix_reals` shows D fakes as reals with probability p."""

    name = "apa"

    def mix_reals(self, reals: torch.Tensor, fakes: torch.Tensor | None, uniform: torch.Tensor) -> torch.Tensor:
        if fakes is None:
            return reals
        flags = (uniform < self.p).reshape(-1, 1, 1, 1)
        return torch.where(flags, fakes.to(reals.dtype), reals)


def apa(p: float = 0.0, target: float = 0.6, kimg: float = 500, device: torch.device | str = "cpu",
        **_: object) -> PseudoAugmentation:
    """`--aug apa`: p adapted from lambda_r (the official default)."""
    return PseudoAugmentation(p=p, controller=AdaptiveP(target, 4, kimg))


def apa_fixed(p: float = 0.0, **_: object) -> PseudoAugmentation:
    """`--aug apa-fixed --p P`: APA at a constant p (DeceiveD's `--aug fixed`)."""
    strategy = PseudoAugmentation(p=p)
    strategy.name = "apa-fixed"
    return strategy


def ada_apa(p: float = 0.0, target: float = 0.6, kimg: float = 500, augpipe: str = "bgc",
            device: torch.device | str = "cpu", **_: object) -> PseudoAugmentation:
    """`--aug ada+apa`: APA plus ADA's pipe on D's inputs, one p (DeceiveD's `--with-dataaug true`)."""
    strategy = PseudoAugmentation(AugmentPipe.from_spec(augpipe).to(device), p=p,
                                  controller=AdaptiveP(target, 4, kimg))
    strategy.name = "ada+apa"
    return strategy


STRATEGIES = {"apa": apa, "apa-fixed": apa_fixed, "ada+apa": ada_apa}
