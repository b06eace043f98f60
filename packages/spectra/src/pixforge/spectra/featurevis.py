"""Feature-visualisation image models (Fig. 2q-r): images optimised to excite one or two units of a ResNet.

The procedure of Olah et al. (Distill 2017) as the official `generate_datasets/feature_visualizations` code runs it
(lucent, with the authors' channel objective), and so the defaults here:

* the encoder: torchvision's ResNet50, randomly initialised (Random: one network per dataset, drawn from the seed)
  or holding a MoCo v2 checkpoint (Dead leaves: `encoder`, the query encoder without its projection head), in
  eval mode; its ``avgpool`` output (the 2048 features fed to the last linear layer) is the layer;
* the units: image `i` of a dataset visualises unit `i` for `i` < 2048, then the pairs `(0, 1), (0, 2), ...,
  (1, 2), ...` in order (``generate_sorted_k_of_n``); the objective is the mean of their activations (spatial
  mean too for a convolutional layer);
* the image: lucent's FFT parameterisation (per-channel spectrum ``N(0, 0.01)``, scaled by ``1 / max(f, 1/S)``,
  inverse real FFT, divided by 4), the fixed colour-decorrelation matrix, a sigmoid;
* the transforms, drawn anew at every step: pad 12 px with grey 0.5, jitter 0..7 px, scale 0.90..1.10 (only a
  shrink survives the final resize), rotate -10..10 degrees (0 five times more often), jitter 0..3 px, bilinear
  resize back to S; then ImageNet normalisation;
* Adam, learning rate 0.05, 128 steps, 256 px; the result is min-max normalised per image and truncated to uint8
  (``cv2_imwrite(normalize=True)``).

Every image is a function of `(seed, index)` alone: its noise start, transforms and (``units="random"``) units are
drawn from its own generator and its objective does not involve the other images of a batch, so batches of any
composition give the same images (on the CPU bit for bit: oneDNN, whose convolutions vary with the batch size, is
switched off there; on CUDA cuDNN is made deterministic and `generate` keeps batch contents fixed, but the
backward pass of `grid_sample` adds with atomics, so GPU re-runs can differ in the last bits, which the optimisation
may amplify; not measured here). The transforms are one composed affine warp per image (grid_sample) instead of four
resamplings shared by the batch (kornia's warp, which lucent uses, has the same atomics).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pixforge.core.datagen import rng
from pixforge.core.nets.resnet import ARCHS, IMAGENET_MEAN, IMAGENET_STD, ResNet, resnet
from pixforge.export.errors import PixforgeError

ENCODERS = {"featurevis-random": "random", "featurevis-deadleaves": "deadleaves"}
UNIT_MODES = ("sorted", "single", "pair", "random")
PAD, JITTER, LATE_JITTER = 12, 8, 4
SCALES = tuple(1 + (i - 5) / 50 for i in range(11))
ANGLES = tuple(range(-10, 11)) + (0,) * 5
MAGIC = 4.0  # lucid's divisor of the FFT image
_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32)
COLOR = _SQRT / np.linalg.norm(_SQRT, axis=0).max()  # lucid's colour decorrelation
NET_STREAM = 99  # rng(seed, 0, NET_STREAM) seeds the random encoder
_NETS: dict = {}  # the current encoder, per process
DEADLEAVES_HELP = (
    "featurevis-deadleaves optimises images against a ResNet50 trained with MoCo v2 on dead-leaves-shapes images: "
    "pass its checkpoint with --encoder PATH (a MoCo checkpoint such as the authors' "
    "encoders/large_scale/dead_leaves-mixed/checkpoint_0199.pth.tar, or a torchvision-format state dict); such "
    "weights are made by `pixforge-spectra pretrain --data dead-leaves-shapes --out RUN` (then --encoder "
    "RUN/encoder.safetensors)")


def pair(p: int, n: int) -> list[int]:
    """The `p`-th pair `(i, j)`, `i < j < n`, in lexicographic order."""
    starts = np.arange(n) * (2 * n - np.arange(n) - 1) // 2  # index of pair (i, i + 1)
    i = int(np.searchsorted(starts, p, side="right") - 1)
    return [i, int(i + 1 + p - starts[i])]


@dataclass(frozen=True)
class FeatureVis:
    """Feature visualisation (see the module docstring). `encoder`: a checkpoint path or URL (featurevis-deadleaves;
    featurevis-random draws its network from the seed); `units`: sorted (official), single, pair, random (one or
    two random units per image); `fft`: the FFT image parameterisation (else pixels); `decorrelate`: lucid's colour
    decorrelation; `transforms`: the lucent pad/jitter/scale/rotate set; `steps`, `lr` (Adam), `init_std`."""

    name: str = "featurevis-random"
    encoder: str | None = None
    arch: str = "resnet50"
    layer: str = "avgpool"
    units: str = "sorted"
    steps: int = 128
    lr: float = 0.05
    init_std: float = 0.01
    fft: bool = True
    decorrelate: bool = True
    transforms: bool = True
    batch: int = 1

    def __post_init__(self) -> None:
        if ENCODERS[self.name] == "deadleaves" and self.encoder is None:
            raise PixforgeError(DEADLEAVES_HELP)
        if ENCODERS[self.name] == "random" and self.encoder is not None:
            raise PixforgeError(f"featurevis-random draws its network from the seed and takes no --encoder: use "
                                f"featurevis-deadleaves --encoder {self.encoder} for a trained network")
        if self.encoder is not None and not str(self.encoder).startswith(("http://", "https://")):
            if not Path(self.encoder).expanduser().is_file():
                raise PixforgeError(f"--encoder {self.encoder} does not exist: pass a ResNet checkpoint file")
        choices = {"arch": (self.arch, tuple(ARCHS)), "units": (self.units, UNIT_MODES)}
        for option, (value, allowed) in choices.items():
            if value not in allowed:
                raise PixforgeError(f"--{option} {value!r} is not one of {', '.join(allowed)}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise PixforgeError(f"--steps must be a positive number of optimisation steps, got {self.steps!r}")
        for option in ("lr", "init_std"):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise PixforgeError(f"--{option.replace('_', '-')} must be a positive number, got {value!r}")

    def params(self) -> dict:
        params = asdict(self)
        params.pop("batch")
        if self.encoder is not None and not str(self.encoder).startswith(("http://", "https://")):
            params["encoder_sha256"] = hashlib.sha256(Path(self.encoder).expanduser().read_bytes()).hexdigest()
        return params

    def check_size(self, size: int) -> None:
        _check_pixels(self.name, size)
        self.network(0)  # reads the encoder and checks the layer before anything is written

    def network(self, seed: int) -> tuple[ResNet, int]:
        """The encoder (eval mode, frozen; cached per process) and the number of units of `layer`."""
        key = (self.arch, self.encoder, self.layer, None if self.encoder else seed)
        if key not in _NETS:
            if self.encoder is None:
                generator = torch.Generator().manual_seed(int(rng(seed, 0, NET_STREAM).integers(2**63)))
                net = resnet(self.arch, generator=generator)
            else:
                net = resnet(self.arch, weights=self.encoder)
            net.eval().requires_grad_(False)
            modules = dict(net.named_modules())
            if self.layer not in modules or not self.layer:
                raise PixforgeError(f"--layer {self.layer!r} is not a module of {self.arch}: choose e.g. avgpool, "
                                    f"layer4, layer3.1, layer4.2.conv3")
            with torch.no_grad(), _Hook(modules[self.layer]) as hook:
                net(torch.zeros(1, 3, 64, 64))
            while len(_NETS) > 1:  # keep the latest two (check_size's and the dataset's)
                _NETS.pop(next(iter(_NETS)))
            _NETS[key] = net, int(hook.output.shape[1])
        return _NETS[key]

    def units_of(self, seed: int, index: int, channels: int) -> list[int]:
        """The units image `index` maximises, for a layer of `channels` units."""
        pairs = channels * (channels - 1) // 2
        if self.units == "single":
            return [index % channels]
        if self.units == "pair":
            return pair(index % pairs, channels)
        if self.units == "random":
            r = rng(seed, index, 2)
            return sorted(int(u) for u in r.choice(channels, 1 + int(r.integers(2)), replace=False))
        k = index % (channels + pairs)
        return [k] if k < channels else pair(k - channels, channels)

    def sample(self, seed: int, indices: Sequence[int], size: int, device: torch.device) -> np.ndarray:
        images, _ = self.optimize(seed, indices, size, device)
        return to_uint8(images)

    def optimize(self, seed: int, indices: Sequence[int], size: int,
                 device: torch.device) -> tuple[torch.Tensor, np.ndarray]:
        """Optimised images (N x 3 x S x S in [0, 1], on the CPU) and the objective before each step (N x steps)."""
        _check_pixels(self.name, size)
        indices = [int(i) for i in indices]
        net, channels = self.network(seed)
        net = net.to(device)
        weights = torch.zeros(len(indices), channels)
        for row, i in enumerate(indices):
            units = self.units_of(seed, i, channels)
            weights[row, units] = 1.0 / len(units)
        weights = weights.to(device)
        shape = (3, size, size // 2 + 1, 2) if self.fft else (3, size, size)
        start = np.stack([rng(seed, i, 0).standard_normal(shape) * self.init_std for i in indices])
        latent = torch.from_numpy(start).float().to(device).requires_grad_(True)
        thetas = (torch.from_numpy(np.stack([self.warps(seed, i, size) for i in indices])).to(device)
                  if self.transforms else None)
        mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        optimizer = torch.optim.Adam([latent], lr=self.lr)
        history = []
        with _deterministic(device), _Hook(dict(net.named_modules())[self.layer]) as hook:
            for step in range(self.steps):
                optimizer.zero_grad(set_to_none=True)
                x = image(latent, size, self.fft, self.decorrelate)
                if thetas is not None:
                    x = warp(x, thetas[:, step], size)
                net((x - mean) / std)
                out = hook.output
                objective = ((out.flatten(2).mean(2) if out.dim() > 2 else out) * weights).sum(1)
                (-objective.sum()).backward()
                optimizer.step()
                history.append(objective.detach())
        with torch.no_grad():
            images = image(latent, size, self.fft, self.decorrelate).cpu()
        return images, torch.stack(history, 1).cpu().numpy()

    def warps(self, seed: int, index: int, size: int) -> np.ndarray:
        """steps x 2 x 3 `affine_grid` matrices of image `index`: one draw of the lucent transforms per step."""
        r = rng(seed, index, 1)
        n = self.steps
        jitter = r.integers(0, JITTER, (n, 2))
        scale = np.asarray(SCALES)[r.integers(0, len(SCALES), n)]
        angle = np.asarray(ANGLES, np.float64)[r.integers(0, len(ANGLES), n)]
        late = r.integers(0, LATE_JITTER, (n, 2))
        return affine(jitter, scale, angle, late, size)


def affine(jitter: np.ndarray, scale: np.ndarray, degrees: np.ndarray, late: np.ndarray, size: int) -> np.ndarray:
    """n x 2 x 3 `affine_grid` matrices (output -> padded-image coordinates, align_corners) of lucent's chain on the
    padded S + 24 px image: translate by `jitter` px; resize to `ceil(scale * P)` px and pad back to at least P (a
    growth only enlarges the canvas, which the final resize undoes); rotate by `degrees` counter-clockwise about the
    centre (OpenCV / kornia); translate by `late` px of that canvas; resize to S."""
    padded = size + 2 * PAD
    resized = np.ceil(scale * padded)
    canvas = resized + 2 * np.maximum(0, np.ceil((padded - resized) / 2))
    shrink = (resized - 1) / (canvas - 1)
    angle = np.radians(degrees)
    cos, sin = np.cos(angle), np.sin(angle)
    inverse = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # undoes the rotation
    inverse /= shrink[:, None, None]
    offset = -np.einsum("nij,nj->ni", inverse, 2.0 * late / (canvas[:, None] - 1)) - 2.0 * jitter / (padded - 1)
    return np.concatenate([inverse, offset[..., None]], -1).astype(np.float32)


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Per-sample CPU convolutions (torch's own: oneDNN's vary with the batch size, so an image would depend on its
    batch) and deterministic cuDNN algorithms (as the official script sets)."""
    saved = torch.backends.mkldnn.enabled, torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.mkldnn.enabled = saved[0] and device.type != "cpu"
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled, torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def _check_pixels(name: str, size: int) -> None:
    if not 32 <= size <= 1024 or size % 2:
        raise PixforgeError(f"{name} makes even sizes from 32 to 1024 pixels, not {size}")


