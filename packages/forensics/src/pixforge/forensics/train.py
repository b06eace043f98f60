"""Detector training: binary cross-entropy on the single fake logit, real clips against fake (or self-blended) ones.

    train(...)          the launcher and CLI verb: every option checked and the data scanned before anything is
                        written; then
    training_loop(...)  one loop under the phase headings of `pixforge.core.toy` (the template).

Optimiser defaults, per model family (`--optimizer auto`):
  xception             Adam lr 2e-4 (betas 0.9, 0.999), no weight decay: FaceForensics++'s Xception recipe;
  c3d, tsn, i3d,       SGD lr 0.01, momentum 0.9, weight decay 1e-4, gradient norm clipped at 40: mmaction2's
  resnet_lstm          tsn_r50 / i3d_r50 recipe (its lr is for 8 GPUs x 32 clips; mmaction2's C3D config uses
                       lr 0.001 and weight decay 5e-4: pass them for C3D from scratch).
No schedule (constant lr). Items are pure functions of (seed, global index) (`pixforge.forensics.data`), batches
`pixforge.core.steps.StepSampler` slices, so `--resume` continues bit for bit and N torchrun processes on --batch
B see what one process sees on N * B.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pixforge.core import distributed
from pixforge.core.checkpoint import Checkpoints, load_checkpoint, save_release
from pixforge.core.io import save_grid
from pixforge.core.loop import GracefulStop, MetricLogger, progress
from pixforge.core.rundir import RunDir
from pixforge.core.runtime import autocast, autocast_dtype, configure, grad_scaler, resolve_device, seed_everything
from pixforge.core.steps import StepSampler
from pixforge.export.errors import PixforgeError
from pixforge.export.options import check_numbers
from pixforge.forensics import data as fdata
from pixforge.forensics.detector import build_detector, make_arch, predict, video_level
from pixforge.forensics.metrics import summary

OPTIMIZERS = ("auto", "adam", "sgd")
RECIPES = {"adam": {"lr": 2e-4, "weight_decay": 0.0, "clip_grad": 0.0},
           "sgd": {"lr": 0.01, "weight_decay": 1e-4, "clip_grad": 40.0}}
SAMPLES = 8


def train(real: str | None = None, fake: str | None = None, model: str = "xception", out: str | None = None,
          size: int | None = None, clip: int | None = None, batch: int = 8, steps: int | None = None,
          epochs: float | None = None, lr: float | None = None, optimizer: str = "auto", momentum: float = 0.9,
          weight_decay: float | None = None, clip_grad: float | None = None, weights: str | None = None,
          distort_p: float = 0.0, distort_fake_only: bool = False, val_real: str | None = None,
          val_fake: str | None = None, val_every: int = 1000, val_items: int = 2000, seed: int = 0, workers: int = 0,
          ckpt_every: int = 1000, sample_every: int = 1000, keep_last: int = 3, device: str = "auto",
          amp: bool | str = False, threads: int | None = None, resume: bool = False, overwrite: bool = False,
          quiet: bool = False) -> Path:
    """Train a fake-face detector into the run directory OUT (config.json, checkpoints/, samples/, metrics.jsonl,
    log.txt; model.safetensors + model.json when finished) on extract-faces folders: --real DIR against --fake
    DIR, or --fake sbi (self-blended fakes made from the real faces on the fly). --model xception|c3d|tsn|i3d|
    resnet-lstm; --size (default the model's: 299 / 112 / 224) and --clip (frames per clip, TSN segments; default
    16 / 3 / 32 / 16). Length: --steps N or --epochs E (an epoch = twice the larger class's frames for Xception,
    videos for clip models). --optimizer auto = Adam 2e-4 for Xception (FaceForensics++), SGD 0.01 momentum 0.9
    weight decay 1e-4 clip-grad 40 for the video models (mmaction2); --lr, --weight-decay, --clip-grad override.
    --weights PATH starts from a pretrained file (models' loaders: ImageNet / Kinetics layouts). --distort-p 0.5
    distorts half the clips with a random DeeperForensics type and level; --distort-fake-only distorts only the
    fake clips (the thesis' std/sing setting: real ones stay clean). --val-real/--val-fake DIR (or sbi) log
    validation ACC / AUC / log loss every --val-every steps. --amp (bf16/fp16 on GPU), --resume continues;
    multi-GPU: `torchrun --nproc-per-node G -m pixforge.forensics.cli train ...` (--batch is per process)."""
    config = {k: v for k, v in locals().items() if k not in ("out", "resume", "overwrite", "quiet", "threads")}
    # Check options and data (before the run directory exists).
    check_numbers({**config, "threads": threads}, integers=INTEGERS, positive=("epochs", "lr"),
                  non_negative=("weight_decay", "clip_grad"), fractions=("momentum",))
    if real is None or fake is None or out is None:
        raise PixforgeError("--real DIR, --fake DIR|sbi and --out RUN are required")
    if Path(out).exists() and not Path(out).is_dir():
        raise PixforgeError(f"--out {out} exists and is not a folder (a run directory)")
    if (steps is None) == (epochs is None):
        raise PixforgeError("give exactly one of --steps or --epochs (the training length)")
    if optimizer not in OPTIMIZERS:
        raise PixforgeError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if isinstance(distort_p, bool) or not isinstance(distort_p, (int, float)) or not 0 <= distort_p <= 1:
        raise PixforgeError(f"--distort-p must be a probability from 0 to 1, got {distort_p!r}")
    if not isinstance(distort_fake_only, bool):
        raise PixforgeError(f"--distort-fake-only is a flag (true or false), got {distort_fake_only!r}")
    if distort_fake_only and not distort_p > 0:
        raise PixforgeError("--distort-fake-only needs --distort-p above 0 (the chance a fake clip is distorted)")
    if (val_real is None) != (val_fake is None):
        raise PixforgeError("give both --val-real and --val-fake (or neither)")
    arch = make_arch(model, size, clip)
    if arch["size"] < 32:
        raise PixforgeError(f"--size must be at least 32 (the networks' stride), got {arch['size']}")
    if arch["sampling"] == "image" and clip not in (None, 1):
        raise PixforgeError(f"--clip is for the video models; {arch['model']} takes single frames")
    dataset = _dataset(real, fake, arch, seed, float(distort_p), "--real", "--fake", distort_fake_only)
    val = (None if val_real is None else
           _eval_set(val_real, val_fake, arch, seed, val_items))
    if weights is not None and not str(weights).startswith(("http://", "https://")) and not Path(weights).is_file():
        raise PixforgeError(f"--weights {weights} does not exist")
    # Resolve defaults.
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    world = distributed.setup(dev).world_size
    kind = optimizer if optimizer != "auto" else ("adam" if arch["sampling"] == "image" else "sgd")
    recipe = RECIPES[kind]
    config.update(model=arch["model"], size=arch["size"], clip=arch["clip"], optimizer=kind, arch=arch,
                  lr=recipe["lr"] if lr is None else lr,
                  weight_decay=recipe["weight_decay"] if weight_decay is None else weight_decay,
                  clip_grad=recipe["clip_grad"] if clip_grad is None else clip_grad,
                  steps=steps if steps is not None else math.ceil(epochs * dataset.epoch_size() / (batch * world)))
    det = build_detector(arch, weights, seed)  # a bad weights file stops here, before the run exists
    run = RunDir(out, [real, val_real, weights, *(f for f in (fake, val_fake) if f != "sbi")])
    return training_loop(run, config, det, dataset, val, dev, resume=resume, overwrite=overwrite, quiet=quiet)


INTEGERS = {"size": 32, "clip": 1, "batch": 1, "steps": 1, "val_every": 1, "val_items": 2, "seed": 0, "workers": 0,
            "ckpt_every": 1, "sample_every": 1, "keep_last": 1, "threads": 1}


def _dataset(real, fake, arch, seed, distort_p, real_flag, fake_flag, distort_fake_only) -> fdata.TrainClips:
    sbi = str(fake).lower() == "sbi"
    real_videos = fdata.scan(real, real_flag, landmarks=sbi)
    fake_videos = "sbi" if sbi else fdata.scan(fake, fake_flag)
    return fdata.TrainClips(real_videos, fake_videos, arch["clip"], arch["size"], arch["sampling"], seed, distort_p,
                            distort_fake_only)


def _eval_set(real, fake, arch, seed, limit=None, distortion=None) -> fdata.EvalClips:
    sbi = str(fake).lower() == "sbi"
    real_videos = fdata.scan(real, "--val-real", landmarks=sbi)
    fake_videos = "sbi" if sbi else fdata.scan(fake, "--val-fake")
    return fdata.EvalClips(real_videos, fake_videos, arch["clip"], arch["size"], arch["sampling"], seed,
                           distortion=distortion, limit=limit)


def make_optimizer(config: dict[str, Any], params) -> torch.optim.Optimizer:
    if config["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=config["lr"], weight_decay=config["weight_decay"])
    return torch.optim.SGD(params, lr=config["lr"], momentum=config["momentum"], weight_decay=config["weight_decay"])


def training_loop(run: RunDir, config: dict[str, Any], det, dataset, val, dev: torch.device, *, resume: bool,
                  overwrite: bool, quiet: bool) -> Path:
    """The loop of `train`: `config` holds its resolved options; returns the run directory."""
    # Initialize.
    configure(dev)
    dist = distributed.setup(dev)
    steps, seed, arch = config["steps"], config["seed"], config["arch"]
    seed_everything(seed)

    # Construct networks.
    det = det.to(dev)
    opt = make_optimizer(config, det.parameters())
    amp_dtype = autocast_dtype(dev, config["amp"])
    scaler = grad_scaler(dev, amp_dtype)
    models, optimizers = {"net": det.net}, {"opt": opt}

    # Resume (read before the run is touched: a broken checkpoint leaves it as it was).
    ckpts = Checkpoints(run.checkpoints, keep_last=config["keep_last"])
    start, latest = 0, ckpts.latest() if resume else None
    if latest is not None:
        start = load_checkpoint(latest, models=models, optimizers=optimizers, scaler=scaler, map_location=dev)["step"]
    config = run.start(config, resume=resume, overwrite=overwrite)  # only now, every input checked, is it written
    log = logging.getLogger("pixforge")
    if latest is not None:
        log.info("resumed from %s (step %d)", latest, start)

    # Distribute.
    net = distributed.wrap_ddp(det, dev)
    sampler = StepSampler(start, steps, config["batch"], dist.rank, dist.world_size)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=config["workers"],
                                         pin_memory=dev.type == "cuda",
                                         generator=torch.Generator())  # leaves the global RNG (checkpointed) alone

    # Export sample images: real and fake crops drawn outside the training index range (middle frame of a clip).
    if dist.is_main and start == 0:
        items = [dataset[2**61 + k] for k in range(SAMPLES)]
        grid = torch.stack([_middle(it["clip"]) for it in sorted(items, key=lambda it: float(it["label"]))])
        save_grid(grid.float(), run.samples / "real-fake.png", nrow=SAMPLES // 2, value_range=(0.0, 255.0))

    # Train.
    step = start
    with MetricLogger(run.metrics, run.tensorboard, start) as metrics, GracefulStop() as stop, \
            progress(steps, initial=start, disable=quiet) as bar:
        for item in loader:
            # Fetch data.
            clips, labels = item["clip"].to(dev, non_blocking=True), item["label"].to(dev, non_blocking=True)

            # Detector step.
            opt.zero_grad(set_to_none=True)
            with autocast(dev, amp_dtype):
                logits = net(clips)
            loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
            scaler.scale(loss).backward()
            if config["clip_grad"] > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(det.parameters(), config["clip_grad"])
            scaler.step(opt)
            scaler.update()
            acc = ((logits.detach() >= 0).float() == labels).float().mean()

            # Log.
            step += 1
            values = metrics.log(step, loss=distributed.all_reduce_mean(loss.detach()),
                                 acc=distributed.all_reduce_mean(acc))
            bar.set_postfix(loss=f"{values['loss']:.4f}")
            bar.update()

            # Metrics.
            if val is not None and dist.is_main and (step % config["val_every"] == 0 or step == steps):
                metrics.log(step, **validate(det, val, config["batch"], dev))

            # Checkpoint.
            if step % config["ckpt_every"] == 0 or step == steps or stop.requested:
                ckpts.save(step, models=models, optimizers=optimizers, scaler=scaler, config=config)
            if stop.requested:  # after the checkpoint: a signal that came while a batch loaded still saves
                break

    # Done.
    if step < steps:
        log.info("stopped at step %d; continue with --resume", step)
    elif dist.is_main:
        save_release(run.path, det.net, {**arch, "step": step, "seed": seed})
        log.info("finished %d steps: %s", step, run.path)
    distributed.teardown()
    return run.path


def _middle(clip: torch.Tensor) -> torch.Tensor:
    return clip if clip.ndim == 3 else clip[:, clip.shape[1] // 2]


def validate(det, val, batch: int, dev) -> dict[str, float]:
    """Item- and video-level ACC / AUC / log loss of `det` on `val` (the RNG state is left as it was)."""
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        probs, labels, meta = predict(det, val, batch=batch, device=dev)
    frame = summary(labels, probs)
    video = summary(*video_level(probs, labels, meta)[1::-1])
    return {"val_acc": frame["acc"], "val_auc": frame["auc"], "val_log_loss": frame["log_loss"],
            "val_video_acc": video["acc"], "val_video_auc": video["auc"]}
