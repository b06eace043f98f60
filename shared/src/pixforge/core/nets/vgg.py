"""VGG19 with torchvision's module names, loadable from the public `vgg19` state-dict file, and a feature extractor.

`VGG19` mirrors torchvision's `vgg19` (no batch norm): ``features.<i>`` convolutions and ReLUs at torchvision's
indices, ``avgpool`` (7 x 7), ``classifier.<0|3|6>`` linear layers, 143,667,240 parameters. So the published file
``vgg19-dcbb9e9d.pth`` loads with `load_state_dict(strict=True)` as it is.

`VGG19Features` runs the convolutional trunk only as far as the deepest layer asked for and returns the activations
named in `layers` (``relu1_1`` ... ``relu5_4``, ``conv1_1`` ..., ``pool1`` ...), e.g. for a perceptual loss.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from pixforge.core.nets.inception import load_weights, state_dict_mismatch
from pixforge.export.errors import PixforgeError

WEIGHTS_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
WEIGHTS_ENV = "PIXFORGE_VGG19_WEIGHTS"
# channels per block; "M" closes a block with a 2x2 max pool (torchvision's configuration "E")
CONFIG = ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def layer_names() -> dict[str, int]:
    """{"conv1_1": 0, "relu1_1": 1, ..., "pool5": 36}: the index in `features` of each named layer."""
    names, index = {}, 0
    for block, channels in enumerate(CONFIG, start=1):
        for k in range(1, len(channels) + 1):
            names[f"conv{block}_{k}"] = index
            names[f"relu{block}_{k}"] = index + 1
            index += 2
        names[f"pool{block}"] = index
        index += 1
    return names


LAYERS = layer_names()


def _trunk() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 3
    for channels in CONFIG:
        for out_channels in channels:
            layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU()]
            in_channels = out_channels
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class VGG19(nn.Module):
    """torchvision's `vgg19` layout: `features`, `avgpool`, `classifier`; forward gives 1000 ImageNet logits."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = _trunk()
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(),
            nn.Linear(4096, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def resolve_weights(weights: str | os.PathLike | None) -> str | os.PathLike | None:
    """An explicit path/URL, else `$PIXFORGE_VGG19_WEIGHTS`, else the torch hub cache's copy, else None."""
    if weights is not None:
        return weights
    if os.environ.get(WEIGHTS_ENV):
        return os.environ[WEIGHTS_ENV]
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", WEIGHTS_URL.rsplit("/", 1)[-1])
    return cached if os.path.isfile(cached) else None


def load_vgg19(weights: str | os.PathLike) -> VGG19:
    """A `VGG19` holding the torchvision-format state dict at `weights` (path or URL), strictly; eval mode."""
    state = load_weights(weights)
    net = VGG19()
    problems = state_dict_mismatch(net.state_dict(), state)
    if problems:
        raise PixforgeError(f"weights {weights} are not a torchvision vgg19 state dict: {problems}.")
    net.load_state_dict(state, strict=True)
    return net.eval()


class VGG19Features(nn.Module):
    """Activations of the named VGG19 layers, in the order asked; frozen, always in eval mode.

    Input: N x 3 x H x W in `input_range`. With `imagenet_norm` the images are mapped to [0, 1] and normalised
    with ImageNet's mean/std (what the torchvision weights were trained on); without it the values go in as they
    are (what SPADE / TSIT's perceptual loss does with [-1, 1] images).
    """

    def __init__(self, weights: str | os.PathLike, layers: Sequence[str] = ("relu1_1", "relu2_1", "relu3_1",
                                                                         "relu4_1", "relu5_1"),
                 imagenet_norm: bool = False, input_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__()
        unknown = [name for name in layers if name not in LAYERS]
        if unknown or not layers:
            raise PixforgeError(f"unknown VGG19 layer(s) {unknown or '(none given)'}: choose from {', '.join(LAYERS)}")
        self.layers = list(layers)
        self.indices = [LAYERS[name] for name in self.layers]
        self.features = load_vgg19(weights).features[: max(self.indices) + 1]
        self.features.requires_grad_(False)
        self.imagenet_norm, self.input_range = imagenet_norm, input_range
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.train(False)

    def train(self, mode: bool = True) -> VGG19Features:
        return super().train(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = images
        if self.imagenet_norm:
            lo, hi = self.input_range
            x = ((x - lo) / (hi - lo) - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        wanted, found = set(self.indices), {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in wanted:
                found[index] = x
        return [found[index] for index in self.indices]
