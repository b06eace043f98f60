"""PetsGAN (Zhang et al., "PetsGAN: Rethinking Priors for Single Image Generation", AAAI 2022).

    DEPNet G       noise (1 channel) + sinusoidal positional encoding (8 channels) -> a layout c at 1/8 of the
                   image size; trained against D_G (a small strided critic with a linear head) on the external-prior
                   data set, with the collapse penalty  - E |D_G(G(z1)) - D_G(G(z2))|  (paper Eq. 6: D_G's
                   probabilities). Not in the paper: `layout_diversity` > 0 adds  - w min(E |G(z1) - G(z2)|, m),
                   m the data set's own mean pairwise L1 (without a prior the paper form collapses; README).
    DIPNet F       PT (patch transfer: 7x7 patches of conv features, cosine similarity, softmax with temperature
                   tau, each patch replaced by its best match a_{i,i*} w_{i*} of c_I, overlaps averaged; Eq. 7),
                   then IR (x8 restoration by 3 conv + pixel-shuffle stages); trained by
                   ||F(c_I + dc) - I|| - ||A||_F^2 (Eq. 8).
    D              one multi-scale patch discriminator (3 branches with dilations 1, 2, 3, summed), hinge loss,
                   no gradient penalty, on F(G(z)) against I (rho_tau of Eq. 5).
    phases         Warmup_G (2000: G, D_G; lr 1e-4), Warmup_F (5000: F; lr 5e-4), then the Adam optimizers are
                   reset and all train jointly (5000: G at 1e-6, D_G, IR and D at 1e-4; PT frozen) (supp. Alg. 1).
    EMA of G       `ema_decay` > 0 (on under `--official`, not in the paper): the official code's exponential moving
                   average of G (decay 0.99 from iteration 0, updated after every G step of Warmup_G and of the joint
                   phase; the joint phase starts G from it; samples are drawn from it).

The layer shapes follow the official code (zhangzc21/PetsGAN, `Models/models.py`) since the supplementary's
architecture figure is not in the text we have; the losses follow the paper unless `official=True` (the README
lists every switch). `--prior none` is the paper's "w/o phi" ablation: D_G's data set holds only the thin-plate-spline
/ flip augmentations of the image; `--prior stylegan2` adds the jittered syntheses of the image inverted into a
pixforge-core StyleGAN2 generator (`stylegan2_prior.py`), `--prior biggan` those of a user's BigGAN (the official
prior; `biggan.py`). The networks and the trained sampler are in `petsgan_model.py`; here: losses, data, the loop.
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pixforge.core.checkpoint import Checkpoints, read_checkpoint, restore_rng, save_release
from pixforge.core.io import save_grid
from pixforge.core.loop import GracefulStop, MetricLogger, progress
from pixforge.core.rundir import RunDir
from pixforge.core.steps import sample_noise
from pixforge.export.errors import PixforgeError
from pixforge.singleimage.data import resize
from pixforge.singleimage.petsgan_model import (
    MIN_LR_SIDE,
    TAU_JOINT,
    DEPDiscriminator,
    DEPNet,
    PatchDiscriminator,
    PatchTransfer,
    PetsGAN,
    Restoration,
)
from pixforge.singleimage.stylegan2_prior import stylegan2_prior

# ----------------------------------------------------------------------------------------------------------------
# Losses.

def collapse_penalty(scores: torch.Tensor, official: bool = False) -> torch.Tensor:
    """E |D_G(G(z1)) - D_G(G(z2))| over the pairs (first half, second half) of the batch (paper Eq. 6; it is
    subtracted from G's loss), on D_G's probabilities sigmoid(logit): Eq. 6's D_G is the probability of its
    log D_G terms. official=True: the raw critic scores of the first two samples (official
    `-l1(output[0], output[1])`)."""
    if official:
        return (scores[0] - scores[1]).abs().mean()
    half = scores.shape[0] // 2
    if half < 1:
        raise ValueError("the collapse penalty needs a batch of at least 2")
    prob = torch.sigmoid(scores)
    return (prob[:half] - prob[half:2 * half]).abs().mean()


def pair_l1(x: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance between the pairs (first half, second half) of a batch."""
    half = x.shape[0] // 2
    return (x[:half] - x[half:2 * half]).abs().mean()


def layout_diversity(layouts: torch.Tensor, margin: float) -> torch.Tensor:
    """min(E |G(z1) - G(z2)|, margin) over the batch's pairs: the `--layout-diversity` term (not in the paper; a
    mode-seeking term in pixel space, subtracted from G's loss), capped at the data set's own pairwise distance so
    that it stops pushing once the layouts are as varied as D_G's data."""
    return pair_l1(layouts).clamp(max=margin)


def data_spread(data: torch.Tensor, seed: int) -> float:
    """The mean L1 distance between the samples of `data` paired at random (deterministic in `seed`)."""
    order = torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(seed))
    return float((data[order[:-1]] - data[order[1:]]).abs().mean()) if data.shape[0] > 1 else 0.0


