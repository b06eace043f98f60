"""pixforge-forensics speed: frames/s per distortion, and whole videos against a plain ffmpeg transcode.

Per frame (1080p and 480p, level 3): the official way (OpenCV calls on numpy BGR frames, as
DeeperForensics-1.0's `distortions.py` does them, needs opencv-python-headless), pixforge's reference path
(`pixforge.forensics.distortions`, bit-exact), and the torch batch path on the CPU and on CUDA when present.
Whole video (decode -> distort -> encode, audio kept, level 3 and a 3-type mixture): `pixforge.forensics.video`
against `ffmpeg -i clip -c:v libx264 -crf C -preset P` of the same clip, each in a child process whose peak RSS
is reported (peak_rss_mb: the biggest process, often the encoder; python_rss_mb: pixforge's own process),
and `none`: decode -> RGB frames -> encode with no distortion (the floor of every frame path).
One JSON line per case: name, device, size, median_s, fps, reference, reference_median_s, ratio (reference
time / pixforge time: > 1 means pixforge is faster; for videos, pixforge time / transcode time, and cpu_ratio
the same for CPU seconds), content_ratio (pixforge time / a plain transcode of pixforge's own output: the
encoder's cost depends on what it encodes, e.g. noise costs it several times more than the clean clip), and
load (the 1-minute load average when the case finished: the machine is shared).

The plain transcode for a video case uses the same encoder settings as pixforge's final pass: libx264 at the
same `--preset`, CRF 18 (pixforge's default output), or the VC level's CRF when the case ends with VC.
Per-frame timings are medians after one warm-up call.

    python tools/bench/forensics_bench.py [--seconds 10] [--preset veryfast] [--iters 5] [--repeats 3]
        [--skip-video] [--skip-frames] [--skip-torch] [--only CS,GB]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from benchlib import median_time

from pixforge.export.video import ffmpeg_exe
from pixforge.forensics import batch
from pixforge.forensics.distortions import FRAME_TYPES, Randomness, distort, parameter

SIZES = {"1080p": (1080, 1920), "480p": (480, 854)}


def _official(kind: str):
    """The official per-frame functions, written the way distortions.py writes them (for timing only)."""
    import cv2

    def ycbcr(img):
        x = cv2.cvtColor(img.astype(np.float32), cv2.COLOR_BGR2YCR_CB)[:, :, (0, 2, 1)].astype(np.float32)
        x[:, :, 0] = (x[:, :, 0] * 219 + 16) / 255.0
        x[:, :, 1:] = (x[:, :, 1:] * 224 + 16) / 255.0
        return x

    def bgr(x):
        x = x.astype(np.float32)
        x[:, :, 0] = (x[:, :, 0] * 255.0 - 16) / 219
        x[:, :, 1:] = (x[:, :, 1:] * 255.0 - 16) / 224
        return cv2.cvtColor(x[:, :, (0, 2, 1)].astype(np.float32), cv2.COLOR_YCR_CB2BGR)

    p = parameter(kind, 3)

    def cs(img):
        x = ycbcr(img)
        x[:, :, 1:] = 0.5 + (x[:, :, 1:] - 0.5) * p
        return bgr(x).astype(np.uint8)

    def bw(img):
        for _ in range(min(img.shape[:2]) // 256 * p):
            c, r = random.randint(0, img.shape[1] - 9), random.randint(0, img.shape[0] - 9)
            img[r:r + 8, c:c + 8] = 128
        return img

    def gnc(img):
        x = ycbcr(img) / 255
        return np.clip(bgr((x + np.sqrt(p) * np.random.randn(*x.shape)) * 255), 0, 255).astype(np.uint8)

    def jpeg(img):
        h, w = img.shape[:2]
        return cv2.resize(cv2.resize(img, (w // p, h // p)), (w, h))

    return {"CS": cs, "CC": lambda img: (img.astype(np.float32) * p).astype(np.uint8), "BW": bw, "GNC": gnc,
            "GB": lambda img: cv2.GaussianBlur(img, (p, p), p / 6), "JPEG": jpeg}[kind]


def _emit(**row) -> None:
    print(json.dumps(dict(row, load=round(os.getloadavg()[0], 2))), flush=True)


def frame_cases(iters: int, kinds: list[str], torch_path: bool) -> None:
    from skimage import data

    rng = np.random.default_rng(0)
    for label, (h, w) in SIZES.items():
        tiles = np.tile(data.astronaut(), (h // 512 + 1, w // 512 + 1, 1))[:h, :w]
        frame = np.ascontiguousarray(tiles ^ rng.integers(0, 8, tiles.shape, dtype=np.uint8))
        for kind in kinds:
            official = median_time(lambda k=kind, f=frame: _official(k)(f[..., ::-1].copy()), iters)
            ours = median_time(lambda k=kind, f=frame: distort(f, k, 3, Randomness(0, exact=False)), iters)
            base = dict(size=label, reference="official (OpenCV, per frame)", reference_median_s=official)
            _emit(name=f"frame/{kind}/reference-path", device="cpu", median_s=ours, fps=1 / ours,
                  ratio=official / ours, **base)
            devices = (["cpu"] if torch_path else []) + (["cuda"] if torch.cuda.is_available() else [])
            for device in devices:
                x = torch.from_numpy(frame).permute(2, 0, 1)[None].float().repeat(8, 1, 1, 1).to(device)
                sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
                t = median_time(lambda k=kind, x=x: batch.distort_batch(x, k, 3), iters, sync=sync) / 8
                _emit(name=f"frame/{kind}/torch-batch8", device=device, median_s=t, fps=1 / t, ratio=official / t,
                      **base)


CHILD = """
import resource, sys
from pixforge.forensics.video import perturb_video
from pixforge.export.video import copy_video
src, dst, spec, preset = sys.argv[1:5]
if spec == "none":  # decode -> RGB frames -> encode with audio, no distortion: the floor of every frame path
    copy_video(src, dst, lambda frames: frames, batch_size=4, crf=18, preset=preset)
