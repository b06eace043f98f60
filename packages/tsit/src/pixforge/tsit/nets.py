"""TSIT's networks as the thesis (chapter 4) and the official code (EndlessSora/TSIT) define them.

* `Stream`: the content / style stream, `levels` residual blocks (`StreamBlock`: 3x3 conv, 3x3 conv, learned 1x1
  shortcut when the width changes; spectral norm; parameter-free instance norm; LeakyReLU 0.2), widths
  ngf * min(2^i, 16) (64, 128, 256, 512, 1024, 1024, 1024, 1024 at ngf=64), halved in size (nearest) between levels.
* `FADE` (Eq. 4.1-4.3): parameter-free batch norm of the generator feature, then `norm * (1 + gamma) + beta` with
  gamma, beta from 3x3 convolutions of the content-stream feature of the same level (element-wise).
* `fadain` (Eq. 4.4, with strength alpha): AdaIN of the generator feature to the style-stream feature's channel
  mean / std (unbiased variance + 1e-5, as the official code), then `alpha * adain + (1 - alpha) * x`.
* `TSITGenerator`: a 3-channel Gaussian noise map at H/2^(levels-1) (semantic synthesis: the nearest-downsampled
  label map, or a VAE code z through a linear layer) -> 3x3 conv to the deepest width -> for each level from the
  deepest to level 1: FAdaIN with the style feature, a FADE residual block with the content feature, x2 nearest
  upsampling -> LeakyReLU, 3x3 conv to RGB, tanh. With 8 levels the network's stride is 128.
* `ConvEncoder`: the VAE image encoder of semantic synthesis (3x3 stride-2 convs with spectral + instance norm on
  the image resized to `size`, then mu / logvar of a 256-d code).

Initialisation is what the official `init_weights('xavier', 0.02)` does when it runs, on the GPU: Xavier-normal
weights with gain 0.02 for the plain convolutions and linear layers, zero biases for all; the spectral-normalised
layers keep PyTorch's default weights. (`create_network` moves the network to the GPU before `init_weights`; the
old `spectral_norm` keeps `weight` as a plain tensor sharing the CPU memory of `weight_orig`, so after the move
Xavier writes into that stale copy and `weight_orig`, the trained weight, keeps its default initialisation.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm


def widths(ngf: int, levels: int, max_mult: int = 16) -> list[int]:
    """The channels of each stream level: ngf * min(2^i, max_mult)."""
    return [ngf * min(2**i, max_mult) for i in range(levels)]


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def _down(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=0.5, mode="nearest")


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class StreamBlock(nn.Module):
    """Content/style residual block (Fig. 4.3a): conv-IN-LReLU twice, plus a learned shortcut when fin != fout."""

    def __init__(self, fin: int, fout: int) -> None:
        super().__init__()
        self.learned_shortcut = fin != fout
        self.conv_0 = spectral_norm(nn.Conv2d(fin, fin, 3, padding=1))
        self.conv_1 = spectral_norm(nn.Conv2d(fin, fout, 3, padding=1))
        self.norm_in = nn.InstanceNorm2d(fin, affine=False)
        self.norm_out = nn.InstanceNorm2d(fout, affine=False)
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, 1, bias=False))
            self.norm_s = nn.InstanceNorm2d(fout, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = _lrelu(self.norm_s(self.conv_s(x))) if self.learned_shortcut else x
        dx = _lrelu(self.norm_in(self.conv_0(x)))
        dx = _lrelu(self.norm_out(self.conv_1(dx)))
        return shortcut + dx


class Stream(nn.Module):
    """`levels` StreamBlocks; returns the feature of every level, finest first (level i is at H / 2^i)."""

    def __init__(self, in_channels: int, ngf: int, levels: int = 8) -> None:
        super().__init__()
        chans = [in_channels, *widths(ngf, levels)]
        self.res = nn.ModuleList(StreamBlock(chans[i], chans[i + 1]) for i in range(levels))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, block in enumerate(self.res):
            x = block(_down(x) if i else x)
            features.append(x)
        return features


class FADE(nn.Module):
    """Feature adaptive denormalisation: BatchNorm(x) * (1 + gamma(feat)) + beta(feat), gamma/beta by 3x3 convs."""

    def __init__(self, channels: int, feat_channels: int) -> None:
        super().__init__()
        self.param_free_norm = nn.BatchNorm2d(channels, affine=False)
        self.mlp_gamma = nn.Conv2d(feat_channels, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(feat_channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        return self.param_free_norm(x) * (1 + self.mlp_gamma(feat)) + self.mlp_beta(feat)


class FADEBlock(nn.Module):
    """FADE residual block (thesis Fig. 4.3b): FADE-LReLU-conv twice, plus FADE-conv shortcut when fin != fout."""

    def __init__(self, fin: int, fout: int) -> None:
        super().__init__()
        self.learned_shortcut = fin != fout
        self.conv_0 = spectral_norm(nn.Conv2d(fin, fin, 3, padding=1))
        self.conv_1 = spectral_norm(nn.Conv2d(fin, fout, 3, padding=1))
        self.norm_0 = FADE(fin, fin)
        self.norm_1 = FADE(fin, fin)
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, 1, bias=False))
            self.norm_s = FADE(fin, fin)

    def forward(self, x: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, feat)) if self.learned_shortcut else x
        dx = self.conv_0(_lrelu(self.norm_0(x, feat)))
        dx = self.conv_1(_lrelu(self.norm_1(dx, feat)))
        return shortcut + dx


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics span every process of the default torch.distributed group, on any
    backend and device (torch's SyncBatchNorm takes GPU tensors only): each process normalises with the mean and
    variance of the global batch, as one process on that batch would. The statistics are all-reduced with an
    all-reduce in the backward pass too, so DDP's averaged gradients equal the one-process gradients. Outside a
    process group, and in eval mode, it is BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.distributed.is_available() and torch.distributed.is_initialized()):
            return super().forward(x)
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # statistics in float32 at least (under AMP too)
        count = torch.tensor(float(x.numel() // x.shape[1]), dtype=xf.dtype, device=x.device)
        torch.distributed.all_reduce(count)
        mean = _AllReduceSum.apply(xf.sum((0, 2, 3))) / count
        centered = xf - mean[:, None, None]
        var = _AllReduceSum.apply(centered.square().sum((0, 2, 3))) / count
        out = centered * torch.rsqrt(var + self.eps)[:, None, None]
        if self.track_running_stats:
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var * count / (count - 1), self.momentum)
                self.num_batches_tracked.add_(1)
        if self.affine:
            out = out * self.weight[:, None, None] + self.bias[:, None, None]
        return out.to(x.dtype)


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes; the gradient is summed likewise (each process's loss depends on every input)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        torch.distributed.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        torch.distributed.all_reduce(grad)
        return grad


def sync_batch_norm(module: nn.Module) -> nn.Module:
    """FADE's batch norms as `SyncBatchNorm2d` (same state), in place: under torchrun the official SyncBN."""
    for m in module.modules():
        if isinstance(m, FADE):
            norm = m.param_free_norm
            synced = SyncBatchNorm2d(norm.num_features, norm.eps, norm.momentum, affine=False).to(norm.running_mean)
            synced.load_state_dict(norm.state_dict())
            m.param_free_norm = synced
    return module


