"""BigGAN-deep (Brock et al., ICLR 2019) in huggingface `pytorch_pretrained_biggan`'s key layout: the second layout
`--prior biggan` accepts (`biggan.py` detects it; the official PetsGAN layout is `biggan_official.py`).

    network        the generator as `pytorch_pretrained_biggan` (huggingface/pytorch-pretrained-BigGAN) builds it, so
                   that its `pytorch_model.bin` loads strictly: a one-hot class (1000) -> linear embedding (no bias),
                   concatenated with z (128) into the condition vector; a spectral-normed linear to 4x4x16ch;
                   GenBlocks (bottleneck 1x1 -> 3x3 -> 3x3 -> 1x1, each after a conditional batch norm + ReLU, nearest
                   x2 in every second block, channel-dropping skip); self-attention before the configured block;
                   an unconditional batch norm, ReLU, a spectral-normed 3x3 conv to RGB (first 3 channels) and tanh.
                   Batch norms use stored statistics, one row per truncation 0, 0.02, ... 1 (interpolated as there).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pixforge.export.errors import PixforgeError

WEIGHTS_NAME, CONFIG_NAME = "pytorch_model.bin", "config.json"  # the names in a pytorch_pretrained_biggan folder


@dataclass(frozen=True)
class BigGANConfig:
    """The fields of pytorch_pretrained_biggan's BigGANConfig (its config.json); layers are (up-sample, in, out)
    channel multiples of channel_width. Defaults: biggan-deep-128."""

    output_dim: int = 128
    z_dim: int = 128
    class_embed_dim: int = 128
    channel_width: int = 128
    num_classes: int = 1000
    layers: tuple = ((False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 4),
                     (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1))
    attention_layer_position: int = 8
    eps: float = 1e-4
    n_stats: int = 51

    def check(self) -> BigGANConfig:
        ups = sum(bool(up) for up, _, _ in self.layers)
        if self.class_embed_dim != self.z_dim:
            raise PixforgeError(f"BigGAN config: class_embed_dim ({self.class_embed_dim}) must equal z_dim "
                                f"({self.z_dim}), as pytorch_pretrained_biggan builds it")
        if not self.layers or self.layers[0][1] != 16:
            raise PixforgeError("BigGAN config: the first layer must take 16 x channel_width channels (4x4x16ch input)")
        if self.layers[-1][2] != 1 or any(out not in (cin, cin / 2) for _, cin, out in self.layers):
            raise PixforgeError("BigGAN config: every layer keeps or halves its channels, the last ends at 1 x "
                                "channel_width")
        if 4 * 2**ups != self.output_dim:
            raise PixforgeError(f"BigGAN config: {ups} up-sampling layers give {4 * 2**ups} px, not output_dim "
                                f"{self.output_dim}")
        if not 0 <= self.attention_layer_position <= len(self.layers) or self.n_stats < 2:
            raise PixforgeError(f"BigGAN config: attention_layer_position {self.attention_layer_position} / n_stats "
                                f"{self.n_stats} out of range")
        return self


# biggan-deep-256: the 128 model with one more resolution (x2 blocks 16 -> 16 -> 8 -> 8 -> 4 -> 2 -> 1, as BigGAN-deep's
# 256 px generator), attention still at 64 px; a config.json beside the weights, or the weights' own shapes, win.
BIGGAN_DEEP_128 = BigGANConfig()
BIGGAN_DEEP_256 = BigGANConfig(output_dim=256, layers=(
    (False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 8), (False, 8, 8),
    (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)))
CONFIGS = {128: BIGGAN_DEEP_128, 256: BIGGAN_DEEP_256}


def sn(module: nn.Module, eps: float) -> nn.Module:
    """Spectral norm with the stored u and v (`weight_orig`, `weight_u`, `weight_v`: pytorch_pretrained_biggan's keys);
    in eval mode no power iteration runs, so the weight is weight_orig / (u^T W v) for the file's u and v."""
    return nn.utils.spectral_norm(module, eps=eps)


class SelfAttn(nn.Module):
    """SAGAN attention: theta (C/8), phi and g max-pooled x2 (C/8, C/2), softmax over the pooled positions, a 1x1 out
    conv, x + gamma * out."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.snconv1x1_theta = sn(nn.Conv2d(channels, channels // 8, 1, bias=False), eps)
        self.snconv1x1_phi = sn(nn.Conv2d(channels, channels // 8, 1, bias=False), eps)
        self.snconv1x1_g = sn(nn.Conv2d(channels, channels // 2, 1, bias=False), eps)
        self.snconv1x1_o_conv = sn(nn.Conv2d(channels // 2, channels, 1, bias=False), eps)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        theta = self.snconv1x1_theta(x).flatten(2)  # N x C/8 x HW
        phi = F.max_pool2d(self.snconv1x1_phi(x), 2).flatten(2)  # N x C/8 x HW/4
        attn = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # N x HW x HW/4
        g = F.max_pool2d(self.snconv1x1_g(x), 2).flatten(2)  # N x C/2 x HW/4
        out = (g @ attn.transpose(1, 2)).view(n, c // 2, h, w)
        return x + self.gamma * self.snconv1x1_o_conv(out)


class CondBatchNorm(nn.Module):
    """Batch norm with stored statistics per truncation (never batch statistics): (x - mean_t) / sqrt(var_t + eps),
    then x (1 + scale(c)) + offset(c) (conditional; spectral-normed linears without bias) or weight / bias."""

    def __init__(self, channels: int, cond_dim: int | None, n_stats: int, eps: float):
        super().__init__()
        self.eps, self.step = eps, 1.0 / (n_stats - 1)
        self.register_buffer("running_means", torch.zeros(n_stats, channels))
        self.register_buffer("running_vars", torch.ones(n_stats, channels))
        self.conditional = cond_dim is not None
        if self.conditional:
            self.scale = sn(nn.Linear(cond_dim, channels, bias=False), eps)
            self.offset = sn(nn.Linear(cond_dim, channels, bias=False), eps)
        else:
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))

    def stats(self, truncation: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The statistics of `truncation`: rows i and i + 1 (i = floor(t / 0.02)) weighted (frac, 1 - frac), exactly
        as pytorch_pretrained_biggan weights them (row i alone when the fraction is 0)."""
        frac, start = math.modf(truncation / self.step)
        i = int(start)
        if frac == 0.0:
            return self.running_means[i], self.running_vars[i]
        return (self.running_means[i] * frac + self.running_means[i + 1] * (1 - frac),
                self.running_vars[i] * frac + self.running_vars[i + 1] * (1 - frac))

    def forward(self, x: torch.Tensor, truncation: float, cond: torch.Tensor | None = None) -> torch.Tensor:
        mean, var = self.stats(truncation)
        x = (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + self.eps)
        if self.conditional:
            return x * (1 + self.scale(cond)[..., None, None]) + self.offset(cond)[..., None, None]
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class GenBlock(nn.Module):
    """BigGAN-deep block: four (cond BN, ReLU, conv) with 1x1, 3x3, 3x3, 1x1 kernels over in/4 channels, nearest x2
    before the first 3x3 when up-sampling; skip: the first out channels of x (when in != out), x2 when up-sampling."""

    def __init__(self, cin: int, cout: int, cond_dim: int, up: bool, n_stats: int, eps: float):
        super().__init__()
        mid, self.up, self.drop = cin // 4, up, cin != cout
        for i, (a, b, k) in enumerate(((cin, mid, 1), (mid, mid, 3), (mid, mid, 3), (mid, cout, 1))):
            self.add_module(f"bn_{i}", CondBatchNorm(a, cond_dim, n_stats, eps))
            self.add_module(f"conv_{i}", sn(nn.Conv2d(a, b, k, padding=k // 2), eps))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        h = x
        for i in range(4):
            h = F.relu(getattr(self, f"bn_{i}")(h, truncation, cond))
            if i == 1 and self.up:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = getattr(self, f"conv_{i}")(h)
        skip = x[:, :h.shape[1]] if self.drop else x
        if self.up:
            skip = F.interpolate(skip, scale_factor=2, mode="nearest")
        return h + skip


class Generator(nn.Module):
    def __init__(self, cfg: BigGANConfig):
        super().__init__()
        ch, cond, self.ch = cfg.channel_width, 2 * cfg.z_dim, cfg.channel_width
        self.gen_z = sn(nn.Linear(cond, 4 * 4 * 16 * ch), cfg.eps)
        layers: list[nn.Module] = []
        for i, (up, cin, cout) in enumerate(cfg.layers):
            if i == cfg.attention_layer_position:
                layers.append(SelfAttn(ch * cin, cfg.eps))
            layers.append(GenBlock(ch * cin, ch * cout, cond, bool(up), cfg.n_stats, cfg.eps))
        if cfg.attention_layer_position == len(cfg.layers):
            layers.append(SelfAttn(ch * cfg.layers[-1][2], cfg.eps))
        self.layers = nn.ModuleList(layers)
        self.bn = CondBatchNorm(ch, None, cfg.n_stats, cfg.eps)
        self.conv_to_rgb = sn(nn.Conv2d(ch, ch, 3, padding=1), cfg.eps)

    def forward(self, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        # the linear's output is laid out 4 x 4 x 16ch (TensorFlow's NHWC, as the converted weights expect)
        x = self.gen_z(cond).view(-1, 4, 4, 16 * self.ch).permute(0, 3, 1, 2).contiguous()
        for layer in self.layers:
            x = layer(x, cond, truncation) if isinstance(layer, GenBlock) else layer(x)
        x = self.conv_to_rgb(F.relu(self.bn(x, truncation)))
        return torch.tanh(x[:, :3])


class BigGAN(nn.Module):
    """G(z, class vector, truncation) -> N x 3 x R x R in [-1, 1]; state_dict keys as pytorch_pretrained_biggan's."""

    def __init__(self, cfg: BigGANConfig = BIGGAN_DEEP_128):
        super().__init__()
        self.config = cfg.check()
        self.embeddings = nn.Linear(cfg.num_classes, cfg.z_dim, bias=False)
        self.generator = Generator(cfg)
        self.settle_spectral_norms()

    @torch.no_grad()
    def settle_spectral_norms(self, iterations: int = 20) -> None:
        """Power iterations on every spectral norm's u and v: PyTorch starts them random, and in eval mode (where the
        stored vectors are used as they are) u^T W v is then not W's largest singular value. A loaded file's vectors
        replace these."""
        for module in self.modules():
            if hasattr(module, "weight_orig") and not module.weight_orig.is_meta:
                w, u, v = module.weight_orig.flatten(1), module.weight_u, module.weight_v
                for _ in range(iterations):
                    v.copy_(F.normalize(w.t() @ u, dim=0, eps=1e-12))
                    u.copy_(F.normalize(w @ v, dim=0, eps=1e-12))

    @property
    def resolution(self) -> int:
        return self.config.output_dim

    def forward(self, z: torch.Tensor, class_vector: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        if not 0 < truncation <= 1:
            raise ValueError(f"truncation must be in (0, 1], got {truncation}")
        return self.generator(torch.cat([z, self.embeddings(class_vector)], 1), truncation)

    one_class = False  # the prior's candidates each draw a class (README, BigGAN prior, deviation 6)

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def synthesize(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The prior's call: class indices, truncation 1 (BigGAN-PyTorch's z is untruncated)."""
        return self(z, F.one_hot(labels.long(), self.config.num_classes).float(), 1.0)


def truncated_noise(n: int, z_dim: int, truncation: float = 1.0, generator: torch.Generator | None = None):
    """z ~ N(0, 1) truncated to [-2, 2] (redrawn outside), times `truncation` (pytorch_pretrained_biggan's
    truncated_noise_sample, without scipy)."""
    z = torch.randn(n, z_dim, generator=generator)
    while (bad := z.abs() > 2).any():
        z[bad] = torch.randn(int(bad.sum()), generator=generator)
    return z * truncation


# ----------------------------------------------------------------------------------------------------------------
# Loading a user's file.

def config_from_state(state: dict[str, torch.Tensor], eps: float = 1e-4) -> BigGANConfig:
    """The config a pytorch_pretrained_biggan state dict was built with, read from its shapes (blocks alternate
    without / with up-sampling, as in every BigGAN-deep config)."""
    pre = "generator.layers."
    ch = state["generator.bn.running_means"].shape[1]
    z_dim, classes = state["embeddings.weight"].shape
    index = sorted({int(k[len(pre):].split(".")[0]) for k in state if k.startswith(pre)})
    layers, attention = [], len(index)
    for i in index:
        if f"{pre}{i}.snconv1x1_theta.weight_orig" in state:
            attention = len(layers)
            continue
        cin, cout = state[f"{pre}{i}.conv_0.weight_orig"].shape[1], state[f"{pre}{i}.conv_3.weight_orig"].shape[0]
        layers.append((len(layers) % 2 == 1, cin // ch, cout // ch))
    ups = sum(up for up, _, _ in layers)
    return BigGANConfig(output_dim=4 * 2**ups, z_dim=z_dim, class_embed_dim=z_dim, channel_width=ch,
                        num_classes=classes, layers=tuple(layers), attention_layer_position=attention, eps=eps,
                        n_stats=state["generator.bn.running_means"].shape[0])


def _fill_v(model: BigGAN, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Files written before PyTorch stored `weight_v` hold only weight_orig and weight_u: v = normalize(W^T u), as
    PyTorch's own spectral-norm state-dict hook derives it."""
    state = dict(state)
    for key in model.state_dict():
        if key.endswith(".weight_v") and key not in state:
            stem = key[:-len("weight_v")]
            if stem + "weight_orig" in state and stem + "weight_u" in state:
                w = state[stem + "weight_orig"].flatten(1)
                state[key] = F.normalize(w.t() @ state[stem + "weight_u"], dim=0, eps=1e-12)
    return state


def save_biggan(model: BigGAN, folder: str | Path) -> Path:
    """`folder/pytorch_model.bin` + `config.json` in pytorch_pretrained_biggan's layout (for tests and conversions)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / WEIGHTS_NAME)
    cfg = asdict(model.config)
    cfg["layers"] = [list(layer) for layer in cfg["layers"]]
    (folder / CONFIG_NAME).write_text(json.dumps(cfg, indent=2) + "\n")
    return folder / WEIGHTS_NAME



def load_deep(file: Path, state: dict[str, torch.Tensor]) -> BigGAN:
    """The BigGAN-deep of `state` (read from `file`): a `config.json` beside it is used, else the config is read from
    the weights' shapes; strict. PixforgeError (one line) on a config that does not fit."""
    cfg_file = file.parent / CONFIG_NAME
    try:
        if cfg_file.is_file():
            raw = json.loads(cfg_file.read_text())
            known = {k: v for k, v in raw.items() if k in BigGANConfig.__dataclass_fields__}
            if "layers" in known:
                known["layers"] = tuple(tuple(layer) for layer in known["layers"])
            cfg = BigGANConfig(**known)
        else:
            cfg = config_from_state(state)
        model = BigGAN(cfg)
    except (ValueError, TypeError, KeyError, IndexError) as err:
        raise PixforgeError(f"--prior-model {file}: unreadable BigGAN config ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''})") from None
    state = _fill_v(model, state)
    bad = sorted(set(model.state_dict()) ^ set(state))
    wrong = [k for k, v in model.state_dict().items() if k in state and state[k].shape != v.shape]
    if bad or wrong:
        what = f"{len(bad)} keys differ, e.g. {bad[0]}" if bad else f"{len(wrong)} shapes differ, e.g. {wrong[0]}"
        origin = f"{CONFIG_NAME} beside it" if cfg_file.is_file() else "read from its shapes"
        raise PixforgeError(f"--prior-model {file} does not match the BigGAN-deep config ({origin}: {cfg.output_dim} "
                            f"px, width {cfg.channel_width}): {what}")
    model.load_state_dict(state, strict=True)
    return model
