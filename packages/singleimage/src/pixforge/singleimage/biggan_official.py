"""The official PetsGAN prior network: BigGAN-PyTorch's BigGAN as DGP / PetsGAN build it (`BigGAN/models/biggan.py`,
`BigGAN/models/layers.py` of zhangzc21/PetsGAN), in its key layout, so that `G_ema_128.pth` and `D_128.pth` load
strictly. The primary layout `--prior biggan` accepts (`biggan.py` detects it).

    G   z (120) split in 6 chunks of 20 (hierarchical: one to the linear, one per block, each concatenated with the
        shared class embedding, 128); spectral-normed linear to 16ch x 4 x 4 (NCHW); 5 up-sampling GBlocks
        (cond BN, ReLU, nearest x2, conv3x3, cond BN, ReLU, conv3x3; 1x1 conv shortcut) with attention after the
        64 px block; BN, ReLU, conv3x3 to RGB, tanh. ch 96. Used in eval mode: stored BN statistics, and every
        spectral norm runs one power iteration from its stored u0 without storing it back.
    D   6 DBlocks (wide, pre-activated after the first, average-pool x2 in the first five) with attention after the
        64 px block; ReLU, global sum pooling, a linear plus the class projection. Its block outputs and the pooled
        vector are the features of DGP's discriminator loss. Kept in train mode, as the official code leaves it: its
        spectral norms store their power iteration (no batch norm in D).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixforge.export.errors import PixforgeError

BN_EPS, SN_EPS = 1e-5, 1e-6  # RunJitter.py:23 (BN_eps, SN_eps), arguments128.py:160-163
# channel multiples (in, out) per block and the resolution each block outputs (BigGAN/models/biggan.py:15-63, 329-367)
G_ARCH = {64: ((16, 16, 8, 4), (16, 8, 4, 2)), 128: ((16, 16, 8, 4, 2), (16, 8, 4, 2, 1)),
          256: ((16, 16, 8, 8, 4, 2), (16, 8, 8, 4, 2, 1))}
D_ARCH = {64: ((1, 2, 4, 8), (1, 2, 4, 8, 16)), 128: ((1, 2, 4, 8, 16), (1, 2, 4, 8, 16, 16)),
          256: ((1, 2, 4, 8, 8, 16), (1, 2, 4, 8, 8, 16, 16))}  # D's first block takes RGB (3 channels)
IGNORED = re.compile(r"blocks\.\d+\.0\.in[12]\.(weight|bias)$")  # DGP's instance-norm extras (use_in; unused)


@dataclass(frozen=True)
class GConfig:
    """The Generator arguments of RunJitter.py:15-28 (defaults: the official 128 px model)."""

    resolution: int = 128
    ch: int = 96
    dim_z: int = 120
    shared_dim: int = 128
    hier: bool = True
    n_classes: int = 1000
    attn: str = "64"


@dataclass(frozen=True)
class DConfig:
    resolution: int = 128
    ch: int = 96
    wide: bool = True
    n_classes: int = 1000
    attn: str = "64"


class SN:
    """BigGAN-PyTorch's spectral norm (layers.py:23-97, one singular value): buffers u0 (1 x out) and sv0; every
    forward runs one power iteration from u0 (v = u W, u = v W^T, normalized) under no_grad, and divides the weight by
    v W^T u^T (differentiable in W); only in train mode are u0 and sv0 stored back."""

    def _sn_init(self, eps: float) -> None:
        self.sn_eps = eps
        self.register_buffer("u0", torch.randn(1, self.weight.shape[0]))
        self.register_buffer("sv0", torch.ones(1))

    def W_(self) -> torch.Tensor:
        w = self.weight.view(self.weight.shape[0], -1)
        with torch.no_grad():
            v = F.normalize(self.u0 @ w, eps=self.sn_eps)
            u = F.normalize(v @ w.t(), eps=self.sn_eps)
            if self.training:
                self.u0[:] = u
        sv = torch.squeeze(v @ w.t() @ u.t())
        if self.training:
            with torch.no_grad():
                self.sv0[:] = sv
        return self.weight / sv


class SNConv2d(nn.Conv2d, SN):
    def __init__(self, cin: int, cout: int, kernel_size: int = 3, padding: int = 1, bias: bool = True):
        nn.Conv2d.__init__(self, cin, cout, kernel_size, padding=padding, bias=bias)
        self._sn_init(SN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.W_(), self.bias, self.stride, self.padding)


class SNLinear(nn.Linear, SN):
    def __init__(self, cin: int, cout: int, bias: bool = True):
        nn.Linear.__init__(self, cin, cout, bias)
        self._sn_init(SN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.W_(), self.bias)


class SNEmbedding(nn.Embedding, SN):
    def __init__(self, n: int, dim: int):
        nn.Embedding.__init__(self, n, dim)
        self._sn_init(SN_EPS)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return F.embedding(y, self.W_())


class Attention(nn.Module):
    """SA-GAN attention as layers.py:163-192: theta (C/8), phi and g max-pooled x2 (C/8, C/2), o; x + gamma o."""

    def __init__(self, ch: int):
        super().__init__()
        self.theta, self.phi = SNConv2d(ch, ch // 8, 1, 0, False), SNConv2d(ch, ch // 8, 1, 0, False)
        self.g, self.o = SNConv2d(ch, ch // 2, 1, 0, False), SNConv2d(ch // 2, ch, 1, 0, False)
        self.gamma = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        n, c, h, w = x.shape
        theta = self.theta(x).view(n, c // 8, h * w)
        phi = F.max_pool2d(self.phi(x), 2).view(n, c // 8, h * w // 4)
        g = F.max_pool2d(self.g(x), 2).view(n, c // 2, h * w // 4)
        beta = F.softmax(theta.transpose(1, 2) @ phi, -1)
        return self.gamma * self.o((g @ beta.transpose(1, 2)).view(n, c // 2, h, w)) + x


class CCBN(nn.Module):
    """Class-conditional BN (layers.py:287-346): F.batch_norm on stored_mean / stored_var (train mode: batch
    statistics), then x (1 + gain(y)) + bias(y), gain and bias spectral-normed linears without bias."""

    def __init__(self, channels: int, cond: int):
        super().__init__()
        self.gain, self.bias = SNLinear(cond, channels, bias=False), SNLinear(cond, channels, bias=False)
        self.register_buffer("stored_mean", torch.zeros(channels))
        self.register_buffer("stored_var", torch.ones(channels))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = F.batch_norm(x, self.stored_mean, self.stored_var, None, None, self.training, 0.1, BN_EPS)
        return out * (1 + self.gain(y))[..., None, None] + self.bias(y)[..., None, None]


class BN(nn.Module):
    """The output layer's unconditional BN (layers.py:355-391): parameters gain / bias, buffers stored_mean / var."""

    def __init__(self, channels: int):
        super().__init__()
        self.gain, self.bias = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels))
        self.register_buffer("stored_mean", torch.zeros(channels))
        self.register_buffer("stored_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.stored_mean, self.stored_var, self.gain, self.bias, self.training, 0.1, BN_EPS)


class GBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cond: int):
        super().__init__()
        self.conv1, self.conv2, self.conv_sc = SNConv2d(cin, cout), SNConv2d(cout, cout), SNConv2d(cin, cout, 1, 0)
        self.bn1, self.bn2 = CCBN(cin, cond), CCBN(cout, cond)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # layers.py:448-475 (use_in False)
        h = F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2)
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + self.conv_sc(F.interpolate(x, scale_factor=2))


