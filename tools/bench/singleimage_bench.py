"""Single-image generation: training step times of SinGAN (per scale) and PetsGAN (per phase).

`pixforge.singleimage.train.train` itself on a scikit-image photo (chelsea, resized so that its longer side is
`--size`), `--steps` iterations per SinGAN scale and per PetsGAN phase, timed from the step timestamps in
metrics.jsonl (median of the step-to-step differences, the first two of each scale/phase dropped). One JSON line per
scale / phase: method, device, size, scale or phase, its image size, median_s, and the projected time of the official
schedule (2000 iterations a scale; 2000 / 5000 / 5000 PetsGAN steps).

    OMP_NUM_THREADS=1 python tools/bench/singleimage_bench.py [--size 64] [--steps 10] [--device cpu]
    python tools/bench/singleimage_bench.py --size 250 --steps 30 --device cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from pixforge.core.io import embedded_images, write_image
from pixforge.core.loop import read_metrics
from pixforge.singleimage.train import train

OFFICIAL = {"singan": 2000, "G": 2000, "F": 5000, "joint": 5000}


def _medians(rows: list[dict], key: str) -> dict:
    groups: dict = {}
    for prev, row in zip(rows, rows[1:], strict=False):
        if row[key] == prev[key]:
            groups.setdefault(row[key], []).append(row["time"] - prev["time"])
    return {k: statistics.median(v[2:] or v) for k, v in groups.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="longer side of the training image")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", nargs="+", default=["singan", "petsgan"])
    args = parser.parse_args()
    photo = Image.fromarray(embedded_images(["chelsea"])[0])
    w, h = photo.size
    scale = args.size / max(w, h)
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "chelsea.png"
        write_image(image, np.asarray(photo.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC)))
        if "singan" in args.methods:
            run = train(str(image), str(Path(tmp) / "singan"), method="singan", iters=args.steps, log_every=1,
                        max_size=args.size, min_size=min(25, args.size), device=args.device, quiet=True)
            sizes = json.loads((run / "config.json").read_text())["sizes"]
            for n, median in sorted(_medians(read_metrics(run / "metrics.jsonl"), "scale").items()):
                print(json.dumps({"method": "singan", "device": args.device, "size": args.size, "scale": int(n),
                                  "image": sizes[int(n)], "median_s": round(median, 5),
                                  "official_schedule_s": round(median * OFFICIAL["singan"], 1)}))
        if "petsgan" in args.methods:
            run = train(str(image), str(Path(tmp) / "petsgan"), method="petsgan", warmup_g=args.steps,
                        warmup_f=args.steps, joint=args.steps, log_every=1, max_size=args.size,
                        downscale=8 if args.size >= 80 * 2 else 4, device=args.device, quiet=True)
            sizes = json.loads((run / "config.json").read_text())["sizes"]
            for phase, median in sorted(_medians(read_metrics(run / "metrics.jsonl"), "phase").items()):
                name = ("G", "F", "joint")[int(phase)]
                print(json.dumps({"method": "petsgan", "device": args.device, "size": args.size, "phase": name,
                                  "image": sizes, "median_s": round(median, 5),
                                  "official_schedule_s": round(median * OFFICIAL[name], 1)}))


if __name__ == "__main__":
    main()
