"""What `analyze` and `compare` read: a model name (`n` images generated), an image file or folder, or a folder
of npz / WebDataset tar shards (as `generate` writes them). From a set on disk, `n` images are drawn at random
without replacement (seeded), not the first `n`. Everything is checked before any image is analysed: the
path, that the set holds images, that npz shards hold uint8 H x W x 3 arrays."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np
import torch

from pixforge.export.errors import PixforgeError
from pixforge.export.images import list_images, read_image

TAR_IMAGES = ("png", "jpg", "jpeg")


@dataclass(frozen=True)
class Source:
    """A resolved source: `count` images of a model (0..count-1 of dataset `seed`) or the files / shard members to
    read (`items`: (file, index in an npz shard / member of a tar shard / None for an image file), in file order),
    drawn from the `available` images of a set on disk."""

    name: str
    count: int
    size: int
    seed: int
    model: object | None = None
    items: tuple[tuple[Path, int | str | None], ...] = ()
    available: int = 0

    def images(self) -> Iterator[np.ndarray]:
        """The uint8 H x W x 3 images."""
        if self.model is not None:
            for start in range(0, self.count, 8):
                indices = range(start, min(self.count, start + 8))
                yield from self.model.sample(self.seed, indices, self.size, torch.device("cpu"))
            return
        for file, group in groupby(self.items, key=lambda item: item[0]):
            keys = [key for _, key in group]
            if keys[0] is None:
                yield read_image(file)
            elif isinstance(keys[0], str):
                yield from _tar_images(file, keys)
            else:
                yield from _npz_images(file)[keys]


def open_source(source: str | os.PathLike, n: int, size: int, seed: int) -> Source:
    """Resolve SOURCE and draw `n` of its images at random with `seed` (all when it holds fewer; a model name: its
    images 0..n-1 of dataset `seed`). Raises `PixforgeError` on a bad source before any image is read."""
    from pixforge.spectra.models import NAMES, get

    key = str(source).lower().replace("_", "-")
    if key in NAMES and not os.path.exists(source):
        model = get(key)
        model.check_size(size)
        return Source(str(source), n, size, seed, model=model, available=n)
    path = Path(source)
    if not path.exists():
        raise PixforgeError(f"{path} does not exist (give an image folder, a shard folder or a model name)")
    items = _shard_items(path) if _shards(path) else [(file, None) for file in list_images(path)]
    available = len(items)
    if n < available:
        items = [items[i] for i in sorted(np.random.default_rng(seed).choice(available, n, replace=False))]
    return Source(str(source), len(items), size, seed, items=tuple(items), available=available)


def _shards(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix in (".npz", ".tar") else []
    return sorted(path.glob("shard-*.npz")) + sorted(path.glob("shard-*.tar"))


def _shard_items(path: Path) -> list[tuple[Path, int | str]]:
    items: list[tuple[Path, int | str]] = []
    for file in _shards(path):
        if file.suffix == ".npz":
            items += [(file, i) for i in range(_npz_count(file))]
        else:
            items += [(file, member) for member in _tar_members(file)]
    if not items:
        raise PixforgeError(f"{path} holds shards but no images")
    return items


def _npz_count(file: Path) -> int:
    """The number of images in an npz shard, from the header of its `images` array (checked: uint8,
    N x H x W x 3, N > 0) without reading the pixels."""
    try:
        with zipfile.ZipFile(file) as archive, archive.open("images.npy") as member:
            version = np.lib.format.read_magic(member)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(member)
    except KeyError:
        raise PixforgeError(f"{file} holds no 'images' array (an npz shard as `generate --format npz-shards` "
                            "writes)") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise PixforgeError(f"{file} is not a readable npz shard ({_reason(err)})") from None
    if dtype != np.uint8 or len(shape) != 4 or shape[-1] != 3:
        raise PixforgeError(f"{file} holds a {dtype} array of shape {shape}, not uint8 images "
                            "(N x H x W x 3, values 0..255)")
    if 0 in shape:
        raise PixforgeError(f"{file} holds no images (its array has shape {shape})")
    return shape[0]


def _npz_images(file: Path) -> np.ndarray:
    try:
        with np.load(file, allow_pickle=False) as data:
            return data["images"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise PixforgeError(f"{file} is not a readable npz shard ({_reason(err)})") from None


def _tar_members(file: Path) -> list[str]:
    try:
        with tarfile.open(file) as tar:
            return [m.name for m in tar.getmembers() if m.isfile() and m.name.rsplit(".", 1)[-1] in TAR_IMAGES]
    except (OSError, tarfile.TarError) as err:
        raise PixforgeError(f"{file} is not a readable tar shard ({_reason(err)})") from None


def _tar_images(file: Path, names: list[str]) -> Iterator[np.ndarray]:
    from PIL import Image

    with tarfile.open(file) as tar:
        for name in names:
            try:
                with Image.open(io.BytesIO(tar.extractfile(name).read())) as img:
                    image = np.asarray(img.convert("RGB"))
            except (OSError, tarfile.TarError, ValueError) as err:
                raise PixforgeError(f"{file}: {name} is not a readable image ({_reason(err)})") from None
            yield image



def _reason(err: Exception) -> str:
    """An exception as one short line (tarfile's errors list every compression it tried, one per line)."""
    first = str(err).strip().splitlines()[0].rstrip(":") if str(err).strip() else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__
