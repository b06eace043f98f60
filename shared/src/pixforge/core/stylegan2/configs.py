"""`--cfg` presets: the hyperparameters NVlabs' `train.py` derives from a base config, the resolution and the GPU count.

| cfg | ref GPUs | kimg | batch | mbstd | fmaps | lr | gamma | ema kimg | ramp | map |
|---|---|---|---|---|---|---|---|---|---|---|
| auto | the GPUs | 25000 | (1) | min(batch // gpus, 4) | (2) | (3) | 0.0002 res^2 / batch | batch 10 / 32 | 0.05 | 2 |
| stylegan2 | 8 | 25000 | 32 | 4 | 1 | 0.002 | 10 | 10 | - | 8 |
| paper256 | 8 | 25000 | 64 | 8 | 0.5 | 0.0025 | 1 | 20 | - | 8 |
| paper512 | 8 | 25000 | 64 | 8 | 1 | 0.0025 | 0.5 | 20 | - | 8 |
| paper1024 | 8 | 25000 | 32 | 4 | 1 | 0.002 | 2 | 10 | - | 8 |
| cifar | 2 | 100000 | 64 | 32 | 1 | 0.0025 | 0.01 | 500 | 0.05 | 2 |
| low_shot | the GPUs | 300 | 16 | 4 | 1 | 0.002 | 10 | 10 | - | 2 |

(1) max(min(gpus * min(4096 // res, 32), 64), gpus); (2) 1 if res >= 512 else 0.5; (3) 0.002 if res >= 1024
else 0.0025. `low_shot` is Primitives-PS' recipe (its `pretrain/train.py` and `finetune/train.py`, snapshots
every 10 ticks).
`cifar` also turns off path-length regularisation and style mixing and uses the 'orig' discriminator. The batch
per GPU is `batch // ref_gpus` (gradient accumulation over rounds when fewer GPUs run); channel_base is
`fmaps * 32768`, channel_max 512; Adam betas (0, 0.99), eps 1e-8. `--gamma`, `--kimg`, `--batch` override as
NVlabs' options do.
"""

from __future__ import annotations

import dataclasses

CFG_SPECS = {  # ref_gpus, kimg, batch, mbstd, fmaps, lr, gamma, ema, ramp, map (-1: computed; 0 ref_gpus: the GPUs)
    "stylegan2": (8, 25000, 32, 4, 1.0, 0.002, 10.0, 10.0, None, 8),
    "paper256": (8, 25000, 64, 8, 0.5, 0.0025, 1.0, 20.0, None, 8),
    "paper512": (8, 25000, 64, 8, 1.0, 0.0025, 0.5, 20.0, None, 8),
    "paper1024": (8, 25000, 32, 4, 1.0, 0.002, 2.0, 10.0, None, 8),
    "cifar": (2, 100000, 64, 32, 1.0, 0.0025, 0.01, 500.0, 0.05, 2),
    "low_shot": (0, 300, 16, 4, 1.0, 0.002, 10.0, 10.0, None, 2),
}
CFGS = ("auto", *CFG_SPECS)


@dataclasses.dataclass(frozen=True)
class Spec:
    """What a base config fixes for a run: sizes, schedule and loss weights."""

    cfg: str
    kimg: float
    batch: int  # the global batch of one step
    batch_gpu: int  # the samples each process pushes through at once (rounds = batch // (batch_gpu * gpus))
    mbstd: int  # minibatch-stddev group size
    channel_base: int
    lr: float
    gamma: float
    ema_kimg: float
    ema_rampup: float | None
    map: int
    pl_weight: float = 2.0
    style_mixing: float = 0.9
    d_architecture: str = "resnet"
    snap: int | None = None  # ticks between snapshots when the config fixes it (low_shot: 10)
    channel_max: int = 512


def spec(cfg: str, resolution: int, gpus: int, *, kimg: float | None = None, batch: int | None = None,
         gamma: float | None = None, cbase: int | None = None, cmax: int | None = None,
         map_layers: int | None = None) -> Spec:
    """The hyperparameters of `cfg` at `resolution` on `gpus` processes, with NVlabs' overrides applied (and
    StyleGAN3's `--cbase`, `--cmax`, `--map` for smaller networks)."""
    if cfg == "auto":
        mb = max(min(gpus * min(4096 // resolution, 32), 64), gpus)
        values = dict(ref_gpus=gpus, kimg=25000, batch=mb, mbstd=min(mb // gpus, 4),
                      fmaps=1.0 if resolution >= 512 else 0.5, lr=0.002 if resolution >= 1024 else 0.0025,
                      gamma=0.0002 * resolution ** 2 / mb, ema=mb * 10 / 32, ramp=0.05, map=2)
    elif cfg in CFG_SPECS:
        keys = ("ref_gpus", "kimg", "batch", "mbstd", "fmaps", "lr", "gamma", "ema", "ramp", "map")
        values = dict(zip(keys, CFG_SPECS[cfg], strict=True))
        values["ref_gpus"] = values["ref_gpus"] or gpus
    else:
        raise ValueError(f"--cfg must be one of {', '.join(CFGS)}, got {cfg!r}")
    batch_gpu = values["batch"] // values["ref_gpus"]
    if batch is not None:
        values["batch"], batch_gpu = batch, batch // gpus
    extra = dict(pl_weight=0.0, style_mixing=0.0, d_architecture="orig") if cfg == "cifar" else {}
    return Spec(cfg=cfg, kimg=values["kimg"] if kimg is None else kimg, batch=values["batch"],
                batch_gpu=max(batch_gpu, 1), mbstd=values["mbstd"],
                channel_base=int(values["fmaps"] * 32768) if cbase is None else cbase,
                channel_max=512 if cmax is None else cmax, lr=values["lr"],
                gamma=values["gamma"] if gamma is None else gamma, ema_kimg=values["ema"], ema_rampup=values["ramp"],
                map=values["map"] if map_layers is None else map_layers, snap=10 if cfg == "low_shot" else None,
                **extra)
