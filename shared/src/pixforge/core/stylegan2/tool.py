"""The StyleGAN2 verbs every tool that trains it shares (pixforge-apa, pixforge-primitives): generate, export,
convert, dataset. Each is the library function a tool's CLI exposes as it is (its signature the options)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pixforge.core.cli import output_dir, output_file, require_file
from pixforge.core.runtime import resolve_device
from pixforge.export.errors import PixforgeError
from pixforge.export.images import make_grid, write_image


def generate(run: str, out: str, seeds: str = "0-63", trunc: float = 1.0, class_idx: int | None = None,
             noise_mode: str = "const", batch: int = 16, device: str = "auto", overwrite: bool = False) -> str:
    """Images of G_ema of RUN (a run directory or checkpoint) for --seeds (e.g. 0-63 or 1,5,9) into OUT:
    seed0000.png ... and grid.png. Seed s is NVlabs' z = RandomState(s).randn(z_dim); --trunc psi, --class-idx
    for a conditional G, --noise-mode const|random|none."""
    from pixforge.core.io import tensor_to_image
    from pixforge.core.stylegan2.generate import generate as draw
    from pixforge.core.stylegan2.generate import load_generator, parse_seeds
    from pixforge.export.options import check_outside, whole_number

    seed_list = parse_seeds(seeds)
    whole_number("--batch", batch)
    if noise_mode not in ("const", "random", "none"):
        raise PixforgeError(f"--noise-mode must be const, random or none, got {noise_mode!r}")
    if not (isinstance(trunc, (int, float)) and 0 <= trunc <= 2):
        raise PixforgeError(f"--trunc must be a number in [0, 2], got {trunc!r}")
    G, _ = load_generator(run, resolve_device(device))
    check_outside(out, [run])  # before the generator runs (output_dir below checks it again, then creates it)
    images = tensor_to_image(draw(G, seed_list, float(trunc), class_idx, noise_mode, batch).cpu())
    folder = output_dir(out, overwrite, inputs=[run])
    for seed, image in zip(seed_list, images, strict=True):
        write_image(folder / f"seed{seed:04d}.png", image)
    write_image(folder / "grid.png", make_grid(images, nrow=min(8, len(images))))
    return f"wrote {len(seed_list)} images and grid.png to {folder}"


def export_verb(package: str) -> Callable[..., str]:
    """`export` for the tool `package` (its name and version go into the model's metadata)."""

    def export(run: str, out: str = "generator.onnx", fp16: bool = False, overwrite: bool = False) -> str:
        """Export G_ema of RUN to ONNX file OUT (inputs z, truncation[, class]; dynamic batch; pixforge metadata;
        checked against PyTorch). Run it with `pixforge-run run OUT --count N --seed S --out DIR`."""
        from importlib.metadata import version

        from pixforge.core.stylegan2.export import export_generator
        from pixforge.core.stylegan2.generate import load_generator

        path = output_file(out, ".onnx", overwrite, inputs=[run])
        G, kwargs = load_generator(run)
        written = export_generator(G, path, package=package, version=version(package), fp16=fp16,
                                   extra={"run": str(run), "generator": kwargs})
        return f"wrote {written} (checked against PyTorch)"

    return export


def convert(pkl: str, out: str, overwrite: bool = False) -> str:
    """Convert an official stylegan2-ada-pytorch / DeceiveD snapshot PKL into a pixforge checkpoint OUT (.pt: G,
    D, G_ema by NVlabs' names) without running the code inside the pickle; `--init OUT` trains from it and
    `generate --run OUT` samples it."""
    from pixforge.core.checkpoint import save_checkpoint
    from pixforge.core.nets.stylegan2 import Generator
    from pixforge.core.stylegan2.convert import generator_kwargs, load_official_pickle

    path = Path(out)
    if path.resolve() == Path(pkl).resolve():
        raise PixforgeError(f"--out {path} is the input itself")
    if path.exists() and (path.is_dir() or not overwrite):
        raise PixforgeError(f"--out {path} exists: choose another file or pass --overwrite")
    records = load_official_pickle(require_file(pkl, "snapshot"))
    kwargs = generator_kwargs(records["G_ema"]["init_kwargs"])
    G = Generator(**kwargs)
    try:
        G.load_state_dict(records["G_ema"]["state_dict"])
    except RuntimeError as err:
        raise PixforgeError(f"{pkl}: G_ema does not match the generator its arguments describe "
                            f"({str(err).splitlines()[0][:160]})") from None
    models = {name: records[name]["state_dict"] for name in ("G", "D", "G_ema") if name in records}
    save_checkpoint(path, step=0, models=models, config={"converted_from": str(pkl)},
                    extra={"generator": kwargs, "discriminator": records.get("D", {}).get("init_kwargs"),
                           "augment_p": records.get("augment_p")})
    return f"wrote {path} ({', '.join(models)}; {G.img_resolution} px)"


def dataset(source: str, dest: str, res: int, transform: str = "center-crop", max_images: int | None = None,
            overwrite: bool = False) -> str:
    """Make a training set DEST (a .zip in NVlabs' layout, or a folder) from the images in SOURCE (folder or zip) at
    --res pixels: --transform center-crop|center-crop-wide|resize|pad; labels from SOURCE's dataset.json."""
    from pixforge.core.stylegan2.dataset import make_dataset
    from pixforge.export.options import whole_number

    whole_number("--res", res, 4)
    written = make_dataset(source, dest, res, transform=transform, max_images=max_images, overwrite=overwrite)
    return f"wrote {written}"
