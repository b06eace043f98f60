"""`sample --run RUN --n 36 --size HxW`: draw samples of a finished run at any size and aspect."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pixforge.core.checkpoint import load_release
from pixforge.core.cli import output_dir, require_dir
from pixforge.core.io import save_grid, tensor_to_image, write_image
from pixforge.core.rundir import RunDir
from pixforge.export.errors import PixforgeError
from pixforge.singleimage.data import parse_size

TOOL = "pixforge-singleimage"
CHUNK = 16  # samples drawn (and refined) at a time
GRID = 36  # samples shown in grid.png


def load_model(run: str | Path):
    """The trained generator of a finished run (its release weights), whatever its method; a run of another tool is
    refused naming that tool."""
    RunDir(require_dir(run, "--run")).check_tool(TOOL)
    if not (Path(run) / "model.json").is_file():
        raise PixforgeError(f"{run} is not a finished run (no model.json yet): continue it with "
                            "`pixforge-singleimage train ... --resume`")
    state, config = load_release(run)
    method = config.get("method")
    if method == "singan":
        from pixforge.singleimage.singan import SinGAN

        return SinGAN.from_release(state, config)
    if method == "petsgan":
        from pixforge.singleimage.petsgan_model import PetsGAN

        return PetsGAN.from_release(state, config)
    raise PixforgeError(f"{run}/model.json names an unknown method {method!r}")


def _post_processing(run: str | Path, model, refine: bool, hr: bool, vgg: str | None):
    """The TTSR refiner (or None) for PetsGAN's `--refine` / `--hr`, every check before anything is written."""
    from pixforge.singleimage.petsgan_model import PetsGAN

    if not isinstance(refine, bool) or not isinstance(hr, bool):
        raise PixforgeError("--refine and --hr are switches")
    if not isinstance(model, PetsGAN):
        raise PixforgeError("--refine and --hr are PetsGAN options")
    if hr and model.HR is None:
        raise PixforgeError(f"--hr: {run} has no hrnet stage (train it with --hr-factor 2, 4 or 8)")
    if refine and model.image is None:
        raise PixforgeError(f"--refine: {run}'s release holds no training image (made before --refine): retrain it")
    if not refine:
        return None
    from pixforge.singleimage.highres import TTSRRefiner

    if vgg is None:  # the run's own --vgg, when it still exists
        config = Path(run) / "config.json"
        trained = json.loads(config.read_text()).get("vgg") if config.is_file() else None
        vgg = trained if trained and Path(trained).is_file() else None
    return TTSRRefiner(vgg, kernel=31 if hr else 11)


def draw(model, n: int, size: tuple[int, int] | None = None, seed: int = 0) -> torch.Tensor:
    """Samples 0..n-1 (seed `seed`) of a loaded model, drawn CHUNK at a time: the networks' memory does not grow with
    n (sample i depends on (seed, i) alone, so the result is the same)."""
    return torch.cat([model.sample(min(CHUNK, n - first), size, seed=seed, first=first)
                      for first in range(0, n, CHUNK)])


def sample(run: str, n: int = 36, size: str | None = None, out: str | None = None, seed: int = 0,
           grid: bool = True, refine: bool = False, hr: bool = False, vgg: str | None = None,
           overwrite: bool = False) -> Path:
    """Write N samples of the finished run RUN as sample-0000.png ... (and grid.png, the first 36) into --out (default
    RUN/generated-HxW). --size HxW (default: the training size; at most 4096x4096 pixels in area) may have another
    aspect; sample i is a function of (--seed, i) alone. PetsGAN only, the official post-processing (not in the
    paper): --refine, TTSR refinement of each sample against the training image (11 x 11 windows; needs --vgg FILE,
    torchvision VGG19 weights, else the run's own --vgg); --hr, the run's hrnet stage (trained with --hr-factor: the
    output is that factor larger), after a refinement against the image and its mirror (31 x 31 windows) when
    --refine is given too (official)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise PixforgeError(f"--n must be a positive integer, got {n!r}")
    hw = parse_size(size)
    model = load_model(run)
    if hw is not None:
        low = model.min_size()
        if hw[0] < low[0] or hw[1] < low[1]:
            raise PixforgeError(f"--size {hw[0]}x{hw[1]} is below this run's minimum {low[0]}x{low[1]}")
    refiner = _post_processing(run, model, refine, hr, vgg) if refine or hr else None
    final = hw or tuple(model.sizes[-1])
    up = model.hr_factor if hr else 1
    name = f"generated-{final[0] * up}x{final[1] * up}" + ("-refined" if refine else "")
    folder = output_dir(out or Path(run) / name, overwrite=overwrite)
    shown = []
    for first in range(0, n, CHUNK):  # memory bounded by CHUNK samples whatever --n
        images = model.sample(min(CHUNK, n - first), hw, seed=seed, first=first)
        if refine or hr:
            from pixforge.singleimage.highres import refine_and_upscale

            images = refine_and_upscale(model, images, refiner, hr)
        for i, image in enumerate(tensor_to_image(images), start=first):
            write_image(folder / f"sample-{i:04d}.png", image)
        shown += [images[:GRID - first]] if first < GRID else []
    if grid:
        shown = torch.cat(shown)
        save_grid(shown, folder / "grid.png", nrow=min(len(shown), 6))
    return folder
