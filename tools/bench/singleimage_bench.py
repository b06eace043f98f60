"""Single-image generation: PetsGAN against SinGAN on the same image and device, and PetsGAN's time goal.

The goal (PetsGAN paper): training PetsGAN takes at most 1/4 of SinGAN's wall time, both at their default iteration
counts (SinGAN 2000 per scale; PetsGAN 2000 / 5000 / 5000 for Warmup_G / Warmup_F / joint), same image, same device.
Those schedules take hours on a CPU, so this script trains both with `--steps` iterations per SinGAN scale and per
PetsGAN phase (`pixforge.singleimage.train.train` itself, each method in a child process) and EXTRAPOLATES: the
median step time of each scale / phase (from the step timestamps in metrics.jsonl, the first two of each dropped)
times the default iteration count, summed; the fixed costs (setup, sample grids, checkpoints) are left out of the
extrapolation and reported with the measured runs.

Per-step work is the official codes' (checked against tamarott/SinGAN and zhangzc21/PetsGAN main.py): SinGAN 3 D
(WGAN-GP) + 3 G steps per iteration; PetsGAN Warmup_G one D_G + one G step (batch 32, paper; official gan_batch 8 x
5000 steps, main.py:881/897), Warmup_F one F step, joint one D + one G/IR step at batch 1 (main.py:596-632) plus, in
the paper form, Eq. 6's D_G + G step (supp. Alg. 1). PetsGAN runs with the default `--prior none`: Warmup_G then has
the per-step work of a run with an external prior (the prior only adds samples to D_G's data set, a setup cost).

Image: scikit-image's chelsea, its longer side resized to `--size` (at least 64: PetsGAN's layout needs 10 px).
SinGAN: --max-size = --size, --min-size min(25, shorter side); PetsGAN: --max-size = --size, --downscale 8 from
160 px up, else 4 (the paper uses 8 at 256 px). Output, one JSON line each:

    kind "scale" / "phase"   per SinGAN scale / PetsGAN phase: its image size, median step time, iterations/s,
                             the extrapolated time of the default count
    kind "run"               per method: measured wall time of the short run (train() call), steps, peak memory
                             (the child's peak RSS; on CUDA also torch's peak allocation), extrapolated default-schedule
                             time
    kind "goal"              the extrapolated PetsGAN / SinGAN wall-time ratio, whether it meets <= 1/4, the load
                             average before and after (other processes share the CPU: rerun on a quiet machine)

    OMP_NUM_THREADS=1 python tools/bench/singleimage_bench.py [--size 64] [--steps 6] [--device cpu]
    python tools/bench/singleimage_bench.py --size 250 --steps 30 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULTS = {"singan": 2000, "G": 2000, "F": 5000, "joint": 5000}  # the papers' iteration counts
PHASES = ("G", "F", "joint")
GOAL = 0.25


def _train(method: str, image: str, out: str, size: int, steps: int, device: str) -> dict:
    """One short training run (call it in a fresh process, see `_child`): its wall time and peak memory."""
    import torch

    from pixforge.singleimage.train import train

    if method == "singan":
        options = {"iters": steps, "min_size": min(25, *Image.open(image).size)}
    else:
        options = {"warmup_g": steps, "warmup_f": steps, "joint": steps, "downscale": 8 if size >= 160 else 4}
    start = time.perf_counter()
    train(image, out, method=method, max_size=size, log_every=1, device=device, quiet=True, **options)
    wall = time.perf_counter() - start
    result = {"wall_s": wall, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available() and device.startswith("cuda"):
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def _child(method: str, image: str, out: str, size: int, steps: int, device: str) -> dict:
    """`_train` in a child process (this script with --child), so that its peak RSS is its own."""
    cmd = [sys.executable, __file__, "--child", method, image, out, "--size", str(size), "--steps", str(steps),
           "--device", device]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{method} run failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _step_medians(rows: list[dict], key: str) -> dict:
    """{scale or phase: median time between consecutive steps of that group, the first two dropped}."""
    groups: dict = {}
    for prev, row in zip(rows, rows[1:], strict=False):
        if row[key] == prev[key]:
            groups.setdefault(row[key], []).append(row["time"] - prev["time"])
    return {k: statistics.median(v[2:] or v) for k, v in groups.items()}


def _emit(row: dict) -> None:
    print(json.dumps(row), flush=True)


def main() -> None:
    from pixforge.core.io import embedded_images, write_image
    from pixforge.core.loop import read_metrics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="longer side of the training image")
    parser.add_argument("--steps", type=int, default=6, help="iterations per SinGAN scale and per PetsGAN phase")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "IMAGE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_train(*args.child, args.size, args.steps, args.device)))
        return
    if args.steps < 4:
        parser.error("--steps must be at least 4 (the first two steps of each scale/phase are not timed)")
    photo = Image.fromarray(embedded_images(["chelsea"])[0])
    scale = args.size / max(photo.size)
    base = {"device": args.device, "size": args.size, "steps": args.steps,
            "threads": os.environ.get("OMP_NUM_THREADS", "unset")}
    load_before = round(os.getloadavg()[0], 2)
    totals = {}
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "chelsea.png"
        write_image(image, np.asarray(photo.resize((round(photo.width * scale), round(photo.height * scale)),
                                                   Image.Resampling.BICUBIC)))
        for method in ("singan", "petsgan"):
            out = Path(tmp) / method
            run = _child(method, str(image), str(out), args.size, args.steps, args.device)
            sizes = json.loads((out / "config.json").read_text())["sizes"]
            key = "scale" if method == "singan" else "phase"
            extrapolated = 0.0
            for group, median in sorted(_step_medians(read_metrics(out / "metrics.jsonl"), key).items()):
                name = int(group) if method == "singan" else PHASES[int(group)]
                count = DEFAULTS["singan" if method == "singan" else name]
                extrapolated += median * count
                _emit({"kind": key, "method": method, **base, key: name,
                       "image": sizes[int(group)] if method == "singan" else sizes,
                       "median_step_s": round(median, 5), "iters_per_s": round(1 / median, 3),
                       "default_iters": count, "extrapolated_s": round(median * count, 1)})
            totals[method] = extrapolated
            steps = args.steps * (len(sizes) if method == "singan" else len(PHASES))
            _emit({"kind": "run", "method": method, **base, "measured_wall_s": round(run["wall_s"], 2),
                   "measured_steps": steps, "peak_rss_mib": round(run["peak_rss_mib"], 1),
                   **({"cuda_peak_mib": round(run["cuda_peak_mib"], 1)} if "cuda_peak_mib" in run else {}),
                   "extrapolated_default_s": round(extrapolated, 1)})
    ratio = totals["petsgan"] / totals["singan"]
    _emit({"kind": "goal", **base, "petsgan_over_singan_wall": round(ratio, 4), "goal": GOAL,
           "meets_goal": ratio <= GOAL, "extrapolated": True,
           "note": f"step medians x default iteration counts at {args.size} px (SinGAN 2000 per scale; PetsGAN "
                   "2000/5000/5000), setup and sample/checkpoint costs left out",
           "load_before": load_before, "load_after": round(os.getloadavg()[0], 2)})


if __name__ == "__main__":
    main()
