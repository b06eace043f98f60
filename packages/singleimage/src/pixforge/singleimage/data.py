"""The training image: reading, checks, resizing, and the SinGAN scale pyramid (the official size rule)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from pixforge.core.io import image_to_tensor, read_image
from pixforge.export.errors import PixforgeError
from pixforge.export.sizing import check_pixels


def load_image(path: str | Path) -> torch.Tensor:
    """The image file as a 1 x 3 x H x W float tensor in [-1, 1]; an unreadable file is a PixforgeError."""
    path = Path(path)
    if not path.is_file():
        raise PixforgeError(f"image {path} does not exist or is not a file")
    return image_to_tensor(read_image(path, "RGB"))[None]


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize to `size` (H, W); antialiased when shrinking (MATLAB imresize's behaviour, which the
    official SinGAN code uses)."""
    size = (int(size[0]), int(size[1]))
    if tuple(image.shape[-2:]) == size:
        return image
    shrink = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    return F.interpolate(image, size=size, mode="bicubic", align_corners=False, antialias=shrink)


def parse_size(size: str | int | tuple | list | None, what: str = "--size") -> tuple[int, int] | None:
    """'HxW', 'H,W', an int (square) or a pair -> (H, W), at most `pixforge.export.sizing.MAX_PIXELS` in area;
    None stays None."""
    if size is None:
        return None
    try:
        if isinstance(size, (tuple, list)):
            h, w = (int(v) for v in size)
        elif isinstance(size, int) and not isinstance(size, bool):
            h = w = size
        else:
            text = str(size).lower().replace(",", "x")
            parts = text.split("x")
            h, w = (int(parts[0]), int(parts[1])) if len(parts) == 2 else (int(parts[0]),) * 2
    except (ValueError, TypeError):
        raise PixforgeError(f"{what} must be HxW (e.g. 64x96) or one integer, got {size!r}") from None
    if h < 1 or w < 1:
        raise PixforgeError(f"{what} must be positive, got {size!r}")
    return check_pixels((h, w), what)


def ceil_scale(size: int, scale: float) -> int:
    """The official imresize output size: ceil(size * scale), in float64 exactly as the official code (no tolerance:
    the sizes match the official pyramid bit for bit, float noise included)."""
    return int(math.ceil(size * scale))


def singan_scales(height: int, width: int, min_size: int = 25, max_size: int = 250,
                  scale_factor: float = 0.75) -> tuple[list[tuple[int, int]], float]:
    """The official SinGAN pyramid (`adjust_scales2image` + `creat_reals_pyramid`): the (H, W) of every scale,
    coarsest first, and the scale factor actually used.

        num_scales = ceil(log_r(min_size / min(H, W))) + 1,  r = scale_factor (the initial one)
        stop_scale = num_scales - ceil(log_r(min(max_size, max(H, W)) / max(H, W)))
        the image is first resized by scale1 = min(max_size / max(H, W), 1), then
        r' = (min_size / min(H', W')) ** (1 / stop_scale) and scale i has size ceil(H' * r' ** (stop_scale - i)).

    Raises PixforgeError when the image is too small for the rule (its shorter side, after the max_size
    resize, must be at least min_size) or the rule gives a single scale.
    """
    if min(height, width) < 1:
        raise PixforgeError(f"image size {height}x{width} is empty")
    scale1 = min(max_size / max(height, width), 1.0)
    h1, w1 = ceil_scale(height, scale1), ceil_scale(width, scale1)
    if min(h1, w1) < min_size:
        need = min_size if scale1 == 1 else math.ceil(min_size * max(height, width) / max_size)
        raise PixforgeError(f"the image ({height}x{width}) is too small: its shorter side must be at least {need} px "
                            f"(--min-size {min_size} after resizing the longer side to at most --max-size {max_size})")
    num_scales = math.ceil(math.log(min_size / min(height, width), scale_factor)) + 1
    scale2stop = math.ceil(math.log(min(max_size, max(height, width)) / max(height, width), scale_factor))
    stop_scale = num_scales - scale2stop
    if stop_scale < 1:
        raise PixforgeError(f"the image ({height}x{width}) gives a single scale with --min-size {min_size} and "
                            f"--max-size {max_size}: make --min-size smaller or the image larger")
    factor = math.pow(min_size / min(h1, w1), 1 / stop_scale)
    sizes = [(ceil_scale(h1, math.pow(factor, stop_scale - i)), ceil_scale(w1, math.pow(factor, stop_scale - i)))
             for i in range(stop_scale + 1)]
    return sizes, factor


def singan_pyramid(image: torch.Tensor, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """The image resized to every pyramid size (the finest from the original, as official: each scale is resized
    from the max_size-resized image)."""
    top = resize(image, sizes[-1])
    return [resize(top, s) for s in sizes[:-1]] + [top]
