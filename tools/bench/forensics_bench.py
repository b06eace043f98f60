"""pixforge-forensics speed: each frame distortion against the official function, and whole videos against a
plain ffmpeg transcode.

Per frame (1080p and 480p, level 3), each side as its own script runs it, on the same picture: the official
function (DeeperForensics-1.0 `perturbation/distortions.py`: imported from `--official DIR` when given, else the
faithful transcription below; needs opencv-python-headless) on the BGR frame OpenCV's VideoCapture hands it,
modified in place where the official does (BW); pixforge's CLI path, `video.distort_frames` on the RGB batch
pixforge's decoder hands it (in place: BW draws on it, the others write their result back). The two calls
alternate, one each per round, for `--rounds` rounds after a warm-up; medians. One thread on both sides
(OpenCV, BLAS; `--threads`). GNC is timed in both of pixforge's modes: `GNC` (the video default, fast noise)
and `GNC-exact` (the official random stream and arithmetic). The torch batch path is timed on the CPU (unless
--skip-torch) and on CUDA when present.
Whole video, each in a child process whose CPU seconds and peak RSS are reported (peak_rss_mb: the biggest
process, often the encoder; python_rss_mb: pixforge's own process): with `--official DIR`, the official
`add_distortion_to_video.py --via_xvid` against `pixforge-forensics perturb --via-xvid`, alternating (see
`official_video_cases`); and (unless --skip-transcode) `pixforge.forensics.video` (decode -> distort -> encode,
audio kept, level 3 and a 3-type mixture) against `ffmpeg -i clip -c:v libx264 -crf C -preset P` of the same
clip, with `none`: decode -> RGB frames -> encode with no distortion (the floor of every frame path).
One JSON line per case: name, device, size, median_s, fps, reference, reference_median_s, ratio (reference
time / pixforge time: > 1 means pixforge is faster; for videos, pixforge time / transcode time, and cpu_ratio
the same for CPU seconds), content_ratio (pixforge time / a plain transcode of pixforge's own output: the
encoder's cost depends on what it encodes, e.g. noise costs it several times more than the clean clip), and
load (the 1-minute load average when the case started and when it finished: the machine may be shared).

The plain transcode for a video case uses the same encoder settings as pixforge's final pass: libx264 at the
same `--preset`, CRF 18 (pixforge's default output), or the VC level's CRF when the case ends with VC.

    python tools/bench/forensics_bench.py [--official DIR] [--rounds 25] [--threads 1] [--seconds 10]
        [--preset veryfast] [--repeats 3] [--skip-video] [--skip-frames] [--skip-torch] [--skip-transcode]
        [--only CS,GB]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

from pixforge.export.video import ffmpeg_exe
from pixforge.forensics.distortions import FRAME_TYPES, Randomness, parameter
from pixforge.forensics.video import distort_frames

SIZES = {"1080p": (1080, 1920), "480p": (480, 854)}


def _transcription():
    """The official `distortions.py` frame functions, line for line (MIT, EndlessSora/DeeperForensics-1.0)."""

    def bgr2ycbcr(img_bgr):
        img_bgr = img_bgr.astype(np.float32)
        img_ycrcb = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2YCR_CB)
        img_ycbcr = img_ycrcb[:, :, (0, 2, 1)].astype(np.float32)
        img_ycbcr[:, :, 0] = (img_ycbcr[:, :, 0] * (235 - 16) + 16) / 255.0
        img_ycbcr[:, :, 1:] = (img_ycbcr[:, :, 1:] * (240 - 16) + 16) / 255.0
        return img_ycbcr

    def ycbcr2bgr(img_ycbcr):
        img_ycbcr = img_ycbcr.astype(np.float32)
        img_ycbcr[:, :, 0] = (img_ycbcr[:, :, 0] * 255.0 - 16) / (235 - 16)
        img_ycbcr[:, :, 1:] = (img_ycbcr[:, :, 1:] * 255.0 - 16) / (240 - 16)
        img_ycrcb = img_ycbcr[:, :, (0, 2, 1)].astype(np.float32)
        return cv2.cvtColor(img_ycrcb, cv2.COLOR_YCR_CB2BGR)

    def color_saturation(img, param):
        ycbcr = bgr2ycbcr(img)
        ycbcr[:, :, 1] = 0.5 + (ycbcr[:, :, 1] - 0.5) * param
        ycbcr[:, :, 2] = 0.5 + (ycbcr[:, :, 2] - 0.5) * param
        return ycbcr2bgr(ycbcr).astype(np.uint8)

    def color_contrast(img, param):
        return (img.astype(np.float32) * param).astype(np.uint8)

    def block_wise(img, param):
        width = 8
        block = np.ones((width, width, 3)).astype(int) * 128
        param = min(img.shape[0], img.shape[1]) // 256 * param
        for _ in range(param):
            r_w = random.randint(0, img.shape[1] - 1 - width)
            r_h = random.randint(0, img.shape[0] - 1 - width)
            img[r_h:r_h + width, r_w:r_w + width, :] = block
        return img

    def gaussian_noise_color(img, param):
        ycbcr = bgr2ycbcr(img) / 255
        size_a = ycbcr.shape
        b = (ycbcr + math.sqrt(param) * np.random.randn(size_a[0], size_a[1], size_a[2])) * 255
        b = ycbcr2bgr(b)
        return np.clip(b, 0, 255).astype(np.uint8)

    def gaussian_blur(img, param):
        return cv2.GaussianBlur(img, (param, param), param * 1.0 / 6)

    def jpeg_compression(img, param):
        h, w, _ = img.shape
        img = cv2.resize(img, (w // param, h // param))
        return cv2.resize(img, (w, h))

    return {"CS": color_saturation, "CC": color_contrast, "BW": block_wise, "GNC": gaussian_noise_color,
            "GB": gaussian_blur, "JPEG": jpeg_compression}


def official_functions(folder: str | None) -> tuple[dict, str]:
    """{type: official function} from the official `distortions.py` in `folder`, or the transcription."""
    if folder is None:
        return _transcription(), "official (transcription of distortions.py)"
    spec = importlib.util.spec_from_file_location("official_distortions", Path(folder) / "distortions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return ({"CS": module.color_saturation, "CC": module.color_contrast, "BW": module.block_wise,
             "GNC": module.gaussian_noise_color, "GB": module.gaussian_blur, "JPEG": module.jpeg_compression},
            f"official ({Path(folder) / 'distortions.py'})")


def _emit(**row) -> None:
    print(json.dumps(dict(row, load=round(os.getloadavg()[0], 2))), flush=True)


def _alternate(a, b, rounds: int) -> tuple[float, float]:
    """Median seconds of `a()` and of `b()`, called alternately (a, b, a, b, ...) after one warm-up each."""
    a(), b()
    times = ([], [])
    for _ in range(rounds):
        for fn, out in ((a, times[0]), (b, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def frame_cases(rounds: int, kinds: list[str], official: dict, reference: str, torch_path: bool) -> None:
    from skimage import data

    rng = np.random.default_rng(0)
    cases = [(k, exact) for k in kinds for exact in ((False, True) if k == "GNC" else (False,))]
    for label, (h, w) in SIZES.items():
        tiles = np.tile(data.astronaut(), (h // 512 + 1, w // 512 + 1, 1))[:h, :w]
        rgb = np.ascontiguousarray(tiles ^ rng.integers(0, 8, tiles.shape, dtype=np.uint8))
        for kind, exact in cases:  # fresh frames per case: BW and CC change them in place, round after round
            bgr = np.ascontiguousarray(rgb[..., ::-1])  # what cv2.VideoCapture.read() hands the official script
            batch = rgb[None].copy()  # what pixforge's VideoReader hands distort_frames
            name = f"{kind}-exact" if exact else kind
            fn, p = official[kind], parameter(kind, 3)
            randomness = Randomness(0, exact=exact)
            random.seed(0)
            np.random.seed(0)
            load = round(os.getloadavg()[0], 2)
            theirs, ours = _alternate(lambda f=fn, p=p, x=bgr: f(x, p),
                                      lambda k=kind, r=randomness, x=batch: distort_frames(x, [(k, 3)], r), rounds)
            _emit(name=f"frame/{name}/cli-path", device="cpu", size=label, median_s=ours, fps=1 / ours,
                  reference=reference, reference_median_s=theirs, ratio=theirs / ours, rounds=rounds,
                  load_start=load)
            if exact:
                continue
            devices = (["cpu"] if torch_path else []) + (["cuda"] if _cuda() else [])
            for device in devices:
                _torch_case(kind, rgb, device, rounds, label, theirs, reference)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _torch_case(kind: str, frame: np.ndarray, device: str, rounds: int, label: str, theirs: float,
                reference: str) -> None:
    import torch
    from benchlib import median_time

    from pixforge.forensics import batch

    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float().repeat(8, 1, 1, 1).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    t = median_time(lambda: batch.distort_batch(x, kind, 3), rounds, sync=sync) / 8
    _emit(name=f"frame/{kind}/torch-batch8", device=device, size=label, median_s=t, fps=1 / t, ratio=theirs / t,
          reference=reference, reference_median_s=theirs)


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


CLI_CHILD = """
import resource, sys
from pixforge.forensics.cli import main
sys.argv = ["pixforge-forensics", *sys.argv[1:]]
try:
    main()
