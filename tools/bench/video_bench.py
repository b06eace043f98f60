"""Frames per second of pixforge's ffmpeg-pipe VideoReader / VideoWriter against OpenCV, on synthetic clips.

Cases (per size, 480p and 1080p):
* `decode`: VideoReader (batches of 16, RGB) vs cv2.VideoCapture (+ cvtColor BGR->RGB, so both give the same
  frames), on an H.264 clip made by ffmpeg's testsrc2;
* `encode_libx264`: VideoWriter (libx264, crf 18, preset medium, yuv420p) vs cv2.VideoWriter with `mp4v`
  (MPEG-4 Part 2: OpenCV's pip wheel has no H.264 encoder, so the codecs differ and the ratio is not like for like);
* `encode_mpeg4`: VideoWriter with ffmpeg's `mpeg4` encoder vs the same cv2 `mp4v` (the same codec).

Prints one JSON line per case. Needs `pip install opencv-python-headless` for the reference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pixforge.export.video import VideoReader, VideoWriter, ffmpeg_exe

SIZES = {"480p": (854, 480), "1080p": (1920, 1080)}
FPS = 30


def make_clip(path: Path, width: int, height: int, seconds: float) -> Path:
    source = f"testsrc2=size={width}x{height}:rate={FPS}"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", source, "-t", str(seconds),
                    "-c:v", "libx264", "-crf", "18", "-preset", "medium", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def median_time(repeats: int, fn, *args) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def decode_pixforge(path: Path) -> int:
    with VideoReader(path, batch_size=16) as reader:
        return sum(len(batch) for batch in reader)


def decode_cv2(cv2, path: Path) -> int:
    cap, count = cv2.VideoCapture(str(path)), 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        count += 1
    cap.release()
    return count


def encode_pixforge(path: Path, frames: np.ndarray, codec: str) -> None:
    with VideoWriter(path, FPS, codec=codec, crf=18, preset="medium") as writer:
        for start in range(0, len(frames), 16):
            writer.write(frames[start:start + 16])


def encode_cv2(cv2, path: Path, frames: np.ndarray) -> None:
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (w, h))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def report(name: str, size: str, n: int, seconds: float, reference: str, reference_seconds: float) -> None:
    fps, ref_fps = n / seconds, n / reference_seconds
    print(json.dumps({"name": name, "device": "cpu", "size": size, "median_s": round(seconds, 4),
                      "fps": round(fps, 1), "reference": reference, "reference_fps": round(ref_fps, 1),
                      "ratio": round(fps / ref_fps, 3)}), flush=True)


def bench_size(cv2, tmp: Path, size: str, seconds: float, repeats: int) -> None:
    clip = make_clip(tmp / f"{size}.mp4", *SIZES[size], seconds)
    with VideoReader(clip, batch_size=16) as reader:
        frames = np.concatenate(list(reader))
    n = len(frames)
    assert decode_cv2(cv2, clip) == n, "OpenCV and ffmpeg disagree on the frame count"
    report("decode", size, n, median_time(repeats, decode_pixforge, clip),
           "cv2.VideoCapture + cvtColor", median_time(repeats, decode_cv2, cv2, clip))
    ref = median_time(repeats, encode_cv2, cv2, tmp / "cv2.mp4", frames)
    for codec in ("libx264", "mpeg4"):
        ours = median_time(repeats, encode_pixforge, tmp / f"{codec}.mp4", frames, codec)
        report(f"encode_{codec}", size, n, ours, "cv2.VideoWriter mp4v (MPEG-4 Part 2)", ref)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="clip length")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (the median is reported)")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args()
    try:
        import cv2
    except ImportError:
        sys.exit("video_bench: the OpenCV reference needs `pip install opencv-python-headless`")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            bench_size(cv2, Path(tmp), size, args.seconds, args.repeats)


if __name__ == "__main__":
    main()
