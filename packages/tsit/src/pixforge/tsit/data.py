"""Training data from plain image folders: unpaired content/style sets, and paired label maps + images.

Every item is a pure function of (seed, global sample index): which files, where the crop sits, whether it is
flipped. So a run draws the same batches whether it was interrupted and resumed or spread over torchrun ranks.

* `UnpairedData` (arbitrary style transfer, multi-modal synthesis): a random content image and a random style
  image per item, each resized / cropped / flipped on its own. The style folder's first-level subfolders are its
  conditions (multi-modal synthesis: e.g. night/, snowy/, rainy/); images directly in it form one condition.
* `PairedData` (semantic synthesis): label maps (PNG, one class index per pixel) matched to images by relative path
  without extension; both get the same geometry (nearest resampling for labels).

Preprocessing: "fixed" resizes to the training size (the official setting for its style-transfer datasets);
"crop" resizes to cover `load_size` (shorter side of the crop box scaled up) and takes a random crop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixforge.core.io import image_to_tensor, list_images, read_image
from pixforge.export.errors import PixforgeError
from pixforge.export.images import DECODE_ERRORS, probe_image

PREPROCESS = ("fixed", "crop")


@dataclass(frozen=True)
class Geometry:
    """How one training item is cut: target size (H, W), load size, crop offsets as fractions, flip."""

    size: tuple[int, int]
    preprocess: str
    load_size: int
    top: float = 0.0
    left: float = 0.0
    flip: bool = False

    @classmethod
    def draw(cls, rng: np.random.Generator, size, preprocess, load_size, hflip: bool) -> Geometry:
        top, left = rng.random(), rng.random()
        flip = bool(hflip and rng.random() < 0.5)
        return cls(tuple(size), preprocess, load_size, top, left, flip)

    def apply(self, image: np.ndarray, resample: int) -> np.ndarray:
        th, tw = self.size
        if self.preprocess == "fixed":
            out = resize(image, (th, tw), resample)
        else:
            scale = self.load_size / min(th, tw)
            ch, cw = max(th, round(th * scale)), max(tw, round(tw * scale))
            h, w = image.shape[:2]
            cover = max(ch / h, cw / w)
            image = resize(image, (max(ch, round(h * cover)), max(cw, round(w * cover))), resample)
            h, w = image.shape[:2]
            y, x = int(self.top * (h - th + 1)), int(self.left * (w - tw + 1))
            out = image[y:y + th, x:x + tw]
        return np.ascontiguousarray(out[:, ::-1] if self.flip else out)


def resize(image: np.ndarray, hw: tuple[int, int], resample: int) -> np.ndarray:
    if image.shape[:2] == tuple(hw):
        return image
    squeeze = image.ndim == 3 and image.shape[2] == 1
    pil = Image.fromarray(image[..., 0] if squeeze else image)
    out = np.asarray(pil.resize((hw[1], hw[0]), resample))
    return out[..., None] if squeeze else out


def check_images(files: list[Path]) -> None:
    """Open every file's header (PNGs: checksums too) so an unreadable one fails before training starts."""
    for path in files:
        probe_image(path)


def style_conditions(root: str | Path) -> dict[str, list[Path]]:
    """{condition: files}: the style folder's first-level subfolders, or {"style": all files} without any."""
    root = Path(root)
    files = list_images(root)
    groups: dict[str, list[Path]] = {}
    for path in files:
        rel = path.relative_to(root) if root.is_dir() else Path(path.name)
        name = rel.parts[0] if len(rel.parts) > 1 else "."
        groups.setdefault(name, []).append(path)
    if "." in groups or len(groups) == 1:
        return {"style": files}
    return groups


