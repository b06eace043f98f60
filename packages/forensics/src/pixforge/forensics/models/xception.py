"""XceptionNet (Chollet, CVPR 2017) as FaceForensics++ and DeeperForensics-1.0 use it: Cadene's `pretrainedmodels`
`xception` / timm's `legacy_xception` module layout (22,855,952 parameters with the 1000-class ImageNet head), a
299 x 299 input normalised with mean = std = 0.5, and `num_classes` logits (1 by default: the "fake" logit).

Weights: Cadene's file (``xception-43020ad28.pth``: ``fc.*`` head, 2-D ``pointwise`` weights from torch 0.3, no
BatchNorm step counters), timm's (``fc.*``, 4-D), Cadene's model after its rename (``last_linear.*``), and
FaceForensics++'s `TransferModel` state dicts (``model.`` prefix, ``last_linear.1.*`` behind a dropout).
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

from pixforge.forensics.models.weights import load_into, read_state


class SeparableConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, kernel, stride, padding, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.conv1(x))


class Block(nn.Module):
    """An Xception block: `reps` (ReLU, separable 3x3, BN) units, a max-pool when strided, a 1x1 skip when the
    shape changes; module indices inside `rep` as in Cadene's code (the leading ReLU dropped when not
    `start_with_relu`)."""

    def __init__(self, cin: int, cout: int, reps: int, stride: int = 1, start_with_relu: bool = True,
                 grow_first: bool = True) -> None:
        super().__init__()
        if cout != cin or stride != 1:
            self.skip = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
            self.skipbn = nn.BatchNorm2d(cout)
        else:
            self.skip = None
        rep: list[nn.Module] = []
        filters = cin
        if grow_first:
            rep += [nn.ReLU(inplace=True), SeparableConv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout)]
            filters = cout
        for _ in range(reps - 1):
            rep += [nn.ReLU(inplace=True), SeparableConv2d(filters, filters, 3, 1, 1), nn.BatchNorm2d(filters)]
        if not grow_first:
            rep += [nn.ReLU(inplace=True), SeparableConv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout)]
        if start_with_relu:
            rep[0] = nn.ReLU(inplace=False)  # the block's input is also its skip branch's
        else:
            rep = rep[1:]
        if stride != 1:
            rep.append(nn.MaxPool2d(3, stride, 1))
        self.rep = nn.Sequential(*rep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skipbn(self.skip(x)) if self.skip is not None else x
        return self.rep(x) + skip


class Xception(nn.Module):
    """Xception with Cadene's / timm's parameter names; `forward` takes N x 3 x H x W (299 x 299, mean = std =
    0.5 on [0, 1]) and returns N x `num_classes` logits; `features` the 2048 pooled features."""

    def __init__(self, num_classes: int = 1, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, 2, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.block1 = Block(64, 128, 2, 2, start_with_relu=False)
        self.block2 = Block(128, 256, 2, 2)
        self.block3 = Block(256, 728, 2, 2)
        for i in range(4, 12):
            setattr(self, f"block{i}", Block(728, 728, 3, 1))
        self.block12 = Block(728, 1024, 2, 2, grow_first=False)
        self.conv3 = SeparableConv2d(1024, 1536, 3, 1, 1)
        self.bn3 = nn.BatchNorm2d(1536)
        self.conv4 = SeparableConv2d(1536, 2048, 3, 1, 1)
        self.bn4 = nn.BatchNorm2d(2048)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(2048, num_classes)
        self.num_features = 2048
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Cadene's initialisation: convolutions N(0, sqrt(2 / (k * k * out))), unit BatchNorm, default Linear."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.normal_(0.0, math.sqrt(2.0 / n), generator=generator)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
                m.reset_running_stats()
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                bound = 1 / math.sqrt(m.in_features)
                m.bias.uniform_(-bound, bound, generator=generator)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        for i in range(1, 13):
            x = getattr(self, f"block{i}")(x)
        x = self.relu(self.bn3(self.conv3(x)))
        x = self.relu(self.bn4(self.conv4(x)))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def public_to_own(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cadene / timm / FaceForensics++ keys onto ours: ``last_linear[.1]`` -> ``fc``, 2-D pointwise weights
    made 1 x 1 convolutions."""
    out = {}
    for key, value in state.items():
        for old in ("last_linear.1.", "last_linear."):
            if key.startswith(old):
                key = "fc." + key[len(old):]
                break
        if key.endswith("pointwise.weight") and value.ndim == 2:
            value = value[:, :, None, None]
        out[key] = value
    return out


def xception(num_classes: int = 1, weights: str | os.PathLike | None = None,
             generator: torch.Generator | None = None) -> Xception:
    """An Xception with `num_classes` outputs, holding `weights` (Cadene / timm / FaceForensics++ layout: the
    classifier loads when it has `num_classes` rows, else stays fresh) or freshly initialised."""
    net = Xception(num_classes, generator)
    if weights is not None:
        net.head_loaded = load_into(net, public_to_own(read_state(weights)), weights, "Xception",
                                    ("fc.weight", "fc.bias"))
    return net
