"""The SinGAN baseline (Shaham, Dekel, Michaeli, ICCV 2019), as the official code tamarott/SinGAN trains it.

A pyramid of fully convolutional GANs, coarsest first. Scale n has a generator G_n (5 blocks of 3x3 conv-BN-LeakyReLU
(0.2), the last a conv + tanh; residual: G_n(z + x_up, x_up) = tanh(body(z + x_up)) + x_up) and a Markovian patch
discriminator D_n of the same shape ending in one channel; both have 32 channels, doubled every 4 scales (at most
128), no conv padding and a 5-pixel zero padding of the input (the official `m_noise`/`m_image`). Each scale trains
`iters` iterations (3 D steps: WGAN-GP with weight 0.1; then 3 G steps: adversarial + 10 x MSE reconstruction of the
real image from the fixed noise z_opt, which is noise at the coarsest scale and zero above) with Adam (lr 5e-4, betas
(0.5, 0.999)) and a x0.1 step at 80 % of the iterations (official: 1600 of 2000). The noise amplitude of scale n > 0
is 0.1 x the RMSE between the real image and the upsampled reconstruction of the scales below. When a scale has the
channel count of the one below, its G and D start from the trained weights below (official).

All noise is a pure function of (seed, global iteration, slot, scale) (`pixforge.core.steps.sample_noise`), and every
network is initialized from `seed` and its scale, so a run resumed from a checkpoint ends with the same weights,
bit for bit, as one that ran through.
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

from pixforge.core.checkpoint import Checkpoints, load_release, read_checkpoint, restore_rng, save_release
from pixforge.core.io import save_grid
from pixforge.core.loop import GracefulStop, MetricLogger, progress
from pixforge.core.rundir import RunDir
from pixforge.core.steps import sample_noise
from pixforge.export.errors import PixforgeError
from pixforge.singleimage.data import resize, singan_pyramid

LAYERS = 5  # official num_layer
PAD = LAYERS * (3 - 1) // 2  # official pad_noise = pad_image = 5
D_STEPS = G_STEPS = 3  # official Dsteps, Gsteps
MIN_SAMPLE_COARSE = 5  # px: the smallest coarsest-scale noise map `sample` accepts
ZOPT_INDEX = 2**40  # the noise index of z_opt (above every training index)


def width_at(scale: int, nfc: int = 32, max_nfc: int = 128) -> int:
    """Channels of scale `scale`: official `min(nfc_init * 2 ** floor(scale / 4), 128)` (nfc == min_nfc)."""
    return min(nfc * 2 ** (scale // 4), max_nfc)


class ConvBlock(nn.Sequential):
    """3x3 conv (no padding) - BatchNorm - LeakyReLU(0.2): the official ConvBlock."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 3, 1, 0), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True))


def init_weights(module: nn.Module) -> None:
    """Official `weights_init`: conv weights N(0, 0.02); BatchNorm weights N(1, 0.02), biases 0."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """G_n(z_in, prev) = tanh(body(pad(z_in))) + prev, with z_in = amp * z + prev (z alone at the coarsest scale)."""

    def __init__(self, width: int = 32, layers: int = LAYERS):
        super().__init__()
        self.head = ConvBlock(3, width)
        self.body = nn.Sequential(*[ConvBlock(width, width) for _ in range(layers - 2)])
        self.tail = nn.Sequential(nn.Conv2d(width, 3, 3, 1, 0), nn.Tanh())
        self.pad = (layers * 2) // 2

    def forward(self, z_in: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(self.head(F.pad(z_in, [self.pad] * 4)))) + prev


class Discriminator(nn.Module):
    """A Markovian patch critic (11x11 receptive field, no padding): one score per patch."""

    def __init__(self, width: int = 32, layers: int = LAYERS):
        super().__init__()
        self.head = ConvBlock(3, width)
        self.body = nn.Sequential(*[ConvBlock(width, width) for _ in range(layers - 2)])
        self.tail = nn.Conv2d(width, 1, 3, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(self.head(x)))


def gradient_penalty(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, weight: float,
                     alpha: torch.Tensor) -> torch.Tensor:
    """Official `calc_gradient_penalty`: one alpha for the whole image; the gradient norm is taken over the channels,
    per pixel, then (norm - 1)^2 is averaged."""
    mix = (alpha * real + (1 - alpha) * fake.detach()).requires_grad_(True)
    grad, = torch.autograd.grad(D(mix).sum(), mix, create_graph=True)
    return ((grad.norm(2, dim=1) - 1) ** 2).mean() * weight


def step_noise(shape, step: int, slot: int, scale: int, seed: int, device) -> torch.Tensor:
    """Noise of one training draw: a pure function of (seed, global iteration, slot, scale)."""
    return sample_noise(shape, [step * 8 + slot], seed, salt=scale, device=device)[0]


def coarse_noise(shape, draw) -> torch.Tensor:
    """The coarsest scale's noise: one channel, repeated over the 3 colours (official)."""
    n, _, h, w = shape
    return draw((n, 1, h, w)).expand(n, 3, h, w)


