"""BigGAN as a PetsGAN external prior: `--prior biggan --prior-model FILE`, the official recipe (DGP inversion,
`BigGAN/inversion.py`, then latent jitter, `BigGAN/RunJitter.py`) on either of two key layouts, told apart by the
state dict's keys:

    official       BigGAN-PyTorch / DGP (`biggan_official.py`): `G_ema_128.pth` (or `G_ema_256.pth`), with its
                   discriminator `D_128.pth` found beside it by the official name; D's features enter the inversion
                   loss and rank the candidates (DGP's "ftr" loss). Without D: MSE only, said in one stderr line.
    deep           huggingface `pytorch_pretrained_biggan` BigGAN-deep (`biggan_deep.py`): `pytorch_model.bin` /
                   `.safetensors` / their folder; no discriminator exists for it, so MSE only.
    prior          the image, centre-cropped to a square at G's resolution; the best of 500 z ~ N(0, 0.3^2) (by D's
                   feature loss, else MSE); z and G fine-tuned by Adam in three stages (125 / 125 / 100 steps, z lr
                   0.1 / 0.01 / 2e-4, G lr 2e-7 / 2e-5 / 2e-6) on MSE + D-feature L1 (last 5 features) + 0.02
                   mean(z^2 / 2); then 100 samples G(z* + s n) for each s in 0.1 ... 0.5.

Weights come only from a user's file (never downloaded). The README lists the deviations from the official code.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pixforge.export.errors import PixforgeError
from pixforge.singleimage.biggan_deep import WEIGHTS_NAME, load_deep
from pixforge.singleimage.biggan_official import Discriminator, Generator, load_official
from pixforge.singleimage.data import resize

OFFICIAL_NAMES = ("G_ema_128.pth", "G_ema_256.pth", "G_ema.pth")  # utils.py:91-125 ('G_ema' + '_' + load_weights)
FOLDER_NAMES = (*OFFICIAL_NAMES, WEIGHTS_NAME, "model.safetensors")


# ----------------------------------------------------------------------------------------------------------------
# Loading a user's file: which layout, and the official discriminator beside the generator.

def _resolve(src: str) -> Path:
    if src.startswith(("http://", "https://")):
        raise PixforgeError(f"--prior-model {src}: BigGAN weights are read from a local file (nothing is downloaded)")
    file = Path(src).expanduser()
    if file.is_dir():
        found = [file / name for name in FOLDER_NAMES if (file / name).is_file()]
        if not found:
            raise PixforgeError(f"--prior-model {src}: the folder holds none of {', '.join(FOLDER_NAMES)}")
        file = found[0]
    if not file.is_file():
        raise PixforgeError(f"--prior-model {src} does not exist or is not a file")
    return file


def _read(file: Path) -> dict[str, torch.Tensor]:
    from pixforge.core.nets.inception import load_weights

    try:
        return load_weights(file)
    except PixforgeError as err:
        raise PixforgeError(f"--prior-model: {err}") from None


def layout(state: dict[str, torch.Tensor], file: Path | str = "") -> str:
    """"official" (BigGAN-PyTorch G: shared.weight, linear.u0, blocks.*), "deep" (pytorch_pretrained_biggan:
    embeddings.weight, generator.bn.running_means), else one PixforgeError line."""
    if {"shared.weight", "linear.weight", "linear.u0"} <= set(state) and any(k.startswith("blocks.") for k in state):
        return "official"
    if {"embeddings.weight", "generator.bn.running_means"} <= set(state):
        return "deep"
    if {"embed.weight", "linear.u0"} <= set(state):
        raise PixforgeError(f"--prior-model {file} is a BigGAN-PyTorch discriminator: pass the generator "
                            f"(G_ema_128.pth); its D_128.pth is found beside it")
    raise PixforgeError(f"--prior-model {file} is neither a BigGAN-PyTorch / DGP generator (G_ema_128.pth: "
                        f"shared.weight, linear.u0, blocks.*) nor a pytorch_pretrained_biggan BigGAN-deep "
                        f"(embeddings.weight, generator.bn.running_means)")


def discriminator_path(g_file: Path, resolution: int) -> Path | None:
    """The official D beside G: `G_ema_128.pth` / `G_128.pth` -> `D_128.pth` (utils.py:111-117), else
    `D_{resolution}.pth`; None when neither exists."""
    match = re.fullmatch(r"G(?:_ema)?(_.+)?\.pth", g_file.name)
    names = ([f"D{match.group(1) or ''}.pth"] if match else []) + [f"D_{resolution}.pth"]
    return next((g_file.parent / n for n in names if (g_file.parent / n).is_file()), None)


def load_prior(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, Discriminator | None,
                                                                                Path | None]:
    """(G, D or None, D's file) from a user's file or folder, either layout; G in eval mode, D (official layout, when
    beside G) left in train mode as the official code leaves it, both frozen. PixforgeError (one line) on bad input."""
    file = _resolve(str(path))
    state = _read(file)
    D = d_file = None
    if layout(state, file) == "deep":
        G = load_deep(file, state)
    else:
        G = load_official(file, state, "G")
        d_file = discriminator_path(file, G.resolution)
        if d_file is not None:
            try:
                D = load_official(d_file, _read(d_file), "D")
            except PixforgeError as err:
                raise PixforgeError(f"{err} (the discriminator beside {file.name})") from None
            if D.config.resolution != G.resolution or D.config.n_classes != G.num_classes:
                raise PixforgeError(f"--prior-model: {d_file} ({D.config.resolution} px, {D.config.n_classes} "
                                    f"classes) does not go with {file.name} ({G.resolution} px)")
            D = D.to(device).train().requires_grad_(False)
    return G.to(device).eval().requires_grad_(False), D, d_file


def load_biggan(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """The generator alone (either layout)."""
    return load_prior(path, device)[0]


# ----------------------------------------------------------------------------------------------------------------
# The external prior: DGP inversion and latent jitter, shared by both layouts (G.synthesize(z, class indices)).

CANDIDATES = 500  # RunJitter.py:35: IG.select_z(num_z=500)
Z_INIT_STD = 0.3  # inversion.py:119-120 random_z: z.normal_(0, 0.3)
STAGES = ((125, 0.1, 2e-7), (125, 0.01, 2e-5), (100, 2e-4, 2e-6))  # RunJitter.py:26-27 iterations, z_lrs, G_lrs
LAMBDA_MSE, LAMBDA_D, LAMBDA_LK = 1.0, 1.0, 0.02  # RunJitter.py:26; the likelihood is mean(z^2 / 2) (inversion.py:161)
FTR_NUM = 5  # RunJitter.py:25 ftr_num [5, 5, 5]: D's last 5 features (Utils/loss.py:6-14 with ftr_num[0])
JITTER_STDS = (0.1, 0.2, 0.3, 0.4, 0.5)  # main.py:359-360: RunJitter(stds=[0.1, ..., 0.5], num_sample=100)


def center_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """The centre square of `image` (side: its shorter side) resized to size x size (official preprocessor:
    CenterCropLongEdge, Resize)."""
    h, w = image.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return resize(image[..., top:top + s, left:left + s], (size, size))


def one_hot(index: torch.Tensor, classes: int) -> torch.Tensor:
    return F.one_hot(index.long(), classes).float()


def feature_loss(D: Discriminator, target: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                 per_sample: bool = False) -> torch.Tensor:
    """DGP's DiscriminatoryLoss (Utils/loss.py:6-14): the sum over D's last FTR_NUM features of L1(D(x), D(target)),
    the target's features under no_grad; `per_sample`: one value per row of x (the candidates' ranking)."""
    with torch.no_grad():
        _, real = D(target, y[:1])
    _, fake = D(x, y)
    if per_sample:
        return sum((f - r).abs().flatten(1).mean(1) for f, r in zip(fake[-FTR_NUM:], real[-FTR_NUM:], strict=True))
    return sum(F.l1_loss(f, r.expand_as(f)) for f, r in zip(fake[-FTR_NUM:], real[-FTR_NUM:], strict=True))


def select_start(G: nn.Module, target: torch.Tensor, count: int, seed: int, D: Discriminator | None = None,
                 chunk: int = 25) -> tuple[torch.Tensor, torch.Tensor]:
    """The candidate of `count` z ~ N(0, 0.3^2) whose synthesis is nearest `target`: by D's feature loss (official
    criterion, inversion.py:122-139) or, without D, MSE. Classes: one random class for all (official, G.one_class) or
    one per candidate (BigGAN-deep). Returns (z 1 x z_dim, class index of shape 1)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(count, G.z_dim, generator=gen) * Z_INIT_STD
    cls = torch.randint(0, G.num_classes, (1 if G.one_class else count,), generator=gen).expand(count)
    dev = target.device
    losses = []
    with torch.no_grad():
        for first in range(0, count, chunk):
            zz, cc = z[first:first + chunk].to(dev), cls[first:first + chunk].to(dev)
            x = G.synthesize(zz, cc)
            crit = feature_loss(D, target, x, cc, True) if D is not None else (x - target).pow(2).flatten(1).mean(1)
            losses.append(crit.cpu())
    best = int(torch.cat(losses).argmin())
    return z[best:best + 1].to(dev), cls[best:best + 1].to(dev)


