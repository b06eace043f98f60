"""`compare IMAGE --out DIR`: PetsGAN against SinGAN on one image, on one device, one after the other.

Each method trains into DIR/<method>/ (a normal run directory), then draws --n samples; DIR gets

    compare.json   per method: training wall time, sampling wall time (--n samples, as `sample` draws them: on
                   the CPU), iterations, sizes, the no-download metrics
                   (`metrics.py`: pixel diversity, pairwise L1, patch SWD), and petsgan_over_singan_wall (PetsGAN's
                   training wall time / SinGAN's: the paper's claim is that PetsGAN trains much faster)
    compare.md     the same as a markdown table
    compare.png    side by side: a row per method, the training image first, then samples at the training size,
                   every picture resized to the image fitted to --max-size (the two methods round sizes differently)

Defaults are the papers' iteration counts (SinGAN 2000 per scale; PetsGAN 2000 / 5000 / 5000): hours on a CPU.
--iters, --warmup-g, --warmup-f, --joint, --max-size, --min-size, --downscale shorten both runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from pixforge.core.cli import output_dir
from pixforge.core.io import save_grid
from pixforge.core.runtime import resolve_device
from pixforge.export.atomic import write_text
from pixforge.export.errors import PixforgeError
from pixforge.export.options import check_numbers
from pixforge.singleimage.data import load_image, resize, singan_scales
from pixforge.singleimage.metrics import metrics
from pixforge.singleimage.petsgan import petsgan_sizes
from pixforge.singleimage.sample import draw, load_model
from pixforge.singleimage.train import train

METHODS = ("singan", "petsgan")
SCORES = ("diversity_pixel_std", "diversity_pairwise_l1", "swd_patches")
GRID_SAMPLES = 5


def _fitted_size(image: torch.Tensor, max_size: int) -> tuple[int, int]:
    h, w = image.shape[-2:]
    scale = min(max_size / max(h, w), 1.0)
    return max(1, round(h * scale)), max(1, round(w * scale))


def table(report: dict) -> str:
    """The markdown table of a compare report."""
    rows = ["| method | train wall s | iterations | size | sample wall s (n) | " + " | ".join(SCORES) + " |",
            "|---|---:|---:|---|---:|" + "---:|" * len(SCORES)]
    for method, r in report["methods"].items():
        scores = " | ".join("-" if r[k] is None else f"{r[k]:.4g}" for k in SCORES)
        rows.append(f"| {method} | {r['train_s']:.1f} | {r['iterations']} | {r['size'][0]}x{r['size'][1]} | "
                    f"{r['sample_s']:.2f} ({report['n']}) | {scores} |")
    ratio = report["petsgan_over_singan_wall"]
    rows.append("")
    rows.append(f"PetsGAN / SinGAN training wall time: {ratio:.3f} on {report['device']} "
                "(the paper's goal: PetsGAN at most 1/4 of SinGAN's time at the default iteration counts)")
    return "\n".join(rows) + "\n"


def compare(image: str, out: str, iters: int = 2000, warmup_g: int = 2000, warmup_f: int = 5000, joint: int = 5000,
            max_size: int = 250, min_size: int = 25, downscale: int = 8, batch_g: int = 32, n: int = 16,
            seed: int = 0, device: str = "auto", threads: int | None = None, overwrite: bool = False,
            quiet: bool = False) -> dict:
    """Train SinGAN (--iters per scale, --min-size) and PetsGAN (--warmup-g / --warmup-f / --joint steps,
    --downscale, --batch-g DEPNet batch) on IMAGE fitted to --max-size, on the same --device, into OUT/singan and
    OUT/petsgan; time both, draw --n samples of each, score them (metrics) and write OUT/compare.json, compare.md
    and compare.png (the image and samples of each method side by side). Returns the report."""
    # Check everything before OUT is created: the knobs, the image, and that it fits both methods' size rules.
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise PixforgeError(f"--n must be an integer >= 2, got {n!r}")
    for flag, value in (("--iters", iters), ("--warmup-g", warmup_g), ("--warmup-f", warmup_f), ("--joint", joint),
                        ("--max-size", max_size), ("--min-size", min_size), ("--batch-g", batch_g)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PixforgeError(f"{flag} must be a positive integer, got {value!r}")
    if downscale not in (2, 4, 8, 16):
        raise PixforgeError(f"--downscale must be 2, 4, 8 or 16, got {downscale!r}")
    check_numbers({"threads": threads}, integers={"threads": 0})  # 0: torch's default
    resolve_device(device)  # CUDA asked but absent: refused before OUT exists
    picture = load_image(image)
    singan_scales(*picture.shape[-2:], min_size, max_size)
    petsgan_sizes(*picture.shape[-2:], max_size, downscale)
    root = output_dir(out, overwrite)
    common = {"max_size": max_size, "seed": seed, "device": device, "threads": threads, "overwrite": overwrite,
              "quiet": quiet}
    options = {"singan": {"iters": iters, "min_size": min_size},
               "petsgan": {"warmup_g": warmup_g, "warmup_f": warmup_f, "joint": joint, "downscale": downscale,
                           "batch_g": batch_g}}
    cell = _fitted_size(picture, max_size)
    rows, results = [], {}
    for method in METHODS:
        start = time.perf_counter()
        run = train(image, str(root / method), method=method, **options[method], **common)
        train_s = time.perf_counter() - start
        model = load_model(run)
        start = time.perf_counter()
        samples = draw(model, n, seed=seed)
        sample_s = time.perf_counter() - start
        scores = metrics(str(run), n=n, seed=seed)
        config = json.loads((Path(run) / "config.json").read_text())
        results[method] = {"run": str(run), "train_s": round(train_s, 2), "sample_s": round(sample_s, 3),
                           "iterations": len(config["sizes"]) * iters if method == "singan"
                           else warmup_g + warmup_f + joint,
                           "size": list(model.sizes[-1]), **{k: scores.get(k) for k in SCORES}}
        real = resize(picture, tuple(model.sizes[-1]))
        rows.append(resize(torch.cat([real, samples[:GRID_SAMPLES]]), cell))
    report = {"image": str(Path(image).resolve()), "device": str(resolve_device(device)), "n": n, "methods": results,
              "petsgan_over_singan_wall": round(results["petsgan"]["train_s"] / results["singan"]["train_s"], 4)}
    write_text(root / "compare.json", json.dumps(report, indent=2))
    write_text(root / "compare.md", table(report))
    save_grid(torch.cat(rows).clamp(-1, 1), root / "compare.png", nrow=rows[0].shape[0])
    return report
