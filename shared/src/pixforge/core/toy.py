"""The reference training loop: a tiny residual denoiser trained on embedded photos.

It is what `pixforge core demo` runs and what the integration tests kill, resume and spread over
torchrun processes, so every core piece is exercised the way a tool's `train.py` uses it: device and
AMP choice, DDP, run directory, EMA, checkpoints with exact resume, metrics, sample grids, graceful stop,
ONNX export with metadata and release weights. Data and noise are pure functions of (seed, sample index),
so a run gives the same weights whether it was interrupted, resumed, or split over processes.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from pixforge.core import distributed
from pixforge.core.checkpoint import Checkpoints, load_checkpoint, load_release, save_release
from pixforge.core.io import RandomCrops, embedded_images, save_grid
from pixforge.core.loop import EMA, GracefulStop, MetricLogger, progress
from pixforge.core.rundir import RunDir, setup_logging
from pixforge.core.runtime import autocast, autocast_dtype, configure, grad_scaler, resolve_device, seed_everything
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


def add_noise(clean: torch.Tensor, indices: range, sigma: float, seed: int) -> torch.Tensor:
    """Gaussian noise drawn per sample from (seed, global sample index): independent of batching."""
    noise = torch.stack([torch.randn(clean.shape[1:], generator=torch.Generator().manual_seed(seed * 1_000_003 + i))
                         for i in indices])
    return clean + sigma * noise.to(clean.device)


def batch_at(step: int, batch: int, rank: int, world: int) -> range:
    """The global sample indices this rank trains on at `step` (the global batch is batch * world)."""
    start = (step * world + rank) * batch
    return range(start, start + batch)


def train(out: str, steps: int = 200, batch: int = 8, size: int = 48, width: int = 32, lr: float = 2e-3,
          sigma: float = 0.2, seed: int = 0, ema: float = 0.99, ckpt_every: int = 50, sample_every: int = 50,
          keep_last: int = 3, device: str = "auto", amp: bool | str = False, threads: int | None = None,
          resume: bool = False, overwrite: bool = False, quiet: bool = False) -> Path:
    """Train the denoiser; returns the run directory. Launch under torchrun for DDP (batch is per process)."""
    config = {k: v for k, v in locals().items() if k not in ("out", "resume", "overwrite", "quiet")}
    # Check options and data (before the run directory exists).
    for flag, value in (("--steps", steps), ("--batch", batch), ("--size", size), ("--width", width),
                        ("--ckpt-every", ckpt_every), ("--sample-every", sample_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PixforgeError(f"{flag} must be a positive integer, got {value!r}")
    if not (sigma > 0 and lr > 0 and 0 <= ema < 1):
        raise PixforgeError(f"--sigma and --lr must be > 0 and --ema in [0, 1), got {sigma}, {lr}, {ema}")
    photos = embedded_images()
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    configure(dev)
    dist = distributed.setup(dev)
    run = RunDir(out)
    config = run.start(config, resume=resume, overwrite=overwrite)
    log = setup_logging(run.log)
    seed_everything(seed)
    data = RandomCrops(photos, size=size, length=2**31 - 1, seed=seed)
    model = Denoiser(width).to(dev)
    model_ema = EMA(model, decay=ema)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.99))
    amp_dtype = autocast_dtype(dev, amp)
    scaler = grad_scaler(dev, amp_dtype)
    ckpts = Checkpoints(run.checkpoints, keep_last=keep_last)
    start = 0
    if resume and (latest := ckpts.latest()) is not None:
        start = load_checkpoint(latest, models={"model": model, "ema": model_ema.module}, optimizers={"opt": opt},
                                scaler=scaler, map_location=dev)["step"]
        log.info("resumed from %s (step %d)", latest, start)
    net = distributed.wrap_ddp(model, dev)
    fixed = torch.stack([data[i] for i in range(8)]).to(dev)
    fixed_noisy = add_noise(fixed, range(-8, 0), sigma, seed)

    def save(step: int) -> None:
        if dist.is_main:
            ckpts.save(step, models={"model": model, "ema": model_ema.module}, optimizers={"opt": opt},
                       scaler=scaler, config=config)
        distributed.barrier()

    step = start
    with MetricLogger(run.metrics, run.tensorboard) as metrics, GracefulStop() as stop, \
            progress(steps, initial=start, disable=quiet) as bar:
        while step < steps and not stop.requested:
            indices = batch_at(step, batch, dist.rank, dist.world_size)
            clean = torch.stack([data[i] for i in indices]).to(dev)
            noisy = add_noise(clean, indices, sigma, seed)
            with autocast(dev, amp_dtype):
                loss = F.l1_loss(net(noisy).float(), clean)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            model_ema.update(model)
            step += 1
            values = metrics.log(step, loss=distributed.all_reduce_mean(loss.detach()))
            bar.set_postfix(loss=f"{values['loss']:.4f}")
            bar.update()
            if dist.is_main and (step % sample_every == 0 or step == steps):
                with torch.no_grad():
                    save_grid(torch.cat([fixed_noisy, model_ema(fixed_noisy).clamp(-1, 1), fixed]),
                              run.sample_path(step), nrow=8)
            if step % ckpt_every == 0 or step == steps or stop.requested:
                save(step)
    if stop.requested:
        log.info("stopped at step %d; continue with --resume", step)
    elif dist.is_main:
        save_release(run.path, model_ema.module, {"arch": "Denoiser", "width": width, "sigma": sigma, "step": step})
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
