"""`pixforge-run`: run exported pixforge ONNX models on images, folders and videos, with no torch.

    pixforge-run info MODEL.onnx [--json]
    pixforge-run run MODEL.onnx INPUTS... --out DIR [--device auto|cpu|cuda[:N]] [--batch 8] [--seed 0]
    pixforge-run bench MODEL.onnx [--batch_sizes 1,4,16] [--size 256] [--json]

Every check on the inputs runs before the first output is written; each output is written atomically.
"""

from __future__ import annotations

import contextlib
import json as jsonlib
import time
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from pixforge.export.atomic import atomic_path, write_text
from pixforge.export.command import run as run_command
from pixforge.export.errors import PixforgeError
from pixforge.export.images import is_image_path, read_image, write_image
from pixforge.export.pipeline import MODES, Pipeline, convert, image_channels, probe_image
from pixforge.export.session import PROG, Session, open_session
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


class Runtime:
    """Run exported pixforge ONNX models with onnxruntime (no torch).

    Commands (each has --help):
        info MODEL                       metadata, graph inputs/outputs, providers
        run MODEL INPUTS... --out DIR    images, folders and videos -> results under DIR
        bench MODEL                      latency and throughput per batch size
    """

    def info(self, model: str, device: str = "auto", json: bool = False) -> None:
        """Show a model's pixforge metadata, its graph inputs/outputs and the provider that would run it.

        Args:
            model: the exported .onnx file.
            device: auto, cpu, cuda or cuda:N (which provider to try).
            json: print one JSON object instead of text.
        """
        session = open_session(model, device)
        meta, graph = session.meta, session.session.get_modelmeta()
        tensors = {"inputs": [], "outputs": []}
        for key, specs, ios in (("inputs", meta.inputs, session.inputs), ("outputs", meta.outputs, session.outputs)):
            for spec in specs:
                io = ios[spec.name]
                tensors[key].append({"name": spec.name, "shape": io.shape, "type": io.type, "spec": spec.to_dict()})
        data = {"model": str(session.path), "package": meta.package, "version": meta.version, "task": meta.task,
                "producer": graph.producer_name, **tensors, "extra": meta.extra,
                "providers": {"available": ort.get_available_providers(), "running": session.provider}}
        if json:
            print(jsonlib.dumps(data, default=str))
            return
        lines = [f"model     {data['model']}", f"package   {meta.package} {meta.version}", f"task      {meta.task}",
                 f"producer  {graph.producer_name or '-'}",
                 f"provider  {session.provider} (available: {', '.join(data['providers']['available'])})"]
        for key in ("inputs", "outputs"):
            lines.append(f"{key}:")
            for t in tensors[key]:
                shape = ",".join("?" if d is None else str(d) for d in t["shape"])
                lines.append(f"  {t['name']:<12} {t['type']}[{shape}]  {_describe(session, t['name'], key)}")
        if meta.extra:
            lines.append(f"extra:    {jsonlib.dumps(meta.extra)}")
        print("\n".join(lines))

    def run(self, model: str, *inputs: str, out: str | None = None, device: str = "auto", batch: int = 8,
            seed: int = 0, overwrite: bool = False, set: Any = None, input: Any = None, count: int | None = None,
            shard: str | None = None, skip_existing: bool = False, tensor_format: str = "json",
            threads: int | None = None) -> None:
        """Run MODEL on image files, folders (recursive) and videos; write the results under --out.

        Images give OUT/<name>.png, videos OUT/<name>.mp4 (same frame rate, audio kept), tensor outputs
        OUT/<name>.json (or .npy); a model with several outputs adds the output's name: <name>.<output>.png.
        Files inside a folder keep their relative paths.

        Args:
            model: the exported .onnx file.
            inputs: image files, folders and video files (mixed allowed).
            out: output folder (required).
            device: auto (CUDA if available, else CPU), cpu, cuda or cuda:N.
            batch: items (or video frames) per model call.
            seed: noise seed; item i's noise depends only on (seed, i).
            overwrite: replace existing outputs (otherwise an existing output is an error).
            set: scalar inputs, e.g. --set strength=0.5,steps=4.
            input: secondary image inputs, one image for every item, e.g. --input style=style.png.
            count: for a model without image inputs (a generator), how many samples to write.
            shard: "K/N" to process only items K, K+N, K+2N, ... (deterministic split across jobs).
            skip_existing: skip items whose outputs all exist already (to resume a stopped job).
            tensor_format: json or npy, for outputs of kind "tensor".
            threads: CPU threads per operator (default: all cores).
        """
        if out is None:
            raise PixforgeError("--out is required: the folder the results go to")
        if tensor_format not in ("json", "npy"):
            raise PixforgeError(f"--tensor_format must be json or npy, got {tensor_format!r}")
        if not isinstance(batch, int) or batch < 1:
            raise PixforgeError(f"--batch must be a positive integer, got {batch!r}")
        out = Path(str(out))
        session = open_session(model, device, threads)
        pipe = Pipeline(session, seed=seed, scalars={k: _number(v, k) for k, v in _pairs(set, "--set").items()},
                        images=_pairs(input, "--input"))
        items = _shard(_collect(session, [str(i) for i in inputs], count, out), shard)
        _validate(pipe, items)
        targets = _targets(session, items, out, tensor_format)
        items = _check_existing(items, targets, overwrite, skip_existing)
        total = sum((it.frames or 1) if it.video else 1 for it in items)
        with tqdm(total=total, unit="item", desc=PROG, disable=None) as bar:
            def size_of(item: Item) -> tuple[int, int]:  # stills of one network size batch together
                return pipe.network_size(item.hw) if pipe.primary else (0, 0)

            stills = sorted((it for it in items if not it.video), key=size_of)
            for _, group in groupby(stills, key=size_of):
                group = list(group)
                for start in range(0, len(group), batch):
                    _run_stills(pipe, group[start:start + batch], targets)
                    bar.update(len(group[start:start + batch]))
            for item in items:
                if item.video:
                    _run_video(pipe, item, targets[item.index], batch, bar)
        written = sum(len(targets[it.index]) for it in items)
        print(f"{PROG}: wrote {written} file(s) under {out} on {session.provider}")

    def bench(self, model: str, device: str = "auto", batch_sizes: Any = (1, 4, 16), size: Any = None,
              warmup: int = 3, iters: int = 20, threads: int | None = None, json: bool = False) -> None:
        """Measure model latency (median and p90, ms) and throughput (items/s) for each batch size.

        Inputs are random images (and the model's noise and scalar inputs); the time covers one model call,
        host-to-device copies included.

        Args:
            model: the exported .onnx file.
            device: auto, cpu, cuda or cuda:N.
            batch_sizes: batch sizes to measure, e.g. 1,4,16.
            size: image size, an int or HxW (default: the model's fixed size, else 256).
            warmup: untimed calls before timing.
            iters: timed calls per batch size.
            threads: CPU threads per operator (default: all cores).
            json: print one JSON line per batch size instead of a table.
        """
        session = open_session(model, device, threads)
        rng = np.random.default_rng(0)
        hw = _bench_size(session, size)
        extra = {s.name: rng.integers(0, 256, (*(s.size or hw), image_channels(s)), dtype=np.uint8)
                 for s in session.meta.image_inputs[1:]}
        pipe = Pipeline(session, images=extra)
        if pipe.primary is not None:
            hw = pipe.network_size(hw)
        sizes = batch_sizes if isinstance(batch_sizes, (list, tuple)) else [batch_sizes]
        if not json:
            print(f"{'provider':<24} {'batch':>5} {'size':>9} {'median ms':>10} {'p90 ms':>9} {'items/s':>10}")
        for n in (int(b) for b in sizes):
            sources = None
            if pipe.primary is not None:
                channels = image_channels(pipe.primary)
                sources = list(rng.integers(0, 256, (n, *hw, channels), dtype=np.uint8))
            feeds = pipe.feeds(sources, list(range(n)))
            for _ in range(max(0, int(warmup))):
                session.run(feeds)
            times = []
            for _ in range(max(1, int(iters))):
                start = time.perf_counter()
                session.run(feeds)
                times.append(time.perf_counter() - start)
            median, p90 = float(np.median(times)), float(np.percentile(times, 90))
            row = {"name": session.path.stem, "device": session.provider, "batch": n,
                   "size": list(hw) if pipe.primary else None, "median_ms": round(median * 1e3, 3),
                   "p90_ms": round(p90 * 1e3, 3), "items_per_s": round(n / median, 2)}
            if json:
                print(jsonlib.dumps(row), flush=True)
            else:
                size_text = f"{hw[0]}x{hw[1]}" if pipe.primary else "-"
                print(f"{session.provider:<24} {n:>5} {size_text:>9} {row['median_ms']:>10.2f} "
                      f"{row['p90_ms']:>9.2f} {row['items_per_s']:>10.1f}", flush=True)


