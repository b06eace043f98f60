"""GAN losses shared by pixforge's image-to-image tools (SPADE / TSIT conventions).

Discriminator outputs may be one tensor or, for a multi-scale discriminator
(`pixforge.core.nets.patchgan.MultiScaleDiscriminator`), a list with one list per scale whose last entry is the
prediction and whose other entries are intermediate features. Adversarial losses take each scale's mean over all
its elements and average the scales.

* `hinge_d_loss`: E[max(0, 1 - D(real))] + E[max(0, 1 + D(fake))]
* `hinge_g_loss`: -E[D(fake)]
* `feature_matching_loss`: sum over scales and intermediate layers of L1(D_l(fake), D_l(real).detach()), divided by
  the number of scales (pix2pixHD).
* `VGGPerceptualLoss`: sum_i w_i * L1(VGG_i(x), VGG_i(y).detach()) on relu1_1 ... relu5_1 with w = 1/32 ... 1; it needs
  the public VGG19 weights, and without them it warns once and contributes zero.
* `ProceduralPerceptualLoss`: LPIPS's form (unit-normalised channels, no learned weights) on the stages of the
  procedural ResNet-18 that ships with pixforge-core; `perceptual_loss(kind, ...)` picks VGG19 or it ("auto": VGG19
  when its weights are found, else the procedural network).
* `kl_divergence(mu, logvar, reduction)`: the KL term of a VAE's diagonal Gaussian code, with the reduction stated.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

DiscOutput = torch.Tensor | list

PERCEPTUAL_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
PERCEPTUAL_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


def _predictions(outputs: DiscOutput) -> list[torch.Tensor]:
    """The prediction of every scale: a tensor as it is, the last entry of each scale's list."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    return [scale[-1] if isinstance(scale, (list, tuple)) else scale for scale in outputs]


def hinge_d_loss(real: DiscOutput, fake: DiscOutput) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss on real, loss on fake) for the discriminator; their sum is what it minimises."""
    reals, fakes = _predictions(real), _predictions(fake)
    loss_real = sum(F.relu(1.0 - p.float()).mean() for p in reals) / len(reals)
    loss_fake = sum(F.relu(1.0 + p.float()).mean() for p in fakes) / len(fakes)
    return loss_real, loss_fake


def hinge_g_loss(fake: DiscOutput) -> torch.Tensor:
    """The generator's hinge loss: minus the mean prediction on its images, averaged over scales."""
    fakes = _predictions(fake)
    return sum(-p.float().mean() for p in fakes) / len(fakes)


