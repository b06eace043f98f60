"""pixforge-spectra generation speed vs the official "Learning to See by Looking at Noise" code, same run.

For each model and size: pixforge in one process (one thread, `sample` per image, no encoding), pixforge
`generate` with 2 worker processes writing PNG files, and the batched torch path (`sample_batched` for dead leaves
and StyleGANs, `sample` with `batch` indices for the statistical models) on `--device` (default: cuda when present,
else cpu: torch-CPU, one thread). References, when given (mbaradad/learning_with_noise at `--official PATH`):
* dead leaves: `generate_datasets/dead_leaves/generate_dataset.py`, its `dead_leaves` function read from the file
  and run here with NumPy + OpenCV, one process (the textured model needs a folder of textures: no reference);
* statistical models: `generate_datasets/statistical/generate_datasets.py`, its `generate_example_seed` run with
  the official flags (`correlate_channels` + the model's `impose_*`, 10 iterations) in `--official-python PATH`,
  an interpreter with pyrtools (the official steerable pyramid), one thread, in a subprocess started first.
Dead leaves also get a `leaf-chunk` line: the CPU cost of one chunk of `deadleaves.CHUNK` leaves (`sample_leaves` +
`edges`, which the batched GPU rasteriser runs on the host), its chunks per image and the images/s it caps one
process at; `--baseline REV` measures the same two functions of `deadleaves.py` at git revision REV as reference.
Feature visualisation (`featurevis-random`) runs once at `--featurevis-size` px, `--featurevis-steps` Adam steps,
against its network's bare cost (steps x forward + backward of one image). One JSON line per case: name, device,
size, median_s (per image), images_per_s, reference images_per_s, ratio, projected hours for 1.3M.

    python tools/bench/spectra_bench.py [--official ~/learning_with_noise] [--official-python VENV/bin/python]
        [--sizes 128 256] [--images 5] [--device cuda] [--batch 32] [--batches 4] [--baseline REV]
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from benchlib import median_time

from pixforge.core.datagen import generate, rng
from pixforge.spectra import NAMES, deadleaves, get
from pixforge.spectra.featurevis import _deterministic
from pixforge.spectra.models import DEAD_LEAVES, STATISTICAL

OFFICIAL_SHAPES = {"dead-leaves-squares": "square", "dead-leaves-oriented": "oriented_square",
                   "dead-leaves-shapes": "mixed"}
OFFICIAL_STATISTICAL = {  # the official flags of each model (all with correlate_channels, the default)
    "spectrum": {"impose_spectrum": True}, "wmm": {"impose_wmm": True}, "color": {"impose_color_model": True},
    "spectrum-color": {"impose_spectrum": True, "impose_color_model": True},
    "spectrum-color-wmm": {"impose_spectrum": True, "impose_color_model": True, "impose_wmm": True},
}
STATISTICAL_SOURCE = Path("generate_datasets") / "statistical" / "generate_datasets.py"
# Run by --official-python: the official module's functions and classes (not its imports: torchvision, p_tqdm and
# the authors' utilities are only used to write files), timed per image, one JSON line per job.
OFFICIAL_DRIVER = r"""
import ast, json, random, statistics, sys, time
import numpy as np
import pyrtools as pt
path, jobs = sys.argv[1], json.loads(sys.argv[2])
body = [n for n in ast.parse(open(path).read()).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
ns = {"np": np, "random": random, "pt": pt}
exec(compile(ast.Module(body=body, type_ignores=[]), path, "exec"), ns)
for job in jobs:
    times = []
    for seed in range(job["images"] + 1):
        p = ns["GenerationParams"](resolution=job["size"], Niter=10, correlate_channels=True, **job["flags"])
        start = time.perf_counter()
        image = ns["generate_example_seed"](seed, p)
        times.append(time.perf_counter() - start)
    assert image.shape == (3, job["size"], job["size"]) and image.dtype == np.uint8, image.shape
    print(json.dumps(dict(name=job["name"], size=job["size"], median_s=statistics.median(times[1:]))), flush=True)
"""
ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def _official_dead_leaves(path: Path):
    source = (path / "generate_datasets" / "dead_leaves" / "generate_dataset.py").read_text()
    keep = [node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef) and node.name == "dead_leaves"]
    import cv2

    namespace = {"np": np, "cv2": cv2, "random": random}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(path), "exec"), namespace)
    counter = iter(range(10**9))

    def run(name, size):
        def one():
            seed = next(counter)
            random.seed(seed)
            np.random.seed(seed)
            namespace["dead_leaves"](size, 3, shape_mode=OFFICIAL_SHAPES[name])
        return one

    return run


def _official_statistical(python: str, path: Path, names: list[str], sizes: list[int], images: int) -> dict:
    """{(name, size): seconds per image} of the official statistical generator (wmm: 128 and 256 px only)."""
    jobs = [dict(name=n, size=s, images=images, flags=OFFICIAL_STATISTICAL[n]) for s in sizes for n in names
            if n in OFFICIAL_STATISTICAL and (s in (128, 256) or not STATISTICAL[n][1])]
    if not jobs:
        return {}
    out = subprocess.run([python, "-c", OFFICIAL_DRIVER, str(path / STATISTICAL_SOURCE), json.dumps(jobs)],
                         capture_output=True, text=True, env=os.environ | ONE_THREAD)
    if out.returncode:
        sys.exit(f"the official statistical generator failed in {python}:\n{out.stderr[-3000:]}")
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    return {(d["name"], d["size"]): d["median_s"] for d in lines}


def _deadleaves_at(rev: str):
    """`deadleaves.py` as it was at git revision `rev`, imported as a separate module."""
    source = subprocess.run(["git", "show", f"{rev}:packages/spectra/src/pixforge/spectra/deadleaves.py"],
                            capture_output=True, text=True, check=True, cwd=Path(__file__).parent).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"deadleaves_{rev}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def _chunk(module, model, size: int, chunks: int) -> float:
    """Median seconds of one chunk's host work (`sample_leaves` and `edges` of `module`)."""
    r = rng(0, 0)
    textures = model.texture_pool if DEAD_LEAVES[model.name] == "textured" else 0

    def one():
        module.edges(module.sample_leaves(r, size, model.kinds(), module.CHUNK, textures)["poly"])
    return median_time(one, chunks, warmup=10)


def _leaf_chunk(args, model, size: int, baseline) -> None:
    """Host work per image of the batched rasteriser's leaves: chunks per image x seconds per chunk."""
    textures = model.texture_pool if DEAD_LEAVES[model.name] == "textured" else 0
    chunks = np.mean([-(-len(deadleaves.paint(size, rng(0, i), model.kinds(), textures)[1]["kind"])
                        // deadleaves.CHUNK) for i in range(args.images)])
    chunk = _chunk(deadleaves, model, size, args.chunks)
    ref = _chunk(baseline, model, size, args.chunks) if baseline else None
    _line(f"{model.name}/leaf-chunk", "cpu", size, chunk * chunks, ref * chunks if ref else None,
          f"deadleaves.py at {args.baseline}" if ref else "none", chunks_per_image=round(float(chunks), 2),
          per_chunk_ms=round(chunk * 1e3, 4), reference_per_chunk_ms=round(ref * 1e3, 4) if ref else None)


def _batched(model, size: int, dev: torch.device, batch: int, batches: int) -> float:
    """Seconds per image of the batched torch path: whole batches, after one warm-up batch (median of calls)."""
    run = getattr(model, "sample_batched", model.sample)
    blocks = iter(range(1, 10**9))
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    return median_time(lambda: run(0, [batch * b + k for b in [next(blocks)] for k in range(batch)], size, dev),
                       batches, sync=sync) / batch


def _line(name: str, device: str, size: int, seconds: float, ref: float | None, reference: str, **extra) -> None:
    print(json.dumps(dict(name=name, device=device, size=size, median_s=round(seconds, 6),
                          images_per_s=round(1 / seconds, 2), reference=reference,
                          reference_images_per_s=round(1 / ref, 3) if ref else None,
                          ratio=round(ref / seconds, 2) if ref else None,
                          hours_for_1_3M=round(1.3e6 * seconds / 3600, 2), **extra)), flush=True)


def _model_cases(args, name: str, size: int, dev: torch.device, ref: float | None, reference: str,
                 options: dict) -> None:
    """The 1-process, 2-worker and batched lines of one model at one size."""
    cpu = torch.device("cpu")
    model = get(name, **options)
    model.sample(0, [0], size, cpu)  # builds the texture pool / network once
    counter = iter(range(1, 10**9))
    ours = median_time(lambda: model.sample(0, [next(counter)], size, cpu), args.images)
    _line(f"{name}/1-process", "cpu", size, ours, ref, reference)
    if args.workers_images > 0:  # 0: skip the 2-worker `generate` case
        with tempfile.TemporaryDirectory() as tmp:
            rate = generate(model, tmp, n=args.workers_images, size=size, workers=2,
                            show_progress=False)["images_per_s"]
        _line(f"{name}/generate-2-workers-png", "cpu", size, 1 / rate, ref, reference)
    batch = args.batch or (32 if dev.type == "cuda" else 4)
    per = _batched(get(name, batch=batch, **options), size, dev, batch, args.batches)
    _line(f"{name}/torch-batch-{batch}", str(dev), size, per, ref, reference)


def _featurevis(args, dev: torch.device) -> None:
    """featurevis-random at a small setting, against `steps` forward + backward passes of its network."""
    size, steps = args.featurevis_size, args.featurevis_steps
    net, _ = get("featurevis-random").network(0)
    x = torch.rand(1, 3, size, size, requires_grad=True)

    def passes():
        with _deterministic(torch.device("cpu")):  # as the optimisation runs on the CPU (oneDNN off)
            for _ in range(steps):
                net(x).sum().backward()
    bare = median_time(passes, args.images)
    _model_cases(args, "featurevis-random", size, dev, bare, f"{steps} x ResNet50 forward + backward, 1 image",
                 {"steps": steps})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, default=None, help="checkout of mbaradad/learning_with_noise")
    parser.add_argument("--official-python", default=None, help="python with pyrtools for the statistical models")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--workers-images", type=int, default=40, help="images for the 2-worker case (0: skip it)")
    parser.add_argument("--models", nargs="+", default=[n for n in NAMES if n != "featurevis-deadleaves"],
                        help="featurevis-deadleaves needs a trained encoder: it costs as much as featurevis-random")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="device of the batched torch path")
    parser.add_argument("--batch", type=int, default=None, help="images per batched call (cuda 32, cpu 4)")
    parser.add_argument("--batches", type=int, default=4, help="timed batched calls (after one warm-up call)")
    parser.add_argument("--chunks", type=int, default=200, help="timed leaf chunks per dead-leaves model and size")
    parser.add_argument("--baseline", default=None, help="git revision whose deadleaves.py is the leaf-chunk reference")
    parser.add_argument("--featurevis-size", type=int, default=64)
    parser.add_argument("--featurevis-steps", type=int, default=8)
    args = parser.parse_args()
    unknown = [n for n in args.models if n not in NAMES or n == "featurevis-deadleaves"]
    if unknown:
        parser.error(f"cannot bench {', '.join(unknown)}: choose among {', '.join(parser.get_default('models'))}")
    if args.official_python and not (args.official and (args.official / STATISTICAL_SOURCE).is_file()):
        parser.error(f"--official-python needs --official PATH, a checkout holding {STATISTICAL_SOURCE}")
    torch.set_num_threads(1)
    official = None
    if args.official is not None and (args.official / "generate_datasets" / "dead_leaves").is_dir():
        official = _official_dead_leaves(args.official)
    statistical = (_official_statistical(args.official_python, args.official, args.models, args.sizes, args.images)
                   if args.official_python else {})
    baseline = _deadleaves_at(args.baseline) if args.baseline else None
    dev = torch.device(args.device)
    for size in args.sizes:
        for name in args.models:
            if name.startswith("featurevis"):
                continue
            options = {"texture_pool": 16} if name == "dead-leaves-textured" else {}
            if name in OFFICIAL_SHAPES and official:
                ref, reference = median_time(official(name, size), args.images), "official generator, 1 process"
            elif (name, size) in statistical:
                ref, reference = statistical[name, size], "official generator (pyrtools), 1 process"
            else:
                ref, reference = None, "none"
            _model_cases(args, name, size, dev, ref, reference, options)
            if name in DEAD_LEAVES:
                _leaf_chunk(args, get(name, **options), size, baseline)
    if "featurevis-random" in args.models:
        _featurevis(args, dev)


if __name__ == "__main__":
    main()
