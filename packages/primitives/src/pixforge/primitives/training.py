"""GAN pretraining on the synthesizers and low-shot finetuning (paper §4, official `pretrain/` and `finetune/`),
on core's StyleGAN2 trainer (`pixforge.core.stylegan2`).

* `SynthTrainingSet`: a synthesizer as a StyleGAN2 training set drawn on the fly. Training sample `i` (the global
  sample index the trainer asks for) is image `i` of the synthesizer's data set `seed`: every sample a new image,
  as the official `NoiseDataset` draws a fresh one per call, but reproducible (resume and several processes see
  exactly the images of one run) and the same pixels `generate --seed` writes.
* `pretrain`: core's `train` with the official pretraining defaults and every synthesizer as a `--data` name.
* `finetune`: core's `train` with the official finetuning defaults, initialised from a pretrained run
  (`--init`); the pretrained network's resolution and sizes (`--res`, `--cbase`, `--cmax`, `--map`) carry over.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixforge.core.stylegan2.train import init_file, train_verb
from pixforge.export.errors import PixforgeError
from pixforge.export.options import check_outside
from pixforge.primitives.models import NAMES, Synthesizer, get

LENGTH = 2**31 - 1  # nominal size: sample i is image i, so a run never repeats an image


class SynthTrainingSet(torch.utils.data.Dataset):
    """`model`'s images at `resolution` with `TrainingSet`'s interface: uint8 3 x R x R images, no labels.

    `self[i]` (any global sample index i >= 0) and `item(i)` are image `i % length` of data set `seed`; picklable
    (the synthesizer is a frozen dataclass), so DataLoader workers generate in parallel."""

    def __init__(self, model: Synthesizer, resolution: int, seed: int = 0, length: int = LENGTH):
        if not isinstance(resolution, int) or resolution < 1 or resolution & (resolution - 1):
            raise PixforgeError(f"--res must be a power of two for StyleGAN2, got {resolution!r}")
        model.check_size(resolution)
        if not isinstance(seed, int) or seed < 0:
            raise PixforgeError(f"--seed must be an int >= 0, got {seed!r}")
        self.model, self.seed, self.length, self._resolution = model, seed, int(length), resolution
        self.path = Path(model.name)  # what the run's description names

    @property
    def resolution(self) -> int:
        return self._resolution

    @property
    def num_channels(self) -> int:
        return 3

    @property
    def image_shape(self) -> list[int]:
        return [3, self._resolution, self._resolution]

    @property
    def label_dim(self) -> int:
        return 0

    @property
    def label_shape(self) -> list[int]:
        return [0]

    @property
    def has_labels(self) -> bool:
        return False

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = int(index)
        if index < 0:
            raise IndexError(f"training sample index must be >= 0, got {index}")
        return self.item(index % self.length)

    def item(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image `k` of data set `seed` (C x H x W uint8) and its empty label."""
        if not 0 <= k < self.length:
            raise IndexError(f"item {k} out of range [0, {self.length})")
        image = self.model.sample(self.seed, [int(k)], self._resolution, torch.device("cpu"))[0]
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), self.label(k)

    def label(self, k: int) -> torch.Tensor:  # noqa: ARG002 - the TrainingSet interface
        return torch.zeros([0], dtype=torch.float32)

    def random_labels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:  # noqa: ARG002
        return torch.zeros([n, 0], dtype=torch.float32)

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"SynthTrainingSet({self.model.name!r}, {self._resolution} px, seed {self.seed})"


def training_set(name: str, resolution: int, seed: int = 0) -> SynthTrainingSet:
    """The synthesizer `name` (official options) as a training set: what `--data NAME` trains on."""
    return SynthTrainingSet(get(name), resolution, seed)


DATASETS = {name: functools.partial(training_set, name) for name in NAMES}


# ---------------------------------------------------------------------------------------------------------------
# pretrain

