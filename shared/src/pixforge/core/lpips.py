"""LPIPS (Zhang et al. 2018), the learned perceptual distance as the official `lpips` package v0.1 computes it.

For images x, y (N x 3 x H x W, values in [-1, 1]; pass ``normalize=True`` for [0, 1]):

1. shift and scale each channel: ``(x - shift) / scale`` with shift (-0.030, -0.088, -0.188) and
   scale (0.458, 0.448, 0.450);
2. take five ReLU activations of an ImageNet-pretrained trunk (AlexNet: relu1 ... relu5; VGG16: relu1_2,
   relu2_2, relu3_3, relu4_3, relu5_3);
3. unit-normalise every feature vector over channels, ``f / (||f||_2 + 1e-10)``;
4. square the difference, weight the channels with the layer's learned 1x1 convolution (no bias),
   average over space; sum over the five layers. The result is one distance per image, shape (N,).

Two weight files are needed, and nothing here downloads them without being told where:

- the trunk: torchvision's ImageNet state dicts ``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth`` (path, URL,
  ``$PIXFORGE_ALEXNET_WEIGHTS`` / ``$PIXFORGE_VGG16_WEIGHTS``, or the torch hub cache); only ``features.*`` are used,
  ``classifier.*`` keys are allowed and ignored;
- the linear heads: ``lpips/weights/v0.1/alex.pth`` / ``vgg.pth`` shipped inside the `lpips` 0.1.4 wheel (BSD-2),
  keys ``lin0.model.1.weight`` ... ``lin4.model.1.weight`` (path or ``$PIXFORGE_LPIPS_LIN_WEIGHTS``).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from pixforge.core.nets.inception import load_weights
from pixforge.export.errors import PixforgeError

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10
LIN_ENV = "PIXFORGE_LPIPS_LIN_WEIGHTS"


def _alexnet_features() -> tuple[nn.Sequential, list[int]]:
    """torchvision `alexnet().features` (indices 0-12) and the indices of relu1 ... relu5."""
    layers = nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
    return layers, [1, 4, 7, 9, 11]


def _vgg16_features() -> tuple[nn.Sequential, list[int]]:
    """torchvision `vgg16().features` (configuration "D", indices 0-30) and the indices of relu1_2 ... relu5_3."""
    layers: list[nn.Module] = []
    taps, in_channels = [], 3
    for channels, convs in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
        for _ in range(convs):
            layers += [nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU()]
            in_channels = channels
        taps.append(len(layers) - 1)
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers), taps


# net -> (trunk builder, channels of the five taps, environment variable, torchvision weights URL, smallest H/W)
NETS = {
    "alex": (_alexnet_features, (64, 192, 384, 256, 256), "PIXFORGE_ALEXNET_WEIGHTS",
             "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", 31),
    "vgg": (_vgg16_features, (64, 128, 256, 512, 512), "PIXFORGE_VGG16_WEIGHTS",
            "https://download.pytorch.org/models/vgg16-397923af.pth", 16),
}


def resolve_backbone(net: str, weights: str | os.PathLike | None) -> str | os.PathLike:
    """An explicit path/URL, else the net's environment variable, else the torch hub cache's copy; else an error."""
    _, _, env, url, _ = NETS[net]
    if weights is not None:
        return weights
    if os.environ.get(env):
        return os.environ[env]
    name = url.rsplit("/", 1)[-1]
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", name)
    if os.path.isfile(cached):
        return cached
    raise PixforgeError(f"LPIPS-{net} needs the ImageNet backbone {name} ({url}), not found at {cached}: "
                        f"pass backbone_weights=PATH or set ${env}.")


def _check_keys(path, state: dict, expected: dict[str, torch.Size], what: str, ignore: str | None = None) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and not (ignore and k.startswith(ignore))]
    resized = [f"{k} {tuple(state[k].shape)} vs {tuple(v)}" for k, v in expected.items()
               if k in state and state[k].shape != v]
    if missing or unexpected or resized:
        problems = "; ".join(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                             for label, keys in (("missing", missing), ("unexpected", unexpected),
                                                 ("wrong shape", resized)) if keys)
        raise PixforgeError(f"weights {path} are not {what}: {problems}.")


class LPIPS(nn.Module):
    """LPIPS v0.1 distance with an AlexNet or VGG16 trunk; frozen, always in eval mode.

    ``LPIPS(net="alex", backbone_weights=..., lin_weights=...)(x, y)`` gives N distances for N x 3 x H x W
    images in [-1, 1] (``normalize=True``: in [0, 1]). Gradients flow to the inputs, so it works as a loss.
    ``spatial=True`` returns the N x 1 x H x W map instead (each layer's map upsampled bilinearly, then summed).
    """

    def __init__(self, net: str = "alex", backbone_weights: str | os.PathLike | None = None,
                 lin_weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        if net not in NETS:
            raise PixforgeError(f"unknown LPIPS net {net!r}: choose from {', '.join(NETS)}")
        build, channels, _, url, self.min_size = NETS[net]
        self.net = net
        self.features, self.taps = build()
        backbone = resolve_backbone(net, backbone_weights)
        state = load_weights(backbone)
        expected = {f"features.{k}": v.shape for k, v in self.features.state_dict().items()}
        _check_keys(backbone, state, expected, f"a torchvision {url.rsplit('/', 1)[-1]} state dict", "classifier.")
        self.features.load_state_dict({k[len("features."):]: state[k] for k in expected}, strict=True)
        self.features = self.features[: self.taps[-1] + 1]  # nothing after the last tap is used

        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        lin_weights = lin_weights if lin_weights is not None else os.environ.get(LIN_ENV)
        if lin_weights is None:
            raise PixforgeError(f"LPIPS-{net} needs the linear heads lpips/weights/v0.1/{net}.pth from the `lpips` "
                                f"0.1.4 wheel (pip download lpips==0.1.4 --no-deps): pass lin_weights=PATH "
                                f"or set ${LIN_ENV}.")
        state = load_weights(lin_weights)
        expected = {f"lin{k}.model.1.weight": lin.weight.shape for k, lin in enumerate(self.lins)}
        _check_keys(lin_weights, state, expected, f"lpips v0.1 {net}.pth linear heads")
        for k, lin in enumerate(self.lins):
            lin.weight.data.copy_(state[f"lin{k}.model.1.weight"])

        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> LPIPS:
        return super().train(False)

    def activations(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The five tapped ReLU outputs for images already in [-1, 1] (scaling layer applied here)."""
        x = (images - self.shift.to(images.dtype)) / self.scale.to(images.dtype)
        found = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                found.append(x)
        return found

    def forward(self, x: torch.Tensor, y: torch.Tensor, normalize: bool = False,
                spatial: bool = False) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape != y.shape:
            raise PixforgeError(f"LPIPS needs two N x 3 x H x W batches of the same shape, got {tuple(x.shape)} "
                                f"and {tuple(y.shape)}")
        if min(x.shape[2:]) < self.min_size:
            raise PixforgeError(f"LPIPS-{self.net} needs images of at least {self.min_size} x {self.min_size} pixels, "
                                f"got {x.shape[2]} x {x.shape[3]}")
        if normalize:
            x, y = 2 * x - 1, 2 * y - 1
        total = 0
        for lin, both in zip(self.lins, self.activations(torch.cat([x, y])), strict=True):
            fx, fy = both.float().chunk(2)  # the 1e-10 epsilon and the squares need float32 under AMP
            fx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + EPS)
            fy = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + EPS)
            layer = ((fx - fy).pow(2) * lin.weight.float().view(1, -1, 1, 1)).sum(1, keepdim=True)  # 1x1 conv
            if spatial:
                total = total + F.interpolate(layer, size=x.shape[2:], mode="bilinear", align_corners=False)
            else:
                total = total + layer.mean((2, 3)).squeeze(1)
        return total
