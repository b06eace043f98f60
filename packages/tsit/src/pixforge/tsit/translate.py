"""Translate any image, folder or video with a trained TSIT model and any style image.

`translate` is `pixforge-run` on the model's exported graph, run by torch: the graph module and its metadata
(`pixforge.tsit.export.session`) go through the runtime's own `Pipeline` and jobs (`pixforge.export.jobs`), so
both give the same pictures by construction. That fixes the geometry (the content reflect-padded at the bottom /
right to a multiple of the network's stride and the output cropped back; a VAE model's label map resized to its
training size and back), the style image (resized bicubic to the content's network size), the noise (item i's
from `numpy.random.default_rng([seed, i, input position])`: every frame of a video shares one noise map, and
results do not depend on the batch size), the item order (inputs in order, folders sorted recursively), the checks
on every input before anything is written, and videos (streamed, audio kept).

Semantic-synthesis models take label maps (PNG class ids: pixel values or palette indices, the don't-care id mapped
to the extra class, nearest resizing) and, for a model trained with instance maps, the instance map of the same
relative name from `--instances DIR`; with a VAE encoder the style image sets the code (its mean), without
`--style` the code z is drawn from the seed per item (the exported graph of `export --code random`).
"""

from __future__ import annotations

from pathlib import Path

from pixforge.core.io import list_images
from pixforge.export.errors import PixforgeError
from pixforge.export.jobs import Item, execute, plan
from pixforge.export.pipeline import Pipeline
from pixforge.tsit.export import session
from pixforge.tsit.model import load


def translate(*inputs: str, run: str | None = None, out: str | None = None, style: str | None = None,
              alpha: float = 1.0, batch: int = 4, seed: int = 0, instances: str | None = None,
              shard: str | None = None, device: str = "auto", overwrite: bool = False, skip_existing: bool = False,
              quiet: bool = False) -> Path:
    """Translate INPUTS (images, folders, videos; label maps for semantic synthesis) with the model in --run (a run
    directory, a checkpoint file or release folder) and the style image --style (a folder: every style in it,
    results in OUT/<style name>/); results in --out at each input's own size (padded to the network's stride
    and cropped back), never over an input (--overwrite replaces earlier results only). --alpha sets FAdaIN's
    strength; --seed the noise (one noise map per video); --instances DIR the instance maps (by relative name)
    for a semantic-synthesis model trained with them; --shard K/N translates the K-th of N contiguous parts of the
    items and --skip-existing skips items already written (as pixforge-run). Returns the output folder."""
    from pixforge.core.runtime import resolve_device

    if run is None or out is None:
        raise PixforgeError("--run and --out are required")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise PixforgeError(f"--batch must be a positive integer, got {batch!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PixforgeError(f"--seed must be a non-negative integer, got {seed!r}")
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise PixforgeError(f"--out {out_dir} exists and is not a folder")
    trained = load(run)
    arch = trained.arch
    styles = _styles(style, arch)
    if arch.get("instance") and instances is None:
        raise PixforgeError("this model was trained with instance maps: give them with --instances DIR")
    if not arch.get("instance") and instances is not None:
        raise PixforgeError("--instances is for semantic-synthesis models trained with instance maps")
    code = "random" if arch["start"] == "vae" and style is None else "style"  # a VAE's code: from z or a style
    model = session(trained, resolve_device(device), code=code, alpha=alpha)
    jobs: list[tuple[Pipeline, list[Item]]] = []
    for name, path in styles.items():  # every input is opened and checked before anything is written
        images = {**({"style": str(path)} if path is not None else {}),
                  **({"instances": instances} if instances is not None else {})}
        pipe = Pipeline(model, seed=seed, images=images)
        items = plan(pipe, list(inputs), out_dir / name if len(styles) > 1 else out_dir, shard=shard,
                     overwrite=overwrite, skip_existing=skip_existing, results=out_dir)
        jobs.append((pipe, items))
    _check_plans(jobs, list(styles.values()))
    for pipe, items in jobs:
        execute(pipe, items, batch, desc="pixforge-tsit translate", quiet=quiet)
    return out_dir


def _styles(style: str | None, arch: dict) -> dict[str, Path | None]:
    """{name: style image}: one file, every image of a folder (named by relative path), or {"random": None} for a
    model that needs none."""
    if arch["task"] == "sis" and arch["start"] != "vae":
        if style is not None:
            raise PixforgeError("--style: this semantic-synthesis model has no VAE encoder (its appearance comes from "
                                "the label map alone): leave --style out")
        return {"random": None}
    if style is None:
        if arch["task"] != "sis":
            raise PixforgeError("--style is required: a style image, or a folder of style images")
        return {"random": None}
    root = Path(style)
    if root.is_file():
        return {root.stem: root}
    return {f.relative_to(root).with_suffix("").as_posix(): f for f in list_images(root)}


def _check_plans(jobs: list[tuple[Pipeline, list[Item]]], styles: list[Path | None]) -> None:
    """Across styles: no result over any style image (each plan checks its own)."""
    sources = {p.resolve() for p in styles if p is not None}
    for _, items in jobs:
        clash = next((p for it in items for p in it.files.values() if p.resolve() in sources), None)
        if clash is not None:  # never, even with --overwrite
            raise PixforgeError(f"{clash} is an input: choose an --out that does not write over the inputs")