# official pretrain/train.py + training_loop.py (D_reg_interval None: R1 every step, no lazy rescaling; the policy
# color,translation,cutout is core's default); official finetune/train.py + run_command.txt
PRETRAIN_DEFAULTS = {"cfg": "low_shot", "aug": "diffaug", "res": 256, "d_reg_interval": 0}
FINETUNE_DEFAULTS = {"cfg": "low_shot", "aug": "diffaug", "kimg": 400}
pretrain = train_verb(datasets_by_name=DATASETS, **PRETRAIN_DEFAULTS)
pretrain.__doc__ = (
    f"Pretrain StyleGAN2 on DATA: a synthesizer ({', '.join(NAMES)}; drawn on the fly, sample i = image i of "
    "--seed, as `generate` writes it) or an image folder / NVlabs zip, into a new run under OUT. Defaults = the "
    "official pretraining: --cfg low_shot (batch 16, lr 0.002, gamma 10, map 2, 300 kimg, snapshots every 10 "
    "ticks), --aug diffaug --policy color,translation,cutout, --res 256, --d-reg-interval 0 (R1 every step).\n\n"
    + (pretrain.__doc__ or ""))
_finetune = train_verb(**FINETUNE_DEFAULTS)


# ---------------------------------------------------------------------------------------------------------------
# finetune


def pretrained_generator(path: Path) -> dict[str, Any]:
    """The generator arguments of the checkpoint or `.pkl` at `path` (a PixforgeError when it has no G, D, G_ema)."""
    if path.suffix == ".pkl":
        from pixforge.core.stylegan2.convert import generator_kwargs, load_official_pickle

        records = load_official_pickle(path)
        missing = [n for n in ("G", "D", "G_ema") if n not in records]
        kwargs = None if missing else generator_kwargs(records["G_ema"]["init_kwargs"])
    else:
        from pixforge.core.checkpoint import read_checkpoint

        state = read_checkpoint(path)
        missing = [n for n in ("G", "D", "G_ema") if n not in state["models"]]
        kwargs = state.get("extra", {}).get("generator")
    if missing or not kwargs:
        raise PixforgeError(f"--run {path} is not a StyleGAN2 snapshot (no {', '.join(missing) or 'generator config'})")
    return kwargs


def finetune(*args: Any, **kwargs: Any) -> Path:
    bound = finetune.__signature__.bind(*args, **kwargs)
    bound.apply_defaults()
    options = dict(bound.arguments)
    run = options.pop("run")
    init = init_file(run, "--run")
    check_outside(options["out"], [run, init], "--out", holding=True)  # nor a run nested in the pretraining run
    g = pretrained_generator(init)
    synthesis = g.get("synthesis_kwargs", {})
    inherited = {"res": g["img_resolution"], "cbase": synthesis.get("channel_base", 32768),
                 "cmax": synthesis.get("channel_max", 512), "map": g.get("mapping_kwargs", {}).get("num_layers", 8)}
    for key, value in inherited.items():
        if options[key] is None:
            options[key] = value
        elif options[key] != value:
            raise PixforgeError(f"--{key} {options[key]} does not match the pretrained network ({value}): leave "
                                "it out to take the pretrained one")
    return _finetune(**options, init=str(init))


def _finetune_signature() -> inspect.Signature:
    sig = _finetune.__signature__
    run = inspect.Parameter("run", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sig.replace(parameters=[run, *(p for p in sig.parameters.values() if p.name != "init")])


finetune.__signature__ = _finetune_signature()
finetune.__doc__ = (
    "Finetune the StyleGAN2 of RUN (a pretraining run directory: its newest checkpoint; a checkpoint file; or an "
    "official .pkl) on the target DATA (image folder or NVlabs zip of square power-of-two images; `dataset` makes "
    "one) into a new run under OUT: G, D and G_ema start from RUN (core's --init); --res, --cbase, --cmax, --map "
    "default to the pretrained network's. Defaults = the official finetuning (finetune/train.py, run_command.txt): "
    "--cfg low_shot, --kimg 400, --aug diffaug --policy color,translation,cutout, --freeze-d 0 (Freeze-D: the first "
    "N layers of D, fromrgb included, kept fixed).\n\n" + (_finetune.__doc__ or ""))
