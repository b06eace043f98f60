"""The official TSIT checkpoints (EndlessSora/TSIT `latest_net_G.pth`, `latest_net_E.pth`) as pixforge-tsit models.

The official generator names its parts `content_stream.res_0..res_7`, `style_stream.res_*`, `fc`, `head_0`,
`G_middle_0`, `G_middle_1`, `up_0..up_3`, `conv_img` and uses torch's old `spectral_norm` (`weight_orig`, `weight_u`,
`weight_v`); the encoder `layer1..layer6` (spectral-norm conv, instance norm) and `fc_mu`, `fc_var`. Here they are
`content_stream.res.i`, `blocks.0..6` (coarse to fine, the same order) and `parametrizations.weight.original / 0._u
/ 0._v`; the layers compute the same functions, so the converted model gives the official outputs.

What the state dict cannot tell (the task, the label layout of a semantic-synthesis model, its training size) comes
from the options, checked against the tensor shapes. `convert` writes a release folder that `translate` and `export`
take as `--run`.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from pixforge.core.checkpoint import save_release
from pixforge.export.errors import PixforgeError
from pixforge.export.images import parse_size
from pixforge.tsit.model import TASKS, build_encoder, build_generator, make_arch

BLOCKS = ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3")
SPECTRAL = {"weight_orig": "parametrizations.weight.original", "weight_u": "parametrizations.weight.0._u",
            "weight_v": "parametrizations.weight.0._v"}


def _spectral(key: str) -> str:
    head, _, leaf = key.rpartition(".")
    return f"{head}.{SPECTRAL[leaf]}" if leaf in SPECTRAL else key


def generator_key(key: str) -> str:
    """An official generator state-dict key -> this package's key."""
    key = re.sub(r"^(content_stream|style_stream)\.res_(\d+)\.", r"\1.res.\2.", key)
    first = key.split(".", 1)
    if first[0] in BLOCKS:
        key = f"blocks.{BLOCKS.index(first[0])}.{first[1]}"
    return _spectral(key)


def encoder_key(key: str) -> str:
    """An official encoder key (`layer3.0.weight_orig`) -> this package's (`layers.2.0.parametrizations...`)."""
    key = re.sub(r"^layer(\d+)\.", lambda m: f"layers.{int(m.group(1)) - 1}.", key)
    return _spectral(key)


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise PixforgeError(f"{path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and weights-only errors all mean "not a plain state dict"
        raise PixforgeError(f"{path} is not a readable PyTorch state dict ({err.__class__.__name__}: "
                            f"{str(err).splitlines()[0][:160]})") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise PixforgeError(f"{path} does not hold a state dict of tensors (an official latest_net_G.pth does)")
    return state


def official_arch(state: dict, source: Path, *, task: str | None, size, num_classes: int | None,
                  dontcare: int | None, instance: bool, enc_size: int) -> dict:
    """The architecture record of an official generator, from its shapes and the options (checked against them)."""
    try:
        first = state["content_stream.res_0.conv_0.weight_orig"]
        ngf = state["content_stream.res_0.conv_1.weight_orig"].shape[0]
        fc = state["fc.weight"]
    except KeyError as err:
        raise PixforgeError(f"{source} is not an official TSIT generator (no {err.args[0]!r}); give latest_net_G.pth"
                            ) from None
    channels, style_stream, vae = first.shape[1], any(k.startswith("style_stream.") for k in state), fc.ndim == 2
    task = task or ("ast" if style_stream else "sis")
    if task not in TASKS or (task == "sis") == style_stream:
        raise PixforgeError(f"{source}: --task {task} does not fit a generator "
                            f"{'with' if style_stream else 'without'} a style stream (sis has none)")
    size = parse_size(size)
    if task == "sis":
        if num_classes is None:
            raise PixforgeError(f"{source} is a semantic-synthesis generator: give --num-classes (official label_nc)")
        expected = num_classes + (dontcare is not None) + bool(instance)
        if expected != channels:
            raise PixforgeError(f"{source} takes {channels} label channels but --num-classes {num_classes}"
                                f"{' --dontcare' if dontcare is not None else ''}{' --instance' if instance else ''}"
                                f" make {expected} (official semantic_nc = label_nc + contain_dontcare_label + "
                                "(not no_instance))")
    z_dim = fc.shape[1] if vae else 256
    arch = make_arch(task, ngf=ngf, levels=8, size=size, num_classes=num_classes, dontcare=dontcare,
                     instance=instance, vae=vae, z_dim=z_dim, enc_size=enc_size)
    if vae and fc.shape[0] != 16 * ngf * arch["latent_hw"][0] * arch["latent_hw"][1]:
        raise PixforgeError(f"{source}: its VAE start map has {fc.shape[0] // (16 * ngf)} cells, --size "
                            f"{size[0]}x{size[1]} gives {arch['latent_hw'][0]}x{arch['latent_hw'][1]}: give the "
                            "training size (official crop_size / aspect_ratio x crop_size)")
    return arch


def _load(module: torch.nn.Module, state: dict, rename, source: Path) -> None:
    mapped = {rename(k): v for k, v in state.items()}
    ours = module.state_dict()
    missing, unexpected = sorted(set(ours) - set(mapped)), sorted(set(mapped) - set(ours))
    wrong = [k for k in ours if k in mapped and mapped[k].shape != ours[k].shape]
    if missing or unexpected or wrong:
        what = (f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}" if unexpected else
                f"{wrong[0]} has shape {list(mapped[wrong[0]].shape)}, expected {list(ours[wrong[0]].shape)}")
        raise PixforgeError(f"{source} does not match the official TSIT layout ({what}; {len(missing)} missing, "
                            f"{len(unexpected)} unexpected, {len(wrong)} mis-shaped keys)")
    module.load_state_dict(mapped)


def convert(weights: str | Path, out: str | Path, *, encoder: str | Path | None = None, task: str | None = None,
            size=256, num_classes: int | None = None, dontcare: int | None = None, instance: bool = False,
            enc_size: int = 256, overwrite: bool = False) -> Path:
    """Official latest_net_G.pth (+ latest_net_E.pth for a VAE model) -> a pixforge-tsit release folder OUT."""
    from pixforge.core.cli import output_dir

    weights = Path(weights)
    state = read_state(weights)
    arch = official_arch(state, weights, task=task, size=size, num_classes=num_classes, dontcare=dontcare,
                         instance=instance, enc_size=enc_size)
    generator = build_generator(arch)
    _load(generator, state, generator_key, weights)
    enc = build_encoder(arch)
    if enc is not None:
        if encoder is None:
            raise PixforgeError(f"{weights} starts from a VAE code: give the encoder with --encoder latest_net_E.pth")
        _load(enc, read_state(encoder), encoder_key, Path(encoder))
    elif encoder is not None:
        raise PixforgeError(f"{weights} has no VAE start (its fc is a convolution): --encoder is not used")
    root = output_dir(out, overwrite)
    save_release(root, generator, arch, name="generator")
    if enc is not None:
        save_release(root, enc, arch, name="encoder")
    return root
