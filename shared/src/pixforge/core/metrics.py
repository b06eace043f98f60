"""Image-quality metrics: PSNR / SSIM (torchmetrics functional) and Fréchet / kernel distances with pluggable features.

* `psnr`, `ssim`: N x C x H x W batches, per image (``reduction="none"``) or their mean.
* `FrechetDistance`, `KernelDistance`: torchmetrics' `FrechetInceptionDistance` / `KernelInceptionDistance` driven
  by any feature network that maps an image batch to N x D. Results are named by the network's ``names``: ``fid`` /
  ``kid`` only for `InceptionFeatures` with the public FID weights' pool features (the published metric),
  ``fd_pfr18`` / ``kd_pfr18`` for the shipped procedural network (`ProceduralFeatures`, no download), ``fd`` / ``kd``
  for anything else (a small random net in tests), and they carry the network's label, so a number computed with
  other features is never mistaken for a comparable FID. Passing a module keeps torchmetrics away from
  torch-fidelity (only its int/str feature path imports it).
* `feature_stats` + `frechet_distance`: the closed form on raw features or saved (mu, sigma) statistics.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from torch import nn
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from pixforge.export.errors import PixforgeError

SSIM_RADIUS = 5  # the Gaussian window (sigma 1.5, truncated at 3.5 sigma) is 11x11


def _check_pair(pred: torch.Tensor, target: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[0] == 0:
        raise PixforgeError(
            f"{name} expects two N x C x H x W batches of the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}."
        )
    pred = pred if pred.is_floating_point() else pred.float()
    target = target if target.is_floating_point() else target.float()
    if not (torch.isfinite(pred).all() and torch.isfinite(target).all()):
        raise PixforgeError(f"{name} got NaN or infinite pixel values.")
    return pred, target


def _reduce(per_image: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_image
    if reduction == "mean":
        return per_image.mean()
    raise PixforgeError(f"unknown reduction {reduction!r}; choose 'mean' or 'none'.")


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, reduction: str = "mean",
         mask: torch.Tensor | None = None) -> torch.Tensor:
    """PSNR in dB, ``10 log10(data_range^2 / MSE)`` per image; "mean" averages the per-image values.

    ``data_range`` is the span of the pixel values (1 for [0, 1], 255 for uint8, 2 for [-1, 1]).
    ``mask`` (N x 1 x H x W, 0 / 1): the MSE over the pixels it marks (a face), all channels.
    Identical images give ``inf``.
    """
    pred, target = _check_pair(pred, target, "psnr")
    if mask is None:
        per_image = peak_signal_noise_ratio(pred, target, data_range=data_range, reduction="none", dim=(1, 2, 3))
    else:
        weight = _check_mask(mask, pred).expand_as(pred)
        mse = ((pred - target) ** 2 * weight).sum(dim=(1, 2, 3)) / weight.sum(dim=(1, 2, 3)).clamp_min(1)
        per_image = 10 * torch.log10(data_range**2 / mse)
    return _reduce(per_image, reduction)


def _check_mask(mask: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    n, _, h, w = images.shape
    if mask.shape != (n, 1, h, w):
        raise PixforgeError(f"the metric's mask must be {n} x 1 x {h} x {w}, got {tuple(mask.shape)}.")
    return mask.to(images.dtype)


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, reduction: str = "mean",
         mask: torch.Tensor | None = None) -> torch.Tensor:
    """SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03), per image or mean.

    Averaged over channels and over the pixels whose whole window lies inside the image, as the
    reference MATLAB code and ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)`` do. torchmetrics >= 1.5 also averages the 5-pixel border, computed on
    reflect-padded input, so its own reduction is not used here. ``mask`` (N x 1 x H x W, 0 / 1): the
    average over the marked pixels among those (a face).
    """
    pred, target = _check_pair(pred, target, "ssim")
    size = 2 * SSIM_RADIUS + 1
    if min(pred.shape[-2:]) < size:
        raise PixforgeError(f"ssim needs images of at least {size}x{size}, got {tuple(pred.shape)}.")
    _, ssim_map = structural_similarity_index_measure(
        pred, target, gaussian_kernel=True, sigma=1.5, data_range=data_range, reduction="none", return_full_image=True
    )
    r = SSIM_RADIUS
    ssim_map = ssim_map[..., r:-r, r:-r]
    if mask is None:
        return _reduce(ssim_map.mean(dim=(1, 2, 3)), reduction)
    weight = _check_mask(mask, pred)[..., r:-r, r:-r].expand_as(ssim_map)
    return _reduce((ssim_map * weight).sum(dim=(1, 2, 3)) / weight.sum(dim=(1, 2, 3)).clamp_min(1), reduction)


def feature_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance (float64) of an N x D feature matrix, N >= 2."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise PixforgeError(f"feature statistics need an N x D matrix with N >= 2, got {tuple(features.shape)}.")
    f = features.double()
    return f.mean(0), torch.cov(f.T)


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`` in float64.

    The trace of the matrix square root is taken from the eigenvalues of the symmetric PSD matrix
    ``S1^(1/2) S2 S1^(1/2)`` (same spectrum as ``S1 S2``), clamped at zero against round-off.
    """
    mu1, mu2, sigma1, sigma2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    vals, vecs = torch.linalg.eigh(sigma1)
    root1 = (vecs * vals.clamp(min=0).sqrt()) @ vecs.T
    inner = root1 @ sigma2 @ root1
    tr_sqrt = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * tr_sqrt)


