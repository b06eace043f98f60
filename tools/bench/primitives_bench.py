"""pixforge-primitives generation speed vs the official Primitives-PS synthesizer, same machine, same run.

The official code is `pretrain/noise_dataset.py` of FriedRonaldo/Primitives-PS (`--official PATH` to a checkout):
its drawing functions are read from the file and run with NumPy + OpenCV in this process, each called exactly as
its dataset calls it for one 256-pixel image (`pink_leaves()`, `dead_leaves()`, `renormalize(generate_rgb_noise()
[0])`; it draws 256-pixel images only, uint8 coordinates), seeded once with `np.random.seed(0)`. pixforge is
`sample(0, [i], size, cpu)` with one torch thread, i.e. one image as `generate` draws it. Neither side encodes
or converts anything: each returns its own array (official float64 for the Primitives models, uint8 for
PinkNoise; pixforge uint8).

Timing: `--rounds` rounds; in each, the two sides alternate call by call (`--images` calls each, the first side
rotating), and each side's median per-image time of the round is kept. Reported: the median over rounds of those
medians, their spread (min-max over rounds), the median of the per-round ratios (official / pixforge: > 1 means
pixforge is faster), and the 1-minute load average before and after. Also pixforge `generate` with 2 worker
processes writing PNG files (one run, not alternated) and CUDA batches when a GPU is present. One JSON line per
case.

    python tools/bench/primitives_bench.py --official ~/Primitives-PS [--sizes 128 256] [--rounds 7] [--images 20]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from benchlib import alternating_medians, median_time

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


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _alternated(ours, official, rounds: int, images: int) -> dict:
    """The alternating-rounds timing of pixforge and the official function (see the module docstring)."""
    load_before = _load()
    medians = alternating_medians({"pixforge": ours, "official": official}, rounds, images)
    ratios = [ref / mine for ref, mine in zip(medians["official"], medians["pixforge"], strict=True)]
    mine, ref = statistics.median(medians["pixforge"]), statistics.median(medians["official"])
    return dict(median_s=round(mine, 5), images_per_s=round(1 / mine, 1),
                rounds_s=[round(min(medians["pixforge"]), 5), round(max(medians["pixforge"]), 5)],
                reference_median_s=round(ref, 5), reference_images_per_s=round(1 / ref, 1),
                reference_rounds_s=[round(min(medians["official"]), 5), round(max(medians["official"]), 5)],
                ratio=round(statistics.median(ratios), 2), ratio_range=[round(min(ratios), 2), round(max(ratios), 2)],
                rounds=rounds, images_per_round=images, load_before=load_before, load_after=_load())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, default=None, help="checkout of FriedRonaldo/Primitives-PS")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (ours vs official)")
    parser.add_argument("--images", type=int, default=20, help="images per side and round")
    parser.add_argument("--workers-images", type=int, default=200, help="images for the 2-worker generate run "
                        "(0: skip it)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    official = None
    if args.official is not None:
        if not (args.official / "pretrain" / "noise_dataset.py").is_file():
            parser.error(f"--official {args.official}: no pretrain/noise_dataset.py there")
        official = _official(args.official)
        np.random.seed(0)
    cpu = torch.device("cpu")
    reference = "official noise_dataset.py (NumPy + OpenCV, 1 process)"
    for size in args.sizes:
        for name in NAMES:
            model = get(name)
            counter = iter(range(10**9))

            def ours(m=model, c=counter, s=size):
                return m.sample(0, [next(c)], s, cpu)

            if official is not None and size == 256 and name in OFFICIAL_FUNCTIONS:
                timing = _alternated(ours, official(name), args.rounds, args.images)
                _emit(name=f"{name}/1-process", device="cpu", size=size, reference=reference, **timing,
                      hours_for_1_3M=round(1.3e6 * timing["median_s"] / 3600, 1))
            else:
                load_before = _load()
                per = median_time(ours, args.rounds * args.images)
                _emit(name=f"{name}/1-process", device="cpu", size=size, median_s=round(per, 5),
                      images_per_s=round(1 / per, 1), reference=None, hours_for_1_3M=round(1.3e6 * per / 3600, 1),
                      load_before=load_before, load_after=_load())
            if args.workers_images > 0:
                load_before = _load()
                with tempfile.TemporaryDirectory() as tmp:
                    summary = generate(model, tmp, n=args.workers_images, size=size, workers=2, show_progress=False)
                rate = summary["images_per_s"]
                _emit(name=f"{name}/generate-2-workers-png", device="cpu", size=size, median_s=round(1 / rate, 5),
                      images_per_s=rate, hours_for_1_3M=round(1.3e6 / rate / 3600, 1), load_before=load_before,
                      load_after=_load())
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
                _emit(name=f"{name}/cuda-batch-64", device="cuda", size=size, median_s=round(per, 6),
                      images_per_s=round(1 / per, 1), hours_for_1_3M=round(1.3e6 * per / 3600, 2))


if __name__ == "__main__":
    main()
