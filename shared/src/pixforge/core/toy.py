"""The reference training loop: a tiny residual denoiser trained on embedded photos.

It is the template every tool's `train.py` follows (see "How to add a training tool" in the README):

    train(...)            the launcher: the options (declared once: it is also the CLI verb), their checks
                          before anything is written, the dataset; then
    training_loop(...)    one loop that reads top to bottom under one-line phase headings, in
                          stylegan2-ada's order (load, construct, resume, distribute, train: fetch, step, EMA,
                          log, samples, metrics, checkpoint);
    DenoiserLoss          the loss object: forward passes and loss terms per phase (`accumulate_gradients`), as
                          stylegan2-ada's `StyleGAN2Loss`; a GAN's has the phases "G" and "D".

It is also what `pixforge core demo` runs and what the integration tests kill, resume and spread over
torchrun processes, so every core piece is exercised the way a tool uses it: device and AMP choice, DDP, run
directory, EMA, checkpoints with exact resume, metrics, sample grids, graceful stop, ONNX export with metadata
and release weights. Samples and their noise are pure functions of (seed, global sample index)
(`pixforge.core.steps`), so a run gives the same weights whether it was interrupted, resumed, or split over
processes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pixforge.core import distributed
from pixforge.core.checkpoint import Checkpoints, load_checkpoint, load_release, save_release
from pixforge.core.io import RandomCrops, embedded_images, save_grid
from pixforge.core.loop import EMA, GracefulStop, MetricLogger, progress
from pixforge.core.rundir import RunDir
from pixforge.core.runtime import autocast, autocast_dtype, configure, grad_scaler, resolve_device, seed_everything
from pixforge.core.steps import StepSampler, sample_noise
from pixforge.export.errors import PixforgeError


class Denoiser(torch.nn.Module):
    """x + residual(x): three 3x3 convolutions with LeakyReLU; any image size."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.LeakyReLU(0.2),
            torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.LeakyReLU(0.2),
            torch.nn.Conv2d(width, 3, 3, padding=1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image + self.body(image)


class DenoiserLoss:
    """L1 between the denoised noisy crops and the clean crops; one phase, "main"."""

    def __init__(self, net: torch.nn.Module, sigma: float, seed: int, amp_dtype: torch.dtype | None,
                 scaler: torch.amp.GradScaler):
        self.net, self.sigma, self.seed, self.amp_dtype, self.scaler = net, sigma, seed, amp_dtype, scaler

    def noisy(self, clean: torch.Tensor, indices, salt: int = 0) -> torch.Tensor:
        """`clean` + Gaussian noise drawn per global sample index (independent of batching and ranks)."""
        return clean + self.sigma * sample_noise(clean.shape[1:], indices, self.seed, salt, clean.device)

    def accumulate_gradients(self, phase: str, clean: torch.Tensor, indices) -> dict[str, torch.Tensor]:
        """Forward, loss and (scaled) backward of `phase`; returns its loss terms, detached, for the log."""
        assert phase == "main", phase
        with autocast(clean.device, self.amp_dtype):
            loss = F.l1_loss(self.net(self.noisy(clean, indices)).float(), clean)
        self.scaler.scale(loss).backward()
        return {"loss": loss.detach()}


def train(out: str, steps: int = 200, batch: int = 8, size: int = 48, width: int = 32, lr: float = 2e-3,
          sigma: float = 0.2, seed: int = 0, ema: float = 0.99, ckpt_every: int = 50, sample_every: int = 50,
          keep_last: int = 3, workers: int = 0, device: str = "auto", amp: bool | str = False,
          threads: int | None = None, resume: bool = False, overwrite: bool = False, quiet: bool = False) -> Path:
    """Train the reference denoiser into run directory OUT (config.json, checkpoints/, samples/,
    metrics.jsonl, log.txt) on crops of the embedded photos; --resume continues a stopped run. Multi-GPU:
    `torchrun --nproc_per_node G -m pixforge.core.tool train OUT ...` (--batch is per process)."""
    config = {k: v for k, v in locals().items() if k not in ("out", "resume", "overwrite", "quiet")}
    # Check options and data (before the run directory exists).
    for flag, value in (("--steps", steps), ("--batch", batch), ("--size", size), ("--width", width),
                        ("--ckpt-every", ckpt_every), ("--sample-every", sample_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PixforgeError(f"{flag} must be a positive integer, got {value!r}")
    if not (sigma > 0 and lr > 0 and 0 <= ema < 1):
        raise PixforgeError(f"--sigma and --lr must be > 0 and --ema in [0, 1), got {sigma}, {lr}, {ema}")
    dataset = RandomCrops(embedded_images(), size=size, length=2**31 - 1, seed=seed)
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    return training_loop(RunDir(out), config, dataset, dev, resume=resume, overwrite=overwrite, quiet=quiet)


def training_loop(run: RunDir, config: dict[str, Any], dataset: torch.utils.data.Dataset, dev: torch.device, *,
                  resume: bool, overwrite: bool, quiet: bool) -> Path:
    """The loop of `train`: `config` holds its options; returns the run directory."""
    # Initialize.
    configure(dev)
    dist = distributed.setup(dev)
    config = run.start(config, resume=resume, overwrite=overwrite)
    log = logging.getLogger("pixforge")  # RunDir.start set it up: console, and log.txt on the main rank
    steps, seed = config["steps"], config["seed"]
    seed_everything(seed)

    # Construct networks.
    model = Denoiser(config["width"]).to(dev)
    model_ema = EMA(model, decay=config["ema"])
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"], betas=(0.9, 0.99))
    amp_dtype = autocast_dtype(dev, config["amp"])
    scaler = grad_scaler(dev, amp_dtype)
    models, optimizers = {"model": model, "ema": model_ema.module}, {"opt": opt}

    # Resume.
    ckpts = Checkpoints(run.checkpoints, keep_last=config["keep_last"])
    start = 0
    if resume and (latest := ckpts.latest()) is not None:
        start = load_checkpoint(latest, models=models, optimizers=optimizers, scaler=scaler, map_location=dev)["step"]
        log.info("resumed from %s (step %d)", latest, start)

    # Distribute.
    net = distributed.wrap_ddp(model, dev)
    loss = DenoiserLoss(net, config["sigma"], seed, amp_dtype, scaler)
    sampler = StepSampler(start, steps, config["batch"], dist.rank, dist.world_size)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=config["workers"],
                                         pin_memory=dev.type == "cuda",
                                         generator=torch.Generator())  # leaves the global RNG (checkpointed) alone

    # Export sample images.
    fixed = torch.stack([dataset[i] for i in range(8)]).to(dev)
    fixed_noisy = loss.noisy(fixed, range(8), salt=1)

    # Train.
    step = start
    with MetricLogger(run.metrics, run.tensorboard, start) as metrics, GracefulStop() as stop, \
            progress(steps, initial=start, disable=quiet) as bar:
        for clean in loader:
            # Fetch data.
            clean, indices = clean.to(dev, non_blocking=True), sampler.indices(step)

            # Denoiser step.
            opt.zero_grad(set_to_none=True)
            terms = loss.accumulate_gradients("main", clean, indices)
            scaler.step(opt)
            scaler.update()

            # EMA.
            model_ema.update(model)

            # Log.
            step += 1
            values = metrics.log(step, **{k: distributed.all_reduce_mean(v) for k, v in terms.items()})
            bar.set_postfix(loss=f"{values['loss']:.4f}")
            bar.update()

            # Samples.
            if dist.is_main and (step % config["sample_every"] == 0 or step == steps):
                with torch.no_grad():
                    save_grid(torch.cat([fixed_noisy, model_ema(fixed_noisy).clamp(-1, 1), fixed]),
                              run.sample_path(step), nrow=8)

            # Checkpoint.
            if step % config["ckpt_every"] == 0 or step == steps or stop.requested:
                ckpts.save(step, models=models, optimizers=optimizers, scaler=scaler, config=config)
            if stop.requested:  # after the checkpoint: a signal that came while a batch loaded still saves
                break

    # Done.
    if step < steps:
        log.info("stopped at step %d; continue with --resume", step)
    elif dist.is_main:
        save_release(run.path, model_ema.module, {"arch": "Denoiser", "width": config["width"],
                                                  "sigma": config["sigma"], "step": step})
        log.info("finished %d steps: %s", step, run.path)
    distributed.teardown()
    return run.path


def load_denoiser(run: str | Path) -> Denoiser:
    """The EMA denoiser from a finished run's release weights."""
    state, config = load_release(run)
    model = Denoiser(config["width"])
    model.load_state_dict(state)
    return model.eval()


def export(run: str | Path, out: str | Path) -> Path:
    """Export a finished run's EMA denoiser to ONNX (dynamic batch and size) and check parity."""
    from pixforge.core import __version__
    from pixforge.core.onnx import export_onnx, verify_onnx
    from pixforge.export.metadata import TensorSpec

    model = load_denoiser(run)
    _, config = load_release(run)
    spec = {"kind": "image", "range": (-1.0, 1.0)}
    path = export_onnx(model, (torch.zeros(2, 3, 32, 40),), out, input_names=["image"], output_names=["image_out"],
                       inputs=[TensorSpec("image", **spec)], outputs=[TensorSpec("image_out", **spec)],
                       package="pixforge-core", version=__version__, task="denoise",
                       dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}},
                       extra={"trained_sigma": config["sigma"], "steps": config["step"]})
    verify_onnx(path, model, [torch.rand(3, 3, 24, 36) * 2 - 1])
    return path
