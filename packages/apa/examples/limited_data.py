"""The paper's result at a scale a CPU runs: D overfits a few hundred images without augmentation (lambda_r -> 1,
quality stalls) and APA holds lambda_r near its target.

    python packages/apa/examples/limited_data.py --out apa-limited --kimg 6 --ada-kimg 10

trains noaug, apa, ada and ada+apa for the same kimg on the same 256 crops (32 px) of scikit-image's photos, with
the same small network and seed (p's adjustment speed scaled from 500 kimg per unit to --ada-kimg, so that p can
move within a CPU-sized run), then plots lambda_r, p and SWD over kimg for the four into OUT/limited_data.png and
writes the series to OUT/limited_data.json. `--jobs 2` trains two at a time (one thread each).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

AUGS = ("noaug", "apa", "ada", "ada+apa")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="apa-limited")
    parser.add_argument("--kimg", type=float, default=6)
    parser.add_argument("--ada-kimg", type=float, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--augs", default=",".join(AUGS))
    args = parser.parse_args()
    out = Path(args.out)
    data = out / "data"
    if not data.is_dir():
        from pixforge.apa.demo import _write_crops
        _write_crops(data)
    options = ["--kimg", str(args.kimg), "--ada-kimg", str(args.ada_kimg), "--batch", "16", "--cbase", "2048",
               "--cmax", "64", "--map", "2", "--tick", "0.5", "--snap", "2", "--metric-images", "256",
               "--device", "cpu", "--workers", "0", "--quiet"]
    pending, running = list(args.augs.split(",")), []
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // args.jobs))}
    while pending or running:
        while pending and len(running) < args.jobs:
            aug = pending.pop(0)
            cmd = [sys.executable, "-m", "pixforge.apa.cli", "train", str(data), str(out / aug), "--aug", aug, *options]
            if (out / aug).is_dir():
                cmd.append("--resume")
            running.append(subprocess.Popen(cmd, env=env))
        running[0].wait()
        if running[0].returncode:
            sys.exit(f"training failed: {running[0].args}")
        running.pop(0)
    plot(out, args.augs.split(","))


def plot(out: Path, augs: list[str]) -> None:
    from pixforge.apa.diagnose import read_run

    series = {}
    for aug in augs:
        run = sorted((out / aug).glob("0*"))[-1]
        series[aug] = read_run(run)
    (out / "limited_data.json").write_text(json.dumps(series, indent=1))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    for aug, s in series.items():
        axes[0].plot(s["kimg"], s["lambda_r"], label=aug)
        axes[1].plot(s["kimg"], s["p"], label=aug)
        points = s["metrics"].get("swd", [])
        axes[2].plot([k for k, _ in points], [v for _, v in points], marker="o", label=aug)
    axes[0].axhline(0.6, color="grey", linestyle=":")
    axes[0].set_title("lambda_r = E[sign(D(real))]")
    axes[1].set_title("p")
    axes[2].set_title("SWD x1e3 (lower is better)")
    for ax in axes:
        ax.set_xlabel("kimg")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(out / "limited_data.png", dpi=110)
    print(f"wrote {out / 'limited_data.png'} and {out / 'limited_data.json'}")


if __name__ == "__main__":
    main()
