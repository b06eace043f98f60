"""Deterministic synthetic-dataset generation at scale: shards, workers, resumable atomic files, a manifest.

An *image model* is any picklable object with

* `name: str`, `batch: int` (indices generated together; 1 = every image on its own),
* `params() -> dict` (what the manifest records), `check_size(size)` (raise `PixforgeError` naming the
  supported sizes),
* `sample(seed, indices, size, device) -> uint8 array N x H x W x 3` where image `i` is a pure function of
  `(seed, i, size, params)` on a given device type.

`generate(model, out, n=..., size=...)` writes images `0..n-1` under `out` as png / jpg files
(`out/00001000/00001234.png`, 1,000 per folder), npz shards or WebDataset tar shards (`out/shard-000001.npz`
/ `.tar`, `per_shard` images each), skips what already exists (resume), splits the work with `--shard K/N`
(any scheduler can run the N parts, in any order, on any machines) and writes `out/manifest.json`.
Batches are aligned to multiples of `model.batch` (a batch always holds the same indices), so the bytes do
not depend on how the work was split. `GeneratedDataset` is the same model as an on-the-fly torch Dataset,
`read_images` reads any of the formats back.
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import tarfile
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from pixforge.core.loop import progress
from pixforge.core.runtime import resolve_device
from pixforge.export.atomic import atomic_path, write_bytes, write_text
from pixforge.export.errors import PixforgeError
from pixforge.export.images import list_images, read_image
from pixforge.export.options import whole_number
from pixforge.export.shard import parse_shard, shard_indices

FORMATS = ("png", "jpg", "npz-shards", "webdataset-tar")
MANIFEST = "manifest.json"
PER_FOLDER = 1000  # image files per sub-folder
MATCHED_KEYS = ("model", "params", "seed", "count", "size", "format", "per_shard", "batch", "encoding")


class ImageModel(Protocol):
    name: str
    batch: int

    def params(self) -> dict: ...

    def check_size(self, size: int) -> None: ...

    def sample(self, seed: int, indices: Sequence[int], size: int, device: torch.device) -> np.ndarray: ...


def rng(seed: int, index: int, *stream: int) -> np.random.Generator:
    """The random generator of item `index` (and optional sub-`stream`) of dataset `seed`: independent of order."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(index), *stream])))


