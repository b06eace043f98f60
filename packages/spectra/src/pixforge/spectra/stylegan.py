"""Untrained StyleGAN2 image models (Fig. 2m-p): Random, High-freq, Sparse, Oriented.

The generator is `pixforge.core.nets.stylegan2` (NVlabs' architecture, config F channels, ReLU activations as the
official script sets them), never trained. What the official `generate_datasets/stylegan` code does, and so the
defaults here:

* a fresh network every `images_per_network` = 400 images (network `i // 400` of dataset `seed`), its parameters
  drawn with NVlabs' initialisation; the mapping network is not used: `ws = lrelu_0.2(N(0, 1))`, independent per
  image and layer;
* the images are made two per forward pass (the script's batch size), and every forward pass draws new random
  layer weights for High-freq / Sparse / Oriented (pair `i // 2` of the dataset);
* Random: NVlabs' init as is (`noise_strength` = 0, so no noise);
* High-freq: each 3 x 3 filter is a wavelet from a 40-filter bank (16 oriented edges, 8 lines of both signs,
  8 point/ring filters, signs of bilinearly rotated 11 x 11 templates) picked per input channel and scaled by
  N(0, 1) per output channel; toRGB weights N(0, 1); noise maps: per layer a pool of 100 `1/f^alpha` maps,
  `alpha ~ U(0.5, 1.5)`, each image picking one with strength `U(0, 0.3)`;
* Sparse: a second 40-filter bank (8 + 8 mean-free rotated edges / lines, 4 sparse filters, and negatives), of
  which each forward pass keeps a random subset of 5..40; noise maps times a Laplacian 4 x 4 envelope (Lanczos
  upsampled); biases `U(-0.2, 0.2)`;
* Oriented: Sparse with one 512 x 512 noise map per forward pass shared by every layer (area-resized).

Images are normalised per channel to a random mean / std (N(0.483, 0.145) / N(0.219, 0.063), ... for R, G, B),
clipped and truncated to uint8, as `tensor_to_uint8_norm` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pixforge.core.datagen import rng
from pixforge.core.nets.stylegan2 import SynthesisNetwork, bias_act, modulated_conv2d, upsample2d
from pixforge.export.errors import PixforgeError

VARIANTS = {"stylegan-random": "random", "stylegan-highfreq": "highfreq", "stylegan-sparse": "sparse",
            "stylegan-oriented": "oriented"}
PER_FORWARD = 2  # images per forward pass in the official script (BS = 2)
W_DIM = 512
NOISE_POOL = 100
COLOR_MEAN = ((0.483, 0.145), (0.455, 0.142), (0.401, 0.161))  # (mean, std) of each channel's target mean
COLOR_STD = ((0.219, 0.063), (0.213, 0.062), (0.213, 0.069))  # (mean, std) of each channel's target std
_NETS: dict = {}  # the current network, per process


def _rotate(a: np.ndarray, degrees: float) -> np.ndarray:
    return np.array(Image.fromarray(a.astype(np.float32)).rotate(degrees, resample=Image.BILINEAR))[4:7, 4:7]


def _sparse_filters() -> list[np.ndarray]:
    dot = np.zeros((3, 3), np.float32)
    dot[1, 1] = 1
    ring = -np.ones((3, 3), np.float32)
    ring[1, 1] = 1
    cross = np.ones((3, 3), np.float32)
    cross[::2, ::2] = 0
    return [dot, ring, cross, np.sign(cross - 0.5)]


def wavelet_bank(variant: str) -> np.ndarray:
    """K x 3 x 3 filters: High-freq's bank (`network_randomized`) or Sparse / Oriented's (`_v3`)."""
    edge = np.ones((11, 11))
    edge[:, 5] = 0
    edge[:, 6:] *= -1
    line = np.ones((11, 11))
    line[:, 5] = -1
    if variant == "highfreq":
        bank = [np.sign(c - c.mean()) for c in (_rotate(edge, i * 360.0 / 16) for i in range(16))]
        for i in range(8):
            c = np.sign(_rotate(line, i * 180.0 / 8))
            bank += [c, -c]
        for s in _sparse_filters():
            bank += [s, -s]
    else:
        bank = [c - c.mean() for c in (_rotate(edge, i * 180.0 / 8) for i in range(8))]
        bank += [c - c.mean() for c in (_rotate(line, i * 180.0 / 8) for i in range(8))]
        bank += _sparse_filters()
        bank += [-b for b in bank]
    return np.stack(bank).astype(np.float32)


def pink_noise(r: np.random.Generator, size: int, alpha: float, envelope: bool) -> np.ndarray:
    """A size x size map with a `1/f^alpha` amplitude spectrum and random phase (optionally times a Laplacian
    4 x 4 envelope, Lanczos-resized), zero mean, unit (N-1) standard deviation."""
    grid = np.linspace(-1, 1, size + 1)
    py, px = np.meshgrid(grid, grid)
    radius = np.sqrt(px ** 2 + py ** 2)
    radius[radius == 0] = 1e-5
    mag = 1.0 / radius ** alpha
    mag[size // 2, size // 2] = 0
    mag = mag + mag[::-1, ::-1]
    phase = r.uniform(0, 2 * np.pi, mag.shape)
    phase = phase - phase[::-1, ::-1]
    f = np.real(np.fft.ifft2(np.fft.ifftshift(mag * np.exp(1j * phase))))[:-1, :-1]
    f = (f - f.mean()).astype(np.float32)
    if envelope:
        lap = Image.fromarray(r.laplace(size=(4, 4)).astype(np.float32))
        f = f * np.array(lap.resize((size, size), Image.LANCZOS), dtype=np.float32)
    return f / f.std(ddof=1)


@dataclass(frozen=True)
class RandomStyleGAN:
    """An untrained StyleGAN2 (see the module docstring). `paper_alpha`: noise exponent `U(0.5, 2)` (paper)
    instead of `U(0.5, 1.5)` (code); `paper_filters`: the paper's filter sampling (a wavelet and an N(0, 1)
    amplitude per filter; Oriented: the wavelet tied per input channel, the amplitude per filter) instead of
    the code's (wavelet per input channel, amplitude per output channel, for all three); `channel_base`,
    `channel_max`: generator width (config F: 32768, 512)."""

    name: str = "stylegan-oriented"
    images_per_network: int = 400
    paper_alpha: bool = False
    paper_filters: bool = False
    channel_base: int = 32768
    channel_max: int = 512
    batch: int = PER_FORWARD

    def __post_init__(self) -> None:  # whole forward passes per batch: never compute a pair twice
        object.__setattr__(self, "batch", -(-max(1, int(self.batch)) // PER_FORWARD) * PER_FORWARD)

    def params(self) -> dict:
        params = asdict(self)
        params.pop("batch")
        return params

    @property
    def variant(self) -> str:
        return VARIANTS[self.name]

    def check_size(self, size: int) -> None:
        if size < 8 or size > 2048 or size & (size - 1):
            raise PixforgeError(f"{self.name} makes power-of-two sizes from 8 to 2048 pixels, not {size}")
        if self.images_per_network < PER_FORWARD or self.images_per_network % PER_FORWARD:
            raise PixforgeError(f"--images-per-network must be a positive multiple of {PER_FORWARD}, "
                                f"not {self.images_per_network}")

    def network(self, seed: int, net: int, size: int) -> tuple[SynthesisNetwork, list[np.ndarray]]:
        """Network `net` of dataset `seed` (CPU) and, per synthesis layer, its pool of noise maps."""
        key = (self, seed, net, size)
        if key not in _NETS:
            r = rng(seed, net, 0)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(r.integers(2 ** 62)))
                synthesis = SynthesisNetwork(W_DIM, size, 3, channel_base=self.channel_base,
                                             channel_max=self.channel_max, activation="relu").eval()
            pools = []
            if self.variant in ("highfreq", "sparse"):
                for layer in _layers(synthesis):
                    pools.append(np.stack([pink_noise(r, layer.resolution, self.alpha(r), self.variant != "highfreq")
                                           for _ in range(NOISE_POOL)]))
            _NETS.clear()
            _NETS[key] = synthesis, pools
        return _NETS[key]

    def alpha(self, r: np.random.Generator) -> float:
        return float(r.uniform(0.5, 2.0 if self.paper_alpha else 1.5))

    def sample(self, seed: int, indices: Sequence[int], size: int, device: torch.device) -> np.ndarray:
        self.check_size(size)
        out: dict[int, np.ndarray] = {}
        for pair in sorted({int(i) // PER_FORWARD for i in indices}):
            first = pair * PER_FORWARD
            synthesis, pools = self.network(seed, first // self.images_per_network, size)
            synthesis = synthesis.to(device)
            with torch.no_grad():
                images = self.forward(synthesis, pools, seed, pair, device)
            for k in range(PER_FORWARD):
                out[first + k] = normalize_colors(images[k], rng(seed, first + k, 2))
        return np.stack([out[int(i)] for i in indices])

    def forward(self, synthesis: SynthesisNetwork, pools: list[np.ndarray], seed: int, pair: int,
                device: torch.device) -> np.ndarray:
        ws = np.stack([rng(seed, pair * PER_FORWARD + k, 0).standard_normal((synthesis.num_ws, W_DIM))
                       for k in range(PER_FORWARD)])
        ws = F.leaky_relu(torch.from_numpy(ws).float().to(device), 0.2)
        if self.variant == "random":
            return synthesis(ws, noise_mode="none").cpu().numpy()
        r = rng(seed, pair, 1)
        shared = pink_noise(r, 512, self.alpha(r), True) if self.variant == "oriented" else None
        bank = wavelet_bank(self.variant)
        layer_index = 0
        x = img = None
        w_idx = 0
        for res in synthesis.block_resolutions:
            block = getattr(synthesis, f"b{res}")
            w_iter = iter(ws[:, w_idx: w_idx + block.num_conv + block.num_torgb].unbind(dim=1))
            w_idx += block.num_conv
            if block.in_channels == 0:
                x = block.const.unsqueeze(0).repeat([PER_FORWARD, 1, 1, 1])
            for layer in ([block.conv0] if block.in_channels else []) + [block.conv1]:
                pool = pools[layer_index] if pools else None
                x = self.layer(layer, x, next(w_iter), r, bank, pool, shared)
                layer_index += 1
            if img is not None:
                img = upsample2d(img, block.resample_filter)
            y = self.torgb(block.torgb, x, next(w_iter), r)
            img = y if img is None else img + y
        return img.cpu().numpy()

    def layer(self, layer, x: torch.Tensor, w: torch.Tensor, r: np.random.Generator, bank: np.ndarray,
              pool: np.ndarray | None, shared: np.ndarray | None) -> torch.Tensor:
        dev = x.device
        chout, chin = layer.weight.shape[:2]
        if self.variant != "highfreq":
            bank = bank[r.permutation(len(bank))[:r.integers(5, len(bank) + 1)]]
        if self.paper_filters:
            wavelets = bank[r.integers(len(bank), size=chin if self.variant == "oriented" else (chout, chin))]
            amplitude = r.standard_normal((chout, chin))
        else:
            wavelets = bank[r.integers(len(bank), size=chin)]
            amplitude = r.standard_normal((chout, 1))
        weight = torch.from_numpy(np.broadcast_to(wavelets, (chout, chin, 3, 3)) * amplitude[..., None, None])
        strength = torch.from_numpy(r.uniform(0, 0.3, PER_FORWARD)).float().to(dev).reshape(-1, 1, 1, 1)
        if shared is not None:
            maps = F.interpolate(torch.from_numpy(shared)[None, None].to(dev), (layer.resolution,) * 2, mode="area")
        else:
            maps = torch.from_numpy(pool[r.integers(NOISE_POOL, size=PER_FORWARD)]).to(dev).unsqueeze(1)
        bias = layer.bias if self.variant == "highfreq" else torch.from_numpy(r.uniform(-0.2, 0.2, chout)).float()
        x = modulated_conv2d(x, weight.float().to(dev), layer.affine(w), noise=maps * strength, up=layer.up,
                             padding=layer.padding, resample_filter=layer.resample_filter)
        return bias_act(x, bias.to(dev), act="relu")

    def torgb(self, torgb, x: torch.Tensor, w: torch.Tensor, r: np.random.Generator) -> torch.Tensor:
        weight = torch.from_numpy(r.standard_normal(tuple(torgb.weight.shape))).float().to(x.device)
        x = modulated_conv2d(x, weight, torgb.affine(w) * torgb.weight_gain, demodulate=False)
        return bias_act(x, torgb.bias)


def _layers(synthesis: SynthesisNetwork) -> list:
    blocks = [getattr(synthesis, f"b{res}") for res in synthesis.block_resolutions]
    return [layer for b in blocks for layer in ([b.conv0] if b.in_channels else []) + [b.conv1]]


def normalize_colors(image: np.ndarray, r: np.random.Generator) -> np.ndarray:
    """3 x H x W float -> H x W x 3 uint8: each channel standardised, then given a random mean and std."""
    out = np.empty(image.shape[1:] + (3,), np.float32)
    for c in range(3):
        mean = r.standard_normal() * COLOR_MEAN[c][1] + COLOR_MEAN[c][0]
        std = r.standard_normal() * COLOR_STD[c][1] + COLOR_STD[c][0]
        ch = image[c].astype(np.float64)
        out[..., c] = (ch - ch.mean()) / (ch.std() + 1e-12) * std + mean
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)