# -- run: collecting and checking the work -----------------------------------------------------------------


def _collect(session: Session, inputs: list[str], count: int | None, out: Path) -> list[Item]:
    """Every item, in a fixed order: the inputs as given, folders sorted recursively (hidden files and
    anything under `out`, i.e. earlier results, skipped)."""
    if not session.meta.image_inputs:
        if inputs or not isinstance(count, int) or count < 1:
            raise PixforgeError(f"{session.path} takes no images (a generator): give --count N, and no inputs")
        width = max(6, len(str(count - 1)))
        return [Item(i, None, f"{i:0{width}d}") for i in range(count)]
    if count is not None:
        raise PixforgeError("--count is for models without image inputs; this model takes images: give INPUTS")
    if not inputs:
        raise PixforgeError("no inputs: give image files, folders or videos after the model")
    items, results = [], out.resolve()
    for text in inputs:
        path = Path(text)
        if not path.exists():
            raise PixforgeError(f"{path} does not exist")
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and (is_image_path(p) or is_video_path(p))
                           and not any(part.startswith(".") for part in p.relative_to(path).parts)
                           and results not in p.resolve().parents)
            if not files:
                raise PixforgeError(f"{path} holds no image or video files")
            pairs = [(f, f.relative_to(path).with_suffix("").as_posix()) for f in files]
        elif is_image_path(path) or is_video_path(path):
            pairs = [(path, path.stem)]
        else:
            raise PixforgeError(f"{path} is neither an image nor a video file (by its extension)")
        items += [Item(len(items) + k, f, stem, video=is_video_path(f)) for k, (f, stem) in enumerate(pairs)]
    return items


