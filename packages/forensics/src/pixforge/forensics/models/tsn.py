"""TSN (Wang et al., ECCV 2016) as mmaction2's `tsn_r50`: a ResNet-50 (torchvision layout, `pixforge.core.nets`)
on each of 3 segment frames (224 x 224, ImageNet mean / std on [0, 255] RGB), average consensus, dropout 0.4 and a
linear classifier (averaging the features then classifying equals averaging the segments' scores: the map is
linear). 24,327,632 parameters with the Kinetics-400 head.

Weights: a torchvision ResNet-50 file (the body; its ImageNet ``fc`` dropped), or an mmaction2 TSN checkpoint
(``backbone.conv1.conv.weight`` ... ``cls_head.fc_cls.*``: mmcv ResNet keys mapped onto torchvision's).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from pixforge.core.nets.resnet import ResNet
from pixforge.forensics.models.weights import load_into, mmaction_to_torchvision, read_state


class TSNHead(nn.Module):
    def __init__(self, num_classes: int, dropout: float = 0.4) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc_cls = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_cls(self.dropout(x))


class TSN(nn.Module):
    """`forward`: N x 3 x S x H x W (S segment frames, 3 x 224 x 224 each) -> N x `num_classes` logits."""

    def __init__(self, num_classes: int = 1, segments: int = 3, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.segments = segments
        self.backbone = ResNet("resnet50", num_classes=0, generator=generator)
        self.cls_head = TSNHead(num_classes)
        with torch.no_grad():  # mmaction2's TSNHead: N(0, 0.01), zero bias
            self.cls_head.fc_cls.weight.normal_(0.0, 0.01, generator=generator)
            self.cls_head.fc_cls.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, s, h, w = x.shape
        features = self.backbone.features(x.transpose(1, 2).reshape(n * s, c, h, w))
        return self.cls_head(features.view(n, s, -1).mean(dim=1))


def public_to_own(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision ResNet keys -> ``backbone.*`` (``fc`` dropped); mmaction2 TSN keys mapped onto torchvision's."""
    out = {}
    for key, value in state.items():
        if key.startswith("cls_head."):
            out[key] = value
        elif key.startswith("backbone."):
            out["backbone." + mmaction_to_torchvision(key[len("backbone."):])] = value
        elif not key.startswith("fc."):
            out["backbone." + mmaction_to_torchvision(key)] = value
    return out


def tsn(num_classes: int = 1, weights: str | os.PathLike | None = None, segments: int = 3,
        generator: torch.Generator | None = None) -> TSN:
    """A TSN (ResNet-50, `segments` segments, average consensus) with `num_classes` outputs, holding `weights`
    (torchvision ResNet-50 or mmaction2 TSN layout) or freshly initialised."""
    net = TSN(num_classes, segments, generator)
    if weights is not None:
        net.head_loaded = load_into(net, public_to_own(read_state(weights)), weights, "ResNet-50",
                                    ("cls_head.fc_cls.weight", "cls_head.fc_cls.bias"))
    return net


