"""The paper's linear-probe result ("Learning to See by Looking at Noise", Baradad et al. 2021) at a CPU scale.

Claim checked: every procedural pretraining beats a random-init encoder under a linear probe, and
StyleGAN-Oriented and Spectrum+Color+WMM come out ahead of the dead leaves.

For each model: a fixed set of --n images generated once at --size px (npz shards, `generate`: the same images
for every run, and generation costs are kept out of the training budget: StyleGAN-Oriented makes ~2-4 images/s on
one core here, against ~100 images/s that a 32 px ResNet-18 step consumes); then `pretrain` (ResNet-18, --method,
the SAME --steps and --batch for every model, one thread per run, --jobs runs at a time); then `linear-eval` of each
encoder and of a random-init ResNet-18 (the baseline) on Fashion-MNIST (first --probe-train training images, the
10,000 test images; the official lr 30 / 100 epochs / x0.1 at 60, 80 schedule on cached centre-crop features,
`--no-augment`). Writes OUT/results.json and prints a markdown table. Finished steps are skipped on a re-run
(generated images, runs with encoder.safetensors, probes with their JSON), so an interrupted command is finished by
running it again.

    python packages/spectra/examples/pretrain_probe.py --out /tmp/pretrain-probe            # defaults below
    python packages/spectra/examples/pretrain_probe.py --out DIR --steps 20 --n 256 --probe-train 2000  # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("dead-leaves-shapes", "spectrum-color-wmm", "stylegan-oriented")


def run_jobs(commands: list[tuple[str, list[str], Path]], jobs: int) -> dict[str, float]:
    """Run (name, argv, log file) commands, `jobs` at a time, one thread each; returns wall seconds per name."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    pending, running, seconds = list(commands), {}, {}
    while pending or running:
        while pending and len(running) < jobs:
            name, argv, log = pending.pop(0)
            log.parent.mkdir(parents=True, exist_ok=True)
            print(f"[{time.strftime('%H:%M:%S')}] start {name}", flush=True)
            running[name] = (subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env),
                             time.time(), log)
        time.sleep(2)
        for name, (proc, start, log) in list(running.items()):
            if proc.poll() is not None:
                del running[name]
                seconds[name] = round(time.time() - start, 1)
                print(f"[{time.strftime('%H:%M:%S')}] done  {name} ({seconds[name]:.0f} s, exit {proc.returncode})",
                      flush=True)
                if proc.returncode:
                    raise SystemExit(f"{name} failed (exit {proc.returncode}); see {log}")
    return seconds


def probe_worker(encoder: str, out: str, size: int, train: int, epochs: int, seed: int) -> None:
    """One linear evaluation (run in its own process, one thread): `encoder` is a run directory or 'random'."""
    import torch

    from pixforge.spectra import lineval

    torch.set_num_threads(1)
    source = dict(arch="random-resnet18") if encoder == "random" else dict(run=encoder)
    start = time.time()
    report = json.loads(lineval.linear_eval(**source, data="fashion-mnist", size=size, epochs=epochs, augment=False,
                                            max_samples=train, seed=seed, device="cpu", quiet=True))
    report["seconds"] = round(time.time() - start, 1)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2) + "\n")