class UnpairedData(torch.utils.data.Dataset):
    """Item i: {"content", "style"} C x H x W in [-1, 1], from random files of each set."""

    def __init__(self, content: list[Path], style: list[Path], size: tuple[int, int], *, seed: int = 0,
                 preprocess: str = "fixed", load_size: int | None = None, hflip: bool = True):
        if preprocess not in PREPROCESS:
            raise PixforgeError(f"--preprocess must be one of {', '.join(PREPROCESS)}, got {preprocess!r}")
        self.content, self.style, self.size, self.seed = list(content), list(style), tuple(size), seed
        self.preprocess, self.load_size, self.hflip = preprocess, load_size or max(size), hflip

    def __len__(self) -> int:
        return 2**62

    def _image(self, path: Path, rng: np.random.Generator) -> torch.Tensor:
        geo = Geometry.draw(rng, self.size, self.preprocess, self.load_size, self.hflip)
        return image_to_tensor(geo.apply(read_image(path), Image.Resampling.BICUBIC))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, index))
        content = self.content[int(rng.integers(len(self.content)))]
        style = self.style[int(rng.integers(len(self.style)))]
        return {"content": self._image(content, rng), "style": self._image(style, rng)}


def read_labels(path: Path, num_classes: int) -> np.ndarray:
    """A label map as uint8 H x W x 1 class indices (the pixel values of an L image, the palette indices of a P
    image); an index >= num_classes, or a colour image, is a PixforgeError naming the file."""
    try:
        with Image.open(path) as img:
            img.load()
            mode, labels = img.mode, np.asarray(img)
    except DECODE_ERRORS as err:
        raise PixforgeError(f"label map {path} is not a readable image ({err.__class__.__name__}: {err})") from None
    if mode not in ("L", "P", "I", "I;16") or labels.ndim != 2:
        raise PixforgeError(f"label map {path} is a {mode} image; label maps are one-channel PNGs of class indices "
                            "(mode L or P)")
    top = int(labels.max())
    if top >= num_classes or int(labels.min()) < 0:
        raise PixforgeError(f"label map {path} holds class id {top}, outside --num-classes {num_classes} "
                            f"(ids must be 0..{num_classes - 1})")
    if top > 255:
        raise PixforgeError(f"label map {path}: class ids above 255 are not supported")
    return labels.astype(np.uint8)[..., None]


def pair_files(labels_dir: str | Path, images_dir: str | Path) -> list[tuple[Path, Path]]:
    """(label map, image) pairs matched by relative path without extension; a file without partner is an error."""
    labels_dir, images_dir = Path(labels_dir), Path(images_dir)
    labels = {p.relative_to(labels_dir).with_suffix("").as_posix(): p for p in list_images(labels_dir)}
    images = {p.relative_to(images_dir).with_suffix("").as_posix(): p for p in list_images(images_dir)}
    unmatched = sorted(set(labels) ^ set(images))
    if unmatched:
        side = labels_dir if unmatched[0] in labels else images_dir
        raise PixforgeError(f"{side / unmatched[0]} has no partner in the other folder (label maps and images are "
                            f"paired by relative name; {len(unmatched)} unmatched)")
    return [(labels[k], images[k]) for k in sorted(labels)]


class PairedData(torch.utils.data.Dataset):
    """Item i: {"content": H x W int64 labels, "style": 3 x H x W image in [-1, 1]}, one geometry for both."""

    def __init__(self, pairs: list[tuple[Path, Path]], num_classes: int, size: tuple[int, int], *, seed: int = 0,
                 preprocess: str = "fixed", load_size: int | None = None, hflip: bool = True):
        if preprocess not in PREPROCESS:
            raise PixforgeError(f"--preprocess must be one of {', '.join(PREPROCESS)}, got {preprocess!r}")
        self.pairs, self.num_classes, self.size, self.seed = list(pairs), num_classes, tuple(size), seed
        self.preprocess, self.load_size, self.hflip = preprocess, load_size or max(size), hflip

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, index))
        label_path, image_path = self.pairs[int(rng.integers(len(self.pairs)))]
        geo = Geometry.draw(rng, self.size, self.preprocess, self.load_size, self.hflip)
        labels = geo.apply(read_labels(label_path, self.num_classes), Image.Resampling.NEAREST)
        image = geo.apply(read_image(image_path), Image.Resampling.BICUBIC)
        return {"content": torch.from_numpy(labels[..., 0].astype(np.int64)), "style": image_to_tensor(image)}


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """N x H x W class indices -> N x num_classes x H x W float one-hot maps."""
    return torch.nn.functional.one_hot(labels, num_classes).movedim(-1, 1).float()
