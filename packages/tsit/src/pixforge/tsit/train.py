"""TSIT training: generator (two streams + FADE/FAdaIN decoder) against a multi-scale PatchGAN, as the official code.

Per step (batch per process; under torchrun the global batch is batch x world size):
  G step: fake = G(content, style, noise); L_G = hinge_G(D(fake)) + lambda_feat * FM(D(fake), D(real))
          + lambda_vgg * VGG(fake, target) [+ KL * lambda_kld with the VAE], target = content for style transfer,
          the real image for semantic synthesis; D sees (label, image) pairs there.
  D step: a fresh fake (no grad); L_D = hinge(D(real)) + hinge(D(fake)).
Adam(0, 0.9), TTUR lr G 1e-4 / D 4e-4, optional linear decay to 0 over the last `decay_steps` steps.
Data, noise and VAE samples are functions of (seed, step, rank): `--resume` continues bit-exactly.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from pixforge.core import distributed
from pixforge.core.checkpoint import Checkpoints, load_checkpoint, save_release
from pixforge.core.io import save_grid
from pixforge.core.loop import EMA, GracefulStop, MetricLogger, progress
from pixforge.core.losses import VGGPerceptualLoss, feature_matching_loss, hinge_d_loss, hinge_g_loss
from pixforge.core.nets.patchgan import MultiScaleDiscriminator
from pixforge.core.rundir import RunDir
from pixforge.core.runtime import autocast, autocast_dtype, configure, grad_scaler, resolve_device, seed_everything
from pixforge.export.errors import PixforgeError
from pixforge.export.images import parse_size
from pixforge.tsit import data as tdata
from pixforge.tsit.model import TASKS, build_encoder, build_generator, check_enc_size, classes, make_arch
from pixforge.tsit.nets import init_weights, kl_divergence

# (lambda_vgg, lambda_feat) of the official train scripts: summer2winter / mmis 1, 1 (day2night 2, 1; photo2art 1, 2);
# Cityscapes / ADE20K 20, 10 with the VAE (lambda_kld 0.05)
TASK_WEIGHTS = {"ast": (1.0, 1.0), "mmis": (1.0, 1.0), "sis": (20.0, 10.0)}
SAMPLES = 4


def check_size(size: tuple[int, int], levels: int, what: str = "--size") -> None:
    stride = 2 ** (levels - 1)
    if size[0] % stride or size[1] % stride:
        raise PixforgeError(f"{what} {size[0]}x{size[1]} is not divisible by the network's stride {stride} "
                            f"(--levels {levels}): use a multiple of {stride} or fewer levels")
    if (size[0] // stride) * (size[1] // stride) < 2:
        raise PixforgeError(f"{what} {size[0]}x{size[1]} leaves a 1x1 map at the deepest level (stride {stride}), "
                            "where FAdaIN's variance is undefined: use a larger size or fewer levels")


class StepBatches(torch.utils.data.Sampler):
    """The global sample indices of each step from `start` on: rank r of w takes [(step*w + r)*batch, +batch)."""

    def __init__(self, start: int, steps: int, batch: int, rank: int, world: int):
        self.start, self.steps, self.batch, self.rank, self.world = start, steps, batch, rank, world

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def __iter__(self):
        for step in range(self.start, self.steps):
            first = (step * self.world + self.rank) * self.batch
            yield list(range(first, first + self.batch))


def draw(shape: tuple[int, ...], seed: int, step: int, rank: int, salt: int, device: torch.device) -> torch.Tensor:
    """Standard normal noise that depends only on (seed, step, rank, salt)."""
    g = torch.Generator().manual_seed(((seed * 1_000_003 + step) * 1009 + rank) * 31 + salt)
    return torch.randn(shape, generator=g).to(device)


def palette(num_classes: int) -> torch.Tensor:
    """A fixed colour per class (for label maps in sample grids), values in [-1, 1]."""
    colors = np.random.default_rng(0).integers(0, 256, (max(num_classes, 1), 3))
    return torch.from_numpy(colors).float() / 127.5 - 1


def train(out: str, task: str = "ast", content: str | None = None, style: str | None = None, size=256,
          batch: int = 1, steps: int | None = None, kimg: float | None = None, ngf: int = 64, levels: int = 8,
          ndf: int = 64, num_d: int = 2, n_layers_d: int | None = None, num_classes: int | None = None,
          dontcare: int | None = None, instances: str | None = None, vae: bool | None = None, z_dim: int = 256,
          enc_size: int = 256, lambda_vgg: float | None = None,
          lambda_feat: float | None = None, lambda_kld: float = 0.05, lr_g: float = 1e-4, lr_d: float = 4e-4,
          beta1: float = 0.0, beta2: float = 0.9, decay_steps: int = 0, vgg_weights: str | None = None,
          vgg_imagenet_norm: bool = False, preprocess: str = "fixed", load_size: int | None = None,
          hflip: bool = True, ema: float = 0.0, seed: int = 0, workers: int = 0, ckpt_every: int = 1000,
          sample_every: int = 500, keep_last: int = 3, fid_every: int = 0, fid_images: int = 500,
          inception_weights: str | None = None, device: str = "auto", amp: bool | str = False,
          threads: int | None = None, resume: bool = False, overwrite: bool = False, quiet: bool = False) -> Path:
    """Train TSIT; returns the run directory (see the module docstring and `pixforge-tsit train --help`)."""
    config = {k: v for k, v in locals().items() if k not in ("out", "resume", "overwrite", "quiet", "threads")}
    _check_numbers({**config, "threads": threads})
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
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    configure(dev)
    dist = distributed.setup(dev)
    steps = steps if steps is not None else math.ceil(kimg * 1000 / (batch * dist.world_size))
    sis = task == "sis"
    vae = sis if vae is None else bool(vae)
    if vae and not sis:
        raise PixforgeError("--vae is for semantic synthesis (--task sis) only")
    if vae:
        check_enc_size(enc_size)
    default_vgg, default_feat = TASK_WEIGHTS[task]
    lambda_vgg = default_vgg if lambda_vgg is None else lambda_vgg
    lambda_feat = default_feat if lambda_feat is None else lambda_feat
    if not sis and (dontcare is not None or instances is not None):
        raise PixforgeError("--dontcare and --instances are for semantic synthesis (--task sis) only")
    dataset, conditions = _dataset(task, content, style, size, num_classes, seed, preprocess, load_size, hflip,
                                   dontcare, instances)
    arch = make_arch(task, ngf=ngf, levels=levels, size=size, num_classes=num_classes, dontcare=dontcare,
                     instance=instances is not None, vae=vae, z_dim=z_dim, enc_size=enc_size, conditions=conditions)
    n_classes = classes(arch) if sis else None
    config.update(size=list(size), steps=steps, vae=vae, lambda_vgg=lambda_vgg, lambda_feat=lambda_feat, arch=arch)
    perceptual = VGGPerceptualLoss(vgg_weights, imagenet_norm=vgg_imagenet_norm).to(dev) if lambda_vgg > 0 else None
    fid = _fid_metric(inception_weights, style, dev) if fid_every > 0 else None

    amp_dtype = autocast_dtype(dev, amp)
    run = RunDir(out)
    ckpts = Checkpoints(run.checkpoints, keep_last=keep_last)
    seed_everything(seed)
    G, E = init_weights(build_generator(arch)).to(dev), build_encoder(arch)
    E = init_weights(E).to(dev) if E is not None else None
    d_in = 3 + (arch["content_channels"] if sis else 0)  # D sees (label maps [+ edges], image) for sis
    D = init_weights(MultiScaleDiscriminator(d_in, num_d, ndf, n_layers_d or (4 if sis else 3))).to(dev)
    if dist.enabled and dev.type == "cuda":
        G = torch.nn.SyncBatchNorm.convert_sync_batchnorm(G)  # FADE's batch norm spans all GPUs, as SyncBN upstream
    G_ema = EMA(G, ema) if ema > 0 else None
    g_params = list(G.parameters()) + (list(E.parameters()) if E is not None else [])
    opt_g = torch.optim.Adam(g_params, lr=lr_g, betas=(beta1, beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr_d, betas=(beta1, beta2))
    scaler = grad_scaler(dev, amp_dtype)
    models = {"G": G, "D": D, **({"E": E} if E is not None else {}), **({"G_ema": G_ema.module} if G_ema else {})}
    optimizers = {"G": opt_g, "D": opt_d}
    start, latest = 0, ckpts.latest() if resume else None
    if latest is not None:  # read before the run is touched: a broken checkpoint leaves it as it was
        start = load_checkpoint(latest, models=models, optimizers=optimizers, scaler=scaler, map_location=dev)["step"]
    config = run.start(config, resume=resume, overwrite=overwrite)  # only now, every input checked, is it written
    log = logging.getLogger("pixforge")
    if latest is not None:
        log.info("resumed from %s (step %d)", latest, start)
    G_ddp, D_ddp = distributed.wrap_ddp(G, dev), distributed.wrap_ddp(D, dev)
    E_ddp = distributed.wrap_ddp(E, dev) if E is not None else None
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=StepBatches(start, steps, batch, dist.rank,
                                                                            dist.world_size),
                                         num_workers=workers, pin_memory=dev.type == "cuda")
    fixed = _fixed_samples(dataset, dev)

    def prepare(item: dict) -> tuple[torch.Tensor, torch.Tensor]:
        c, s = item["content"].to(dev, non_blocking=True), item["style"].to(dev, non_blocking=True)
        inst = item["instance"].to(dev, non_blocking=True) if "instance" in item else None
        return (tdata.semantics(c, n_classes, inst) if sis else c), s

    def generate(gen, enc, c, s, step: int, salt: int, with_kld: bool):
        n, kld = c.shape[0], None
        if enc is not None:
            mu, logvar = enc(s)
            noise = mu + draw(mu.shape, seed, step, dist.rank, salt, dev) * torch.exp(0.5 * logvar)
            kld = kl_divergence(mu.float(), logvar.float()) * lambda_kld if with_kld else None
        else:
            noise = draw(G.noise_shape(n, *c.shape[-2:]), seed, step, dist.rank, salt, dev)
        return gen(c, s if not sis else None, noise), kld

    def discriminate(disc, c, fake, real):
        pair = torch.cat([fake, real]) if not sis else torch.cat([torch.cat([c, fake], 1), torch.cat([c, real], 1)])
        outs = disc(pair)
        return [[t[: len(fake)] for t in o] for o in outs], [[t[len(fake):] for t in o] for o in outs]

    def save(step: int) -> None:
        if dist.is_main:
            ckpts.save(step, models=models, optimizers=optimizers, scaler=scaler, config=config)
        distributed.barrier()

    step = start
    with MetricLogger(run.metrics, run.tensorboard) as metrics, GracefulStop() as stop, \
            progress(steps, initial=start, disable=quiet) as bar:
        for item in loader:
            if stop.requested:
                break
            factor = 1.0 if decay_steps <= 0 else min(1.0, (steps - step) / decay_steps)
            for opt, lr in ((opt_g, lr_g), (opt_d, lr_d)):
                for group in opt.param_groups:
                    group["lr"] = lr * factor
            c, real = prepare(item)
            # generator step: D frozen and run outside DDP, gradients reach G through the fake images
            D.requires_grad_(False)
            with autocast(dev, amp_dtype):
                fake, kld = generate(G_ddp, E_ddp, c, real, step, 0, with_kld=True)
                pred_fake, pred_real = discriminate(D, c, fake, real)
                g_gan = hinge_g_loss(pred_fake)
                g_feat = feature_matching_loss(pred_fake, pred_real) * lambda_feat
                target = real if sis else c
                g_vgg = perceptual(fake, target) * lambda_vgg if perceptual is not None else torch.zeros((), device=dev)
                g_total = g_gan + g_feat + g_vgg + (kld if kld is not None else 0.0)
            opt_g.zero_grad(set_to_none=True)
            scaler.scale(g_total).backward()
            scaler.step(opt_g)
            D.requires_grad_(True)
            # discriminator step on a fresh fake
            with torch.no_grad(), autocast(dev, amp_dtype):
                fake, _ = generate(G, E, c, real, step, 1, with_kld=False)
            with autocast(dev, amp_dtype):
                pred_fake, pred_real = discriminate(D_ddp, c, fake.detach(), real)
                d_real, d_fake = hinge_d_loss(pred_real, pred_fake)
            opt_d.zero_grad(set_to_none=True)
            scaler.scale(d_real + d_fake).backward()
            scaler.step(opt_d)
            scaler.update()
            if G_ema is not None:
                G_ema.update(G)
            step += 1
            scalars = dict(g_gan=g_gan, g_feat=g_feat, g_vgg=g_vgg, d_real=d_real, d_fake=d_fake, lr_scale=factor)
            if kld is not None:
                scalars["g_kld"] = kld
            values = metrics.log(step, **{k: distributed.all_reduce_mean(v.detach()) if torch.is_tensor(v) else v
                                          for k, v in scalars.items()})
            bar.set_postfix(g=f"{values['g_gan']:.3f}", d=f"{values['d_real'] + values['d_fake']:.3f}")
            bar.update()
            final = G_ema.module if G_ema is not None else G
            if dist.is_main and (step % sample_every == 0 or step == steps):
                _sample(final, E, fixed, run.sample_path(step), sis, n_classes, seed, dev)
            if fid is not None and (step % fid_every == 0 or step == steps):
                metrics.log(step, fid=_fid(fid, final, E, dataset, fid_images, sis, n_classes, seed, dev,
                                           dist.rank, dist.world_size))
            if step % ckpt_every == 0 or step == steps or stop.requested:
                save(step)
    if stop.requested or step < steps:
        log.info("stopped at step %d; continue with --resume", step)
    elif dist.is_main:
        final = G_ema.module if G_ema is not None else G
        save_release(run.path, final, arch, name="generator")
        if E is not None:
            save_release(run.path, E, arch, name="encoder")
        log.info("finished %d steps: %s", step, run.path)
    distributed.teardown()
    return run.path


# the smallest value of each integer option (None: not given)
INTEGERS = {"batch": 1, "steps": 1, "ngf": 1, "levels": 2, "ndf": 1, "num_d": 1, "n_layers_d": 1, "num_classes": 1,
            "z_dim": 1, "decay_steps": 0, "load_size": 1, "seed": 0, "workers": 0, "ckpt_every": 1, "sample_every": 1,
            "keep_last": 1, "fid_every": 0, "fid_images": 1, "threads": 1}
POSITIVE = ("kimg", "lr_g", "lr_d")
NON_NEGATIVE = ("lambda_vgg", "lambda_feat", "lambda_kld")
FRACTIONS = ("beta1", "beta2", "ema")  # in [0, 1)


def _check_numbers(options: dict) -> None:
    """Every count, rate and weight given, checked before anything is read or written."""
    def fail(name: str, rule: str):
        raise PixforgeError(f"--{name.replace('_', '-')} must be {rule}, got {options[name]!r}")

    for name, low in INTEGERS.items():
        value = options[name]
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
            fail(name, f"an integer of at least {low}")
    for names, rule, ok in ((POSITIVE, "a number above 0", lambda v: v > 0),
                            (NON_NEGATIVE, "a number of at least 0", lambda v: v >= 0),
                            (FRACTIONS, "a number from 0 up to (not including) 1", lambda v: 0 <= v < 1)):
        for name in names:
            value = options[name]
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                          and math.isfinite(value) and ok(value)):
                fail(name, rule)


def _dataset(task, content, style, size, num_classes, seed, preprocess, load_size, hflip, dontcare, instances):
    """The training set for `task`, with every file checked before anything is written; (dataset, conditions)."""
    if task == "sis":
        if not num_classes or num_classes < 1:
            raise PixforgeError("--task sis needs --num-classes (the number of label ids)")
        pairs = tdata.pair_files(content, style)
        tdata.check_images([img for _, img in pairs])
        for label, _ in pairs:
            tdata.read_labels(label, num_classes, dontcare)
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


def _fixed_samples(dataset, dev: torch.device) -> dict[str, torch.Tensor]:
    """SAMPLES items drawn outside the training index range: the same pictures at every sample step."""
    items = [dataset[2**61 + k] for k in range(SAMPLES)]
    return {key: torch.stack([it[key] for it in items]).to(dev) for key in items[0]}


@torch.no_grad()
def _sample(G, E, fixed, path: Path, sis: bool, num_classes: int | None, seed: int, dev: torch.device) -> None:
    """A grid with one row per sample: content (label colours for semantic synthesis) | style | output."""
    was = G.training
    G.eval()
    c, s = fixed["content"], fixed["style"]
    net_c = tdata.semantics(c, num_classes, fixed.get("instance")) if sis else c
    noise = draw(G.noise_shape(len(c), *c.shape[-2:]), seed, -1, 0, 7, dev)
    if E is not None:
        E.eval()
        noise = E(s)[0]
        E.train()
    out = G(net_c, None if sis else s, noise).float()
    G.train(was)
    shown = palette(num_classes).to(dev)[c].movedim(-1, 1) if sis else c
    save_grid(torch.stack([shown, s, out], 1).flatten(0, 1).clamp(-1, 1), path, nrow=3)


def _fid_metric(weights: str | None, style: str, dev: torch.device):
    if weights is None:
        raise PixforgeError("--fid-every needs --inception-weights (the public pt_inception-2015-12-05 file)")
    from pixforge.core.metrics import FID
    from pixforge.core.nets.inception import InceptionFeatures

    return {"metric": FID(InceptionFeatures("fid", weights), reset_real_features=False).to(dev), "real": False,
            "style": style}


@torch.no_grad()
def _fid(fid: dict, G, E, dataset, count: int, sis: bool, num_classes, seed: int, dev: torch.device,
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
        noise = E.eval()(s)[0] if E is not None else draw(G.noise_shape(len(c), *c.shape[-2:]), seed, -2, start, 0,
                                                          dev)
        out = G(tdata.semantics(c, num_classes, inst) if sis else c, None if sis else s, noise).float()
        if not fid["real"]:
            metric.update(((s + 1) / 2).clamp(0, 1), real=True)
        metric.update(((out + 1) / 2).clamp(0, 1), real=False)
    fid["real"] = True
    G.train(was)
    if E is not None:
        E.train()
    return metric.compute()["fid"]
