"""PetsGAN's networks and its trained sampler (the method, its losses and its training loop: `petsgan.py`).

    DEPNet G, D_G  noise + sinusoidal positional encoding -> a layout at 1/f; D_G, a strided critic with a linear head
    DIPNet F       PT (patch transfer onto c_I, Eq. 7) then IR (x f restoration)
    D              the multi-scale dilated patch discriminator on F(G(z)) against I
    PetsGAN        G -> PT -> IR at any size (the layout at ceil(H / f) x ceil(W / f), the output cropped)

The layer shapes follow the official code (zhangzc21/PetsGAN, `Models/models.py`): the supplementary's architecture
figure is not in the text we have.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pixforge.core.steps import sample_noise
from pixforge.export.errors import PixforgeError

PE_CHANNELS = 8  # official d_model of the sinusoidal encoding
PATCH = 7  # the PT window s
MIN_LR_SIDE = 10  # D_G's three stride-2 convolutions + InstanceNorm need at least 2x2 at the end
MIN_SAMPLE_LR = 4  # IR's 5x5 reflect padding needs >= 3
TAU_JOINT = 1e-5  # official PT temperature in the joint phase and at sampling


# ----------------------------------------------------------------------------------------------------------------
# Networks.

def sinusoidal_encoding(channels: int, height: int, width: int) -> torch.Tensor:
    """The 2-D sinusoidal positional encoding (C x H x W): the first C/2 channels encode x, the rest y;
    with d = C/2 and w_k = 10000 ** (-2k / d), channel 2k is sin(x w_k), 2k+1 cos(x w_k) (and d + 2k, d + 2k + 1
    the same of y)."""
    if channels % 4:
        raise ValueError(f"the positional encoding needs a multiple of 4 channels, got {channels}")
    half = channels // 2
    freq = torch.exp(torch.arange(0.0, half, 2) * -(math.log(10000.0) / half))  # (half / 2,)
    # arange(int, dtype) rather than arange(float(...)): the sizes stay symbolic in an ONNX export (dynamic H, W)
    xs = torch.arange(width, dtype=torch.float32)[:, None] * freq  # (W, half / 2)
    ys = torch.arange(height, dtype=torch.float32)[:, None] * freq  # (H, half / 2)
    pe = torch.zeros(channels, height, width)
    pe[0:half:2] = xs.sin().t()[:, None, :].expand(-1, height, -1)
    pe[1:half:2] = xs.cos().t()[:, None, :].expand(-1, height, -1)
    pe[half::2] = ys.sin().t()[:, :, None].expand(-1, -1, width)
    pe[half + 1::2] = ys.cos().t()[:, :, None].expand(-1, -1, width)
    return pe


class DEPNet(nn.Module):
    """G: noise N x 1 x h x w (+ the encoding) -> layout N x 3 x h x w; five unpadded 3x3 convolutions after a
    5-pixel zero padding (official shapes: 64, 128, 128, 128 channels, InstanceNorm + ReLU after the 2nd-4th)."""

    def __init__(self, dim: int = 64):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(1 + PE_CHANNELS, dim, 3), nn.Conv2d(dim, 2 * dim, 3), nn.InstanceNorm2d(2 * dim), nn.ReLU(True),
            nn.Conv2d(2 * dim, 2 * dim, 3), nn.InstanceNorm2d(2 * dim), nn.ReLU(True),
            nn.Conv2d(2 * dim, 2 * dim, 3), nn.InstanceNorm2d(2 * dim), nn.ReLU(True),
            nn.Conv2d(2 * dim, 3, 3), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        pe = sinusoidal_encoding(PE_CHANNELS, *z.shape[-2:]).to(z)
        x = torch.cat([z, pe.expand(z.shape[0], -1, -1, -1)], 1)
        return self.main(F.pad(x, [5] * 4))


def conv_block(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1, pad_mode: str = "zeros",
               slope: float = 0.2) -> nn.Sequential:
    """conv - InstanceNorm - LeakyReLU (the official ConvBlock with norm 'in')."""
    pad = dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, padding_mode=pad_mode),
                         nn.InstanceNorm2d(cout), nn.LeakyReLU(slope, inplace=True))


class DEPDiscriminator(nn.Module):
    """D_G: a 3x3 block then three stride-2 blocks (32 -> 256 channels) and a linear head over the whole map."""

    def __init__(self, size: tuple[int, int], dim: int = 32):
        super().__init__()
        self.blocks = nn.Sequential(conv_block(3, dim), *[conv_block(dim * 2**i, dim * 2 ** (i + 1), stride=2)
                                                          for i in range(3)])
        h, w = size
        for _ in range(3):
            h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        self.linear = nn.Linear(dim * 8 * h * w, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.blocks(x).flatten(1))


def fold_divisor(size: tuple[int, int], patch: int = PATCH) -> torch.Tensor:
    """1 / (how many padded `patch` x `patch` windows cover each pixel): overlapping patches are averaged."""
    ones = torch.ones(1, 1, *size)
    count = F.fold(F.unfold(ones, patch, padding=patch // 2), size, patch, padding=patch // 2)
    return 1.0 / count


def windows(x: torch.Tensor, patch: int = PATCH) -> torch.Tensor:
    """The `patch` x `patch` window around every pixel (N x C*patch^2 x H*W), reflect-padded: zero padding would
    give the border windows a zero pattern that tells their position, and on a small layout (most windows touch the
    border) PT then matches each window to its own position whatever its content."""
    return F.unfold(F.pad(x, [patch // 2] * 4, mode="reflect"), patch)


class PatchTransfer(nn.Module):
    """PT: every 7x7 patch of x replaced by its best match in `ref`, scaled by the match's attention a_{i,i*}.

    Similarities b_ij are cosines between 7x7 windows of conv features (VGG conv1_1 -> ReLU -> conv1_2 -> ReLU,
    64 channels; from VGG19 weights when given, else random), A = softmax_j(b_ij / tau); the output pixel is the
    average over the windows covering it. `passes` > 1 repeats the transfer on its own output, matching the previous
    pass's features again (the official `lpm_iter`, 10 in its joint phase and sampling). Returns (output, A of the
    last pass) with A N x L_x x L_ref."""

    def __init__(self, vgg_weights: str | Path | None = None, passes: int = 1):
        super().__init__()
        self.passes = passes
        self.features = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, padding_mode="reflect"), nn.ReLU(),
                                      nn.Conv2d(64, 64, 3, 1, 1, padding_mode="reflect"), nn.ReLU())
        if vgg_weights is not None:
            from pixforge.core.nets.inception import load_weights

            state = load_weights(vgg_weights)
            # torchvision's VGG19 (features.0 / .2) or the official Pretrained/vgg_conv.pth (conv1_1 / conv1_2)
            names = ("conv1_1", "conv1_2") if "conv1_1.weight" in state else ("features.0", "features.2")
            try:
                for layer, name in zip((0, 2), names, strict=True):
                    self.features[layer].weight.data.copy_(state[f"{name}.weight"])
                    self.features[layer].bias.data.copy_(state[f"{name}.bias"])
            except (KeyError, RuntimeError):
                raise PixforgeError(f"--vgg {vgg_weights} is not a VGG19 state dict (torchvision's, or the official "
                                    "vgg_conv.pth)") from None

    def forward(self, x: torch.Tensor, ref: torch.Tensor, tau: float, hard: bool = False,
                passes: int | None = None):
        n, size, pad = x.shape[0], x.shape[-2:], PATCH // 2
        x01, ref01 = (x + 1) / 2, (ref + 1) / 2
        fr = F.normalize(windows(self.features(ref01)), dim=1)  # 1 x C49 x Lr
        for _ in range(self.passes if passes is None else passes):
            fx = F.normalize(windows(self.features(x01)), dim=1)  # N x C49 x Lx
            attn = torch.softmax(fx.transpose(1, 2) @ fr / tau, dim=-1)  # N x Lx x Lr
            value, index = attn.max(dim=-1)
            pick = torch.zeros_like(attn).scatter(-1, index[..., None], 1.0 if hard else value[..., None])
            patches = windows(ref01).expand(n, -1, -1) @ pick.transpose(1, 2)  # N x 3*49 x Lx
            x01 = F.fold(patches, size, PATCH, padding=pad) * fold_divisor(tuple(size)).to(x)
        return x01 * 2 - 1, attn


class Restoration(nn.Module):
    """IR: x`factor` restoration (official recnet with no_updown): 1x1 in, per stage two 5x5 reflect blocks and a
    5x5 conv to 4x channels + pixel shuffle, then two 7x7 convs, a ReLU, a 3x3 conv to RGB and tanh."""

    def __init__(self, dim: int = 64, factor: int = 8):
        super().__init__()
        stages = int(round(math.log2(factor)))
        layers: list[nn.Module] = [nn.Conv2d(3, dim, 1), nn.InstanceNorm2d(dim), nn.LeakyReLU(0.01),
                                   nn.Conv2d(dim, dim, 1)]
        for _ in range(stages):
            layers += [conv_block(dim, dim, 5, pad_mode="reflect"), conv_block(dim, dim, 5, pad_mode="reflect"),
                       conv_block(dim, 4 * dim, 5, pad_mode="replicate"), nn.PixelShuffle(2)]
        layers += [nn.Conv2d(dim, dim // 2, 7, padding=3, padding_mode="replicate"),
                   nn.Conv2d(dim // 2, dim // 2, 7, padding=3, padding_mode="replicate"), nn.ReLU(),
                   nn.Conv2d(dim // 2, 3, 3, padding=1), nn.Tanh()]
        self.blocks = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class PatchDiscriminator(nn.Module):
    """D: a 3x3 head, then `stages` branches of three 3x3 blocks with dilation 1, 2, 3 ... and a 3x3 conv to one
    channel; the branch maps are summed (official MS_Discriminator, replicate padding, InstanceNorm)."""

    def __init__(self, dim: int = 64, stages: int = 3):
        super().__init__()
        self.head = conv_block(3, dim, pad_mode="replicate")
        self.branches = nn.ModuleList(
            nn.Sequential(*[conv_block(dim, dim, dilation=d, pad_mode="replicate") for _ in range(3)],
                          nn.Conv2d(dim, 1, 3, 1, 1, padding_mode="replicate")) for d in range(1, stages + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        return sum(branch(x) for branch in self.branches)


# ----------------------------------------------------------------------------------------------------------------
# The trained model.

class PetsGAN:
    """G -> PT -> IR at any size: the layout is drawn at ceil(H / f) x ceil(W / f) and the output cropped.

    With `G_ema` (a run trained with `--ema-decay` > 0) `self.G`, the generator that samples (and that `export`,
    `metrics` and `compare` use), is the EMA; the trained G is kept as `G_trained` (both are in the release)."""

    def __init__(self, G: DEPNet, PT: PatchTransfer, IR: Restoration, ref: torch.Tensor, factor: int,
                 size: tuple[int, int], G_ema: DEPNet | None = None, image: torch.Tensor | None = None,
                 HR: nn.Module | None = None):
        self.image, self.HR = image, None if HR is None else HR.eval()  # I (TTSR's reference), the hrnet stage
        self.hr_factor = 1 if HR is None else HR.factor
        self.G_trained, self.G_ema = G.eval(), None if G_ema is None else G_ema.eval()
        self.G = self.G_trained if G_ema is None else self.G_ema
        self.PT, self.IR, self.ref, self.factor = PT.eval(), IR.eval(), ref, factor
        self.sizes = [tuple(ref.shape[-2:]), tuple(size)]

    def min_size(self) -> tuple[int, int]:
        return MIN_SAMPLE_LR * self.factor, MIN_SAMPLE_LR * self.factor

    @torch.no_grad()
    def sample(self, n: int, size: tuple[int, int] | None = None, seed: int = 0, first: int = 0) -> torch.Tensor:
        h, w = size or self.sizes[-1]
        lr = (math.ceil(h / self.factor), math.ceil(w / self.factor))
        z = sample_noise((1, *lr), range(first, first + n), seed, 0)
        out = torch.cat([self.IR(self.PT(self.G(z[i:i + 1]), self.ref, TAU_JOINT)[0]) for i in range(n)])
        return out[..., :h, :w].clamp(-1, 1)

    def state(self) -> dict[str, torch.Tensor]:
        nets = [("G", self.G_trained), ("PT", self.PT), ("IR", self.IR)]
        nets += [] if self.G_ema is None else [("G_ema", self.G_ema)]
        nets += [] if self.HR is None else [("HR", self.HR)]
        state = {f"{name}.{k}": v for name, net in nets for k, v in net.state_dict().items()}
        state["ref"] = self.ref
        if self.image is not None:
            state["image"] = self.image
        return state

    @classmethod
    def from_release(cls, state: dict[str, torch.Tensor], config: dict[str, Any]) -> PetsGAN:
        nets = {"G": DEPNet(config["g_dim"]), "PT": PatchTransfer(passes=config.get("pt_passes", 1)),
                "IR": Restoration(config["ir_dim"], config["downscale"])}
        if any(k.startswith("G_ema.") for k in state):  # trained with --ema-decay > 0: sample from the EMA
            nets["G_ema"] = DEPNet(config["g_dim"])
        if any(k.startswith("HR.") for k in state):  # trained with --hr-factor > 1
            from pixforge.singleimage.highres import HRNet

            nets["HR"] = HRNet(64, config["hr_factor"])
        for name, net in nets.items():
            net.load_state_dict({k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")})
        return cls(nets["G"], nets["PT"], nets["IR"], state["ref"], config["downscale"], tuple(config["sizes"][1]),
                   G_ema=nets.get("G_ema"), image=state.get("image"), HR=nets.get("HR"))
