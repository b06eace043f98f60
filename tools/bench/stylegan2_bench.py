"""StyleGAN2 training: sec/kimg and peak memory of our trainer per config (fp32, AMP, compiled), against NVlabs'.

Our side replicates `pixforge.core.stylegan2.train.training_loop`'s per-step sequence (the loop itself also reads
a DataLoader, logs and snapshots, so it is not called): the objects it builds (`build_networks`, the two Adam
optimizers with the lazy-regularisation ratios, the GradScaler, `StyleGAN2Loss`, the strategy, `loss.compile()`
for the compiled case), then per step: uint8 batch -> float as the loop converts it, `random_labels`, the phases
Gmain, Greg (every 4th), Dmain, Dreg (every 16th) each with zero_grad, requires_grad, `accumulate_gradients` per
round, `distributed.all_reduce_grads`, scaler step; then `ema_update` and `strategy.adjust`.

The reference, with `--official PATH` (a checkout of NVlabs/stylegan2-ada-pytorch; `--official-apa PATH`: one of
EndlessSora/DeceiveD for the apa cases), is that checkout's own networks, loss and augmentation pipe imported at run
time, built as its `training/training_loop.py` builds them for the same config (its loop itself needs CUDA), and
its per-step sequence: z/c draws for all phases, the phases with zero_grad, requires_grad, `accumulate_gradients`
(sync, gain), `nan_to_num`, opt.step, the G_ema lerp and the ADA/APA p adjustment. Its custom ops fall back to
their reference implementations off CUDA. Each trainer keeps its own math flags (ours: TF32 on CUDA; NVlabs: off).

Sizes: `--cbase`/`--cmax`/`--map` as StyleGAN3's options (defaults 2048/128/2 with `--batch 8` at 32 px: about a
second a step on one CPU thread), one round per step (`--batch` per GPU), cfg `auto` otherwise. On a loaded machine
`--threads 1` steadies the CPU figures. Precision: fp32 is NVlabs' `--fp32` (no fp16 layers, no clamp) on both
sides; amp is ours `--amp` (bf16 autocast + D's top 4 resolutions in bf16 on the CPU; bf16/fp16 on CUDA) against
NVlabs' default mixed precision (fp16 in the top 4 resolutions of G and D, clamp 256; on the CPU only with
`--official-cpu-fp16`: torch's fp16 CPU kernels make it ~30x slower); compiled is ours fp32 with `loss.compile()`
against NVlabs' fp32 (it has no compiled mode). ada and apa start at `--p` (default 0.2: at p = 0 our strategy skips
the pipe, NVlabs' still runs it) and adapt from there.

Timing: `--warmup` steps untimed (from step 0, which runs all four phases), then `--repeats` repeats of `--cycles` x
16 steps (16 steps hold each phase in its share); within a repeat the trainers alternate step by step, the first one
rotating, so load from other processes hits them alike; sec/kimg = the repeat's summed step times / its images x
1000, median over the repeats. The apa case also times our noaug in the same alternation (`vs_noaug`: APA's cost
over noaug under the same load). Peak memory: on CUDA `step_alloc_mib`, the most a trainer's step allocated above
what was allocated before it; on the CPU each trainer runs `--warmup` steps in a fresh process (`peak_rss_mib`: its
maximum RSS; `step_rss_mib`: that minus its RSS once built; not for compiled), `--no-memory` skips it. One JSON line
per case: name, device, size, median_s_per_kimg, reference, reference_median_s_per_kimg, ratio (case / reference:
below 1 is faster), load (1-min load average at start and end), memory, the repeats' values. `--profile N`: instead,
the top N ops (CPU time) of one 16-step cycle of ours per case, to stderr.

    OMP_NUM_THREADS=1 python tools/bench/stylegan2_bench.py --threads 1 --official /path/to/stylegan2-ada-pytorch \
        --official-apa /path/to/DeceiveD
    python tools/bench/stylegan2_bench.py --sizes 32 64 --augs noaug apa --precisions fp32 amp --repeats 3
    python tools/bench/stylegan2_bench.py --device cuda --sizes 256 --cbase 16384 --batch 32 --official ...
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import os
import statistics
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixforge.core import distributed
from pixforge.core.runtime import autocast_dtype, configure, grad_scaler
from pixforge.core.stylegan2 import configs
from pixforge.core.stylegan2 import strategy as strategies
from pixforge.core.stylegan2.augment import AUGPIPE_SPECS
from pixforge.core.stylegan2.loss import StyleGAN2Loss
from pixforge.core.stylegan2.train import D_REG_INTERVAL, G_REG_INTERVAL, build_networks, ema_update, random_labels

CYCLE = 16  # steps holding every phase in its share (Dreg every 16th, Greg every 4th)
OFFICIAL_MODULES = ("dnnlib", "torch_utils", "training", "legacy", "metrics")


@dataclasses.dataclass(frozen=True)
class Config:
    """One trainer's setup: what both sides of a case share, plus the side."""

    side: str  # ours | nvlabs | deceived
    size: int
    aug: str  # noaug | ada | apa
    precision: str  # fp32 | amp | compiled
    device: str
    batch: int
    cbase: int
    cmax: int
    map: int
    cfg: str
    p: float
    seed: int
    official: str | None = None


