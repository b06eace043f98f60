"""Image files <-> uint8 numpy arrays (H x W x C, RGB), header probes, image folders and grids. No torch here.

Every reader names the file it could not read; every writer is atomic.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pixforge.export.atomic import atomic_path
from pixforge.export.errors import PixforgeError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
MODES = {"RGB": "RGB", "GRAY": "L", "RGBA": "RGBA"}  # read_image mode -> PIL mode
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError)  # what PIL raises on a bad file


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def parse_size(size) -> tuple[int, int]:
    """A `--size` flag: 256, "256x512" (height x width) or (256, 512) -> (H, W)."""
    parts = list(size) if isinstance(size, (list, tuple)) else str(size).lower().split("x")
    try:
        dims = [int(p) for p in parts]
    except (TypeError, ValueError):
        dims = []
    if len(dims) not in (1, 2) or min(dims) < 1:
        raise PixforgeError(f"--size must be an int or HxW, got {size!r}")
    return dims[0], dims[-1]


def list_images(path: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """The image files under a folder (sorted, recursive, hidden files skipped), or `[path]` for one file."""
    path = Path(path)
    if not path.exists():
        raise PixforgeError(f"{path} does not exist")
    if path.is_file():
        if not is_image_path(path):
            raise PixforgeError(f"{path} is not an image file (supported: {', '.join(IMAGE_SUFFIXES)})")
        return [path]
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in path.glob(pattern)
                   if p.is_file() and is_image_path(p)
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise PixforgeError(f"{path} holds no image files (looked for {', '.join(IMAGE_SUFFIXES)})")
    return files


def read_image(path: str | os.PathLike, mode: str = "RGB") -> np.ndarray:
    """Decode an image file to uint8 H x W x C (C = 3 for RGB, 1 for GRAY, 4 for RGBA)."""
    path = Path(path)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {tuple(MODES)}, got {mode!r}")
    if not path.is_file():
        raise PixforgeError(f"{path} does not exist or is not a file")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "F" and not np.isfinite(np.asarray(img)).all():  # float TIFFs: NaN would become 0
                raise PixforgeError(f"{path} holds NaN or infinite pixel values")
            arr = np.asarray(img.convert(MODES[mode]))
    except DECODE_ERRORS as err:
        raise _unreadable(path, err) from None
    return arr[..., None] if arr.ndim == 2 else arr


def probe_image(path: str | os.PathLike) -> tuple[int, int, bool]:
    """(H, W, has alpha) of an image file, read from its header; PNG files also get their checksums verified."""
    path = Path(path)
    if not path.is_file():
        raise PixforgeError(f"{path} does not exist or is not a file")
    try:
        with Image.open(path) as img:
            (w, h), has_alpha = img.size, "A" in img.getbands() or "transparency" in img.info
            img.verify()
    except DECODE_ERRORS as err:
        raise _unreadable(path, err) from None
    return h, w, has_alpha


def write_image(path: str | os.PathLike, image: np.ndarray, quality: int = 95) -> Path:
    """Atomically write a uint8 H x W x C (or H x W) array; the format follows the suffix."""
    path = Path(path)
    if not is_image_path(path):
        raise PixforgeError(f"{path}: unsupported image format (use one of {', '.join(IMAGE_SUFFIXES)})")
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"write_image expects uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    img = Image.fromarray(image)
    fmt = Image.registered_extensions()[path.suffix.lower()]
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt, **options)
    return path


def _unreadable(path: Path, err: BaseException) -> PixforgeError:
    return PixforgeError(f"{path} is not a readable image ({err.__class__.__name__}: {err})")


def make_grid(images: np.ndarray | list[np.ndarray], nrow: int | None = None, pad: int = 2,
              pad_value: int = 255) -> np.ndarray:
    """Tile N images of equal size (N x H x W x C uint8) into one grid image, `nrow` images per row."""
    batch = np.stack(list(images)) if isinstance(images, list) else np.asarray(images)
    if batch.ndim != 4:
        raise ValueError(f"make_grid expects N x H x W x C images, got shape {batch.shape}")
    n, h, w, c = batch.shape
    ncol = nrow or max(1, math.ceil(math.sqrt(n)))
    nrows = math.ceil(n / ncol)
    grid = np.full((pad + nrows * (h + pad), pad + ncol * (w + pad), c), pad_value, dtype=batch.dtype)
    for i in range(n):
        r, col = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y:y + h, x:x + w] = batch[i]
    return grid
