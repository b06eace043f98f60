"""The paper's result at a scale a CPU runs: a StyleGAN2 pretrained on Primitives-PS finetunes on a 100-shot target
better than the same network trained from scratch on it (Baek & Shim, CVPR 2022, §4).

    OMP_NUM_THREADS=1 python packages/primitives/examples/finetune_probe.py --out ps-probe --pretrain-kimg 2 --kimg 2

1. writes the target: 100 random 32 x 32 crops of one of scikit-image's photos (`--photo`, shrunk by `--shrink`
   so that a crop shows structure) as PNGs under OUT/target;
2. pretrains a tiny StyleGAN2 (--cbase 2048 --cmax 64 --map 2 --batch 16, 32 px) on Primitives-PS, drawn on the fly,
   for --pretrain-kimg kimg (its SWD is measured against the target, so its last point is where finetuning starts);
3. finetunes it on the target (`finetune --run`) and trains the same network from scratch on the target
   (`pretrain TARGET` with the finetuning's --d-reg-interval 16), both for --kimg kimg, same seed and options,
   two at a time, SWD on 100 images every kimg;
4. computes the filter diversity (`filter-diversity`, paper Table 4) of the pretrained, finetuned and scratch runs;
5. writes OUT/finetune_probe.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CLI = [sys.executable, "-m", "pixforge.primitives.cli"]


def write_target(folder: Path, photo: str, shrink: int, n: int, size: int, seed: int) -> None:
    from pixforge.core.io import embedded_images
    from pixforge.export.images import write_image

    image = embedded_images([photo])[0].astype(np.float32)
    h, w = (image.shape[0] // shrink) * shrink, (image.shape[1] // shrink) * shrink
    small = image[:h, :w].reshape(h // shrink, shrink, w // shrink, shrink, 3).mean(axis=(1, 3))
    small = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        y, x = rng.integers(0, small.shape[0] - size + 1), rng.integers(0, small.shape[1] - size + 1)
        write_image(folder / f"{i:04d}.png", small[y:y + size, x:x + size])


def newest_run(parent: Path) -> Path:
    runs = sorted(p for p in parent.glob("0*") if p.is_dir())
    if not runs:
        sys.exit(f"no run under {parent}")
    return runs[-1]


def swd_series(run: Path) -> list[tuple[float, float]]:
    path = run / "metric-swd.jsonl"
    points = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        record = json.loads(line)
        values = [v for k, v in record["results"].items() if not k.startswith("num_")]
        points.append((round(record["kimg"], 3), float(values[0])))
    return points


def sec_per_kimg(run: Path) -> float:
    values = [json.loads(line).get("sec_per_kimg") for line in (run / "stats.jsonl").read_text().splitlines()]
    values = [v for v in values if isinstance(v, (int, float))]
    return float(np.median(values)) if values else float("nan")


def run_all(jobs: list[list[str]], env: dict[str, str]) -> None:
    procs = [subprocess.Popen(cmd, env=env) for cmd in jobs]
    for proc in procs:
        if proc.wait():
            sys.exit(f"failed ({proc.returncode}): {' '.join(proc.args)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="ps-probe")
    parser.add_argument("--photo", default="chelsea")
    parser.add_argument("--shrink", type=int, default=3)
    parser.add_argument("--shots", type=int, default=100)
    parser.add_argument("--res", type=int, default=32)
    parser.add_argument("--pretrain-kimg", type=float, default=2)
    parser.add_argument("--kimg", type=float, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    target = out / "target"
    if not target.is_dir():
        write_target(target, args.photo, args.shrink, args.shots, args.res, args.seed)
    net = ["--batch", "16", "--cbase", "2048", "--cmax", "64", "--map", "2", "--seed", str(args.seed),
           "--tick", "1", "--snap", "1", "--metrics", "swd", "--metric-images", str(args.shots),
           "--device", "cpu", "--quiet"]
    timings = {}

    # 2. pretraining (alone: one training process + one generating worker = two processes)
    start = time.time()
    if not (out / "pretrain").is_dir():
        run_all([[*CLI, "pretrain", "primitives-ps", str(out / "pretrain"), "--res", str(args.res), "--kimg",
                  str(args.pretrain_kimg), "--metric-data", str(target), "--workers", "1", *net]], env)
    timings["pretrain_s"] = time.time() - start
    pretrained = newest_run(out / "pretrain")

    # 3. finetune and from scratch, side by side (one process each, data read in the main process)
    start = time.time()
    common = ["--kimg", str(args.kimg), "--workers", "0", *net]
    jobs = []
    if not (out / "finetune").is_dir():
        jobs.append([*CLI, "finetune", str(pretrained), str(target), str(out / "finetune"), *common])
    if not (out / "scratch").is_dir():
        jobs.append([*CLI, "pretrain", str(target), str(out / "scratch"), "--res", str(args.res),
                     "--d-reg-interval", "16", *common])
    run_all(jobs, env)
    timings["finetune_and_scratch_s"] = time.time() - start
    runs = {"pretrained": pretrained, "finetuned": newest_run(out / "finetune"), "scratch": newest_run(out / "scratch")}

    # 4. filter diversity
    fd = {}
    for name, run in runs.items():
        path = out / f"fd-{name}.json"
        if not path.is_file():
            subprocess.run([*CLI, "filter-diversity", "--run", str(run), "--out", str(path)], env=env, check=True,
                           stdout=subprocess.DEVNULL)
        fd[name] = json.loads(path.read_text())

    # 5. report
    result = {"args": vars(args), "timings": timings, "runs": {}}
    for name, run in runs.items():
        result["runs"][name] = {"path": str(run), "swd": swd_series(run), "sec_per_kimg": sec_per_kimg(run),
                                "filter_diversity": fd[name]}
    (out / "finetune_probe.json").write_text(json.dumps(result, indent=1))
    print(table(result))


def _fd(record: dict, net: str) -> str:
    value = record.get(net, {})
    value = value.get("mean") if isinstance(value, dict) else value
    return f"{value:.5f}" if isinstance(value, (int, float)) else "?"


def table(result: dict) -> str:
    kimgs = sorted({k for r in result["runs"].values() for k, _ in r["swd"]})
    head = "| run | " + " | ".join(f"SWD@{k:g}" for k in kimgs) + " | final SWD | FD D | FD G | s/kimg |"
    lines = [head, "|" + "---|" * (len(kimgs) + 5)]
    for name, r in result["runs"].items():
        by = dict(r["swd"])
        cells = [f"{by[k]:.2f}" if k in by else "" for k in kimgs]
        final = f"{r['swd'][-1][1]:.2f}" if r["swd"] else "?"
        fd = r["filter_diversity"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {final} | {_fd(fd, 'D')} | {_fd(fd, 'G')} | "
                     f"{r['sec_per_kimg']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