class _Features(nn.Module):
    """Runs the user's feature net, checks its N x D float output and hands torchmetrics float64."""

    def __init__(self, net: nn.Module, num_features: int | None) -> None:
        super().__init__()
        self.net = net
        self.label = getattr(net, "label", type(net).__name__)
        self.names = getattr(net, "names", ("fd", "kd"))  # (Fréchet, kernel) result names
        num_features = num_features or getattr(net, "num_features", None)
        if not isinstance(num_features, int):
            raise PixforgeError(
                f"feature network {self.label} has no integer `num_features`; pass num_features=D explicitly."
            )
        self.num_features = num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.net(images)
        if features.ndim != 2 or features.shape != (images.shape[0], self.num_features):
            raise PixforgeError(
                f"feature network {self.label} returned shape {tuple(features.shape)}, expected "
                f"({images.shape[0]}, {self.num_features})."
            )
        if not torch.isfinite(features).all():
            raise PixforgeError(f"feature network {self.label} returned NaN or infinite features.")
        return features.double()


class _FeatureMetric:
    """Shared plumbing: the wrapped torchmetrics metric, device moves, counting, reset.

    ``num_real`` / ``num_fake`` in results count the images added in this process.
    """

    metric: FrechetInceptionDistance | KernelInceptionDistance

    def __init__(self) -> None:
        self.num_real = 0
        self.num_fake = 0

    @property
    def label(self) -> str:
        return self.metric.inception.label

    @property
    def names(self) -> tuple[str, str]:
        """What the (Fréchet, kernel) distance is called on these features: ("fid", "kid") only for Inception's."""
        return self.metric.inception.names

    def to(self, device: str | torch.device) -> _FeatureMetric:
        self.metric.to(device)
        return self

    def update(self, images: torch.Tensor, real: bool) -> None:
        """Add a batch of real or generated images, in whatever form the feature net takes.

        `InceptionFeatures` takes uint8 0..255 or float [0, 1], N x 3 x H x W, any size.
        """
        self.metric.update(images.to(self.metric.device), real=real)
        if real:
            self.num_real += images.shape[0]
        else:
            self.num_fake += images.shape[0]

    def reset(self) -> None:
        """Forget the fake images (and the real ones unless ``reset_real_features=False``)."""
        self.metric.reset()
        self.num_fake = 0
        if self.metric.reset_real_features:
            self.num_real = 0

    def _compute(self, minimum: int, what: str):
        """torchmetrics' compute, with its too-few-images errors turned into a `PixforgeError`.

        The check is left to torchmetrics because under torch.distributed it sees every rank's images.
        """
        try:
            return self.metric.compute()
        except (RuntimeError, ValueError) as err:
            if "sample" not in str(err):  # FID: "More than one sample ...", KID: "... number of samples"
                raise
            raise PixforgeError(
                f"{what} needs at least {minimum} real and {minimum} generated images, "
                f"got {self.num_real} real and {self.num_fake} generated in this process."
            ) from err