def _attn_at(attn: str) -> set[int]:
    return {int(r) for r in attn.split("_") if r}


class Generator(nn.Module):
    """G(z, shared(y)) -> N x 3 x R x R in [-1, 1] (biggan.py:66-325); state_dict keys as G_ema_128.pth."""

    one_class = True  # the official candidates share one random class (inversion.py:126-127)

    def __init__(self, cfg: GConfig = GConfig()):
        super().__init__()
        if cfg.resolution not in G_ARCH:
            raise PixforgeError(f"BigGAN-PyTorch G: resolution {cfg.resolution} is not one of {sorted(G_ARCH)}")
        self.config = cfg
        cin, cout = G_ARCH[cfg.resolution]
        slots = len(cin) + 1 if cfg.hier else 1
        self.chunk = cfg.dim_z // slots  # biggan.py:142-147: dim_z rounded down to a multiple of the slots
        self.z_dim = self.chunk * slots
        cond = cfg.shared_dim + (self.chunk if cfg.hier else 0)
        self.shared = nn.Embedding(cfg.n_classes, cfg.shared_dim)
        self.linear = SNLinear(self.chunk if cfg.hier else self.z_dim, cin[0] * cfg.ch * 16)
        at = _attn_at(cfg.attn)
        self.blocks = nn.ModuleList(
            nn.ModuleList([GBlock(a * cfg.ch, b * cfg.ch, cond)] + ([Attention(b * cfg.ch)] if 8 << i in at else []))
            for i, (a, b) in enumerate(zip(cin, cout, strict=True)))
        self.output_layer = nn.Sequential(BN(cout[-1] * cfg.ch), nn.ReLU(), SNConv2d(cout[-1] * cfg.ch, 3))

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def num_classes(self) -> int:
        return self.config.n_classes

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.config.hier:
            zs = torch.split(z, self.chunk, 1)
            z, ys = zs[0], [torch.cat([y, item], 1) for item in zs[1:]]
        else:
            ys = [y] * len(self.blocks)
        h = self.linear(z).view(z.shape[0], -1, 4, 4)
        for blocklist, yy in zip(self.blocks, ys, strict=True):
            h = blocklist[0](h, yy)
            for block in blocklist[1:]:
                h = block(h)
        return torch.tanh(self.output_layer(h))

    def synthesize(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The prior's call, as inversion.py:178-179: G(z, G.shared(y))."""
        return self(z, self.shared(labels.long()))


class DBlock(nn.Module):
    def __init__(self, cin: int, cout: int, hidden: int, preact: bool, down: bool):
        super().__init__()
        self.preact, self.down = preact, down
        self.conv1, self.conv2 = SNConv2d(cin, hidden), SNConv2d(hidden, cout)
        if cin != cout or down:
            self.conv_sc = SNConv2d(cin, cout, 1, 0)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:  # layers.py:507-518
        sc = getattr(self, "conv_sc", None)
        if self.preact:
            x = sc(x) if sc is not None else x
            return F.avg_pool2d(x, 2) if self.down else x
        x = F.avg_pool2d(x, 2) if self.down else x
        return sc(x) if sc is not None else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # layers.py:520-533
        h = self.conv2(F.relu(self.conv1(F.relu(x) if self.preact else x)))
        return (F.avg_pool2d(h, 2) if self.down else h) + self.shortcut(x)


class Discriminator(nn.Module):
    """D(x, y) -> (score, features): features are every block's output (attention included) and the pooled vector,
    the list `DiscriminatoryLoss` (Utils/loss.py:6-14) takes its last ftr_num from (biggan.py:370-529)."""

    def __init__(self, cfg: DConfig = DConfig()):
        super().__init__()
        if cfg.resolution not in D_ARCH:
            raise PixforgeError(f"BigGAN-PyTorch D: resolution {cfg.resolution} is not one of {sorted(D_ARCH)}")
        self.config = cfg
        cin, cout = D_ARCH[cfg.resolution]
        cin, cout = [3] + [c * cfg.ch for c in cin], [c * cfg.ch for c in cout]
        at, res = _attn_at(cfg.attn), cfg.resolution
        blocks = []
        for i, (a, b) in enumerate(zip(cin, cout, strict=True)):
            down = i < len(cout) - 1
            res = res // 2 if down else res
            blocks.append(nn.ModuleList([DBlock(a, b, b if cfg.wide else a, i > 0, down)]
                                        + ([Attention(b)] if res in at else [])))
        self.blocks = nn.ModuleList(blocks)
        self.linear = SNLinear(cout[-1], 1)
        self.embed = SNEmbedding(cfg.n_classes, cout[-1])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h, feats = x, []
        for blocklist in self.blocks:
            for block in blocklist:
                h = block(h)
                feats.append(h)
        h = torch.sum(F.relu(h), [2, 3])
        feats.append(h)
        return self.linear(h) + torch.sum(self.embed(y) * h, 1, keepdim=True), feats


@torch.no_grad()
def settle(model: nn.Module, iterations: int = 20) -> nn.Module:
    """Power iterations on every u0 (fresh models start them random; a loaded file's u0 replace these)."""
    for module in model.modules():
        if isinstance(module, SN):
            w = module.weight.view(module.weight.shape[0], -1)
            for _ in range(iterations):
                module.u0.copy_(F.normalize(F.normalize(module.u0 @ w, eps=SN_EPS) @ w.t(), eps=SN_EPS))
    return model


def _blocks(state: dict[str, torch.Tensor]) -> list[int]:
    return sorted({int(k.split(".")[1]) for k in state if k.startswith("blocks.")})


def _attn(state: dict[str, torch.Tensor], res_of) -> str:
    return "_".join(str(res_of(i)) for i in _blocks(state) if f"blocks.{i}.1.gamma" in state)


def g_config(state: dict[str, torch.Tensor]) -> GConfig:
    """The config a G state dict was built with, read from its shapes (KeyError / IndexError when it is not one)."""
    n, (classes, shared) = len(_blocks(state)), state["shared.weight"].shape
    chunk, cond = state["linear.weight"].shape[1], state["blocks.0.0.bn1.gain.weight"].shape[1]
    hier = cond != shared
    return GConfig(resolution=8 << (n - 1), ch=state["linear.weight"].shape[0] // (16 * 16), shared_dim=shared,
                   dim_z=chunk * (n + 1) if hier else chunk, hier=hier, n_classes=classes,
                   attn=_attn(state, lambda i: 8 << i))


def d_config(state: dict[str, torch.Tensor]) -> DConfig:
    n, ch = len(_blocks(state)), state["blocks.0.0.conv2.weight"].shape[0]
    res = 4 << (n - 1)
    return DConfig(resolution=res, ch=ch, wide=state["blocks.0.0.conv1.weight"].shape[0] == ch,
                   n_classes=state["embed.weight"].shape[0], attn=_attn(state, lambda i: max(res >> (i + 1), 4)))


def load_official(file, state: dict[str, torch.Tensor], what: str = "G") -> nn.Module:
    """G (or D) of `state`, config read from its shapes, loaded strictly (DGP's unused in1 / in2 keys dropped)."""
    state = {k: v for k, v in state.items() if not IGNORED.search(k)}
    try:
        model = Generator(g_config(state)) if what == "G" else Discriminator(d_config(state))
    except (KeyError, IndexError, ValueError, ZeroDivisionError) as err:
        raise PixforgeError(f"--prior-model: {file} is not a BigGAN-PyTorch {what} state dict (no {err})") from None
    own = model.state_dict()
    bad = sorted(set(own) ^ set(state))
    wrong = [k for k, v in own.items() if k in state and state[k].shape != v.shape]
    if bad or wrong:
        what_ = f"{len(bad)} keys differ, e.g. {bad[0]}" if bad else f"{len(wrong)} shapes differ, e.g. {wrong[0]}"
        raise PixforgeError(f"--prior-model: {file} does not match a BigGAN-PyTorch {what} "
                            f"({model.config.resolution} px, ch {model.config.ch}): {what_}")
    model.load_state_dict(state, strict=True)
    return model