else:
    steps = [(k, int(v)) for k, v in (s.split(':') for s in spec.split(','))]
    perturb_video(src, dst, steps, seed=0, crf=18, preset=preset)
print("python-peak-rss-kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


MEASURE = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(max(me.ru_maxrss, kids.ru_maxrss), kids.ru_utime + kids.ru_stime)
"""


def _child(cmd: list[str]) -> tuple[float, float, float, float]:
    """(seconds, CPU seconds of all its processes, peak RSS in MB of the biggest process (often the encoder),
    peak RSS in MB of pixforge's Python process or 0) of a command, run under a fresh small Python process (a
    child forked from this big one would inherit its RSS high-water mark)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed: {' '.join(cmd)}\n{proc.stderr}")
    rss, cpu = proc.stdout.split()[-2:]
    python = [line.split()[-1] for line in proc.stderr.splitlines() if line.startswith("python-peak-rss-kb")]
    return seconds, float(cpu), int(rss) / 1024, int(python[-1]) / 1024 if python else 0.0


def _transcode(clip: Path, out: Path, crf: int, preset: str) -> tuple[float, float, float, float]:
    return _child([ffmpeg_exe(), "-v", "error", "-y", "-i", str(clip), "-c:v", "libx264", "-crf", str(crf),
                   "-preset", preset, "-c:a", "aac", str(out)])


def video_cases(seconds: int, preset: str, kinds: list[str], repeats: int) -> None:
    """Each case alternates with its plain transcode `repeats` times (the load on a shared machine drifts);
    medians of wall time and of CPU time (user + system of every process: on a saturated machine the wall
    time follows it)."""
    with tempfile.TemporaryDirectory() as tmp:
        clip, out = Path(tmp) / "clip.mp4", Path(tmp) / "out.mp4"
        subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=25:"
                        f"duration={seconds}", "-f", "lavfi", "-i", f"sine=duration={seconds}", "-c:v", "libx264",
                        "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", str(clip)],
                       check=True)
        again = Path(tmp) / "again.mp4"
        cases = ["none"] + [f"{k}:3" for k in kinds] + ["VC:3", "CS:3,GB:3,JPEG:3"]
        for steps in cases:
            crf = int(parameter("VC", 3)) if steps.endswith("VC:3") else 18
            plain, ours, content = [], [], []
            for _ in range(repeats):
                out.unlink(missing_ok=True)
                plain.append(_transcode(clip, out, crf, preset))
                out.unlink()
                ours.append(_child([sys.executable, "-c", CHILD, str(clip), str(out), steps, preset]))
                content.append(_transcode(out, again, crf, preset))
            t, cpu, rss, python_rss = map(statistics.median, zip(*ours, strict=True))
            pt, pcpu, prss, _ = map(statistics.median, zip(*plain, strict=True))
            ct, ccpu, _, _ = map(statistics.median, zip(*content, strict=True))
            _emit(name=f"video/{steps}", device="cpu", size=f"1080p {seconds}s", median_s=t, fps=25 * seconds / t,
                  cpu_s=round(cpu, 2), peak_rss_mb=round(rss), python_rss_mb=round(python_rss),
                  reference=f"ffmpeg transcode libx264 -crf {crf} -preset {preset}", reference_median_s=pt,
                  reference_cpu_s=round(pcpu, 2), reference_rss_mb=round(prss), ratio=t / pt, cpu_ratio=cpu / pcpu,
                  content_reference_s=ct, content_reference_cpu_s=round(ccpu, 2), content_ratio=t / ct)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each video case and its transcode")
    parser.add_argument("--skip-video", action="store_true")
    parser.add_argument("--skip-frames", action="store_true")
    parser.add_argument("--skip-torch", action="store_true", help="no torch batch path on the CPU")
    parser.add_argument("--only", default=",".join(FRAME_TYPES), help="comma-separated frame distortions")
    args = parser.parse_args()
    kinds = [k.strip().upper() for k in args.only.split(",") if k.strip()]
    if not args.skip_frames:
        frame_cases(args.iters, kinds, not args.skip_torch)
    if not args.skip_video:
        video_cases(args.seconds, args.preset, kinds, args.repeats)


if __name__ == "__main__":
    main()
