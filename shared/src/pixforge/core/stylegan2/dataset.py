"""StyleGAN2 training sets: an image folder or a zip in NVlabs' layout, and `make_dataset` that writes one.

The layout is NVlabs stylegan2-ada-pytorch's: images `00000/img00000000.png`, `00000/img00000001.png`, ...
(1000 per folder) and an optional `dataset.json` at the root, `{"labels": [[name, label], ...]}` or
`{"labels": null}`, where a label is an int class id (one-hot encoded to `label_dim` = max id + 1) or a list of
floats. Every image is square, a power of two, and of one size; greyscale images have 1 channel, colour ones 3.

Training order is a pure function of `(seed, global sample index)`: `TrainingSet[i]` takes any `i >= 0`, its
epoch `i // len` is shuffled by a permutation seeded from `(seed, epoch)`, so a resumed run that asks for the
sample indices where it stopped sees exactly the images it would have seen.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image

from pixforge.export.atomic import atomic_path, umask
from pixforge.export.errors import PixforgeError
from pixforge.export.images import DECODE_ERRORS, IMAGE_SUFFIXES

__all__ = ["TrainingSet", "make_dataset", "TRANSFORMS"]

TRANSFORMS = ("center-crop", "center-crop-wide", "resize", "pad")
LABELS_FILE = "dataset.json"
GREY_MODES = ("L", "1", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # what make_dataset keeps as 1 channel
READ_ERRORS = (*DECODE_ERRORS, zipfile.BadZipFile, EOFError)  # a damaged zip member fails its CRC while read
Label = int | list[float]


# ---------------------------------------------------------------------------------------------------------------
# Reading a folder or a zip


class _Source:
    """The image files of a folder (recursive, hidden entries skipped) or a zip, by relative POSIX name."""

    def __init__(self, path: Path, what: str = "dataset"):
        self.path, self.what = path, what
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid: int | None = None
        if not path.exists():
            raise PixforgeError(f"{what} {path} does not exist")
        if path.is_dir():
            self.kind = "dir"
            names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
        elif path.suffix.lower() == ".zip":
            self.kind = "zip"
            names = [n for n in self.zip().namelist() if not n.endswith("/")]
        else:
            raise PixforgeError(f"{what} {path} is neither a folder nor a .zip file")
        names = [n for n in names if not any(part.startswith(".") for part in PurePosixPath(n).parts)]
        self.has_labels_file = LABELS_FILE in names
        self.names = sorted(n for n in names if PurePosixPath(n).suffix.lower() in IMAGE_SUFFIXES)
        if not self.names:
            raise PixforgeError(f"{what} {path} holds no images (looked for {', '.join(IMAGE_SUFFIXES)})")

    def zip(self) -> zipfile.ZipFile:
        # one handle per process: DataLoader workers forked from a parent must not share its file offset
        if self._zip is None or self._zip_pid != os.getpid():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError, EOFError) as err:
                raise PixforgeError(f"{self.what} {self.path} is not a readable zip file ({err})") from None
            self._zip_pid = os.getpid()
        return self._zip

    def close(self) -> None:
        if self._zip is not None and self._zip_pid == os.getpid():
            self._zip.close()
        self._zip = None

    def __getstate__(self) -> dict:
        return dict(self.__dict__, _zip=None, _zip_pid=None)

    def where(self, name: str) -> str:
        return str(self.path / name) if self.kind == "dir" else f"{self.path}:{name}"

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[Any]:
        try:
            if self.kind == "dir":
                fh = open(self.path / name, "rb")
            else:
                fh = self.zip().open(name)  # streamed: probing a header reads only the header
        except (OSError, zipfile.BadZipFile, KeyError, EOFError, RuntimeError) as err:
            raise PixforgeError(f"{self.where(name)} cannot be read ({err})") from None
        with fh:
            yield fh

    def probe(self, name: str, verify: bool = False) -> tuple[int, int, str]:
        """(width, height, PIL mode) from the image header; `verify`: PNG checksums checked too (reads the file)."""
        with self.open(name) as fh:
            try:
                with Image.open(fh) as img:
                    found = img.width, img.height, _mode(img)
                    if verify:
                        img.verify()
                    return found
            except READ_ERRORS as err:
                raise _unreadable(self.where(name), err) from None

    def decode(self, name: str) -> Image.Image:
        with self.open(name) as fh:
            try:
                img = Image.open(fh)
                img.load()
                return img
            except READ_ERRORS as err:
                raise _unreadable(self.where(name), err) from None

    def labels(self) -> dict[str, Label] | None:
        """The `dataset.json` labels by image name, or None when there is no file or its labels are null."""
        if not self.has_labels_file:
            return None
        where = self.where(LABELS_FILE)
        with self.open(LABELS_FILE) as fh:
            try:
                data = json.loads(fh.read().decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as err:
                raise PixforgeError(f"{where} is not valid JSON ({err})") from None
        return _parse_labels(data, where)


def _mode(img: Image.Image) -> str:
    if img.mode == "P" and "transparency" in img.info:
        return "PA"
    return img.mode


def _unreadable(where: str, err: BaseException) -> PixforgeError:
    return PixforgeError(f"{where} is not a readable image ({err.__class__.__name__}: {err})")


def _parse_labels(data: Any, where: str) -> dict[str, Label] | None:
    if not isinstance(data, dict) or "labels" not in data:
        raise PixforgeError(f"{where} has no 'labels' entry (expected {{\"labels\": [[name, label], ...]}} or null)")
    entries = data["labels"]
    if entries is None:
        return None
    if not isinstance(entries, list) or not all(isinstance(e, list) and len(e) == 2 and isinstance(e[0], str)
                                                for e in entries):
        raise PixforgeError(f"{where}: 'labels' must be a list of [file name, label] pairs")
    labels = {name.replace("\\", "/"): label for name, label in entries}
    _check_label_values(labels.values(), where)
    return labels


def _check_label_values(values, where: str) -> None:
    values = list(values)
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    if ints:
        if any(v < 0 for v in values):
            raise PixforgeError(f"{where}: class labels must be ints >= 0")
        return
    vectors = all(isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
                  for v in values)
    if not vectors or len({len(v) for v in values}) > 1:
        raise PixforgeError(f"{where}: labels must be all int class ids or all float vectors of one length")


def _label_matrix(labels: Mapping[str, Label], names: list[str], where: str) -> np.ndarray:
    """float32 N x label_dim: one-hot class ids or the float vectors, in the order of `names`."""
    missing = [n for n in names if n not in labels]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise PixforgeError(f"{where} does not match the images: it has no label for {missing[0]}{more}")
    values = [labels[n] for n in names]
    if all(isinstance(v, int) for v in values):
        ids = np.asarray(values, dtype=np.int64)
        onehot = np.zeros((len(ids), int(ids.max()) + 1), dtype=np.float32)
        onehot[np.arange(len(ids)), ids] = 1
        return onehot
    return np.asarray(values, dtype=np.float32).reshape(len(values), -1)


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


# ---------------------------------------------------------------------------------------------------------------
# TrainingSet


class TrainingSet(torch.utils.data.Dataset):
    """An image folder or NVlabs zip as `(uint8 C x H x W, float32 label)` items; see the module docstring.

    `resolution`: required image size (an error names it when the images differ). `use_labels`: read
    `dataset.json` (an error if there are none). `mirror`: append an x-flipped copy of every image (NVlabs'
    `--mirror`). `max_size`: keep a random subset of that many images (chosen with `seed` as NVlabs does),
    before mirroring. `seed` also seeds the epoch permutations of `__getitem__`.
    """

    def __init__(self, path: str | os.PathLike, resolution: int | None = None, use_labels: bool = False,
                 mirror: bool = False, max_size: int | None = None, seed: int = 0):
        self.path = Path(path)
        if not isinstance(seed, int) or seed < 0:
            raise PixforgeError(f"dataset seed must be an int >= 0, got {seed!r}")
        self.seed = seed
        self._source = _Source(self.path)
        self.names = self._source.names
        self._num_channels, self._resolution = self._check_images(resolution)
        self._labels = np.zeros((len(self.names), 0), dtype=np.float32)
        if use_labels:
            labels = self._source.labels()
            if labels is None:
                raise PixforgeError(f"dataset {self.path} has no labels ({LABELS_FILE} missing or its labels null); "
                                    "train without conditioning or add labels")
            self._labels = _label_matrix(labels, self.names, self._source.where(LABELS_FILE))
        raw_idx = np.arange(len(self.names), dtype=np.int64)
        if max_size is not None:
            if max_size < 1:
                raise PixforgeError(f"dataset max_size must be at least 1, got {max_size}")
            if max_size < raw_idx.size:  # NVlabs' choice of the subset, so its runs can be matched
                np.random.RandomState(seed % 2 ** 32).shuffle(raw_idx)
                raw_idx = np.sort(raw_idx[:max_size])
        flips = np.zeros(raw_idx.size, dtype=bool)
        if mirror:
            raw_idx, flips = np.tile(raw_idx, 2), np.concatenate([flips, ~flips])
        self._raw_idx, self._flips = raw_idx, flips
        self._perm_epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def _check_images(self, resolution: int | None) -> tuple[int, int]:
        sizes: dict[tuple[int, int], str] = {}
        channels: dict[int, str] = {}
        for name in self.names:
            w, h, mode = self._source.probe(name)
            if mode not in ("L", "1", "RGB", "P"):
                raise PixforgeError(f"{self._source.where(name)} is a {mode} image; training images must be "
                                    "greyscale or RGB (run make_dataset, which converts them)")
            sizes.setdefault((w, h), name)
            channels.setdefault(1 if mode in ("L", "1") else 3, name)
            if len(sizes) > 1 or len(channels) > 1:
                break
        if len(sizes) > 1:
            (a, sa), (b, sb) = list(sizes.items())[:2]
            raise PixforgeError(f"dataset {self.path} mixes image sizes: {self._source.where(sa)} is {a[0]}x{a[1]} "
                                f"but {self._source.where(sb)} is {b[0]}x{b[1]}; run make_dataset with --res to "
                                "resize them all")
        if len(channels) > 1:
            (_, a), (_, b) = list(channels.items())[:2]
            raise PixforgeError(f"dataset {self.path} mixes greyscale and colour images ({self._source.where(a)} and "
                                f"{self._source.where(b)}); run make_dataset to convert them")
        (w, h), num_channels = next(iter(sizes)), next(iter(channels))
        if w != h:
            raise PixforgeError(f"dataset {self.path} holds {w}x{h} images, which are not square; run make_dataset "
                                "with --res to crop them")
        if not _is_power_of_two(w):
            raise PixforgeError(f"dataset {self.path} holds {w}x{h} images, not a power of two; run make_dataset "
                                "with --res to resize them")
        if resolution is not None and resolution != w:
            raise PixforgeError(f"dataset {self.path} holds {w}x{h} images, not the {resolution}x{resolution} asked "
                                f"for; run make_dataset with --res {resolution}")
        return num_channels, w

    # properties as NVlabs' Dataset
    @property
    def resolution(self) -> int:
        return self._resolution

    @property
    def num_channels(self) -> int:
        return self._num_channels

    @property
    def image_shape(self) -> list[int]:
        return [self._num_channels, self._resolution, self._resolution]

    @property
    def label_dim(self) -> int:
        return int(self._labels.shape[1])

    @property
    def label_shape(self) -> list[int]:
        return [self.label_dim]

    @property
    def has_labels(self) -> bool:
        return self.label_dim > 0

    def __len__(self) -> int:
        return int(self._raw_idx.size)

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of the items in `epoch`, a pure function of `(seed, epoch)` (cached for the current epoch)."""
        if epoch != self._perm_epoch:
            state = np.random.SeedSequence([self.seed, epoch]).generate_state(4)
            self._perm = np.random.RandomState(state).permutation(len(self))  # both frozen by NumPy's policy
            self._perm_epoch = epoch
        return self._perm

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The `index`-th training sample (any `index` >= 0): item `permutation(index // len)[index % len]`."""
        index = int(index)
        if index < 0:
            raise IndexError(f"TrainingSet index must be >= 0, got {index}")
        epoch, k = divmod(index, len(self))
        return self.item(int(self.permutation(epoch)[k]))

    def item(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The `k`-th image in file order (mirrored copies after the originals) and its label, unshuffled."""
        if not 0 <= k < len(self):
            raise IndexError(f"TrainingSet item {k} out of range [0, {len(self)})")
        name = self.names[self._raw_idx[k]]
        img = self._source.decode(name)
        img = img.convert("L" if self._num_channels == 1 else "RGB")
        array = np.asarray(img)
        array = array[..., None] if array.ndim == 2 else array
        if list(array.shape) != [self._resolution, self._resolution, self._num_channels]:
            raise PixforgeError(f"{self._source.where(name)} is {array.shape[1]}x{array.shape[0]}x{array.shape[2]}, "
                                f"not {self._resolution}x{self._resolution}x{self._num_channels} like the rest of "
                                "the dataset (did it change?)")
        if self._flips[k]:
            array = array[:, ::-1]
        image = torch.from_numpy(np.array(array.transpose(2, 0, 1), order="C"))  # a writable copy
        return image, self.label(k)

    def label(self, k: int) -> torch.Tensor:
        """The float32 label of item `k` (shape `[label_dim]`, empty without labels)."""
        return torch.from_numpy(self._labels[self._raw_idx[k]].copy())

    def random_labels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Labels of `n` random items (n x label_dim float32): what G is conditioned on, as NVlabs draws gen_c."""
        idx = torch.randint(len(self), (n,), generator=generator).numpy()
        return torch.from_numpy(self._labels[self._raw_idx[idx]].copy())

    def close(self) -> None:
        self._source.close()

    def __repr__(self) -> str:
        return (f"TrainingSet({str(self.path)!r}, {len(self)} items, {self.num_channels}x{self.resolution}x"
                f"{self.resolution}, label_dim={self.label_dim})")


# ---------------------------------------------------------------------------------------------------------------
# make_dataset


def _transform(img: Image.Image, transform: str, res: int, wide_height: int) -> Image.Image:
    """Crop / scale / pad `img` to res x res (LANCZOS, NVlabs' default filter)."""
    w, h = img.size
    lanczos = Image.Resampling.LANCZOS
    if transform == "resize":
        return img.resize((res, res), lanczos)
    if transform == "center-crop":
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        return img.crop((left, top, left + s, top + s)).resize((res, res), lanczos)
    canvas = Image.new(img.mode, (res, res))
    if transform == "pad":
        scale = res / max(w, h)
        cw, ch = max(1, round(w * scale)), max(1, round(h * scale))
        canvas.paste(img.resize((cw, ch), lanczos), ((res - cw) // 2, (res - ch) // 2))
        return canvas
    # center-crop-wide: the largest centred res:wide_height band, scaled to res x wide_height, letterboxed
    if w * wide_height <= h * res:  # taller than the band: keep the full width
        bw, bh = w, max(1, round(w * wide_height / res))
    else:
        bw, bh = max(1, round(h * res / wide_height)), h
    left, top = (w - bw) // 2, (h - bh) // 2
    band = img.crop((left, top, left + bw, top + bh)).resize((res, wide_height), lanczos)
    canvas.paste(band, (0, (res - wide_height) // 2))
    return canvas


def _to_mode(img: Image.Image, grey: bool) -> Image.Image:
    """Greyscale -> L, anything else -> RGB (alpha dropped); 16-bit greyscale scaled down, not clipped."""
    if grey:
        if img.mode.startswith("I;16") or img.mode in ("I", "F"):
            array = np.asarray(img, dtype=np.float64)
            peak = 65535.0 if img.mode.startswith("I;16") or array.max() > 255 else 255.0
            return Image.fromarray(np.clip(np.round(array * (255.0 / peak)), 0, 255).astype(np.uint8), "L")
        return img.convert("L")
    return img.convert("RGB")


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def make_dataset(source: str | os.PathLike, dest: str | os.PathLike, resolution: int, transform: str = "center-crop",
                 labels: str | os.PathLike | Mapping[str, Label] | None = None, max_images: int | None = None, *,
                 overwrite: bool = False, wide_height: int | None = None, progress: bool = True) -> Path:
    """Convert a folder or zip of images to a training set in NVlabs' layout; returns `dest`.

    `dest` ending in `.zip` gets an uncompressed zip (NVlabs' format), anything else a folder; either is written
    under a temporary name and renamed when complete, so a failure leaves nothing behind. Images are sorted by
    name (recursive, hidden entries skipped), the first `max_images` kept, and brought to `resolution` (a power of
    two) by `transform`:

        center-crop       the centred square, scaled (NVlabs' `center-crop`)
        center-crop-wide  the centred band of aspect resolution:wide_height (default 3/4 of it), scaled to that
                          size and letterboxed in black (NVlabs' `center-crop-wide` with --width/--height; unlike
                          theirs, larger images are cropped in proportion instead of being squashed)
        resize            the whole image scaled to a square, aspect not kept
        pad               the whole image scaled to fit, aspect kept, letterboxed in black

    A set of only greyscale images stays 1-channel, otherwise every image becomes RGB (alpha dropped). Labels come
    from `labels` (a `dataset.json`-style file or a {name: label} mapping, names relative to `source`) or else from
    the source's own `dataset.json`; every written image must then have one.
    """
    source, dest = Path(source), Path(dest)
    if transform not in TRANSFORMS:
        raise PixforgeError(f"unknown transform {transform!r}: choose from {', '.join(TRANSFORMS)}")
    if not isinstance(resolution, int) or resolution < 4 or not _is_power_of_two(resolution):
        raise PixforgeError(f"--res must be a power of two >= 4, got {resolution!r}")
    wide_height = resolution * 3 // 4 if wide_height is None else wide_height
    if not 1 <= wide_height <= resolution:
        raise PixforgeError(f"wide_height must be between 1 and the resolution {resolution}, got {wide_height}")
    if max_images is not None and max_images < 1:
        raise PixforgeError(f"--max-images must be at least 1, got {max_images}")
    src = _Source(source, "source")
    src_abs, dest_abs = source.resolve(), dest.resolve()
    if _within(dest_abs, src_abs) or (dest.exists() and _within(src_abs, dest_abs)):
        raise PixforgeError(f"destination {dest} must not be the source {source}, inside it, or hold it")
    if dest.exists() and not overwrite:
        raise PixforgeError(f"destination {dest} already exists; pass --overwrite to replace it")
    if dest.exists() and dest.is_dir() == (dest.suffix.lower() == ".zip"):
        raise PixforgeError(f"destination {dest} exists as a {'folder' if dest.is_dir() else 'file'} but a "
                            f"{'zip' if dest.suffix.lower() == '.zip' else 'folder'} is to be written; remove it first")
    names = src.names[:max_images] if max_images is not None else src.names
    if labels is None:
        label_map = src.labels()
    elif isinstance(labels, Mapping):
        label_map = {str(k).replace("\\", "/"): v for k, v in labels.items()}
        _check_label_values(label_map.values(), "labels")
    else:
        labels = Path(labels)
        try:
            label_map = _parse_labels(json.loads(labels.read_text("utf-8")), str(labels))
        except (OSError, ValueError, UnicodeDecodeError) as err:
            raise PixforgeError(f"labels file {labels} cannot be read ({err})") from None
    if label_map is not None:
        missing = [n for n in names if n not in label_map]
        if missing:
            raise PixforgeError(f"the labels of {source} have no entry for {src.where(missing[0])}"
                                + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    modes = [src.probe(n, verify=True)[2] for n in names]  # every image checked before anything is written
    grey = all(mode in GREY_MODES for mode in modes)

    def images() -> Iterator[tuple[str, bytes]]:
        from tqdm.auto import tqdm

        for idx, name in enumerate(tqdm(names, desc=f"make_dataset {dest.name}", unit="img", disable=not progress)):
            img = src.decode(name)
            try:
                out = _transform(_to_mode(img, grey), transform, resolution, wide_height)
            except DECODE_ERRORS as err:  # lazily decoded data can still fail here
                raise _unreadable(src.where(name), err) from None
            buf = io.BytesIO()
            out.save(buf, format="png", compress_level=0)  # uncompressed, as NVlabs: fast to decode in training
            yield f"{idx // 1000:05d}/img{idx:08d}.png", buf.getvalue()

    def meta(written: list[str]) -> str:
        entries = None if label_map is None else [[a, label_map[n]] for a, n in zip(written, names, strict=True)]
        return json.dumps({"labels": entries})

    try:
        if dest.suffix.lower() == ".zip":
            _write_zip(dest, images(), meta)
        else:
            _write_folder(dest, images(), meta)
    finally:
        src.close()
    return dest


def _write_zip(dest: Path, images: Iterator[tuple[str, bytes]], meta) -> None:
    with atomic_path(dest) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            written = []
            for name, data in images:
                zf.writestr(name, data)
                written.append(name)
            zf.writestr(LABELS_FILE, meta(written))


def _write_folder(dest: Path, images: Iterator[tuple[str, bytes]], meta) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        os.chmod(tmp, 0o777 & ~umask())
        written = []
        for name, data in images:
            (tmp / name).parent.mkdir(exist_ok=True)
            (tmp / name).write_bytes(data)
            written.append(name)
        (tmp / LABELS_FILE).write_text(meta(written), encoding="utf-8")
        if dest.exists():  # overwrite: move the old one aside first, so a crash leaves one of the two whole
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.replace(dest, old / "d")
            os.replace(tmp, dest)
            _remove(old)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
