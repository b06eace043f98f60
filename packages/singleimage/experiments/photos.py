"""The PetsGAN paper's comparison (Table 1: PetsGAN vs SinGAN) at a scale a CPU runs: a few scikit-image photos.

For every photo (fitted to --side px on its longer side) and every method form it trains one run with the same
reduced schedule, in child processes (--jobs at a time, one torch thread each), then scores --n samples with
`pixforge.singleimage.metrics` (the no-download scores; SIFID too with --inception). It writes into OUT:

    data/<photo>.png            the training photos at --side px
    <photo>/<form>/             a normal run directory per photo and form (config.json, model.safetensors, ...)
    results.json                per photo and form: training wall and CPU seconds, sampling seconds, iterations,
                                size, scores; the load average before and after; the schedule
    results.md                  the same as a markdown table, with the per-form means over the photos
    grid-<photo>.png            a row per form: the photo, then --grid-samples samples (all resized to the photo's
                                fitted size)
    grid.png                    every photo's grid stacked (photo after photo), cells centred on white squares

Forms: singan; petsgan-official (`--official`); petsgan-paper (the paper's losses with `--prior none`);
petsgan-nophi (`--no-phi`, the paper's w/o-phi ablation); petsgan-sg2 (`--prior stylegan2 --prior-model M`, only
with --prior-model). Run from the repository root:

    OMP_NUM_THREADS=1 python packages/singleimage/experiments/photos.py --out /tmp/photos
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

PHOTOS = ("chelsea", "astronaut", "rocket")
FORMS = ("singan", "petsgan-official", "petsgan-paper", "petsgan-nophi", "petsgan-sg2")
SCORES = ("diversity_pixel_std", "diversity_pairwise_l1", "swd_patches", "sifid")


def form_options(form: str, args: argparse.Namespace) -> dict:
    """The `train` keyword arguments of one form under the shared schedule."""
    if form == "singan":
        return {"method": "singan", "iters": args.iters, "min_size": args.min_size}
    options = {"method": "petsgan", "warmup_g": args.warmup_g, "warmup_f": args.warmup_f, "joint": args.joint,
               "downscale": args.downscale, "batch_g": args.batch_g}
    if form == "petsgan-official":
        options["official"] = True
    elif form == "petsgan-nophi":
        options["no_phi"] = True
    elif form == "petsgan-sg2":
        options.update(prior="stylegan2", prior_model=args.prior_model)
    return options


def run_one(photo: str, form: str, image: str, out: str, options: dict, side: int, n: int, seed: int,
            inception: str | None) -> dict:
    """Train, time and score one (photo, form) in this (child) process; returns its result row."""
    import torch

    torch.set_num_threads(1)
    from pixforge.singleimage.metrics import metrics
    from pixforge.singleimage.sample import load_model
    from pixforge.singleimage.train import train

    wall, cpu = time.perf_counter(), time.process_time()
    run = train(image, out, max_size=side, seed=seed, device="cpu", threads=1, quiet=True, **options)
    train_wall, train_cpu = time.perf_counter() - wall, time.process_time() - cpu
    model = load_model(run)
    wall = time.perf_counter()
    model.sample(n, seed=seed)
    sample_s = time.perf_counter() - wall
    scores = metrics(str(run), n=n, seed=seed, inception=inception)
    config = json.loads((Path(run) / "config.json").read_text())
    if options["method"] == "singan":
        iterations = len(config["sizes"]) * options["iters"]
    else:
        iterations = (0 if options.get("no_phi") else options["warmup_g"]) + options["warmup_f"] + options["joint"]
    return {"photo": photo, "form": form, "run": str(run), "train_wall_s": round(train_wall, 1),
            "train_cpu_s": round(train_cpu, 1), "sample_s": round(sample_s, 3), "iterations": iterations,
            "size": list(model.sizes[-1]), **{k: scores.get(k) for k in SCORES}}


def fit_photo(name: str, side: int, path: Path) -> None:
    """scikit-image's photo NAME resized (bicubic) so that its longer side is SIDE px, written to PATH."""
    import numpy as np
    from PIL import Image

    from pixforge.core.io import embedded_images, write_image

    photo = Image.fromarray(embedded_images([name])[0])
    scale = side / max(photo.size)
    size = (round(photo.width * scale), round(photo.height * scale))
    write_image(path, np.asarray(photo.resize(size, Image.Resampling.BICUBIC)))


def grids(root: Path, photos: list[str], forms: list[str], rows: dict, count: int, seed: int) -> None:
    """grid-<photo>.png (a row per form: the photo, then COUNT samples) and grid.png (all of them stacked)."""
    import torch

    from pixforge.core.io import save_grid
    from pixforge.singleimage.data import load_image, resize
    from pixforge.singleimage.sample import load_model

    everything = []
    for photo in photos:
        picture = load_image(root / "data" / f"{photo}.png")
        cell = tuple(picture.shape[-2:])
        lines = []
        for form in forms:
            samples = load_model(rows[photo, form]["run"]).sample(count, seed=seed)
            lines.append(resize(torch.cat([picture, resize(samples, cell)]), cell))
        save_grid(torch.cat(lines).clamp(-1, 1), root / f"grid-{photo}.png", nrow=count + 1)
        everything += lines
    # the photos may differ in aspect: the combined grid centres every cell on a white square of the largest side
    side = max(max(line.shape[-2:]) for line in everything)
    padded = []
    for line in everything:
        h, w = line.shape[-2:]
        top, left = (side - h) // 2, (side - w) // 2
        padded.append(torch.nn.functional.pad(line, (left, side - w - left, top, side - h - top), value=1.0))
    save_grid(torch.cat(padded).clamp(-1, 1), root / "grid.png", nrow=count + 1)