def inversion_loss(G: nn.Module, z: torch.Tensor, y: torch.Tensor, target: torch.Tensor,
                   D: Discriminator | None = None) -> torch.Tensor:
    """lambda_MSE MSE + lambda_D DiscriminatoryLoss (with D) + lambda_LK mean(z^2 / 2) (inversion.py:160-176)."""
    x = G.synthesize(z, y)
    loss = LAMBDA_MSE * F.mse_loss(x, target) + LAMBDA_LK * (z.pow(2) / 2).mean()
    return loss if D is None else loss + LAMBDA_D * feature_loss(D, target, x, y)


def invert(G: nn.Module, target: torch.Tensor, z0: torch.Tensor, y: torch.Tensor, stages=STAGES,
           finetune: bool = True, D: Discriminator | None = None) -> tuple[torch.Tensor, list[float]]:
    """DGP: Adam on z (betas 0.9, 0.999) and, with `finetune`, on all of G's weights (kept in eval mode: stored
    batch-norm statistics and spectral-norm vectors), the learning rates set per stage (inversion.py:141-145,
    189-213). G is changed in place. Returns (z*, the loss of every step)."""
    z = z0.clone().requires_grad_(True)
    params = list(G.parameters())
    G.eval().requires_grad_(finetune)
    opt_z = torch.optim.Adam([z], lr=stages[0][1], betas=(0.9, 0.999))
    opt_g = torch.optim.Adam(params, lr=stages[0][2], betas=(0.9, 0.999)) if finetune else None
    history = []
    for steps, z_lr, g_lr in stages:
        opt_z.param_groups[0]["lr"] = z_lr
        if opt_g is not None:
            opt_g.param_groups[0]["lr"] = g_lr
        for _ in range(steps):
            opt_z.zero_grad(set_to_none=True)
            if opt_g is not None:
                opt_g.zero_grad(set_to_none=True)
            loss = inversion_loss(G, z, y, target, D)
            loss.backward()
            opt_z.step()
            if opt_g is not None:
                opt_g.step()
            history.append(float(loss.detach()))
    G.requires_grad_(False)
    return z.detach(), history


