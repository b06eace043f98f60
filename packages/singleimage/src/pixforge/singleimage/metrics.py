"""`metrics --run RUN`: no-download scores of a finished run's samples against its training image, and SIFID when an
Inception weights file is given.

    diversity_pixel_std     SinGAN's diversity: the per-pixel standard deviation over the samples, averaged over
                            pixels and channels, divided by the standard deviation of the training image
    diversity_pairwise_l1   mean L1 distance between pairs of samples, in [0, 1] pixel units
    swd_patches             core.swd (ProGAN's multi-scale sliced Wasserstein distance x 1e3, 7x7 patches) between
                            the samples and the training image (the image repeated as many times as there are samples)
    sifid                   (with --inception WEIGHTS) SinGAN's single-image FID as its official SIFID/sifid_score.py
                            computes it (dims 192): the Frechet distance between the 192-channel InceptionV3
                            features of the convolution before the second max-pool (Conv2d_1a..2b, max-pool,
                            Conv2d_3b, Conv2d_4a; official: torchvision's ImageNet weights, an FID weights file
                            is taken too and recorded) of the training image and of each sample, over spatial
                            positions (unbiased covariance), averaged over the samples; the images go in at their
                            own size, in [-1, 1] (official: [0, 1] scaled by 2x - 1)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from pixforge.core.checkpoint import load_release
from pixforge.core.cli import output_file
from pixforge.core.metrics import feature_stats, frechet_distance
from pixforge.core.swd import SWD, num_levels
from pixforge.export.atomic import write_text
from pixforge.export.errors import PixforgeError
from pixforge.singleimage.data import load_image, resize
from pixforge.singleimage.sample import draw, load_model


def diversity(samples: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    """The two pixel-space diversity scores of `samples` (N x 3 x H x W in [-1, 1], N >= 2)."""
    x = (samples + 1) / 2
    std = x.std(dim=0, unbiased=False).mean() / ((real + 1) / 2).std(unbiased=False).clamp(min=1e-8)
    flat = x.flatten(1).double()
    pairs = torch.cdist(flat, flat, p=1).triu(1)  # sum |x_i - x_j| for i < j, in one call (was O(N^2) Python)
    n = x.shape[0]
    pairwise = pairs.sum() / (n * (n - 1) / 2) / flat.shape[1]
    return {"diversity_pixel_std": float(std), "diversity_pairwise_l1": float(pairwise)}


def swd_patches(samples: torch.Tensor, real: torch.Tensor, seed: int = 0) -> float:
    swd = SWD(seed=seed)
    swd.update(real.expand(samples.shape[0], -1, -1, -1), real=True)
    swd.update(samples, real=False)
    return float(swd.compute()["swd"])


def sifid_features(net, images: torch.Tensor) -> torch.Tensor:
    """The 192-channel features of InceptionV3's Conv2d_4a_3x3, the convolution before the second max-pool
    (official SIFID's block 1 at dims 192), N x 192 x h x w."""
    x = net.Conv2d_2b_3x3(net.Conv2d_2a_3x3(net.Conv2d_1a_3x3(images)))
    return net.Conv2d_4a_3x3(net.Conv2d_3b_1x1(F.max_pool2d(x, kernel_size=3, stride=2)))


def check_sifid_size(size: tuple[int, int]) -> None:
    """SIFID's statistics need two feature positions or more: Conv2d_4a gives 1 per side from 19 px, 2 from 23."""
    if min(size) < 19 or max(size) < 23:
        raise PixforgeError(f"the {size[0]}x{size[1]} training size is too small for SIFID (InceptionV3's Conv2d_4a "
                            "needs at least 19 px on each side and 23 on one): leave out --inception")


def sifid_network(weights: str):
    """InceptionV3 from a torchvision (official SIFID's) or an FID weights file, told apart by the classifier's
    rows (1000 / 1008); the trunk SIFID uses is the same in both."""
    from pixforge.core.nets.inception import NUM_CLASSES, InceptionV3, load_into, load_weights

    state = load_weights(weights)
    rows = state["fc.weight"].shape[0] if "fc.weight" in state else None
    variant = {n: v for v, n in NUM_CLASSES.items()}.get(rows, "torchvision")
    net = InceptionV3(variant)
    load_into(net, state, weights)
    return net.eval().requires_grad_(False)


def sifid(samples: torch.Tensor, real: torch.Tensor, net) -> float:
    """Mean SIFID of `samples` (N x 3 x H x W in [-1, 1]) against the one image `real`."""
    with torch.no_grad():
        mu_r, sig_r = feature_stats(sifid_features(net, real)[0].flatten(1).T)
        scores = [frechet_distance(mu_r, sig_r, *feature_stats(sifid_features(net, fake[None])[0].flatten(1).T))
                  for fake in samples]
    return sum(scores) / len(scores)


def metrics(run: str, n: int = 16, seed: int = 0, inception: str | None = None, out: str | None = None,
            overwrite: bool = False) -> dict:
    """Score N samples (seed --seed) of the finished run RUN at the training size against its training image:
    pixel diversity, patch SWD, and SIFID with --inception WEIGHTS (InceptionV3: torchvision's ImageNet file, as
    official SIFID, or the FID file); writes RUN/metrics.json (or --out FILE.json; an existing one with --overwrite)
    and returns the scores."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise PixforgeError(f"--n must be an integer >= 2, got {n!r}")
    if inception is not None and not Path(inception).is_file():
        raise PixforgeError(f"--inception {inception} does not exist or is not a file")
    if out is not None:
        output_file(out, ".json", overwrite, inputs=[run, inception])
    net = sifid_network(inception) if inception is not None else None  # a bad file fails before any sampling
    model = load_model(run)
    _, config = load_release(run)
    size = tuple(model.sizes[-1])
    saved = json.loads((Path(run) / "config.json").read_text()) if (Path(run) / "config.json").is_file() else {}
    if "image" not in saved:
        raise PixforgeError(f"{run}/config.json does not name the training image")
    if out is not None:
        output_file(out, ".json", overwrite, inputs=[saved["image"]])
    if net is not None:
        check_sifid_size(size)
    real = resize(load_image(saved["image"]), size)
    samples = draw(model, n, seed=seed)
    scores: dict = {"method": config["method"], "num_samples": n, "size": list(size), **diversity(samples, real)}
    if num_levels(*size) > 0:
        scores["swd_patches"] = swd_patches(samples, real, seed)
    else:
        scores["swd_patches"] = None
        scores["swd_note"] = f"the {size[0]}x{size[1]} images are under core.swd's 16 px minimum"
    if net is not None:
        scores["sifid"] = sifid(samples, real, net)
        scores["sifid_weights"] = f"inception-v3-{net.variant}"
    else:
        scores["sifid"] = None
        scores["sifid_note"] = "pass --inception WEIGHTS (InceptionV3, torchvision's or the FID file) for SIFID"
    path = Path(out) if out else Path(run) / "metrics.json"
    write_text(path, json.dumps(scores, indent=2))
    return scores
