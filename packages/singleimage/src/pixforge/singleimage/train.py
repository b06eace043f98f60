"""`train IMAGE --method singan|petsgan --out RUN`: the launcher (options and their checks before anything is written,
the image, the device); the loops live in `singan.py` and `petsgan.py`."""

from __future__ import annotations

from pathlib import Path

import torch

from pixforge.core.rundir import RunDir
from pixforge.core.runtime import configure, resolve_device
from pixforge.export.errors import PixforgeError
from pixforge.export.options import check_numbers
from pixforge.singleimage.data import load_image, singan_scales

METHODS = ("singan", "petsgan")
PRIORS = ("none", "stylegan2", "biggan")


FIXED = ("method", "image", "sizes", "nfc", "g_dim", "ir_dim", "d_dim", "downscale", "official", "no_phi",
         "prior")  # what --resume may not change: the networks, their scales and the image (--hr-factor may grow)


def _positive_int(flag: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PixforgeError(f"{flag} must be a positive integer, got {value!r}")


def _positive(flag: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise PixforgeError(f"{flag} must be a positive number, got {value!r}")


def _check_prior(prior: str, model: str | None) -> None:
    """--prior and --prior-model agree, and the model is what the prior reads (it is loaded): a pixforge-core
    StyleGAN2 generator (stylegan2) or a BigGAN generator file (biggan: BigGAN-PyTorch / DGP, or BigGAN-deep)."""
    if prior not in PRIORS:
        raise PixforgeError(f"--prior must be one of {', '.join(PRIORS)}, got {prior!r}")
    if (prior != "none") != (model is not None):
        raise PixforgeError("--prior-model goes with --prior stylegan2 (RUN_OR_CHECKPOINT) or --prior biggan (FILE), "
                            "and only with them")
    if prior == "biggan":
        from pixforge.singleimage.biggan import load_biggan

        load_biggan(model)
        return
    if model is None:
        return
    from pixforge.core.stylegan2.generate import load_generator

    G, _ = load_generator(model)
    if G.c_dim or G.img_channels != 3:
        raise PixforgeError(f"--prior-model {model} must be an unconditional RGB generator (c_dim {G.c_dim}, "
                            f"{G.img_channels} channels)")


def train(image: str, out: str, method: str = "singan", iters: int = 2000, max_size: int | None = None,
          min_size: int = 25, scale_factor: float = 0.75, nfc: int = 32, lr_g: float = 5e-4, lr_d: float = 5e-4,
          beta1: float = 0.5, gamma: float = 0.1, alpha: float = 10.0, lambda_grad: float = 0.1,
          noise_amp: float = 0.1, prior: str = "none", prior_model: str | None = None, prior_samples: int = 500,
          warp: float = 0.05, warmup_g: int = 2000, warmup_f: int = 5000,
          joint: int = 5000, batch_g: int = 32, layout_diversity: float = 0.0, tau: float = 0.01, downscale: int = 8,
          augment: int = 200, no_phi: bool = False,
          g_dim: int = 64, ir_dim: int = 64, d_dim: int = 64, rec_weight: float = 100.0, vgg: str | None = None,
          ema_decay: float | None = None, pt_passes: int | None = None, hr_factor: int = 1, hr_steps: int = 5000,
          official: bool = False,
          seed: int = 0,
          ckpt_every: int = 500, log_every: int = 10, keep_last: int = 3, device: str = "auto",
          threads: int | None = None, resume: bool = False, overwrite: bool = False, quiet: bool = False) -> Path:
    """Train a single-image generator on IMAGE into run directory OUT (config.json, checkpoints/, samples/,
    metrics.jsonl, log.txt, model.safetensors + model.json when finished); --resume continues a stopped run exactly.

    --method singan: the SinGAN pyramid, --iters per scale (official 2000), --max-size (default 250) / --min-size
    (25) / --scale-factor (0.75) as the official scale rule, --nfc channels (doubled every 4 scales), --lr-g/--lr-d
    (5e-4), --beta1 (0.5), x --gamma at 80 % of --iters, --alpha reconstruction weight (10), --lambda-grad WGAN-GP
    weight (0.1), --noise-amp (0.1 x reconstruction RMSE); --official redraws z_opt every iteration at the coarsest
    scale and steps the learning rate at iteration 1600 whatever --iters is (both as the official code).
    --method petsgan: DEPNet + DIPNet + dilated patch D (--max-size default 256), phases --warmup-g / --warmup-f /
    --joint iterations, --prior none (no external-prior data set: Eq. 6 against D_G trained on the image, its
    mirror and the --augment warps alone; not in the paper, its layouts collapse onto c_I, see the README) or
    stylegan2 with --prior-model RUN_OR_CHECKPOINT (a pixforge-core StyleGAN2 generator: the image is inverted into
    it and --prior-samples (500) jittered syntheses join D_G's data set) or biggan with --prior-model FILE (the
    official prior: DGP's G_ema_128.pth, its D_128.pth found beside it, or a pytorch_pretrained_biggan BigGAN-deep
    pytorch_model.bin / .safetensors / folder; DGP inversion of z and G, then --prior-samples jittered syntheses),
    --warp std of the TPS control-point jitter of the --augment samples (0.05 of the half-image), PT temperature --tau,
    --batch-g DEPNet batch (32), --layout-diversity weight w of an extra G term -w min(E|G(z1) - G(z2)|, m), m the
    D_G data's own mean pairwise L1 (0: the paper; not in the paper: with --prior none the paper form's layouts
    collapse onto c_I, 100 slows that but does not prevent it; see the README), --downscale layout factor (8),
    --augment TPS/flip samples for D_G (200),
    --no-phi (with --prior none) the paper's "w/o phi" ablation: Eq. 6 dropped, no Warmup_G (--warmup-g is
    ignored), no D_G, G kept at its initialization but for the joint phase's updates,
    --g-dim/--ir-dim/--d-dim widths (64), --rec-weight joint reconstruction weight (100), --vgg VGG19 weights for
    PT's features (torchvision's or the official vgg_conv.pth; random without), --pt-passes PT applied this many
    times in the joint phase and at sampling, each pass re-matching the last one's output (default 1, Eq. 7; 10
    with --official, its lpm_iter), --ema-decay an exponential moving average of G with this decay
    (the official code's G_ema: updated after every G step, the joint phase starts from it, samples are drawn from
    it; 0 = off; default 0, the paper, or 0.99 with --official), --hr-factor 2|4|8 the official hrnet stage (not in
    the paper; the official max_size > 256 at up_factor max_size // 256): an upsampler trained --hr-steps (5000)
    after the joint phase on I -> the image at that factor, applied by `sample --hr`; --official switches the
    official-code deviations on (see the README table).
    """
    config = {k: v for k, v in locals().items() if k not in ("out", "resume", "overwrite", "quiet")}
    # Check options and data (before the run directory exists).
    if method not in METHODS:
        raise PixforgeError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if max_size is None:
        max_size = config["max_size"] = 250 if method == "singan" else 256
    if ema_decay is None:  # the paper has no EMA of G; the official code keeps one at 0.99 (main.py:199-203)
        ema_decay = config["ema_decay"] = 0.99 if official and method == "petsgan" else 0.0
    if isinstance(ema_decay, bool) or not isinstance(ema_decay, (int, float)) or not 0 <= ema_decay < 1:
        raise PixforgeError(f"--ema-decay must be a number in [0, 1) (0 = no EMA of G), got {ema_decay!r}")
    if ema_decay and method != "petsgan":
        raise PixforgeError("--ema-decay is a PetsGAN option (an EMA of DEPNet G)")
    if pt_passes is None:  # Eq. 7 transfers once; the official code repeats it lpm_iter = 10 times (main.py:868)
        pt_passes = config["pt_passes"] = 10 if official and method == "petsgan" else 1
    if isinstance(pt_passes, bool) or not isinstance(pt_passes, int) or not 1 <= pt_passes <= 100:
        raise PixforgeError(f"--pt-passes must be a whole number from 1 to 100, got {pt_passes!r}")
    if pt_passes > 1 and method != "petsgan":
        raise PixforgeError("--pt-passes is a PetsGAN option (its patch transfer)")
    if hr_factor not in (1, 2, 4, 8) or (hr_factor > 1 and method != "petsgan"):
        raise PixforgeError(f"--hr-factor must be 1 (none), 2, 4 or 8 (a PetsGAN option), got {hr_factor!r}")
    _positive_int("--hr-steps", hr_steps)
    for flag, value in (("--iters", iters), ("--max-size", max_size), ("--min-size", min_size), ("--nfc", nfc),
                        ("--warmup-g", warmup_g), ("--warmup-f", warmup_f), ("--joint", joint),
                        ("--batch-g", batch_g), ("--augment", augment), ("--prior-samples", prior_samples),
                        ("--g-dim", g_dim), ("--ir-dim", ir_dim), ("--d-dim", d_dim), ("--ckpt-every", ckpt_every),
                        ("--log-every", log_every), ("--keep-last", keep_last)):
        _positive_int(flag, value)
    for flag, value in (("--lr-g", lr_g), ("--lr-d", lr_d), ("--gamma", gamma), ("--noise-amp", noise_amp),
                        ("--tau", tau)):
        _positive(flag, value)
    if isinstance(layout_diversity, bool) or not isinstance(layout_diversity, (int, float)) or layout_diversity < 0:
        raise PixforgeError(f"--layout-diversity must be a number >= 0, got {layout_diversity!r}")
    if downscale not in (2, 4, 8, 16):
        raise PixforgeError(f"--downscale must be 2, 4, 8 or 16, got {downscale!r}")
    if method == "petsgan" and batch_g < 2:
        raise PixforgeError("--batch-g must be at least 2 (the collapse penalty compares pairs)")
    if vgg is not None and method != "petsgan":
        raise PixforgeError("--vgg is a PetsGAN option (the weights of PT's features)")
    if vgg is not None:
        from pixforge.singleimage.petsgan_model import PatchTransfer

        PatchTransfer(vgg)  # a missing or foreign weights file is refused now, before the run folder exists
    check_numbers({"threads": threads}, integers={"threads": 0})  # 0: torch's default
    if not (isinstance(scale_factor, (int, float)) and 0 < scale_factor < 1):
        raise PixforgeError(f"--scale-factor must be in (0, 1), got {scale_factor!r}")
    if not (0 <= beta1 < 1) or alpha < 0 or lambda_grad < 0:
        raise PixforgeError(f"--beta1 must be in [0, 1) and --alpha, --lambda-grad >= 0, got {beta1}, {alpha}, "
                            f"{lambda_grad}")
    _check_prior(prior, prior_model)
    if not isinstance(no_phi, bool) or (no_phi and (prior != "none" or layout_diversity)):
        raise PixforgeError("--no-phi (the w/o-phi ablation) goes with --prior none and no --layout-diversity")
    if isinstance(warp, bool) or not isinstance(warp, (int, float)) or warp < 0:
        raise PixforgeError(f"--warp must be a number >= 0, got {warp!r}")
    picture = load_image(image)
    height, width = picture.shape[-2:]
    if method == "singan":
        if min_size < 11:
            raise PixforgeError(f"--min-size must be at least 11 (the patch discriminator's receptive field), "
                                f"got {min_size}")
        if max_size < min_size:
            raise PixforgeError(f"--max-size ({max_size}) must be at least --min-size ({min_size})")
        sizes, used = singan_scales(height, width, min_size, max_size, scale_factor)
        config["scale_factor_used"] = used
        config["sizes"] = [list(s) for s in sizes]
    else:
        from pixforge.singleimage.petsgan import petsgan_sizes

        config["sizes"] = [list(s) for s in petsgan_sizes(height, width, max_size, downscale)]
    config["image"] = str(Path(image).resolve())
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    configure(dev)
    run = RunDir(out, [image, vgg, prior_model], fixed=FIXED)
    if method == "singan":
        from pixforge.singleimage.singan import training_loop

        return training_loop(run, config, picture, sizes, dev, resume=resume, overwrite=overwrite, quiet=quiet)
    from pixforge.singleimage.petsgan import training_loop as petsgan_loop

    return petsgan_loop(run, config, picture, dev, resume=resume, overwrite=overwrite, quiet=quiet)