def jitter(G: nn.Module, z: torch.Tensor, y: torch.Tensor, count: int, size: tuple[int, int], seed: int,
           chunk: int = 25) -> torch.Tensor:
    """`count` samples G(z* + s n), n ~ N(0, I), s cycling through JITTER_STDS (official: 100 per std,
    inversion.py:250-268), resized to `size`; count x 3 x h x w in [-1, 1]."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        for first in range(0, count, chunk):
            n = min(chunk, count - first)
            std = torch.tensor([JITTER_STDS[i * len(JITTER_STDS) // count] for i in range(first, first + n)])
            zz = z + (std[:, None] * torch.randn(n, z.shape[1], generator=gen)).to(z.device)
            out.append(resize(G.synthesize(zz, y.expand(n)), size).clamp(-1, 1))
    return torch.cat(out)


def biggan_prior(path: str, image: torch.Tensor, count: int, size: tuple[int, int], seed: int, dev: torch.device,
                 candidates: int | None = None, stages=None) -> torch.Tensor:
    """The external-prior data set: `image` (1 x 3 x H x W in [-1, 1]) inverted into the BigGAN at `path` (with its
    D when the official layout has one beside it), then `count` jittered samples at `size`; `candidates` / `stages`
    default to the official CANDIDATES / STAGES."""
    G, D, _ = load_prior(path, dev)
    if isinstance(G, Generator) and D is None:
        print(f"note: no D_{G.resolution}.pth beside {Path(path).name}: BigGAN inversion without the discriminator "
              f"feature loss (MSE + z term only; candidates ranked by MSE)", file=sys.stderr)
    target = center_square(image.to(dev), G.resolution)
    z0, y = select_start(G, target, CANDIDATES if candidates is None else candidates, seed, D)
    z, _ = invert(G, target, z0, y, STAGES if stages is None else stages, D=D)
    return jitter(G, z, y, count, size, seed + 1)