def spec_of(cfg: Config) -> configs.Spec:
    return configs.spec(cfg.cfg, cfg.size, 1, batch=cfg.batch, cbase=cfg.cbase, cmax=cfg.cmax, map_layers=cfg.map)


def data_pool(cfg: Config, n: int = 4) -> list[torch.Tensor]:
    """`n` uint8 batches (what the DataLoader yields), cycled through."""
    gen = torch.Generator().manual_seed(cfg.seed)
    return [torch.randint(0, 256, (cfg.batch, 3, cfg.size, cfg.size), generator=gen, dtype=torch.uint8)
            for _ in range(n)]


class Ours:
    """Our trainer's per-step work, as `training_loop` builds and runs it (see the module docstring)."""

    def __init__(self, cfg: Config):
        dev = self.dev = torch.device(cfg.device)
        configure(dev)
        torch.default_generator.manual_seed(cfg.seed)
        self.spec = spec = spec_of(cfg)
        self.seed, self.batch, self.rounds = cfg.seed, spec.batch, spec.batch // spec.batch_gpu
        amp = ("bf16" if dev.type == "cpu" else True) if cfg.precision == "amp" else False
        amp_dtype = autocast_dtype(dev, amp)
        self.training_set = types.SimpleNamespace(label_dim=0, resolution=cfg.size, num_channels=3)
        G, D = build_networks(spec, self.training_set, amp_dtype, 0)
        self.G, self.D = G.train().requires_grad_(False).to(dev), D.train().requires_grad_(False).to(dev)
        self.G_ema = copy.deepcopy(self.G).eval()
        if cfg.aug == "apa":
            from pixforge.apa.pseudo import STRATEGIES
            make = STRATEGIES["apa"]
        else:
            make = functools.partial(strategies.build, cfg.aug)
        self.strategy = make(p=cfg.p, target=0.6, kimg=500, augpipe="bgc", policy="color,translation,cutout",
                             device=dev)
        self.phases = []
        for name, module, interval in (("G", self.G, G_REG_INTERVAL), ("D", self.D, D_REG_INTERVAL)):
            ratio = interval / (interval + 1)
            opt = torch.optim.Adam(list(module.parameters()), lr=spec.lr * ratio, betas=(0.0, 0.99 ** ratio), eps=1e-8)
            self.phases += [(name + "main", module, opt, 1), (name + "reg", module, opt, interval)]
        self.scaler = grad_scaler(dev, amp_dtype)
        self.loss = StyleGAN2Loss(self.G, self.D, self.strategy, seed=cfg.seed, r1_gamma=spec.gamma,
                                  style_mixing=spec.style_mixing, pl_weight=spec.pl_weight, amp_dtype=amp_dtype)
        if cfg.precision == "compiled":
            self.loss.compile()
        self.data = data_pool(cfg)
        self.real_c = torch.zeros([self.batch, 0])
        self.tick_terms: dict[str, list[torch.Tensor]] = {}

    def backward(self, value: torch.Tensor) -> None:
        self.scaler.scale(value).backward()

    def step(self, step: int) -> None:
        dev, spec, loss = self.dev, self.spec, self.loss
        indices = range(step * self.batch, (step + 1) * self.batch)  # StepSampler.indices, one process
        real = (self.data[step % len(self.data)].to(dev, non_blocking=True).float() / 127.5 - 1).split(spec.batch_gpu)
        real_c = self.real_c.to(dev, non_blocking=True).split(spec.batch_gpu)
        gen_c = random_labels(self.training_set, indices, self.seed, dev).split(spec.batch_gpu)
        round_indices = [indices[i * spec.batch_gpu:(i + 1) * spec.batch_gpu] for i in range(self.rounds)]
        for name, module, opt, interval in self.phases:
            if step % interval:
                continue
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            for r in range(self.rounds):
                terms = loss.accumulate_gradients(name, real[r], real_c[r], gen_c[r], round_indices[r], step,
                                                  gain=interval / self.rounds, backward=self.backward)
                for key, value in terms.items():
                    self.tick_terms.setdefault(key, []).append(value)
            module.requires_grad_(False)
            distributed.all_reduce_grads(module.parameters(), sanitize=not self.scaler.is_enabled())
            self.scaler.step(opt)
            self.scaler.update()
        step += 1
        ema_nimg = spec.ema_kimg * 1000
        if spec.ema_rampup is not None:
            ema_nimg = min(ema_nimg, step * self.batch * spec.ema_rampup)
        ema_update(self.G_ema, self.G, 0.5 ** (self.batch / max(ema_nimg, 1e-8)))
        self.strategy.adjust(step, self.batch)
        if step % CYCLE == 0:
            self.tick_terms = {}  # the loop drops them once per tick


