"""`pixforge-spectra` (also `pixforge spectra`): the Fire surface over list, generate, preview, analyze, compare,
demo, and the contrastive verbs pretrain, linear-eval, export and feature-vis."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pixforge.core.cli import output_dir, run
from pixforge.core.datagen import DatasetVerbs, whole_number
from pixforge.export.errors import PixforgeError
from pixforge.spectra.lineval import export, feature_vis, linear_eval
from pixforge.spectra.pretrain import train as pretrain


@contextmanager
def _out_dir(out: str, overwrite: bool, inputs: tuple = ()) -> Iterator[Path]:
    """`output_dir` (not an input or inside one), removed again when the work inside fails before writing anything
    into it."""
    existed = Path(out).exists()
    path = output_dir(out, overwrite=overwrite, inputs=[p for p in inputs if Path(p).exists()])
    try:
        yield path
    except BaseException:
        if not existed and not any(path.iterdir()):
            path.rmdir()
        raise


class Spectra(DatasetVerbs):
    """Learning to See by Looking at Noise: dead leaves, statistical and random-StyleGAN image models, seeded
    datasets, statistics."""

    package, default_size, default_out, gpu_batch = "pixforge-spectra", 128, "spectra-out", 32
    pretrain = staticmethod(pretrain)
    linear_eval = staticmethod(linear_eval)
    export = staticmethod(export)
    feature_vis = staticmethod(feature_vis)

    def _model(self, name: str, batch: int, options: dict):
        """statistical --iterations, --paper-spectrum, --correlate-channels (defaults = the official code);
        dead leaves --paper-shapes, --texture-model, --texture-pool, --texture-size;
        StyleGAN --images-per-network, --per-forward 1|2|4, --paper-alpha, --paper-filters, --channel-base,
        --channel-max; feature visualisation --encoder PATH, --arch, --layer, --units sorted|single|pair|random,
        --steps, --lr, --init-std, --fft, --decorrelate, --transforms (a GPU job: 128 Adam steps through a ResNet50
        per image)."""
        from pixforge.spectra.models import get

        return get(name, batch=batch, **options)

    def list(self) -> str:
        """The image models, one per line: name and what it makes; then the model options of `generate`."""
        from pixforge.spectra.models import NAMES, SUMMARIES

        rows = "\n".join(f"{name:22s} {SUMMARIES[name]}" for name in NAMES)
        return f"{rows}\n\ngenerate MODEL also takes: {inspect.getdoc(self._model)}"

    def preview(self, out: str = "spectra-preview.png", size: int = 128, per_model: int = 8, seed: int = 0,
                device: str = "cpu", texture_pool: int = 16, featurevis_steps: int = 32, encoder: str | None = None,
                overwrite: bool = False, quiet: bool = False) -> str:
        """A grid with one row of PER_MODEL images per model, written to OUT (a .png or .jpg file), with a
        progress bar on stderr (--quiet: none). Feature visualisation runs --featurevis-steps Adam steps (official:
        128, too slow for a preview on a CPU); featurevis-deadleaves is shown only with --encoder PATH (its MoCo v2
        checkpoint)."""
        import numpy as np

        from pixforge.core.datagen import preview_grid
        from pixforge.core.io import write_image
        from pixforge.core.loop import progress
        from pixforge.core.runtime import resolve_device

        path = Path(out)
        if path.is_dir():
            raise PixforgeError(f"--out {path} is a folder: give an image file such as {path / 'preview.png'}")
        if path.exists() and not overwrite:
            raise PixforgeError(f"--out {path} exists: choose another file or pass --overwrite")
        if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            raise PixforgeError(f"--out {path} must end in .png or .jpg")
        dev = resolve_device(device)
        models = _preview_models(size, per_model, seed, texture_pool, featurevis_steps, encoder)
        rows = []
        with progress(len(models), desc="preview", unit="model", disable=quiet) as bar:
            for model in models:
                bar.set_postfix_str(model.name)
                rows.append(preview_grid([model], seed=seed, size=size, per_model=per_model, device=dev))
                bar.update()
        return str(write_image(path, np.concatenate(rows, axis=0)))

    def analyze(self, source: str, out: str | None = None, n: int = 200, size: int = 128, seed: int = 0,
                plots: bool = True, overwrite: bool = False) -> str:
        """Statistics of SOURCE (an image folder or file, a folder of npz / tar shards, or a model name): --n images
        drawn at random with --seed (a model: its images 0..n-1 of dataset --seed), resized / cropped to --size.
        Per-image spectrum slope alpha, wavelet kurtosis, gradient sparsity, distinct colours and mean L*a*b*,
        each with its mean, std, median, 2.5-97.5 percentiles and 95 % bootstrap interval of the mean; the slope of
        the mean spectrum; RGB histograms and the L*a*b* Gaussian. Prints a JSON summary; --out DIR writes
        stats.json (with the per-image values) and stats.png (matplotlib: the [plots] extra; --no-plots: none)."""
        from pixforge.spectra.analysis import measure, plot, summarize

        [opened] = _open_sources([source], out, n, size, seed, plots)
        if out is None:
            stats = summarize(measure(opened.images(), size=size), seed)
        else:
            with _out_dir(out, overwrite, (source,)) as out_dir:
                stats = summarize(measure(opened.images(), size=size), seed)
                _write_json(out_dir / "stats.json", _with_source(stats, opened))
                if plots:
                    plot({Path(str(source)).name: stats}, out_dir / "stats.png")
        shown = {k: v for k, v in stats.items() if k not in ("radial_spectrum", "color", "per_image")}
        return json.dumps(_with_source(shown, opened) | {"lab_mean": stats["color"]["lab_mean"]})

    def compare(self, a: str, b: str, out: str | None = None, n: int = 200, size: int = 128, seed: int = 0,
                plots: bool = True, overwrite: bool = False) -> str:
        """How far apart image sets A and B are (folders, shards or model names; --n images of each drawn at random
        with --seed): every `analyze` statistic of both with its spread, the difference of the means and a
        two-sample Kolmogorov-Smirnov test (D, p-value), and the colour distances (symmetric KL of the L*a*b*
        Gaussians, RGB histogram L1); for each distance and KS statistic the split-half baseline: the same
        distance between two random halves of A, of B, and between a half of each (mean of 20 splits). Prints
        JSON; --out DIR writes compare.json (with both sets' stats) and compare.png (--no-plots: none)."""
        from pixforge.spectra.analysis import measure, plot, summarize
        from pixforge.spectra.fidelity import compare

        opened = _open_sources([a, b], out, n, size, seed, plots)

        def run_compare() -> tuple[dict, list[dict]]:
            first, second = (measure(o.images(), size=size) for o in opened)
            sets = [summarize(first, seed), summarize(second, seed)]
            return compare(first, second, seed) | {"sources": [_source_info(o) for o in opened]}, sets

        if out is None:
            report, _ = run_compare()
        else:
            with _out_dir(out, overwrite, (a, b)) as out_dir:
                report, sets = run_compare()
                _write_json(out_dir / "compare.json", report | {"stats": sets})
                if plots:
                    names = [f"A: {Path(str(a)).name}", f"B: {Path(str(b)).name}"]
                    plot(dict(zip(names, sets, strict=True)), out_dir / "compare.png")
        return json.dumps(report)

    def demo(self, out: str = "demo-out/spectra", n: int = 1000, size: int = 128, workers: int = 2,
             overwrite: bool = True) -> str:
        """Preview of every model (feature visualisation: 16 steps, featurevis-deadleaves left out: it needs a
        trained encoder), 1,000 dead-leaves-shapes images (2 workers), and their statistics compared with
        scikit-image's photos, under OUT."""
        import numpy as np

        from pixforge.core.io import embedded_images, write_image
        from pixforge.spectra.analysis import require_matplotlib

        whole_number("--n", n)
        whole_number("--workers", workers)
        _preview_models(size, 6, 0, 6, 16, None)
        require_matplotlib()
        photos = embedded_images()
        out_dir = output_dir(out, overwrite=overwrite)
        grid = self.preview(out=str(out_dir / "preview.png"), size=size, per_model=6, texture_pool=6,
                            featurevis_steps=16, overwrite=True)
        summary = json.loads(self.generate("dead-leaves-shapes", n=n, size=size, out=str(out_dir / "dead-leaves"),
                                           workers=workers, overwrite=True, quiet=True))
        for i, img in enumerate(photos):
            write_image(out_dir / "photos" / f"{i:02d}.png", np.ascontiguousarray(img))
        report = json.loads(self.compare(str(out_dir / "photos"), str(out_dir / "dead-leaves"),
                                         out=str(out_dir / "compare"), n=200, size=size, overwrite=True))
        slopes, kl = report["slope_of_mean_spectrum"], report["lab_symmetric_kl"]
        return (f"spectra demo: preview {grid}\n"
                f"  {summary['generated']} dead-leaves-shapes images at {size} px in {summary['seconds']} s "
                f"({summary['images_per_s']} images/s, {workers} workers): {summary['out']}\n"
                f"  spectrum slope alpha: photos {slopes['a']}, dead leaves {slopes['b']}; colour KL {kl['between']} "
                f"(split halves: photos {kl['split_half']['a']}, dead leaves {kl['split_half']['b']}) "
                f"({out_dir / 'compare'})")


def _preview_models(size: int, per_model: int, seed: int, texture_pool: int, featurevis_steps: int,
                    encoder: str | None) -> list:
    """The models of a preview, every option and the size checked for each."""
    from pixforge.spectra.featurevis import ENCODERS
    from pixforge.spectra.models import DEAD_LEAVES, NAMES, get

    whole_number("--per-model", per_model)
    whole_number("--size", size)
    whole_number("--seed", seed, 0)
    whole_number("--featurevis-steps", featurevis_steps)
    models = []
    for name in NAMES:
        if DEAD_LEAVES.get(name) == "textured":
            models.append(get(name, texture_pool=texture_pool))
        elif name == "featurevis-random":
            models.append(get(name, steps=featurevis_steps, batch=per_model))
        elif ENCODERS.get(name) == "deadleaves":
            if encoder is not None:
                models.append(get(name, steps=featurevis_steps, encoder=encoder, batch=per_model))
        else:
            models.append(get(name))
    for model in models:
        model.check_size(size)
    return models


def _open_sources(sources: list[str], out: str | None, n: int, size: int, seed: int, plots: bool) -> list:
    """analyze / compare: every option and source checked (files drawn) before any image is read."""
    from pixforge.spectra.analysis import require_matplotlib
    from pixforge.spectra.sources import open_source

    whole_number("--n", n)
    whole_number("--size", size, 16, 4096)
    whole_number("--seed", seed, 0)
    if out is not None and plots:
        require_matplotlib()
    return [open_source(source, n, size, seed) for source in sources]


def _source_info(source) -> dict:
    return {"source": source.name, "images": source.count, "available": source.available}


def _with_source(stats: dict, source) -> dict:
    return {"source": source.name, "available": source.available} | stats


def _write_json(path: Path, data: dict) -> None:
    from pixforge.export.atomic import write_text

    write_text(path, json.dumps(data, indent=2) + "\n")


def main() -> None:
    run(Spectra, name="pixforge-spectra")


if __name__ == "__main__":
    main()
