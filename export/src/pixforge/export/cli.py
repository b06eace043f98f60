"""`pixforge-run`: run exported pixforge ONNX models on images, folders and videos, with no torch.

    pixforge-run info MODEL.onnx [--json]
    pixforge-run run MODEL.onnx INPUTS... --out DIR [--device auto|cpu|cuda[:N]] [--batch 8] [--seed 0]
    pixforge-run run GENERATOR.onnx --count N [--size HxW] --out DIR [--seed 0]
    pixforge-run bench MODEL.onnx [--batch-sizes 1,4,16] [--size 256] [--json]

Every check on the inputs runs before the first output is written; each output is written atomically.
"""

from __future__ import annotations

import json as jsonlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from pixforge.export.command import run as run_command
from pixforge.export.errors import PixforgeError
from pixforge.export.images import parse_size
from pixforge.export.jobs import execute, plan
from pixforge.export.metadata import TensorSpec
from pixforge.export.pipeline import Pipeline, image_channels
from pixforge.export.session import PROG, Session, open_session
from pixforge.export.sizing import check_pixels


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
        tensors = {"inputs": [(spec, session.inputs[spec.name]) for spec in meta.inputs],
                   "outputs": [(spec, session.outputs[spec.name]) for spec in meta.outputs]}
        data = {"model": str(session.path), "package": meta.package, "version": meta.version, "task": meta.task,
                "producer": graph.producer_name,
                **{key: [{"name": spec.name, "shape": io.shape, "type": io.type, "spec": spec.to_dict()}
                         for spec, io in pairs] for key, pairs in tensors.items()},
                "extra": meta.extra,
                "providers": {"available": ort.get_available_providers(), "running": session.provider}}
        if json:
            print(jsonlib.dumps(data, default=str))
            return
        lines = [f"model     {data['model']}", f"package   {meta.package} {meta.version}", f"task      {meta.task}",
                 f"producer  {graph.producer_name or '-'}",
                 f"provider  {session.provider} (available: {', '.join(data['providers']['available'])})"]
        for key, pairs in tensors.items():
            lines.append(f"{key}:")
            for spec, io in pairs:
                shape = ",".join("?" if d is None else str(d) for d in io.shape)
                lines.append(f"  {spec.name:<12} {io.type}[{shape}]  {_describe(spec)}")
        if meta.extra:
            lines.append(f"extra:    {jsonlib.dumps(meta.extra)}")
        print("\n".join(lines))

    def run(self, model: str, *inputs: str, out: str | None = None, device: str = "auto", batch: int = 8,
            seed: int = 0, overwrite: bool = False, set: Any = None, input: Any = None, count: int | None = None,
            shard: str | None = None, skip_existing: bool = False, tensor_format: str = "json",
            threads: int | None = None, size: Any = None) -> None:
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
            input: secondary image inputs, one image for every item, e.g. --input style=style.png; an input the
                model pairs with the items (e.g. instance maps) takes a folder: each item gets the file of its
                relative name, e.g. --input instances=instances/.
            count: for a model without image inputs (a generator), how many samples to write.
            shard: "K/N" (1-based) to process only the K-th of N contiguous parts of the fixed-order item list
                (deterministic split across jobs; under torchrun each rank takes its own part).
            skip_existing: skip items whose outputs all exist already (to resume a stopped job).
            tensor_format: json or npy, for outputs of kind "tensor".
            threads: CPU threads per operator (default: all cores).
            size: for a generator, the samples' size HxW (or one int for a square); its noise shapes come from the
                size rule in the model's metadata (default: the export-time size).
        """
        if out is None:
            raise PixforgeError("--out is required: the folder the results go to")
        if tensor_format not in ("json", "npy"):
            raise PixforgeError(f"--tensor-format must be json or npy, got {tensor_format!r}")
        if not isinstance(batch, int) or batch < 1:
            raise PixforgeError(f"--batch must be a positive integer, got {batch!r}")
        for value, flag in ((count, "--count"), (threads, "--threads")):
            if value is not None:
                _count(value, flag, 1)
        out = Path(str(out))
        if out.exists() and not out.is_dir():
            raise PixforgeError(f"--out {out} exists and is not a folder")
        scalars = {k: _number(v, k) for k, v in _pairs(set, "--set").items()}
        images, size = _pairs(input, "--input"), None if size is None else parse_size(size)
        session = open_session(model, device, threads)
        pipe = Pipeline(session, seed=seed, scalars=scalars, images=images, size=size)
        items = plan(pipe, [str(i) for i in inputs], out, count=count, shard=shard, tensor_format=tensor_format,
                     overwrite=overwrite, skip_existing=skip_existing)
        written = execute(pipe, items, batch)
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
            size: an int or HxW: the image size (default: the model's fixed input size, which --size may not
                change, else 256), or a generator's sample size, by its size rule as `run --size` (default: its
                export-time size); at most 4096x4096 pixels.
            warmup: untimed calls before timing.
            iters: timed calls per batch size.
            threads: CPU threads per operator (default: all cores).
            json: print one JSON line per batch size instead of a table.
        """
        sizes = [_count(b, "--batch-sizes", 1) for b in (batch_sizes if isinstance(batch_sizes, (list, tuple))
                                                          else [batch_sizes])]
        warmup, iters = _count(warmup, "--warmup", 0), _count(iters, "--iters", 1)
        if threads is not None:
            _count(threads, "--threads", 1)
        session = open_session(model, device, threads)
        rng = np.random.default_rng(0)
        hw = _bench_size(session, size)
        extra = {s.name: rng.integers(0, 256, (*(s.size or hw), image_channels(s)), dtype=np.uint8)
                 for s in session.meta.image_inputs[1:] if not s.paired}
        paired = [s for s in session.meta.image_inputs[1:] if s.paired]  # random arrays per batch, below
        pipe = Pipeline(session, images=extra, size=None if session.meta.image_inputs else hw)
        if pipe.primary is not None:
            hw = pipe.network_size(hw)
        if not json:
            print(f"{'provider':<24} {'batch':>5} {'size':>9} {'median ms':>10} {'p90 ms':>9} {'items/s':>10}")
        for n in sizes:
            sources = None
            if pipe.primary is not None:
                channels = image_channels(pipe.primary)
                sources = list(rng.integers(0, 256, (n, *hw, channels), dtype=np.uint8))
            feeds = pipe.feeds(sources, list(range(n)), {s.name: list(rng.integers(
                0, 256, (n, *hw, image_channels(s)), dtype=np.uint8)) for s in paired})
            for _ in range(warmup):
                session.run(feeds)
            times = []
            for _ in range(iters):
                start = time.perf_counter()
                session.run(feeds)
                times.append(time.perf_counter() - start)
            median, p90 = float(np.median(times)), float(np.percentile(times, 90))
            row = {"name": session.path.stem, "device": session.provider, "batch": n,
                   "size": list(hw) if hw else None, "median_ms": round(median * 1e3, 3),
                   "p90_ms": round(p90 * 1e3, 3), "items_per_s": round(n / median, 2)}
            if json:
                print(jsonlib.dumps(row), flush=True)
            else:
                size_text = f"{hw[0]}x{hw[1]}" if hw else "-"
                print(f"{session.provider:<24} {n:>5} {size_text:>9} {row['median_ms']:>10.2f} "
                      f"{row['p90_ms']:>9.2f} {row['items_per_s']:>10.1f}", flush=True)


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


