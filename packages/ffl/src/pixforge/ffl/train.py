"""One VAE reconstruction run, with or without FFL, in a pixforge run directory (the core's toy.py pattern).

Loss: MSE + kl_weight * KL / (C * H * W) + ffl_weight * FFL(reconstruction, image); FFL is also measured
(without gradient) when its weight is 0, so both runs log the same curves. Adam, with the learning rate
following a cosine from `lr` down to 0 at the last step (a pure function of the step, so nothing extra to
checkpoint): the runs end on settled weights, and one noisy last step does not decide the comparison.

Sample i of the training stream is a pure function of (seed, i) and the network starts from `seed`, so two
runs that differ only in `ffl_weight` see the same images in the same order from the same initial weights
and noise, and a run resumed from a checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from pixforge.core.checkpoint import Checkpoints, load_checkpoint
from pixforge.core.io import save_grid
from pixforge.core.loop import GracefulStop, MetricLogger, progress
from pixforge.core.rundir import RunDir, setup_logging
from pixforge.core.runtime import autocast, autocast_dtype, configure, grad_scaler, resolve_device, seed_everything
from pixforge.ffl.loss import FocalFrequencyLoss
from pixforge.ffl.vae import VAE, kl_divergence


def train(out: str | Path, config: dict[str, Any], data: Dataset, fixed: torch.Tensor, *, resume: bool = False,
          overwrite: bool = False, quiet: bool = False) -> tuple[VAE, bool]:
    """Train into run directory `out`; returns (model in eval mode, finished). `finished` is False when a
    signal stopped the run (it checkpointed first: continue with `resume`). `fixed`: images for sample grids."""
    dev = resolve_device(config["device"])
    configure(dev)
    run = RunDir(out)
    config = run.start(config, resume=resume, overwrite=overwrite)
    log = setup_logging(run.log)
    seed_everything(config["seed"])
    model = VAE(config["size"], config["width"], config["latent"]).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    ffl = FocalFrequencyLoss(alpha=config["alpha"], patch_factor=config["patch_factor"],
                             ave_spectrum=config["ave_spectrum"], log_matrix=config["log_matrix"],
                             batch_matrix=config["batch_matrix"], transform=config["transform"])
    amp_dtype = autocast_dtype(dev, config["amp"])
    scaler = grad_scaler(dev, amp_dtype)
    ckpts = Checkpoints(run.checkpoints, keep_last=config["keep_last"])
    steps, batch = config["steps"], config["batch"]
    step = 0
    if resume and (latest := ckpts.latest()) is not None:
        step = load_checkpoint(latest, models={"vae": model}, optimizers={"opt": opt}, scaler=scaler,
                               map_location=dev)["step"]
        log.info("resumed %s from %s (step %d)", run.path.name, latest, step)
    loader = DataLoader(data, batch_size=batch, sampler=range(step * batch, steps * batch),  # items: f(seed, index)
                        num_workers=config["workers"], generator=torch.Generator())  # leaves the global RNG alone
    fixed = fixed.to(dev)

    def save() -> None:
        ckpts.save(step, models={"vae": model}, optimizers={"opt": opt}, scaler=scaler, config=config)

    with MetricLogger(run.metrics, run.tensorboard) as metrics, GracefulStop() as stop, \
            progress(steps, initial=step, desc=run.path.name, disable=quiet) as bar:
        for images in loader:
            if stop.requested:
                break
            x = images.to(dev, non_blocking=True)
            model.train()
            for group in opt.param_groups:
                group["lr"] = config["lr"] * 0.5 * (1 + math.cos(math.pi * step / steps))
            with autocast(dev, amp_dtype):
                recon, mu, logvar = model(x)
            recon = recon.float()
            mse = F.mse_loss(recon, x)
            kl = kl_divergence(mu.float(), logvar.float()) / x[0].numel()
            with torch.set_grad_enabled(config["ffl_weight"] > 0):
                freq = ffl(recon, x)
            loss = mse + config["kl_weight"] * kl + config["ffl_weight"] * freq
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            step += 1
            values = metrics.log(step, loss=loss.detach(), mse=mse.detach(), kl=kl.detach(), ffl=freq.detach())
            bar.set_postfix(mse=f"{values['mse']:.4f}", ffl=f"{values['ffl']:.2e}")
            bar.update()
            if step % config["sample_every"] == 0 or step == steps:
                model.eval()
                save_grid(torch.cat([fixed, model.reconstruct(fixed).clamp(-1, 1)]), run.sample_path(step),
                          nrow=len(fixed))
            if step % config["ckpt_every"] == 0 or step == steps:
                save()
    if stop.requested and step < steps:
        save()
        log.info("%s stopped at step %d; continue with --resume", run.path.name, step)
    return model.eval(), step >= steps