def run_pyramid(gens: list[nn.Module], amps: list[float], sizes: list[tuple[int, int]],
                noises: list[torch.Tensor]) -> torch.Tensor:
    """The output of the generators `gens` (scales 0..k) for the noise maps `noises` (one per scale, at `sizes`)."""
    out = None
    for n, (G, amp, size, z) in enumerate(zip(gens, amps, sizes, noises, strict=False)):
        prev = torch.zeros_like(z) if n == 0 else resize(out, size)
        out = G(amp * z + prev, prev)
    return out


class SinGAN:
    """The trained pyramid: generators, noise amplitudes, sizes and z_opt; `sample` draws images at any size."""

    def __init__(self, gens: list[nn.Module], amps: list[float], sizes: list[tuple[int, int]],
                 zopts: list[torch.Tensor]):
        self.gens, self.amps, self.sizes, self.zopts = gens, amps, sizes, zopts

    def scaled_sizes(self, size: tuple[int, int] | None) -> list[tuple[int, int]]:
        """The pyramid sizes for an output of `size` (H, W): every scale stretched by H / H_top and W / W_top (the
        official SinGAN_generate's scale_v / scale_h), the top exactly `size`."""
        if size is None:
            return list(self.sizes)
        top_h, top_w = self.sizes[-1]
        sv, sh = size[0] / top_h, size[1] / top_w
        out = [(max(1, round(h * sv)), max(1, round(w * sh))) for h, w in self.sizes[:-1]]
        return out + [tuple(size)]

    def min_size(self) -> tuple[int, int]:
        """The smallest output `sample` accepts: the coarsest noise map keeps at least MIN_SAMPLE_COARSE px a side."""
        (h0, w0), (ht, wt) = self.sizes[0], self.sizes[-1]
        return math.ceil(MIN_SAMPLE_COARSE * ht / h0), math.ceil(MIN_SAMPLE_COARSE * wt / w0)

    @torch.no_grad()
    def sample(self, n: int, size: tuple[int, int] | None = None, seed: int = 0, first: int = 0) -> torch.Tensor:
        """`n` samples (indices first .. first + n - 1; sample i depends on (seed, i) alone) of size `size`."""
        sizes = self.scaled_sizes(size)
        idx = range(first, first + n)
        noises = [coarse_noise((n, 3, *sizes[0]), lambda s: sample_noise(s[1:], idx, seed, 0))]
        noises += [sample_noise((3, *s), idx, seed, k) for k, s in enumerate(sizes[1:], start=1)]
        return run_pyramid(self.gens, self.amps, sizes, noises).clamp(-1, 1)

    @torch.no_grad()
    def reconstruct(self) -> torch.Tensor:
        return run_pyramid(self.gens, self.amps, self.sizes, self.zopts).clamp(-1, 1)

    def state(self) -> dict[str, torch.Tensor]:
        state = {f"G{n}.{k}": v for n, G in enumerate(self.gens) for k, v in G.state_dict().items()}
        state.update({f"zopt{n}": z for n, z in enumerate(self.zopts)})
        return state

    @classmethod
    def from_release(cls, state: dict[str, torch.Tensor], config: dict[str, Any]) -> SinGAN:
        gens = []
        for n, width in enumerate(config["widths"]):
            G = Generator(width)
            G.load_state_dict({k[len(f"G{n}."):]: v for k, v in state.items() if k.startswith(f"G{n}.")})
            gens.append(G.eval())
        zopts = [state[f"zopt{n}"] for n in range(len(gens))]
        return cls(gens, list(config["noise_amps"]), [tuple(s) for s in config["sizes"]], zopts)


def load_singan(run: str | Path) -> SinGAN:
    state, config = load_release(run)
    if config.get("method") != "singan":
        raise PixforgeError(f"{run} is not a SinGAN run (method {config.get('method')!r})")
    return SinGAN.from_release(state, config)


