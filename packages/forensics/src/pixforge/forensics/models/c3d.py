"""C3D (Tran et al., ICCV 2015) in mmaction2's layout (`C3D` backbone + `I3DHead` without pooling): eight 3x3x3
convolutions (64, 128, 256 x2, 512 x4), five max-pools (the first spatial only, the last padded), fc6 / fc7 of
4096 and the classifier, on 16-frame 112 x 112 clips with mean (104, 117, 128), std 1 on [0, 255] RGB.

79,991,015 parameters with the Sports-1M head (487 classes, the original release), 78,409,573 with mmaction2's
UCF-101 head. Weights: mmaction2 checkpoints (``backbone.conv1a.conv.*``, ``backbone.fc6.*``,
``cls_head.fc_cls.*``; the backbone-only Sports-1M file without the prefix) and the Sports-1M port of
DavideA/c3d-pytorch (``conv1``, ``conv2``, ``conv3a`` ... ``fc8``).
"""

from __future__ import annotations

import os
import re

import torch
from torch import nn

from pixforge.forensics.models.weights import load_into, read_state

CONVS = (("conv1a", 3, 64), ("conv2a", 64, 128), ("conv3a", 128, 256), ("conv3b", 256, 256),
         ("conv4a", 256, 512), ("conv4b", 512, 512), ("conv5a", 512, 512), ("conv5b", 512, 512))
POOL_AFTER = {"conv1a": "pool1", "conv2a": "pool2", "conv3b": "pool3", "conv4b": "pool4", "conv5b": "pool5"}


class ConvModule(nn.Module):
    """mmcv's ConvModule without a norm: ``conv`` then ReLU (so keys read ``conv1a.conv.weight``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, 1, 1)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.conv(x))


class C3DBackbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        for name, cin, cout in CONVS:
            setattr(self, name, ConvModule(cin, cout))
        self.pool1 = nn.MaxPool3d((1, 2, 2), (1, 2, 2))
        self.pool2 = nn.MaxPool3d((2, 2, 2), (2, 2, 2))
        self.pool3 = nn.MaxPool3d((2, 2, 2), (2, 2, 2))
        self.pool4 = nn.MaxPool3d((2, 2, 2), (2, 2, 2))
        self.pool5 = nn.MaxPool3d((2, 2, 2), (2, 2, 2), (0, 1, 1))
        self.fc6 = nn.Linear(8192, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, _, _ in CONVS:
            x = getattr(self, name)(x)
            if name in POOL_AFTER:
                x = getattr(self, POOL_AFTER[name])(x)
        x = torch.flatten(x, 1)
        x = self.dropout(self.relu(self.fc6(x)))
        return self.dropout(self.relu(self.fc7(x)))


class C3DHead(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.dropout = nn.Dropout(0.5)
        self.fc_cls = nn.Linear(4096, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_cls(self.dropout(x))


class C3D(nn.Module):
    """`forward`: N x 3 x 16 x 112 x 112 clips (any T, H, W that pool to 1 x 4 x 4: T = 16, H = W = 112) ->
    N x `num_classes` logits."""

    def __init__(self, num_classes: int = 1, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.backbone = C3DBackbone()
        self.cls_head = C3DHead(num_classes)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """mmaction2's: Kaiming-normal convolutions, N(0, 0.005) fc6 / fc7, N(0, 0.01) classifier, zero biases."""
        for m in self.backbone.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
                m.bias.zero_()
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 0.005, generator=generator)
                m.bias.zero_()
        self.cls_head.fc_cls.weight.normal_(0.0, 0.01, generator=generator)
        self.cls_head.fc_cls.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls_head(self.backbone(x))


_DAVIDEA = {"conv1": "conv1a", "conv2": "conv2a"}


def public_to_own(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmaction2 keys (with or without ``backbone.``) and c3d-pytorch keys onto ours."""
    out = {}
    for key, value in state.items():
        if key.startswith(("backbone.", "cls_head.")):
            out[key] = value
            continue
        match = re.fullmatch(r"(conv\d[ab]?)\.(conv\.)?(weight|bias)", key)
        if match:
            out[f"backbone.{_DAVIDEA.get(match[1], match[1])}.conv.{match[3]}"] = value
        elif key.startswith(("fc6.", "fc7.")):
            out[f"backbone.{key}"] = value
        elif key.startswith("fc8."):
            out[f"cls_head.fc_cls.{key[4:]}"] = value
        else:
            out[key] = value
    return out


def c3d(num_classes: int = 1, weights: str | os.PathLike | None = None,
        generator: torch.Generator | None = None) -> C3D:
    """A C3D with `num_classes` outputs, holding `weights` (mmaction2 / c3d-pytorch layout; a classifier of
    another size stays fresh) or freshly initialised."""
    net = C3D(num_classes, generator)
    if weights is not None:
        net.head_loaded = load_into(net, public_to_own(read_state(weights)), weights, "C3D",
                                    ("cls_head.fc_cls.weight", "cls_head.fc_cls.bias"))
    return net