def feature_matching_loss(fake: list, real: list) -> torch.Tensor:
    """L1 between the discriminator's intermediate features on fake and (detached) real images, summed over layers
    and averaged over scales; `fake` / `real` are multi-scale outputs (lists of per-scale lists)."""
    if len(fake) != len(real):
        raise ValueError(f"feature matching needs as many scales for fake and real, got {len(fake)} and {len(real)}")
    total = fake[0][0].new_zeros((), dtype=torch.float32)
    for fake_scale, real_scale in zip(fake, real, strict=True):
        for f, r in zip(fake_scale[:-1], real_scale[:-1], strict=True):
            total = total + F.l1_loss(f.float(), r.detach().float())
    return total / len(fake)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor, reduction: str) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) of a diagonal Gaussian code (batch first).

    `reduction`: "sum" over batch and code (SPADE/TSIT's KLDLoss), "batchmean" summed over the code and
    averaged over the batch (the VAE evidence bound per sample), or "none" (one value per sample).
    """
    per_sample = -0.5 * torch.sum(1 + logvar - mu.square() - logvar.exp(), dim=tuple(range(1, mu.ndim)))
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "batchmean":
        return per_sample.mean()
    if reduction == "none":
        return per_sample
    raise ValueError(f"reduction must be 'sum', 'batchmean' or 'none', got {reduction!r}")


class VGGPerceptualLoss(nn.Module):
    """Weighted L1 between VGG19 activations of `x` and `y` (y detached), or zero when no weights are available.

    `weights`: path or URL of torchvision's `vgg19` state dict (`vgg19-dcbb9e9d.pth`); None looks at
    `$PIXFORGE_VGG19_WEIGHTS` and the torch hub cache, and without a file the loss is off (`enabled` False) after a
    one-line warning. A path that does not exist is an error (`PixforgeError`).
    """

    def __init__(self, weights: str | os.PathLike | None = None, layers: Sequence[str] = PERCEPTUAL_LAYERS,
                 layer_weights: Sequence[float] = PERCEPTUAL_WEIGHTS, imagenet_norm: bool = False,
                 input_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__()
        from pixforge.core.nets.vgg import WEIGHTS_ENV, WEIGHTS_URL, VGG19Features, resolve_weights

        if len(layers) != len(layer_weights):
            raise ValueError(f"{len(layers)} layers but {len(layer_weights)} layer weights")
        self.layer_weights = [float(w) for w in layer_weights]
        source = resolve_weights(weights)
        self.vgg = None if source is None else VGG19Features(source, layers, imagenet_norm, input_range)
        self.enabled = self.vgg is not None
        if not self.enabled:
            logging.getLogger("pixforge").warning(
                "no VGG19 weights given: the perceptual loss is off (pass the torchvision file %s by path or URL, "
                "or set %s)", WEIGHTS_URL.rsplit("/", 1)[-1], WEIGHTS_ENV)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.vgg is None:
            return x.new_zeros((), dtype=torch.float32)
        with torch.no_grad():
            fy = self.vgg(y)
        fx = self.vgg(x)
        return sum(w * F.l1_loss(a.float(), b.float())
                   for w, a, b in zip(self.layer_weights, fx, fy, strict=True))


class ProceduralPerceptualLoss(nn.Module):
    """LPIPS's distance without its learned layer weights, on the four stages of pixforge-core's procedural ResNet-18
    (`pixforge.core.nets.procedural`, shipped, no download): per stage, each position's channel vector divided by its
    norm, squared differences summed over channels and averaged over positions; the stages averaged. `y` is
    detached; images in `input_range` at their own size (the network is convolutional). What core uses for a
    perceptual term when no VGG19 weights are given.
    """

    def __init__(self, weights: str | os.PathLike | None = None,
                 input_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__()
        from pixforge.core.nets.procedural import ProceduralFeatures

        self.features = ProceduralFeatures(weights)
        self.lo, self.span = float(input_range[0]), float(input_range[1] - input_range[0])

    def _stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.features.normalise((x.to(self.features.net.conv1.weight.dtype) - self.lo) / self.span)
        return [f / (f.square().sum(1, keepdim=True) + 1e-10).sqrt() for f in self.features.stages(x)]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            fy = self._stages(y)
        fx = self._stages(x)
        return sum((a - b).square().sum(1).mean() for a, b in zip(fx, fy, strict=True)) / len(fx)


PERCEPTUAL = ("auto", "vgg", "pfr18", "off")


def perceptual_kind(kind: str = "auto", vgg_weights: str | os.PathLike | None = None) -> str:
    """--perceptual resolved before any work: "vgg" (VGG19 with torchvision's weights from `vgg_weights`,
    `$PIXFORGE_VGG19_WEIGHTS` or the torch hub cache; an error without them), "pfr18" (`ProceduralPerceptualLoss`, no
    download), "off"; "auto" is "vgg" when the weights are found, else "pfr18"."""
    from pixforge.core.nets.vgg import WEIGHTS_ENV, resolve_weights
    from pixforge.export.errors import PixforgeError

    if kind not in PERCEPTUAL:
        raise PixforgeError(f"--perceptual must be one of {', '.join(PERCEPTUAL)}, got {kind!r}")
    if kind in ("pfr18", "off"):
        return kind
    if resolve_weights(vgg_weights) is not None:
        return "vgg"
    if kind == "vgg":
        raise PixforgeError(f"--perceptual vgg needs torchvision's VGG19 weights: pass --vgg-weights PATH or set "
                            f"{WEIGHTS_ENV} (or use --perceptual pfr18, which needs no download)")
    logging.getLogger("pixforge").info("no VGG19 weights: the perceptual term uses pixforge-core's procedural "
                                       "ResNet-18 (pfr18)")
    return "pfr18"


def perceptual_loss(kind: str, vgg_weights: str | os.PathLike | None = None, imagenet_norm: bool = False,
                    input_range: tuple[float, float] = (-1.0, 1.0)) -> nn.Module | None:
    """The perceptual loss of `kind` (resolved by `perceptual_kind`), None for "off"."""
    kind = perceptual_kind(kind, vgg_weights)
    if kind == "vgg":
        return VGGPerceptualLoss(vgg_weights, imagenet_norm=imagenet_norm, input_range=input_range)
    return ProceduralPerceptualLoss(input_range=input_range) if kind == "pfr18" else None
