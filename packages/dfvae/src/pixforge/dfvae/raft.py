"""RAFT-small (Teed & Deng, "RAFT: Recurrent All-Pairs Field Transforms for Optical Flow", ECCV 2020), frozen, as
an optional flow estimator for DF-VAE's temporal loss (`train --flow raft-small:PATH`).

Written from the paper and the official code's `--small` configuration (princeton-vl/RAFT, `core/raft.py`,
`extractor.py`, `update.py`, `corr.py`), so that the official `raft-small.pth` loads unchanged (its keys carry the
`module.` prefix of `torch.nn.DataParallel`): a feature encoder (`fnet`, `SmallEncoder`, instance norm, 128
channels at 1/8), a context encoder (`cnet`, no norm, 96 hidden + 64 context channels), an all-pairs correlation
volume with 4 pooled levels looked up at radius 3, a ConvGRU update block (`update_block`, hidden 96) iterated 12
times, and the 1/8 flow upsampled bilinearly x8 (the small model has no convex-upsampling mask).

As in the official test mode: images are mapped to [-1, 1], padded with replicated borders (centred, as the
official `InputPadder`) to a multiple of 8, here also to at least 128 px a side so that the coarsest correlation
level is 2 x 2 or more (the official lookup divides by the level's side minus one), and the flow is cropped back.
The coordinates are detached between iterations as in the official forward pass, so the gradient w.r.t. the images
flows through the encoders, the correlation and the update block of each iteration.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

HIDDEN, CONTEXT, FEATURES = 96, 64, 128
CORR_LEVELS, CORR_RADIUS = 4, 3
MIN_SIDE = 8 * 2 ** CORR_LEVELS  # 128: the coarsest correlation level keeps 2 x 2 cells


def _norm(channels: int, instance: bool) -> nn.Module:
    """Instance norm without affine parameters (the official 'instance'), or nothing (the official 'none'): neither
    has entries in the state dict."""
    return nn.InstanceNorm2d(channels) if instance else nn.Identity()


class Bottleneck(nn.Module):
    """The official `BottleneckBlock`: 1x1 -> 3x3 (stride) -> 1x1 at a quarter of the width, ReLU after each,
    a residual connection (a strided 1x1 `downsample` when the stride is not 1)."""

    def __init__(self, in_planes: int, planes: int, instance: bool, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes // 4, 1)
        self.conv2 = nn.Conv2d(planes // 4, planes // 4, 3, padding=1, stride=stride)
        self.conv3 = nn.Conv2d(planes // 4, planes, 1)
        self.norm1, self.norm2, self.norm3 = (_norm(c, instance) for c in (planes // 4, planes // 4, planes))
        self.downsample = (nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride), _norm(planes, instance))
                           if stride != 1 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        y = F.relu(self.norm3(self.conv3(y)))
        return F.relu((x if self.downsample is None else self.downsample(x)) + y)


class SmallEncoder(nn.Module):
    """The official `SmallEncoder`: 7x7 stride-2 stem (32), bottleneck stages of 32, 64 (stride 2), 96 (stride 2),
    a 1x1 projection to `output_dim`: features at 1/8 of the input."""

    def __init__(self, output_dim: int, instance: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 7, stride=2, padding=3)
        self.norm1 = _norm(32, instance)
        self.layer1 = nn.Sequential(Bottleneck(32, 32, instance), Bottleneck(32, 32, instance))
        self.layer2 = nn.Sequential(Bottleneck(32, 64, instance, 2), Bottleneck(64, 64, instance))
        self.layer3 = nn.Sequential(Bottleneck(64, 96, instance, 2), Bottleneck(96, 96, instance))
        self.conv2 = nn.Conv2d(96, output_dim, 1)
        for m in self.modules():  # the official initialisation (what a model without weights starts from)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


class SmallMotionEncoder(nn.Module):
    """Correlation (1x1 to 96) and flow (7x7 to 64, 3x3 to 32) features, fused by a 3x3 conv to 80, the flow
    appended: 82 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.convc1 = nn.Conv2d(CORR_LEVELS * (2 * CORR_RADIUS + 1) ** 2, 96, 1)
        self.convf1 = nn.Conv2d(2, 64, 7, padding=3)
        self.convf2 = nn.Conv2d(64, 32, 3, padding=1)
        self.conv = nn.Conv2d(128, 80, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        cor = F.relu(self.convc1(corr))
        flo = F.relu(self.convf2(F.relu(self.convf1(flow))))
        return torch.cat([F.relu(self.conv(torch.cat([cor, flo], 1))), flow], 1)


class ConvGRU(nn.Module):
    """A GRU whose gates are 3x3 convolutions over [h, x]."""

    def __init__(self, hidden: int, inputs: int) -> None:
        super().__init__()
        self.convz, self.convr, self.convq = (nn.Conv2d(hidden + inputs, hidden, 3, padding=1) for _ in range(3))

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        hx = torch.cat([h, x], 1)
        z, r = torch.sigmoid(self.convz(hx)), torch.sigmoid(self.convr(hx))
        q = torch.tanh(self.convq(torch.cat([r * h, x], 1)))
        return (1 - z) * h + z * q


class FlowHead(nn.Module):
    """3x3 conv to 128, ReLU, 3x3 conv to the flow update (2 channels)."""

    def __init__(self, inputs: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x)))


