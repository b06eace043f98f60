"""DF-VAE training on prepared face data (`pixforge-dfvae prepare`), in the shape of `pixforge.core.toy`:

    train(...)          the launcher and CLI verb: every option checked, the data read, before anything is written;
    training_loop(...)  one loop under the template's phase headings;
    DFVAELoss           (`pixforge.dfvae.loss`) the forward pass and the loss terms.

Per step (batch per process; under torchrun the global batch is batch x world size): x_t's heatmaps and another
frame x' of its identity reconstruct x̃_t through the CVAE (noise per global sample index), the fusion restyles and
blends it into x_t; L = rec_l1 + fuse_l1 + lambda_vgg (rec_vgg + fuse_vgg) + lambda_kl KL + lambda_temporal
temporal (Eq. 3.7 against x_{t-1}). Adam(--beta1 0.5, --beta2 0.999), --lr 2e-4. Every term is a mean over the
batch, so DDP's gradient average over N processes on --batch B is what one process computes on N * B, and data
and noise are functions of (seed, global sample index): --resume continues exactly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from pixforge.core import distributed
from pixforge.core.checkpoint import Checkpoints, load_checkpoint, save_release
from pixforge.core.io import save_grid
from pixforge.core.loop import GracefulStop, MetricLogger, progress
from pixforge.core.losses import perceptual_kind, perceptual_loss
from pixforge.core.rundir import RunDir
from pixforge.core.runtime import autocast_dtype, configure, grad_scaler, resolve_device, seed_everything
from pixforge.core.steps import StepSampler
from pixforge.dfvae.data import FaceFrames
from pixforge.dfvae.flow import flow_estimator
from pixforge.dfvae.loss import DFVAELoss, FrameBatch, LossWeights, Reconstructor
from pixforge.dfvae.model import TOOL, write_references
from pixforge.dfvae.nets import DFVAE, DFVAEConfig
from pixforge.export.errors import PixforgeError
from pixforge.export.options import check_numbers

SAMPLES = 4
FIXED_FROM = 2**61  # sample-grid items are drawn outside the training index range
ARCH_KEYS = ("width", "max_width", "structure_channels", "appearance_dim", "fusion_width")


def train(out: str, data: str | tuple | list | None = None, size: int | None = None, batch: int = 8,
          steps: int | None = None, kimg: float | None = None, lr: float = 2e-4, beta1: float = 0.5,
          beta2: float = 0.999, width: int = 32, max_width: int = 256, structure_channels: int = 64,
          appearance_dim: int = 256, fusion_width: int = 32, lambda_rec: float = 1.0, lambda_fuse: float = 1.0,
          lambda_vgg: float = 1.0, lambda_kl: float = 1e-5, lambda_temporal: float = 0.1, flow: str = "horn-schunck",
          perceptual: str = "auto",
          vgg_weights: str | None = None, vgg_imagenet_norm: bool = False, identities: str | tuple | None = None,
          seed: int = 0, workers: int = 0, ckpt_every: int = 1000, sample_every: int = 500, keep_last: int = 3,
          device: str = "auto", amp: bool | str = False, threads: int | None = None, resume: bool = False,
          overwrite: bool = False, quiet: bool = False) -> Path:
    """Train DF-VAE into the run directory OUT (config.json, checkpoints/, samples/, metrics.jsonl, log.txt,
    model.safetensors at the end) on --data DATA (prepared folders, comma-separated: one model over every identity
    in them; --identities a,b for a subset). Multi-GPU: `torchrun --nproc-per-node G -m pixforge.dfvae.cli train
    ...` (--batch is per process).

    --size: the crop side trained on (default: the data's; a power of two 32..1024, crops resized). Length:
    --steps N or --kimg K (thousands of samples). Adam(--beta1 0.5, --beta2 0.999), --lr 2e-4. Loss weights:
    --lambda-rec / --lambda-fuse 1 (L1 of D_γ's face and of the fused output), --lambda-vgg 1 (both perceptual
    terms; --perceptual vgg (VGG19, --vgg-weights PATH or $PIXFORGE_VGG19_WEIGHTS), pfr18 (core's procedural
    ResNet-18, no download), off; auto = vgg when its weights are found, else pfr18), --lambda-kl 1e-5,
    --lambda-temporal 0.1 (Eq. 3.7; its frozen flow estimator: --flow horn-schunck, no weights, or
    --flow raft-small:PATH, the official raft-small.pth). Network: --width 32 doubling to --max-width 256,
    --structure-channels 64 (z_s), --appearance-dim 256 (z_a), --fusion-width 32. Sample grids every
    --sample-every steps (rows: source face | target frame | reconstruction | swap of the source into the target),
    checkpoints every --ckpt-every (newest --keep-last kept); --amp (bf16/fp16 on GPU); --resume continues."""
    config = {k: v for k, v in locals().items() if k not in ("out", "resume", "overwrite", "quiet", "threads")}
    # Check options and data (before the run directory exists).
    check_numbers({**config, "threads": threads}, integers=INTEGERS, positive=POSITIVE, non_negative=NON_NEGATIVE,
                  fractions=FRACTIONS)
    if Path(out).exists() and not Path(out).is_dir():
        raise PixforgeError(f"--out {out} exists and is not a folder (a run directory)")
    roots = _names(data)
    if not roots:
        raise PixforgeError("--data is required: one or more folders made by pixforge-dfvae prepare (comma-separated)")
    if (steps is None) == (kimg is None):
        raise PixforgeError("give exactly one of --steps or --kimg (the training length)")
    wanted = _names(identities)
    dataset = FaceFrames(roots, size=size, seed=seed, identities=wanted)
    try:
        arch = DFVAEConfig(resolution=dataset.size, **{k: config[k] for k in ARCH_KEYS})
    except ValueError as err:
        raise PixforgeError(f"--size: {err}" if "resolution" in str(err) else str(err)) from None
    perceptual = perceptual_kind(perceptual, vgg_weights) if lambda_vgg > 0 else "off"
    try:
        estimator = flow_estimator(flow)
    except ValueError as err:
        raise PixforgeError(f"--flow: {err}") from None
    # Resolve defaults.
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    autocast_dtype(dev, amp)  # an --amp the device cannot run is an error now
    world = distributed.setup(dev).world_size
    config.update(data=[str(Path(r).resolve()) for r in roots], identities=dataset.identities, size=dataset.size,
                  perceptual=perceptual, arch=asdict(arch), tool=TOOL, padding=_data_padding(roots),
                  steps=steps if steps is not None else math.ceil(kimg * 1000 / (batch * world)))
    run = RunDir(out, [*roots, vgg_weights, str(flow).partition(":")[2] or None])
    return training_loop(run, config, dataset, estimator, dev, resume=resume, overwrite=overwrite,
                         quiet=quiet)


# the smallest value of each integer option (None: not given)
INTEGERS = {"size": 32, "batch": 1, "steps": 1, "width": 1, "max_width": 1, "structure_channels": 1,
            "appearance_dim": 1, "fusion_width": 1, "seed": 0, "workers": 0, "ckpt_every": 1, "sample_every": 1,
            "keep_last": 1, "threads": 1}
POSITIVE = ("kimg", "lr")
NON_NEGATIVE = ("lambda_rec", "lambda_fuse", "lambda_vgg", "lambda_kl", "lambda_temporal")
FRACTIONS = ("beta1", "beta2")


def _data_padding(roots: list[str]) -> float:
    """The alignment padding the data was prepared with (swap aligns target faces the same way)."""
    import json

    for root in roots:
        for record in sorted(Path(root).glob("*/source.json")):
            try:
                return float(json.loads(record.read_text())["options"].get("padding", 0.25))
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return 0.25


def _names(value) -> list[str]:
    """A comma-separated string or a Fire list/tuple -> a list of strings."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def training_loop(run: RunDir, config: dict[str, Any], dataset: FaceFrames, flow: torch.nn.Module,
                  dev: torch.device, *, resume: bool, overwrite: bool, quiet: bool) -> Path:
    """The loop of `train`: `config` holds its resolved options, `flow` is the frozen flow estimator of the
    temporal loss (`flow_estimator(config["flow"])`); returns the run directory."""
    # Initialize.
    configure(dev)
    dist = distributed.setup(dev)
    steps, seed = config["steps"], config["seed"]
    seed_everything(seed)

    # Construct networks.
    model = DFVAE(DFVAEConfig(**config["arch"])).to(dev)
    flow = flow.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"], betas=(config["beta1"], config["beta2"]))
    amp_dtype = autocast_dtype(dev, config["amp"])
    scaler = grad_scaler(dev, amp_dtype)
    perceptual = perceptual_loss(config["perceptual"], config["vgg_weights"], config["vgg_imagenet_norm"])
    if perceptual is not None:
        perceptual = perceptual.to(dev).requires_grad_(False)
    weights = LossWeights(rec_l1=config["lambda_rec"], fuse_l1=config["lambda_fuse"], vgg=config["lambda_vgg"],
                          kl=config["lambda_kl"], temporal=config["lambda_temporal"])
    models, optimizers = {"model": model}, {"opt": opt}

    # Resume (read before the run is touched: a broken checkpoint leaves it as it was).
    ckpts = Checkpoints(run.checkpoints, keep_last=config["keep_last"])
    start, latest = 0, ckpts.latest() if resume else None
    if latest is not None:
        start = load_checkpoint(latest, models=models, optimizers=optimizers, scaler=scaler, map_location=dev)["step"]
    config = run.start(config, resume=resume, overwrite=overwrite)  # only now, every input checked, is it written
    log = logging.getLogger("pixforge")  # RunDir.start set it up: console, and log.txt on the main rank
    log.info("identities: %s", dataset.describe())
    if latest is not None:
        log.info("resumed from %s (step %d)", latest, start)

    # Distribute.
    net = distributed.wrap_ddp(Reconstructor(model), dev)
    loss = DFVAELoss(model, flow, perceptual, weights, seed=seed, amp_dtype=amp_dtype, scaler=scaler,
                     reconstruct=net)
    sampler = StepSampler(start, steps, config["batch"], dist.rank, dist.world_size)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=config["workers"],
                                         pin_memory=dev.type == "cuda",
                                         generator=torch.Generator())  # leaves the global RNG (checkpointed) alone

    # Export sample images.
    fixed = fixed_samples(dataset, dev)

    # Train.
    step = start
    with MetricLogger(run.metrics, run.tensorboard, start) as metrics, GracefulStop() as stop, \
            progress(steps, initial=start, disable=quiet) as bar:
        for item in loader:
            # Fetch data.
            batch = frame_batch(item, dev)
            indices = sampler.indices(step)

            # DF-VAE step.
            opt.zero_grad(set_to_none=True)
            terms = loss.accumulate_gradients(batch, indices)
            scaler.step(opt)
            scaler.update()

            # Log.
            step += 1
            terms = {k: distributed.all_reduce_mean(v) for k, v in terms.items()}
            values = metrics.log(step, **terms, loss=sum(terms.values()))
            bar.set_postfix(rec=f"{values['rec_l1']:.4f}", loss=f"{values['loss']:.4f}")
            bar.update()

            # Samples.
            if dist.is_main and (step % config["sample_every"] == 0 or step == steps):
                save_samples(model, fixed, run.sample_path(step))

            # Checkpoint.
            if step % config["ckpt_every"] == 0 or step == steps or stop.requested:
                ckpts.save(step, models=models, optimizers=optimizers, scaler=scaler, config=config)
            if stop.requested:  # after the checkpoint: a signal that came while a batch loaded still saves
                break

    # Done.
    if step < steps:
        log.info("stopped at step %d; continue with --resume", step)
    elif dist.is_main:
        save_release(run.path, model, {**config["arch"], "identities": config["identities"], "step": step,
                                       "tool": TOOL, "padding": config.get("padding", 0.25)})
        write_references(run.path, dataset)  # a few aligned crops per identity: what swap's E_β reads
        log.info("finished %d steps: %s", step, run.path)
    distributed.teardown()
    return run.path


