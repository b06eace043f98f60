"""Sliced Wasserstein distance on Laplacian-pyramid patches, the "SWD x1e3" of ProGAN (Karras et al. 2018, app. D).

Procedure, with ProGAN's defaults (``metrics/sliced_wasserstein.py`` of tkarras/progressive_growing_of_gans):

* Laplacian pyramid with the 5-tap binomial filter ``[1, 4, 6, 4, 1] / 16`` (separable), mirror boundary
  (``d c b | a b c d | c b a``, scipy's ``mode="mirror"``, torch's ``"reflect"``), as ``cv2.pyrDown`` /
  ``cv2.pyrUp``. One level per resolution from the full size down to 16 px: 32 px -> 2 levels, 64 -> 3, 1024 -> 7.
* Per level, 128 random 7x7 neighbourhoods per image (centres at least 3 px from the border), C x 7 x 7 each.
* Per level, each set of descriptors (real, generated) is normalised with its own per-channel mean and
  (population) standard deviation over all its descriptors and pixels, then flattened to C * 49 values.
* Sliced Wasserstein: 4 repeats of 128 random unit directions; project, sort each projection, mean absolute
  difference of the sorted values (the 1-D W1 between equal-size samples); the mean over repeats.
* Reported per level x 1e3 and the average over levels.

Differences from the reference: randomness comes from seeded `torch.Generator`s (not numpy's global state),
so numbers are reproducible but not bit-identical to ProGAN's; images need not be square or a power of two
(the levels count follows the smaller side; an odd size is upsampled to exactly the finer level's size); when
the real and generated sets hold different numbers of images, the larger is randomly subsampled.
Scale does not matter (normalisation is per channel and affine), so [-1, 1] floats and uint8 give the same numbers.
Not synchronised under torch.distributed: feed all images in one process.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pixforge.export.errors import PixforgeError

MIN_RESOLUTION = 16
NHOOD_SIZE = 7
NHOODS_PER_IMAGE = 128
DIR_REPEATS = 4
DIRS_PER_REPEAT = 128

BINOMIAL_5 = (1.0, 4.0, 6.0, 4.0, 1.0)  # / 16; the 2-D filter is its outer product (/ 256)


class SWDInputError(PixforgeError, ValueError):
    """Too few images, too small images or mismatched shapes for SWD."""


def num_levels(height: int, width: int | None = None, min_resolution: int = MIN_RESOLUTION) -> int:
    """ProGAN's levels count: halve the resolution (integer division) while it is >= ``min_resolution``.

    Uses the smaller of ``height`` and ``width``; 0 when the image is smaller than ``min_resolution``.
    """
    res = min(height, width if width is not None else height)
    count = 0
    while res >= min_resolution:
        count += 1
        res //= 2
    return count


def _to_float(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 4:
        raise SWDInputError(f"SWD expects N x C x H x W images, got shape {tuple(images.shape)}.")
    if images.dtype == torch.uint8:
        return images.float() / 127.5 - 1.0
    if not images.is_floating_point():
        raise SWDInputError(f"SWD expects float images in [-1, 1] or uint8, got {images.dtype}.")
    return images if images.dtype in (torch.float32, torch.float64) else images.float()


def _blur(x: torch.Tensor, axis_gain: float = 1.0, stride: int = 1) -> torch.Tensor:
    """Separable binomial blur of N x C x H x W with mirror padding; ``stride`` 2 keeps rows/cols 0, 2, 4, ...

    Each 1-D pass is scaled by ``axis_gain`` (the 2-D filter by its square).
    """
    n, c, h, w = x.shape
    taps = torch.tensor(BINOMIAL_5, dtype=x.dtype, device=x.device) * (axis_gain / 16.0)
    y = F.pad(x.reshape(n * c, 1, h, w), (2, 2, 2, 2), mode="reflect")
    y = F.conv2d(y, taps.view(1, 1, 5, 1), stride=(stride, 1))
    y = F.conv2d(y, taps.view(1, 1, 1, 5), stride=(1, stride))
    return y.reshape(n, c, y.shape[-2], y.shape[-1])


def pyr_down(images: torch.Tensor) -> torch.Tensor:
    """Blur with the 5x5 binomial filter (mirror boundary) and keep the even rows and columns (``cv2.pyrDown``).

    H x W -> ceil(H / 2) x ceil(W / 2).
    """
    if min(images.shape[-2:]) < 3:
        raise SWDInputError(f"pyr_down needs images of at least 3x3, got {tuple(images.shape)}.")
    return _blur(images, stride=2)


def pyr_up(images: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
    """Insert zeros between the pixels and blur with 4 x the binomial filter (mirror boundary), as ``cv2.pyrUp``.

    ``size`` (H, W) defaults to twice the input; H must be 2h or 2h - 1 (the sizes `pyr_down` maps to h).
    """
    n, c, h, w = images.shape
    out_h, out_w = (2 * h, 2 * w) if size is None else (int(size[0]), int(size[1]))
    if (out_h + 1) // 2 != h or (out_w + 1) // 2 != w:
        raise SWDInputError(f"pyr_up cannot map {h}x{w} to {out_h}x{out_w}: the size must be 2n or 2n - 1.")
    if min(out_h, out_w) < 3:
        raise SWDInputError(f"pyr_up needs an output of at least 3x3, got {out_h}x{out_w}.")
    up = images.new_zeros(n, c, out_h, out_w)
    up[:, :, ::2, ::2] = images
    return _blur(up, axis_gain=2.0)  # 4 x the 2-D filter


def gaussian_pyramid(images: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """``[images, pyr_down(images), pyr_down(pyr_down(images)), ...]``, ``levels`` tensors."""
    pyramid = [_to_float(images)]
    for _ in range(1, levels):
        pyramid.append(pyr_down(pyramid[-1]))
    return pyramid


def laplacian_pyramid(images: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """ProGAN's Laplacian pyramid: ``G_i - pyr_up(G_{i+1})`` for the finer levels, the coarsest Gaussian level last.

    Exactly invertible by `reconstruct_laplacian_pyramid` (up to float rounding).
    """
    gauss = gaussian_pyramid(images, levels)
    detail = [g - pyr_up(coarser, g.shape[-2:]) for g, coarser in zip(gauss[:-1], gauss[1:], strict=True)]
    return detail + [gauss[-1]]


def reconstruct_laplacian_pyramid(pyramid: Sequence[torch.Tensor]) -> torch.Tensor:
    """Invert `laplacian_pyramid`: from the coarsest level, upsample and add the next finer level."""
    image = pyramid[-1]
    for level in reversed(pyramid[:-1]):
        image = pyr_up(image, level.shape[-2:]) + level
    return image


def _patches(level: torch.Tensor, nhood_size: int, nhoods_per_image: int, draws: torch.Tensor) -> torch.Tensor:
    """``nhoods_per_image`` random nhood_size^2 patches per image (centres >= nhood_size // 2 from the border).

    ``draws``: N x 2 x nhoods_per_image random non-negative int64 (CPU), mapped to centre rows / columns
    ``r .. size - r - 1`` (uniform up to a 2^-40 bias), as ProGAN's ``randint(r, size - r)``.
    Returns (N * nhoods_per_image) x C x nhood_size x nhood_size, grouped by image, on the level's device.
    """
    n, c, h, w = level.shape
    r = nhood_size // 2
    if h < nhood_size or w < nhood_size:
        raise SWDInputError(f"a pyramid level of {h}x{w} is smaller than the {nhood_size}x{nhood_size} neighbourhood.")
    ys = (r + draws[:, 0] % (h - 2 * r)).reshape(-1)
    xs = (r + draws[:, 1] % (w - 2 * r)).reshape(-1)
    offsets = torch.arange(-r, r + 1)
    rows = (ys[:, None] + offsets).to(level.device)  # (N * nhoods) x k
    cols = (xs[:, None] + offsets).to(level.device)
    img = torch.arange(n, device=level.device).repeat_interleave(nhoods_per_image)
    chan = torch.arange(c, device=level.device)
    return level[img[:, None, None, None], chan[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]


def normalize_descriptors(desc: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Subtract the per-channel mean, divide by the per-channel (population) std, flatten to M x (C * k * k).

    ``desc``: M x C x k x k patches of one level (or a list of them, concatenated). Statistics are over all
    M descriptors and k x k pixels of each channel, as ProGAN's ``finalize_descriptors``. A constant channel
    (std 0) is left at 0 rather than divided by zero.
    """
    if not isinstance(desc, torch.Tensor):
        desc = torch.cat(list(desc))
    if desc.ndim != 4:
        raise SWDInputError(f"descriptors must be M x C x k x k, got shape {tuple(desc.shape)}.")
    desc = desc - desc.mean(dim=(0, 2, 3), keepdim=True)
    std = desc.std(dim=(0, 2, 3), keepdim=True, correction=0)
    desc = desc / torch.where(std > 0, std, torch.ones_like(std))
    return desc.reshape(desc.shape[0], -1)


def descriptors(images: torch.Tensor, nhood_size: int = NHOOD_SIZE, nhoods_per_image: int = NHOODS_PER_IMAGE,
                levels: int | None = None, generator: torch.Generator | None = None,
                normalize: bool = True) -> list[torch.Tensor]:
    """Laplacian-pyramid patch descriptors of an image batch, one tensor per level, finest first.

    ``images``: N x C x H x W, float in [-1, 1] or uint8. ``levels`` defaults to `num_levels` (down to 16 px).
    ``generator``: a CPU `torch.Generator` for the patch positions (None: the global RNG); they are drawn image
    by image, so splitting a set into batches (one generator) gives the same patches. With ``normalize``
    each level is normalised (`normalize_descriptors`) to (N * nhoods_per_image) x (C * nhood_size^2); without
    it the raw (N * nhoods_per_image) x C x nhood_size x nhood_size patches come back, to be accumulated over
    batches and normalised together. Tensors live on the images' device.
    """
    images = _to_float(images)
    h, w = images.shape[-2:]
    if levels is None:
        levels = num_levels(h, w)
        if levels == 0:
            raise SWDInputError(f"SWD needs images of at least {MIN_RESOLUTION}x{MIN_RESOLUTION}, got {h}x{w}.")
    if images.shape[0] == 0:
        raise SWDInputError("SWD got an empty image batch.")
    # drawn image by image (all levels of image 0, then image 1, ...) so batching does not change the positions
    draws = torch.randint(0, 2**62, (images.shape[0], levels, 2, nhoods_per_image), generator=generator)
    out = []
    for index, level in enumerate(laplacian_pyramid(images, levels)):
        patches = _patches(level, nhood_size, nhoods_per_image, draws[:, index])
        out.append(normalize_descriptors(patches) if normalize else patches)
    return out


def random_directions(dim: int, count: int, generator: torch.Generator | None = None,
                      device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``dim x count`` matrix of unit column vectors, isotropic (normalised standard normals), drawn on the CPU."""
    dirs = torch.randn(dim, count, generator=generator, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    return dirs.to(device=device, dtype=dtype)


def _sort_columns(x: torch.Tensor) -> torch.Tensor:
    """Sort each column; on the CPU through numpy, whose SIMD sort is about twice as fast as torch's here."""
    if x.device.type == "cpu":
        return torch.from_numpy(np.sort(x.numpy(), axis=0))
    return torch.sort(x, dim=0).values


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, dir_repeats: int = DIR_REPEATS,
                       dirs_per_repeat: int = DIRS_PER_REPEAT, generator: torch.Generator | None = None) -> float:
    """Sliced Wasserstein-1 distance between two equal-size descriptor sets ``a``, ``b`` (M x D).

    For each of ``dir_repeats`` repeats: ``dirs_per_repeat`` random unit directions (`random_directions`, drawn
    from ``generator`` in the order repeat by repeat), project both sets, sort each projection, and take the
    mean of ``|sorted(a @ d) - sorted(b @ d)|`` over samples and directions; return the mean over repeats.
    """
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] == 0:
        raise SWDInputError(f"sliced_wasserstein needs two non-empty M x D sets of the same shape, got "
                            f"{tuple(a.shape)} and {tuple(b.shape)}.")
    b = b.to(a.device, a.dtype)
    results = []
    for _ in range(dir_repeats):
        dirs = random_directions(a.shape[1], dirs_per_repeat, generator, a.device, a.dtype)
        proj_a, proj_b = _sort_columns(a @ dirs), _sort_columns(b @ dirs)
        results.append((proj_a - proj_b).abs().double().mean())
    return float(torch.stack(results).mean())