def pretrain_summary(run: Path) -> dict:
    """Steps, wall seconds (first to last logged step, scaled to all steps) and the last losses of a finished run."""
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last, steps = metrics[-1], len(metrics)
    seconds = (last["time"] - metrics[0]["time"]) * steps / max(1, steps - 1)
    tail = metrics[-max(1, steps // 10):]  # the last 10 % of the steps, averaged
    avg = {k: round(sum(m[k] for m in tail) / len(tail), 4) for k in ("loss", "align", "uniform", "acc1")
           if k in last}
    return {"steps": last["step"], "seconds": round(seconds, 1), **{f"final_{k}": v for k, v in avg.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="work folder: data/, runs/, probes/, results.json")
    parser.add_argument("--models", default=",".join(MODELS), help="image models, comma-separated")
    parser.add_argument("--n", type=int, default=1600, help="images generated per model")
    parser.add_argument("--size", type=int, default=32, help="generated, pretraining and probe size (px)")
    parser.add_argument("--method", default="alignunif", choices=("alignunif", "mocov2"))
    parser.add_argument("--steps", type=int, default=300, help="pretraining steps, the same for every model")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="processes at a time (one thread each)")
    parser.add_argument("--probe-train", type=int, default=10000, help="Fashion-MNIST training images for the probe")
    parser.add_argument("--probe-epochs", type=int, default=100)
    parser.add_argument("--probe-worker", nargs=2, metavar=("ENCODER", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe_worker:
        return probe_worker(*args.probe_worker, args.size, args.probe_train, args.probe_epochs, args.seed)

    out = Path(args.out)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    cli = [sys.executable, "-m", "pixforge.spectra.cli"]
    started = time.time()

    # 1. Data: --n images per model, generated once (re-runs skip what exists).
    shards = -(-args.n // 400)
    run_jobs([(f"generate {m}", [str(a) for a in (*cli, "generate", m, "--n", args.n, "--size", args.size, "--seed",
                                                  args.seed, "--out", out / "data" / m, "--format", "npz-shards",
                                                  "--per-shard", 400, "--quiet")],
               out / "logs" / f"generate-{m}.log")
              for m in models if len(list((out / "data" / m).glob("shard-*.npz"))) < shards], args.jobs)

    # 2. Pretraining: the same steps, batch and options for every model.
    runs = {m: out / "runs" / m for m in models}
    todo = [(f"pretrain {m}", [*cli, "pretrain", "--data", out / "data" / m, "--out", runs[m], "--arch", "resnet18",
                               "--method", args.method, "--size", args.size, "--gen-size", args.size,
                               "--batch", args.batch, "--steps", args.steps, "--seed", args.seed, "--threads", 1,
                               "--device", "cpu", "--ckpt-every", 100, "--sample-every", args.steps, "--quiet",
                               *(["--resume"] if (runs[m] / "checkpoints").is_dir() else [])],
             out / "logs" / f"pretrain-{m}.log")
            for m in models if not (runs[m] / "encoder.safetensors").is_file()]
    run_jobs([(name, [str(a) for a in argv], log) for name, argv, log in todo], args.jobs)

    # 3. Linear probes: the random-init baseline and every run.
    encoders = {"random-init": "random", **{m: str(runs[m]) for m in models}}
    probes = {name: out / "probes" / f"{name}.json" for name in encoders}
    run_jobs([(f"probe {name}", [sys.executable, __file__, "--out", str(out), "--size", str(args.size),
                                 "--probe-train", str(args.probe_train), "--probe-epochs", str(args.probe_epochs),
                                 "--seed", str(args.seed),
                                 "--probe-worker", encoders[name], str(probes[name])],
               out / "logs" / f"probe-{name}.log") for name in encoders if not probes[name].is_file()], args.jobs)

    # 4. Results.
    rows = []
    for name in encoders:
        probe = json.loads(probes[name].read_text())
        row = {"model": name, "top1": probe["top1"], "top5": probe["top5"], "probe_seconds": probe.get("seconds"),
               "probe_train": probe["train"], "probe_val": probe["val"]}
        if name != "random-init":
            row.update(pretrain_summary(runs[name]))
        rows.append(row)
    base = rows[0]["top1"]
    for row in rows:
        row["gain_over_random"] = round(row["top1"] - base, 3)
    results = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
               "settings": {k: v for k, v in vars(args).items() if k != "probe_worker"},
               "load_average": os.getloadavg(), "wall_seconds": round(time.time() - started, 1), "rows": rows}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nResNet-18, {args.method}, {args.steps} steps x {args.batch} images at {args.size} px on {args.n} images "
          f"per model; linear probe on Fashion-MNIST ({rows[0]['probe_train']} train / {rows[0]['probe_val']} test)\n")
    print("| pretraining data | pretrain steps | pretrain min (1 thread) | final loss (align / uniform) "
          "| probe top-1 % | top-5 % | top-1 vs random init |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        loss = (f"{row['final_loss']:.3f} ({row['final_align']:.3f} / {row['final_uniform']:.3f})"
                if "final_align" in row else f"{row['final_loss']:.3f}" if "final_loss" in row else "—")
        minutes = f"{row['seconds'] / 60:.1f}" if "seconds" in row else "—"
        print(f"| {row['model']} | {row.get('steps', 0)} | {minutes} | {loss} | {row['top1']:.2f} | {row['top5']:.2f} "
              f"| {row['gain_over_random']:+.2f} |")
    print(f"\nwrote {out / 'results.json'}")


if __name__ == "__main__":
    main()