def frame_batch(item: dict[str, torch.Tensor], dev: torch.device) -> FrameBatch:
    """The loader's dict as the loss's `FrameBatch`, on the device."""
    return FrameBatch(**{k: item[k].to(dev, non_blocking=True)
                         for k in ("frame", "previous", "heatmaps", "reference", "mask")})


def fixed_samples(dataset: FaceFrames, dev: torch.device) -> dict[str, torch.Tensor]:
    """SAMPLES targets (drawn outside the training range) and, for each, a source face of another identity (of the
    same identity when there is only one): the same pictures at every sample step."""
    n = len(dataset.identities)
    targets = [dataset.sample(FIXED_FROM + k) for k in range(SAMPLES)]
    sources = [dataset.sample(FIXED_FROM + k, identity=(int(t["identity"]) + 1) % n) for k, t in enumerate(targets)]
    fixed = {k: torch.stack([t[k] for t in targets]).to(dev) for k in ("frame", "heatmaps", "reference", "mask")}
    fixed["source"] = torch.stack([s["reference"] for s in sources]).to(dev)
    return fixed


@torch.no_grad()
def save_samples(model: DFVAE, fixed: dict[str, torch.Tensor], path: Path) -> None:
    """A grid with one row per fixed sample: source face | target frame | reconstruction of the target (its own
    identity's x') | swap (the source's face into the target: posterior means, MAdaIN, blend)."""
    was = model.training
    model.eval()
    recon = model(fixed["heatmaps"], fixed["reference"], fixed["frame"], fixed["mask"]).float()
    swap = model(fixed["heatmaps"], fixed["source"], fixed["frame"], fixed["mask"]).float()
    model.train(was)
    rows = torch.stack([fixed["source"], fixed["frame"], recon, swap], 1).flatten(0, 1)
    save_grid(rows.clamp(-1, 1), path, nrow=4)