def _shard(items: list[Item], shard: str | None) -> list[Item]:
    if shard is None:
        return items
    k, _, n = str(shard).partition("/")
    if not (k.isdigit() and n.isdigit() and int(k) < int(n)):
        raise PixforgeError(f"--shard must be K/N with 0 <= K < N, got {shard!r}")
    return [it for it in items if it.index % int(n) == int(k)]


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


def _targets(session: Session, items: list[Item], out: Path, tensor_format: str) -> dict[int, dict[str, Path]]:
    """{item index: {output name: file}}; two items that would write the same file are an error."""
    outputs = session.meta.outputs
    seen: dict[Path, Item] = {}
    targets = {}
    for item in items:
        files = {}
        for spec in outputs:
            ext = (".mp4" if item.video else ".png") if spec.kind == "image" else f".{tensor_format}"
            path = out / (f"{item.stem}{ext}" if len(outputs) == 1 else f"{item.stem}.{spec.name}{ext}")
            if path in seen:
                raise PixforgeError(f"{seen[path].source} and {item.source} would both write {path}: "
                                    "rename one or run them separately")
            seen[path] = item
            files[spec.name] = path
        targets[item.index] = files
    return targets


def _check_existing(items: list[Item], targets: dict[int, dict[str, Path]], overwrite: bool,
                    skip_existing: bool) -> list[Item]:
    if overwrite:
        return items
    if skip_existing:
        items = [it for it in items if not all(p.exists() for p in targets[it.index].values())]
    for item in items:
        for path in targets[item.index].values():
            if path.exists():
                raise PixforgeError(f"{path} already exists: pass --overwrite to replace it "
                                    "(or --skip_existing to keep it)")
    return items