def training_loop(run: RunDir, config: dict[str, Any], image: torch.Tensor, sizes: list[tuple[int, int]],
                  dev: torch.device, *, resume: bool, overwrite: bool, quiet: bool) -> Path:
    """Train the pyramid scale by scale; one checkpoint at every scale's end (and every `ckpt_every` iterations)."""
    # Initialize.
    config = run.start(config, resume=resume, overwrite=overwrite)
    log = logging.getLogger("pixforge")
    iters, seed, scales = config["iters"], config["seed"], len(sizes)
    total = iters * scales
    reals = [r.to(dev) for r in singan_pyramid(image, sizes)]
    # the x gamma step: 80 % of the iterations (official: 1600 whatever niter is, which --official keeps)
    milestone = 1600 if config["official"] else max(1, round(iters * 0.8))

    # Resume.
    ckpts = Checkpoints(run.checkpoints, keep_last=config["keep_last"])
    start, ckpt = 0, None
    if resume and (latest := ckpts.latest()) is not None:
        ckpt = read_checkpoint(latest, map_location=dev)
        start = ckpt["step"]
        restore_rng(ckpt["rng"])
        log.info("resumed from %s (step %d of %d)", latest, start, total)
    gens: list[Generator] = []
    amps: list[float] = list(ckpt["extra"]["noise_amps"]) if ckpt else []
    zopts: list[torch.Tensor] = []
    done_scales = start // iters  # scales finished before `start`
    if ckpt:
        for n in range(done_scales):
            G = Generator(width_at(n, config["nfc"])).to(dev)
            G.load_state_dict(ckpt["models"][f"G{n}"])
            gens.append(G.eval().requires_grad_(False))
            zopts.append(ckpt["models"]["zopt"][str(n)].to(dev))
    D_prev: dict | None = ckpt["models"]["D"] if ckpt and start % iters == 0 and done_scales > 0 else None
    G_prev: dict | None = ckpt["models"][f"G{done_scales - 1}"] if D_prev is not None else None

    step = start
    with MetricLogger(run.metrics, run.tensorboard, start) as metrics, GracefulStop() as stop, \
            progress(total, initial=start, disable=quiet) as bar:
        for n in range(done_scales, scales):
            # Construct the scale's networks (from the scale below when the widths match, as official).
            width = width_at(n, config["nfc"])
            torch.manual_seed(seed * 1000 + n)
            G, D = Generator(width).to(dev), Discriminator(width).to(dev)
            G.apply(init_weights)
            D.apply(init_weights)
            resume_here = ckpt is not None and start % iters != 0 and n == done_scales
            if n > 0 and width == width_at(n - 1, config["nfc"]) and not resume_here:
                G.load_state_dict(G_prev if G_prev is not None else gens[-1].state_dict())
                D.load_state_dict(D_prev)
            opt_g = torch.optim.Adam(G.parameters(), lr=config["lr_g"], betas=(config["beta1"], 0.999))
            opt_d = torch.optim.Adam(D.parameters(), lr=config["lr_d"], betas=(config["beta1"], 0.999))
            sched_g = torch.optim.lr_scheduler.MultiStepLR(opt_g, milestones=[milestone], gamma=config["gamma"])
            sched_d = torch.optim.lr_scheduler.MultiStepLR(opt_d, milestones=[milestone], gamma=config["gamma"])
            real, size = reals[n], sizes[n]
            shape = (1, 3, *size)
            # The fixed reconstruction noise and the amplitude (official: 0.1 x RMSE of the upsampled reconstruction).
            if n == 0:
                zopt = coarse_noise(shape, lambda s: sample_noise(s[1:], [ZOPT_INDEX], seed, 0, dev))
                z_prev = torch.zeros(shape, device=dev)
            else:
                zopt = torch.zeros(shape, device=dev)
                with torch.no_grad():
                    z_prev = resize(run_pyramid(gens, amps, sizes, zopts), size)
            if len(amps) <= n:
                amps.append(1.0 if n == 0 else config["noise_amp"] * math.sqrt(F.mse_loss(real, z_prev).item()))
            amp = amps[n]
            it0 = 0
            if resume_here:  # resume inside this scale
                G.load_state_dict(ckpt["models"][f"G{n}"])
                D.load_state_dict(ckpt["models"]["D"])
                opt_g.load_state_dict(ckpt["optimizers"]["G"])
                opt_d.load_state_dict(ckpt["optimizers"]["D"])
                sched_g.load_state_dict(ckpt["extra"]["sched_g"])
                sched_d.load_state_dict(ckpt["extra"]["sched_d"])
                it0 = step % iters
            G.train()
            D.train()

            def save(at, gen=G, disc=D, og=opt_g, od=opt_d, sg=sched_g, sd=sched_d, zo=zopt):
                models = {f"G{k}": g for k, g in enumerate(gens)}
                models[f"G{len(gens)}"] = gen
                models["D"] = disc
                models["zopt"] = {str(k): z for k, z in enumerate([*zopts, zo])}
                ckpts.save(at, models=models, optimizers={"G": og, "D": od}, config=config,
                           extra={"noise_amps": list(amps), "sched_g": sg.state_dict(), "sched_d": sd.state_dict()})

            for it in range(it0, iters):
                def draw(s, slot, k=None, at=step, scale=n):
                    return step_noise(s, at, slot, scale if k is None else k, seed, dev)

                noise_ = coarse_noise(shape, lambda s: draw(s, 0)) if n == 0 else draw(shape, 0)
                if n == 0 and config["official"]:  # official: z_opt is redrawn every iteration (the last one kept)
                    zopt = coarse_noise(shape, lambda s: draw(s, 3))

                # D steps: WGAN-GP.
                for j in range(D_STEPS):
                    opt_d.zero_grad(set_to_none=True)
                    err_real = -D(real).mean()
                    if n == 0:
                        prev = torch.zeros(shape, device=dev)
                    else:
                        with torch.no_grad():
                            rand = [coarse_noise((1, 3, *sizes[0]), lambda s, j=j: draw(s, 1 + j, 0))]
                            rand += [draw((1, 3, *sizes[k]), 1 + j, k) for k in range(1, n)]
                            prev = resize(run_pyramid(gens, amps, sizes, rand), size)
                    noise = noise_ if n == 0 else amp * noise_ + prev
                    fake = G(noise, prev)
                    err_fake = D(fake.detach()).mean()
                    alpha = torch.rand(1, generator=torch.Generator().manual_seed(seed * 1_000_003 + step * 8 + 4 + j))
                    gp = gradient_penalty(D, real, fake, config["lambda_grad"], alpha.to(dev))
                    (err_real + err_fake + gp).backward()
                    opt_d.step()

                # G steps: adversarial + alpha x reconstruction (the last D step's noise; the first G step reuses
                # the last D step's fake as official, the others recompute it: official backpropagates through
                # that stale graph, which PyTorch >= 1.5 refuses). D's weight gradients are not computed here
                # (official computes and discards them).
                D.requires_grad_(False)
                for k in range(G_STEPS):
                    opt_g.zero_grad(set_to_none=True)
                    err_g = -D(fake if k == 0 else G(noise, prev)).mean()
                    rec = config["alpha"] * F.mse_loss(G(amp * zopt + z_prev, z_prev), real)
                    (err_g + rec).backward()
                    opt_g.step()
                D.requires_grad_(True)
                sched_g.step()
                sched_d.step()

                # Log.
                step += 1
                if step % config["log_every"] == 0 or it == iters - 1:
                    metrics.log(step, scale=n, d_real=err_real.detach(), d_fake=err_fake.detach(), gp=gp.detach(),
                                g_adv=err_g.detach(), rec=rec.detach())
                bar.set_postfix(scale=n, rec=f"{rec.item():.4f}")
                bar.update()

                # Checkpoint.
                if step % config["ckpt_every"] == 0 or it == iters - 1 or stop.requested:
                    save(step, zo=zopt)
                if stop.requested:  # after the checkpoint
                    break
            if stop.requested and step < (n + 1) * iters:
                break

            # The scale is done: freeze it, write its sample grid.
            G.eval().requires_grad_(False)
            gens.append(G)
            zopts.append(zopt)
            G_prev, D_prev = None, copy.deepcopy(D.state_dict())
            model = SinGAN(gens, amps, sizes[:n + 1], zopts)
            grid = torch.cat([real, model.reconstruct(), model.sample(6, seed=seed + 1)])
            save_grid(grid, run.samples / f"scale-{n:02d}.png", nrow=8)
            log.info("scale %d/%d (%dx%d, %d channels, noise amp %.4f) done", n + 1, scales, *size, width, amp)

    # Done.
    if step < total:
        log.info("stopped at step %d of %d; continue with --resume", step, total)
        return run.path
    model = SinGAN(gens, amps, sizes, zopts)
    save_release(run.path, model.state(), {"method": "singan", "sizes": [list(s) for s in sizes],
                                           "widths": [width_at(n, config["nfc"]) for n in range(scales)],
                                           "noise_amps": amps, "scale_factor": config["scale_factor_used"],
                                           "step": step})
    save_grid(model.sample(8, seed=seed + 1), run.samples / "final.png", nrow=8)
    log.info("finished %d scales: %s", scales, run.path)
    return run.path
