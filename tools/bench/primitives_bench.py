"""pixforge-primitives generation speed vs the official Primitives-PS synthesizer, same machine, same run.

For each synthesizer and size: pixforge in one process (one thread, `sample` per image, no encoding), pixforge
`generate` with 2 worker processes writing PNG files, CUDA batches when a GPU is present, and the official code
(`pretrain/noise_dataset.py` of FriedRonaldo/Primitives-PS: its drawing functions are read from the file and
run with NumPy + OpenCV, one process) when `--official PATH` points at a checkout. The official code only draws
256-pixel images (uint8 coordinates), so its column is skipped at other sizes. One JSON line per case: name,
device, size, median_s (per image), images_per_s, reference (official) images_per_s, ratio, and the projected
hours for 1.3M images.

    python tools/bench/primitives_bench.py [--official ~/Primitives-PS] [--sizes 128 256] [--images 20]
"""

from __future__ import annotations

import argparse
import ast
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from benchlib import median_time

from pixforge.core.datagen import generate
from pixforge.primitives import NAMES, get

OFFICIAL_FUNCTIONS = {"pinknoise": "generate_rgb_noise", "primitives-s": "dead_leaves", "primitives-ps": "pink_leaves"}


def _official(path: Path):
    """The official drawing functions, executed from their source (the file imports lmdb/torchvision we skip)."""
    source = (path / "pretrain" / "noise_dataset.py").read_text()
    tree = ast.parse(source)
    keep = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    import cv2

    namespace = {"np": np, "cv2": cv2}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(path), "exec"), namespace)

    def run(name):
        fn = namespace[OFFICIAL_FUNCTIONS[name]]
        if name == "pinknoise":
            return lambda: namespace["renormalize"](fn((256, 256))[0])
        return lambda: fn((256, 256, 3))

    return run


def _emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, default=None, help="checkout of FriedRonaldo/Primitives-PS")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--workers-images", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    official = None
    if args.official is not None and (args.official / "pretrain" / "noise_dataset.py").is_file():
        official = _official(args.official)
    cpu = torch.device("cpu")
    for size in args.sizes:
        for name in NAMES:
            model = get(name)
            counter = iter(range(10**9))
            ours = median_time(lambda m=model, c=counter, s=size: m.sample(0, [next(c)], s, cpu), args.images)
            ref = None
            if official is not None and size == 256 and name in OFFICIAL_FUNCTIONS:
                ref = median_time(official(name), args.images)
            base = dict(size=size, reference="official noise_dataset.py (NumPy + OpenCV, 1 process)",
                        reference_images_per_s=round(1 / ref, 2) if ref else None)
            _emit(name=f"{name}/1-process", device="cpu", median_s=round(ours, 5), images_per_s=round(1 / ours, 2),
                  ratio=round(ref / ours, 2) if ref else None, hours_for_1_3M=round(1.3e6 * ours / 3600, 1), **base)
            with tempfile.TemporaryDirectory() as tmp:
                summary = generate(model, tmp, n=args.workers_images, size=size, workers=2, show_progress=False)
            rate = summary["images_per_s"]
            _emit(name=f"{name}/generate-2-workers-png", device="cpu", median_s=round(1 / rate, 5),
                  images_per_s=rate, ratio=round(rate * ref, 2) if ref else None,
                  hours_for_1_3M=round(1.3e6 / rate / 3600, 1), **base)
            if torch.cuda.is_available():
                gpu = torch.device("cuda")
                batched = get(name, batch=64)
                batched.sample(0, range(64), size, gpu)
                torch.cuda.synchronize()
                start = time.perf_counter()
                for k in range(4):
                    batched.sample(0, range(64 * k, 64 * (k + 1)), size, gpu)
                torch.cuda.synchronize()
                per = (time.perf_counter() - start) / 256
                _emit(name=f"{name}/cuda-batch-64", device="cuda", median_s=round(per, 6),
                      images_per_s=round(1 / per, 1), ratio=round(ref / per, 2) if ref else None,
                      hours_for_1_3M=round(1.3e6 * per / 3600, 2), **base)


if __name__ == "__main__":
    main()
