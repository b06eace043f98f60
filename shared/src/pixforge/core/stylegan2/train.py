"""StyleGAN2 training: `train` (the launcher: options, checks, data, run directory) and one `training_loop`.

The loop follows NVlabs' `training/training_loop.py`: per step, the phases Gmain, Greg (every 4th step), Dmain,
Dreg (every 16th) each accumulate gradients over rounds of `batch_gpu` samples, average them across processes and
step their Adam (lazy regularisation rescales lr and betas by interval / (interval + 1)); then G_ema follows G
with a half-life of `ema_kimg` (ramped up over the first images), the augmentation strategy adjusts p, and once per
tick (`--tick` kimg) the loop logs, and every `--snap` ticks saves a grid, a checkpoint and the metrics.

Run directory (as NVlabs'): `RUNS/00000-<data>-<cfg>-<aug>.../` with `training_options.json`, `log.txt`,
`stats.jsonl` (one line per tick), `reals.png`, `fakes_init.png`, `fakes<kimg>.png`, `metric-<name>.jsonl`,
`checkpoints/step-*.pt` (G, D, G_ema, optimizers, augmentation state, path-length mean, RNG) and, at the end,
`model.safetensors` + `model.json` (G_ema). `--resume` continues exactly; `--init` starts a new run from the weights
of a checkpoint or an official `.pkl` (as NVlabs' `--resume`: p adapts 5x faster, no EMA ramp-up).

Several GPUs: `torchrun --nproc_per_node G -m <tool> train ...` (`--batch` is the global batch). Gradients are
averaged with one all-reduce per phase (no DDP wrapper: the regularisers differentiate twice); the samples, their
latents and noise are functions of (seed, global sample index), so N processes train what one trains on the same
global batch, up to the augmentation pipe's own draws (per process).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from pixforge.core import distributed
from pixforge.core.checkpoint import Checkpoints, load_checkpoint, read_checkpoint, save_release
from pixforge.core.io import save_grid
from pixforge.core.loop import GracefulStop, MetricLogger, drop_records_after, progress
from pixforge.core.nets.stylegan2 import Generator
from pixforge.core.nets.stylegan2_discriminator import Discriminator
from pixforge.core.rundir import RunDir
from pixforge.core.runtime import autocast_dtype, configure, grad_scaler, resolve_device
from pixforge.core.steps import StepSampler, sample_noise
from pixforge.core.stylegan2 import configs
from pixforge.core.stylegan2 import strategy as strategies
from pixforge.core.stylegan2.dataset import TrainingSet
from pixforge.core.stylegan2.diffaugment import DIFFAUG_POLICIES
from pixforge.core.stylegan2.loss import StyleGAN2Loss
from pixforge.export.errors import PixforgeError
from pixforge.export.options import check_outside, whole_number

G_REG_INTERVAL, D_REG_INTERVAL = 4, 16  # NVlabs' lazy regularisation intervals (Primitives-PS pretraining: D 0)
Z_DIM = W_DIM = 512
METRICS = ("swd", "fd_pfr18", "kd_pfr18", "fid", "kid")
Factory = Callable[..., strategies.Augmentation]  # (p=, target=, kimg=, augpipe=, policy=, device=) -> strategy


class StyleGANRun(RunDir):
    """A run directory in NVlabs' layout (see the module docstring)."""

    def __init__(self, path: str | Path):
        super().__init__(path)
        self.config, self.metrics = self.path / "training_options.json", self.path / "stats.jsonl"
        self.samples = self.path

    def sample_path(self, kimg: int, suffix: str = ".png") -> Path:
        return self.path / f"fakes{kimg:06d}{suffix}"

    def metric_path(self, name: str) -> Path:
        return self.path / f"metric-{name}.jsonl"


