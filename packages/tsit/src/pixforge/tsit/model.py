"""A trained TSIT model: its architecture record, building it, and loading it back from a run, checkpoint or release.

The architecture record (`arch`) is a small JSON-able dict stored in every checkpoint's config and beside the
release weights, tagged with `tool: "pixforge-tsit"` so that a checkpoint of another tool is refused clearly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pixforge.core.checkpoint import Checkpoints, load_release, read_checkpoint
from pixforge.core.rundir import RunDir
from pixforge.export.errors import PixforgeError
from pixforge.tsit.nets import INFERENCE, ConvEncoder, TSITGenerator

TOOL = "pixforge-tsit"
ARCH_FORMAT = 1
TASKS = ("ast", "sis", "mmis")


def make_arch(task: str, *, ngf: int, levels: int, size: tuple[int, int], num_classes: int | None = None,
              dontcare: int | None = None, instance: bool = False, vae: bool = False, z_dim: int = 256,
              enc_size: int = 256, conditions: list[str] | None = None, inference: str = "eval") -> dict:
    """The architecture record of a TSIT model for `task` (see `build`). Semantic synthesis: the content stream takes
    num_classes one-hot maps, + 1 for the don't-care class when `dontcare` is set (official contain_dontcare_label),
    + 1 for the instance boundary map when `instance` (official no_instance off). `inference`: how translate and
    the exported graph run the networks (`pixforge.tsit.nets.for_inference`: "eval", or "train" as the official
    test.py runs multi-modal and photo2art models)."""
    stride = 2 ** (levels - 1)
    sis = task == "sis"
    dontcare = dontcare if sis else None
    instance = bool(instance and sis)
    channels = (num_classes + (dontcare is not None) + instance) if sis else 3
    return {"tool": TOOL, "format": ARCH_FORMAT, "task": task, "ngf": ngf, "levels": levels, "stride": stride,
            "size": list(size), "content_channels": channels,
            "num_classes": num_classes if sis else None, "dontcare": dontcare, "instance": instance,
            "style_stream": not sis, "start": ("vae" if vae else "content") if sis else "noise", "z_dim": z_dim,
            "enc_size": enc_size if (sis and vae) else None,
            "latent_hw": [size[0] // stride, size[1] // stride] if (sis and vae) else None,
            "conditions": conditions or [], "inference": inference}


def check_alpha(alpha) -> float:
    """FAdaIN's strength (`--alpha`): a number from 0 to 1."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise PixforgeError(f"--alpha must be a number between 0 and 1, got {alpha!r}")
    return float(alpha)


def check_enc_size(enc_size) -> None:
    """The VAE encoder's input size (`--enc-size`): a power of two of at least 8 (official: 256)."""
    if not isinstance(enc_size, int) or enc_size < 8 or enc_size & (enc_size - 1):
        raise PixforgeError(f"--enc-size must be a power of two of at least 8, got {enc_size!r}")


def check_arch(arch: dict, source: str | Path) -> dict:
    if not isinstance(arch, dict) or arch.get("tool") != TOOL:
        raise PixforgeError(f"{source} was not written by pixforge-tsit (its config has no tool: {TOOL!r})")
    if arch.get("format") != ARCH_FORMAT:
        raise PixforgeError(f"{source} uses pixforge-tsit model format {arch.get('format')!r}; this version reads "
                            f"format {ARCH_FORMAT}: use the pixforge-tsit version that trained it")
    arch = {"inference": "eval", **arch}  # records written before the inference mode existed ran in eval mode
    if arch["inference"] not in INFERENCE:
        raise PixforgeError(f"{source} records the inference mode {arch['inference']!r}, not one of "
                            f"{', '.join(INFERENCE)}")
    return arch


def classes(arch: dict) -> int:
    """The number of one-hot class maps of a semantic-synthesis model (num_classes, + 1 with a don't-care id)."""
    return arch["num_classes"] + (arch.get("dontcare") is not None)


def build_generator(arch: dict) -> TSITGenerator:
    return TSITGenerator(arch["ngf"], arch["levels"], arch["content_channels"], arch["style_stream"], arch["start"],
                         arch["z_dim"], arch["latent_hw"])


def build_encoder(arch: dict) -> ConvEncoder | None:
    return ConvEncoder(arch["ngf"], arch["z_dim"], arch["enc_size"]) if arch["start"] == "vae" else None


@dataclass
class Trained:
    """A loaded model: the generator (and VAE encoder), in eval mode, and where it came from."""

    arch: dict
    generator: TSITGenerator
    encoder: ConvEncoder | None
    source: Path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> Trained:
    """Load a trained model from a run directory (its release weights, else its newest checkpoint), a checkpoint
    file (`step-*.pt`: the EMA generator when it has one) or a release folder; everything in eval mode."""
    path = Path(path)
    if not path.exists():
        raise PixforgeError(f"--run {path} does not exist")
    if path.is_dir():
        RunDir(path).check_tool(TOOL)  # a run of another tool is named as one
    if path.is_dir() and (path / "generator.safetensors").is_file():
        state, arch = load_release(path, "generator")
        arch = check_arch(arch, path / "generator.json")
        enc_state = load_release(path, "encoder")[0] if arch["start"] == "vae" else None
        return _assemble(arch, state, enc_state, path)
    if path.is_dir():
        latest = Checkpoints(path / "checkpoints").latest()
        if latest is None:
            raise PixforgeError(f"--run {path} holds neither release weights (generator.safetensors) nor "
                                "checkpoints: is it a pixforge-tsit run directory?")
        path = latest
    ckpt = read_checkpoint(path, map_location)
    arch = check_arch(ckpt["config"].get("arch"), path)
    models = ckpt["models"]
    state = models.get("G_ema", models.get("G"))
    if state is None:
        raise PixforgeError(f"checkpoint {path} holds no generator")
    return _assemble(arch, state, models.get("E"), path)


def _assemble(arch: dict, state: dict, enc_state: dict | None, source: Path) -> Trained:
    generator, encoder = build_generator(arch), build_encoder(arch)
    try:
        generator.load_state_dict(state)
        if encoder is not None:
            if enc_state is None:
                raise PixforgeError(f"{source} holds no VAE encoder although the model was trained with one")
            encoder.load_state_dict(enc_state)
    except RuntimeError as err:
        raise PixforgeError(f"{source}: weights do not match the recorded architecture "
                            f"({str(err).splitlines()[0][:200]})") from None
    return Trained(arch, generator.eval(), None if encoder is None else encoder.eval(), source)
