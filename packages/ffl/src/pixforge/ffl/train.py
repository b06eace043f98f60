"""The training loop of `compare`: one VAE reconstruction run, with or without FFL, in a pixforge run directory.

It follows the template of `pixforge.core.toy` (see "How to add a training tool" in the core's README):
`compare` is the launcher (options, their checks, the data, the device) and calls `training_loop` once per
run; `VAELoss` holds the forward pass and the loss terms.

Loss: MSE + kl_weight * KL / (C * H * W) + ffl_weight * FFL(reconstruction, image); FFL is also measured
(without gradient) when its weight is 0, so both runs log the same curves. Adam, with the learning rate
following a cosine from `lr` down to 0 at the last step (a pure function of the step, so nothing extra to
checkpoint): the runs end on settled weights, and one noisy last step does not decide the comparison.

Sample i of the training stream and its reparameterisation noise are pure functions of (seed, i)
(`pixforge.core.steps`) and the network starts from `seed`, so two runs that differ only in `ffl_weight` see
the same images in the same order from the same initial weights and noise, and a run resumed from a
checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from pixforge.core.checkpoint import Checkpoints, load_checkpoint
from pixforge.core.io import save_grid
from pixforge.core.loop import GracefulStop, MetricLogger, progress
from pixforge.core.losses import kl_divergence
from pixforge.core.rundir import RunDir
from pixforge.core.runtime import autocast, autocast_dtype, configure, grad_scaler, seed_everything
from pixforge.core.steps import StepSampler, cosine_lr, sample_noise, set_lr
from pixforge.ffl.loss import FocalFrequencyLoss
from pixforge.ffl.vae import VAE


class VAELoss:
    """MSE + kl_weight * KL / (C * H * W) + ffl_weight * FFL; one phase, "main"."""

    def __init__(self, vae: VAE, ffl: FocalFrequencyLoss, kl_weight: float, ffl_weight: float, seed: int,
                 amp_dtype: torch.dtype | None, scaler: torch.amp.GradScaler):
        self.vae, self.ffl, self.kl_weight, self.ffl_weight = vae, ffl, kl_weight, ffl_weight
        self.seed, self.amp_dtype, self.scaler = seed, amp_dtype, scaler

    def accumulate_gradients(self, phase: str, images: torch.Tensor, indices) -> dict[str, torch.Tensor]:
        """Forward, loss and (scaled) backward of `phase`; returns its loss terms, detached, for the log."""
        assert phase == "main", phase
        noise = sample_noise((self.vae.latent,), indices, self.seed, device=images.device)  # per global sample
        with autocast(images.device, self.amp_dtype):
            recon, mu, logvar = self.vae(images, noise)
        recon = recon.float()
        mse = F.mse_loss(recon, images)
        kl = kl_divergence(mu.float(), logvar.float(), "batchmean") / images[0].numel()
        with torch.set_grad_enabled(self.ffl_weight > 0):
            freq = self.ffl(recon, images)
        loss = mse + self.kl_weight * kl + self.ffl_weight * freq
        self.scaler.scale(loss).backward()
        return {"loss": loss.detach(), "mse": mse.detach(), "kl": kl.detach(), "ffl": freq.detach()}


def training_loop(run: RunDir, config: dict[str, Any], dataset: Dataset, dev: torch.device, *,
                  fixed: torch.Tensor, resume: bool, overwrite: bool, quiet: bool) -> tuple[VAE, bool]:
    """Train run `run` (`config`: the options of `compare`, with this run's `ffl_weight`) on `dataset` (item i:
    a function of (seed, i)); `fixed`: the images of the sample grids. Returns (the VAE in eval mode, finished):
    not finished when a signal stopped the run (it checkpointed first: continue with `resume`)."""
    # Initialize.
    configure(dev)
    config = run.start(config, resume=resume, overwrite=overwrite)
    log = logging.getLogger("pixforge")  # RunDir.start set it up: console, and the run's log.txt
    steps = config["steps"]
    seed_everything(config["seed"])

    # Construct networks.
    vae = VAE(config["size"], config["width"], config["latent"]).to(dev)
    opt = torch.optim.Adam(vae.parameters(), lr=config["lr"])
    ffl = FocalFrequencyLoss(alpha=config["alpha"], patch_factor=config["patch_factor"],
                             ave_spectrum=config["ave_spectrum"], log_matrix=config["log_matrix"],
                             batch_matrix=config["batch_matrix"], transform=config["transform"])
    amp_dtype = autocast_dtype(dev, config["amp"])
    scaler = grad_scaler(dev, amp_dtype)
    loss = VAELoss(vae, ffl, config["kl_weight"], config["ffl_weight"], config["seed"], amp_dtype, scaler)
    models, optimizers = {"vae": vae}, {"opt": opt}

    # Resume.
    ckpts = Checkpoints(run.checkpoints, keep_last=config["keep_last"])
    start = 0
    if resume and (latest := ckpts.latest()) is not None:
        start = load_checkpoint(latest, models=models, optimizers=optimizers, scaler=scaler, map_location=dev)["step"]
        log.info("resumed %s from %s (step %d)", run.path.name, latest, start)

    # Load training set (one process: compare trains its two runs in turn).
    sampler = StepSampler(start, steps, config["batch"])
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=config["workers"], pin_memory=dev.type == "cuda",
                        generator=torch.Generator())  # leaves the global RNG (checkpointed) alone

    # Export sample images.
    fixed = fixed.to(dev)

    # Train.
    step = start
    with MetricLogger(run.metrics, run.tensorboard, start) as metrics, GracefulStop() as stop, \
            progress(steps, initial=start, desc=run.path.name, disable=quiet) as bar:
        for images in loader:
            # Fetch data.
            images, indices = images.to(dev, non_blocking=True), sampler.indices(step)

            # VAE step.
            vae.train()
            set_lr(opt, cosine_lr(config["lr"], step, steps))
            opt.zero_grad(set_to_none=True)
            terms = loss.accumulate_gradients("main", images, indices)
            scaler.step(opt)
            scaler.update()

            # Log.
            step += 1
            values = metrics.log(step, **terms)
            bar.set_postfix(mse=f"{values['mse']:.4f}", ffl=f"{values['ffl']:.2e}")
            bar.update()

            # Samples.
            if step % config["sample_every"] == 0 or step == steps:
                vae.eval()
                save_grid(torch.cat([fixed, vae.reconstruct(fixed).clamp(-1, 1)]), run.sample_path(step),
                          nrow=len(fixed))

            # Checkpoint.
            if step % config["ckpt_every"] == 0 or step == steps or stop.requested:
                ckpts.save(step, models=models, optimizers=optimizers, scaler=scaler, config=config)
            if stop.requested:  # after the checkpoint: a signal that came while a batch loaded still saves
                break

    # Done.
    if step < steps:
        log.info("%s stopped at step %d; continue with --resume", run.path.name, step)
    return vae.eval(), step >= steps