def find_run(out: str | Path, resume: bool, desc: str, inputs: Iterable[str | Path | None] = ()) -> StyleGANRun:
    """`--resume`: OUT itself when it is a run, else the newest run in OUT; a new run: the next free number. OUT
    that is one of `inputs` (the data, the weights) or lies inside one is refused (OUT may hold them: runs are
    numbered folders in it, and `--init` an earlier run's snapshot there)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PixforgeError(f"--out {out} exists and is not a folder")
    check_outside(out, inputs, "--out")
    if resume:
        if (out / "training_options.json").is_file():
            return StyleGANRun(out)
        runs = sorted(p for p in out.glob("[0-9][0-9][0-9][0-9][0-9]-*") if (p / "training_options.json").is_file())
        if not runs:
            raise PixforgeError(f"--resume: {out} holds no run to continue (no training_options.json)")
        return StyleGANRun(runs[-1])
    ids = [int(m.group(1)) for p in (out.iterdir() if out.is_dir() else []) if (m := re.match(r"^(\d+)-", p.name))]
    return StyleGANRun(out / f"{max(ids, default=-1) + 1:05d}-{desc}")


def train(data: str, out: str, cfg: str = "auto", res: int | None = None, kimg: float | None = None,
          batch: int | None = None, batch_gpu: int | None = None, gamma: float | None = None,
          cbase: int | None = None, cmax: int | None = None, map: int | None = None, aug: str = "ada",
          p: float = 0.0, target: float = 0.6, ada_kimg: float | None = None, augpipe: str = "bgc",
          policy: str = "color,translation,cutout", g_reg_interval: int = G_REG_INTERVAL,
          d_reg_interval: int = D_REG_INTERVAL, cond: bool = False, mirror: bool = False, init: str | None = None,
          freeze_d: int = 0, tick: float = 4.0,
          snap: int | None = None, metrics: str = "swd", metric_images: int = 2048, metric_data: str | None = None,
          inception: str | None = None,
          seed: int = 0, amp: bool | str = False, channels_last: bool = False, compile: bool = False,
          workers: int = 2, device: str = "auto", keep_last: int = 3, resume: bool = False, quiet: bool = False,
          strategies_by_name: dict[str, Factory] | None = None,
          datasets_by_name: dict[str, Callable[..., Any]] | None = None) -> Path:
    """Train StyleGAN2 on DATA (image folder or NVlabs zip) into a new run under OUT (`00000-<desc>/`); --resume
    continues the newest run in OUT (or OUT itself). --cfg auto|stylegan2|paper256|paper512|paper1024|cifar|low_shot
    sets batch, lr, gamma, EMA and mapping depth as NVlabs; --kimg, --batch, --gamma override; --cbase, --cmax, --map
    make smaller networks (StyleGAN3's options). --aug picks how D's inputs are augmented (noaug, fixed --p, ada
    --target, diffaug --policy); --ada-kimg: the kimg p takes to move by 1 (default 500, 100 with --init);
    --g-reg-interval / --d-reg-interval: lazy regularisation every N steps (0: every step, no lazy rescaling); --init
    RUN_OR_CHECKPOINT_OR_PKL starts from trained weights. --metrics swd,fd_pfr18,kd_pfr18,fid,kid (fid/kid need
    --inception WEIGHTS; fd_pfr18/kd_pfr18: Fréchet/kernel distances on pixforge-core's procedural ResNet-18, no
    download, not comparable with FID) against --metric-data (e.g. the full set a limited one was cut from; default
    DATA). Several GPUs: `torchrun --nproc_per_node G -m <tool> train ...`."""
    data, out = str(data), str(out)
    init, metric_data, inception = (None if v is None else str(v) for v in (init, metric_data, inception))
    options = {k: v for k, v in locals().items()
               if k not in ("out", "resume", "quiet", "strategies_by_name", "datasets_by_name")}
    registry: dict[str, Factory] = {name: functools.partial(strategies.build, name) for name in strategies.CORE}
    registry.update(strategies_by_name or {})

    # Check options and data (before the run directory exists).
    for flag, value, low in (("--res", res, 4), ("--batch", batch, 1),
                             ("--batch-gpu", batch_gpu, 1), ("--snap", snap, 1), ("--metric-images", metric_images, 2),
                             ("--cbase", cbase, 1), ("--cmax", cmax, 1), ("--map", map, 1),
                             ("--keep-last", keep_last, 1)):
        if value is not None:
            whole_number(flag, value, low)
    whole_number("--freeze-d", freeze_d, 0)
    whole_number("--g-reg-interval", g_reg_interval, 0)
    whole_number("--d-reg-interval", d_reg_interval, 0)
    whole_number("--workers", workers, 0)
    if cfg not in configs.CFGS:
        raise PixforgeError(f"--cfg {cfg!r} is not a config: use {', '.join(configs.CFGS)}")
    if aug not in registry:
        raise PixforgeError(f"--aug {aug!r} is not an augmentation: use {', '.join(registry)}")
    if not (0 <= p <= 1 and 0 <= target <= 1):
        raise PixforgeError(f"--p and --target must lie in [0, 1], got {p} and {target}")
    if ada_kimg is not None and not (isinstance(ada_kimg, (int, float)) and ada_kimg > 0):
        raise PixforgeError(f"--ada-kimg must be a number > 0, got {ada_kimg!r}")
    if gamma is not None and not gamma >= 0:
        raise PixforgeError(f"--gamma must be >= 0, got {gamma}")
    if kimg is not None and not (isinstance(kimg, (int, float)) and not isinstance(kimg, bool) and kimg > 0):
        raise PixforgeError(f"--kimg must be a number of thousands of images > 0, got {kimg!r}")
    if not tick > 0:
        raise PixforgeError(f"--tick must be > 0 kimg, got {tick}")
    names = [m for m in str(metrics).replace(" ", "").split(",") if m and m != "none"]
    if unknown := [m for m in names if m not in METRICS]:
        raise PixforgeError(f"--metrics: unknown {unknown}; use {', '.join(METRICS)} or none")
    if any(m in ("fid", "kid") for m in names) and inception is None:
        raise PixforgeError("--metrics fid/kid need the InceptionV3 weights: pass --inception PATH "
                            "(pt_inception-2015-12-05-6726825d.pth)")
    if any(m in ("fid", "kid") for m in names):
        from pixforge.core.nets.inception import load_weights

        load_weights(inception)  # a bad weights file is refused now, not after the run folder exists
    if unknown := [n for n in str(policy).replace(" ", "").split(",") if n and n not in DIFFAUG_POLICIES]:
        raise PixforgeError(f"--policy: unknown DiffAugment policy {unknown}; use {', '.join(DIFFAUG_POLICIES)}")
    dev = resolve_device(device)
    autocast_dtype(dev, amp)  # a bad --amp is refused before the run folder exists
    if data in (datasets_by_name or {}):  # a tool's generated data (e.g. primitives-ps), drawn on the fly
        if res is None:
            raise PixforgeError(f"--res is needed to train on generated data ({data})")
        training_set = datasets_by_name[data](resolution=res, seed=seed)
    elif datasets_by_name and not Path(data).exists():
        raise PixforgeError(f"--data {data!r} is neither generated data ({', '.join(datasets_by_name)}) nor an "
                            "image folder or zip")
    else:
        training_set = TrainingSet(data, resolution=res, use_labels=cond, mirror=mirror, seed=seed)
    if metric_data is not None:
        TrainingSet(metric_data, resolution=training_set.resolution).close()  # readable, same size: checked now
    world = distributed.setup(dev).world_size
    spec = configs.spec(cfg, training_set.resolution, world, kimg=kimg, batch=batch, gamma=gamma, cbase=cbase,
                        cmax=cmax, map_layers=map)
    if batch_gpu is not None:
        spec = dataclasses.replace(spec, batch_gpu=batch_gpu)
    if spec.batch % (spec.batch_gpu * world):
        raise PixforgeError(f"the batch ({spec.batch}) must be a multiple of --batch-gpu ({spec.batch_gpu}) "
                            f"times the processes ({world})")
    if spec.batch_gpu % min(spec.mbstd, spec.batch_gpu):
        raise PixforgeError(f"--batch-gpu {spec.batch_gpu} must be a multiple of the minibatch-stddev group "
                            f"({spec.mbstd})")
    if init is not None:
        init = options["init"] = str(init_file(init))
        with torch.device("meta"):
            G, D = build_networks(spec, training_set, autocast_dtype(dev, amp), freeze_d)
        init_states(init, {"G": G, "D": D, "G_ema": G})
    desc = f"{Path(data).stem}-{cfg}{world if cfg == 'auto' else ''}-{aug}"
    desc += "".join(f"-{k}{v:g}" if isinstance(v, float) else f"-{k}{v}"
                    for k, v in (("kimg", kimg), ("batch", batch), ("gamma", gamma)) if v is not None)
    run = find_run(out, resume, desc, [data if Path(data).exists() else None, metric_data, init])
    distributed.barrier()  # every rank has picked the run's number before the main rank creates its folder
    options.update(spec=dataclasses.asdict(spec), world=world, resolution=training_set.resolution,
                   num_images=len(training_set))
    return training_loop(run, options, training_set, spec, registry[aug], dev, resume=resume, quiet=quiet)


def training_loop(run: StyleGANRun, config: dict[str, Any], training_set: TrainingSet, spec: configs.Spec,
                  make_strategy: Factory, dev: torch.device, *, resume: bool, quiet: bool) -> Path:
    """The loop of `train`: `config` holds its options; returns the run directory."""
    # Initialize.
    configure(dev)
    dist = distributed.setup(dev)
    config = run.start(config, resume=resume)
    log = logging.getLogger("pixforge")
    seed, batch, rounds = config["seed"], spec.batch, spec.batch // (spec.batch_gpu * dist.world_size)
    total_steps = math.ceil(spec.kimg * 1000 / batch)
    torch.default_generator.manual_seed(seed)
    amp_dtype = autocast_dtype(dev, config["amp"])
    log.info("%d images at %d px (%d channels, %d label dims); cfg %s: batch %d (%d per round x %d rounds x %d "
             "processes), lr %g, gamma %g, %g kimg", len(training_set), training_set.resolution,
             training_set.num_channels, training_set.label_dim, spec.cfg, batch, spec.batch_gpu, rounds,
             dist.world_size, spec.lr, spec.gamma, spec.kimg)

    # Construct networks.
    G, D = build_networks(spec, training_set, amp_dtype, config["freeze_d"])
    g_kwargs = generator_kwargs(spec, training_set, 256 if amp_dtype is not None else None)
    G, D = G.train().requires_grad_(False).to(dev), D.train().requires_grad_(False).to(dev)
    if config["channels_last"]:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    G_ema = copy.deepcopy(G).eval()
    models = {"G": G, "D": D, "G_ema": G_ema}
    restarted = config["init"] is not None
    speed = config["ada_kimg"] or (100 if restarted else 500)
    strategy = make_strategy(p=config["p"], target=config["target"], kimg=speed,
                             augpipe=config["augpipe"], policy=config["policy"], device=dev)
    if restarted and not resume:
        for name, state in init_states(config["init"], models).items():
            models[name].load_state_dict(state)
        log.info("initialised G, D and G_ema from %s", config["init"])

    # Set up the phases (lazy regularisation: lr and betas rescaled by interval / (interval + 1); interval 0: the
    # main and regularisation terms together every step, "Gboth" / "Dboth").
    phases, optimizers = [], {}
    for name, module, interval in (("G", G, config["g_reg_interval"]), ("D", D, config["d_reg_interval"])):
        ratio = interval / (interval + 1) if interval else 1.0
        optimizers[name] = torch.optim.Adam([p for p in module.parameters()], lr=spec.lr * ratio,
                                            betas=(0.0, 0.99 ** ratio), eps=1e-8)
        if interval:
            phases += [(name + "main", module, optimizers[name], 1), (name + "reg", module, optimizers[name], interval)]
        else:
            phases += [(name + "both", module, optimizers[name], 1)]
    scaler = grad_scaler(dev, amp_dtype)
    loss = StyleGAN2Loss(G, D, strategy, seed=seed, r1_gamma=spec.gamma, style_mixing=spec.style_mixing,
                         pl_weight=spec.pl_weight, amp_dtype=amp_dtype)
    if config["compile"]:
        loss.compile()

    # Resume.
    ckpts = Checkpoints(run.checkpoints, keep_last=config["keep_last"])
    step = tick = 0
    if resume and (latest := ckpts.latest()) is not None:
        state = load_checkpoint(latest, models=models, optimizers=optimizers, scaler=scaler, map_location=dev)
        step, tick = state["step"], state["extra"]["tick"]
        strategy.load_state_dict(state["extra"]["strategy"])
        loss.pl_mean.fill_(state["extra"]["pl_mean"])
        log.info("resumed from %s (step %d, %.1f kimg, p %.3f)", latest, step, step * batch / 1000, strategy.p)
        if dist.is_main:  # the snapshots' metrics logged after that checkpoint come again
            for path in run.path.glob("metric-*.jsonl"):
                drop_records_after(path, step * batch / 1000, key="kimg")

    # Data: each process's samples of each step, by global index (so resume and several processes are exact).
    sampler = StepSampler(step, total_steps, batch // dist.world_size, dist.rank, dist.world_size)
    loader = torch.utils.data.DataLoader(training_set, batch_sampler=sampler, num_workers=config["workers"],
                                         pin_memory=dev.type == "cuda", generator=torch.Generator(),
                                         persistent_workers=config["workers"] > 0)

    # Export sample images.
    grid_z, grid_c, grid_n = grid_inputs(training_set, seed, dev)
    if dist.is_main and step == 0:
        reals = torch.stack([training_set.item(k)[0] for k in range(grid_n)]).float() / 127.5 - 1
        save_grid(reals, run.path / "reals.png", nrow=8)
        save_grid(sample(G_ema, grid_z, grid_c, spec.batch_gpu), run.path / "fakes_init.png", nrow=8)
    evaluator = Evaluator(config, training_set, dev, run) if dist.is_main else None

    # Train.
    def backward(loss_value: torch.Tensor) -> None:
        scaler.scale(loss_value).backward()

    tick_start, tick_time, tick_terms = step, time.time(), {}
    snap = config["snap"] or spec.snap or 50
    with MetricLogger(run.metrics, run.tensorboard, step) as stats, GracefulStop() as stop, \
            progress(total_steps, initial=step, disable=quiet, unit="step") as bar:
        for real, real_c in loader:
            # Fetch data.
            indices = sampler.indices(step)
            real = (real.to(dev, non_blocking=True).float() / 127.5 - 1).split(spec.batch_gpu)
            real_c = real_c.to(dev, non_blocking=True).split(spec.batch_gpu)
            gen_c = random_labels(training_set, indices, seed, dev).split(spec.batch_gpu)
            round_indices = [indices[i * spec.batch_gpu:(i + 1) * spec.batch_gpu] for i in range(rounds)]

            # Execute the phases.
            for name, module, opt, interval in phases:
                if step % interval:
                    continue
                opt.zero_grad(set_to_none=True)
                module.requires_grad_(True)
                for r in range(rounds):  # gradients averaged over the rounds (and below over the processes)
                    terms = loss.accumulate_gradients(name, real[r], real_c[r], gen_c[r], round_indices[r], step,
                                                      gain=interval / rounds, backward=backward)
                    for key, value in terms.items():
                        tick_terms.setdefault(key, []).append(value)
                module.requires_grad_(False)
                distributed.all_reduce_grads(module.parameters(), sanitize=not scaler.is_enabled())
                scaler.step(opt)
                scaler.update()

            # Update G_ema (NVlabs ramps with the images seen before this step).
            ema_nimg = spec.ema_kimg * 1000
            if spec.ema_rampup is not None and not restarted:
                ema_nimg = min(ema_nimg, step * batch * spec.ema_rampup)
            step += 1
            ema_update(G_ema, G, 0.5 ** (batch / max(ema_nimg, 1e-8)))

            # Adapt p.
            strategy.adjust(step, batch)
            bar.update()

            # Once per tick: log; every `snap` ticks: grid, checkpoint, metrics.
            done = step >= total_steps
            if not (done or stop.requested) and (step - tick_start) * batch < config["tick"] * 1000:
                continue
            kimg = step * batch / 1000
            elapsed = time.time() - tick_time
            values = {k: float(distributed.all_reduce_mean(torch.stack(v).float().mean()))
                      for k, v in tick_terms.items()}
            values.update({"kimg": kimg, "tick": tick, "augment/p": strategy.p, "augment/signal": strategy.signal,
                           "sec_per_kimg": elapsed / max((step - tick_start) * batch, 1) * 1000})
            stats.log(step, **values)
            bar.set_postfix(kimg=f"{kimg:.1f}", p=f"{strategy.p:.3f}", D=f"{values.get('D/loss', 0):.3f}")
            tick += 1
            if done or stop.requested or tick % snap == 0:
                if dist.is_main:
                    save_grid(sample(G_ema, grid_z, grid_c, spec.batch_gpu), run.sample_path(int(kimg)), nrow=8)
                ckpts.save(step, models=models, optimizers=optimizers, scaler=scaler, config=config,
                           extra={"tick": tick, "strategy": strategy.state_dict(), "pl_mean": float(loss.pl_mean),
                                  "generator": g_kwargs})
                if evaluator is not None and not stop.requested:
                    for name, result in evaluator(G_ema, kimg).items():
                        log.info("kimg %.1f %s %s", kimg, name, json.dumps(result["results"]))
                distributed.barrier()
            tick_start, tick_time, tick_terms = step, time.time(), {}
            if stop.requested:  # after the tick's checkpoint: a signal while a batch loaded still saves
                break

    # Done.
    if step < total_steps:
        log.info("stopped at %.1f kimg (step %d); continue with --resume", step * batch / 1000, step)
    elif dist.is_main:
        save_release(run.path, G_ema, {"arch": "stylegan2", "kimg": step * batch / 1000, "generator": g_kwargs})
        log.info("finished %g kimg: %s", spec.kimg, run.path)
    distributed.teardown()
    return run.path


def build_networks(spec: configs.Spec, training_set: TrainingSet, amp_dtype: torch.dtype | None,
                   freeze_d: int = 0) -> tuple[Generator, Discriminator]:
    """G and D for `spec` as NVlabs builds them (fp16/bf16 in D's top 4 resolutions and clamp 256 under AMP)."""
    clamp = 256 if amp_dtype is not None else None
    G = Generator(**generator_kwargs(spec, training_set, clamp))
    D = Discriminator(c_dim=training_set.label_dim, img_resolution=training_set.resolution,
                      img_channels=training_set.num_channels, architecture=spec.d_architecture,
                      channel_base=spec.channel_base, channel_max=spec.channel_max,
                      num_fp16_res=4 if amp_dtype is not None else 0, conv_clamp=clamp,
                      low_precision=amp_dtype or torch.float16, block_kwargs={"freeze_layers": freeze_d},
                      epilogue_kwargs={"mbstd_group_size": spec.mbstd})
    return G, D


def generator_kwargs(spec: configs.Spec, training_set: TrainingSet, conv_clamp: float | None) -> dict[str, Any]:
    """The Generator's constructor arguments (also what the release's JSON holds to rebuild it)."""
    return {"z_dim": Z_DIM, "c_dim": training_set.label_dim, "w_dim": W_DIM, "img_resolution": training_set.resolution,
            "img_channels": training_set.num_channels, "mapping_kwargs": {"num_layers": spec.map},
            "synthesis_kwargs": {"channel_base": spec.channel_base, "channel_max": spec.channel_max,
                                 "conv_clamp": conv_clamp}}


def init_file(path: str | Path, flag: str = "--init") -> Path:
    """`--init`: a checkpoint or `.pkl` file as it is, a run directory as its newest checkpoint."""
    path = Path(path)
    if path.is_dir():
        latest = Checkpoints(path / "checkpoints").latest()
        if latest is None:
            raise PixforgeError(f"{flag} {path} is a folder without checkpoints/step-*.pt (not a run)")
        return latest
    if not path.is_file():
        raise PixforgeError(f"{flag} {path} does not exist")
    return path


def init_states(path: str | Path, models: dict[str, torch.nn.Module]) -> dict[str, dict[str, torch.Tensor]]:
    """The state dicts of `models` in a pixforge checkpoint or an official `.pkl` (`--init`): every tensor of ours
    must be there with its shape, and nothing else (another resolution or config is refused, naming the first
    mismatch). The models may live on the meta device (a check before anything is written)."""
    if str(path).endswith(".pkl"):
        from pixforge.core.stylegan2.convert import load_official_pickle
        states = {k: v["state_dict"] for k, v in load_official_pickle(path).items() if k in models}
    else:
        states = read_checkpoint(path)["models"]
    for name, module in models.items():
        if name not in states:
            raise PixforgeError(f"--init {path} has no {name} weights")
        own, theirs = module.state_dict(), states[name]
        missing, unexpected = sorted(set(own) - set(theirs)), sorted(set(theirs) - set(own))
        if missing or unexpected:
            key, side = (missing[0], "lacks") if missing else (unexpected[0], "has an extra")
            raise PixforgeError(f"--init {path}: its {name} {side} tensor {key} ({len(missing)} missing, "
                                f"{len(unexpected)} extra): another resolution or config?")
        for key, value in theirs.items():
            if own[key].shape != value.shape:
                raise PixforgeError(f"--init {path}: {name}.{key} has shape {tuple(value.shape)}, this network "
                                    f"{tuple(own[key].shape)} (another resolution or config?)")
    return {name: states[name] for name in models}


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    """`p_ema <- p + beta (p_ema - p)`; buffers copied (NVlabs' G_ema update)."""
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.copy_(p.lerp(p_ema, beta))
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)


def random_labels(training_set: TrainingSet, indices, seed: int, device: torch.device) -> torch.Tensor:
    """Labels to condition G on: those of dataset images drawn per global sample index (NVlabs draws gen_c so)."""
    if training_set.label_dim == 0:
        return torch.zeros([len(indices), 0], device=device)
    u = torch.special.ndtr(sample_noise([], indices, seed, salt=77))
    picks = (u * len(training_set)).long().clamp_max(len(training_set) - 1)
    return torch.stack([training_set.label(int(k)) for k in picks]).to(device)


def grid_inputs(training_set: TrainingSet, seed: int, device: torch.device, n: int = 32):
    """The fixed z and c of the snapshot grids: 8 x 4 (DeceiveD's grid), the labels of the first images."""
    n = min(n, len(training_set))
    z = sample_noise([Z_DIM], range(n), seed, salt=99, device=device)
    c = torch.stack([training_set.item(k)[1] for k in range(n)]).to(device)
    return z, c, n


@torch.no_grad()
def sample(G: Generator, z: torch.Tensor, c: torch.Tensor, batch: int, truncation_psi: float = 1.0) -> torch.Tensor:
    """G's images for z, c in batches (const noise, as NVlabs' snapshots), float in [-1, 1]."""
    return torch.cat([G(zz, cc, truncation_psi=truncation_psi, noise_mode="const").float().clamp(-1, 1)
                      for zz, cc in zip(z.split(batch), c.split(batch), strict=True)])


class Evaluator:
    """The quality metrics at each snapshot: SWD (no network), fd_pfr18 / kd_pfr18 (the shipped procedural network),
    FID / KID (Inception weights).
    The real side is computed once; the fakes come from G_ema with fixed latents. Appends `metric-<name>.jsonl`."""

    def __init__(self, config: dict[str, Any], training_set: TrainingSet, device: torch.device, run: StyleGANRun):
        from pixforge.core.metrics import FrechetDistance, KernelDistance
        from pixforge.core.nets.inception import InceptionFeatures
        from pixforge.core.nets.procedural import ProceduralFeatures
        from pixforge.core.swd import SWD
        self.names = [m for m in str(config["metrics"]).replace(" ", "").split(",") if m and m != "none"]
        self.n, self.seed, self.device = config["metric_images"], config["seed"], device
        self.set = training_set if config["metric_data"] is None else TrainingSet(
            config["metric_data"], resolution=training_set.resolution, use_labels=training_set.has_labels)
        self.run = run
        self.metrics: dict[str, Any] = {}
        if "swd" in self.names:
            self.metrics["swd"] = SWD(reset_real=False)
        for names, make in ((("fd_pfr18", "kd_pfr18"), ProceduralFeatures),
                            (("fid", "kid"), lambda: InceptionFeatures("fid", weights=config["inception"]))):
            if not any(m in self.names for m in names):
                continue
            features = make().to(device)
            if names[0] in self.names:
                self.metrics[names[0]] = FrechetDistance(features, reset_real_features=False, sync=False).to(device)
            if names[1] in self.names:
                self.metrics[names[1]] = KernelDistance(features, reset_real_features=False,
                                                        subset_size=min(1000, self.n), sync=False).to(device)
        self.real_done = False

    def __call__(self, G: Generator, kimg: float) -> dict[str, dict]:
        start = time.time()
        n = min(self.n, len(self.set))
        if not self.real_done:
            for first in range(0, n, 64):
                images = torch.stack([self.set.item(k)[0] for k in range(first, min(first + 64, n))])
                for metric in self.metrics.values():
                    metric.update(images.to(self.device), real=True)
            self.real_done = True
        for first in range(0, n, 64):
            idx = range(first, min(first + 64, n))
            z = sample_noise([Z_DIM], idx, self.seed, salt=98, device=self.device)
            c = random_labels(self.set, idx, self.seed + 1, self.device)
            images = ((G(z, c, noise_mode="const").clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            for metric in self.metrics.values():
                metric.update(images, real=False)
        results = {}
        for name, metric in self.metrics.items():
            values = metric.compute()
            metric.reset()
            results[name] = {"results": {k: v for k, v in values.items() if isinstance(v, (int, float))},
                             "metric": name, "kimg": kimg, "num_images": n, "total_time": time.time() - start,
                             "timestamp": time.time()}
            with open(self.run.metric_path(name), "a", encoding="utf-8") as fh:
                fh.write(json.dumps(results[name]) + "\n")
        return results


def train_verb(strategies_by_name: dict[str, Factory] | None = None,
               datasets_by_name: dict[str, Callable[..., Any]] | None = None, **defaults: Any) -> Callable[..., Path]:
    """`train` as a tool's CLI verb: its own augmentation strategies, generated datasets (name -> factory taking
    `resolution` and `seed`, returning an object with TrainingSet's interface) and defaults; the options declared
    once."""
    signature = inspect.signature(train)
    params = [p.replace(default=defaults.get(p.name, p.default)) for p in signature.parameters.values()
              if p.name not in ("strategies_by_name", "datasets_by_name")]

    def verb(*args: Any, **kwargs: Any) -> Path:
        bound = verb.__signature__.bind(*args, **kwargs)
        bound.apply_defaults()
        return train(**bound.arguments, strategies_by_name=strategies_by_name, datasets_by_name=datasets_by_name)

    verb.__signature__ = signature.replace(parameters=params)
    verb.__doc__, verb.__name__ = train.__doc__, "train"
    return verb
