"""pixforge-dfvae swap speed: frames per second end to end on a 720p (and 1080p) talking-head-like clip, and each
stage's share, against a plain decode -> encode of the same clip (the floor of any frame path).

The clip: scikit-image's astronaut scaled so her face is about 230 px tall, filmed by a panning camera at 25 fps
with a sine sound track (`--seconds`). The swap is `pixforge.dfvae.swap.swap_video` as the CLI runs it (decode and
face tracking + alignment in a background thread, the network on batches of `--batch` faces, paste-back, libx264
`--preset` CRF 18 with the audio muxed in), on a DF-VAE of `--resolution` (default 128, the default architecture)
with untrained weights (speed does not depend on them), through a network path (`--paths`): `torch`, the torch
session `swap` uses (`export.session`: `InferenceGraph`, channels_last, sub-pixel upsampling, one appearance code
per reference, chunks of 4 faces); `plain`, the network as trained as torch ran it before that rewrite
(`SwapGraph` over the trained model, nearest upsampling + 3x3 convolutions, channels_last, the whole batch at once:
the baseline); `onnx`, the exported graph (`export.graph`: sub-pixel upsampling as transposed convolutions) through
onnxruntime (`--onnx` = `--paths onnx`). With `--rounds R` every path runs R times, the paths alternating (the
starting path rotating per round) so load from other processes hits them alike; a path's line reports the median
round (by frames/s) and every round's frames/s. Stages (seconds summed over the run, each timed in the thread that
runs it; decode, detect, landmarks and align overlap the rest, so the shares are of the summed stage time, not of
the wall time): decode (waiting on ffmpeg's pipe), detect (dlib HOG on every `--detect-every`-th frame, shrunk to
`--max-side`), landmarks (dlib's 68-point predictor on every frame), align (warp, heatmaps, mask), network (the
batch's inputs stacked, the network, colour match), paste (inverse warp and blend), encode (writing to ffmpeg's
pipe, and the final mux).

    OMP_NUM_THREADS=1 python tools/bench/dfvae_bench.py [--sizes 720p [1080p]] [--seconds 4] [--batch 16]
        [--detect-every 5] [--resolution 128] [--threads N] [--preset medium] [--paths torch [plain] [onnx]]
        [--rounds 1] [--onnx] [--no-overlap] [--device auto|cpu|cuda] [--amp bf16|fp16]

`--device` runs the network there (default auto: the GPU when there is one; the other stages stay on the CPU, as
in `swap`), `--amp` under autocast (the torch and plain paths; `swap --amp`). The issue's GPU goal (>= 30 frames/s
at 1080p) is measured by

    python tools/bench/dfvae_bench.py --device cuda --sizes 720p 1080p --seconds 8 --batch 32 \
        --paths torch plain onnx --rounds 3            # and again with --amp bf16 (torch and plain)

One JSON line per size and path (the median round's figures): name, device, size, frames, seconds, fps,
rounds_fps and median_fps (every round's), stages (seconds), shares, ms_per_frame, cpu_s (this process' CPU
seconds, user + system, over the swap: less sensitive to other processes' load than the wall time), reference
(plain transcode) and its fps, load (1-minute load average at start and end: the machine may be shared).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
FPS = 25


def make_clip(path: Path, width: int, height: int, seconds: float) -> Path:
    """A talking-head-like clip: the astronaut, face ~ height / 3, panning slowly; sine audio."""
    from PIL import Image
    from skimage import data

    from pixforge.export.video import VideoWriter, ffmpeg_exe

    scale = height / 3 / 88  # the astronaut's face box is ~88 px in the 512 px photo
    side = round(512 * scale)
    photo = Image.fromarray(data.astronaut()).resize((side, side), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (max(width, side) + 64, max(height, side) + 64), (40, 40, 48))
    canvas.paste(photo, ((canvas.width - side) // 2, (canvas.height - side) // 2))
    cx, cy = canvas.width // 2 + (223 - 256) * scale, canvas.height // 2 + (125 - 256) * scale
    frames = round(seconds * FPS)
    silent = path.with_name(f"silent-{path.name}")
    with VideoWriter(silent, FPS, crf=16, preset="veryfast") as writer:
        for t in range(frames):
            x = cx - width / 2 + 24 * math.sin(2 * math.pi * t / frames)
            y = cy - height / 2 + 12 * math.cos(2 * math.pi * t / frames)
            x = min(max(0, x), canvas.width - width)
            y = min(max(0, y), canvas.height - height)
            writer.write(np.asarray(canvas.crop((round(x), round(y), round(x) + width, round(y) + height))))
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(silent), "-f", "lavfi", "-i",
                    f"sine=frequency=330:duration={frames / FPS}", "-c:v", "copy", "-c:a", "aac", "-shortest",
                    str(path)], check=True)
    silent.unlink()
    return path


def swap_case(clip: Path, out: Path, args, path: str, model_path: Path | None, dev) -> dict:
    import torch

    from pixforge.core.faces import open_backend
    from pixforge.core.runtime import autocast_dtype
    from pixforge.dfvae.export import session
    from pixforge.dfvae.model import Trained
    from pixforge.dfvae.nets import DFVAE, DFVAEConfig
    from pixforge.dfvae.pipeline import Aligner, FrameFaces, Swapper
    from pixforge.dfvae.swap import swap_video
    from pixforge.export.video import probe_video

    torch.manual_seed(0)
    arch = DFVAEConfig(resolution=args.resolution)
    trained = Trained(DFVAE(arch).eval().requires_grad_(False), vars(arch), ["bench"], {"padding": 0.25},
                      Path("untrained"), None)
    if path == "onnx":
        from pixforge.export.session import open_session

        net = open_session(model_path, str(dev), threads=args.threads)
    elif path == "plain":
        net = _plain_session(trained, dev, autocast_dtype(dev, args.amp))
    else:
        net = session(trained, dev, autocast_dtype(dev, args.amp))
    reference = np.full((args.resolution, args.resolution, 3), 128, np.uint8)
    faces = FrameFaces(open_backend("dlib"), Aligner(args.resolution, 0.25), probe_video(clip).fps,
                       args.detect_every, args.max_side)
    swapper = Swapper(net, reference)
    swapper.crops([Aligner(args.resolution, 0.25)(np.zeros((256, 256, 3), np.uint8),
                                                  _dummy_landmarks(), 0)] * 2)  # warm-up
    cpu = time.process_time()
    report = swap_video(clip, out, faces, swapper, batch=args.batch, comment="bench", preset=args.preset, quiet=True,
                        overlap=not args.no_overlap)
    report["cpu_s"] = time.process_time() - cpu
    return report


def _plain_session(trained, dev, amp_dtype):
    """The baseline: the network as trained (`SwapGraph` over the trained model, not the exported sub-pixel graph) run
    by torch on `dev` as `swap` ran it before `InferenceGraph` (weights and inputs channels_last, the whole batch in
    one pass)."""
    import torch

    from pixforge.core.session import TorchSession
    from pixforge.dfvae.export import SwapGraph, graph

    class ChannelsLast(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module.to(memory_format=torch.channels_last)

        def forward(self, *xs):
            return self.module(*[x.contiguous(memory_format=torch.channels_last) for x in xs])

    g = graph(trained)
    shapes = {s.name: ["N", *s.shape[1:]] if s.kind == "tensor" else ["N", 3, *s.size] for s in g.meta.inputs}
    plain = ChannelsLast(SwapGraph(copy.deepcopy(trained.model))).to(dev)
    return TorchSession(plain, g.meta, trained.source, dev, shapes=shapes, amp_dtype=amp_dtype)


def _dummy_landmarks() -> np.ndarray:
    from pixforge.core.faces.align import MEAN_FACE_68

    inner = MEAN_FACE_68 * 120 + 68
    jaw = np.stack([68 + 120 * np.linspace(0, 1, 17), 68 + 120 * (1 - np.abs(np.linspace(-1, 1, 17)) * 0.3)], 1)
    return np.concatenate([jaw, inner]).astype(np.float32)


def transcode(clip: Path, out: Path, preset: str) -> float:
    from pixforge.export.video import copy_video

    start = time.perf_counter()
    copy_video(clip, out, lambda frames: frames, batch_size=16, crf=18, preset=preset)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["720p"], choices=list(SIZES))
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--detect-every", type=int, default=5)
    parser.add_argument("--max-side", type=int, default=640)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch / onnxruntime threads (default: torch's)")
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--paths", nargs="+", default=["torch"], choices=["torch", "plain", "onnx"],
                        help="network paths: torch (swap's session), plain (the exported graph in torch, the "
                             "baseline), onnx (onnxruntime)")
    parser.add_argument("--rounds", type=int, default=1, help="runs per path, the paths alternating")
    parser.add_argument("--onnx", action="store_true", help="= --paths onnx")
    parser.add_argument("--no-overlap", action="store_true", help="decode + faces in the main thread")
    parser.add_argument("--device", default="auto", help="where the network runs: auto, cpu, cuda or cuda:N")
    parser.add_argument("--amp", default=False, help="autocast for the torch paths: bf16, or fp16 (CUDA only)")
    args = parser.parse_args()
    if args.onnx:
        args.paths = ["onnx"]
    import torch
    from benchlib import device_or_exit

    dev = device_or_exit(parser, args.device, args.amp)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_path = _export(tmp, args.resolution) if "onnx" in args.paths else None
        for size in args.sizes:
            width, height = SIZES[size]
            clip = make_clip(tmp / f"clip-{size}.mp4", width, height, args.seconds)
            load_start = round(os.getloadavg()[0], 2)
            reference = transcode(clip, tmp / f"plain-{size}.mp4", args.preset)
            runs: dict[str, list[dict]] = {path: [] for path in args.paths}
            for r in range(args.rounds):
                k = r % len(args.paths)
                for path in args.paths[k:] + args.paths[:k]:
                    runs[path].append(swap_case(clip, tmp / f"swap-{size}-{path}.mp4", args, path, model_path, dev))
            for path, reports in runs.items():
                report = sorted(reports, key=lambda rep: rep["fps"])[(len(reports) - 1) // 2]  # the median round
                total = sum(report["stages"].values())
                frames = report["frames"]
                print(json.dumps({
                    "name": f"dfvae/swap/{path}", "device": str(dev), "amp": args.amp, "size": size,
                    "resolution": args.resolution, "batch": args.batch, "detect_every": args.detect_every,
                    "threads": torch.get_num_threads(), "overlap": not args.no_overlap, "frames": frames,
                    "faces": report["faces"], "seconds": round(report["seconds"], 3), "fps": round(report["fps"], 3),
                    "rounds_fps": [round(rep["fps"], 3) for rep in reports],
                    "median_fps": round(statistics.median(rep["fps"] for rep in reports), 3),
                    "stages": report["stages"],
                    "shares": {k: round(v / total, 3) for k, v in report["stages"].items()},
                    "ms_per_frame": {k: round(1000 * v / frames, 1) for k, v in report["stages"].items()},
                    "cpu_s": round(report["cpu_s"], 2),
                    "reference": f"decode -> encode (libx264 crf 18 preset {args.preset}, audio)",
                    "reference_fps": round(frames / reference, 3),
                    "load": [load_start, round(os.getloadavg()[0], 2)]}), flush=True)


def _export(tmp: Path, resolution: int) -> Path:
    import torch

    from pixforge.core.onnx import export_onnx
    from pixforge.dfvae.export import INPUTS, graph
    from pixforge.dfvae.model import Trained
    from pixforge.dfvae.nets import DFVAE, DFVAEConfig

    torch.manual_seed(0)
    arch = DFVAEConfig(resolution=resolution)
    g = graph(Trained(DFVAE(arch).eval(), vars(arch), ["bench"], {"padding": 0.25}, Path("untrained"), None))
    return export_onnx(g.module, g.example, tmp / "dfvae.onnx", input_names=list(INPUTS), output_names=["swapped"],
                       inputs=g.meta.inputs, outputs=g.meta.outputs, package=g.meta.package,
                       version=g.meta.version, task=g.meta.task, extra=g.meta.extra, dynamic_shapes=g.dynamic)


if __name__ == "__main__":
    main()
