"""pixforge-forensics detector speed: training and inference clips/s per model, and `detect` frames/s end to end.

Per model (`--models`, at `--size` px, `--clip` frames for the clip models), on `--threads` CPU threads (or CUDA
when present and `--device` allows):
  train_model    forward + backward + Adam step on a batch of uint8 clips (the detector's normalisation included),
                 median of `--steps` steps after one warm-up: clips/s;
  train_data     the training items themselves (`data.TrainClips` with `--fake sbi` and `--distort-p 0.5`: crop PNGs
                 read, one self-blend draw per fake clip, a random distortion on half), from faces extract-faces cut
                 out of the bench video: clips/s on one process;
  infer          eval-mode batches of `--batch` clips, no gradients: clips/s;
  detect         `pixforge-forensics detect` on a `--seconds` long 1280 x 720 clip, every frame (`--frames 0`), the
                 face detected on every k-th frame (`--detect-every`, each k given) and tracked in between, no
                 overlay: frames/s end to end, split into decode (a plain decode of the clip, timed apart), the face
                 stage less decode (detect / track / landmarks / crops written) and the model stage (crops read, batched
                 inference), as `detect` reports them in its JSON `timing`. dlib's detector and landmark model
                 are loaded once per process, before the detect rows (`face_models`: load + the first frame's
                 detection), as `detect` does for the videos of one call;
  detect_folder  `detect` on a folder of `--folder` such clips (`--seconds` each, from successive offsets of the
                 source), every frame, `--folder-detect-every`, with the overlay (`--folder-nooverlay`: without):
                 wall seconds of the sequential loop (`prefetch=False`) against the default, which runs the next
                 video's face stage in a worker thread while this one's model stage and overlay run; the two
                 alternate call by call (`--folder-calls` each, the first side rotating), median per side; the
                 stage seconds summed over the videos (from the sequential run's JSON `timing`) bound what overlap
                 can save. Both must return the same probabilities (checked).
The bench clip is `data/videos/wolfgang.mp4` (tools/offline_videos.py) scaled to 1280 x 720 when present (a real
face), else scikit-image's astronaut wandering over a 720p frame. Fresh (untrained) weights: speed does not depend
on them. One JSON line per case with the 1-minute load average at its start and end (the machine may be shared).

    python tools/bench/forensics_detect_bench.py [--models xception,resnet_lstm] [--size 112] [--clip 8]
        [--batch 8] [--steps 5] [--threads 1] [--seconds 4] [--detect-every 1,5] [--skip-train] [--skip-detect]
        [--folder 4] [--folder-detect-every 1] [--folder-calls 3] [--folder-nooverlay] [--device auto|cpu|cuda]

On a GPU, each model at its standard input (the forensics README gives the loop over the five).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import alternating_medians, device_or_exit, median_time  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def load() -> float:
    return round(os.getloadavg()[0], 2)


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def bench_video(path: Path, seconds: float, start: float = 0.0) -> Path:
    """A 1280 x 720 clip with a face, from `start` seconds on: wolfgang.mp4 scaled, else the astronaut wandering."""
    import numpy as np

    from pixforge.export.video import VideoWriter, ffmpeg_exe

    source = ROOT / "data" / "videos" / "wolfgang.mp4"
    if source.is_file():
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-ss", str(start), "-i", str(source), "-t", str(seconds),
                        "-vf", "scale=1280:720", "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
                        "-pix_fmt", "yuv420p", str(path)], check=True)
        return path
    import cv2
    from skimage import data

    image, frames = data.astronaut(), []
    for t in range(int(25 * start), int(25 * (start + seconds))):
        s, tx, ty = 1.5, 640 + 120 * np.sin(t / 20), 360 + 40 * np.cos(t / 30)
        frames.append(cv2.warpAffine(image, np.array([[s, 0, tx - s * 223.0], [0, s, ty - s * 127.0]]), (1280, 720),
                                     borderMode=cv2.BORDER_REFLECT))
    with VideoWriter(path, 25, preset="veryfast") as writer:
        writer.write(np.stack(frames))
    return path


def make_run(folder: Path, model: str, size: int, clip: int) -> tuple[Path, dict]:
    from pixforge.core.checkpoint import save_release
    from pixforge.forensics.detector import build_detector, make_arch

    arch = make_arch(model, size, clip)
    det = build_detector(arch)
    folder.mkdir(parents=True, exist_ok=True)
    save_release(folder, det.net, {**arch, "step": 0, "seed": 0})
    return folder, arch


def bench_model(model: str, args, device, faces: Path | None) -> None:
    import torch
    import torch.nn.functional as F

    from pixforge.forensics import data as fdata
    from pixforge.forensics.detector import build_detector, make_arch

    arch = make_arch(model, args.size, args.clip)
    shape = (3, arch["size"], arch["size"]) if arch["sampling"] == "image" else (3, arch["clip"], arch["size"],
                                                                                 arch["size"])
    det = build_detector(arch).to(device)
    x = torch.randint(0, 256, (args.batch, *shape), dtype=torch.uint8, device=device)
    y = (torch.arange(args.batch, device=device) % 2).float()
    opt = torch.optim.Adam(det.parameters(), lr=1e-4)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    base = {"model": model, "size": arch["size"], "clip": arch["clip"], "batch": args.batch, "device": str(device),
            "threads": torch.get_num_threads()}

    def step():
        opt.zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(det(x), y).backward()
        opt.step()

    if not args.skip_train:
        start = load()
        det.train()
        t = median_time(step, args.steps, sync=sync)
        emit({**base, "case": "train_model", "median_s": t, "clips_per_s": args.batch / t, "load": [start, load()]})
        if faces is not None:
            start = load()
            real = fdata.scan(faces, landmarks=True)
            items = fdata.TrainClips(real, "sbi", arch["clip"], arch["size"], arch["sampling"], seed=0,
                                     distort_p=0.5)
            times = []
            for i in range(args.items):
                t0 = time.perf_counter()
                items[i]
                times.append(time.perf_counter() - t0)
            fake = statistics.median(times[1::2])
            real_t = statistics.median(times[0::2])
            emit({**base, "case": "train_data", "items": args.items, "real_median_s": real_t,
                  "fake_median_s": fake, "clips_per_s": 2 / (real_t + fake), "load": [start, load()]})
    start = load()
    det.eval()
    with torch.no_grad():
        t = median_time(lambda: det(x), args.steps, sync=sync)
    emit({**base, "case": "infer", "median_s": t, "clips_per_s": args.batch / t, "load": [start, load()]})


def bench_detect(model: str, args, video: Path, tmp: Path, decode_s: float, frames: int) -> None:
    import torch

    from pixforge.forensics.detect import detect

    run, arch = make_run(tmp / f"run-{model}", model, args.size, args.clip)
    for k in args.detect_every:
        start = load()
        out = tmp / f"detect-{model}-{k}"
        t0, cpu0 = time.perf_counter(), time.process_time()
        detect(videos=str(video), run=str(run), out=str(out), frames=0, detect_every=k, batch=args.batch,
               overlay=False, device=args.device, overwrite=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        timing = json.loads((out / f"{video.stem}.json").read_text())["timing"]
        emit({"case": "detect", "model": model, "size": arch["size"], "clip": arch["clip"], "detect_every": k,
              "frames": frames, "faces_cropped": timing.get("frames"), "wall_s": wall, "cpu_s": cpu,
              "frames_per_s": frames / wall, "decode_s": decode_s,
              "faces_s_less_decode": timing["faces_s"] - decode_s, "model_s": timing.get("model_s"),
              "threads": torch.get_num_threads(), "load": [start, load()]})


def bench_folder(model: str, args, tmp: Path) -> None:
    import torch

    from pixforge.forensics.detect import detect

    folder = tmp / "folder"
    if not folder.is_dir():
        folder.mkdir()
        for i in range(args.folder):
            bench_video(folder / f"clip{i}.mp4", args.seconds, start=i * args.seconds)
    run = tmp / f"run-{model}"
    if not run.is_dir():
        make_run(run, model, args.size, args.clip)
    results = {}

    def call(prefetch: bool) -> None:
        out = tmp / f"folder-{model}-{prefetch}"
        results[prefetch] = detect(videos=str(folder), run=str(run), out=str(out), frames=0,
                                   detect_every=args.folder_detect_every, batch=args.batch,
                                   overlay=not args.folder_nooverlay, device=args.device, overwrite=True,
                                   prefetch=prefetch)

    start = load()
    medians = alternating_medians({"sequential": lambda: call(False), "prefetched": lambda: call(True)}, 1,
                                  args.folder_calls, warmup=0)
    if list(results[True].items()) != list(results[False].items()):
        raise SystemExit(f"prefetched results differ: {results}")
    timings = [json.loads(p.read_text())["timing"] for p in sorted((tmp / f"folder-{model}-False").glob("*.json"))]
    stages = {f"{k}_sum": round(sum(t.get(k, 0.0) for t in timings), 2) for k in ("faces_s", "model_s", "overlay_s")}
    seq, pre = medians["sequential"][0], medians["prefetched"][0]
    emit({"case": "detect_folder", "model": model, "videos": args.folder, "seconds_each": args.seconds,
          "detect_every": args.folder_detect_every, "overlay": not args.folder_nooverlay, "calls": args.folder_calls,
          "sequential_s": seq, "prefetched_s": pre, "speedup": seq / pre, **stages,
          "threads": torch.get_num_threads(), "load": [start, load()]})


def warm_faces(video: Path) -> None:
    """Open the face backend and find the face on the clip's first frame: dlib's detector and landmark model load
    once per process (shared by every video `detect` reads), so the detect rows time the per-video face stage."""
    from pixforge.core.faces import detect_faces
    from pixforge.export.video import VideoReader
    from pixforge.forensics.extract import ExtractOptions, open_backend

    with VideoReader(video) as reader:
        frame = next(iter(reader))[0].copy()
    start, t0 = load(), time.perf_counter()
    found = detect_faces(frame, open_backend(ExtractOptions()))
    emit({"case": "face_models", "load_and_first_frame_s": time.perf_counter() - t0, "faces": len(found),
          "load": [start, load()]})


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="xception,resnet_lstm")
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--clip", type=int, default=8)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--items", type=int, default=16, help="training items timed for train_data")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--detect-every", default="1,5")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-detect", action="store_true")
    p.add_argument("--folder", type=int, default=4, help="videos in the detect_folder case (0: skip it)")
    p.add_argument("--folder-detect-every", type=int, default=1)
    p.add_argument("--folder-calls", type=int, default=3, help="detect_folder calls per side")
    p.add_argument("--folder-nooverlay", action="store_true")
    args = p.parse_args(argv)
    args.detect_every = [int(k) for k in args.detect_every.split(",")]

    import cv2
    import torch

    from pixforge.export.video import VideoReader

    device = device_or_exit(p, args.device)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    with tempfile.TemporaryDirectory(prefix="forensics-detect-bench-") as tmp_name:
        tmp = Path(tmp_name)
        video = bench_video(tmp / "clip720.mp4", args.seconds)
        t0 = time.perf_counter()
        with VideoReader(video) as reader:
            frames = sum(len(b) for b in reader)
        decode_s = time.perf_counter() - t0
        emit({"case": "decode", "frames": frames, "wall_s": decode_s, "frames_per_s": frames / decode_s,
              "size": "1280x720", "load": load()})
        if not args.skip_detect or args.folder:
            warm_faces(video)
        faces = None
        if not args.skip_train:
            from pixforge.forensics.extract import ExtractOptions, plan_jobs, run_extract

            size = max(args.size, 64)
            run_extract(plan_jobs([video], video, tmp / "faces", None), ExtractOptions(frames=16, size=size))
            faces = tmp / "faces"
        for model in args.models.split(","):
            bench_model(model, args, device, faces)
            if not args.skip_detect:
                bench_detect(model, args, video, tmp, decode_s, frames)
            if args.folder:
                bench_folder(model, args, tmp)


if __name__ == "__main__":
    main()
