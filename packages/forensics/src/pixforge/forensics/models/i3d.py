"""I3D as mmaction2's `i3d_r50` (the inflated ResNet-50 of Carreira & Zisserman's recipe, CVPR 2017, on a
ResNet-50 rather than their Inception-v1): ResNet-50 with a 5x7x7 stem (temporal stride 2), a temporal stride-2
max-pool after the stem and after layer1, and 3x1x1 first convolutions in the inflated bottlenecks
(inflate (1,1,1), (1,0,1,0), (1,0,1,0,1,0), (0,1,0)); 32-frame 224 x 224 clips, ImageNet mean / std on
[0, 255] RGB. 28,043,472 parameters with mmaction2's Kinetics-400 head (27,223,872 without it).

Weights: mmaction2 checkpoints (``backbone.conv1.conv.weight`` ... ``cls_head.fc_cls.*``), or a 2D ResNet-50
(torchvision or mmaction2 keys) inflated as mmaction2's ``pretrained2d`` does: each 2D kernel repeated over
time and divided by its temporal size (an ImageNet classifier is dropped).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from pixforge.forensics.models.weights import load_into, mmaction_to_torchvision, read_state, torchvision_to_mmaction

INFLATE = ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0))
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)


class ConvBN(nn.Module):
    """mmcv's ConvModule with BatchNorm (keys ``conv.*``, ``bn.*``), ReLU optional."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm3d(cout)
        self.activate = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


class Bottleneck3d(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int, inflate: bool, downsample: nn.Module | None) -> None:
        super().__init__()
        kernel, padding = ((3, 1, 1), (1, 0, 0)) if inflate else ((1, 1, 1), (0, 0, 0))
        self.conv1 = ConvBN(cin, planes, kernel, 1, padding)
        self.conv2 = ConvBN(planes, planes, (1, 3, 3), (1, stride, stride), (0, 1, 1))
        self.conv3 = ConvBN(planes, planes * 4, 1, relu=False)
        self.downsample = downsample
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class ResNet3d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvBN(3, 64, (5, 7, 7), (2, 2, 2), (2, 3, 3))
        self.maxpool = nn.MaxPool3d((1, 3, 3), (2, 2, 2), (0, 1, 1))
        self.pool2 = nn.MaxPool3d((2, 1, 1), (2, 1, 1))
        cin = 64
        for i, (planes, inflate) in enumerate(zip((64, 128, 256, 512), INFLATE, strict=True)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j, flag in enumerate(inflate):
                down = None
                if j == 0 and (stride != 1 or cin != planes * 4):
                    down = ConvBN(cin, planes * 4, 1, (1, stride, stride), relu=False)
                blocks.append(Bottleneck3d(cin, planes, stride if j == 0 else 1, bool(flag), down))
                cin = planes * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.pool2(self.layer1(x))
        return self.layer4(self.layer3(self.layer2(x)))


class I3DHead(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.dropout = nn.Dropout(0.5)
        self.fc_cls = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_cls(self.dropout(torch.flatten(nn.functional.adaptive_avg_pool3d(x, 1), 1)))


class I3D(nn.Module):
    """`forward`: N x 3 x T x H x W clips (32 x 224 x 224) -> N x `num_classes` logits."""

    def __init__(self, num_classes: int = 1, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.backbone = ResNet3d()
        self.cls_head = I3DHead(num_classes)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """mmaction2's: Kaiming-normal convolutions, unit BatchNorm, N(0, 0.01) classifier with zero bias."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            elif isinstance(m, nn.BatchNorm3d):
                m.weight.fill_(1.0)
                m.bias.zero_()
                m.reset_running_stats()
        self.cls_head.fc_cls.weight.normal_(0.0, 0.01, generator=generator)
        self.cls_head.fc_cls.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls_head(self.backbone(x))


def public_to_own(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmaction2 I3D keys as they are; a 2D ResNet (torchvision or mmaction2 keys, 4-D kernels) inflated onto
    our 3D shapes (kernel repeated over T, divided by T), its ``fc`` dropped."""
    if any(k.startswith("backbone.") for k in state):
        return state
    out = {}
    for key, value in state.items():
        if key.startswith("fc."):
            continue
        name = "backbone." + torchvision_to_mmaction(mmaction_to_torchvision(key))
        target = own.get(name)
        if value.ndim == 4 and target is not None and target.ndim == 5:
            t = target.shape[2]
            value = value.unsqueeze(2).expand(-1, -1, t, -1, -1) / t
        out[name] = value
    return out


def i3d(num_classes: int = 1, weights: str | os.PathLike | None = None,
        generator: torch.Generator | None = None) -> I3D:
    """An I3D (inflated ResNet-50) with `num_classes` outputs, holding `weights` (an mmaction2 I3D checkpoint, or a
    2D ResNet-50 inflated) or freshly initialised."""
    net = I3D(num_classes, generator)
    if weights is not None:
        state = public_to_own(read_state(weights), net.state_dict())
        net.head_loaded = load_into(net, state, weights, "I3D", ("cls_head.fc_cls.weight", "cls_head.fc_cls.bias"))
    return net


