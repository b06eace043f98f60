"""ResNet-18/34/50/101 with torchvision's module and parameter names, loadable from torchvision and MoCo files.

`ResNet` mirrors torchvision's `resnet*` (v1.5: the stride of a bottleneck sits on its 3 x 3 convolution):
``conv1``, ``bn1``, ``layer1`` ... ``layer4`` (blocks ``<i>.conv1``, ``.bn1``, ..., ``.downsample.0|1``),
``avgpool``, ``fc``; resnet50 has 25,557,032 parameters. Fresh networks get torchvision's initialisation
(He-normal fan-out convolutions, unit BatchNorm, PyTorch's default `Linear`), drawn from `generator` when one is
given, so a seeded random network is reproducible.

`resnet50(weights=...)` (and the other builders) read a state-dict file (``.pth`` / ``.pt`` read with
``torch.load(weights_only=True)``, ``.safetensors``) or URL: a torchvision file (``resnet50-0676ba61.pth``),
a checkpoint that wraps it in ``{"state_dict": ...}`` with DDP's ``module.`` prefix, or a MoCo v1/v2 checkpoint
(``module.encoder_q.*``; the key encoder, queue and projection head are dropped). A file without ``fc`` weights
gives a headless network (``fc`` = identity: the forward pass returns the pooled features).
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

from pixforge.core.nets.inception import load_weights, state_dict_mismatch
from pixforge.export.errors import PixforgeError

WEIGHTS_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


ARCHS = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet34": (BasicBlock, (3, 4, 6, 3)),
         "resnet50": (Bottleneck, (3, 4, 6, 3)), "resnet101": (Bottleneck, (3, 4, 23, 3))}


class ResNet(nn.Module):
    """torchvision's ResNet layout; `forward` gives `num_classes` logits (pooled features when headless)."""

    def __init__(self, arch: str = "resnet50", num_classes: int | None = 1000,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise PixforgeError(f"unknown ResNet {arch!r}: choose one of {', '.join(ARCHS)}")
        block, depths = ARCHS[arch]
        self.arch = arch
        with torch.device("meta"):  # allocate and initialise once, below
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            inplanes = 64
            for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
                stride = 1 if i == 0 else 2
                downsample = None
                if stride != 1 or inplanes != planes * block.expansion:
                    downsample = nn.Sequential(nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
                                               nn.BatchNorm2d(planes * block.expansion))
                blocks = [block(inplanes, planes, stride, downsample)]
                inplanes = planes * block.expansion
                blocks += [block(inplanes, planes) for _ in range(1, depth)]
                setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(inplanes, num_classes) if num_classes else nn.Identity()
        self.num_features = inplanes
        self.to_empty(device="cpu")
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """torchvision's initialisation, drawn from `generator` (else torch's global generator)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
                m.reset_running_stats()
            elif isinstance(m, nn.Linear):  # nn.Linear's own default
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                bound = 1 / math.sqrt(m.in_features)
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """N x C pooled features: the input of `fc` (C = 512 for resnet18/34, 2048 for resnet50/101)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def read_state(weights: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The ResNet state dict held by `weights`: unwrapped from ``{"state_dict": ...}``, DDP's ``module.`` and
    MoCo's ``encoder_q.`` prefixes stripped, MoCo's key encoder, queue and projection head (``fc``) dropped."""
    state = load_weights(weights, unwrap="state_dict")
    keys = [k[len("module."):] if k.startswith("module.") else k for k in state]
    moco = any(k.startswith("encoder_q.") for k in keys)
    out = {}
    for key, value in zip(keys, state.values(), strict=True):
        if moco:
            if not key.startswith("encoder_q.") or key.startswith("encoder_q.fc."):
                continue
            key = key[len("encoder_q."):]
        out[key] = value
    return out


def load_resnet(arch: str, weights: str | os.PathLike, num_classes: int | None = None) -> ResNet:
    """A `ResNet` of `arch` holding the weights at `weights`, strictly (`fc` included unless the file has none:
    then headless); `num_classes` None takes the file's; eval mode."""
    state = read_state(weights)
    if "fc.weight" in state:
        file_classes = state["fc.weight"].shape[0]
        if num_classes is not None and num_classes != file_classes:
            raise PixforgeError(f"weights {weights} have a {file_classes}-class fc layer, not {num_classes}.")
        num_classes = file_classes
    else:
        num_classes = 0
    net = ResNet(arch, num_classes=num_classes)
    problems = state_dict_mismatch(net.state_dict(), state)
    if problems:
        raise PixforgeError(f"weights {weights} are not a {arch} state dict: {problems}.")
    net.load_state_dict(state, strict=True)
    return net.eval()


def resnet(arch: str = "resnet50", weights: str | os.PathLike | None = None, num_classes: int | None = None,
           generator: torch.Generator | None = None) -> ResNet:
    """`arch` with the weights file/URL `weights` (see `load_resnet`), or freshly initialised from `generator`
    (`num_classes` default 1000; 0 = headless) when `weights` is None."""
    if weights is None:
        return ResNet(arch, num_classes=1000 if num_classes is None else num_classes, generator=generator)
    return load_resnet(arch, weights, num_classes)


def resnet18(weights: str | os.PathLike | None = None, **kwargs) -> ResNet:
    return resnet("resnet18", weights, **kwargs)


def resnet34(weights: str | os.PathLike | None = None, **kwargs) -> ResNet:
    return resnet("resnet34", weights, **kwargs)


def resnet50(weights: str | os.PathLike | None = None, **kwargs) -> ResNet:
    return resnet("resnet50", weights, **kwargs)


def resnet101(weights: str | os.PathLike | None = None, **kwargs) -> ResNet:
    return resnet("resnet101", weights, **kwargs)
