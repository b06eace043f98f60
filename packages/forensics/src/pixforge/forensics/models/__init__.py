"""The DeeperForensics-1.0 benchmark detectors (thesis §3.3, Table 3.4) behind one registry.

    from pixforge.forensics.models import MODELS, build
    spec = MODELS["i3d"]                     # input size, clip length, normalisation, reference
    net = build("i3d", weights="i3d_r50.pth")   # N x 3 x T x H x W -> N x 1 logits

Output: one logit per clip (image for Xception): sigmoid(logit) = P(fake), trained with `BCEWithLogitsLoss`
(`num_classes=2` gives two-class logits for cross-entropy instead). Input: float RGB on [0, 255], normalised
by the model's `mean` / `std` (given on that scale); images are N x 3 x H x W, clips N x 3 x T x H x W (for TSN, T
is the number of segments). A weights file's classifier loads when it has `num_classes` rows, else the head stays
fresh (`net.head_loaded`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from pixforge.export.errors import PixforgeError
from pixforge.forensics.models.weights import count_parameters

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class ModelSpec:
    """A detector: its builder, standard input, normalisation and the reference architecture it reproduces."""

    name: str
    builder: Callable[..., nn.Module]
    size: int                      # input height = width
    clip: int                      # frames per clip (segments for TSN); 1 for the image model
    mean: tuple[float, float, float]  # on [0, 255] RGB
    std: tuple[float, float, float]
    reference: str
    reference_classes: int         # the classifier size of the reference model
    reference_params: int          # its parameter count with that classifier
    weight_layouts: str

    @property
    def video(self) -> bool:
        return self.clip > 1

    def input_shape(self, batch: int = 1) -> tuple[int, ...]:
        if not self.video:
            return (batch, 3, self.size, self.size)
        return (batch, 3, self.clip, self.size, self.size)


def _builder(module: str, function: str) -> Callable[..., nn.Module]:
    def build(*args, **kwargs) -> nn.Module:
        import importlib

        return getattr(importlib.import_module(f"pixforge.forensics.models.{module}"), function)(*args, **kwargs)

    build.__name__ = function
    return build


MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("xception", _builder("xception", "xception"), 299, 1, (127.5,) * 3, (127.5,) * 3,
              "Xception (Chollet 2017) as Cadene's pretrainedmodels `xception` / timm `legacy_xception`, "
              "FaceForensics++'s detector", 1000, 22_855_952, "Cadene / timm / FaceForensics++ state dicts"),
    ModelSpec("c3d", _builder("c3d", "c3d"), 112, 16, (104.0, 117.0, 128.0), (1.0, 1.0, 1.0),
              "C3D (Tran 2015), mmaction2 `c3d_sports1m` layout, Sports-1M head", 487, 79_991_015,
              "mmaction2 / c3d-pytorch state dicts"),
    ModelSpec("tsn", _builder("tsn", "tsn"), 224, 3, IMAGENET_MEAN, IMAGENET_STD,
              "TSN (Wang 2016), mmaction2 `tsn_r50`: ResNet-50, 3 segments, average consensus, Kinetics-400 head",
              400, 24_327_632, "torchvision ResNet-50 / mmaction2 TSN state dicts"),
    ModelSpec("i3d", _builder("i3d", "i3d"), 224, 32, IMAGENET_MEAN, IMAGENET_STD,
              "I3D (Carreira 2017) as mmaction2 `i3d_r50` (inflated ResNet-50), Kinetics-400 head", 400,
              28_043_472, "mmaction2 I3D state dicts; torchvision / mmaction2 2D ResNet-50 (inflated)"),
    ModelSpec("resnet_lstm", _builder("resnet_lstm", "resnet_lstm"), 224, 16, IMAGENET_MEAN, IMAGENET_STD,
              "ResNet-50 per frame -> LSTM(512) -> fc (LRCN, Donahue 2015; Güera 2018): defined here", 2,
              28_756_034, "torchvision ResNet-50 state dicts (body); its own state dicts"),
)}


def spec(name: str) -> ModelSpec:
    """The registered detector `name` (a `PixforgeError` listing the names otherwise)."""
    key = str(name).lower().replace("-", "_").replace("+", "_")
    if key not in MODELS:
        raise PixforgeError(f"unknown detector {name!r}: choose one of {', '.join(MODELS)}")
    return MODELS[key]


def build(name: str, num_classes: int = 1, weights: str | os.PathLike | None = None, **kwargs) -> nn.Module:
    """The detector `name` with `num_classes` outputs (1: the fake logit), holding `weights` or fresh."""
    return spec(name).builder(num_classes=num_classes, weights=weights, **kwargs)


__all__ = ["MODELS", "ModelSpec", "spec", "build", "count_parameters", "IMAGENET_MEAN", "IMAGENET_STD"]
