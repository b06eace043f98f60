"""ResNet+LSTM (the LRCN recipe of Donahue et al., CVPR 2015, as Güera & Delp's deepfake detector uses it, AVSS
2018): a ResNet-50 (torchvision layout, `pixforge.core.nets`) encodes each frame to 2048 features, a one-layer
LSTM of 512 units runs over the clip, and a linear layer (after dropout 0.5) classifies its last hidden state.
16-frame 224 x 224 clips, ImageNet mean / std on [0, 255] RGB. No public checkpoint defines this model: the
reference is the definition, 23,508,032 (ResNet-50 body) + 5,246,976 (LSTM 2048 -> 512) + the classifier
(1,026 for 2 classes: 28,756,034).

Weights: a torchvision ResNet-50 file (the body; its ``fc`` dropped) or this model's own state dict
(``backbone.*``, ``lstm.*``, ``fc.*``).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from pixforge.core.nets.resnet import ResNet
from pixforge.forensics.models.weights import load_into, mmaction_to_torchvision, read_state

HIDDEN = 512


class ResNetLSTM(nn.Module):
    """`forward`: N x 3 x T x H x W clips (16 x 224 x 224) -> N x `num_classes` logits."""

    def __init__(self, num_classes: int = 1, hidden: int = HIDDEN, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.backbone = ResNet("resnet50", num_classes=0, generator=generator)
        self.lstm = nn.LSTM(2048, hidden, batch_first=True)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(hidden, num_classes)
        if generator is not None:  # nn.LSTM / nn.Linear draw U(-1/sqrt(hidden), 1/sqrt(hidden)) and Kaiming
            with torch.no_grad():
                bound = hidden ** -0.5
                for p in self.lstm.parameters():
                    p.uniform_(-bound, bound, generator=generator)
                nn.init.kaiming_uniform_(self.fc.weight, a=5 ** 0.5, generator=generator)
                self.fc.bias.uniform_(-bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        features = self.backbone.features(x.transpose(1, 2).reshape(n * t, c, h, w)).view(n, t, -1)
        out, _ = self.lstm(features)
        return self.fc(self.dropout(out[:, -1]))


def public_to_own(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our own keys as they are; a torchvision (or mmcv) ResNet-50 -> ``backbone.*`` with its ``fc`` dropped."""
    if any(k.startswith(("backbone.", "lstm.")) for k in state):
        return state
    return {"backbone." + mmaction_to_torchvision(k): v for k, v in state.items() if not k.startswith("fc.")}


def resnet_lstm(num_classes: int = 1, weights: str | os.PathLike | None = None,
                generator: torch.Generator | None = None) -> ResNetLSTM:
    """A ResNet-50 + LSTM with `num_classes` outputs, holding `weights` (see the module docstring) or fresh. A
    torchvision file gives the body; the LSTM and classifier then stay fresh."""
    net = ResNetLSTM(num_classes, generator=generator)
    if weights is not None:
        state = public_to_own(read_state(weights))
        if not any(k.startswith("lstm.") for k in state):  # a ResNet-50 body: the LSTM stays fresh
            own = net.state_dict()
            state.update({k: v for k, v in own.items() if k.startswith("lstm.")})
        net.head_loaded = load_into(net, state, weights, "ResNet-50", ("fc.weight", "fc.bias"))
    return net
