"""The official TSIT checkpoints (EndlessSora/TSIT `latest_net_G.pth`, `latest_net_E.pth`) as pixforge-tsit models.

The official generator names its parts `content_stream.res_0..res_7`, `style_stream.res_*`, `fc`, `head_0`,
`G_middle_0`, `G_middle_1`, `up_0..up_3`, `conv_img` and uses torch's old `spectral_norm` (`weight_orig`, `weight_u`,
`weight_v`); the encoder `layer1..layer6` (spectral-norm conv, instance norm) and `fc_mu`, `fc_var`. Here they are
`content_stream.res.i`, `blocks.0..6` (coarse to fine, the same order) and `parametrizations.weight.original / 0._u
/ 0._v`; the layers compute the same functions, so the converted model gives the official outputs.

What the state dict cannot tell (the task, the label layout of a semantic-synthesis model, its training size, how the
official test.py runs it) comes from the options, checked against the tensor shapes where they can be. `convert`
writes a release folder that `translate` and `export` take as `--run`.

Labels as the official loader (`Pix2pixDataset.__getitem__`, `Pix2PixModel.preprocess_input`) feeds them: label id k
goes to channel k, and the id 255 to channel label_nc (the don't-care channel of `contain_dontcare_label`); here
`--num-classes K --dontcare 255`. ADE20K: the official `ADE20KDataset.postprocess` computes "id 0 -> label_nc, k ->
k - 1" into a local variable and returns nothing, so its models saw each id 0..150 on channel 0..150: here
`--num-classes 151` without --dontcare (its id 0, "unknown", is a class like the others; 255, which ADE20K's maps
never hold, is refused). `--dontcare` is therefore only 255 for official weights.

Inference mode: the official test.py calls `model.eval()` except for multi-modal synthesis (`--task mmis`) and the
photo2art style-transfer models, which it runs in train mode; `--inference train` (the default for mmis) reproduces
that (`pixforge.tsit.nets.for_inference`).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from pixforge.core.checkpoint import save_release, torch_file
from pixforge.export.errors import PixforgeError
from pixforge.export.images import parse_size
from pixforge.tsit.model import TASKS, build_encoder, build_generator, check_enc_size, make_arch
from pixforge.tsit.nets import INFERENCE

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


def read_state(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """A state dict of tensors, read weights-only (`pixforge.core.checkpoint.torch_file`)."""
    state = torch_file(path, what)
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise PixforgeError(f"{what} {path} does not hold a state dict of tensors (an official latest_net_G.pth or "
                            "latest_net_E.pth does)")
    return state


def official_arch(state: dict, source: Path, *, task: str | None, size, num_classes: int | None,
                  dontcare: int | None, instance: bool, enc_size: int, inference: str | None = None) -> dict:
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
    inference = inference or ("train" if task == "mmis" else "eval")
    if inference not in INFERENCE:
        raise PixforgeError(f"--inference must be one of {', '.join(INFERENCE)}, got {inference!r}")
    if task == "sis":
        if not isinstance(num_classes, int) or num_classes < 1:
            raise PixforgeError(f"{source} is a semantic-synthesis generator: give --num-classes (official label_nc; "
                                f"151 for ADE20K), got {num_classes!r}")
        if dontcare is not None and dontcare != 255:
            raise PixforgeError(f"--dontcare {dontcare}: the official loader maps only the id 255 to the don't-care "
                                "channel (contain_dontcare_label); an official ADE20K model saw each id 0..150 on "
                                "its own channel: give --num-classes 151 without --dontcare")
        expected = num_classes + (dontcare is not None) + bool(instance)
        if expected != channels:
            raise PixforgeError(f"{source} takes {channels} label channels but --num-classes {num_classes}"
                                f"{' --dontcare' if dontcare is not None else ''}{' --instance' if instance else ''}"
                                f" make {expected} (official semantic_nc = label_nc + contain_dontcare_label + "
                                "(not no_instance))")
    if vae:
        check_enc_size(enc_size)
    z_dim = fc.shape[1] if vae else 256
    arch = make_arch(task, ngf=ngf, levels=8, size=size, num_classes=num_classes, dontcare=dontcare,
                     instance=instance, vae=vae, z_dim=z_dim, enc_size=enc_size, inference=inference)
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


def convert(weights: str | Path, out: str | Path | None = None, encoder: str | Path | None = None,
            task: str | None = None, size=256, num_classes: int | None = None, dontcare: int | None = None,
            instance: bool = False, enc_size: int = 256, inference: str | None = None,
            overwrite: bool = False) -> Path:
    """Turn an official TSIT generator (EndlessSora/TSIT latest_net_G.pth; + --encoder latest_net_E.pth for a VAE
    model) into a release folder OUT that translate and export take as --run. The width and the kind of start
    come from the weights; --task (ast/mmis; sis when it has no style stream), --size HxW (the training size,
    which a VAE model's start map fixes) and, for semantic synthesis, the labels as the official loader feeds
    them: --num-classes (label_nc), --dontcare 255 (contain_dontcare_label: id 255 -> the extra channel),
    --instance (instance maps used); ADE20K: --num-classes 151 and no --dontcare (its official postprocess has
    no effect, so id k is channel k for 0..150). --inference train runs the model as the official test.py runs
    multi-modal (the default for --task mmis) and photo2art models, without model.eval(): each image normalised
    by its own statistics, spectral norms one power-iteration step on; eval (the default otherwise) uses the
    running statistics."""
    from pixforge.core.cli import output_dir

    if out is None:
        raise PixforgeError("--out is required: the release folder to write")
    weights = Path(weights)
    state = read_state(weights, "generator weights")
    arch = official_arch(state, weights, task=task, size=size, num_classes=num_classes, dontcare=dontcare,
                         instance=instance, enc_size=enc_size, inference=inference)
    generator = build_generator(arch)
    _load(generator, state, generator_key, weights)
    enc = build_encoder(arch)
    if enc is not None:
        if encoder is None:
            raise PixforgeError(f"{weights} starts from a VAE code: give the encoder with --encoder latest_net_E.pth")
        _load(enc, read_state(encoder, "encoder weights"), encoder_key, Path(encoder))
    elif encoder is not None:
        raise PixforgeError(f"{weights} has no VAE start (its fc is a convolution): --encoder is not used")
    root = output_dir(out, overwrite)
    save_release(root, generator, arch, name="generator")
    if enc is not None:
        save_release(root, enc, arch, name="encoder")
    return root
