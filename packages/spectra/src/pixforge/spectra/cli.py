"""`pixforge-spectra` (also `pixforge spectra`): the Fire surface over list, generate, preview, analyze, compare
and demo."""

from __future__ import annotations

import json
from pathlib import Path

from pixforge.core.cli import PixforgeError, output_dir, run


def _model(model: str, options: dict, batch: int):
    from pixforge.spectra.models import get

    if batch < 1:
        raise PixforgeError(f"--batch must be at least 1, got {batch}")
    return get(model, batch=batch, **{k: v for k, v in options.items() if v is not None})


class Spectra:
    """Learning to See by Looking at Noise: dead leaves, statistical and random-StyleGAN image models, seeded
    datasets, statistics."""

    def list(self) -> str:
        """The image models, one per line: name and what it makes."""
        from pixforge.spectra.models import NAMES, SUMMARIES

        return "\n".join(f"{name:22s} {SUMMARIES[name]}" for name in NAMES)

    def generate(self, model: str = "dead-leaves-shapes", n: int = 1000, size: int = 128,
                 out: str = "spectra-out", seed: int = 0, shard: str | None = None, workers: int = 1,
                 device: str = "cpu", format: str = "png", per_shard: int = 1000, encoding: str = "png",
                 quality: int = 95, batch: int | None = None, iterations: int | None = None,
                 paper_spectrum: bool | None = None, correlate_channels: bool | None = None,
                 paper_shapes: bool | None = None, texture_model: str | None = None,
                 texture_pool: int | None = None, texture_size: int | None = None,
                 images_per_network: int | None = None, paper_alpha: bool | None = None,
                 paper_filters: bool | None = None, channel_base: int | None = None, channel_max: int | None = None,
                 encoder: str | None = None, arch: str | None = None, layer: str | None = None,
                 units: str | None = None, steps: int | None = None, lr: float | None = None,
                 init_std: float | None = None, fft: bool | None = None, decorrelate: bool | None = None,
                 transforms: bool | None = None, overwrite: bool = False, quiet: bool = False) -> str:
        """Generate images 0..N-1 of MODEL at SIZE x SIZE under OUT: png/jpg files (1,000 per folder), npz-shards
        or webdataset-tar (--per-shard images each), plus manifest.json. Image i is a pure function of (--seed, i,
        --size, options): re-runs, --shard K/N splits and resumed runs give the same bytes on one device type.
        --workers W: W processes on the CPU, W writer threads on CUDA (statistical models run batched on the GPU,
        --batch, default 32). Model options (defaults = the official code): statistical --iterations,
        --paper-spectrum, --correlate-channels; dead leaves --paper-shapes, --texture-model, --texture-pool,
        --texture-size; StyleGAN --images-per-network, --paper-alpha, --paper-filters, --channel-base,
        --channel-max; feature visualisation --encoder PATH (featurevis-deadleaves: a MoCo v2 / torchvision ResNet
        checkpoint), --arch, --layer, --units sorted|single|pair|random, --steps, --lr, --init-std, --fft,
        --decorrelate, --transforms (a GPU job: 128 Adam steps through a ResNet50 per image, --batch images at
        once). Prints a JSON summary."""
        from pixforge.core.datagen import generate
        from pixforge.spectra import __version__

        batch = batch if batch is not None else (1 if str(device).startswith("cpu") else 32)
        options = {"iterations": iterations, "paper_spectrum": paper_spectrum,
                   "correlate_channels": correlate_channels, "paper_shapes": paper_shapes,
                   "texture_model": texture_model, "texture_pool": texture_pool, "texture_size": texture_size,
                   "images_per_network": images_per_network, "paper_alpha": paper_alpha,
                   "paper_filters": paper_filters, "channel_base": channel_base, "channel_max": channel_max,
                   "encoder": encoder, "arch": arch, "layer": layer, "units": units, "steps": steps, "lr": lr,
                   "init_std": init_std, "fft": fft, "decorrelate": decorrelate, "transforms": transforms}
        synth = _model(model, options, batch)
        summary = generate(synth, out, n=n, size=size, seed=seed, shard=shard, workers=workers, device=device,
                           fmt=format, per_shard=per_shard, encoding=encoding, quality=quality, overwrite=overwrite,
                           package="pixforge-spectra", version=__version__, show_progress=not quiet)
        return json.dumps(summary)

    def preview(self, out: str = "spectra-preview.png", size: int = 128, per_model: int = 8, seed: int = 0,
                device: str = "cpu", texture_pool: int = 16, featurevis_steps: int = 32, encoder: str | None = None,
                overwrite: bool = False) -> str:
        """A grid with one row of PER_MODEL images per model, written to OUT (a .png file). Feature visualisation
        runs --featurevis-steps Adam steps (official: 128, too slow for a preview on a CPU); featurevis-deadleaves
        is shown only with --encoder PATH (its MoCo v2 checkpoint)."""
        from pixforge.core.datagen import preview_grid
        from pixforge.core.io import write_image
        from pixforge.spectra.featurevis import ENCODERS
        from pixforge.spectra.models import DEAD_LEAVES, NAMES, get

        path = Path(out)
        if path.exists() and not overwrite:
            raise PixforgeError(f"--out {path} exists: choose another file or pass --overwrite")
        if per_model < 1:
            raise PixforgeError(f"--per-model must be at least 1, got {per_model}")
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
        return str(write_image(path, preview_grid(models, seed=seed, size=size, per_model=per_model, device=device)))

    def analyze(self, source: str, out: str | None = None, n: int = 200, size: int = 128, seed: int = 0,
                plots: bool = True, overwrite: bool = False) -> str:
        """Statistics of SOURCE (an image folder, npz/tar shards, or a model name: --n images generated): radially
        averaged spectrum and its slope alpha, colour histograms and L*a*b* Gaussian, wavelet kurtosis, sparsity.
        Prints a JSON summary; --out DIR writes stats.json (and stats.png with matplotlib)."""
        from pixforge.spectra.analysis import analyze_images, plot, source_images

        stats = analyze_images(source_images(source, n, size, seed), size=size)
        stats = {"source": str(source), **stats}
        if out is not None:
            from pixforge.export.atomic import write_text

            out_dir = output_dir(out, overwrite=overwrite)
            write_text(out_dir / "stats.json", json.dumps(stats, indent=2) + "\n")
            if plots:
                plot({Path(str(source)).name: stats}, out_dir / "stats.png")
        return json.dumps({k: v for k, v in stats.items() if k not in ("radial_spectrum", "color")}
                          | {"lab_mean": stats["color"]["lab_mean"]})

    def compare(self, a: str, b: str, out: str | None = None, n: int = 200, size: int = 128, seed: int = 0,
                plots: bool = True, overwrite: bool = False) -> str:
        """The `analyze` statistics of A and B side by side (folders, shards or model names), with the symmetric
        KL divergence of their L*a*b* Gaussians; JSON. --out DIR writes compare.json (and compare.png)."""
        from pixforge.spectra.analysis import analyze_images, compare, plot, source_images

        first, second = (analyze_images(source_images(s, n, size, seed), size=size) for s in (a, b))
        report = compare(first, second) | {"sources": [str(a), str(b)]}
        if out is not None:
            from pixforge.export.atomic import write_text

            out_dir = output_dir(out, overwrite=overwrite)
            write_text(out_dir / "compare.json", json.dumps(report | {"stats": [first, second]}, indent=2) + "\n")
            if plots:
                names = [f"A: {Path(str(a)).name}", f"B: {Path(str(b)).name}"]
                plot(dict(zip(names, (first, second), strict=True)), out_dir / "compare.png")
        return json.dumps(report)

    def demo(self, out: str = "demo-out/spectra", n: int = 1000, size: int = 128, workers: int = 2,
             overwrite: bool = True) -> str:
        """Preview of every model (feature visualisation: 16 steps, featurevis-deadleaves left out: it needs a
        trained encoder), 1,000 dead-leaves-shapes images (2 workers), and their statistics compared with
        scikit-image's photos, under OUT."""
        import numpy as np

        from pixforge.core.io import embedded_images, write_image

        out_dir = output_dir(out, overwrite=overwrite)
        grid = self.preview(out=str(out_dir / "preview.png"), size=size, per_model=6, texture_pool=6,
                            featurevis_steps=16, overwrite=True)
        summary = json.loads(self.generate("dead-leaves-shapes", n=n, size=size, out=str(out_dir / "dead-leaves"),
                                           workers=workers, overwrite=True, quiet=True))
        photos = out_dir / "photos"
        for i, img in enumerate(embedded_images()):
            write_image(photos / f"{i:02d}.png", np.ascontiguousarray(img))
        report = json.loads(self.compare(str(photos), str(out_dir / "dead-leaves"), out=str(out_dir / "compare"),
                                         n=200, size=size, overwrite=True))
        return (f"spectra demo: preview {grid}\n"
                f"  {summary['generated']} dead-leaves-shapes images at {size} px in {summary['seconds']} s "
                f"({summary['images_per_s']} images/s, {workers} workers): {summary['out']}\n"
                f"  spectrum slope alpha: photos {report['a']['slope_of_mean_spectrum']}, "
                f"dead leaves {report['b']['slope_of_mean_spectrum']}; colour KL {report['lab_symmetric_kl']} "
                f"({out_dir / 'compare'})")


def main() -> None:
    run(Spectra, name="pixforge-spectra")


if __name__ == "__main__":
    main()
