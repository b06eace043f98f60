"""TSIT: training iterations/s (AMP vs fp32) and translation images/s (pixforge-run vs PyTorch eager), one run.

Training: `pixforge.tsit.train.train` itself on a folder of scikit-image photos (batch 1, style transfer, perceptual
loss off), timed from the step timestamps in metrics.jsonl (median over the steps after `--warmup`); reference: the
fp32 run at the same size. Translation: the network call on one 2-image batch (content + style + noise), PyTorch
eager fp32 (`Translator.run`, spectral norms folded) as the reference vs the exported model under pixforge-run's
session (fp16 + IOBinding on CUDA, fp32 on the CPU). One JSON line per case:
name, device, size, median_s, throughput, reference, reference_median_s, ratio (reference time / case time).

    python tools/bench/tsit_bench.py [--sizes 256 512] [--ngf 64] [--steps 30] [--iters 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from benchlib import median_time

from pixforge.core.checkpoint import save_release
from pixforge.core.io import embedded_images, write_image
from pixforge.core.loop import read_metrics
from pixforge.export.pipeline import Pipeline
from pixforge.export.session import open_session
from pixforge.tsit.export import export
from pixforge.tsit.model import build_generator, load, make_arch
from pixforge.tsit.nets import init_weights
from pixforge.tsit.train import train
from pixforge.tsit.translate import Translator


def _emit(name, device, size, median, items, reference=None, reference_median=None) -> None:
    row = {"name": name, "device": device, "size": size, "median_s": round(median, 5),
           "throughput": round(items / median, 3), "reference": reference,
           "reference_median_s": None if reference_median is None else round(reference_median, 5),
           "ratio": None if reference_median is None else round(reference_median / median, 3)}
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
                    size=size, ngf=ngf, batch=1, steps=steps, amp=precision,
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
    translator = Translator(load(run), dev)
    rng = np.random.default_rng(0)
    images = list(rng.integers(0, 256, (2, size, size, 3), dtype=np.uint8))
    style = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    eager = median_time(lambda: translator.run(images, style, [0, 1]).cpu(), iters, 2, sync)
    _emit(f"translate_torch_fp32_ngf{ngf}", device, size, eager, 2)
    fp16 = dev.type == "cuda"
    model = export(run, root / f"tsit{size}.onnx", fp16=fp16, check=False)
    pipe = Pipeline(open_session(str(model), device), images={"style": style})
    feeds = pipe.feeds(images, [0, 1])
    runtime = median_time(lambda: pipe.session.run(feeds), iters, 2, lambda: None)
    _emit(f"translate_pixforge_run_{'fp16' if fp16 else 'fp32'}_ngf{ngf}", device, size, runtime, 2,
          f"translate_torch_fp32_ngf{ngf}", eager)


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512] if cuda else [256])
    parser.add_argument("--ngf", type=int, default=64 if cuda else 8)
    parser.add_argument("--steps", type=int, default=30 if cuda else 8)
    parser.add_argument("--warmup", type=int, default=5 if cuda else 2)
    parser.add_argument("--iters", type=int, default=10 if cuda else 3)
    args = parser.parse_args()
    device = "cuda" if cuda else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            bench_training(Path(tmp), size, args.ngf, args.steps, args.warmup, device)
            bench_translate(Path(tmp), size, args.ngf, args.iters, device)


if __name__ == "__main__":
    main()
