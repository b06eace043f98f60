"""`pixforge-primitives` (also `pixforge primitives`): the Fire surface over list, generate, preview,
spectrum-ssim and demo (the synthesizers), and pretrain, finetune, sample, export, convert, dataset and
filter-diversity (StyleGAN2 pretrained on them, on core's trainer: each verb the library function itself)."""

from __future__ import annotations

import inspect
import json

from pixforge.core.cli import output_dir, run
from pixforge.core.datagen import DatasetVerbs
from pixforge.core.stylegan2.tool import convert, dataset, export_verb
from pixforge.core.stylegan2.tool import generate as sample_generator
from pixforge.export.errors import PixforgeError
from pixforge.primitives.training import finetune, pretrain


class Primitives(DatasetVerbs):
    """Primitives-PS synthesizers (PinkNoise, Primitives, Primitives-S, Primitives-PS): seeded, sharded datasets."""

    package, default_size, default_out, gpu_batch = "pixforge-primitives", 256, "primitives-out", 64

    pretrain = staticmethod(pretrain)
    finetune = staticmethod(finetune)
    sample = staticmethod(sample_generator)
    export = staticmethod(export_verb("pixforge-primitives"))
    convert = staticmethod(convert)
    dataset = staticmethod(dataset)

    def _model(self, name: str, batch: int, options: dict):
        """--shapes, --paper-exponents, --color-background, --any-direction-lines (defaults = the official code)."""
        from pixforge.primitives.models import get

        return get(name, batch=batch, **options)

    def list(self) -> str:
        """The synthesizers, one per line: name and what it draws; then the model options of `generate`."""
        from pixforge.primitives.models import NAMES, SUMMARIES

        rows = "\n".join(f"{name:15s} {SUMMARIES[name]}" for name in NAMES)
        return f"{rows}\n\ngenerate MODEL also takes: {inspect.getdoc(self._model)}"

    def preview(self, out: str = "primitives-preview.png", size: int = 128, per_model: int = 8, seed: int = 0,
                device: str = "cpu", overwrite: bool = False) -> str:
        """A grid with one row of PER_MODEL images per synthesizer, written to OUT (a .png file)."""
        from pathlib import Path

        from pixforge.core.datagen import preview_grid
        from pixforge.core.io import write_image
        from pixforge.export.images import is_image_path
        from pixforge.primitives.models import NAMES, get

        path = Path(out)
        if path.is_dir() or not is_image_path(path):
            raise PixforgeError(f"--out {path} must name an image file (.png, .jpg, ...)")
        if path.exists() and not overwrite:
            raise PixforgeError(f"--out {path} exists: choose another file or pass --overwrite")
        if per_model < 1:
            raise PixforgeError(f"--per-model must be at least 1, got {per_model}")
        grid = preview_grid([get(name) for name in NAMES], seed=seed, size=size, per_model=per_model, device=device)
        return str(write_image(path, grid))

    def spectrum_ssim(self, real: str, synthetic: str, size: int = 128, limit: int = 1000,
                      out: str | None = None, overwrite: bool = False) -> str:
        """SSIM between the average log-magnitude spectra of REAL and SYNTHETIC (image folders, npz or tar shards;
        at most --limit images each, resized to --size) as the paper's Table 1 compares data sets; JSON.
        --out DIR also writes the two average spectra side by side (a new or empty folder, or --overwrite)."""
        from pixforge.primitives.analysis import spectrum_ssim

        return json.dumps(spectrum_ssim(real, synthetic, size=size, limit=limit, out=out, overwrite=overwrite))

    def filter_diversity(self, run: str, generator: str = "G_ema", absolute: bool = False, include_1x1: bool = False,
                         out: str | None = None, overwrite: bool = False) -> str:
        """The paper's Table 4 for RUN (a run directory: its newest checkpoint; a checkpoint; or an official .pkl):
        per 3 x 3 conv layer of D and of G (--generator G_ema|G; --include-1x1 adds fromrgb/skip/torgb), the mean
        cosine similarity between its filters (each output channel flattened, all ordered pairs; --absolute: of
        |cos|), and the mean over the layers. Prints a table, then the JSON (also written to --out FILE.json)."""
        from pathlib import Path

        from pixforge.export.atomic import write_text
        from pixforge.export.options import check_not_replacing
        from pixforge.primitives.filters import filter_diversity, table

        if out is not None:
            check_not_replacing(out, [run])
        if out is not None and Path(out).exists() and not overwrite:
            raise PixforgeError(f"--out {out} exists: choose another file or pass --overwrite")
        result = filter_diversity(run, generator=generator, absolute=absolute, include_1x1=include_1x1)
        text = json.dumps(result)
        if out is not None:
            write_text(Path(out), text + "\n")
        return f"{table(result)}\n{text}"

    def demo(self, out: str = "demo-out/primitives", n: int = 1000, size: int = 128, workers: int = 2,
             overwrite: bool = True) -> str:
        """Preview of all four synthesizers, 1,000 Primitives-PS images (2 workers) and their spectrum SSIM
        against scikit-image's photos, under OUT."""
        import numpy as np

        from pixforge.core.io import embedded_images, write_image
        from pixforge.primitives.models import get

        if n < 1:
            raise PixforgeError(f"--n must be a positive number of images, got {n}")
        get("primitives-ps").check_size(size)
        out_dir = output_dir(out, overwrite=overwrite)
        grid = self.preview(out=str(out_dir / "preview.png"), size=size, overwrite=True)
        summary = json.loads(self.generate("primitives-ps", n=n, size=size, out=str(out_dir / "primitives-ps"),
                                           workers=workers, overwrite=True, quiet=True))
        photos = out_dir / "photos"
        for i, img in enumerate(embedded_images()):
            write_image(photos / f"{i:02d}.png", np.ascontiguousarray(img))
        report = json.loads(self.spectrum_ssim(str(photos), str(out_dir / "primitives-ps"), size=size,
                                               out=str(out_dir / "spectra"), overwrite=True))
        return (f"primitives demo: preview {grid}\n"
                f"  {summary['generated']} primitives-ps images at {size} px in {summary['seconds']} s "
                f"({summary['images_per_s']} images/s, {workers} workers): {summary['out']}\n"
                f"  spectrum SSIM vs scikit-image photos: {report['spectrum_ssim']} ({report['picture']})")


def main() -> None:
    run(Primitives, name="pixforge-primitives")


if __name__ == "__main__":
    main()