class _Hook:
    """The output of `module` at its latest call."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module, self.output = module, None

    def __enter__(self) -> _Hook:
        self.handle = self.module.register_forward_hook(self._store)
        return self

    def _store(self, module, inputs, output) -> None:
        self.output = output

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def image(latent: torch.Tensor, size: int, fft: bool = True, decorrelate: bool = True) -> torch.Tensor:
    """lucent's `param.image`: N x 3 x S x S in (0, 1) from the FFT (or pixel) latent."""
    if fft:
        fy = np.fft.fftfreq(size)[:, None]
        fx = np.fft.fftfreq(size)[: size // 2 + 1]
        scale = 1.0 / np.maximum(np.sqrt(fx * fx + fy * fy), 1.0 / size)
        scale = torch.from_numpy(scale).float().to(latent.device)[None, None, ..., None]
        x = torch.fft.irfftn(torch.view_as_complex(scale * latent), s=(size, size), norm="ortho") / MAGIC
    else:
        x = latent
    if decorrelate:
        x = torch.einsum("dc,nchw->ndhw", torch.from_numpy(COLOR).to(x.device), x)
    return torch.sigmoid(x)


def warp(images: torch.Tensor, thetas: torch.Tensor, size: int) -> torch.Tensor:
    """Pad with grey, then one bilinear affine warp per image (zeros outside) back to S x S."""
    padded = F.pad(images, [PAD] * 4, value=0.5)
    grid = F.affine_grid(thetas, [images.shape[0], 3, size, size], align_corners=True)
    return F.grid_sample(padded, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """N x 3 x H x W -> N x H x W x 3 uint8, each image min-max normalised and truncated (the official writer)."""
    x = images.double()
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    span = (x.amax(dim=(1, 2, 3), keepdim=True) - lo).clamp_min(1e-12)
    return (255.0 * (x - lo) / span).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
