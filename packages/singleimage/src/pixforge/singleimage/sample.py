"""`sample --run RUN --n 36 --size HxW`: draw samples of a finished run at any size and aspect."""

from __future__ import annotations

from pathlib import Path

from pixforge.core.checkpoint import load_release
from pixforge.core.cli import output_dir, require_dir
from pixforge.core.io import save_grid, tensor_to_image, write_image
from pixforge.export.errors import PixforgeError
from pixforge.singleimage.data import parse_size


def load_model(run: str | Path):
    """The trained generator of a finished run (its release weights), whatever its method."""
    require_dir(run, "--run")
    if not (Path(run) / "model.json").is_file():
        raise PixforgeError(f"{run} is not a finished run (no model.json yet): continue it with "
                            "`pixforge-singleimage train ... --resume`")
    state, config = load_release(run)
    method = config.get("method")
    if method == "singan":
        from pixforge.singleimage.singan import SinGAN

        return SinGAN.from_release(state, config)
    if method == "petsgan":
        from pixforge.singleimage.petsgan import PetsGAN

        return PetsGAN.from_release(state, config)
    raise PixforgeError(f"{run}/model.json names an unknown method {method!r}")


def sample(run: str, n: int = 36, size: str | None = None, out: str | None = None, seed: int = 0,
           grid: bool = True, overwrite: bool = False) -> Path:
    """Write N samples of the finished run RUN as sample-0000.png ... (and grid.png) into --out (default
    RUN/generated-HxW). --size HxW (default: the training size) may have another aspect; sample i is a function of
    (--seed, i) alone."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise PixforgeError(f"--n must be a positive integer, got {n!r}")
    hw = parse_size(size)
    model = load_model(run)
    if hw is not None:
        low = model.min_size()
        if hw[0] < low[0] or hw[1] < low[1]:
            raise PixforgeError(f"--size {hw[0]}x{hw[1]} is below this run's minimum {low[0]}x{low[1]}")
    final = hw or tuple(model.sizes[-1])
    folder = output_dir(out or Path(run) / f"generated-{final[0]}x{final[1]}", overwrite=overwrite)
    images = model.sample(n, hw, seed=seed)
    for i, image in enumerate(tensor_to_image(images)):
        write_image(folder / f"sample-{i:04d}.png", image)
    if grid:
        save_grid(images, folder / "grid.png", nrow=min(n, 6))
    return folder
