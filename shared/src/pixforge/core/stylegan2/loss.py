"""StyleGAN2's loss, by phase, as NVlabs' `StyleGAN2Loss` (stylegan2-ada-pytorch `training/loss.py`).

    Gmain   non-saturating logistic loss of G: softplus(-D(G(z)))
    Greg    path-length regularisation on a batch shrunk by `pl_batch_shrink`: (|J_w^T y| - a)^2 * pl_weight, with
            y ~ N(0, I) / sqrt(H W) and a the running mean of the lengths (decay `pl_decay`)
    Dmain   softplus(D(G(z))) + softplus(-D(x))
    Dreg    lazy R1: gamma / 2 * |grad_x D(x)|^2
    Gboth / Dboth   main and regularisation together (no lazy regularisation)

The gradients are scaled by `gain` (the phase's interval, so lazy regularisation keeps its strength). Style mixing
swaps the ws after a random layer with those of a second z with probability `style_mixing`. Every image D sees goes
through the augmentation strategy (`strategy.augment`), and the reals of the D steps through `strategy.mix_reals`
first (how APA shows D its generator's fakes as reals), D's real logits to `strategy.observe`.

Randomness is a pure function of (seed, step, global sample index): z, the mixing z, the path-length noise and the
per-sample uniform draws come from `pixforge.core.steps.sample_noise`; the mixing cut-off, the synthesis noise
and the augmentation draws from a generator seeded by (seed, step, phase, the round's first sample index). So a
resumed run continues exactly, and N processes on batch B train what one process trains on batch N * B in N rounds
of B (`batch_gpu` B: the minibatch-stddev groups and the path-length mean's updates are per round).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from pixforge.core import distributed
from pixforge.core.runtime import autocast
from pixforge.core.steps import sample_noise
from pixforge.core.stylegan2.strategy import Augmentation

PHASES = ("Gmain", "Greg", "Gboth", "Dmain", "Dreg", "Dboth")
SALTS = {"Gmain": 1, "Greg": 2, "Gboth": 1, "Dmain": 3, "Dreg": 4, "Dboth": 3}


class StyleGAN2Loss:
    def __init__(self, G: torch.nn.Module, D: torch.nn.Module, strategy: Augmentation, *, seed: int,
                 r1_gamma: float = 10.0, style_mixing: float = 0.9, pl_weight: float = 2.0,
                 pl_batch_shrink: int = 2, pl_decay: float = 0.01, amp_dtype: torch.dtype | None = None):
        self.G, self.D, self.strategy, self.seed = G, D, strategy, seed
        self.r1_gamma, self.style_mixing, self.amp_dtype = r1_gamma, style_mixing, amp_dtype
        self.pl_weight, self.pl_batch_shrink, self.pl_decay = pl_weight, pl_batch_shrink, pl_decay
        self.pl_mean = torch.zeros([], device=next(G.parameters()).device)
        self.fakes: dict[int, torch.Tensor] = {}  # this step's Gmain fakes, detached, by the round's first sample index
        self.fakes_step = -1
        self.synthesis_main, self.D_main = G.synthesis, D  # `compile()` swaps in compiled modules for the main phases

    def compile(self) -> None:
        """`torch.compile` the synthesis network and D for the main phases (the regularisers, which differentiate
        twice, keep the eager modules: compiled graphs do not support double backward)."""
        self.synthesis_main, self.D_main = torch.compile(self.G.synthesis), torch.compile(self.D)

    # Draws.
    def latents(self, indices: Sequence[int], salt: int, device: torch.device) -> torch.Tensor:
        return sample_noise([self.G.z_dim], indices, self.seed, salt, device)

    def generator(self, step: int, phase: str, device: torch.device, first: int = 0) -> torch.Generator:
        """The draws of one round, keyed by its first global sample index `first` (not the rank: so every round of
        a step draws anew, and round r of one process draws what rank r draws under torchrun)."""
        key = (((self.seed * 1_000_003 + step) * 8 + SALTS[phase]) * 1_000_003 + first) % 2**63
        return torch.Generator(device).manual_seed(key)

    # Forward passes.
    def run_G(self, z: torch.Tensor, c: torch.Tensor, mix_z: torch.Tensor, gen: torch.Generator, main: bool = True):
        ws = self.G.mapping(z, c)
        if self.style_mixing > 0:
            draws = torch.rand([2], generator=gen, device=gen.device).cpu()
            if draws[0] < self.style_mixing:
                cutoff = 1 + int(draws[1] * (ws.shape[1] - 1))  # uniform in [1, num_ws)
                ws = torch.cat([ws[:, :cutoff], self.G.mapping(mix_z, c, update_w_avg=False)[:, cutoff:]], dim=1)
        synthesis = self.synthesis_main if main else self.G.synthesis
        with autocast(z.device, self.amp_dtype):
            img = synthesis(ws, generator=gen).float()
        return img, ws

    def run_D(self, img: torch.Tensor, c: torch.Tensor, gen: torch.Generator, main: bool = True) -> torch.Tensor:
        """D's logits on the augmented images (D runs its top resolutions in low precision itself)."""
        return (self.D_main if main else self.D)(self.strategy.augment(img, generator=gen), c).float()

    # Phases.
    def accumulate_gradients(self, phase: str, real: torch.Tensor, real_c: torch.Tensor, gen_c: torch.Tensor,
                             indices: Sequence[int], step: int, gain: float, backward=None) -> dict[str, torch.Tensor]:
        """Forward, loss and backward (`backward(loss)`, default `loss.backward()`) of `phase` on one round;
        returns its loss terms, detached, for the log."""
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        backward = backward or torch.Tensor.backward
        dev = real.device
        do_Gmain, do_Dmain = phase in ("Gmain", "Gboth"), phase in ("Dmain", "Dboth")
        do_Gpl = phase in ("Greg", "Gboth") and self.pl_weight != 0
        do_Dr1 = phase in ("Dreg", "Dboth") and self.r1_gamma != 0
        salt, gen = SALTS[phase], self.generator(step, phase, dev, indices[0])
        z, mix_z = self.latents(indices, salt, dev), self.latents(indices, salt + 10, dev)
        terms: dict[str, torch.Tensor] = {}

        # Gmain: maximise D's logits for generated images.
        if do_Gmain:
            img, _ = self.run_G(z, gen_c, mix_z, gen)
            if self.fakes_step != step:
                self.fakes, self.fakes_step = {}, step
            self.fakes[indices[0]] = img.detach()
            logits = self.run_D(img, gen_c, gen)
            loss = F.softplus(-logits)
            backward(loss.mean().mul(gain))
            terms.update({"G/loss": loss.mean().detach(), "scores/fake": logits.mean().detach()})

        # Greg: path-length regularisation.
        if do_Gpl:
            n = max(len(indices) // self.pl_batch_shrink, 1)
            img, ws = self.run_G(z[:n], gen_c[:n], mix_z[:n], gen, main=False)
            noise = sample_noise(img.shape[1:], indices[:n], self.seed, salt + 20, dev) / math.sqrt(
                img.shape[2] * img.shape[3])
            grads, = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
            lengths = grads.square().sum(2).mean(1).sqrt()
            # NVlabs: the penalty's pl_mean keeps the graph of this batch's mean length; here its value is the
            # processes' mean (so every rank keeps the same pl_mean), its gradient that of the local mean (as NVlabs)
            local = lengths.mean()
            mean = local + (distributed.all_reduce_mean(local.detach()) - local.detach())
            pl_mean = self.pl_mean.lerp(mean, self.pl_decay)
            self.pl_mean.copy_(pl_mean.detach())
            penalty = (lengths - pl_mean).square()
            backward((img[:, 0, 0, 0] * 0 + penalty * self.pl_weight).mean().mul(gain))
            terms.update({"G/reg": (penalty * self.pl_weight).mean().detach(), "pl_penalty": penalty.mean().detach()})

        # Dmain: minimise D's logits for generated images.
        loss_fake = 0
        if do_Dmain:
            with torch.no_grad():
                img, _ = self.run_G(z, gen_c, mix_z, gen)
            logits = self.run_D(img, gen_c, gen)
            loss_fake = F.softplus(logits)
            backward(loss_fake.mean().mul(gain))
            terms["scores/fake"] = logits.mean().detach()

        # Dmain: maximise D's logits for real images (which the strategy may mix with fakes); Dreg: R1.
        if do_Dmain or do_Dr1:
            uniform = torch.special.ndtr(sample_noise([], indices, self.seed, salt + 30, dev))
            reals = self.strategy.mix_reals(real, self.fakes.get(indices[0]), uniform)
            reals = reals.detach().requires_grad_(do_Dr1)
            logits = self.run_D(reals, real_c, gen, main=not do_Dr1)
            self.strategy.observe(logits)
            total = logits * 0
            terms.update({"scores/real": logits.mean().detach(), "signs/real": logits.sign().mean().detach()})
            if do_Dmain:
                loss_real = F.softplus(-logits)
                total = total + loss_real
                terms["D/loss"] = (loss_fake + loss_real).mean().detach()
            if do_Dr1:
                grads, = torch.autograd.grad(logits.sum(), reals, create_graph=True)
                penalty = grads.square().sum([1, 2, 3])
                total = total + penalty[:, None] * (self.r1_gamma / 2)
                terms.update({"D/reg": (penalty * self.r1_gamma / 2).mean().detach(),
                              "r1_penalty": penalty.mean().detach()})
            backward(total.mean().mul(gain))
        return terms
