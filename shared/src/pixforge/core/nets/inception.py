"""InceptionV3 feature network for FID / KID, loadable from the two public weight files.

Two variants share one module tree whose names match the public state dicts, so
`load_state_dict(strict=True)` works on the files as published:

* ``"fid"``: the TensorFlow-ported network every published FID number uses (pytorch-fid's
  `fid_inception_v3`, weights ``pt_inception-2015-12-05-6726825d.pth``): 1008 classes, the 3x3
  average pools ignore padded zeros (``count_include_pad=False``), and the last block's pool branch
  is a 3x3 max pool.
* ``"torchvision"``: torchvision's `inception_v3` (weights ``inception_v3_google-0cc3c7bd.pth``),
  1000 classes; the file's ``AuxLogits.*`` entries are accepted and dropped (unused at inference).

Preprocessing follows pytorch-fid for both: bilinear resize to 299x299 (``align_corners=False``,
no antialias), then scaling to [-1, 1]. For the torchvision weights that is exactly what torchvision
does as well: its pretrained `inception_v3` sets ``transform_input=True``, which maps an
ImageNet-mean/std-normalised image back to ``2 * x - 1`` before the first convolution.

Parameter counts (conv weights + BN affine + fc, derived from torchvision's layer definitions and
asserted in the tests): shared trunk 21,785,568; torchvision 23,834,568 (+ AuxLogits 3,326,696 =
27,161,264, torchvision's published figure); fid 23,850,960.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pixforge.core.checkpoint import check_finite, torch_file
from pixforge.export.errors import PixforgeError

WEIGHTS_ENV = "PIXFORGE_INCEPTION_WEIGHTS"
WEIGHTS_URLS = {
    "fid": "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    "torchvision": "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
}
NUM_CLASSES = {"fid": 1008, "torchvision": 1000}
INPUT_SIZE = 299


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm (eps 1e-3) + ReLU; keys ``conv.*`` and ``bn.*``."""

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _pool_3x3(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The stride-1 3x3 pool in front of a block's ``branch_pool`` conv: "avg", "avg_tf" or "max"."""
    if kind == "max":
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=kind == "avg")


class InceptionA(nn.Module):
    def __init__(self, in_channels: int, pool_features: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_pool_3x3(x, self.pool))
        return torch.cat([self.branch1x1(x), b5, b3, bp], 1)


class InceptionB(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, in_channels: int, channels_7x7: int, pool: str) -> None:
        super().__init__()
        c7 = channels_7x7
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(_pool_3x3(x, self.pool))
        return torch.cat([self.branch1x1(x), b7, bd, bp], 1)


class InceptionD(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    def __init__(self, in_channels: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bp = self.branch_pool(_pool_3x3(x, self.pool))
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(b3),
                self.branch3x3_2b(b3),
                self.branch3x3dbl_3a(bd),
                self.branch3x3dbl_3b(bd),
                bp,
            ],
            1,
        )


class InceptionV3(nn.Module):
    """The bare network (no preprocessing): ``forward`` maps N x 3 x 299 x 299 in [-1, 1] to N x 2048."""

    def __init__(self, variant: str = "fid") -> None:
        super().__init__()
        if variant not in NUM_CLASSES:
            raise PixforgeError(f"unknown InceptionV3 variant {variant!r}; choose one of {sorted(NUM_CLASSES)}.")
        self.variant = variant
        avg, last = ("avg_tf", "max") if variant == "fid" else ("avg", "avg")
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32, pool=avg)
        self.Mixed_5c = InceptionA(256, pool_features=64, pool=avg)
        self.Mixed_5d = InceptionA(288, pool_features=64, pool=avg)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128, pool=avg)
        self.Mixed_6c = InceptionC(768, channels_7x7=160, pool=avg)
        self.Mixed_6d = InceptionC(768, channels_7x7=160, pool=avg)
        self.Mixed_6e = InceptionC(768, channels_7x7=192, pool=avg)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool=avg)
        self.Mixed_7c = InceptionE(2048, pool=last)
        self.fc = nn.Linear(2048, NUM_CLASSES[variant])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,
            self.Mixed_7a,
            self.Mixed_7b,
            self.Mixed_7c,
        ):
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def load_weights(path_or_url: str | os.PathLike, unwrap: str | None = None) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.pth``/``.pt`` file, a ``.safetensors`` file or an http(s) URL.

    Files are read with ``torch.load(weights_only=True)`` (no arbitrary unpickling); URLs go through
    ``torch.hub.load_state_dict_from_url`` (cached under the torch hub directory, hash prefix checked).
    ``unwrap``: a training checkpoint that holds the state dict under this key (e.g. MoCo's ``"state_dict"``
    beside its epoch and optimizer) gives that state dict.
    """
    source = str(path_or_url)
    if source.startswith(("http://", "https://")):
        try:
            return torch.hub.load_state_dict_from_url(source, map_location="cpu", weights_only=True, check_hash=True)
        except Exception as err:  # network, HTTP, hash-check and unpickling failures
            reason = _first_line(err)
            raise PixforgeError(f"could not download weights from {source} ({reason}); pass a local file.") from err
    path = Path(source).expanduser()
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        if not path.is_file():
            raise PixforgeError(f"weights file {path} does not exist or is not a file")
        try:
            state = load_file(str(path), device="cpu")
        except Exception:  # safetensors raises its own types for headers that do not parse
            raise PixforgeError(f"weights file {path} is not a readable safetensors file") from None
    else:
        state = torch_file(path, "weights file")
    if unwrap is not None and isinstance(state, dict) and isinstance(state.get(unwrap), dict):
        state = state[unwrap]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PixforgeError(f"weights file {path} does not hold a state dict of tensors.")
    check_finite(state, f"weights file {path}")
    return state


def _missing_weights_error(variant: str) -> PixforgeError:
    name = WEIGHTS_URLS[variant].rsplit("/", 1)[-1]
    return PixforgeError(
        f"FID/KID need the public InceptionV3 weights file {name} ({WEIGHTS_URLS[variant]}) and none was given; "
        f"download it once and pass its path (weights=PATH, CLI --inception-weights PATH) or set {WEIGHTS_ENV}."
    )


def _resolve_weights(variant: str, weights: str | os.PathLike | None) -> str | os.PathLike:
    """An explicit path/URL wins, then ``$PIXFORGE_INCEPTION_WEIGHTS``, then the torch hub cache."""
    if weights is not None:
        return weights
    if os.environ.get(WEIGHTS_ENV):
        return os.environ[WEIGHTS_ENV]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_URLS[variant].rsplit("/", 1)[-1]
    if cached.is_file():
        return cached
    raise _missing_weights_error(variant)


def state_dict_mismatch(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str:
    """What keeps `state` from loading strictly where `own` is (missing / unexpected keys, wrong shapes, three of
    each named), or "" when it fits."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    resized = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
               if k in state and state[k].shape != v.shape]
    return "; ".join(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                     for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", resized))
                     if keys)


