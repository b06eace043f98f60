"""A trained StyleGAN2 generator back from its run, and images from it by seed (as NVlabs' `generate.py`).

`load_generator(RUN)` reads the release weights a finished run writes (`model.safetensors` + `model.json`) or, for
a run still going or stopped, G_ema of its newest checkpoint; RUN may also be a checkpoint file. Seed s draws
`z = RandomState(s).randn(z_dim)` exactly as NVlabs' `generate.py`, so a seed names the same latent in both.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixforge.core.checkpoint import Checkpoints, load_release, read_checkpoint
from pixforge.core.nets.stylegan2 import Generator
from pixforge.core.rundir import RunDir
from pixforge.export.errors import PixforgeError


def load_generator(run: str | Path, device: torch.device | str = "cpu") -> tuple[Generator, dict[str, Any]]:
    """G_ema of a run directory (release weights, else the newest checkpoint) or of a checkpoint file, and the
    generator's constructor arguments."""
    run = Path(run)
    if run.is_dir():
        RunDir(run).check_tool("StyleGAN2")  # a run of pixforge-tsit or -dfvae is named as one
    if run.is_file():
        state = read_checkpoint(run)
        kwargs, weights = _checkpoint_kwargs(state, run), state["models"]["G_ema"]
    elif (run / "model.safetensors").is_file():
        weights, config = load_release(run)
        if not isinstance(config.get("generator"), dict):
            raise PixforgeError(f"{run} is not a StyleGAN2 run (its model.json has no generator config): a run of "
                                "another tool?")
        kwargs = config["generator"]
    elif (latest := Checkpoints(run / "checkpoints").latest()) is not None:
        state = read_checkpoint(latest)
        kwargs, weights = _checkpoint_kwargs(state, latest), state["models"]["G_ema"]
    else:
        runs = sorted(p.parent for p in run.glob("*/checkpoints")) if run.is_dir() else []
        hint = f"; it holds the runs of a train --out folder: pass one, e.g. {runs[-1]}" if runs else ""
        raise PixforgeError(f"{run} is not a StyleGAN2 run (no model.safetensors and no checkpoints/step-*.pt){hint}")
    G = Generator(**kwargs)
    try:
        G.load_state_dict(weights)
    except RuntimeError as err:
        raise PixforgeError(f"{run}: the weights do not fit the generator they describe "
                            f"({str(err).splitlines()[0][:160]})") from None
    return G.eval().requires_grad_(False).to(device), kwargs


def _checkpoint_kwargs(state: dict[str, Any], path: Path) -> dict[str, Any]:
    if "G_ema" not in state["models"] or "generator" not in state.get("extra", {}):
        raise PixforgeError(f"{path} is not a StyleGAN2 checkpoint (no G_ema and generator config)")
    return state["extra"]["generator"]


def parse_seeds(seeds: str | int | list | tuple) -> list[int]:
    """`"0-63"`, `"1,5,9-11"`, an int or a list -> the seeds (NVlabs' `num_range`)."""
    if isinstance(seeds, bool):
        raise PixforgeError(f"--seeds must be seeds such as 0-63 or 1,5,9, got {seeds!r}")
    if isinstance(seeds, int):
        parts = [seeds]  # checked below like any other (Fire gives -5 as an int)
    else:
        parts = seeds if isinstance(seeds, (list, tuple)) else str(seeds).split(",")
    out: list[int] = []
    for part in parts:
        part = str(part).strip()
        if match := re.fullmatch(r"(\d+)-(\d+)", part):
            lo, hi = int(match.group(1)), int(match.group(2))
            if hi < lo:
                raise PixforgeError(f"--seeds: the range {part} runs backwards")
            out.extend(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            out.append(int(part))
        else:
            raise PixforgeError(f"--seeds must be seeds such as 0-63 or 1,5,9, got {seeds!r}")
    if not out or any(s >= 2**32 for s in out):
        raise PixforgeError(f"--seeds must name seeds from 0 to 2^32 - 1, got {seeds!r}")
    return out


def seed_latents(seeds: list[int], z_dim: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """z of each seed as NVlabs' generate.py draws it (float64 normal from `RandomState(seed)`, as float32)."""
    return torch.from_numpy(np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds])).float().to(device)


def class_labels(G: Generator, n: int, class_idx: int | None, device: torch.device | str = "cpu") -> torch.Tensor:
    """One-hot labels of `class_idx` for a conditional G (which needs one), an empty N x 0 tensor otherwise."""
    if G.c_dim == 0:
        if class_idx is not None:
            raise PixforgeError("--class is for a conditional generator; this one takes no label")
        return torch.zeros([n, 0], device=device)
    if class_idx is None or not 0 <= class_idx < G.c_dim:
        raise PixforgeError(f"this generator is conditional: pass --class from 0 to {G.c_dim - 1}")
    return torch.nn.functional.one_hot(torch.full([n], class_idx), G.c_dim).float().to(device)


@torch.no_grad()
def generate(G: Generator, seeds: list[int], truncation_psi: float = 1.0, class_idx: int | None = None,
             noise_mode: str = "const", batch: int = 16) -> torch.Tensor:
    """Images (float, [-1, 1], N x C x H x W) of `seeds`."""
    device = next(G.parameters()).device
    z = seed_latents(seeds, G.z_dim, device)
    c = class_labels(G, len(seeds), class_idx, device)
    return torch.cat([G(zz, cc, truncation_psi=truncation_psi, noise_mode=noise_mode).clamp(-1, 1)
                      for zz, cc in zip(z.split(batch), c.split(batch), strict=True)])