def fmt(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def table(report: dict) -> str:
    """results.md: a row per photo and form, then the per-form means, then the wall-time ratios."""
    head = ("| photo | form | train wall s | train CPU s | iterations | size | " + " | ".join(SCORES) + " |\n"
            "|---|---|---:|---:|---:|---|" + "---:|" * len(SCORES))
    lines = [head]
    for r in report["rows"]:
        lines.append(f"| {r['photo']} | {r['form']} | {r['train_wall_s']:.0f} | {r['train_cpu_s']:.0f} | "
                     f"{r['iterations']} | {r['size'][0]}x{r['size'][1]} | "
                     + " | ".join(fmt(r[k]) for k in SCORES) + " |")
    for form, m in report["means"].items():
        lines.append(f"| **mean** | {form} | {m['train_wall_s']:.0f} | {m['train_cpu_s']:.0f} | | | "
                     + " | ".join(fmt(m[k]) for k in SCORES) + " |")
    lines.append("")
    for form, ratio in report["over_singan"].items():
        lines.append(f"- {form} / singan, mean training time: wall {ratio['wall']:.2f}, CPU {ratio['cpu']:.2f}")
    lines.append(f"- load average (1, 5, 15 min) before {report['load_before']}, after {report['load_after']}; "
                 f"total wall {report['total_wall_s']:.0f} s")
    return "\n".join(lines) + "\n"


def mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder (must not exist, or --overwrite)")
    parser.add_argument("--photos", nargs="+", default=list(PHOTOS), help="scikit-image photo names")
    parser.add_argument("--forms", nargs="+", default=list(FORMS[:4]), choices=FORMS)
    parser.add_argument("--side", type=int, default=64, help="longer side of every photo, px")
    parser.add_argument("--iters", type=int, default=50, help="SinGAN iterations per scale")
    parser.add_argument("--min-size", type=int, default=19, help="SinGAN coarsest side")
    parser.add_argument("--warmup-g", type=int, default=50)
    parser.add_argument("--warmup-f", type=int, default=125)
    parser.add_argument("--joint", type=int, default=125)
    parser.add_argument("--batch-g", type=int, default=8)
    parser.add_argument("--downscale", type=int, default=4)
    parser.add_argument("--prior-model", help="a pixforge-core StyleGAN2 run or checkpoint (form petsgan-sg2)")
    parser.add_argument("--inception", help="InceptionV3 weights (torchvision's as official SIFID, or FID's): SIFID")
    parser.add_argument("--n", type=int, default=16, help="samples scored per run")
    parser.add_argument("--grid-samples", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once (one thread each)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if "petsgan-sg2" in args.forms and not args.prior_model:
        parser.error("form petsgan-sg2 needs --prior-model")
    if "petsgan-sg2" in args.forms:  # the generator is read before anything is written
        from pixforge.core.stylegan2.generate import load_generator
        from pixforge.export.errors import PixforgeError

        try:
            load_generator(args.prior_model)
        except PixforgeError as err:
            parser.error(f"--prior-model: {err}")

    from pixforge.core.cli import output_dir

    root = output_dir(args.out, args.overwrite)
    load_before = [round(x, 2) for x in os.getloadavg()]
    start = time.perf_counter()
    for photo in args.photos:
        fit_photo(photo, args.side, root / "data" / f"{photo}.png")
    jobs = [(photo, form) for form in args.forms for photo in args.photos]
    # the longest runs first, so that the last job does not run alone
    order = {"petsgan-paper": 0, "petsgan-official": 1, "petsgan-sg2": 2, "singan": 3, "petsgan-nophi": 4}
    jobs.sort(key=lambda job: order[job[1]])
    rows = {}
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_one, photo, form, str(root / "data" / f"{photo}.png"), str(root / photo / form),
                               form_options(form, args), args.side, args.n, args.seed, args.inception): (photo, form)
                   for photo, form in jobs}
        for future, key in futures.items():
            rows[key] = future.result()
            r = rows[key]
            print(f"{key[0]:<10} {key[1]:<17} wall {r['train_wall_s']:7.1f} s  cpu {r['train_cpu_s']:7.1f} s  "
                  f"pixel std {fmt(r['diversity_pixel_std'])}  swd {fmt(r['swd_patches'])}", flush=True)
    grids(root, args.photos, args.forms, rows, args.grid_samples, args.seed)
    ordered = [rows[photo, form] for photo in args.photos for form in args.forms]
    means = {form: {k: mean([rows[photo, form][k] for photo in args.photos])
                    for k in ("train_wall_s", "train_cpu_s", *SCORES)} for form in args.forms}
    over = {}
    if "singan" in args.forms:
        for form in args.forms:
            if form != "singan":
                over[form] = {"wall": means[form]["train_wall_s"] / means["singan"]["train_wall_s"],
                              "cpu": means[form]["train_cpu_s"] / means["singan"]["train_cpu_s"]}
    schedule = {k: getattr(args, k) for k in ("side", "iters", "min_size", "warmup_g", "warmup_f", "joint", "batch_g",
                                              "downscale", "n", "seed", "jobs")}
    report = {"schedule": schedule, "rows": ordered, "means": means, "over_singan": over,
              "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()],
              "total_wall_s": round(time.perf_counter() - start, 1)}
    (root / "results.json").write_text(json.dumps(report, indent=2))
    (root / "results.md").write_text(table(report))
    print(table(report))
    return report


if __name__ == "__main__":
    main()
