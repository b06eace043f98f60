"""TSIT training: generator (two streams + FADE/FAdaIN decoder) against a multi-scale PatchGAN, as the official code.

    train(...)          the launcher and CLI verb: every option checked, per-task defaults, the dataset; then
    training_loop(...)  one loop under the phase headings of `pixforge.core.toy` (the template);
    TSITLoss            the forward passes and loss terms of the "G" and "D" phases.

Per step (batch per process; under torchrun the global batch is batch x world size):
  G step: fake = G(content, style, noise); L_G = hinge_G(D(fake)) + lambda_feat * FM(D(fake), D(real))
          + lambda_vgg * P(fake, target) [+ lambda_kld * KL with the VAE] (P: VGG19, or pfr18 without its weights),
          target = content for style transfer,
          the real image for semantic synthesis; D sees (label, image) pairs there.
  D step: a fresh fake (no grad); L_D = hinge(D(real)) + hinge(D(fake)).
Adam(0, 0.9), TTUR lr G 1e-4 / D 4e-4, optional linear decay to 0 over the last `decay_steps` steps.
Data and noise are functions of (seed, global sample index) (`pixforge.core.steps`) and FADE's batch norm spans every
process under torchrun, so `--resume` continues exactly and N processes on --batch B train what one process trains
on N * B.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixforge.core import distributed
from pixforge.core.checkpoint import Checkpoints, load_checkpoint, save_release
from pixforge.core.io import save_grid
from pixforge.core.loop import EMA, GracefulStop, MetricLogger, progress
from pixforge.core.losses import (
    feature_matching_loss,
    hinge_d_loss,
    hinge_g_loss,
    kl_divergence,
    perceptual_kind,
    perceptual_loss,
)
from pixforge.core.nets.patchgan import MultiScaleDiscriminator
from pixforge.core.rundir import RunDir
from pixforge.core.runtime import autocast, autocast_dtype, configure, grad_scaler, resolve_device, seed_everything
from pixforge.core.steps import StepSampler, linear_decay_lr, sample_noise, set_lr
from pixforge.export.errors import PixforgeError
from pixforge.export.images import parse_size
from pixforge.export.options import check_numbers
from pixforge.tsit import data as tdata
from pixforge.tsit.model import TASKS, build_encoder, build_generator, check_enc_size, classes, make_arch
from pixforge.tsit.nets import init_weights, sync_batch_norm

# (lambda_vgg, lambda_feat) of the official train scripts: summer2winter / mmis 1, 1 (day2night 2, 1; photo2art 1, 2);
# Cityscapes / ADE20K 20, 10 with the VAE (lambda_kld 0.05)
TASK_WEIGHTS = {"ast": (1.0, 1.0), "mmis": (1.0, 1.0), "sis": (20.0, 10.0)}
SAMPLES = 4
# one noise stream per draw: `sample_noise(..., salt)`
G_NOISE, D_NOISE, SAMPLE_NOISE, FID_NOISE = 0, 1, 2, 3


def train(out: str, task: str = "ast", content: str | None = None, style: str | None = None, size=256,
          batch: int = 1, steps: int | None = None, kimg: float | None = None, ngf: int = 64, levels: int = 8,
          ndf: int = 64, num_d: int = 2, n_layers_d: int | None = None, num_classes: int | None = None,
          dontcare: int | None = None, instances: str | None = None, vae: bool | None = None, z_dim: int = 256,
          enc_size: int = 256, lambda_vgg: float | None = None, perceptual: str = "auto",
          lambda_feat: float | None = None, lambda_kld: float = 0.05, lr_g: float = 1e-4, lr_d: float = 4e-4,
          beta1: float = 0.0, beta2: float = 0.9, decay_steps: int = 0, vgg_weights: str | None = None,
          vgg_imagenet_norm: bool = False, preprocess: str = "fixed", load_size: int | None = None,
          hflip: bool = True, ema: float = 0.0, seed: int = 0, workers: int = 0, ckpt_every: int = 1000,
          sample_every: int = 500, keep_last: int = 3, fid_every: int = 0, fid_images: int = 500,
          inception_weights: str | None = None, device: str = "auto", amp: bool | str = False,
          threads: int | None = None, resume: bool = False, overwrite: bool = False, quiet: bool = False) -> Path:
    """Train TSIT into the run directory OUT (config.json, checkpoints/, samples/, metrics.jsonl, log.txt);
    multi-GPU with `torchrun --nproc-per-node G -m pixforge.tsit.cli train ...` (--batch is per process).

    Tasks: ast = arbitrary style transfer (--content and --style: unpaired image folders); mmis = multi-modal
    synthesis (--style holds one subfolder per condition); sis = semantic synthesis (--content: label-map PNGs
    of class ids, --style: the matching images by relative name, --num-classes K; VAE encoder on by default;
    --dontcare 255 adds the "don't care" class for that id (official contain_dontcare_label; ADE20K as the
    official code feeds it: --num-classes 151, id 0 "unknown" a class of its own; or --num-classes 150
    --dontcare 0, the SPADE intent: 0 -> the don't-care class, ids above 0 down by one); --instances DIR adds
    the instance maps' boundary channel (official default for Cityscapes, whose *_instanceIds.png go there,
    renamed to the label maps' names)).
    Network: --ngf 64 and --levels 8 are the official model (~398M parameters, stride 128: sizes must be
    multiples of 2^(levels-1)); --num-d 2 scales of --n-layers-d 3 (4 for sis) PatchGANs.
    Losses: hinge GAN + --lambda-feat feature matching + --lambda-vgg perceptual (defaults per task as the
    official scripts: ast/mmis 1/1, sis 20/10, + --lambda-kld 0.05 with the VAE, the KL summed over the global
    batch). --perceptual vgg (VGG19, official: --vgg-weights PATH|URL, torchvision's vgg19 file), pfr18
    (pixforge-core's procedural ResNet-18, no download; LPIPS's form), off; auto (default) = vgg when the VGG19
    weights are found, else pfr18.
    Optimiser: Adam(--beta1 0, --beta2 0.9), --lr-g 1e-4 / --lr-d 4e-4, --decay-steps N = linear decay to 0 over
    the last N steps. Length: --steps N or --kimg K (thousands of images). --size 256 or HxW (the crop);
    --preprocess fixed (resize to --size; Cityscapes, style transfer), resize_and_crop (--load-size square, then a
    random crop; ADE20K 286), crop, scale_width_and_crop or scale_shortside_and_crop (to --load-size); --amp
    (bf16/fp16 on GPU); --ema 0.999 keeps an EMA generator; --fid-every N with --inception-weights logs FID
    against the style images. --resume continues."""
    config = {k: v for k, v in locals().items() if k not in ("out", "resume", "overwrite", "quiet", "threads")}
    # Check options and data (before the run directory exists).
    check_numbers({**config, "threads": threads}, integers=INTEGERS, positive=POSITIVE, non_negative=NON_NEGATIVE,
                  fractions=FRACTIONS)
    if Path(out).exists() and not Path(out).is_dir():
        raise PixforgeError(f"--out {out} exists and is not a folder (a run directory)")
    if task not in TASKS:
        raise PixforgeError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    if content is None or style is None:
        raise PixforgeError("--content and --style are required (semantic synthesis: label maps and images)")
    size = parse_size(size)
    check_size(size, levels)
    if (steps is None) == (kimg is None):
        raise PixforgeError("give exactly one of --steps or --kimg (the training length)")
    sis = task == "sis"
    vae = sis if vae is None else bool(vae)
    if vae and not sis:
        raise PixforgeError("--vae is for semantic synthesis (--task sis) only")
    if vae:
        check_enc_size(enc_size)
    if not sis and (dontcare is not None or instances is not None):
        raise PixforgeError("--dontcare and --instances are for semantic synthesis (--task sis) only")
    perceptual = perceptual_kind(perceptual, vgg_weights)
    if fid_every > 0 and inception_weights is None:
        raise PixforgeError("--fid-every needs --inception-weights (the public pt_inception-2015-12-05 file)")
    dataset, conditions = _dataset(task, content, style, size, num_classes, seed, preprocess, load_size, hflip,
                                   dontcare, instances)
    # Resolve defaults.
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    world = distributed.setup(dev).world_size
    default_vgg, default_feat = TASK_WEIGHTS[task]
    arch = make_arch(task, ngf=ngf, levels=levels, size=size, num_classes=num_classes, dontcare=dontcare,
                     instance=instances is not None, vae=vae, z_dim=z_dim, enc_size=enc_size, conditions=conditions)
    config.update(perceptual=perceptual, size=list(size),
                  steps=steps if steps is not None else math.ceil(kimg * 1000 / (batch * world)),
                  vae=vae, lambda_vgg=default_vgg if lambda_vgg is None else lambda_vgg,
                  lambda_feat=default_feat if lambda_feat is None else lambda_feat, arch=arch)
    run = RunDir(out, [content, style, instances, vgg_weights, inception_weights])
    return training_loop(run, config, dataset, dev, resume=resume, overwrite=overwrite, quiet=quiet)


class TSITLoss:
    """TSIT's forward passes and loss terms, per phase: "G" (hinge, feature matching, perceptual, KL) and "D" (hinge
    on real and fresh fake). `G`, `D`, `E` are the (DDP-wrapped) networks; the G phase runs D outside DDP (frozen by
    the loop: gradients reach G through the fake images), the D phase generates without DDP and without gradients.
    Noise and VAE samples are drawn per global sample index (`indices`), one salt per draw."""

    def __init__(self, G, D, E, perceptual, config: dict[str, Any], world: int, amp_dtype, scaler):
        self.G, self.D, self.E, self.perceptual = G, D, E, perceptual
        self.sis = config["task"] == "sis"
        self.lambda_vgg, self.lambda_feat = config["lambda_vgg"], config["lambda_feat"]
        # the KL is a sum over the global batch: each process sums its share, world x that under DDP's gradient mean
        self.lambda_kld = config["lambda_kld"] * world
        self.seed, self.amp_dtype, self.scaler = config["seed"], amp_dtype, scaler

    def generate(self, G, E, content, real, indices, salt: int):
        """(fake, mu, logvar): G's output with noise (or the VAE code mu + sigma * noise) of sample `indices`."""
        mu = logvar = None
        if E is not None:
            mu, logvar = E(real)
            code = mu + sample_noise(mu.shape[1:], indices, self.seed, salt, mu.device) * torch.exp(0.5 * logvar)
        else:
            code = sample_noise(distributed.unwrap(G).noise_shape(1, *content.shape[-2:])[1:], indices, self.seed,
                                salt, content.device)
        return G(content, None if self.sis else real, code), mu, logvar

    def discriminate(self, D, content, fake, real):
        """D's outputs on the fakes and on the reals (one batch; semantic synthesis: label maps beside the images)."""
        pair = torch.cat([fake, real]) if not self.sis else torch.cat([torch.cat([content, fake], 1),
                                                                       torch.cat([content, real], 1)])
        outs = D(pair)
        return [[t[: len(fake)] for t in o] for o in outs], [[t[len(fake):] for t in o] for o in outs]

    def accumulate_gradients(self, phase: str, content, real, indices) -> dict[str, torch.Tensor]:
        """Forward, loss and (scaled) backward of `phase`; returns its loss terms, detached, for the log."""
        dev = content.device
        if phase == "G":
            with autocast(dev, self.amp_dtype):
                fake, mu, logvar = self.generate(self.G, self.E, content, real, indices, G_NOISE)
                pred_fake, pred_real = self.discriminate(distributed.unwrap(self.D), content, fake, real)
                terms = {"g_gan": hinge_g_loss(pred_fake),
                         "g_feat": feature_matching_loss(pred_fake, pred_real) * self.lambda_feat,
                         "g_vgg": (self.perceptual(fake, real if self.sis else content) * self.lambda_vgg
                                   if self.perceptual is not None else torch.zeros((), device=dev))}
                if mu is not None:
                    terms["g_kld"] = kl_divergence(mu.float(), logvar.float(), "sum") * self.lambda_kld
            self.scaler.scale(sum(terms.values())).backward()
        else:
            assert phase == "D", phase
            with torch.no_grad(), autocast(dev, self.amp_dtype):
                E = distributed.unwrap(self.E) if self.E is not None else None
                fake = self.generate(distributed.unwrap(self.G), E, content, real, indices, D_NOISE)[0]
            with autocast(dev, self.amp_dtype):
                pred_fake, pred_real = self.discriminate(self.D, content, fake, real)
                d_real, d_fake = hinge_d_loss(pred_real, pred_fake)
            self.scaler.scale(d_real + d_fake).backward()
            terms = {"d_real": d_real, "d_fake": d_fake}
        return {k: v.detach() for k, v in terms.items()}


def training_loop(run: RunDir, config: dict[str, Any], dataset: torch.utils.data.Dataset, dev: torch.device, *,
                  resume: bool, overwrite: bool, quiet: bool) -> Path:
    """The loop of `train`: `config` holds its resolved options; returns the run directory."""
    # Initialize.
    configure(dev)
    dist = distributed.setup(dev)
    steps, seed, arch = config["steps"], config["seed"], config["arch"]
    sis = config["task"] == "sis"
    n_classes = classes(arch) if sis else None
    seed_everything(seed)

    # Construct networks.
    G, E = init_weights(build_generator(arch)).to(dev), build_encoder(arch)
    E = init_weights(E).to(dev) if E is not None else None
    d_in = 3 + (arch["content_channels"] if sis else 0)  # D sees (label maps [+ edges], image) for sis
    D = init_weights(MultiScaleDiscriminator(d_in, config["num_d"], config["ndf"],
                                             config["n_layers_d"] or (4 if sis else 3))).to(dev)
    if dist.enabled:
        sync_batch_norm(G)  # FADE's batch norm over the global batch, as SyncBN upstream
    G_ema = EMA(G, config["ema"]) if config["ema"] > 0 else None
    g_params = list(G.parameters()) + (list(E.parameters()) if E is not None else [])
    opt_g = torch.optim.Adam(g_params, lr=config["lr_g"], betas=(config["beta1"], config["beta2"]))
    opt_d = torch.optim.Adam(D.parameters(), lr=config["lr_d"], betas=(config["beta1"], config["beta2"]))
    amp_dtype = autocast_dtype(dev, config["amp"])
    scaler = grad_scaler(dev, amp_dtype)
    perceptual = (perceptual_loss(config["perceptual"], config["vgg_weights"], config["vgg_imagenet_norm"])
                  if config["lambda_vgg"] > 0 else None)
    if perceptual is not None:
        perceptual = perceptual.to(dev)
    fid = _fid_metric(config["inception_weights"], dev) if config["fid_every"] > 0 else None
    models = {"G": G, "D": D, **({"E": E} if E is not None else {}), **({"G_ema": G_ema.module} if G_ema else {})}
    optimizers = {"G": opt_g, "D": opt_d}

    # Resume (read before the run is touched: a broken checkpoint leaves it as it was).
    ckpts = Checkpoints(run.checkpoints, keep_last=config["keep_last"])
    start, latest = 0, ckpts.latest() if resume else None
    if latest is not None:
        start = load_checkpoint(latest, models=models, optimizers=optimizers, scaler=scaler, map_location=dev)["step"]
    config = run.start(config, resume=resume, overwrite=overwrite)  # only now, every input checked, is it written
    log = logging.getLogger("pixforge")  # RunDir.start set it up: console, and log.txt on the main rank
    if latest is not None:
        log.info("resumed from %s (step %d)", latest, start)

    # Distribute.
    G_ddp, D_ddp = distributed.wrap_ddp(G, dev), distributed.wrap_ddp(D, dev)
    E_ddp = distributed.wrap_ddp(E, dev) if E is not None else None
    loss = TSITLoss(G_ddp, D_ddp, E_ddp, perceptual, config, dist.world_size, amp_dtype, scaler)
    sampler = StepSampler(start, steps, config["batch"], dist.rank, dist.world_size)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=config["workers"],
                                         pin_memory=dev.type == "cuda",
                                         generator=torch.Generator())  # leaves the global RNG (checkpointed) alone

    # Export sample images.
    fixed = _fixed_samples(dataset, dev)

    # Train.
    step = start
    with MetricLogger(run.metrics, run.tensorboard, start) as metrics, GracefulStop() as stop, \
            progress(steps, initial=start, disable=quiet) as bar:
        for item in loader:
            # Fetch data.
            content, real = _network_inputs(item, n_classes, dev)
            indices = sampler.indices(step)
            lr_scale = linear_decay_lr(1.0, step, steps, config["decay_steps"])
            set_lr(opt_g, config["lr_g"] * lr_scale)
            set_lr(opt_d, config["lr_d"] * lr_scale)

            # G step.
            D.requires_grad_(False)
            opt_g.zero_grad(set_to_none=True)
            terms = loss.accumulate_gradients("G", content, real, indices)
            scaler.step(opt_g)
            D.requires_grad_(True)

            # D step.
            opt_d.zero_grad(set_to_none=True)
            terms |= loss.accumulate_gradients("D", content, real, indices)
            scaler.step(opt_d)
            scaler.update()

            # EMA.
            if G_ema is not None:
                G_ema.update(G)
            final = G_ema.module if G_ema is not None else G

            # Log.
            step += 1
            values = metrics.log(step, **{k: distributed.all_reduce_mean(v) for k, v in terms.items()},
                                 lr_scale=lr_scale)
            bar.set_postfix(g=f"{values['g_gan']:.3f}", d=f"{values['d_real'] + values['d_fake']:.3f}")
            bar.update()

            # Samples.
            if dist.is_main and (step % config["sample_every"] == 0 or step == steps):
                _sample(final, E, fixed, run.sample_path(step), n_classes, seed, dev)

            # Metrics.
            if fid is not None and (step % config["fid_every"] == 0 or step == steps):
                metrics.log(step, fid=_fid(fid, final, E, dataset, config["fid_images"], n_classes, seed, dev,
                                           dist.rank, dist.world_size))

            # Checkpoint.
            if step % config["ckpt_every"] == 0 or step == steps or stop.requested:
                ckpts.save(step, models=models, optimizers=optimizers, scaler=scaler, config=config)
            if stop.requested:  # after the checkpoint: a signal that came while a batch loaded still saves
                break

    # Done.
    if step < steps:
        log.info("stopped at step %d; continue with --resume", step)
    elif dist.is_main:
        save_release(run.path, G_ema.module if G_ema is not None else G, arch, name="generator")
        if E is not None:
            save_release(run.path, E, arch, name="encoder")
        log.info("finished %d steps: %s", step, run.path)
    distributed.teardown()
    return run.path


def check_size(size: tuple[int, int], levels: int, what: str = "--size") -> None:
    stride = 2 ** (levels - 1)
    if size[0] % stride or size[1] % stride:
        raise PixforgeError(f"{what} {size[0]}x{size[1]} is not divisible by the network's stride {stride} "
                            f"(--levels {levels}): use a multiple of {stride} or fewer levels")
    if (size[0] // stride) * (size[1] // stride) < 2:
        raise PixforgeError(f"{what} {size[0]}x{size[1]} leaves a 1x1 map at the deepest level (stride {stride}), "
                            "where FAdaIN's variance is undefined: use a larger size or fewer levels")


# the smallest value of each integer option (None: not given)
INTEGERS = {"batch": 1, "steps": 1, "ngf": 1, "levels": 2, "ndf": 1, "num_d": 1, "n_layers_d": 1, "num_classes": 1,
            "z_dim": 1, "decay_steps": 0, "load_size": 1, "seed": 0, "workers": 0, "ckpt_every": 1, "sample_every": 1,
            "keep_last": 1, "fid_every": 0, "fid_images": 1, "threads": 1}
POSITIVE = ("kimg", "lr_g", "lr_d")
NON_NEGATIVE = ("lambda_vgg", "lambda_feat", "lambda_kld")
FRACTIONS = ("beta1", "beta2", "ema")  # in [0, 1)


def _dataset(task, content, style, size, num_classes, seed, preprocess, load_size, hflip, dontcare, instances):
    """The training set for `task`, with every file checked before anything is written; (dataset, conditions)."""
    if task == "sis":
        if not num_classes or num_classes < 1:
            raise PixforgeError("--task sis needs --num-classes (the number of label ids)")
        pairs = tdata.pair_files(content, style)
        tdata.check_images([img for _, img in pairs])
        for label, _ in pairs:
            tdata.read_label_map(label, num_classes, dontcare)
        inst = None
        if instances is not None:
            matched = dict(tdata.pair_files(content, instances))
            inst = [matched[label] for label, _ in pairs]
            for path in inst:
                tdata.read_instances(path)
        return tdata.PairedData(pairs, num_classes, size, seed=seed, preprocess=preprocess, load_size=load_size,
                                hflip=hflip, dontcare=dontcare, instances=inst), []
    content_files = tdata.list_images(content)
    groups = tdata.style_conditions(style)
    style_files = [f for files in groups.values() for f in files]
    tdata.check_images(content_files + style_files)
    conditions = sorted(groups) if task == "mmis" else []
    if task == "mmis" and len(conditions) < 2:
        raise PixforgeError(f"--task mmis needs style images in two or more condition subfolders of {style} "
                            "(e.g. night/, snowy/); for one style set use --task ast")
    return tdata.UnpairedData(content_files, style_files, size, seed=seed, preprocess=preprocess,
                              load_size=load_size, hflip=hflip), conditions


def _network_inputs(item: dict, n_classes: int | None, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(content, real image) on the device; semantic synthesis (`n_classes`): one-hot label maps (+ edges)."""
    content, real = item["content"].to(dev, non_blocking=True), item["style"].to(dev, non_blocking=True)
    if n_classes is None:
        return content, real
    inst = item["instance"].to(dev, non_blocking=True) if "instance" in item else None
    return tdata.semantics(content, n_classes, inst), real


def _fixed_samples(dataset, dev: torch.device) -> dict[str, torch.Tensor]:
    """SAMPLES items drawn outside the training index range: the same pictures at every sample step."""
    items = [dataset[2**61 + k] for k in range(SAMPLES)]
    return {key: torch.stack([it[key] for it in items]).to(dev) for key in items[0]}


def palette(num_classes: int) -> torch.Tensor:
    """A fixed colour per class (for label maps in sample grids), values in [-1, 1]."""
    colors = np.random.default_rng(0).integers(0, 256, (max(num_classes, 1), 3))
    return torch.from_numpy(colors).float() / 127.5 - 1


@torch.no_grad()
def _sample(G, E, fixed, path: Path, n_classes: int | None, seed: int, dev: torch.device) -> None:
    """A grid with one row per sample: content (label colours for semantic synthesis) | style | output."""
    was = G.training
    G.eval()
    sis = n_classes is not None
    c, s = fixed["content"], fixed["style"]
    net_c = tdata.semantics(c, n_classes, fixed.get("instance")) if sis else c
    noise = sample_noise(G.noise_shape(1, *c.shape[-2:])[1:], range(len(c)), seed, SAMPLE_NOISE, dev)
    if E is not None:
        E.eval()
        noise = E(s)[0]
        E.train()
    out = G(net_c, None if sis else s, noise).float()
    G.train(was)
    shown = palette(n_classes).to(dev)[c].movedim(-1, 1) if sis else c
    save_grid(torch.stack([shown, s, out], 1).flatten(0, 1).clamp(-1, 1), path, nrow=3)


def _fid_metric(weights: str, dev: torch.device) -> dict:
    """{"metric": torchmetrics FID on our InceptionV3 features, "real": whether it holds the real statistics}."""
    from pixforge.core.metrics import FrechetDistance
    from pixforge.core.nets.inception import InceptionFeatures

    fid = FrechetDistance(InceptionFeatures("fid", weights), reset_real_features=False)
    return {"metric": fid.to(dev), "real": False}


@torch.no_grad()
def _fid(fid: dict, G, E, dataset, count: int, n_classes: int | None, seed: int, dev: torch.device,
         rank: int = 0, world_size: int = 1) -> float:
    """FID of `count` translations (content and style drawn from the training sets) against as many style images.
    Under torchrun each rank scores every `world_size`-th batch of 8 and torchmetrics sums the ranks' feature
    statistics at `compute()`, so the images counted are the same `count` as in one process."""
    metric = fid["metric"]
    metric.reset()
    was = G.training
    G.eval()
    for start in range(8 * rank, count, 8 * world_size):
        items = [dataset[2**60 + k] for k in range(start, min(count, start + 8))]
        c = torch.stack([it["content"] for it in items]).to(dev)
        s = torch.stack([it["style"] for it in items]).to(dev)
        inst = torch.stack([it["instance"] for it in items]).to(dev) if "instance" in items[0] else None
        noise = (E.eval()(s)[0] if E is not None else
                 sample_noise(G.noise_shape(1, *c.shape[-2:])[1:], range(start, start + len(c)), seed, FID_NOISE, dev))
        out = G(tdata.semantics(c, n_classes, inst) if n_classes is not None else c,
                None if n_classes is not None else s, noise).float()
        if not fid["real"]:
            metric.update(((s + 1) / 2).clamp(0, 1), real=True)
        metric.update(((out + 1) / 2).clamp(0, 1), real=False)
    fid["real"] = True
    G.train(was)
    if E is not None:
        E.train()
    return metric.compute()["fid"]