def _count(value: Any, flag: str, least: int) -> int:
    """An integer option that must be at least `least` (Fire gives ints, or strings for odd input)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise PixforgeError(f"{flag} takes integers >= {least}, got {value!r}")
    return value


def _number(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise PixforgeError(f"--set {name}={value}: not a finite number")
    return number


def _bench_size(session: Session, size: Any) -> tuple[int, int] | None:
    """--size as (H, W): an int, "HxW" or a pair, at most MAX_PIXELS. A model with image inputs: default its fixed
    input size (its metadata's, else its graph's dims), which --size may not change, else 256. A generator: None
    (its export-time size) unless given; its size rule is applied by `Pipeline`."""
    asked = None if size is None else check_pixels(parse_size(size))
    primary = session.meta.image_inputs[0] if session.meta.image_inputs else None
    if primary is None:
        return asked
    shape = session.inputs[primary.name].shape
    dims = shape[2:4] if primary.layout == "NCHW" else shape[1:3]
    graph = tuple(dims) if len(shape) == 4 and all(isinstance(d, int) for d in dims) else None
    fixed = primary.size or graph
    if asked and fixed and asked != tuple(fixed):
        raise PixforgeError(f"--size {asked[0]}x{asked[1]}: the input size of {session.path} is fixed at "
                            f"{fixed[0]}x{fixed[1]}; drop --size")
    return asked or fixed or (256, 256)


def _describe(spec: TensorSpec) -> str:
    """One line for `info`: how a tensor is fed or read back."""
    if spec.kind == "image":
        text = f"image {spec.layout} {image_channels(spec)}ch {spec.color} range {list(spec.range)}"
        text += f" mean {spec.mean}" if spec.mean is not None else ""
        text += f" std {spec.std}" if spec.std is not None else ""
        text += f" size {spec.size[0]}x{spec.size[1]}" if spec.size else ""
        text += f" multiple {spec.multiple}" if spec.multiple > 1 else ""
    elif spec.kind == "labels":
        text = f"labels {spec.num_classes} classes" if spec.num_classes else "labels (ids)"
        text += f" dontcare {spec.dontcare}" if spec.dontcare is not None else ""
        text += f" size {spec.size[0]}x{spec.size[1]}" if spec.size else ""
        text += f" multiple {spec.multiple}" if spec.multiple > 1 else ""
    elif spec.kind == "noise":
        text = f"noise {spec.shape}"
    elif spec.kind == "scalar":
        text = f"scalar default {spec.default}"
    else:
        text = "tensor"
    text += ", one file per item (--input NAME=DIR)" if spec.paired else ""
    return f"{text}  {spec.description}".rstrip()


def main() -> None:
    """Console script `pixforge-run`."""
    run_command(Runtime, name=PROG)


if __name__ == "__main__":
    main()