def import_official(path: str) -> dict[str, Any]:
    """The modules of an official checkout (NVlabs' layout), imported from `path`; a checkout imported before
    is dropped from `sys.modules` first (the two checkouts share module names). Modules the training code does
    not need at all here (`requests`; `distutils` on Python >= 3.12) are stubbed when absent."""
    for name in list(sys.modules):
        if name.split(".")[0] in OFFICIAL_MODULES:
            del sys.modules[name]
    for name in ("requests", "distutils", "distutils.util"):
        try:
            __import__(name)
        except ImportError:
            stub = sys.modules[name] = types.ModuleType(name)
            if name == "distutils.util":
                stub.strtobool = lambda v: str(v).lower() in ("y", "yes", "t", "true", "on", "1")
                sys.modules["distutils"].util = stub
    warnings.filterwarnings("ignore", message=".*gradfix not supported on PyTorch")  # its fallback, once a call
    sys.path.insert(0, str(Path(path).resolve()))
    try:
        import dnnlib
        import training.augment
        import training.loss
        import training.networks
        from torch_utils import misc, training_stats
        from torch_utils.ops import conv2d_gradfix, grid_sample_gradfix
    finally:
        sys.path.pop(0)
    return {"dnnlib": dnnlib, "networks": training.networks, "loss": training.loss, "augment": training.augment,
            "misc": misc, "training_stats": training_stats, "conv2d_gradfix": conv2d_gradfix,
            "grid_sample_gradfix": grid_sample_gradfix}