class SmallUpdateBlock(nn.Module):
    """The official `SmallUpdateBlock`: motion features, the context appended, one ConvGRU step, the flow update."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = SmallMotionEncoder()
        self.gru = ConvGRU(HIDDEN, 82 + CONTEXT)
        self.flow_head = FlowHead(HIDDEN, 128)

    def forward(self, net: torch.Tensor, inp: torch.Tensor, corr: torch.Tensor,
                flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.gru(net, torch.cat([inp, self.encoder(flow, corr)], 1))
        return net, self.flow_head(net)


def correlation_pyramid(fmap1: torch.Tensor, fmap2: torch.Tensor) -> list[torch.Tensor]:
    """All-pairs dot products / sqrt(channels), (N h w, 1, h, w) per level, each level 2x2-average-pooled."""
    n, c, h, w = fmap1.shape
    corr = torch.matmul(fmap1.flatten(2).transpose(1, 2), fmap2.flatten(2)) / math.sqrt(c)
    levels = [corr.reshape(n * h * w, 1, h, w)]
    for _ in range(CORR_LEVELS - 1):
        levels.append(F.avg_pool2d(levels[-1], 2, stride=2))
    return levels


def lookup(pyramid: list[torch.Tensor], coords: torch.Tensor) -> torch.Tensor:
    """The correlations around `coords` (N, 2, h, w, pixel (x, y) at 1/8) at every level: (N, 4 * 49, h, w).

    Bilinear, zero outside. Within a level the 7 x 7 window is ordered as the official lookup orders it: the first
    window index offsets x, the second y (its meshgrid of (dy, dx) is added to (x, y))."""
    n, _, h, w = coords.shape
    r = CORR_RADIUS
    d = torch.linspace(-r, r, 2 * r + 1, device=coords.device, dtype=coords.dtype)
    delta = torch.stack(torch.meshgrid(d, d, indexing="ij"), dim=-1).view(1, 2 * r + 1, 2 * r + 1, 2)
    centre = coords.permute(0, 2, 3, 1).reshape(n * h * w, 1, 1, 2)
    out = []
    for i, corr in enumerate(pyramid):
        points = centre / 2**i + delta
        side = torch.tensor([corr.shape[-1] - 1, corr.shape[-2] - 1], device=coords.device, dtype=coords.dtype)
        sampled = F.grid_sample(corr, 2 * points / side - 1, mode="bilinear", padding_mode="zeros",
                                align_corners=True)
        out.append(sampled.view(n, h, w, -1))
    return torch.cat(out, dim=-1).permute(0, 3, 1, 2)


class RAFTSmall(nn.Module):
    """flow(first, second): (N, 2, H, W) float32 flow in pixels with first(p) ≈ second(p + flow(p)) (the convention
    of `HornSchunckFlow` and of RAFT). Images (N, 3 or 1, H, W) in `value_range`.

    `RAFTSmall.load(path)` reads the official `raft-small.pth` (or any state dict with its key names, with or
    without the `module.` prefix) and returns the model frozen (no gradients to its weights, eval mode). Runs in
    float32 even under autocast."""

    def __init__(self, iterations: int = 12, value_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__()
        if iterations < 1:
            raise ValueError("iterations must be >= 1")
        self.iterations, self.value_range = iterations, value_range
        self.fnet = SmallEncoder(FEATURES, instance=True)
        self.cnet = SmallEncoder(HIDDEN + CONTEXT, instance=False)
        self.update_block = SmallUpdateBlock()

    @classmethod
    def load(cls, path: str | Path, **kwargs) -> RAFTSmall:
        """The model with the weights of the state-dict file `path` (torch.load, weights_only), frozen. A file that
        is not such a state dict is a ValueError naming what is wrong."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # unpickling raises many kinds; all mean "not a weight file"
            raise ValueError(f"{path} is not a torch weight file ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''})") from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"{path} is not a state dict (name -> tensor)")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        model = cls(**kwargs)
        expected = model.state_dict()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(f"{path} is not a RAFT-small state dict: {len(missing)} weight(s) missing "
                             f"({', '.join(missing[:2]) or '-'}), {len(unexpected)} unexpected "
                             f"({', '.join(unexpected[:2]) or '-'})")
        wrong = [k for k, v in state.items() if v.shape != expected[k].shape]
        if wrong:
            raise ValueError(f"{path} is not a RAFT-small state dict: {wrong[0]} has shape "
                             f"{tuple(state[wrong[0]].shape)}, RAFT-small's is {tuple(expected[wrong[0]].shape)}")
        model.load_state_dict(state)
        return model.eval().requires_grad_(False)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        if first.shape != second.shape or first.ndim != 4 or first.shape[1] not in (1, 3):
            raise ValueError(f"flow needs two (N, 1|3, H, W) images of one shape, got {tuple(first.shape)} and "
                             f"{tuple(second.shape)}")
        h, w = first.shape[-2:]
        pad = _padding(h, w)
        with torch.autocast(first.device.type, enabled=False):
            image1, image2 = (F.pad(self._normalise(x), pad, mode="replicate") for x in (first, second))
            fmap1, fmap2 = self.fnet(torch.cat([image1, image2])).chunk(2)
            pyramid = correlation_pyramid(fmap1, fmap2)
            net, inp = self.cnet(image1).split([HIDDEN, CONTEXT], dim=1)
            net, inp = torch.tanh(net), torch.relu(inp)
            n, _, fh, fw = fmap1.shape
            ys, xs = torch.meshgrid(torch.arange(fh, device=first.device, dtype=torch.float32),
                                    torch.arange(fw, device=first.device, dtype=torch.float32), indexing="ij")
            coords0 = torch.stack([xs, ys])[None].expand(n, -1, -1, -1)
            coords1 = coords0
            for _ in range(self.iterations):
                coords1 = coords1.detach()
                net, delta = self.update_block(net, inp, lookup(pyramid, coords1), coords1 - coords0)
                coords1 = coords1 + delta
            flow = 8 * F.interpolate(coords1 - coords0, size=(8 * fh, 8 * fw), mode="bilinear", align_corners=True)
        left, _, top, _ = pad
        return flow[..., top:top + h, left:left + w]

    def _normalise(self, image: torch.Tensor) -> torch.Tensor:
        """[lo, hi] -> [-1, 1] (RAFT's input range), float32, grey expanded to RGB."""
        lo, hi = self.value_range
        image = (image.float() - lo) * (2.0 / (hi - lo)) - 1.0
        return image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image


def _padding(h: int, w: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) replicate padding to a multiple of 8 and at least MIN_SIDE, centred as the
    official InputPadder's 'sintel' mode."""
    ph, pw = max(MIN_SIDE, -(-h // 8) * 8) - h, max(MIN_SIDE, -(-w // 8) * 8) - w
    return pw // 2, pw - pw // 2, ph // 2, ph - ph // 2