def sample_aligned(model: ImageModel, seed: int, indices: Sequence[int], size: int,
                   device: torch.device) -> dict[int, np.ndarray]:
    """Images of `indices`, computed in whole batches `[k*batch, (k+1)*batch)` so that batch contents never vary."""
    batch = max(1, int(model.batch))
    wanted = sorted(set(int(i) for i in indices))
    images: dict[int, np.ndarray] = {}
    blocks = sorted({i // batch for i in wanted})
    for block in blocks:
        block_indices = list(range(block * batch, (block + 1) * batch)) if batch > 1 else [block]
        out = model.sample(seed, block_indices, size, device)
        for i, img in zip(block_indices, out, strict=True):
            images[i] = img
    return {i: images[i] for i in wanted}


def encode(image: np.ndarray, ext: str, quality: int = 95, compress_level: int = 1) -> bytes:
    """PNG (zlib level `compress_level`) or JPEG (`quality`, 4:4:4) bytes of a uint8 H x W x 3 image."""
    buf = io.BytesIO()
    img = Image.fromarray(np.ascontiguousarray(image))
    if ext == "png":
        img.save(buf, format="PNG", compress_level=compress_level)
    elif ext == "jpg":
        img.save(buf, format="JPEG", quality=quality, subsampling=0)
    else:
        raise ValueError(f"unknown image encoding {ext!r}")
    return buf.getvalue()


def image_path(out: Path, index: int, ext: str) -> Path:
    return out / f"{index // PER_FOLDER * PER_FOLDER:08d}" / f"{index:08d}.{ext}"


def shard_path(out: Path, shard: int, fmt: str) -> Path:
    return out / f"shard-{shard:06d}.{'npz' if fmt == 'npz-shards' else 'tar'}"


class _Plan:
    """Which images make up work unit `u` and where they go; picklable for worker processes."""

    def __init__(self, out: Path, n: int, fmt: str, per_shard: int, encoding: str, quality: int, batch: int):
        self.out, self.n, self.fmt, self.encoding, self.quality = out, n, fmt, encoding, quality
        batch = max(1, batch)  # files: units of >= 100 images holding whole batches
        self.per_unit = per_shard if fmt in ("npz-shards", "webdataset-tar") else batch * -(-100 // batch)
        self.units = -(-n // self.per_unit)

    def indices(self, unit: int) -> range:
        return range(unit * self.per_unit, min(self.n, (unit + 1) * self.per_unit))

    def missing(self, unit: int) -> list[int]:
        if self.fmt in ("png", "jpg"):
            return [i for i in self.indices(unit) if not image_path(self.out, i, self.fmt).exists()]
        return [] if shard_path(self.out, unit, self.fmt).exists() else list(self.indices(unit))

    def write(self, unit: int, images: dict[int, np.ndarray]) -> int:
        if self.fmt in ("png", "jpg"):
            for i, img in images.items():
                write_bytes(image_path(self.out, i, self.fmt), encode(img, self.fmt, self.quality))
        elif self.fmt == "npz-shards":
            keys = sorted(images)
            with atomic_path(shard_path(self.out, unit, self.fmt)) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, images=np.stack([images[i] for i in keys]), indices=np.asarray(keys, dtype=np.int64))
        else:
            with atomic_path(shard_path(self.out, unit, self.fmt)) as tmp, tarfile.open(tmp, "w") as tar:
                for i in sorted(images):
                    data = encode(images[i], self.encoding, self.quality)
                    info = tarfile.TarInfo(f"{i:08d}.{self.encoding}")
                    info.size, info.mtime, info.mode = len(data), 0, 0o644
                    tar.addfile(info, io.BytesIO(data))
        return len(images)


def _work(model: ImageModel, plan: _Plan, seed: int, size: int, device: str, unit: int) -> int:
    missing = plan.missing(unit)
    if not missing:
        return 0
    return plan.write(unit, sample_aligned(model, seed, missing, size, torch.device(device)))


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """One torch thread for per-image CPU work (many small ops: extra threads only add overhead and contention)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def manifest_for(model: ImageModel, *, n: int, size: int, seed: int, fmt: str, per_shard: int, encoding: str,
                 package: str | None = None, version: str | None = None) -> dict[str, Any]:
    return {"model": model.name, "params": json.loads(json.dumps(model.params())), "seed": int(seed),
            "count": int(n), "size": int(size), "format": fmt,
            "per_shard": int(per_shard) if fmt in ("npz-shards", "webdataset-tar") else None,
            "batch": max(1, int(model.batch)),
            "encoding": encoding if fmt == "webdataset-tar" else (fmt if fmt in ("png", "jpg") else "npz"),
            "layout": ("NNNNNNNN/IIIIIIII.ext, 1000 per folder" if fmt in ("png", "jpg")
                       else "shard-SSSSSS.npz (images N x H x W x 3 uint8, indices)" if fmt == "npz-shards"
                       else "shard-SSSSSS.tar (WebDataset: IIIIIIII.ext members)"),
            "package": package, "version": version}


def _check_request(model: ImageModel, n: int, size: int, seed: int, fmt: str, per_shard: int, encoding: str,
                   quality: int, workers: int) -> None:
    for flag, value, least in (("--n", n, 1), ("--size", size, 1), ("--seed", seed, 0), ("--per-shard", per_shard, 1),
                               ("--workers", workers, 1)):
        whole_number(flag, value, least)
    whole_number("--quality", quality, 1, 100)
    model.check_size(size)
    if fmt not in FORMATS:
        raise PixforgeError(f"--format {fmt!r} is not supported: choose one of {', '.join(FORMATS)}")
    if encoding not in ("png", "jpg"):
        raise PixforgeError(f"--encoding {encoding!r} is not supported: choose png or jpg")


def _open_out(out: Path, manifest: dict[str, Any], overwrite: bool) -> None:
    """Create `out` or check that it holds the same dataset (resume); write the manifest atomically."""
    path = out / MANIFEST
    try:
        if out.exists() and not out.is_dir():
            raise PixforgeError(f"--out {out} exists and is not a folder")
        if path.is_file() and not overwrite:
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise PixforgeError(f"{path} is not a readable manifest ({err}): pass --overwrite to replace it") \
                    from None
            diff = [k for k in MATCHED_KEYS if old.get(k) != manifest.get(k)]
            if diff:
                raise PixforgeError(f"{out} holds another dataset ({', '.join(f'{k}: {old.get(k)!r}' for k in diff)})"
                                    f": choose another --out, or pass --overwrite to regenerate it")
            return
        if out.is_dir() and any(out.iterdir()) and not path.is_file() and not overwrite:
            raise PixforgeError(f"--out {out} is not empty and holds no {MANIFEST}: choose another folder or "
                                f"pass --overwrite")
        out.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(manifest, indent=2) + "\n")
    except PermissionError as err:
        raise PixforgeError(f"--out {out} is not writable ({err.strerror})") from None
    except OSError as err:
        raise PixforgeError(f"--out {out} cannot be written ({err.strerror or err})") from None


def generate(model: ImageModel, out: str | os.PathLike, *, n: int, size: int, seed: int = 0,
             shard: str | None = None, workers: int = 1, device: str = "cpu", fmt: str = "png",
             per_shard: int = 1000, encoding: str = "png", quality: int = 95, overwrite: bool = False,
             package: str | None = None, version: str | None = None, show_progress: bool = True) -> dict[str, Any]:
    """Generate images `0..n-1` of `model` (this job's `shard` of them) under `out`; returns a summary.

    Already written images / shards are skipped (with `overwrite` they are regenerated). On the CPU `workers`
    processes generate in parallel (one thread each); on CUDA the main process generates batches and `workers`
    threads encode and write them.
    """
    _check_request(model, n, size, seed, fmt, per_shard, encoding, quality, workers)
    dev = resolve_device(device)
    k0, count = parse_shard(shard)
    out = Path(out)
    plan = _Plan(out, n, fmt, per_shard, encoding, quality, model.batch)
    _open_out(out, manifest_for(model, n=n, size=size, seed=seed, fmt=fmt, per_shard=per_shard, encoding=encoding,
                                package=package, version=version), overwrite)
    units = list(shard_indices(plan.units, k0, count))
    if overwrite:  # regenerate everything this job owns: remove what is there first
        for u in units:
            for i in plan.indices(u):
                image_path(out, i, fmt).unlink(missing_ok=True)
            shard_path(out, u, fmt).unlink(missing_ok=True)
    total = sum(len(plan.indices(u)) for u in units)
    missing = {u: len(plan.missing(u)) for u in units}
    todo = [u for u in units if missing[u]]
    done = total - sum(missing.values())
    start = time.perf_counter()
    bar = progress(total, initial=done, desc=f"{model.name} {k0 + 1}/{count}", unit="img",
                   disable=not show_progress)
    made = 0
    try:
        for written in _run(model, plan, seed, size, dev, todo, workers):
            made += written
            bar.update(written)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    return {"out": str(out), "model": model.name, "shard": f"{k0 + 1}/{count}", "images": total,
            "generated": made, "skipped": total - made, "seconds": round(seconds, 3),
            "images_per_s": round(made / seconds, 2) if seconds > 0 and made else None, "device": dev.type}


def _run(model: ImageModel, plan: _Plan, seed: int, size: int, dev: torch.device, units: list[int],
         workers: int) -> Iterator[int]:
    if dev.type != "cpu":  # generate on the device here, encode and write in threads
        with ThreadPoolExecutor(workers) as pool:
            pending: deque = deque()
            for unit in units:
                missing = plan.missing(unit)
                images = sample_aligned(model, seed, missing, size, dev)
                pending.append(pool.submit(plan.write, unit, images))
                while len(pending) > 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        return
    if workers == 1:
        for unit in units:
            with single_thread():
                written = _work(model, plan, seed, size, "cpu", unit)
            yield written
        return
    context = multiprocessing.get_context("spawn")
    pool: Executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(1,))
    with pool:
        pending = deque()
        for unit in units:
            pending.append(pool.submit(_work, model, plan, seed, size, "cpu", unit))
            while len(pending) > 4 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class GeneratedDataset(torch.utils.data.Dataset):
    """`model` as a map-style dataset generated on the fly: item `i` is image `i` of dataset `seed` (C x H x W
    float in `value_range`), the same pixels `generate` writes. Use `DataLoader(num_workers=...)` to parallelise."""

    def __init__(self, model: ImageModel, n: int, size: int, seed: int = 0,
                 value_range: tuple[float, float] = (-1.0, 1.0)):
        model.check_size(size)
        self.model, self.n, self.size, self.seed, self.value_range = model, n, size, seed, value_range

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range [0, {self.n})")
        img = sample_aligned(self.model, self.seed, [index], self.size, torch.device("cpu"))[index]
        lo, hi = self.value_range
        return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() * ((hi - lo) / 255.0) + lo


def read_images(path: str | os.PathLike, limit: int | None = None) -> Iterator[np.ndarray]:
    """uint8 H x W x 3 images from an image file or folder, npz shards (also H x W grey or H x W x 4) or
    WebDataset tar shards (sorted); a shard of anything else is a PixforgeError naming it."""
    path = Path(path)
    if not path.exists():
        raise PixforgeError(f"{path} does not exist")
    count = 0
    shards = sorted(path.glob("shard-*.npz")) + sorted(path.glob("shard-*.tar")) if path.is_dir() else []
    if path.is_file() and path.suffix in (".npz", ".tar"):
        shards = [path]
    if shards:
        for file in shards:
            for img in _read_shard(file):
                if limit is not None and count >= limit:
                    return
                count += 1
                yield img
        return
    for file in list_images(path):
        if limit is not None and count >= limit:
            return
        count += 1
        yield read_image(file)


def _read_shard(file: Path) -> Iterator[np.ndarray]:
    try:
        if file.suffix == ".npz":
            with np.load(file) as data:
                images = data["images"]
            if images.dtype != np.uint8 or not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] in (3, 4))) \
                    or 0 in images.shape:
                raise PixforgeError(f"{file} holds no 8-bit images ('images' is {images.dtype} {list(images.shape)}; "
                                    "pixforge shards hold uint8 N x H x W x 3, or N x H x W grey)")
            yield from images
            return
        with tarfile.open(file) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.rsplit(".", 1)[-1] in ("png", "jpg", "jpeg"):
                    data = tar.extractfile(member).read()
                    yield np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    except (OSError, ValueError, KeyError, tarfile.TarError) as err:
        raise PixforgeError(f"{file} is not a readable shard ({err.__class__.__name__}: {err})") from None


def preview_grid(models: Sequence[ImageModel], seed: int = 0, size: int = 128, per_model: int = 8,
                 device: str | torch.device = "cpu", label_width: int = 140) -> np.ndarray:
    """One row of `per_model` images (indices 0..per_model-1) per model, each row labelled with the model's name."""
    from PIL import ImageDraw

    from pixforge.export.images import make_grid

    dev = resolve_device(device) if isinstance(device, str) else device
    rows = []
    for model in models:
        model.check_size(size)
        with single_thread() if dev.type == "cpu" else contextlib.nullcontext():
            images = sample_aligned(model, seed, range(per_model), size, dev)
        row = make_grid(np.stack([images[i] for i in range(per_model)]), nrow=per_model)
        label = Image.new("RGB", (label_width, row.shape[0]), "white")
        ImageDraw.Draw(label).text((6, row.shape[0] // 2 - 6), model.name, fill="black")
        rows.append(np.concatenate([np.asarray(label), row], axis=1))
    return np.concatenate(rows, axis=0)


class DatasetVerbs:
    """The `generate` verb of a dataset tool (spectra, primitives): its dataset options are declared here, once.

    A tool's CLI class inherits it and sets `package` (the distribution, for the manifest), `default_size`,
    `default_out` and `gpu_batch`, and implements `model(name, batch, options)`: the image model called `name`,
    with its own options (the `--flags` not declared here), refusing unknown ones with a PixforgeError.
    """

    package = "pixforge-core"
    default_size = 128
    default_out = "generated"
    gpu_batch = 32

    def _model(self, name: str, batch: int, options: dict[str, Any]) -> ImageModel:
        raise NotImplementedError

    def generate(self, model: str, n: int = 1000, size: int | None = None, out: str | None = None, seed: int = 0,
                 shard: str | None = None, workers: int = 1, device: str = "cpu", format: str = "png",
                 per_shard: int = 1000, encoding: str = "png", quality: int = 95, batch: int | None = None,
                 overwrite: bool = False, quiet: bool = False, **options) -> str:
        """Generate images 0..N-1 of MODEL at SIZE x SIZE pixels (default: the tool's) under OUT: png/jpg files
        (1,000 per folder), npz-shards or webdataset-tar (--per-shard images each), plus manifest.json. Image i is
        a pure function of (--seed, i, --size, model options): re-runs, --shard K/N splits and resumed runs (what
        exists is skipped) give the same bytes on one device type. --workers W: W processes on the CPU, W writer
        threads on CUDA (--device cuda generates --batch images at once). MODEL's own options follow as flags
        (`list` shows them; defaults = the official code). Prints a JSON summary."""
        from importlib.metadata import version

        batch = whole_number("--batch", batch if batch is not None else
                             (1 if str(device).startswith("cpu") else self.gpu_batch))
        synth = self._model(model, batch, options)
        summary = generate(synth, out or self.default_out, n=n, size=self.default_size if size is None else size,
                           seed=seed,
                           shard=shard, workers=workers, device=device, fmt=format, per_shard=per_shard,
                           encoding=encoding, quality=quality, overwrite=overwrite, package=self.package,
                           version=version(self.package), show_progress=not quiet)
        return json.dumps(summary)
