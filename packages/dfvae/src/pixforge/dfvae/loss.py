"""DF-VAE's training objective as a small loss object (in the style of NVlabs' stylegan2-ada-pytorch
`training/loss.py`, like `pixforge.core.stylegan2.loss`): one forward, every term returned separately for the log.

    rec_l1 / rec_vgg     L1 (and perceptual: VGG19 or core's pfr18, when given) between D_γ's face x̃_t and x_t
    fuse_l1 / fuse_vgg   the same between the fused output (MAdaIN, D_δ, blend into x_t) and x_t
    kl                   KL(q(z_x | x̂_t, x') || N(0, I)) of the whole code z_x = (z_s, z_a), summed over the code,
                         averaged over the batch (Eq. 3.4's KL term with the standard normal prior)
    temporal             Eq. 3.7: 1/(CHW) |flow(x̃_t, x_{t-1}) - flow(x_t, x_{t-1})|_1, C = 2, P = 1, no warping;
                         the flow estimator is frozen, the flow of the real pair carries no gradient

The thesis states the form of each term but no weight: `LossWeights`' values are pixforge's. The reparameterisation
noise is a pure function of (seed, global sample index) (`pixforge.core.steps.sample_noise`), so a resumed or
sharded run draws what one uninterrupted process draws.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pixforge.core.losses import kl_divergence
from pixforge.core.runtime import autocast
from pixforge.core.steps import sample_noise
from pixforge.dfvae.nets import DFVAE, Reconstruction

STRUCTURE_SALT, APPEARANCE_SALT = 1, 2


@dataclass(frozen=True)
class LossWeights:
    """Weight of each term (a term with weight 0 is not computed)."""

    rec_l1: float = 1.0
    fuse_l1: float = 1.0
    vgg: float = 1.0  # both perceptual terms (rec_vgg, fuse_vgg), only when a perceptual loss is given
    kl: float = 1e-5
    temporal: float = 0.1

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 0:
                raise ValueError(f"loss weight {name} must be >= 0, got {value}")


@dataclass
class FrameBatch:
    """One batch of training samples, images in [-1, 1] at the model's resolution.

    `frame` x_t, `previous` x_{t-1} (the frame before it in the same video; P = 1), `heatmaps` x̂_t (landmark
    heatmaps of x_t), `reference` x' (another frame of x_t's identity), `mask` m^b (blurred face mask of x_t)."""

    frame: torch.Tensor
    previous: torch.Tensor
    heatmaps: torch.Tensor
    reference: torch.Tensor
    mask: torch.Tensor


def temporal_loss(flow: torch.nn.Module, reconstructed: torch.Tensor, frame: torch.Tensor,
                  previous: torch.Tensor) -> torch.Tensor:
    """Eq. 3.7 averaged over the batch: mean |flow(x̃_t, x_{t-1}) - flow(x_t, x_{t-1})| over (2, H, W)."""
    with torch.no_grad():
        real = flow(frame, previous)
    return F.l1_loss(flow(reconstructed, previous), real)


class Reconstructor(torch.nn.Module):
    """`DFVAE.reconstruct` as a module's forward: what the trainer wraps in DistributedDataParallel (which
    synchronises the gradients of the passes that go through its own forward)."""

    def __init__(self, model: DFVAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: torch.Tensor) -> Reconstruction:
        return self.model.reconstruct(*args)


class DFVAELoss:
    """DF-VAE's loss terms for `model` (a `DFVAE`); `flow` the frozen flow estimator (e.g.
    `pixforge.dfvae.flow.HornSchunckFlow()`), `perceptual` an optional perceptual loss module (core's
    `perceptual_loss`: VGG19 or the procedural ResNet-18; a `VGGPerceptualLoss` without weights counts as none),
    `scaler` an optional GradScaler for `accumulate_gradients`. `reconstruct`: the training forward to call
    (default `model.reconstruct`; the trainer passes a DDP-wrapped `Reconstructor(model)`)."""

    def __init__(self, model: DFVAE, flow: torch.nn.Module, perceptual: torch.nn.Module | None = None,
                 weights: LossWeights = LossWeights(), *, seed: int = 0, amp_dtype: torch.dtype | None = None,
                 scaler: torch.amp.GradScaler | None = None, reconstruct: Callable | None = None) -> None:
        self.model, self.flow, self.weights, self.seed = model, flow, weights, seed
        self.perceptual = perceptual if perceptual is not None and getattr(perceptual, "enabled", True) else None
        self.amp_dtype, self.scaler = amp_dtype, scaler
        self.reconstruct = reconstruct if reconstruct is not None else model.reconstruct

    def _noise(self, shape: Sequence[int], indices: Sequence[int], salt: int, device: torch.device) -> torch.Tensor:
        return sample_noise(shape, indices, self.seed, salt, device)

    def terms(self, batch: FrameBatch, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Every weighted term (with gradients) for the samples of global `indices`."""
        dev, w, c = batch.frame.device, self.weights, self.model.config
        scale = 2**c.levels
        s_shape = (c.structure_channels, batch.frame.shape[2] // scale, batch.frame.shape[3] // scale)
        s_noise = self._noise(s_shape, indices, STRUCTURE_SALT, dev)
        a_noise = self._noise((c.appearance_dim,), indices, APPEARANCE_SALT, dev)
        with autocast(dev, self.amp_dtype):
            out = self.reconstruct(batch.heatmaps, batch.reference, batch.frame, batch.mask, s_noise, a_noise)
        face, fused, target = out.face.float(), out.fused.float(), batch.frame.float()
        terms = {"rec_l1": w.rec_l1 * F.l1_loss(face, target), "fuse_l1": w.fuse_l1 * F.l1_loss(fused, target)}
        if self.perceptual is not None and w.vgg > 0:
            terms["rec_vgg"] = w.vgg * self.perceptual(face, target)
            terms["fuse_vgg"] = w.vgg * self.perceptual(fused, target)
        if w.kl > 0:
            terms["kl"] = w.kl * sum(kl_divergence(p.mu.float().flatten(1), p.logvar.float().flatten(1), "batchmean")
                                     for p in (out.structure, out.appearance))
        if w.temporal > 0:
            terms["temporal"] = w.temporal * temporal_loss(self.flow, face, target, batch.previous.float())
        return terms

    def accumulate_gradients(self, batch: FrameBatch, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Forward, total loss and (scaled) backward; returns the terms, detached, for the log."""
        terms = self.terms(batch, indices)
        total = sum(terms.values())
        (self.scaler.scale(total) if self.scaler is not None else total).backward()
        return {k: v.detach() for k, v in terms.items()}