def load_into(net: InceptionV3, state: dict[str, torch.Tensor], source: str) -> None:
    """Strictly load a public-format state dict into ``net``; a mismatch names ``source`` and the keys."""
    state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
    own = net.state_dict()
    for key in own:  # files saved by old torch versions carry no BatchNorm step counters
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = own[key]
    problems = state_dict_mismatch(own, state)
    if problems:
        fc_rows = state["fc.weight"].shape[0] if "fc.weight" in state else None
        other = {n: v for v, n in NUM_CLASSES.items()}.get(fc_rows, net.variant)
        hint = f" (its fc layer matches variant {other!r})" if other != net.variant else ""
        raise PixforgeError(f"weights {source} do not fit InceptionV3 variant {net.variant!r}{hint}: {problems}.")
    net.load_state_dict(state, strict=True)


def unit_images(images: torch.Tensor, dtype: torch.dtype, who: str) -> torch.Tensor:
    """N x 3 x H x W uint8 0..255 or float [0, 1] images (the dtype decides) as `dtype` in [0, 1]; anything else is a
    `PixforgeError` naming `who` (a feature network's input contract, shared by every one of them)."""
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        raise PixforgeError(f"{who} expects N x 3 x H x W images, got shape {tuple(images.shape)}.")
    if images.dtype == torch.uint8:
        return images.to(dtype) / 255.0
    if not images.is_floating_point():
        raise PixforgeError(f"{who} expects uint8 or float images, got {images.dtype}.")
    x = images.to(dtype)
    lo, hi = torch.aminmax(x)
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise PixforgeError(f"{who} expects float images in [0, 1] (or uint8), got values in "
                            f"[{lo.item():.3g}, {hi.item():.3g}]; map [-1, 1] outputs with (x + 1) / 2.")
    return x


class InceptionFeatures(nn.Module):
    """InceptionV3 features for FID / KID: images in, N x 2048 pool features (or logits) out.

    Input: N x 3 x H x W, either uint8 in 0..255 or float in [0, 1] (the dtype decides, so it works with
    torchmetrics' default uint8 path as well as ``normalize=True`` floats); resized bilinearly to 299x299
    and scaled to [-1, 1] (see the module docstring). Output: float32 N x 2048 for ``output="pool"``,
    N x 1008 (fid) / N x 1000 (torchvision) for ``output="logits"``.

    ``weights``: path (``.pth``/``.safetensors``) or URL of the public file for ``variant``; ``None``
    looks at ``$PIXFORGE_INCEPTION_WEIGHTS`` and the torch hub cache and otherwise raises a
    `PixforgeError` naming the file to get. The network always stays in eval mode, without gradients
    for its parameters.
    """

    def __init__(self, variant: str = "fid", weights: str | os.PathLike | None = None, output: str = "pool") -> None:
        super().__init__()
        if output not in ("pool", "logits"):
            raise PixforgeError(f"unknown InceptionFeatures output {output!r}; choose 'pool' or 'logits'.")
        self.net = InceptionV3(variant)
        source = _resolve_weights(variant, weights)
        load_into(self.net, load_weights(source), str(source))
        self.net.requires_grad_(False)
        self.output = output
        self.num_features = 2048 if output == "pool" else NUM_CLASSES[variant]
        self.label = f"inception-v3-{variant}/{output} ({Path(str(source)).name})"
        self.names = ("fid", "kid") if (variant, output) == ("fid", "pool") else ("fd", "kd")  # what distances are
        self.train(False)

    def train(self, mode: bool = True) -> InceptionFeatures:
        """Stay in eval mode: BatchNorm must use the published running statistics."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = unit_images(images, self.net.fc.weight.dtype, "InceptionFeatures")
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        pooled = self.net(2 * x - 1)
        return pooled if self.output == "pool" else self.net.fc(pooled)
