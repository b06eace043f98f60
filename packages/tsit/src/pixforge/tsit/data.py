"""Training data from plain image folders: unpaired content/style sets, and paired label maps + images.

Every item is a pure function of (seed, global sample index): which files, where the crop sits, whether it is
flipped. So a run draws the same batches whether it was interrupted and resumed or spread over torchrun ranks.

* `UnpairedData` (arbitrary style transfer, multi-modal synthesis): a random content image and a random style
  image per item, each resized / cropped / flipped on its own. The style folder's first-level subfolders are its
  conditions (multi-modal synthesis: e.g. night/, snowy/, rainy/); images directly in it form one condition.
* `PairedData` (semantic synthesis): label maps (PNG, one class index per pixel) matched to images by relative path
  without extension; both get the same geometry (nearest resampling for labels).

Preprocessing (`--preprocess`, the official `preprocess_mode`s that give one training size; --size is the crop,
HxW): "fixed" resizes to the size (the official setting for Cityscapes and the style-transfer sets);
"resize_and_crop" resizes to load_size x load_size then crops at a random place (ADE20K: 286 -> 256); "crop" crops
without resizing (zero fill where the image is smaller, as PIL's crop); "scale_width_and_crop" and
"scale_shortside_and_crop" scale the width / the shorter side to load_size (aspect kept) and crop.

Label maps follow SPADE's conventions: pixel value = class id, or the "don't care" id (`dontcare`, 255 in SPADE's
datasets; 0 for ADE20K's "unknown" as SPADE intends it, although the official ADE20K loader, whose postprocess has
no effect, feeds id k as class k) that becomes the extra class K (`pixforge.export.pipeline.label_classes`); an optional
instance map (same name in its own folder) adds one channel, its boundary map (official `get_edges`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pixforge.core.io import image_to_tensor, list_images, read_image
from pixforge.export.errors import PixforgeError
from pixforge.export.images import probe_image
from pixforge.export.pipeline import label_classes
from pixforge.export.pipeline import read_labels as read_label_ids

PREPROCESS = ("fixed", "resize_and_crop", "crop", "scale_width_and_crop", "scale_shortside_and_crop")


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
        h, w = image.shape[:2]
        if self.preprocess == "fixed":
            out = pil_resize(image, (th, tw), resample)
        else:
            load = self.load_size
            if self.preprocess == "resize_and_crop":
                image = pil_resize(image, (load, load), resample)
            elif self.preprocess == "scale_width_and_crop":
                image = pil_resize(image, (load * h // w, load), resample)
            elif self.preprocess == "scale_shortside_and_crop":
                long = int(load * max(h, w) / min(h, w))
                image = pil_resize(image, (long, load) if w <= h else (load, long), resample)
            out = crop(image, int(self.top * (max(0, image.shape[0] - th) + 1)),
                       int(self.left * (max(0, image.shape[1] - tw) + 1)), (th, tw))
        return np.ascontiguousarray(out[:, ::-1] if self.flip else out)


def crop(image: np.ndarray, y: int, x: int, hw: tuple[int, int]) -> np.ndarray:
    """image[y:y+h, x:x+w], zero-filled where it runs past the image (as PIL's crop)."""
    out = np.zeros((*hw, *image.shape[2:]), image.dtype)
    part = image[y:y + hw[0], x:x + hw[1]]
    out[: part.shape[0], : part.shape[1]] = part
    return out


def check_preprocess(preprocess: str, load_size: int | None, size: tuple[int, int]) -> None:
    if preprocess not in PREPROCESS:
        raise PixforgeError(f"--preprocess must be one of {', '.join(PREPROCESS)}, got {preprocess!r} (modes that "
                            "give images of varying size, such as scale_width or none, do not batch)")
    if preprocess == "resize_and_crop" and load_size is not None and load_size < max(size):
        raise PixforgeError(f"--load-size {load_size} is smaller than the {size[0]}x{size[1]} crop (--size)")


def pil_resize(image: np.ndarray, hw: tuple[int, int], resample: int) -> np.ndarray:
    """H x W x C pixels or ids resized to `hw` with PIL's filter `resample` (a one-channel array keeps its axis)."""
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
        check_preprocess(preprocess, load_size, size)
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


def read_label_map(path: Path, num_classes: int, dontcare: int | None = None) -> np.ndarray:
    """A label map as uint8 H x W x 1 class indices (0..num_classes, the last for `dontcare`); a colour image or an
    id outside the classes is a PixforgeError naming the file."""
    classes = label_classes(read_label_ids(path), num_classes, dontcare)
    if (classes < 0).any():
        ids = read_label_ids(path)
        bad = int(ids[classes < 0].flat[0])
        extra = f" and the don't-care id {dontcare}" if dontcare is not None else ""
        raise PixforgeError(f"label map {path} holds class id {bad}, outside --num-classes {num_classes} "
                            f"(ids must be 0..{num_classes - 1}{extra})")
    if num_classes > 255:
        raise PixforgeError(f"--num-classes {num_classes}: at most 255 classes are supported")
    return classes.astype(np.uint8)


def read_instances(path: Path) -> np.ndarray:
    """An instance map (any one-channel integer PNG, e.g. Cityscapes' *_instanceIds.png) as int32 H x W x 1."""
    return read_label_ids(path)


def edges(instances: torch.Tensor) -> torch.Tensor:
    """N x H x W instance ids (integer, or float ids as the exported graph takes them) -> N x 1 x H x W float
    boundary map: 1 where a pixel differs from its left, right, upper or lower neighbour (the official `get_edges`).
    Written without in-place updates, so that it exports to ONNX."""
    t = instances[:, None]
    dx = (t[..., :, 1:] != t[..., :, :-1]).float()
    dy = (t[..., 1:, :] != t[..., :-1, :]).float()
    horizontal = torch.maximum(F.pad(dx, (1, 0)), F.pad(dx, (0, 1)))
    vertical = torch.maximum(F.pad(dy, (0, 0, 1, 0)), F.pad(dy, (0, 0, 0, 1)))
    return torch.maximum(horizontal, vertical)


def semantics(classes: torch.Tensor, channels: int, instances: torch.Tensor | None = None) -> torch.Tensor:
    """The generator's content input: one-hot class maps (+ the instance boundary map)."""
    out = one_hot(classes, channels)
    return out if instances is None else torch.cat([out, edges(instances).to(out.dtype)], 1)


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
    """Item i: {"content": H x W int64 classes, "style": 3 x H x W image in [-1, 1] (, "instance": H x W int64
    instance ids)}, one geometry for all."""

    def __init__(self, pairs: list[tuple[Path, Path]], num_classes: int, size: tuple[int, int], *, seed: int = 0,
                 preprocess: str = "fixed", load_size: int | None = None, hflip: bool = True,
                 dontcare: int | None = None, instances: list[Path] | None = None):
        check_preprocess(preprocess, load_size, size)
        self.pairs, self.num_classes, self.size, self.seed = list(pairs), num_classes, tuple(size), seed
        self.preprocess, self.load_size, self.hflip = preprocess, load_size or max(size), hflip
        self.dontcare, self.instances = dontcare, instances

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, index))
        k = int(rng.integers(len(self.pairs)))
        label_path, image_path = self.pairs[k]
        geo = Geometry.draw(rng, self.size, self.preprocess, self.load_size, self.hflip)
        labels = geo.apply(read_label_map(label_path, self.num_classes, self.dontcare), Image.Resampling.NEAREST)
        image = geo.apply(read_image(image_path), Image.Resampling.BICUBIC)
        item = {"content": torch.from_numpy(labels[..., 0].astype(np.int64)), "style": image_to_tensor(image)}
        if self.instances is not None:
            inst = geo.apply(read_instances(self.instances[k]), Image.Resampling.NEAREST)
            item["instance"] = torch.from_numpy(inst[..., 0].astype(np.int64))
        return item


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """N x H x W class indices -> N x num_classes x H x W float one-hot maps."""
    return torch.nn.functional.one_hot(labels, num_classes).movedim(-1, 1).float()