class Official:
    """An official checkout's per-step work, as its `training_loop` builds and runs it (one GPU, no DDP)."""

    def __init__(self, cfg: Config):
        m = self.m = import_official(cfg.official)
        dev = self.dev = torch.device(cfg.device)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.set_flags()
        spec = self.spec = spec_of(cfg)
        self.batch, self.batch_gpu = spec.batch, spec.batch_gpu
        fp16 = cfg.precision == "amp"
        precision = dict(num_fp16_res=4 if fp16 else 0, conv_clamp=256 if fp16 else None)
        G_kwargs = dict(z_dim=512, w_dim=512, mapping_kwargs=dict(num_layers=spec.map),
                        synthesis_kwargs=dict(channel_base=spec.channel_base, channel_max=spec.channel_max,
                                              **precision))
        D_kwargs = dict(block_kwargs={}, mapping_kwargs={}, epilogue_kwargs=dict(mbstd_group_size=spec.mbstd),
                        channel_base=spec.channel_base, channel_max=spec.channel_max, architecture=spec.d_architecture,
                        **precision)
        common = dict(c_dim=0, img_resolution=cfg.size, img_channels=3)
        net = m["networks"]
        self.G = net.Generator(**G_kwargs, **common).train().requires_grad_(False).to(dev)
        self.D = net.Discriminator(**D_kwargs, **common).train().requires_grad_(False).to(dev)
        self.G_ema = copy.deepcopy(self.G).eval()
        self.augment_pipe, self.ada_stats = None, None
        if cfg.aug != "noaug":  # ada (NVlabs) / apa (DeceiveD): the pipe holds p, the collector the signs
            self.augment_pipe = m["augment"].AugmentPipe(**AUGPIPE_SPECS["bgc"]).train().requires_grad_(False).to(dev)
            self.augment_pipe.p.copy_(torch.as_tensor(cfg.p))
            self.ada_stats = m["training_stats"].Collector(regex="Loss/signs/real")
        loss_kwargs = dict(r1_gamma=spec.gamma, pl_weight=spec.pl_weight, style_mixing_prob=spec.style_mixing)
        if cfg.side == "deceived":
            loss_kwargs["with_dataaug"] = False
        self.loss = m["loss"].StyleGAN2Loss(device=dev, G_mapping=self.G.mapping, G_synthesis=self.G.synthesis,
                                            D=self.D, augment_pipe=self.augment_pipe, **loss_kwargs)
        self.phases = []
        for name, module, interval in (("G", self.G, G_REG_INTERVAL), ("D", self.D, D_REG_INTERVAL)):
            ratio = interval / (interval + 1)
            opt = torch.optim.Adam(module.parameters(), lr=spec.lr * ratio, betas=[0.0 ** ratio, 0.99 ** ratio],
                                   eps=1e-8)
            self.phases += [(name + "main", module, opt, 1), (name + "reg", module, opt, interval)]
        self.data = data_pool(cfg)
        self.raw_labels = np.zeros([1000, 0], dtype=np.float32)  # an unconditional dataset's labels
        self.real_c = torch.zeros([self.batch, 0])

    def set_flags(self) -> None:
        """Its loop's flags (global: set before each of its steps, ours may differ)."""
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        self.m["conv2d_gradfix"].enabled = True
        self.m["grid_sample_gradfix"].enabled = True

    def step(self, step: int) -> None:
        dev, batch, batch_gpu, m = self.dev, self.batch, self.batch_gpu, self.m
        self.set_flags()
        phase_real_img = (self.data[step % len(self.data)].to(dev).to(torch.float32) / 127.5 - 1).split(batch_gpu)
        phase_real_c = self.real_c.to(dev).split(batch_gpu)
        all_gen_z = torch.randn([len(self.phases) * batch, self.G.z_dim], device=dev)
        all_gen_z = [z.split(batch_gpu) for z in all_gen_z.split(batch)]
        all_gen_c = [self.raw_labels[np.random.randint(len(self.raw_labels))].copy()
                     for _ in range(len(self.phases) * batch)]
        all_gen_c = torch.from_numpy(np.stack(all_gen_c))
        all_gen_c = (all_gen_c.pin_memory() if dev.type == "cuda" else all_gen_c).to(dev)
        all_gen_c = [c.split(batch_gpu) for c in all_gen_c.split(batch)]
        for (name, module, opt, interval), phase_gen_z, phase_gen_c in zip(self.phases, all_gen_z, all_gen_c,
                                                                           strict=True):
            if step % interval != 0:
                continue
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            rounds = list(zip(phase_real_img, phase_real_c, phase_gen_z, phase_gen_c, strict=True))
            for round_idx, (real_img, real_c, gen_z, gen_c) in enumerate(rounds):
                self.loss.accumulate_gradients(phase=name, real_img=real_img, real_c=real_c, gen_z=gen_z,
                                               gen_c=gen_c, sync=round_idx == len(rounds) - 1, gain=interval)
            module.requires_grad_(False)
            for param in module.parameters():
                if param.grad is not None:
                    m["misc"].nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
            opt.step()
        cur_nimg = step * batch
        ema_nimg = self.spec.ema_kimg * 1000
        if self.spec.ema_rampup is not None:
            ema_nimg = min(ema_nimg, cur_nimg * self.spec.ema_rampup)
        ema_beta = 0.5 ** (batch / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            p_ema.copy_(p.lerp(p_ema, ema_beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            b_ema.copy_(b)
        if self.ada_stats is not None and (step + 1) % 4 == 0:  # ada_interval / apa_interval
            self.ada_stats.update()
            adjust = np.sign(self.ada_stats["Loss/signs/real"] - 0.6) * (batch * 4) / (500 * 1000)
            self.augment_pipe.p.copy_((self.augment_pipe.p + adjust).max(m["misc"].constant(0, device=dev)))


def build(cfg: Config):
    return Ours(cfg) if cfg.side == "ours" else Official(cfg)


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def probe(cfg: Config, warmup: int) -> dict[str, float]:
    """In this (fresh) process: build `cfg`'s trainer, run `warmup` steps; peak RSS and its growth over the build."""
    trainer = build(cfg)
    base = rss_bytes()
    for step in range(max(warmup, 1)):
        trainer.step(step)
    with open("/proc/self/status") as fh:  # VmHWM: this process's peak RSS (ru_maxrss carries the parent's over exec)
        peak = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) * 1024
    return {"peak_rss_mib": round(peak / 2**20, 1), "step_rss_mib": round((peak - base) / 2**20, 1)}


def probe_memory(cfg: Config, warmup: int) -> dict[str, float] | str:
    """`probe` in a child process (the CPU allocator keeps what it freed, so one process cannot tell two
    trainers' peaks apart)."""
    cmd = [sys.executable, __file__, "--probe", json.dumps(dataclasses.asdict(cfg)), "--warmup", str(warmup),
           "--threads", str(torch.get_num_threads())]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode:
        return f"probe failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_case(trainers: dict[str, Any], device: str, warmup: int, repeats: int, cycles: int,
              batch: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Per trainer, sec/kimg of each repeat (steps alternating across trainers); CUDA peak memory per trainer."""
    cuda = device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    names = list(trainers)
    for step in range(warmup):
        for name in names:
            trainers[name].step(step)
    sync()
    per_kimg: dict[str, list[float]] = {name: [] for name in names}
    peaks = dict.fromkeys(names, 0.0)
    step = warmup
    for _ in range(repeats):
        spent = dict.fromkeys(names, 0.0)
        for i in range(cycles * CYCLE):
            for name in names[i % len(names):] + names[:i % len(names)]:
                sync()
                if cuda:  # the other trainers' state stays allocated: count what this step adds
                    torch.cuda.reset_peak_memory_stats()
                    before = torch.cuda.memory_allocated()
                start = time.perf_counter()
                trainers[name].step(step)
                sync()
                spent[name] += time.perf_counter() - start
                if cuda:
                    peaks[name] = max(peaks[name], (torch.cuda.max_memory_allocated() - before) / 2**20)
            step += 1
        for name in names:
            per_kimg[name].append(spent[name] / (cycles * CYCLE * batch) * 1000)
    return per_kimg, {k: round(v, 1) for k, v in peaks.items()}


def run_case(base: Config, args: argparse.Namespace) -> None:
    """One case: ours (+ our noaug for apa) and the official trainer, alternating; one JSON line."""
    official = args.official_apa if base.aug == "apa" else args.official
    side = "deceived" if base.aug == "apa" else "nvlabs"
    configs_ = {"ours": base}
    if base.aug == "apa":
        configs_["ours_noaug"] = dataclasses.replace(base, aug="noaug")
    reference = None
    if official:  # compiled: against its fp32 (it has no compiled mode)
        if base.precision == "amp" and base.device == "cpu" and not args.official_cpu_fp16:
            reference = "skipped: NVlabs' mixed precision on the CPU is fp16 (--official-cpu-fp16 to time it)"
        else:
            configs_[side] = dataclasses.replace(base, side=side, official=official)
    load_start = os.getloadavg()[0]
    trainers, errors = {}, {}
    for name, cfg in configs_.items():
        try:
            trainers[name] = build(cfg)
        except Exception as exc:  # noqa: BLE001 -- an official checkout that cannot run here is reported
            errors[name] = f"{type(exc).__name__}: {exc}"
    try:
        per_kimg, cuda_peaks = time_case(trainers, base.device, args.warmup, args.repeats, args.cycles, base.batch)
    except Exception as exc:  # noqa: BLE001
        if set(trainers) == {"ours"} or "ours" not in trainers:
            raise
        errors.update({k: f"{type(exc).__name__}: {exc}" for k in trainers if k != "ours"})
        trainers = {k: v for k, v in trainers.items() if not k.startswith(("nvlabs", "deceived"))}
        per_kimg, cuda_peaks = time_case(trainers, base.device, args.warmup, args.repeats, args.cycles, base.batch)
    load_end = os.getloadavg()[0]
    medians = {k: statistics.median(v) for k, v in per_kimg.items()}
    if base.device.startswith("cuda"):
        memory = {k: {"step_alloc_mib": v} for k, v in cuda_peaks.items()}
    elif base.precision == "compiled":
        memory = {"note": "not probed: a fresh process would compile again (minutes on the CPU)"}
    elif args.memory:
        memory = {}
        for name, cfg in configs_.items():
            if name in trainers:
                result = probe_memory(cfg, args.warmup)
                memory[name] = result
    else:
        memory = {}
    name = f"train_{base.precision}_{base.aug}"
    ref_name, ref_median = None, None
    if side in medians:
        ref_name = f"{side}_{'fp32' if base.precision == 'compiled' else base.precision}_{base.aug}"
        ref_median = medians[side]
    row = {"name": name, "device": base.device, "size": base.size, "median_s_per_kimg": round(medians["ours"], 3),
           "reference": ref_name,
           "reference_median_s_per_kimg": None if ref_median is None else round(ref_median, 3),
           "ratio": None if ref_median is None else round(medians["ours"] / ref_median, 3)}
    if "ours_noaug" in medians:
        row["noaug_median_s_per_kimg"] = round(medians["ours_noaug"], 3)
        row["vs_noaug"] = round(medians["ours"] / medians["ours_noaug"], 4)
    if reference and ref_name is None:
        row["reference_note"] = reference
    row.update({"load": [round(load_start, 2), round(load_end, 2)], "threads": torch.get_num_threads(),
                "batch": base.batch, "cbase": base.cbase, "cmax": base.cmax, "map": base.map, "p": base.p,
                "repeats": {k: [round(x, 3) for x in v] for k, v in per_kimg.items()}, "memory": memory})
    if errors:
        row["errors"] = errors
    print(json.dumps(row), flush=True)


def profile_ours(base: Config, args: argparse.Namespace) -> None:
    """`--profile`: where one 16-step cycle of ours goes (torch.profiler table, CPU time, to stderr)."""
    trainer = build(base)
    for step in range(args.warmup):
        trainer.step(step)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for step in range(args.warmup, args.warmup + CYCLE):
            with torch.profiler.record_function(f"step{step % CYCLE}"):
                trainer.step(step)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile), file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32])
    parser.add_argument("--augs", nargs="+", default=["noaug", "ada", "apa"], choices=["noaug", "ada", "apa"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "amp", "compiled"],
                        choices=["fp32", "amp", "compiled"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--cbase", type=int, default=2048)
    parser.add_argument("--cmax", type=int, default=128)
    parser.add_argument("--map", type=int, default=2)
    parser.add_argument("--cfg", default="auto", choices=configs.CFGS)
    parser.add_argument("--p", type=float, default=0.2, help="initial p of ada and apa")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch's CPU threads (default: its own choice)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=1, help="16-step cycles per repeat")
    parser.add_argument("--official", help="a checkout of NVlabs/stylegan2-ada-pytorch (noaug, ada)")
    parser.add_argument("--official-apa", help="a checkout of EndlessSora/DeceiveD (apa)")
    parser.add_argument("--official-cpu-fp16", action="store_true", help="time NVlabs' fp16 layers on the CPU")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="CPU: skip the RSS probes")
    parser.add_argument("--profile", type=int, default=0, help="instead: our top N ops over one cycle per case")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(probe(Config(**json.loads(args.probe)), args.warmup)))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    for size in args.sizes:
        for precision in args.precisions:
            for aug in args.augs:
                base = Config(side="ours", size=size, aug=aug, precision=precision, device=args.device,
                              batch=args.batch, cbase=args.cbase, cmax=args.cmax, map=args.map, cfg=args.cfg,
                              p=args.p, seed=args.seed)
                if args.profile:
                    profile_ours(base, args)
                else:
                    run_case(base, args)


if __name__ == "__main__":
    main()