def _mean_std(x: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and sqrt(unbiased variance + eps) over the spatial dims."""
    flat = x.flatten(2)
    return flat.mean(2)[..., None, None], (flat.var(2, unbiased=True) + eps).sqrt()[..., None, None]


def fadain(x: torch.Tensor, style: torch.Tensor, alpha: float | torch.Tensor = 1.0) -> torch.Tensor:
    """FAdaIN with strength alpha: alpha * (std_s * (x - mean_x) / std_x + mean_s) + (1 - alpha) * x.

    Statistics and result are computed in float32 (under AMP too) and returned in x's dtype."""
    x32 = x.float()
    x_mean, x_std = _mean_std(x32)
    s_mean, s_std = _mean_std(style.float())
    return (alpha * ((x32 - x_mean) / x_std * s_std + s_mean) + (1 - alpha) * x32).to(x.dtype)


class TSITGenerator(nn.Module):
    """TSIT's generator with its content stream and (optionally) its style stream.

    `start`: "noise" (arbitrary style transfer, multi-modal synthesis: a 3-channel N(0, 1) map at H/stride x
    W/stride), "content" (semantic synthesis as the official code without VAE: the label map downsampled) or "vae"
    (semantic synthesis with the image encoder: a `z_dim` code through a linear layer to a fixed `latent_hw` map).
    """

    def __init__(self, ngf: int = 64, levels: int = 8, content_channels: int = 3, style_stream: bool = True,
                 start: str = "noise", z_dim: int = 256, latent_hw: tuple[int, int] | None = None) -> None:
        super().__init__()
        if start not in ("noise", "content", "vae"):
            raise ValueError(f"start must be noise, content or vae, got {start!r}")
        if levels < 2:
            raise ValueError(f"levels must be at least 2, got {levels}")
        self.levels, self.start, self.z_dim = levels, start, z_dim
        self.stride = 2 ** (levels - 1)
        chans = widths(ngf, levels)
        self.content_stream = Stream(content_channels, ngf, levels)
        self.style_stream = Stream(3, ngf, levels) if style_stream else None
        if start == "vae":
            if latent_hw is None:
                raise ValueError("start='vae' needs latent_hw, the (height, width) of the deepest level")
            self.latent_hw = tuple(int(v) for v in latent_hw)
            self.fc = nn.Linear(z_dim, chans[-1] * self.latent_hw[0] * self.latent_hw[1])
        else:
            self.fc = nn.Conv2d(3 if start == "noise" else content_channels, chans[-1], 3, padding=1)
        # block k works at level levels-1-k: coarse to fine, e.g. 1024,1024,1024,512,256,128,64 outputs at ngf=64
        self.blocks = nn.ModuleList(FADEBlock(chans[j], chans[j - 1]) for j in range(levels - 1, 0, -1))
        self.conv_img = nn.Conv2d(chans[0], 3, 3, padding=1)

    def noise_shape(self, batch: int, height: int, width: int) -> tuple[int, ...]:
        """The shape of the `noise` input for images of this size (a z code for start='vae')."""
        if self.start == "vae":
            return (batch, self.z_dim)
        return (batch, 3, height // self.stride, width // self.stride)

    def forward(self, content: torch.Tensor, style: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                alpha: float | torch.Tensor = 1.0) -> torch.Tensor:
        feats = self.content_stream(content)
        style_feats = self.style_stream(style) if self.style_stream is not None else None
        deepest = feats[-1]
        if self.start == "vae":
            z = noise if noise is not None else torch.randn(content.shape[0], self.z_dim, device=content.device)
            x = self.fc(z).view(-1, deepest.shape[1], *self.latent_hw)
        elif self.start == "content":
            x = self.fc(F.interpolate(content, size=deepest.shape[-2:], mode="nearest"))
        else:
            if noise is None:
                noise = torch.randn(content.shape[0], 3, *deepest.shape[-2:], device=content.device)
            x = self.fc(noise.to(deepest.dtype))
        for k, block in enumerate(self.blocks):
            level = self.levels - 1 - k
            if style_feats is not None:
                x = fadain(x, style_feats[level], alpha)
            x = _up(block(x, feats[level]))
        return torch.tanh(self.conv_img(_lrelu(x)))


class ConvEncoder(nn.Module):
    """VAE encoder of semantic synthesis (the official `ConvEncoder`): image resized to `size` (bilinear), stride-2
    3x3 convs down to 4x4 with spectral + instance norm and LeakyReLU, then linear mu and logvar."""

    def __init__(self, ngf: int = 64, z_dim: int = 256, size: int = 256) -> None:
        super().__init__()
        n = int(math.log2(size // 4))
        if size < 8 or 4 * 2**n != size:
            raise ValueError(f"encoder size must be a power of two >= 8, got {size}")
        self.size = size
        chans = [3] + [ngf * min(2**i, 8) for i in range(n)]
        self.layers = nn.ModuleList(
            nn.Sequential(spectral_norm(nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1, bias=False)),
                          nn.InstanceNorm2d(chans[i + 1], affine=False))
            for i in range(n))
        self.fc_mu = nn.Linear(chans[-1] * 16, z_dim)
        self.fc_var = nn.Linear(chans[-1] * 16, z_dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = image
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        for layer in self.layers:
            x = _lrelu(layer(x))
        x = x.flatten(1)
        return self.fc_mu(x), self.fc_var(x)


def init_weights(module: nn.Module, gain: float = 0.02) -> nn.Module:
    """The official initialisation as it runs on the GPU (module docstring): Xavier-normal (gain 0.02) weights of the
    plain conv / linear layers, PyTorch's default weights of the spectral-normalised ones, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if not parametrize.is_parametrized(m, "weight"):
                nn.init.xavier_normal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


INFERENCE = ("eval", "train")


def for_inference(module: nn.Module, mode: str = "eval") -> nn.Module:
    """`module` ready for inference and export (in place): eval mode, every spectral norm folded into a plain weight.

    `mode` "eval": FADE's batch norm uses its running statistics, each spectral norm its stored vectors.
    "train": as the official test.py runs multi-modal and photo2art models (it skips `model.eval()`): FADE normalises
    each image by its own statistics (the batch statistics of a batch of one, whatever the batch here) and each
    spectral norm takes the power-iteration step that the official code's train-mode forward takes from its stored
    vectors (torch.nn.utils.spectral_norm: v = W^T u, then u = W v, each normalised; torch's parametrization steps u
    first), then stays fixed. That is the official weight for the first image; the official script keeps stepping,
    once per image, so its later images use weights that differ from it by what is left of the power iteration's
    convergence (a trained checkpoint's vectors have had one step per training step already). Fixing the step keeps
    outputs a deterministic function of the inputs, the same in `translate` and in the exported graph."""
    if mode not in INFERENCE:
        raise ValueError(f"inference mode must be one of {INFERENCE}, got {mode!r}")
    module.eval()
    for m in list(module.modules()):
        if isinstance(m, FADE) and mode == "train":
            m.param_free_norm = nn.InstanceNorm2d(m.param_free_norm.num_features, eps=m.param_free_norm.eps)
        if parametrize.is_parametrized(m, "weight"):
            if mode == "train":
                _official_power_step(m.parametrizations.weight)
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module


@torch.no_grad()
def _official_power_step(weight: parametrize.ParametrizationList) -> None:
    """One step of torch.nn.utils.spectral_norm's power iteration on a spectral-norm parametrization's vectors."""
    norm, matrix = weight[0], weight.original.flatten(1)
    v = F.normalize(torch.mv(matrix.t(), norm._u), dim=0, eps=norm.eps)
    norm._u.copy_(F.normalize(torch.mv(matrix, v), dim=0, eps=norm.eps))
    norm._v.copy_(v)
