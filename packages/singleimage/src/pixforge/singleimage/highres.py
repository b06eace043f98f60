"""PetsGAN's two stages after DIPNet in the official code (zhangzc21/PetsGAN; neither is in the paper).

    TTSR refinement   not trained: each sample's k x k windows (stride 2) are matched, by the cosine of VGG19
                      conv1_1 + ReLU features (every 4th of the 64 channels), to the windows of a reference image,
                      and the best-matching reference windows of pixels are pasted back and averaged where they
                      overlap; repeated 10 times from the previous result (`Models/TTSR.py`, `main.py:697-726`:
                      k = 11, the training image I as reference; `hr_learning`, `main.py:749-757, 816-831`: k = 31,
                      I and its mirror side by side). Needs torchvision VGG19 weights (conv1_1 only is read).
    hrnet             the x`up_factor` upsampler of `max_size > 256` (`Models/models.py:371-396`, `main.py:728-831`,
                      up_factor = max_size // 256): trained alone after the joint phase, by MSE, on (I, its mirror)
                      -> (the original image resized to up_factor x I's size, its mirror), batch 2, Adam 1e-4, 5000
                      steps; at sampling it upsamples the TTSR-refined F(G(z)).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pixforge.export.errors import PixforgeError
from pixforge.singleimage.petsgan_model import conv_block

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _vgg_conv1_1(path: str | Path | None, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """conv1_1's weight and bias (`features.0.*`) of a torchvision VGG19 state dict at a local `path`."""
    if path is None:
        raise PixforgeError(f"{what} needs VGG19 weights (a torchvision vgg19 state dict, e.g. vgg19-dcbb9e9d.pth): "
                            "pass --vgg FILE (nothing is downloaded)")
    if str(path).startswith(("http://", "https://")) or not Path(path).is_file():
        raise PixforgeError(f"--vgg {path} does not exist or is not a file (nothing is downloaded)")
    from pixforge.core.nets.inception import load_weights

    state = load_weights(path)
    weight, bias = state.get("features.0.weight"), state.get("features.0.bias")
    if weight is None or bias is None or tuple(weight.shape) != (64, 3, 3, 3) or tuple(bias.shape) != (64,):
        raise PixforgeError(f"--vgg {path} is not a torchvision VGG19 state dict (no 64 x 3 x 3 x 3 features.0)")
    return weight.float(), bias.float()


def fold_divisor(size: tuple[int, int], kernel: int, stride: int) -> torch.Tensor:
    """1 / (how many windows cover each pixel), 0 where none does (official `functions.getDivisor`)."""
    params = {"kernel_size": kernel, "padding": kernel // 2, "stride": stride}
    count = F.fold(F.unfold(torch.ones(1, 1, *size), **params), size, **params)
    return torch.where(count > 0, 1 / count.clamp(min=1e-12), torch.zeros_like(count))


class TTSRRefiner(nn.Module):
    """The official TTSR(...)(x, ref, ref, fold_params, divisor, n, lv=1, skip, return_img=True) on images in
    [-1, 1]: `n` rounds of hard search (argmax of the cosine between k x k windows of VGG features, stride
    `stride`, zero padding k // 2) and transfer (the matched windows of `ref`, in [0, 1], folded and averaged)."""

    def __init__(self, vgg_weights: str | Path | None, kernel: int = 11, stride: int = 2, rounds: int = 10,
                 skip: int = 4, chunk: int = 4096):
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 3, 1, 1)
        weight, bias = _vgg_conv1_1(vgg_weights, "TTSR refinement")
        self.conv.weight.data.copy_(weight)
        self.conv.bias.data.copy_(bias)
        self.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.kernel, self.stride, self.rounds, self.skip, self.chunk = kernel, stride, rounds, skip, chunk

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """VGG19 relu1_1 of (x + 1) / 2 after ImageNet's mean / std (official LTE's MeanShift), every skip-th
        channel."""
        return F.relu(self.conv(((x + 1) / 2 - self.mean) / self.std))[:, ::self.skip]

    def _params(self) -> dict[str, int]:
        return {"kernel_size": self.kernel, "padding": self.kernel // 2, "stride": self.stride}

    def search(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """For each window of x (N x L), the index of the reference window of highest feature cosine; computed in
        chunks of `chunk` windows (the official N x L_ref x L matrix at once: 1 GB at 256 px)."""
        params = self._params()
        fr = F.normalize(F.unfold(self.features(ref), **params), dim=1)[0].t()  # L_ref x C k^2
        fx = F.normalize(F.unfold(self.features(x), **params), dim=1)  # N x C k^2 x L
        return torch.cat([(fr @ fx[..., i:i + self.chunk]).argmax(dim=1) for i in range(0, fx.shape[-1], self.chunk)],
                         dim=-1)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3 or ref.dim() != 4 or ref.shape[:2] != (1, 3):
            raise PixforgeError(f"TTSR refinement takes N x 3 x H x W images and a 1 x 3 x H x W reference, got "
                                f"{tuple(x.shape)} and {tuple(ref.shape)}")
        params, size = self._params(), tuple(x.shape[-2:])
        windows = F.unfold((ref + 1) / 2, **params)  # 1 x 3 k^2 x L_ref
        divisor = fold_divisor(size, self.kernel, self.stride).to(x)
        out = x
        for _ in range(self.rounds):
            index = self.search(out, ref)  # N x L
            picked = windows[0][:, index].permute(1, 0, 2)  # N x 3 k^2 x L
            out = (F.fold(picked, size, **params) * divisor - 0.5) * 2
        return out


class HRNet(nn.Module):
    """Official hrnet(dim, up_factor): a 3x3 IN-LeakyReLU block (replicate padding), then per x2 (int(log2
    up_factor) of them) a 3x3 block and a 6x6 stride-2 transposed convolution (padding 2), a 3x3 conv to RGB, tanh."""

    def __init__(self, dim: int = 64, up_factor: int = 2):
        super().__init__()
        layers: list[nn.Module] = [conv_block(3, dim, pad_mode="replicate")]
        self.factor = 2 ** int(math.log2(up_factor))
        for _ in range(int(math.log2(up_factor))):
            layers += [conv_block(dim, dim, pad_mode="replicate"), nn.ConvTranspose2d(dim, dim, 6, 2, 2)]
        layers += [nn.Conv2d(dim, 3, 3, 1, 1, padding_mode="replicate"), nn.Tanh()]
        self.blocks = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


def refine_and_upscale(model, images: torch.Tensor, refiner: TTSRRefiner | None, hr: bool) -> torch.Tensor:
    """PetsGAN samples (N x 3 x H x W) through the official post-processing: TTSR refinement against I (`main.py:
    697-726`) and, with `hr`, hrnet after refinement against I and its mirror side by side (`main.py:816-831`);
    one sample at a time, as official."""
    out = []
    with torch.no_grad():
        for x in images.split(1):
            if refiner is not None:
                ref = torch.cat([model.image, model.image.flip(-1)], -1) if hr else model.image
                x = refiner(x, ref.to(x))
            out.append(model.HR(x) if hr else x)
    return torch.cat(out).clamp(-1, 1)