class FrechetDistance(_FeatureMetric):
    """Fréchet distance between feature Gaussians of real and generated images (torchmetrics' FID code).

    ``features``: ``InceptionFeatures("fid", weights=PATH)`` gives FID, comparable with papers; `ProceduralFeatures()`
    the no-download ``fd_pfr18``. ``compute()`` returns ``{NAME, "features", "num_real", "num_fake"}`` with NAME from
    ``names``. Works under torch.distributed: the feature sums are all-reduced by torchmetrics at ``compute()``
    (``sync=False``: this process's images only, for a metric that one rank computes alone).
    """

    def __init__(self, features: nn.Module, num_features: int | None = None, reset_real_features: bool = True,
                 sync: bool = True) -> None:
        super().__init__()
        self.metric = FrechetInceptionDistance(
            feature=_Features(features, num_features), reset_real_features=reset_real_features, sync_on_compute=sync
        )

    def compute(self) -> dict:
        value = float(self._compute(2, self.names[0]))
        return {self.names[0]: value, "features": self.label, "num_real": self.num_real, "num_fake": self.num_fake}


class KernelDistance(_FeatureMetric):
    """Kernel distance (KID on Inception features): unbiased MMD^2 with the cubic polynomial kernel (torchmetrics KID).

    ``(x.y / D + 1)^3``, averaged over ``subsets`` random subsets of ``subset_size`` real and generated
    images, drawn from a generator seeded with ``seed`` (the global RNG is left untouched).
    ``compute()`` returns ``{NAME_mean, NAME_std, "features", "num_real", "num_fake"}`` (NAME: ``kid``, ``kd_pfr18``,
    ``kd``, from the features' ``names``). All
    features are kept in memory (N x D float64).
    """

    def __init__(
        self,
        features: nn.Module,
        num_features: int | None = None,
        subsets: int = 100,
        subset_size: int = 1000,
        seed: int = 0,
        reset_real_features: bool = True,
        sync: bool = True,
    ) -> None:
        super().__init__()
        self.seed = seed
        with warnings.catch_warnings():  # "will save all extracted features in buffer": documented above
            warnings.filterwarnings("ignore", message=".*save all extracted features.*")
            self.metric = KernelInceptionDistance(
                feature=_Features(features, num_features),
                subsets=subsets,
                subset_size=subset_size,
                reset_real_features=reset_real_features,
                sync_on_compute=sync,
            )

    def compute(self) -> dict:
        with torch.random.fork_rng(devices=[]):  # torchmetrics draws the subsets on the CPU generator
            torch.default_generator.manual_seed(self.seed)  # torch.manual_seed would also reseed every GPU's RNG
            mean, std = self._compute(self.metric.subset_size,
                                      f"{self.names[1]} with subset_size={self.metric.subset_size}")
        return {
            f"{self.names[1]}_mean": float(mean),
            f"{self.names[1]}_std": float(std),
            "features": self.label,
            "num_real": self.num_real,
            "num_fake": self.num_fake,
        }


def folder_batches(folder: str | os.PathLike, batch_size: int = 32):
    """uint8 N x 3 x H x W batches of a folder's images (recursive); consecutive same-size images share a batch."""
    from pixforge.core.io import list_images, read_image

    batch: list[np.ndarray] = []
    for path in list_images(folder):
        image = read_image(path)
        if batch and (image.shape != batch[0].shape or len(batch) == batch_size):
            yield torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2)
            batch = []
        batch.append(image)
    if batch:
        yield torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2)


def folder_scores(real: str | os.PathLike, fake: str | os.PathLike, features: nn.Module, *, kid: bool = False,
                  kid_subset_size: int = 1000, batch_size: int = 32,
                  device: str | torch.device = "cpu") -> dict:
    """Fréchet (and kernel) distance between two image folders with the given feature network (images in uint8)."""
    metrics = [FrechetDistance(features)] + ([KernelDistance(features, subset_size=kid_subset_size)] if kid else [])
    for metric in metrics:
        metric.to(device)
    for folder, is_real in ((real, True), (fake, False)):
        with torch.no_grad():
            for batch in folder_batches(folder, batch_size):
                for metric in metrics:
                    metric.update(batch, real=is_real)
    result: dict = {}
    for metric in metrics:
        result.update(metric.compute())
    return result
