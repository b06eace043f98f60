"""pixforge-spectra pretraining speed: MoCo v2 steps fed by on-the-fly generation vs by a pre-generated folder.

Both sides train the same MoCo v2 model (one network, one optimizer: the steps alternate on it) with the same
batch, views and loss (`pixforge.spectra.pretrain`); they differ only in where the images come from:

* on-the-fly: `ModelImages` (the model's images generated per sample index, at --gen-size) through a DataLoader
  with --workers worker processes, as `pretrain --data MODEL` runs;
* folder: `FolderImages` over PNG files written beforehand by `generate` (same model, same size), as
  `pretrain --data DIR` runs.

A call is one training step: fetch the next batch from that side's loader, two views, forward, backward, SGD step.
Timing: `--rounds` rounds; in each, the two sides alternate call by call (`--calls` each, the first side rotating)
and each side's median step time of the round is kept. Reported per size: images/s from the median over rounds of
those medians, their spread (min-max over rounds), the median of the per-round ratios (folder / on-the-fly step time:
> 1 means on-the-fly is faster), and the 1-minute load average before and after. One JSON line per size.

    python tools/bench/pretrain_bench.py [--sizes 64[,224]] [--arch resnet18] [--batch 32] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

import torch
from benchlib import alternating_medians

from pixforge.core.datagen import generate
from pixforge.core.runtime import resolve_device
from pixforge.core.steps import StepSampler
from pixforge.spectra import get
from pixforge.spectra.contrastive import TwoViews
from pixforge.spectra.pretrain import ContrastiveLoss, FolderImages, ModelImages, build_model, default_gen_size


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _loader(dataset, batch: int, workers: int):
    sampler = StepSampler(0, 10**6, batch)
    return iter(torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                            persistent_workers=workers > 0, generator=torch.Generator()))


def bench_size(size: int, args, dev: torch.device) -> dict:
    gen_size = default_gen_size(size)
    model_images = get(args.model)
    calls_total = (args.rounds * args.calls + 1) * args.batch * 2 + 4 * args.batch
    config = dict(method="mocov2", arch=args.arch, dim=128, queue=args.batch * 64, moco_momentum=0.999,
                  temperature=0.2, mlp=True, bn="shuffle", align_w=1.0, unif_w=1.0, align_alpha=2.0, unif_t=2.0)
    net = build_model(config, torch.Generator().manual_seed(0)).to(dev)
    opt = torch.optim.SGD(net.encoder_q.parameters(), lr=0.015 * args.batch / 256, momentum=0.9, weight_decay=1e-4)
    loss = ContrastiveLoss(net, config, None, torch.amp.GradScaler(dev.type, enabled=False))
    views = TwoViews("mocov2", size, 0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        generate(model_images, folder, n=calls_total, size=gen_size, workers=max(1, args.workers),
                 show_progress=False)
        loaders = {"on_the_fly": _loader(ModelImages([model_images], calls_total, gen_size, 0), args.batch,
                                         args.workers),
                   "folder": _loader(FolderImages(folder, gen_size, 0), args.batch, args.workers)}
        counter = {"step": 0}

        def step(side: str):
            images = next(loaders[side]).to(dev, non_blocking=True)
            q, k = views(images, counter["step"])
            counter["step"] += 1
            opt.zero_grad(set_to_none=True)
            loss.accumulate_gradients("main", q, k)
            opt.step()

        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        load_before = _load()
        medians = alternating_medians({side: (lambda s=side: step(s)) for side in loaders}, args.rounds, args.calls,
                                      warmup=1, sync=sync)
        load_after = _load()
    fly, folder_s = statistics.median(medians["on_the_fly"]), statistics.median(medians["folder"])
    ratios = [f / o for f, o in zip(medians["folder"], medians["on_the_fly"], strict=True)]
    return dict(bench="pretrain", method="mocov2", model=args.model, size=size, gen_size=gen_size, arch=args.arch,
                batch=args.batch, workers=args.workers, device=str(dev), threads=torch.get_num_threads(),
                on_the_fly_images_per_s=round(args.batch / fly, 2), folder_images_per_s=round(args.batch / folder_s, 2),
                on_the_fly_rounds_s=[round(min(medians["on_the_fly"]), 4), round(max(medians["on_the_fly"]), 4)],
                folder_rounds_s=[round(min(medians["folder"]), 4), round(max(medians["folder"]), 4)],
                ratio_folder_over_on_the_fly=round(statistics.median(ratios), 3),
                ratio_range=[round(min(ratios), 3), round(max(ratios), 3)], rounds=args.rounds, calls=args.calls,
                load_before=load_before, load_after=load_after)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64", help="crop sizes, comma-separated (224 feasible on a GPU)")
    parser.add_argument("--model", default="dead-leaves-shapes")
    parser.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet50"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    dev = resolve_device(args.device)
    for size in (int(s) for s in args.sizes.split(",")):
        print(json.dumps(bench_size(size, args, dev)), flush=True)


if __name__ == "__main__":
    main()
