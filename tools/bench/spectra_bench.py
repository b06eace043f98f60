"""pixforge-spectra generation speed vs the official "Learning to See by Looking at Noise" code, same run.

For each model and size: pixforge in one process (one thread, `sample` per image, no encoding), pixforge
`generate` with 2 worker processes writing PNG files, the batched torch path (`sample_batched` for dead leaves and
StyleGANs, `sample` with `batch` indices for the statistical models) on `--device` (default: cuda when present,
else cpu: torch-CPU, one thread), and the official dead-leaves generator
(`generate_datasets/dead_leaves/generate_dataset.py` of mbaradad/learning_with_noise: its `dead_leaves` function
read from the file and run with NumPy + OpenCV, one process) when `--official PATH` points at a checkout. The
official statistical models need pyrtools and the textured dead leaves a folder of pre-generated textures: their
columns are skipped. One JSON line per case: name, device, size, median_s (per image), images_per_s, reference
images_per_s, ratio, projected hours for 1.3M.

    python tools/bench/spectra_bench.py [--official ~/learning_with_noise] [--sizes 128 256] [--images 5]
        [--device cuda] [--batch 32] [--batches 4]
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from benchlib import median_time

from pixforge.core.datagen import generate
from pixforge.spectra import NAMES, get

OFFICIAL_SHAPES = {"dead-leaves-squares": "square", "dead-leaves-oriented": "oriented_square",
                   "dead-leaves-shapes": "mixed"}


def _official(path: Path):
    source = (path / "generate_datasets" / "dead_leaves" / "generate_dataset.py").read_text()
    keep = [node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef) and node.name == "dead_leaves"]
    import cv2

    namespace = {"np": np, "cv2": cv2, "random": random}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(path), "exec"), namespace)
    counter = iter(range(10**9))

    def run(name, size):
        def one():
            seed = next(counter)
            random.seed(seed)
            np.random.seed(seed)
            namespace["dead_leaves"](size, 3, shape_mode=OFFICIAL_SHAPES[name])
        return one

    return run


def _batched(model, size: int, dev: torch.device, batch: int, batches: int) -> float:
    """Seconds per image of the batched torch path: whole batches, after one warm-up batch (median of calls)."""
    run = getattr(model, "sample_batched", model.sample)
    blocks = iter(range(1, 10**9))
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    return median_time(lambda: run(0, [batch * b + k for b in [next(blocks)] for k in range(batch)], size, dev),
                       batches, sync=sync) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, default=None, help="checkout of mbaradad/learning_with_noise")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--workers-images", type=int, default=40)
    parser.add_argument("--models", nargs="+", default=list(NAMES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="device of the batched torch path")
    parser.add_argument("--batch", type=int, default=None, help="images per batched call (cuda 32, cpu 4)")
    parser.add_argument("--batches", type=int, default=4, help="timed batched calls (after one warm-up call)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    official = None
    if args.official is not None and (args.official / "generate_datasets" / "dead_leaves").is_dir():
        official = _official(args.official)
    cpu = torch.device("cpu")
    for size in args.sizes:
        for name in args.models:
            options = {"texture_pool": 16} if name == "dead-leaves-textured" else {}
            model = get(name, **options)
            model.sample(0, [0], size, cpu)  # builds the texture pool once
            counter = iter(range(1, 10**9))
            ours = median_time(lambda m=model, c=counter, s=size: m.sample(0, [next(c)], s, cpu), args.images)
            ref = median_time(official(name, size), args.images) if official and name in OFFICIAL_SHAPES else None
            base = dict(size=size, reference="official generator (NumPy + OpenCV, 1 process)",
                        reference_images_per_s=round(1 / ref, 3) if ref else None)
            print(json.dumps(dict(name=f"{name}/1-process", device="cpu", median_s=round(ours, 4),
                                  images_per_s=round(1 / ours, 2), ratio=round(ref / ours, 2) if ref else None,
                                  hours_for_1_3M=round(1.3e6 * ours / 3600, 1), **base)), flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                rate = generate(model, tmp, n=args.workers_images, size=size, workers=2,
                                show_progress=False)["images_per_s"]
            print(json.dumps(dict(name=f"{name}/generate-2-workers-png", device="cpu", median_s=round(1 / rate, 4),
                                  images_per_s=rate, ratio=round(rate * ref, 2) if ref else None,
                                  hours_for_1_3M=round(1.3e6 / rate / 3600, 1), **base)), flush=True)
            dev = torch.device(args.device)
            batch = args.batch or (32 if dev.type == "cuda" else 4)
            per = _batched(get(name, batch=batch, **options), size, dev, batch, args.batches)
            ratio = round(ref / per, 2) if ref else None
            print(json.dumps(dict(name=f"{name}/torch-batch-{batch}", device=str(dev), median_s=round(per, 6),
                                  images_per_s=round(1 / per, 1), ratio=ratio,
                                  hours_for_1_3M=round(1.3e6 * per / 3600, 2), **base)), flush=True)


if __name__ == "__main__":
    main()
