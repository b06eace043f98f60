"""pfr18: pixforge's offline feature network, a ResNet-18 that has only ever seen procedural images.

No ImageNet or Inception weights can be downloaded where pixforge is built and tested, so FID was "unavailable" and
perceptual losses were off unless a user brought the public files. "Learning to See by Looking at Noise" (Baradad
et al., 2021) shows that contrastive pretraining on procedural images (dead leaves, 1/f spectra, wavelet marginals)
teaches features that transfer to real photographs. `pixforge-spectra pretrain` does that; the encoder it made ships
here as `assets/pfr18-64.safetensors` (fp16, torchvision names, no head) with the command, config and figures that
made it in `assets/pfr18-64.json`.

`ProceduralFeatures`: images in (N x 3 x H x W, uint8 0..255 or float [0, 1]), resized to 64 x 64 (the size it was
trained at), normalised with ImageNet's mean / std as in pretraining; out: the N x 512 pooled features
(``output="pool"``). Fréchet / kernel distances on them are reported as ``fd_pfr18`` / ``kd_pfr18`` — never as FID:
they order image sets by quality (see shared/README.md for how their ranking agrees with known degradations) but are
not comparable with published FIDs. `stages` gives the four stages' feature maps at any input size, for
`pixforge.core.losses.ProceduralPerceptualLoss`.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pixforge.core.nets.inception import state_dict_mismatch, unit_images
from pixforge.core.nets.resnet import IMAGENET_MEAN, IMAGENET_STD, ResNet, read_state
from pixforge.export.errors import PixforgeError

ASSET = "pfr18-64"
INPUT_SIZE = 64
NAMES = ("fd_pfr18", "kd_pfr18")  # what Fréchet / kernel distances on the shipped network are called


def asset_path(suffix: str = ".safetensors") -> Path:
    """The shipped asset's file (`.safetensors` weights or `.json` record) inside the installed pixforge-core."""
    path = Path(str(resources.files("pixforge.core") / "assets" / f"{ASSET}{suffix}"))
    if not path.is_file():
        raise PixforgeError(f"pixforge-core's feature network {path} is missing: reinstall pixforge-core")
    return path


def asset_record() -> dict:
    """How the shipped network was made: command, config, training figures and the weights' sha256."""
    return json.loads(asset_path(".json").read_text())


class ProceduralFeatures(nn.Module):
    """A frozen ResNet-18 trained on procedural images only: images in, N x 512 pooled features out.

    ``weights``: None for the shipped pfr18 network, or another ResNet-18 encoder file (e.g. the
    ``encoder.safetensors`` of a `pixforge-spectra pretrain` run; torchvision or MoCo layouts), whose distances are
    then called ``fd`` / ``kd``. ``size``: the side images are resized to (bilinear, antialiased), 64 for pfr18.
    Always in eval mode, no gradients for its parameters.
    """

    def __init__(self, weights: str | os.PathLike | None = None, size: int = INPUT_SIZE) -> None:
        super().__init__()
        source = asset_path() if weights is None else Path(weights).expanduser()
        state = {k: v.float() if v.is_floating_point() else v for k, v in read_state(source).items()
                 if not k.startswith("fc.")}
        self.net = ResNet("resnet18", num_classes=0)
        problems = state_dict_mismatch(self.net.state_dict(), state)
        if problems:
            raise PixforgeError(f"weights {source} are not a ResNet-18 encoder: {problems}")
        self.net.load_state_dict(state, strict=True)
        self.net.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.size = size
        self.num_features = self.net.num_features
        self.names = NAMES if weights is None else ("fd", "kd")
        self.label = f"{ASSET} (procedural ResNet-18, not Inception)" if weights is None else \
            f"resnet18 ({source.name}, not Inception)"
        self.train(False)

    def train(self, mode: bool = True) -> ProceduralFeatures:
        """Stay in eval mode: BatchNorm uses the running statistics of pretraining."""
        return super().train(False)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> the network's input (ImageNet mean / std, as in pretraining)."""
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of layer1 ... layer4 for a normalised batch of any size (strides 4, 8, 16, 32)."""
        net = self.net
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        out = []
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            x = layer(x)
            out.append(x)
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = unit_images(images, self.net.conv1.weight.dtype, "ProceduralFeatures")
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=min(x.shape[-2:]) > self.size)
        return torch.flatten(self.net.avgpool(self.stages(self.normalise(x))[-1]), 1)
