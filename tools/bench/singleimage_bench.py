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

    kind "round"             per round (`--rounds`, the methods alternating: SinGAN first in rounds 1, 3, ...,
                             PetsGAN first in 2, 4, ..., so that load from other processes hits both alike): each
                             method's extrapolated time from that round's steps, their ratio, the load average
    kind "scale" / "phase"   per SinGAN scale / PetsGAN phase: its image size, the median of its step times pooled
                             over the rounds (and how many), iterations/s, the extrapolated time of the default count
    kind "run"               per method: median measured wall time of the short run (train() call) over the rounds,
                             steps, peak memory (the children's peak RSS; on CUDA also torch's peak allocation),
                             extrapolated default-schedule time
    kind "goal"              the extrapolated PetsGAN / SinGAN wall-time ratio from the pooled medians, the rounds'
                             ratios and their median, whether it meets <= 1/4, the load average before and after

    OMP_NUM_THREADS=1 python tools/bench/singleimage_bench.py [--size 64] [--steps 6] [--rounds 3] [--official]
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


def _train(method: str, image: str, out: str, size: int, steps: int, device: str, official: bool) -> dict:
    """One short training run (call it in a fresh process, see `_child`): its wall time and peak memory."""
    import torch

    from pixforge.singleimage.train import train

    if method == "singan":
        options = {"iters": steps, "min_size": min(25, *Image.open(image).size)}
    else:
        options = {"warmup_g": steps, "warmup_f": steps, "joint": steps, "downscale": 8 if size >= 160 else 4,
                   "official": official}
    start = time.perf_counter()
    train(image, out, method=method, max_size=size, log_every=1, device=device, quiet=True, **options)
    wall = time.perf_counter() - start
    result = {"wall_s": wall, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available() and device.startswith("cuda"):
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def _child(method: str, image: str, out: str, size: int, steps: int, device: str, official: bool) -> dict:
    """`_train` in a child process (this script with --child), so that its peak RSS is its own."""
    cmd = [sys.executable, __file__, "--child", method, image, out, "--size", str(size), "--steps", str(steps),
           "--device", device, *(["--official"] if official else [])]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{method} run failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _step_times(rows: list[dict], key: str) -> dict:
    """{scale or phase: the times between consecutive steps of that group, the first two dropped}."""
    groups: dict = {}
    for prev, row in zip(rows, rows[1:], strict=False):
        if row[key] == prev[key]:
            groups.setdefault(row[key], []).append(row["time"] - prev["time"])
    return {k: v[2:] or v for k, v in groups.items()}


def _extrapolate(method: str, medians: dict) -> float:
    """The default schedule's time from the per-group median step times."""
    return sum(m * DEFAULTS["singan" if method == "singan" else PHASES[int(g)]] for g, m in medians.items())


def _emit(row: dict) -> None:
    print(json.dumps(row), flush=True)


def main() -> None:
    from pixforge.core.io import embedded_images, write_image
    from pixforge.core.loop import read_metrics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="longer side of the training image")
    parser.add_argument("--steps", type=int, default=6, help="iterations per SinGAN scale and per PetsGAN phase")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of each method, alternating (SinGAN first in rounds 1, 3, ..., PetsGAN in 2, 4 ...)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--official", action="store_true",
                        help="PetsGAN in its official-code form (train --official: no phi in the joint phase)")
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "IMAGE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_train(*args.child, args.size, args.steps, args.device, args.official)))
        return
    if args.steps < 4:
        parser.error("--steps must be at least 4 (the first two steps of each scale/phase are not timed)")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    from benchlib import device_or_exit

    device_or_exit(parser, args.device)  # here, not in the first child: CUDA asked but absent is one line, exit 2
    photo = Image.fromarray(embedded_images(["chelsea"])[0])
    scale = args.size / max(photo.size)
    base = {"device": args.device, "size": args.size, "steps": args.steps, "rounds": args.rounds,
            "petsgan_official": args.official, "threads": os.environ.get("OMP_NUM_THREADS", "unset")}
    load_before = round(os.getloadavg()[0], 2)
    methods = ("singan", "petsgan")
    times: dict = {m: {} for m in methods}  # method -> group -> step times pooled over the rounds
    runs: dict = {m: [] for m in methods}
    sizes: dict = {}
    round_ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "chelsea.png"
        write_image(image, np.asarray(photo.resize((round(photo.width * scale), round(photo.height * scale)),
                                                   Image.Resampling.BICUBIC)))
        for r in range(args.rounds):
            order = methods if r % 2 == 0 else methods[::-1]
            load0, extrapolated = os.getloadavg()[0], {}
            for method in order:
                out = Path(tmp) / f"{method}-{r}"
                runs[method].append(_child(method, str(image), str(out), args.size, args.steps, args.device,
                                           args.official))
                sizes[method] = json.loads((out / "config.json").read_text())["sizes"]
                groups = _step_times(read_metrics(out / "metrics.jsonl"), "scale" if method == "singan" else "phase")
                for group, values in groups.items():
                    times[method].setdefault(group, []).extend(values)
                extrapolated[method] = _extrapolate(method, {g: statistics.median(v) for g, v in groups.items()})
            round_ratios.append(extrapolated["petsgan"] / extrapolated["singan"])
            _emit({"kind": "round", **base, "round": r + 1, "order": list(order),
                   "extrapolated_s": {m: round(v, 1) for m, v in extrapolated.items()},
                   "petsgan_over_singan_wall": round(round_ratios[-1], 4),
                   "load": [round(load0, 2), round(os.getloadavg()[0], 2)]})
    totals = {}
    for method in methods:
        key = "scale" if method == "singan" else "phase"
        medians = {g: statistics.median(v) for g, v in sorted(times[method].items())}
        for group, median in medians.items():
            name = int(group) if method == "singan" else PHASES[int(group)]
            count = DEFAULTS["singan" if method == "singan" else name]
            _emit({"kind": key, "method": method, **base, key: name,
                   "image": sizes[method][int(group)] if method == "singan" else sizes[method],
                   "median_step_s": round(median, 5), "timed_steps": len(times[method][group]),
                   "iters_per_s": round(1 / median, 3), "default_iters": count,
                   "extrapolated_s": round(median * count, 1)})
        totals[method] = _extrapolate(method, medians)
        steps = args.steps * (len(sizes[method]) if method == "singan" else len(PHASES))
        _emit({"kind": "run", "method": method, **base,
               "measured_wall_s": round(statistics.median(run["wall_s"] for run in runs[method]), 2),
               "measured_steps": steps, "peak_rss_mib": round(max(run["peak_rss_mib"] for run in runs[method]), 1),
               **({"cuda_peak_mib": round(max(run["cuda_peak_mib"] for run in runs[method]), 1)}
                  if "cuda_peak_mib" in runs[method][0] else {}),
               "extrapolated_default_s": round(totals[method], 1)})
    ratio = totals["petsgan"] / totals["singan"]
    _emit({"kind": "goal", **base, "petsgan_over_singan_wall": round(ratio, 4),
           "round_ratios": [round(x, 4) for x in round_ratios],
           "median_round_ratio": round(statistics.median(round_ratios), 4), "goal": GOAL,
           "meets_goal": ratio <= GOAL, "extrapolated": True,
           "note": f"step medians (pooled over the rounds) x default iteration counts at {args.size} px (SinGAN 2000 "
                   "per scale; PetsGAN 2000/5000/5000), setup and sample/checkpoint costs left out",
           "load_before": load_before, "load_after": round(os.getloadavg()[0], 2)})


if __name__ == "__main__":
    main()