finally:
    print("python-peak-rss-kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def _child(cmd: list[str], env: dict | None = None) -> tuple[float, float, float, float]:
    """(seconds, CPU seconds of all its processes, peak RSS in MB of the biggest process (often the encoder),
    peak RSS in MB of pixforge's Python process or 0) of a command, run under a fresh small Python process (a
    child forked from this big one would inherit its RSS high-water mark)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed: {' '.join(cmd)}\n{proc.stderr}")
    rss, cpu = proc.stdout.split()[-2:]
    python = [line.split()[-1] for line in proc.stderr.splitlines() if line.startswith("python-peak-rss-kb")]
    return seconds, float(cpu), int(rss) / 1024, int(python[-1]) / 1024 if python else 0.0


def _transcode(clip: Path, out: Path, crf: int, preset: str) -> tuple[float, float, float, float]:
    return _child([ffmpeg_exe(), "-v", "error", "-y", "-i", str(clip), "-c:v", "libx264", "-crf", str(crf),
                   "-preset", preset, "-c:a", "aac", str(out)])


def _make_clip(path: Path, seconds: int) -> Path:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=25:"
                    f"duration={seconds}", "-f", "lavfi", "-i", f"sine=duration={seconds}", "-c:v", "libx264",
                    "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)],
                   check=True)
    return path


def official_video_cases(folder: str, seconds: int, kinds: list[str], repeats: int) -> None:
    """Whole videos as each script runs them, alternating: the official `add_distortion_to_video.py --via_xvid`
    (OpenCV decode of every frame into a list, the distortion, OpenCV's XVID writer, then `ffmpeg -i tmp.avi
    out.mp4`; its default, non-XVID path needs an H.264 encoder that pip's OpenCV lacks) against `pixforge-forensics
    perturb --via-xvid` (the same OpenCV capture, distortion, XVID writer and ffmpeg re-encode, streamed
    instead of held in a list, plus the audio). Level 3, the same clip, ffmpeg on PATH for the official's call."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "bin").mkdir()
        (tmp / "bin" / "ffmpeg").symlink_to(ffmpeg_exe())
        env = dict(os.environ, PATH=f"{tmp / 'bin'}{os.pathsep}{os.environ['PATH']}")
        clip = _make_clip(tmp / "clip.mp4", seconds)
        script = str(Path(folder) / "add_distortion_to_video.py")
        for kind in kinds:
            theirs, ours = [], []
            for _ in range(repeats):
                out = tmp / "official.mp4"
                out.unlink(missing_ok=True)
                theirs.append(_child([sys.executable, script, "--vid_in", str(clip), "--vid_out", str(out),
                                      "--type", kind, "--level", "3", "--via_xvid"], env))
                if not out.is_file():
                    raise SystemExit(f"the official script wrote no {out} for {kind}")
                ours.append(_child([sys.executable, "-c", CLI_CHILD, "perturb", str(clip), "--out", str(tmp / "ours"),
                                    "--type", kind, "--level", "3", "--via-xvid", "--overwrite"], env))
            t, cpu, rss, python_rss = map(statistics.median, zip(*ours, strict=True))
            rt, rcpu, rrss, _ = map(statistics.median, zip(*theirs, strict=True))
            _emit(name=f"video/{kind}:3/via-xvid", device="cpu", size=f"1080p {seconds}s", median_s=t,
                  cpu_s=round(cpu, 2), peak_rss_mb=round(rss), python_rss_mb=round(python_rss),
                  reference="official add_distortion_to_video.py --via_xvid", reference_median_s=rt,
                  reference_cpu_s=round(rcpu, 2), reference_peak_rss_mb=round(rrss), ratio=rt / t,
                  cpu_ratio=rcpu / cpu, repeats=repeats)


def video_cases(seconds: int, preset: str, kinds: list[str], repeats: int) -> None:
    """Each case alternates with its plain transcode `repeats` times (the load on a shared machine drifts);
    medians of wall time and of CPU time (user + system of every process: on a saturated machine the wall
    time follows it)."""
    with tempfile.TemporaryDirectory() as tmp:
        clip, out = _make_clip(Path(tmp) / "clip.mp4", seconds), Path(tmp) / "out.mp4"
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
    parser.add_argument("--official", help="the official perturbation/ folder (its distortions.py is timed)")
    parser.add_argument("--rounds", type=int, default=25, help="alternating rounds per frame case")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV and BLAS threads on both sides")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each video case and its transcode")
    parser.add_argument("--skip-video", action="store_true")
    parser.add_argument("--skip-frames", action="store_true")
    parser.add_argument("--skip-torch", action="store_true", help="no torch batch path on the CPU")
    parser.add_argument("--skip-transcode", action="store_true", help="no video cases against a plain transcode")
    parser.add_argument("--only", default=",".join(FRAME_TYPES), help="comma-separated frame distortions")
    args = parser.parse_args()
    kinds = [k.strip().upper() for k in args.only.split(",") if k.strip()]
    if not args.skip_frames:
        cv2.setNumThreads(args.threads)
        if not args.skip_torch:
            import torch

            torch.set_num_threads(args.threads)
        with threadpool_limits(args.threads):
            frame_cases(args.rounds, kinds, *official_functions(args.official), not args.skip_torch)
    if not args.skip_video:
        if args.official:
            official_video_cases(args.official, args.seconds, kinds, args.repeats)
        if not args.skip_transcode:
            video_cases(args.seconds, args.preset, kinds, args.repeats)


if __name__ == "__main__":
    main()