class SWD:
    """Multi-scale sliced Wasserstein distance between real and generated images (ProGAN's "SWD x1e3").

    ``update(images, real)`` extracts the patch descriptors right away and keeps only them (per image and level
    ``nhoods_per_image * C * nhood_size^2`` floats: 75 KB for RGB at the defaults), not the images.
    ``compute()`` returns ``{"swd": avg, "swd_levels": {"64": .., "32": .., "16": ..}, "num_real", "num_fake"}``,
    every distance x 1e3; the levels are keyed by their height in pixels, finest first. All batches must share
    one image size, and the real and generated images too.

    Deterministic given ``seed``: the real and the generated side each draw patch positions from their own
    generator seeded with ``seed`` (so identical image sets score exactly 0), and every ``compute()`` draws the
    projection directions afresh from ``seed``. ``reset()`` forgets the generated descriptors, and the real ones
    unless ``reset_real=False`` (compute the real side once in a training loop).
    """

    def __init__(self, nhood_size: int = NHOOD_SIZE, nhoods_per_image: int = NHOODS_PER_IMAGE,
                 dir_repeats: int = DIR_REPEATS, dirs_per_repeat: int = DIRS_PER_REPEAT, min_images: int = 2,
                 seed: int = 0, reset_real: bool = True) -> None:
        self.nhood_size, self.nhoods_per_image = nhood_size, nhoods_per_image
        self.dir_repeats, self.dirs_per_repeat = dir_repeats, dirs_per_repeat
        self.min_images, self.seed, self.reset_real = max(1, min_images), seed, reset_real
        self.device = torch.device("cpu")
        self._desc: dict[bool, list[list[torch.Tensor]]] = {True: [], False: []}  # side -> level -> batches
        self._gen: dict[bool, torch.Generator] = {}
        self._shape: dict[bool, tuple[int, ...]] = {}
        self.num_real = self.num_fake = 0
        self._reset_side(True)
        self._reset_side(False)

    def _reset_side(self, real: bool) -> None:
        self._desc[real] = []
        self._gen[real] = torch.Generator().manual_seed(self.seed)
        self._shape.pop(real, None)
        if real:
            self.num_real = 0
        else:
            self.num_fake = 0

    def to(self, device: str | torch.device) -> SWD:
        self.device = torch.device(device)
        self._desc = {side: [[d.to(self.device) for d in level] for level in levels]
                      for side, levels in self._desc.items()}
        return self

    def update(self, images: torch.Tensor, real: bool) -> None:
        """Add a batch of real or generated images: N x C x H x W, float in [-1, 1] or uint8, H and W >= 16."""
        if images.ndim != 4:
            raise SWDInputError(f"SWD expects N x C x H x W images, got shape {tuple(images.shape)}.")
        h, w = images.shape[-2:]
        if min(h, w) < MIN_RESOLUTION:
            raise SWDInputError(f"SWD needs images of at least {MIN_RESOLUTION}x{MIN_RESOLUTION}, got {h}x{w}.")
        shape = tuple(images.shape[1:])
        seen = self._shape.get(real) or self._shape.get(not real)
        if seen is not None and seen != shape:
            raise SWDInputError(f"SWD images must all be C x H x W = {seen}, got {shape}.")
        if images.shape[0] == 0:
            return
        with torch.no_grad():
            levels = descriptors(images.to(self.device), self.nhood_size, self.nhoods_per_image,
                                 generator=self._gen[real], normalize=False)
        if not self._desc[real]:
            self._desc[real] = [[] for _ in levels]
        for store, desc in zip(self._desc[real], levels, strict=True):
            store.append(desc.float())  # float32 whatever the input precision
        self._shape[real] = shape
        if real:
            self.num_real += images.shape[0]
        else:
            self.num_fake += images.shape[0]

    def reset(self) -> None:
        """Forget the generated descriptors, and the real ones unless ``reset_real=False``."""
        self._reset_side(False)
        if self.reset_real:
            self._reset_side(True)

    def compute(self) -> dict:
        if min(self.num_real, self.num_fake) < self.min_images:
            raise SWDInputError(f"SWD needs at least {self.min_images} real and {self.min_images} generated images, "
                                f"got {self.num_real} real and {self.num_fake} generated.")
        count = min(self.num_real, self.num_fake) * self.nhoods_per_image
        dir_gen = torch.Generator().manual_seed(self.seed)
        pick_gen = torch.Generator().manual_seed(self.seed + 1)
        dists: dict[str, float] = {}
        with torch.no_grad():
            for index, (real_level, fake_level) in enumerate(zip(self._desc[True], self._desc[False], strict=True)):
                height = str(self._level_height(index))
                sets = []
                for level in (real_level, fake_level):
                    desc = normalize_descriptors(level)
                    if desc.shape[0] > count:  # unequal set sizes: a random subset of the larger one
                        desc = desc[torch.randperm(desc.shape[0], generator=pick_gen)[:count].to(desc.device)]
                    sets.append(desc)
                dists[height] = 1e3 * sliced_wasserstein(sets[0], sets[1], self.dir_repeats, self.dirs_per_repeat,
                                                         dir_gen)
        return {"swd": sum(dists.values()) / len(dists), "swd_levels": dists,
                "num_real": self.num_real, "num_fake": self.num_fake}

    def _level_height(self, index: int) -> int:
        h = self._shape[True][1]
        for _ in range(index):
            h = (h + 1) // 2
        return h
