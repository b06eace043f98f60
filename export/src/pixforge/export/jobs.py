"""The batch job behind `pixforge-run run`: which items to process, where their results go, and running them.

    items = plan(pipe, inputs, out, count=..., shard=..., tensor_format=..., overwrite=..., skip_existing=...)
    written = execute(pipe, items, batch)

`plan` collects the items in a fixed order (so that `--shard K/N` and the per-item noise seeds are stable),
opens every input (image headers, PNG checksums, video probes), checks that each fits the model and decides
every output file; it raises `PixforgeError` before anything is written. `execute` then runs stills in
batches of one network size and streams videos batch by batch; every output is written atomically.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pixforge.export.atomic import atomic_path, write_text
from pixforge.export.errors import PixforgeError
from pixforge.export.images import is_image_path, probe_image, write_image
from pixforge.export.pipeline import Pipeline, convert, image_channels
from pixforge.export.session import PROG
from pixforge.export.shard import parse_shard, shard_indices
from pixforge.export.video import VideoReader, VideoWriter, is_video_path, probe_video


@dataclass
class Item:
    """One unit of work: an image, a video (all its frames) or, for a generator, one sample."""

    index: int  # position among all items: seeds the item's noise, picks its shard
    source: Path | None
    stem: str  # output path under --out, without suffix
    video: bool = False
    hw: tuple[int, int] = (0, 0)
    frames: int | None = None
    files: dict[str, Path] = field(default_factory=dict)  # {output name: file}, set by `plan`
    inputs: dict[str, Path] = field(default_factory=dict)  # {paired input: the item's own file}, set by `plan`


def plan(pipe: Pipeline, inputs: list[str], out: Path, *, count: int | None = None, shard: str | None = None,
         tensor_format: str = "json", overwrite: bool = False, skip_existing: bool = False,
         results: Path | None = None) -> list[Item]:
    """The items to run, each with its output files; every check on the inputs and outputs happens here.

    `results` (default `out`): the folder of earlier results, skipped when folders are searched for inputs (a
    caller writing into subfolders of one results folder passes that folder)."""
    items = _shard(_collect(pipe, inputs, count, out if results is None else results), shard)
    _validate(pipe, items)
    _assign_outputs(pipe, items, out, tensor_format)
    return _check_existing(items, overwrite, skip_existing)


def execute(pipe: Pipeline, items: list[Item], batch: int, *, desc: str = PROG, quiet: bool = False) -> int:
    """Run every item (stills of one network size batched together, then videos); returns the files written.
    A progress bar named `desc` goes to stderr (every 10 s when it is not a terminal) unless `quiet`."""
    total = sum((it.frames or 1) if it.video else 1 for it in items)
    with tqdm(total=total, unit="item", desc=desc, file=sys.stderr, disable=quiet,
              delay=2, mininterval=0.1 if sys.stderr.isatty() else 10) as bar:
        def size_of(item: Item) -> tuple[int, int]:  # stills of one network size batch together
            return pipe.network_size(item.hw) if pipe.primary else (0, 0)

        stills = sorted((it for it in items if not it.video), key=size_of)
        for _, group in groupby(stills, key=size_of):
            group = list(group)
            for start in range(0, len(group), batch):
                _run_stills(pipe, group[start:start + batch])
                bar.update(len(group[start:start + batch]))
        for item in items:
            if item.video:
                _run_video(pipe, item, batch, bar)
    return sum(len(it.files) for it in items)


# -- planning ------------------------------------------------------------------------------------------------


def media_files(inputs: list[str], out: str | Path) -> list[tuple[Path, str]]:
    """(file, output stem) for every image and video named by `inputs`, in a fixed order: inputs as given,
    folders sorted recursively (hidden files, and anything under `out` — earlier results — skipped)."""
    pairs, results = [], Path(out).resolve()
    for text in inputs:
        path = Path(text)
        if not path.exists():
            raise PixforgeError(f"{path} does not exist")
        if path.is_dir() and path.resolve() == results:
            raise PixforgeError(f"--out {out} is the input folder {path}: choose another folder (one inside it is "
                                "fine: its earlier results are skipped)")
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and (is_image_path(p) or is_video_path(p))
                           and not any(part.startswith(".") for part in p.relative_to(path).parts)
                           and results not in p.resolve().parents)
            if not files:
                raise PixforgeError(f"{path} holds no image or video files")
            pairs += [(f, f.relative_to(path).with_suffix("").as_posix()) for f in files]
        elif is_image_path(path) or is_video_path(path):
            pairs.append((path, path.stem))
        else:
            raise PixforgeError(f"{path} is neither an image nor a video file (by its extension)")
    return pairs


def _collect(pipe: Pipeline, inputs: list[str], count: int | None, out: Path) -> list[Item]:
    """Every item, in a fixed order: the inputs as given, folders sorted recursively (hidden files and
    anything under `out`, i.e. earlier results, skipped)."""
    session = pipe.session
    if not session.meta.image_inputs:
        if inputs or not isinstance(count, int) or count < 1:
            raise PixforgeError(f"{session.path} takes no images (a generator): give --count N, and no inputs")
        width = max(6, len(str(count - 1)))
        return [Item(i, None, f"{i:0{width}d}") for i in range(count)]
    if count is not None:
        raise PixforgeError("--count is for models without image inputs; this model takes images: give INPUTS")
    if not inputs:
        raise PixforgeError("no inputs: give image files, folders or videos")
    pairs = media_files(inputs, out)
    items = [Item(k, f, stem, video=is_video_path(f)) for k, (f, stem) in enumerate(pairs)]
    return items


def _shard(items: list[Item], shard: str | None) -> list[Item]:
    """Shard K of N ("K/N", 1-based: contiguous parts); all items without --shard (or a torchrun rank's share)."""
    k, n = parse_shard(shard)
    return [items[i] for i in shard_indices(len(items), k, n)]


def _validate(pipe: Pipeline, items: list[Item]) -> None:
    """Open every input (headers, PNG checksums, video probe) and check it fits the model, before any write."""
    for item in items:
        if item.source is None:
            continue
        if item.video:
            info = probe_video(item.source)
            item.hw, item.frames, has_alpha = (info.height, info.width), info.frame_count, False
        else:
            h, w, has_alpha = probe_image(item.source)
            item.hw = (h, w)
        pipe.check_item(str(item.source), item.hw, has_alpha)
        item.inputs = pipe.paired_files(str(item.source), item.stem, item.hw)


def _assign_outputs(pipe: Pipeline, items: list[Item], out: Path, tensor_format: str) -> None:
    """Set each item's {output name: file}; two items that would write the same file are an error."""
    outputs = pipe.meta.outputs
    seen: dict[Path, Item] = {}
    sources = {p.resolve() for it in items for p in [it.source, *it.inputs.values()] if p is not None}
    sources |= {p.resolve() for p in pipe.image_files}
    for item in items:
        for spec in outputs:
            ext = (".mp4" if item.video else ".png") if spec.kind == "image" else f".{tensor_format}"
            path = out / (f"{item.stem}{ext}" if len(outputs) == 1 else f"{item.stem}.{spec.name}{ext}")
            if path.resolve() in sources:
                raise PixforgeError(f"{path} is an input: choose an --out that does not write over the inputs")
            if path in seen:
                raise PixforgeError(f"{seen[path].source} and {item.source} would both write {path}: "
                                    "rename one or run them separately")
            seen[path] = item
            item.files[spec.name] = path


def _check_existing(items: list[Item], overwrite: bool, skip_existing: bool) -> list[Item]:
    """Drop items whose outputs all exist (`skip_existing`); any other existing output is an error."""
    if overwrite:
        return items
    if skip_existing:
        items = [it for it in items if not all(p.exists() for p in it.files.values())]
    for item in items:
        for path in item.files.values():
            if path.exists():
                raise PixforgeError(f"{path} already exists: pass --overwrite to replace it "
                                    "(or --skip-existing to keep it)")
    return items


# -- running -------------------------------------------------------------------------------------------------


def _run_stills(pipe: Pipeline, chunk: list[Item]) -> None:
    sources = None
    if pipe.primary is not None:
        sources = [pipe.read_source(it.source) for it in chunk]
    paired = {name: [pipe.read_source(it.inputs[name], pipe.meta.input(name)) for it in chunk] for name in pipe.paired}
    names = [str(it.source or it.stem) for it in chunk]
    results = pipe.run(sources, [it.index for it in chunk], names, paired)
    for item, result in zip(chunk, results, strict=True):
        for name, value in result.items():
            _write(item.files[name], value)


def _run_video(pipe: Pipeline, item: Item, batch: int, bar: tqdm) -> None:
    """Stream a video through the model batch by batch: one writer per image output, tensors stacked per frame.

    The writers sit in an ExitStack: all are closed (files appear) on success, all aborted on an error."""
    files = item.files
    channels = image_channels(pipe.primary)
    writers: dict[str, VideoWriter] = {}
    tensors: dict[str, list[np.ndarray]] = {name: [] for name in files if files[name].suffix != ".mp4"}
    done = 0
    with VideoReader(item.source, batch) as reader, contextlib.ExitStack() as stack:
        for frames in reader:
            names = [f"{item.source} (frame {done + k})" for k in range(len(frames))]
            results = pipe.run([convert(frame, channels) for frame in frames], [item.index] * len(frames), names)
            for name, path in files.items():
                if name in tensors:
                    tensors[name] += [r[name] for r in results]
                    continue
                clip = np.stack([_rgb(r[name]) for r in results])
                if name not in writers:
                    even = clip.shape[1] % 2 == 0 and clip.shape[2] % 2 == 0
                    writers[name] = stack.enter_context(VideoWriter(
                        path, reader.info.playback_fps_fraction, audio_from=item.source,
                        pix_fmt="yuv420p" if even else "yuv444p"))
                writers[name].write(clip)
            done += len(frames)
            bar.update(len(frames))
        if done == 0:
            raise PixforgeError(f"{item.source} has no video frames")
    for name, values in tensors.items():
        _write(files[name], np.stack(values))


def _rgb(image: np.ndarray) -> np.ndarray:
    """A video frame is RGB: gray is repeated, alpha dropped."""
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3]


def _write(path: Path, value: np.ndarray) -> None:
    """One result, atomically: a PNG image, or a tensor as JSON ({"shape", "values"}) or .npy."""
    if path.suffix == ".png":
        write_image(path, value)
    elif path.suffix == ".json":
        write_text(path, json.dumps({"shape": list(value.shape), "values": value.tolist()}) + "\n")
    else:
        with atomic_path(path) as tmp:
            np.save(tmp, value)
