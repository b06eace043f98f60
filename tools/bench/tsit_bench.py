"""TSIT: training it/s (AMP vs fp32), translation images/s (pixforge-run vs eager), widths' cost and gain.

Training: `pixforge.tsit.train.train` itself on a folder of scikit-image photos (batch 1, style transfer, perceptual
loss off), timed from the step timestamps in metrics.jsonl (median over the steps after `--warmup`); reference: the
fp32 run at the same size. Translation: the network call on one 2-image batch (content + style + noise), PyTorch
eager fp32 (translate's graph as a `TorchSession`, spectral norms folded) as the reference vs the exported model
under pixforge-run's session (fp16 + IOBinding on CUDA, fp32 on the CPU). One JSON line per case:
name, device, size, median_s, throughput, reference, reference_median_s, ratio (reference time / case time).

`--widths 64 32 16`: instead, PyTorch eager translation of a 2-image batch at each `--sizes` for each width (ngf, the
official 8 levels; the first width is the reference), with the generator's parameter count. `--quality-steps N`:
instead, the same-budget training of each width (N steps of arbitrary style transfer, scikit-image photos ->
textures at `--quality-size` px, 6 levels, batch 2, official optimiser, perceptual loss off: `--perceptual off`, as
measured before pfr18 existed), one JSON line per width (median step time, generator parameters, mean of the last 20
steps' losses) and the last sample grids side by side, widths left to right, in `--quality-out` (each row one sample,
columns: content | style | output).

    python tools/bench/tsit_bench.py [--sizes 256 512] [--ngf 64] [--steps 30] [--iters 10]   # defaults on a GPU
    python tools/bench/tsit_bench.py [--sizes 256] [--ngf 8] [--steps 8] [--iters 3]          # defaults on a CPU
    OMP_NUM_THREADS=1 python tools/bench/tsit_bench.py --widths 64 32 16 --sizes 256 --iters 5
    OMP_NUM_THREADS=1 python tools/bench/tsit_bench.py --widths 16 32 --quality-steps 300 \
        --quality-out packages/tsit/docs/widths.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from benchlib import median_time

from pixforge.core.checkpoint import save_release
from pixforge.core.io import embedded_images, read_image, write_image
from pixforge.core.loop import read_metrics
from pixforge.export.pipeline import Pipeline
from pixforge.export.session import open_session
from pixforge.tsit.export import export, session
from pixforge.tsit.model import build_generator, load, make_arch
from pixforge.tsit.nets import init_weights
from pixforge.tsit.train import train


def _emit(name, device, size, median, items, reference=None, reference_median=None, **extra) -> None:
    row = {"name": name, "device": device, "size": size, "median_s": round(median, 5),
           "throughput": round(items / median, 3), "reference": reference,
           "reference_median_s": None if reference_median is None else round(reference_median, 5),
           "ratio": None if reference_median is None else round(reference_median / median, 3), **extra}
    print(json.dumps(row), flush=True)


def bench_training(root: Path, size: int, ngf: int, steps: int, warmup: int, device: str) -> None:
    data = root / f"data{size}"
    for i, img in enumerate(embedded_images(["astronaut", "chelsea", "coffee", "rocket"])):
        write_image(data / "content" / f"{i}.png", img)
        write_image(data / "style" / f"{i}.png", img[::-1])
    medians = {}
    for amp in (False, True):
        precision = amp if device == "cuda" else ("bf16" if amp else False)  # CPU autocast: bf16 only
        run = train(str(root / f"train{size}{amp}"), content=str(data / "content"), style=str(data / "style"),
                    size=size, ngf=ngf, batch=1, steps=steps, amp=precision, perceptual="off",
                    sample_every=10**9, ckpt_every=10**9, device=device, quiet=True)
        stamps = [r["time"] for r in read_metrics(Path(run) / "metrics.jsonl")][warmup:]
        medians[amp] = statistics.median(np.diff(stamps))
    _emit(f"train_fp32_ngf{ngf}", device, size, medians[False], 1)
    _emit(f"train_amp_ngf{ngf}", device, size, medians[True], 1, f"train_fp32_ngf{ngf}", medians[False])


def bench_translate(root: Path, size: int, ngf: int, iters: int, device: str) -> None:
    run = root / f"release{size}"
    torch.manual_seed(0)
    arch = make_arch("ast", ngf=ngf, levels=8, size=(size, size))
    save_release(run, init_weights(build_generator(arch)).eval(), arch, name="generator")
    dev = torch.device(device)
    rng = np.random.default_rng(0)
    images = list(rng.integers(0, 256, (2, size, size, 3), dtype=np.uint8))
    style = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    eager_pipe = Pipeline(session(load(run), dev), images={"style": style})
    eager_feeds = eager_pipe.feeds(images, [0, 1])
    eager = median_time(lambda: eager_pipe.session.run(eager_feeds), iters, 2, lambda: None)  # outputs copied back
    _emit(f"translate_torch_fp32_ngf{ngf}", device, size, eager, 2)
    fp16 = dev.type == "cuda"
    model = export(run, root / f"tsit{size}.onnx", fp16=fp16, check=False)
    pipe = Pipeline(open_session(str(model), device), images={"style": style})
    feeds = pipe.feeds(images, [0, 1])
    runtime = median_time(lambda: pipe.session.run(feeds), iters, 2, lambda: None)
    _emit(f"translate_pixforge_run_{'fp16' if fp16 else 'fp32'}_ngf{ngf}", device, size, runtime, 2,
          f"translate_torch_fp32_ngf{ngf}", eager)


def bench_widths(root: Path, size: int, widths: list[int], iters: int, device: str) -> None:
    """Eager translation time and parameter count per width at the official depth; the first width is the reference."""
    dev = torch.device(device)
    rng = np.random.default_rng(0)
    images = list(rng.integers(0, 256, (2, size, size, 3), dtype=np.uint8))
    style = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    reference = None
    for ngf in widths:
        torch.manual_seed(0)
        arch = make_arch("ast", ngf=ngf, levels=8, size=(size, size))
        run = root / f"width{ngf}"
        save_release(run, init_weights(build_generator(arch)).eval(), arch, name="generator")
        trained = load(run)
        params = sum(p.numel() for p in trained.generator.parameters())
        pipe = Pipeline(session(trained, dev), images={"style": style})
        feeds = pipe.feeds(images, [0, 1])
        median = median_time(lambda p=pipe, f=feeds: p.session.run(f), iters, 1, lambda: None)
        name = f"translate_torch_fp32_ngf{ngf}"
        _emit(name, device, size, median, 2, *(reference or (None, None)), params=params,
              threads=torch.get_num_threads())
        reference = reference or (name, median)
        shutil.rmtree(run)


QUALITY_CONTENT = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins")
QUALITY_STYLE = ("immunohistochemistry", "hubble_deep_field", "brick", "gravel")


def bench_quality(root: Path, size: int, widths: list[int], steps: int, device: str, out: Path) -> None:
    """Same-budget training per width; the last sample grids side by side in `out`."""
    data = root / "quality"
    for folder, names in (("content", QUALITY_CONTENT), ("style", QUALITY_STYLE)):
        for name, img in zip(names, embedded_images(names), strict=True):
            h, w = img.shape[:2]
            side = min(h, w)
            write_image(data / folder / f"{name}.png", img[(h - side) // 2:(h + side) // 2,
                                                           (w - side) // 2:(w + side) // 2])
    grids = []
    for ngf in widths:
        run = Path(train(str(root / f"quality{ngf}"), content=str(data / "content"), style=str(data / "style"),
                         size=size, ngf=ngf, levels=6, ndf=64, batch=2, steps=steps, perceptual="off",
                         sample_every=steps,
                         ckpt_every=steps, device=device, quiet=True))
        records = read_metrics(run / "metrics.jsonl")
        last = records[-20:]
        losses = {k: round(float(np.mean([r[k] for r in last])), 4) for k in ("g_gan", "g_feat", "d_real", "d_fake")}
        params = sum(p.numel() for p in load(run).generator.parameters())
        _emit(f"train_quality_ngf{ngf}", device, size, statistics.median(np.diff([r["time"] for r in records])), 2,
              params=params, steps=steps, **losses)
        grids.append(read_image(sorted((run / "samples").glob("*.png"))[-1]))
    gap = np.full((grids[0].shape[0], 8, 3), 255, np.uint8)
    write_image(out, np.concatenate([x for g in grids for x in (g, gap)][:-1], axis=1))


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512] if cuda else [256])
    parser.add_argument("--ngf", type=int, default=64 if cuda else 8)
    parser.add_argument("--steps", type=int, default=30 if cuda else 8)
    parser.add_argument("--warmup", type=int, default=5 if cuda else 2)
    parser.add_argument("--iters", type=int, default=10 if cuda else 3)
    parser.add_argument("--widths", type=int, nargs="+", help="compare these widths (ngf) instead")
    parser.add_argument("--quality-steps", type=int, default=0, help="with --widths: same-budget training instead")
    parser.add_argument("--quality-size", type=int, default=64)
    parser.add_argument("--quality-out", type=Path, default=Path("tsit-widths.png"))
    args = parser.parse_args()
    device = "cuda" if cuda else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        if args.widths and args.quality_steps:
            bench_quality(Path(tmp), args.quality_size, args.widths, args.quality_steps, device, args.quality_out)
            return
        if args.widths:
            for size in args.sizes:
                bench_widths(Path(tmp), size, args.widths, args.iters, device)
            return
        for size in args.sizes:
            bench_training(Path(tmp), size, args.ngf, args.steps, args.warmup, device)
            bench_translate(Path(tmp), size, args.ngf, args.iters, device)


if __name__ == "__main__":
    main()