# -- run: processing ---------------------------------------------------------------------------------------


def _run_stills(pipe: Pipeline, chunk: list[Item], targets: dict[int, dict[str, Path]]) -> None:
    sources = None
    if pipe.primary is not None:
        sources = [read_image(it.source, MODES[image_channels(pipe.primary)]) for it in chunk]
    names = [str(it.source or it.stem) for it in chunk]
    results = pipe.run(sources, [it.index for it in chunk], names)
    for item, result in zip(chunk, results, strict=True):
        for name, value in result.items():
            _write(targets[item.index][name], value)


def _run_video(pipe: Pipeline, item: Item, files: dict[str, Path], batch: int, bar: tqdm) -> None:
    """Stream a video through the model batch by batch: one writer per image output, tensors stacked per frame.

    The writers sit in an ExitStack: all are closed (files appear) on success, all aborted on an error."""
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
                        path, reader.info.fps_fraction, audio_from=item.source,
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
    if path.suffix == ".png":
        write_image(path, value)
    elif path.suffix == ".json":
        write_text(path, jsonlib.dumps({"shape": list(value.shape), "values": value.tolist()}) + "\n")
    else:
        with atomic_path(path) as tmp:
            np.save(tmp, value)


# -- small parsers -----------------------------------------------------------------------------------------


def _pairs(value: Any, flag: str) -> dict[str, Any]:
    """`name=value` pairs from Fire: a dict, a "a=1,b=2" string, or a list of "a=1" strings."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    parts = value if isinstance(value, (list, tuple)) else str(value).split(",")
    pairs = {}
    for part in parts:
        name, sep, rhs = str(part).partition("=")
        if not sep or not name.strip():
            raise PixforgeError(f"{flag} takes name=value pairs (comma-separated), got {part!r}")
        pairs[name.strip()] = rhs.strip()
    return pairs


def _number(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise PixforgeError(f"--set {name}={value}: not a number") from None


def _bench_size(session: Session, size: Any) -> tuple[int, int]:
    """--size as (H, W): an int, "HxW" or a pair; default the model's fixed size, its graph's dims, else 256."""
    if size is None:
        primary = session.meta.image_inputs[0] if session.meta.image_inputs else None
        if primary is None:
            return 0, 0
        shape = session.inputs[primary.name].shape
        dims = shape[2:4] if primary.layout == "NCHW" else shape[1:3]
        if primary.size is None and len(shape) == 4 and all(isinstance(d, int) for d in dims):
            return int(dims[0]), int(dims[1])
        return primary.size or (256, 256)
    parts = size if isinstance(size, (list, tuple)) else str(size).lower().split("x")
    try:
        dims = [int(p) for p in parts]
    except (TypeError, ValueError):
        dims = []
    if len(dims) not in (1, 2) or min(dims) < 1:
        raise PixforgeError(f"--size must be an int or HxW, got {size!r}")
    return dims[0], dims[-1]


def _describe(session: Session, name: str, key: str) -> str:
    spec = session.meta.input(name) if key == "inputs" else session.meta.output(name)
    if spec.kind == "image":
        text = f"image {spec.layout} {image_channels(spec)}ch {spec.color} range {list(spec.range)}"
        text += f" mean {spec.mean}" if spec.mean is not None else ""
        text += f" std {spec.std}" if spec.std is not None else ""
        text += f" size {spec.size[0]}x{spec.size[1]}" if spec.size else ""
        text += f" multiple {spec.multiple}" if spec.multiple > 1 else ""
    elif spec.kind == "noise":
        text = f"noise {spec.shape}"
    elif spec.kind == "scalar":
        text = f"scalar default {spec.default}"
    else:
        text = "tensor"
    return f"{text}  {spec.description}".rstrip()


def main() -> None:
    """Console script `pixforge-run`."""
    run_command(Runtime, name=PROG)


if __name__ == "__main__":
    main()
