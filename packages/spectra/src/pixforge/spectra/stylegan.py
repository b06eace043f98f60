"""Untrained StyleGAN2 image models (Fig. 2m-p): Random, High-freq, Sparse, Oriented.

The generator is `pixforge.core.nets.stylegan2` (NVlabs' architecture, config F channels, ReLU activations as the
official script sets them), never trained. What the official `generate_datasets/stylegan` code does, and so the
defaults here:

* a fresh network every `images_per_network` = 400 images (network `i // 400` of dataset `seed`), its parameters
  drawn with NVlabs' initialisation; the mapping network is not used: `ws = lrelu_0.2(N(0, 1))`, independent per
  image and layer;
* the images are made `per_forward` (default 2) per forward pass (the script's batch size `BS`: 2 in June 2024; the
  2022 release that made the published sets used 4, HEAD uses 1), and every forward pass draws new random layer
  weights for High-freq / Sparse / Oriented (pass `i // per_forward` of the dataset);
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

On the CPU every pair is its own forward pass (the reference); on other devices (`sample_batched`) the pairs of
a block of `batch` images that share a network run as one forward pass, their per-pair weights as one grouped
convolution (`pair_modulated_conv2d`), with the same random draws, so only float rounding differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pixforge.core.datagen import rng, whole_number
from pixforge.core.nets.stylegan2 import SynthesisNetwork, bias_act, upfirdn2d, upsample2d
from pixforge.export.errors import PixforgeError

VARIANTS = {"stylegan-random": "random", "stylegan-highfreq": "highfreq", "stylegan-sparse": "sparse",
            "stylegan-oriented": "oriented"}
PER_FORWARD = 2  # images per forward pass: the official script's BS in June 2024 (the 2022 release: 4; HEAD: 1)
FORWARD_SIZES = (1, 2, 4)  # the BS values the official script has had
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
    `channel_max`: generator width (config F: 32768, 512); `per_forward`: images per forward pass, which share
    its random layer weights and noise picks (the script's `BS`: 2 in June 2024, 4 in the 2022 release that made
    the published sets, 1 at HEAD)."""

    name: str = "stylegan-oriented"
    images_per_network: int = 400
    paper_alpha: bool = False
    paper_filters: bool = False
    channel_base: int = 32768
    channel_max: int = 512
    per_forward: int = PER_FORWARD
    batch: int = PER_FORWARD

    def __post_init__(self) -> None:  # whole forward passes per batch: never compute a pass twice
        if self.per_forward not in FORWARD_SIZES or isinstance(self.per_forward, bool):
            raise PixforgeError(f"--per-forward must be one of {', '.join(map(str, FORWARD_SIZES))} (the official "
                                f"script's batch sizes), not {self.per_forward!r}")
        object.__setattr__(self, "batch", -(-max(1, int(self.batch)) // self.per_forward) * self.per_forward)

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
        if self.images_per_network < self.per_forward or self.images_per_network % self.per_forward:
            raise PixforgeError(f"--images-per-network must be a positive multiple of --per-forward "
                                f"{self.per_forward}, not {self.images_per_network}")
        whole_number("--channel-base", self.channel_base)
        whole_number("--channel-max", self.channel_max)

    def network(self, seed: int, net: int, size: int) -> tuple[SynthesisNetwork, list[np.ndarray]]:
        """Network `net` of dataset `seed` (CPU) and, per synthesis layer, its pool of noise maps."""
        key = (self, seed, net, size)
        if key not in _NETS:
            r = rng(seed, net, 0)
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(int(r.integers(2 ** 62)))  # not torch.manual_seed: GPU RNGs
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
        """On the CPU one forward pass of `per_forward` images at a time (the reference), elsewhere
        `sample_batched`."""
        self.check_size(size)
        if device.type != "cpu":
            return self.sample_batched(seed, indices, size, device)
        out: dict[int, np.ndarray] = {}
        for pair in sorted({int(i) // self.per_forward for i in indices}):
            first = pair * self.per_forward
            synthesis, pools = self.network(seed, first // self.images_per_network, size)
            with torch.no_grad():
                images = self.forward(synthesis.to(device), pools, seed, [pair], device).numpy()
            for k in range(self.per_forward):
                out[first + k] = normalize_colors(images[k], rng(seed, first + k, 2))
        return np.stack([out[int(i)] for i in indices])

    def sample_batched(self, seed: int, indices: Sequence[int], size: int, device: torch.device) -> np.ndarray:
        """The passes ("pairs" at the default `per_forward` 2) of a block (`batch` images aligned to multiples of
        `batch`, within one network) in one forward pass on `device`, colours normalised there: image `i` depends on
        (seed, i, batch, device type) only, never on which other indices are asked for. Equal to `sample` on the CPU
        up to float rounding."""
        self.check_size(size)
        per_block, per_net = self.batch // self.per_forward, self.images_per_network // self.per_forward
        out: dict[int, np.ndarray] = {}
        for pair in sorted({int(i) // self.per_forward for i in indices}):
            if pair * self.per_forward in out:
                continue
            block, net = pair // per_block, pair // per_net
            pairs = range(max(block * per_block, net * per_net), min((block + 1) * per_block, (net + 1) * per_net))
            synthesis, pools = self.network(seed, net, size)
            with torch.no_grad():
                images = self.forward(synthesis.to(device), pools, seed, pairs, device)
                first = pairs[0] * self.per_forward
                rngs = [rng(seed, first + k, 2) for k in range(len(images))]
                for k, image in enumerate(normalize_colors_torch(images, rngs).cpu().numpy()):
                    out[first + k] = image
        return np.stack([out[int(i)] for i in indices])

    def forward(self, synthesis: SynthesisNetwork, pools: list[np.ndarray], seed: int, pairs: Sequence[int],
                device: torch.device) -> torch.Tensor:
        """Images (`per_forward` P x 3 x S x S on `device`) of the P passes `pairs`; each pass has its own random
        layer weights and noise."""
        ws = np.stack([rng(seed, p * self.per_forward + k, 0).standard_normal((synthesis.num_ws, W_DIM))
                       for p in pairs for k in range(self.per_forward)])
        ws = F.leaky_relu(torch.from_numpy(ws).float().to(device), 0.2)
        if self.variant == "random":
            return synthesis(ws, noise_mode="none")
        rs = [rng(seed, p, 1) for p in pairs]
        shared = None
        if self.variant == "oriented":
            shared = torch.from_numpy(np.stack([pink_noise(r, 512, self.alpha(r), True) for r in rs]))[:, None]
        bank = torch.from_numpy(wavelet_bank(self.variant)).to(device)
        layer_index = 0
        x = img = None
        w_idx = 0
        for res in synthesis.block_resolutions:
            block = getattr(synthesis, f"b{res}")
            w_iter = iter(ws[:, w_idx: w_idx + block.num_conv + block.num_torgb].unbind(dim=1))
            w_idx += block.num_conv
            if block.in_channels == 0:
                x = block.const.unsqueeze(0).repeat([len(ws), 1, 1, 1])
            for layer in ([block.conv0] if block.in_channels else []) + [block.conv1]:
                pool = pools[layer_index] if pools else None
                x = self.layer(layer, x, next(w_iter), rs, bank, pool, shared)
                layer_index += 1
            if img is not None:
                img = upsample2d(img, block.resample_filter)
            y = self.torgb(block.torgb, x, next(w_iter), rs)
            img = y if img is None else img + y
        return img

    def layer(self, layer, x: torch.Tensor, w: torch.Tensor, rs: list[np.random.Generator], bank: torch.Tensor,
              pool: np.ndarray | None, shared: torch.Tensor | None) -> torch.Tensor:
        dev = x.device
        chout, chin = layer.weight.shape[:2]
        picks, amplitudes, strengths, maps, biases = [], [], [], [], []
        for r in rs:  # each pair's generator, in the official order of draws
            subset = np.arange(len(bank))
            if self.variant != "highfreq":
                subset = r.permutation(len(bank))[:r.integers(5, len(bank) + 1)]
            if self.paper_filters:
                shape = chin if self.variant == "oriented" else (chout, chin)
                picks.append(subset[r.integers(len(subset), size=shape)])
                amplitudes.append(r.standard_normal((chout, chin)))
            else:
                picks.append(subset[r.integers(len(subset), size=chin)])
                amplitudes.append(r.standard_normal((chout, 1)))
            strengths.append(r.uniform(0, 0.3, self.per_forward))
            if shared is None:
                maps.append(pool[r.integers(NOISE_POOL, size=self.per_forward)])
            if self.variant != "highfreq":
                biases.append(r.uniform(-0.2, 0.2, chout))
        wavelets = bank[torch.from_numpy(np.stack(picks)).to(dev)].double()  # P x (1 | O) x I x 3 x 3
        if wavelets.ndim == 4:
            wavelets = wavelets[:, None]
        weight = (wavelets * torch.from_numpy(np.stack(amplitudes)).to(dev)[..., None, None]).float()
        strength = torch.from_numpy(np.concatenate(strengths)).float().to(dev).reshape(-1, 1, 1, 1)
        if shared is not None:
            noise = F.interpolate(shared.to(dev), (layer.resolution,) * 2, mode="area")
            noise = noise.repeat_interleave(self.per_forward, dim=0)
        else:
            noise = torch.from_numpy(np.concatenate(maps)).to(dev).unsqueeze(1)
        x = pair_modulated_conv2d(x, weight.expand(-1, chout, chin, -1, -1), layer.affine(w), up=layer.up,
                                  padding=layer.padding, resample_filter=layer.resample_filter)
        x = x + noise * strength
        if self.variant == "highfreq":
            return bias_act(x, layer.bias, act="relu")
        bias = torch.from_numpy(np.stack(biases)).float().to(dev).repeat_interleave(self.per_forward, dim=0)
        return bias_act(x + bias[:, :, None, None], None, act="relu")

    def torgb(self, torgb, x: torch.Tensor, w: torch.Tensor, rs: list[np.random.Generator]) -> torch.Tensor:
        weight = np.stack([r.standard_normal(tuple(torgb.weight.shape)) for r in rs])
        weight = torch.from_numpy(weight).float().to(x.device)
        x = pair_modulated_conv2d(x, weight, torgb.affine(w) * torgb.weight_gain, demodulate=False)
        return bias_act(x, torgb.bias)


def pair_modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, up: int = 1, padding: int = 0,
                          resample_filter: torch.Tensor | None = None, demodulate: bool = True) -> torch.Tensor:
    """`modulated_conv2d` (no noise) with its own weight per forward pass of B images: x N x I x H x W (N = B P,
    pass-major), weight P x O x I x k x k, one grouped convolution (groups = passes); for P = 1 the very same
    operations."""
    p, o, i, k = weight.shape[:4]
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    b = n // p  # images per pass
    x = x * styles.reshape(n, -1, 1, 1)
    x = x.reshape(p, b, i, h, w).transpose(0, 1).reshape(b, p * i, h, w)
    if up == 1:
        x = F.conv2d(x, weight.reshape(p * o, i, k, k), padding=padding, groups=p)
    else:  # core's conv2d_resample, grouped
        fw = resample_filter.shape[-1]
        p0, p1 = padding + (fw + up - 1) // 2 - (k - 1), padding + (fw - up) // 2 - (k - up)
        x = F.conv_transpose2d(x, weight.transpose(1, 2).reshape(p * i, o, k, k), stride=up, groups=p)
        x = upfirdn2d(x, resample_filter, padding=(p0, p1, p0, p1), gain=up * up)
    x = x.reshape(b, p, o, *x.shape[-2:]).transpose(0, 1).reshape(n, o, *x.shape[-2:])
    if demodulate:
        wm = (weight[:, None] * styles.reshape(p, b, 1, i, 1, 1)).reshape(n, o, i, k, k)
        x = x * (wm.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(n, -1, 1, 1)
    return x


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


def normalize_colors_torch(images: torch.Tensor, rngs: Sequence[np.random.Generator]) -> torch.Tensor:
    """`normalize_colors` for a batch on its device: N x 3 x H x W float -> N x H x W x 3 uint8."""
    targets = np.array([[(r.standard_normal() * COLOR_MEAN[c][1] + COLOR_MEAN[c][0],
                          r.standard_normal() * COLOR_STD[c][1] + COLOR_STD[c][0]) for c in range(3)] for r in rngs])
    targets = torch.from_numpy(targets).to(images.device)[..., None, None]
    x = images.double()
    mean, std = x.mean(dim=(2, 3), keepdim=True), x.std(dim=(2, 3), keepdim=True, unbiased=False)
    out = ((x - mean) / (std + 1e-12) * targets[:, :, 1] + targets[:, :, 0]).float()
    return (out.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1)
