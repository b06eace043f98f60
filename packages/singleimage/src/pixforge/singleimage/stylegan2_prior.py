"""PetsGAN's external prior from a pixforge-core StyleGAN2 generator (`--prior stylegan2`): the image inverted into
the generator, then jittered syntheses around it (DGP's recipe, as the official code runs it with BigGAN:
`BigGAN/RunJitter.py`; the BigGAN prior itself is `biggan.py`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pixforge.singleimage.data import resize

JITTER_STDS = (0.1, 0.2, 0.3, 0.4, 0.5)  # official RunJitter: 100 samples at each std, 500 in all


def mean_w(G: nn.Module, seed: int, count: int = 1000) -> torch.Tensor:
    """The mean of w = mapping(z) over `count` draws of z (1 x w_dim): the centre of W (w_avg may be untracked)."""
    z = torch.randn(count, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return G.mapping(z.to(next(G.parameters()).device), None, update_w_avg=False)[:, 0].mean(0, keepdim=True)


def invert(G: nn.Module, image: torch.Tensor, w0: torch.Tensor, steps: int = 200, lr: float = 0.05) -> torch.Tensor:
    """w* = argmin_w ||G.synthesis(w) - image||^2 (one w for every layer, constant noise), from `w0` with Adam;
    `image` is resized to the generator's square resolution. Returns w* (1 x w_dim)."""
    res = G.img_resolution
    target = resize(image, (res, res))
    w = w0.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.mse_loss(G.synthesis(w[:, None].expand(-1, G.num_ws, -1), noise_mode="const"), target).backward()
        opt.step()
    return w.detach()


def jitter(G: nn.Module, w_star: torch.Tensor, w_mean: torch.Tensor, count: int, size: tuple[int, int], seed: int,
           chunk: int = 50) -> torch.Tensor:
    """`count` perturbed syntheses G(w* + s (mapping(z) - w_mean)), s cycling through JITTER_STDS (DGP's latent
    jitter, moved to W: a random direction of W's spread scaled by s), resized to `size`; count x 3 x h x w."""
    gen = torch.Generator().manual_seed(seed)
    dev = w_star.device
    out = []
    with torch.no_grad():
        for first in range(0, count, chunk):
            n = min(chunk, count - first)
            z = torch.randn(n, G.z_dim, generator=gen).to(dev)
            std = torch.tensor([JITTER_STDS[i % len(JITTER_STDS)] for i in range(first, first + n)], device=dev)
            w = w_star + std[:, None] * (G.mapping(z, None, update_w_avg=False)[:, 0] - w_mean)
            img = G.synthesis(w[:, None].expand(-1, G.num_ws, -1), noise_mode="const")
            out.append(resize(img.clamp(-1, 1), size))
    return torch.cat(out)


def stylegan2_prior(path: str, image: torch.Tensor, count: int, size: tuple[int, int], seed: int,
                    dev: torch.device) -> torch.Tensor:
    """The external-prior data set: `image` inverted into the StyleGAN2 generator at `path` (a pixforge-core run or
    checkpoint), then `count` jittered samples at `size`."""
    from pixforge.core.stylegan2.generate import load_generator

    G, _ = load_generator(path, dev)
    w_mean = mean_w(G, seed)
    w_star = invert(G, image.to(dev), w_mean)
    return jitter(G, w_star, w_mean, count, size, seed + 1)