def ns_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The non-saturating GAN loss of D: -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def ns_g_loss(fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake).mean()


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def hinge_g_loss(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def wgan_gp_fc(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Official `calc_gradient_penalty_fc`: per-sample alpha (official draws it from N(0, 1)), whole-image gradient
    norm, weight 10."""
    mix = (alpha * real + (1 - alpha) * fake.detach()).requires_grad_(True)
    grad, = torch.autograd.grad(D(mix).sum(), mix, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean() * 10


def sparsity(attn: torch.Tensor) -> torch.Tensor:
    """||A||_F^2 per row, averaged over rows and the batch (1 when every row is one-hot)."""
    return attn.pow(2).sum(-1).mean()


# ----------------------------------------------------------------------------------------------------------------
# Data.

def petsgan_sizes(height: int, width: int, max_size: int = 256, downscale: int = 8) -> list[tuple[int, int]]:
    """[(h, w) of c_I, (H, W) of I]: the longer side resized to at most `max_size`, both sides floored to multiples
    of `downscale` (official `_read_image`). PixforgeError when c_I would be under MIN_LR_SIDE."""
    scale = min(max_size / height, max_size / width, 1.0)
    hh, ww = int(height * scale) // downscale * downscale, int(width * scale) // downscale * downscale
    if min(hh, ww) // downscale < MIN_LR_SIDE:
        need = math.ceil(MIN_LR_SIDE * downscale / scale)
        raise PixforgeError(f"the image ({height}x{width}) is too small for PetsGAN: its shorter side must be at "
                            f"least {need} px (the 1/{downscale} layout needs {MIN_LR_SIDE} px after fitting "
                            f"--max-size {max_size})")
    return [(hh // downscale, ww // downscale), (hh, ww)]


def tps_augment(image: torch.Tensor, count: int, seed: int, points: int = 4, jitter: float = 0.05) -> torch.Tensor:
    """`count` augmentations of `image` (1 x 3 x H x W): a thin-plate-spline warp whose `points` x `points` control
    grid is jittered by N(0, jitter) (official tps_warp: 4 points per side, scale 0.05) and a horizontal flip with
    probability 1/2; deterministic in `seed`."""
    from kornia.geometry.transform import get_tps_transform, warp_image_tps

    gen = torch.Generator().manual_seed(seed)
    lin = torch.linspace(-1, 1, points)
    grid = torch.stack(torch.meshgrid(lin, lin, indexing="xy"), -1).reshape(1, -1, 2)
    src = grid.expand(count, -1, -1).contiguous()
    dst = src + jitter * torch.randn(src.shape, generator=gen)
    kernel, affine = get_tps_transform(dst, src)
    warped = warp_image_tps(image.expand(count, -1, -1, -1).contiguous(), src, kernel, affine, align_corners=False)
    flip = torch.rand(count, generator=gen) < 0.5
    warped[flip] = warped[flip].flip(-1)
    return warped.clamp(-1, 1)


# ----------------------------------------------------------------------------------------------------------------
# Training.

def ema_update(target: nn.Module, source: nn.Module, decay: float) -> None:
    """target <- decay * target + (1 - decay) * source, entry by entry over the state dicts (official
    `functions.ema.update`, `Utils/functions.py:229-239`: parameters and buffers alike; non-float buffers, which
    DEPNet has none of, are copied)."""
    with torch.no_grad():
        src = source.state_dict()
        for key, value in target.state_dict().items():
            if value.is_floating_point():
                value.copy_(value * decay + src[key] * (1 - decay))
            else:
                value.copy_(src[key])


def training_loop(run: RunDir, config: dict[str, Any], image: torch.Tensor, dev: torch.device, *, resume: bool,
                  overwrite: bool, quiet: bool) -> Path:
    """Warmup_G, Warmup_F, then joint training (supp. Alg. 1), as one global step counter."""
    # Initialize.
    config = run.start(config, resume=resume, overwrite=overwrite)
    log = logging.getLogger("pixforge")
    seed, official, factor = config["seed"], config["official"], config["downscale"]
    (lh, lw), (hh, ww) = config["sizes"]
    hr = resize(image, (hh, ww)).to(dev)
    lr = resize(hr, (lh, lw))
    ref = torch.cat([lr, lr.flip(-1)], -1) if official else lr  # official matches against c_I and its mirror
    # --no-phi: the paper's "w/o phi" ablation (Table 1): Eq. 6 is dropped, so there is no Warmup_G and no D_G; G
    # keeps its initialization but for the joint phase's rho_tau updates (lr 1e-6, through PT at tau 1e-5).
    no_phi = config.get("no_phi", False)
    wg, wf, wj = 0 if no_phi else config["warmup_g"], config["warmup_f"], config["joint"]
    # --hr-factor > 1: the official hrnet stage (max_size > 256), trained alone after the joint phase
    hr_factor = config.get("hr_factor", 1)
    wh = config.get("hr_steps", 0) if hr_factor > 1 else 0
    joint_end = wg + wf + wj
    total = joint_end + wh
    batch = config["batch_g"]
    # The (c, X) pairs: I, its mirror and the TPS / flip augmentations of I, with c = X at 1/f. They are D_G's data
    # set (prior "none") and F's training pairs (on c_I -> I alone IR would see one input: PT erases dc).
    warped = tps_augment(hr.cpu(), config["augment"], seed, jitter=config["warp"]).to(dev)
    pairs_hr = torch.cat([hr, hr.flip(-1), warped])
    pairs_lr = resize(pairs_hr, (lh, lw))
    data = pairs_lr
    if config["prior"] == "stylegan2":  # + the 500 perturbed samples of the inverted image (supp. Alg. 1)
        data = torch.cat([stylegan2_prior(config["prior_model"], hr, config["prior_samples"], (lh, lw), seed, dev),
                          data])
    elif config["prior"] == "biggan":  # the official prior: DGP inversion into BigGAN + latent jitter
        from pixforge.singleimage.biggan import biggan_prior

        data = torch.cat([biggan_prior(config["prior_model"], hr, config["prior_samples"], (lh, lw), seed, dev), data])

    # --layout-diversity (not in the paper): G's pairwise layout distance is pushed up to the data set's own spread
    div_weight = config.get("layout_diversity", 0.0)
    margin = data_spread(data, seed)

    # Construct networks (phase-specific optimizers; the joint phase's are new: the Adam reset).
    torch.manual_seed(seed)
    G, DG = DEPNet(config["g_dim"]).to(dev), DEPDiscriminator((lh, lw)).to(dev)
    PT = PatchTransfer(config["vgg"], config.get("pt_passes", 1)).to(dev)
    IR = Restoration(config["ir_dim"], factor).to(dev)
    D = PatchDiscriminator(config["d_dim"]).to(dev)
    betas = (0.9, 0.999)  # Adam's defaults (paper: Adam; official: defaults)
    opts = {"G": torch.optim.Adam(G.parameters(), lr=1e-4, betas=betas),
            "DG": torch.optim.Adam(DG.parameters(), lr=1e-4, betas=betas),
            # F: PT at 1e-5 (official lr_lpm; at the paper's 5e-4 its ReLU features die within ~100 steps and the
            # attention turns uniform), IR at 5e-4 (paper, official lr_recnet)
            "F": torch.optim.Adam([{"params": PT.parameters(), "lr": 1e-5},
                                   {"params": IR.parameters(), "lr": 5e-4}], betas=betas),
            "G_joint": torch.optim.Adam(G.parameters(), lr=1e-6, betas=betas),
            "DG_joint": torch.optim.Adam(DG.parameters(), lr=1e-4, betas=betas),
            "IR_joint": torch.optim.Adam(IR.parameters(), lr=1e-4, betas=betas),
            "D_joint": torch.optim.Adam(D.parameters(), lr=1e-4, betas=betas)}
    models = {"G": G, "DG": DG, "PT": PT, "IR": IR, "D": D}
    # --ema-decay (official G_ema, `main.py:199-203`): a copy of G at initialization, updated after every G step
    ema = config.get("ema_decay", 0.0)
    G_ema = copy.deepcopy(G).requires_grad_(False) if ema else None
    if G_ema is not None:
        models["G_ema"] = G_ema
    HR = None
    if hr_factor > 1:  # official hr_learning (`main.py:728-808`): hrnet(64, up_factor), Adam 1e-4, MSE, batch 2
        from pixforge.singleimage.highres import HRNet

        HR = models["HR"] = HRNet(64, hr_factor).to(dev)
        opts["HR"] = torch.optim.Adam(HR.parameters(), lr=1e-4, betas=betas)
        target = resize(image.to(dev), (hr_factor * hh, hr_factor * ww))  # the original image at up_factor x I
        hr_in, hr_out = torch.cat([hr, hr.flip(-1)]), torch.cat([target, target.flip(-1)])
    fixed_z = sample_noise((1, lh, lw), [2**40], seed, 0, dev)

    # Resume.
    ckpts = Checkpoints(run.checkpoints, keep_last=config["keep_last"])
    start = 0
    if resume and (latest := ckpts.latest()) is not None:
        ckpt = read_checkpoint(latest, map_location=dev)
        if ema and "G_ema" not in ckpt["models"]:
            raise PixforgeError(f"--resume: {latest} holds no EMA of G (the run was trained without one): resume "
                                "with --ema-decay 0")
        # a run finished without the hrnet stage may be continued with one (it starts where a straight run would)
        fresh = {"HR"} if "HR" not in ckpt["models"] and ckpt["step"] <= joint_end else set()
        for name, net in models.items():
            if name not in fresh:
                net.load_state_dict(ckpt["models"][name])
        for name, opt in opts.items():
            if name not in fresh:
                opt.load_state_dict(ckpt["optimizers"][name])
        restore_rng(ckpt["rng"])
        start = ckpt["step"]
        log.info("resumed from %s (step %d of %d)", latest, start, total)

    def noise(n: int, step: int, slot: int) -> torch.Tensor:
        return sample_noise((1, lh, lw), range((step * 8 + slot) * 64, (step * 8 + slot) * 64 + n), seed, 0, dev)

    def pick(n: int, step: int, slot: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step * 8 + slot)
        return data[torch.randint(0, data.shape[0], (n,), generator=gen)]

    def g_prior_step(step: int, opt_g, opt_dg) -> dict[str, torch.Tensor]:
        """One D_G step and the G loss of phi (Eq. 6); returns the G loss (not yet backpropagated) and the terms."""
        opt_dg.zero_grad(set_to_none=True)
        real = pick(batch, step, 0)
        with torch.no_grad():
            fake = G(noise(batch, step, 1))
        if official:
            alpha = sample_noise((1, 1, 1), range(batch), seed + step * 8 + 2, 0, dev)
            d_loss = -DG(real).mean() + DG(fake).mean() + wgan_gp_fc(DG, real, fake, alpha)
        else:
            d_loss = ns_d_loss(DG(real), DG(fake))
        d_loss.backward()
        opt_dg.step()
        layouts = G(noise(batch, step, 3))
        DG.requires_grad_(False)  # G's loss needs no D_G weight gradients (they were zeroed before use anyway)
        scores = DG(layouts)
        DG.requires_grad_(True)
        adv = -scores.mean() if official else ns_g_loss(scores)
        collapse = collapse_penalty(scores, official)
        g_loss = adv - collapse
        if official:
            g_loss = g_loss + 50 * F.mse_loss(G(fixed_z), lr)
        terms = {"dg": d_loss.detach(), "g_adv": adv.detach(), "collapse": collapse.detach()}
        if div_weight:
            div = layout_diversity(layouts, margin)
            g_loss = g_loss - div_weight * div
            terms["layout_div"] = div.detach()
        return {"g_loss": g_loss, **terms}

    def f_rec(step: int, tau: float, joint: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """||F(c + dc) - X|| (MSE in Warmup_F, L1 in the joint phase) and ||A||_F^2 (Eq. 8) on one (c, X) pair:
        any pair; official: I or its mirror, PT and IR reconstructed separately (IR from c + 0.3 n), the PT term in
        Warmup_F only (PT is frozen after it)."""
        norm = F.l1_loss if joint else F.mse_loss
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step * 8 + 5)
        k = int(torch.randint(0, 2 if official else pairs_hr.shape[0], (1,), generator=gen))
        c, x = pairs_lr[k:k + 1], pairs_hr[k:k + 1]
        dc = (0.01 if official else 0.1) * sample_noise(lr.shape[1:], [step * 8 + 5], seed, 0, dev)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not joint):  # PT is frozen in the joint phase
            pt, attn = PT(c + dc, ref, tau, passes=None if joint else 1)  # Warmup_F: one pass (official n=1)
        if not official:
            return norm(IR(pt), x), sparsity(attn)
        rec = norm(IR(c + 0.3 * sample_noise(lr.shape[1:], [step * 8 + 6], seed, 0, dev)), x)
        return (rec if joint else rec + F.mse_loss(pt, c)), sparsity(attn)

    step = start
    with MetricLogger(run.metrics, run.tensorboard, start) as metrics, GracefulStop() as stop, \
            progress(total, initial=start, disable=quiet) as bar:
        while step < total:
            phase = "G" if step < wg else "F" if step < wg + wf else "joint" if step < joint_end else "hr"
            if phase == "G":  # Warmup_G: phi only.
                terms = g_prior_step(step, opts["G"], opts["DG"])
                opts["G"].zero_grad(set_to_none=True)
                terms.pop("g_loss").backward()
                opts["G"].step()
                if G_ema is not None:
                    ema_update(G_ema, G, ema)
            elif phase == "F":  # Warmup_F: phi_F.
                opts["F"].zero_grad(set_to_none=True)
                rec, spa = f_rec(step, config["tau"])
                (rec - spa).backward()
                opts["F"].step()
                terms = {"f_rec": rec.detach(), "sparsity": spa.detach()}
            elif phase == "hr":  # hrnet: I and its mirror -> the original image at hr_factor x, and its mirror
                opts["HR"].zero_grad(set_to_none=True)
                rec = F.mse_loss(HR(hr_in), hr_out)
                rec.backward()
                opts["HR"].step()
                terms = {"hr_rec": rec.detach()}
            else:  # Joint: rho_tau (hinge, D) + phi + phi_F; PT frozen.
                if G_ema is not None and step == wg + wf:  # official: the joint G starts from Warmup_G's EMA
                    G.load_state_dict(G_ema.state_dict())   # (`main.py:553-557`)
                PT.requires_grad_(False)
                opts["D_joint"].zero_grad(set_to_none=True)
                with torch.no_grad():
                    fake = IR(PT(G(noise(1, step, 4)), ref, TAU_JOINT)[0])
                real = hr
                if official:  # the official D sees I or its mirror (`use_flip`, main.py:574-576, 597)
                    coin = torch.randint(0, 2, (1,), generator=torch.Generator().manual_seed(seed * 1_000_003
                                                                                            + step * 8 + 3))
                    real = hr.flip(-1) if int(coin) else hr
                d_loss = hinge_d_loss(D(real), D(fake))
                d_loss.backward()
                opts["D_joint"].step()
                # official: no phi in the joint phase (D_G is not trained there); --no-phi: no phi at all
                terms = {} if official or no_phi else g_prior_step(step, opts["G_joint"], opts["DG_joint"])
                g_phi = terms.pop("g_loss", 0)
                opts["G_joint"].zero_grad(set_to_none=True)
                opts["IR_joint"].zero_grad(set_to_none=True)
                D.requires_grad_(False)  # G and IR's step needs no D weight gradients (official computes them)
                adv = hinge_g_loss(D(IR(PT(G(noise(1, step, 7)), ref, TAU_JOINT)[0])))
                D.requires_grad_(True)
                rec = f_rec(step, TAU_JOINT, joint=True)[0]
                loss = adv + config["rec_weight"] * rec + g_phi
                loss.backward()
                opts["G_joint"].step()
                opts["IR_joint"].step()
                if G_ema is not None:
                    ema_update(G_ema, G, ema)
                terms.update(d=d_loss.detach(), g_patch=adv.detach(), f_rec=rec.detach())

            # Log.
            step += 1
            if step % config["log_every"] == 0 or step in (wg, wg + wf, joint_end, total):
                metrics.log(step, phase={"G": 0, "F": 1, "joint": 2, "hr": 3}[phase], **terms)
            bar.set_postfix(phase=phase)
            bar.update()

            # Samples.
            if step in (wg, wg + wf, joint_end, total):
                with torch.no_grad():
                    G.eval()
                    lay = (G if G_ema is None else G_ema)(noise(6, 2**30, 0))  # official: from the EMA
                    grid = [resize(lay, (hh, ww)), IR(PT(lay, ref, TAU_JOINT)[0])]
                    if phase == "hr":  # hrnet on F(G(z)) (official: on its TTSR refinement; `sample --refine`)
                        grid = [resize(grid[1], (hr_factor * hh, hr_factor * ww)), HR(grid[1])]
                    save_grid(torch.cat(grid).clamp(-1, 1), run.samples / f"phase-{phase}.png", nrow=6)
                    G.train()

            # Checkpoint.
            if step % config["ckpt_every"] == 0 or step in (wg, wg + wf, joint_end, total) or stop.requested:
                ckpts.save(step, models=models, optimizers=opts, config=config)
            if stop.requested:  # after the checkpoint
                break

    # Done.
    if step < total:
        log.info("stopped at step %d of %d; continue with --resume", step, total)
        return run.path
    model = PetsGAN(G, PT, IR, ref, factor, (hh, ww), G_ema=G_ema, image=hr, HR=HR)
    save_release(run.path, model.state(), {"method": "petsgan", "sizes": config["sizes"], "downscale": factor,
                                           "g_dim": config["g_dim"], "ir_dim": config["ir_dim"], "step": step,
                                           "ema_decay": ema, "hr_factor": hr_factor, "pt_passes": PT.passes})
    save_grid(model.sample(8, seed=seed + 1), run.samples / "final.png", nrow=8)
    log.info("finished %d steps: %s", step, run.path)
    return run.path
