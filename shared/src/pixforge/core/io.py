"""Images and videos on the torch side: uint8 arrays <-> float tensors, sample grids, datasets.

The torch-free readers and writers of `pixforge.export` are re-exported here, so tools import all their
I/O from `pixforge.core.io`. Tensors are float, CHW (or NCHW), RGB, with values in `value_range`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixforge.export.errors import PixforgeError
from pixforge.export.images import list_images, make_grid, read_image, write_image
from pixforge.export.video import VideoInfo, VideoReader, VideoWriter, probe_video

__all__ = ["image_to_tensor", "tensor_to_image", "save_grid", "ImageFolder", "embedded_images", "RandomCrops",
           "EMBEDDED_IMAGES", "read_image", "write_image", "list_images", "make_grid",
           "VideoReader", "VideoWriter", "probe_video", "VideoInfo"]

# scikit-image's bundled photos and textures (no download needed); the order is part of the API
EMBEDDED_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
                   "brick", "grass", "gravel", "camera", "moon", "coins")

Range = tuple[float, float]


def image_to_tensor(image: np.ndarray, value_range: Range = (-1.0, 1.0)) -> torch.Tensor:
    """uint8 H x W x C (or N x H x W x C) -> float32 C x H x W (or N x C x H x W) in `value_range`."""
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (3, 4):
        raise ValueError(f"image_to_tensor expects uint8 HWC or NHWC, got {array.dtype} {array.shape}")
    lo, hi = value_range
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).movedim(-1, -3)
    return (tensor * ((hi - lo) / 255.0) + lo).contiguous()


def tensor_to_image(tensor: torch.Tensor, value_range: Range = (-1.0, 1.0)) -> np.ndarray:
    """float C x H x W (or N x C x H x W) in `value_range` -> uint8 H x W x C (or N x H x W x C), clamped, rounded."""
    if tensor.ndim not in (3, 4):
        raise ValueError(f"tensor_to_image expects CHW or NCHW, got shape {tuple(tensor.shape)}")
    tensor = tensor.detach().float().cpu()
    if torch.isnan(tensor).any():
        raise PixforgeError("tensor_to_image: the tensor holds NaN values (did training diverge?)")
    lo, hi = value_range
    pixels = ((tensor - lo) * (255.0 / (hi - lo))).clamp(0, 255).round().to(torch.uint8)
    return pixels.movedim(-3, -1).contiguous().numpy()


def save_grid(batch: torch.Tensor, path: str | os.PathLike, nrow: int | None = None,
              value_range: Range = (-1.0, 1.0), pad: int = 2) -> Path:
    """Atomically write a batch (N x C x H x W) as one grid image, `nrow` images per row."""
    if batch.ndim != 4:
        raise ValueError(f"save_grid expects N x C x H x W, got shape {tuple(batch.shape)}")
    return write_image(path, make_grid(tensor_to_image(batch, value_range), nrow=nrow, pad=pad))


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    """`size` as (height, width)."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class ImageFolder(torch.utils.data.Dataset):
    """The images under `root` (recursive, sorted, hidden files skipped) as C x H x W float tensors.

    Each image is resized (bicubic, antialiased) so that it just covers `size` (an int or (height, width)),
    then cropped to it: centred, or at a random place with `crop="random"`; `hflip` flips half of them at random.
    Unreadable files raise a `PixforgeError` naming them when they are loaded.
    """

    def __init__(self, root: str | os.PathLike, size: int | Sequence[int], *, crop: str = "center",
                 hflip: bool = False, value_range: Range = (-1.0, 1.0), recursive: bool = True):
        if crop not in ("center", "random"):
            raise ValueError(f"crop must be 'center' or 'random', got {crop!r}")
        self.files = list_images(root, recursive=recursive)
        self.size = _pair(size)
        self.crop, self.hflip, self.value_range = crop, hflip, value_range

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = _resize_to_cover(read_image(self.files[index]), self.size)
        (h, w), (th, tw) = image.shape[:2], self.size
        if self.crop == "random":
            top, left = (int(torch.randint(0, n - t + 1, ())) for n, t in ((h, th), (w, tw)))
        else:
            top, left = (h - th) // 2, (w - tw) // 2
        image = image[top:top + th, left:left + tw]
        if self.hflip and torch.rand(()) < 0.5:
            image = image[:, ::-1]
        return image_to_tensor(image, self.value_range)


def _resize_to_cover(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale `image` (keeping its aspect ratio) to the smallest size that covers `size` = (height, width)."""
    (h, w), (th, tw) = image.shape[:2], size
    scale = max(th / h, tw / w)
    new_h, new_w = max(th, round(h * scale)), max(tw, round(w * scale))
    if (new_h, new_w) == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BICUBIC))


def embedded_images(names: Sequence[str] | None = None) -> list[np.ndarray]:
    """scikit-image's bundled photos (`EMBEDDED_IMAGES` by default) as uint8 H x W x 3 RGB; gray ones get 3 channels."""
    try:
        from skimage import data
    except ImportError:
        raise PixforgeError("embedded images need scikit-image: pip install 'pixforge-core[demo]'") from None
    names = EMBEDDED_IMAGES if names is None else list(names)
    unknown = [n for n in names if n not in EMBEDDED_IMAGES]
    if unknown:
        raise PixforgeError(f"unknown embedded image(s) {', '.join(unknown)}: choose from {', '.join(EMBEDDED_IMAGES)}")
    images = [np.asarray(getattr(data, name)(), dtype=np.uint8) for name in names]
    return [np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img for img in images]


class RandomCrops(torch.utils.data.Dataset):
    """`length` random crops (`size`, an int or (height, width)) of `images`, with random horizontal flips.

    Item `i` is a pure function of `(seed, i)`: which image, where, and whether flipped. Returns C x H x W floats.
    """

    def __init__(self, images: Sequence[np.ndarray] | Mapping[str, np.ndarray], size: int | Sequence[int],
                 length: int, seed: int = 0, *, hflip: bool = True, value_range: Range = (-1.0, 1.0)):
        self.images = list(images.values()) if isinstance(images, Mapping) else list(images)
        self.size = _pair(size)
        if not self.images:
            raise PixforgeError("RandomCrops needs at least one image")
        for i, img in enumerate(self.images):
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"RandomCrops: image {i} must be uint8 H x W x 3, got {img.dtype} {img.shape}")
            if img.shape[0] < self.size[0] or img.shape[1] < self.size[1]:
                raise PixforgeError(f"RandomCrops: image {i} is {img.shape[1]}x{img.shape[0]}, smaller than the "
                                    f"crop size {self.size[1]}x{self.size[0]}")
        self.length, self.seed, self.hflip, self.value_range = length, seed, hflip, value_range

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.length:
            raise IndexError(f"RandomCrops index {index} out of range [0, {self.length})")
        rng = np.random.default_rng((self.seed, index))
        image = self.images[rng.integers(len(self.images))]
        (h, w), (th, tw) = image.shape[:2], self.size
        top, left = rng.integers(h - th + 1), rng.integers(w - tw + 1)
        crop = image[top:top + th, left:left + tw]
        if self.hflip and rng.random() < 0.5:
            crop = crop[:, ::-1]
        return image_to_tensor(crop, self.value_range)
