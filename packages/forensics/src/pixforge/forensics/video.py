"""Distort whole videos: frames streamed through core's ffmpeg reader/writer, audio kept, checked like the
official `check_video.py` (same size, frame rate and frame count), written atomically.

A video's distortions are a list of `(type, level)` steps applied in order (the official meta line
`TYPE:LEVEL TYPE:LEVEL ...`). Frame steps run on every frame; VC is a libx264 re-encode at the level's CRF, so a
VC step in the middle of a mixture ends one encode pass and the next steps read the compressed frames back (a
hidden temporary video beside the output, removed afterwards). Without a VC step at the end the output is
encoded with `crf` (18: visually lossless, so the distortions, not our encoder, shape the result). With
`via_xvid` the final pass is the official `--via_xvid` (made to align with the released dataset) call for call:
OpenCV decodes the frames, they are distorted, OpenCV's writer makes an XVID .avi, ffmpeg's default libx264 (CRF
23) re-encodes it, so the video is the official script's (plus the audio, which the official drops). A pass without
frame steps (VC alone or first, the XVID re-encode) is a single plain ffmpeg transcode, as the official VC
(`ffmpeg -i in -crf P out`) is.

Randomness is a pure function of `(seed, key)` (the key is the video's path relative to its input root), so
videos can be processed in any order, in shards, in parallel or again, with identical results.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pixforge.export.atomic import atomic_path
from pixforge.export.errors import PixforgeError

# the torch-free video I/O that pixforge.core.io re-exports: importing torch would cost seconds and ~200 MB
from pixforge.export.video import (
    VideoInfo,
    VideoReader,
    VideoWriter,
    ffmpeg_error,
    ffmpeg_exe,
    passthrough_args,
    probe_video,
)
from pixforge.forensics.distortions import LEVELS, TYPES, Randomness, check_level, check_type, distort, parameter

Steps = list[tuple[str, int]]
DEFAULT_CRF = 18
XVID_FINAL_CRF = 23  # what `ffmpeg -i tmp.avi out.mp4` uses: libx264's default


def video_seed(seed: int, key: str) -> int:
    """A 63-bit seed for one video from the run's seed and the video's key (its relative path)."""
    digest = hashlib.sha256(f"{int(seed)}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def draw_steps(seed: int, key: str, kind: str = "random", level: int | str = "random", mix: int = 1) -> Steps:
    """The distortions of one video: `mix` distinct types (all 7 when `kind` is "random") in random order,
    each at `level` or at an independent random level."""
    rng = random.Random(video_seed(seed, f"steps\0{key}"))
    if mix == 1:
        kinds = [rng.choice(TYPES) if kind == "random" else check_type(kind)]
    else:
        if kind != "random":
            raise PixforgeError(f"--mix {mix} draws its types at random: leave --type at random")
        kinds = rng.sample(TYPES, mix)
    return [(k, rng.choice(LEVELS) if level == "random" else check_level(level)) for k in kinds]


def format_meta(name: str, steps: Steps) -> str:
    return " ".join([name] + [f"{k}:{lv}" for k, lv in steps])


@lru_cache
def _encoders(exe: str) -> str:
    return subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout


def require_libx264() -> None:
    """Fail early (one line, how to fix it) when the ffmpeg in use cannot encode H.264 with libx264."""
    exe = ffmpeg_exe()
    if " libx264 " not in _encoders(exe):
        raise PixforgeError(f"the ffmpeg at {exe} has no libx264 encoder (needed for VC and the output videos): "
                            "put an ffmpeg built with libx264 first on PATH, e.g. the one in the imageio-ffmpeg "
                            "wheel (pip install imageio-ffmpeg; python -c 'import imageio_ffmpeg as i; "
                            "print(i.get_ffmpeg_exe())')")


@dataclass
class _Pass:
    """One decode -> frame steps -> encode pass."""

    steps: Steps
    crf: int
    xvid: bool = False


class OpenCVReader:
    """The official script's decoder for the XVID pass: `cv2.VideoCapture` (OpenCV's own FFmpeg, the frames the
    official distorts), in batches of RGB frames like `VideoReader`'s (one buffer per batch). OpenCV ends
    quietly where a packet cannot be decoded, so the frames read are checked against the probed size and count."""

    def __init__(self, path: Path, batch_size: int, info: VideoInfo | None = None):
        self.path, self.batch_size, self.frames_read, self._bgr = path, batch_size, 0, None
        self.info = info if info is not None else probe_video(path)
        self._capture = cv2.VideoCapture(f"file:{path}", cv2.CAP_FFMPEG)
        if not self._capture.isOpened():
            raise PixforgeError(f"{path}: OpenCV could not open the video")

    def __enter__(self) -> OpenCVReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._capture.release()

    def __next__(self) -> np.ndarray:
        height, width = self.info.height, self.info.width
        batch, n = np.empty((self.batch_size, height, width, 3), np.uint8), 0
        while n < self.batch_size:
            ok, self._bgr = self._capture.read(self._bgr)  # decoded into the same buffer every time
            if not ok:
                break
            if self._bgr.shape != (height, width, 3):
                raise PixforgeError(f"{self.path}: OpenCV decoded a {self._bgr.shape[1]}x{self._bgr.shape[0]} frame, "
                                    f"the probe says {width}x{height}")
            cv2.cvtColor(self._bgr, cv2.COLOR_BGR2RGB, dst=batch[n])
            n += 1
        self.frames_read += n
        count = self.info.frame_count
        if n < self.batch_size and count is not None and self.frames_read != count:
            raise PixforgeError(f"{self.path} could not be decoded: OpenCV read {self.frames_read} of its {count} "
                                "frames")
        if n == 0:
            raise StopIteration
        return batch[:n]


class XvidWriter:
    """The official `--via_xvid` stage's writer: OpenCV's FFmpeg writer with fourcc XVID, opened as
    `add_distortion_to_video.py` opens it (`cv2.VideoWriter(avi, XVID, fps, (w, h))`), so the same frames give the
    official's .avi: the same MPEG-4 settings and the same BGR -> YUV conversion. Frames come as RGB and are ours
    (`distort_frames`): each is flipped to BGR in place."""

    def __init__(self, path: Path, fps: float, width: int, height: int):
        self.path, self.frames_written = path, 0
        self._writer = cv2.VideoWriter(f"file:{path}", cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"XVID"), fps,
                                       (width, height))
        if not self._writer.isOpened():
            raise PixforgeError(f"{path}: OpenCV could not open an XVID writer for {width}x{height} at {fps:g} fps")

    def __enter__(self) -> XvidWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.release()

    def write(self, frame: np.ndarray) -> None:
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR, dst=frame))
        self.frames_written += 1


def _passes(steps: Steps, crf: int, via_xvid: bool) -> list[_Pass]:
    passes, current = [], []
    for kind, level in steps:
        if kind == "VC":
            passes.append(_Pass(current, int(parameter("VC", level))))
            current = []
        else:
            current.append((kind, level))
    if current or not passes:
        passes.append(_Pass(current, XVID_FINAL_CRF if via_xvid else crf, xvid=via_xvid))
    return passes


@contextlib.contextmanager
def _temp_video(beside: Path, suffix: str) -> Iterator[Path]:
    beside.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{beside.stem}.stage-", suffix=suffix, dir=beside.parent)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def _pix_fmt(width: int, height: int) -> str:
    return "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"


def distort_frames(frames: np.ndarray, steps: Steps, randomness: Randomness) -> list[np.ndarray]:
    """`steps` applied to each frame of a decoded batch. The batch is ours: the distortions that can write
    over a frame do (`distort(..., inplace=True)`), the others' new frames are returned as they are."""
    out = []
    for frame in frames:
        for kind, level in steps:
            frame = distort(frame, kind, level, randomness, inplace=True)
        out.append(frame)
    return out


def _write_frames(writer: VideoWriter | XvidWriter, frames: list[np.ndarray], bar: tqdm) -> None:
    for frame in frames:
        writer.write(frame)
    bar.update(len(frames))


def _encode(reader: VideoReader | OpenCVReader, open_writer: Callable[[VideoInfo], VideoWriter | XvidWriter],
            steps: Steps, randomness: Randomness, bar: tqdm | None = None) -> int:
    """Decode -> frame steps -> encode, overlapped: one thread reads the decoder's next batch and another feeds
    the writer (`open_writer(reader.info)`) while this one distorts (numpy, OpenCV and pipe I/O release the GIL);
    at most four batches are alive at once, so memory does not depend on the video's length. `bar` counts the
    frames written."""
    bar = bar or tqdm(disable=True)
    with reader:
        writer = open_writer(reader.info)
        with writer, ThreadPoolExecutor(1) as reads, ThreadPoolExecutor(1) as writes:
            ahead, behind = reads.submit(next, reader, None), deque()
            while (frames := ahead.result()) is not None:
                ahead = reads.submit(next, reader, None)
                distorted = distort_frames(frames, steps, randomness)
                behind.append(writes.submit(_write_frames, writer, distorted, bar))
                while len(behind) > 1:
                    behind.popleft().result()
            for pending in behind:
                pending.result()
            if writer.frames_written == 0:
                raise PixforgeError(f"{reader.path} has no video frames")
    return writer.frames_written


def _transcode(src: Path, dst: Path, info: VideoInfo, crf: int, preset: str, audio_from: Path | None) -> None:
    """A pass without frame steps: one plain ffmpeg re-encode (what the official VC does), every frame kept
    (`info` describes the original video), the audio of `audio_from` padded or cut to the video's length as
    `VideoWriter` does it."""
    exe = ffmpeg_exe()
    cmd = [exe, "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", f"file:{src}"]
    if audio_from is not None:
        duration = Fraction(info.frame_count) / Fraction(info.fps_fraction)
        cmd += ["-i", f"file:{audio_from}", "-map", "1:a:0", "-c:a", "aac", "-af", "apad",
                "-t", f"{duration.numerator / duration.denominator:.6f}"]
    cmd += ["-map", "0:v:0", *passthrough_args(exe), "-c:v", "libx264", "-crf", str(crf), "-preset", preset,
            "-pix_fmt", _pix_fmt(info.width, info.height), "-fflags", "+bitexact"]
    with atomic_path(dst) as tmp:
        proc = subprocess.run([*cmd, f"file:{tmp}"], stdin=subprocess.DEVNULL, capture_output=True)
        if proc.returncode != 0:
            message = ffmpeg_error(proc.stderr.decode("utf-8", "replace")).replace(str(tmp), str(dst))
            raise PixforgeError(f"{dst}: ffmpeg could not encode the video ({message})")


SHORTFALL_S = 0.5  # seconds a stream may end before the container says (e.g. a longer audio track)


def check_input(src: Path, variable_rate: bool = False, even_size: bool = False) -> VideoInfo:
    """Probe a source video and refuse one that cannot be perturbed whole: no video frames, or fewer than its
    container declares (a truncated file: its header promises a length the packets do not reach; the official
    script stops on its frame-count assertion there). Where the count at the nominal rate falls short, the time the
    video packets span (frame count / `VideoInfo.mean_fps`, from their timestamps) decides: short too, truncated;
    reaching the end, a variable-frame-rate video (a phone's .mov, nominally 30 or 120 fps, averaging 26.5).
    Any video whose mean rate is more than 1 % off its nominal one (`VideoInfo.variable_rate`) is accepted with
    `variable_rate` (extract-faces reads frames by index) and refused otherwise (perturb writes the nominal rate,
    which would change its duration and cut or pad its audio). `even_size`: refuse an odd width or height (the XVID
    pass's writer would crop it)."""
    info = probe_video(src)
    if info.frame_count == 0:
        raise PixforgeError(f"{src} has no video frames")
    if even_size and (info.width % 2 or info.height % 2):
        raise PixforgeError(f"{src} is {info.width}x{info.height}: the XVID pass of --via-xvid needs an even width "
                            "and height (OpenCV's writer would crop it); crop the video or leave out --via-xvid")
    if info.frame_count is not None and info.duration is not None:
        declared = round(info.duration * info.fps)
        if info.frame_count < declared - max(SHORTFALL_S * info.fps, 0.05 * declared):
            end = info.frame_count / info.mean_fps if info.mean_fps else None  # the span of the video packets
            if end is None or end < info.duration - max(SHORTFALL_S, 0.05 * info.duration):
                raise PixforgeError(f"{src} holds {info.frame_count} frames ({info.frame_count / info.fps:.2f} s) "
                                    f"but its container declares {info.duration:.2f} s ({declared} frames): the file "
                                    "looks truncated")
    if info.variable_rate and not variable_rate:
        raise PixforgeError(f"{src} has a variable frame rate ({info.frame_count} frames over "
                            f"{info.frame_count / info.mean_fps:.2f} s, nominally {info.fps:g} fps): perturb writes "
                            f"a constant rate; convert it first (ffmpeg -i IN -fps_mode cfr -r {info.mean_fps:.4g} "
                            "OUT.mp4)")
    return info


def perturb_video(src: str | os.PathLike, dst: str | os.PathLike, steps: Steps, seed: int, *, crf: int = DEFAULT_CRF,
                  preset: str = "medium", via_xvid: bool = False, exact_random: bool = False,
                  batch_size: int = 4, info: VideoInfo | None = None, progress: bool = False) -> Path:
    """Write `src` with `steps` applied to `dst` (atomic; audio kept); `seed` is this video's own seed. `info`:
    what `check_input(src)` returned, if the caller has checked the source already; `progress`: a bar of the
    frames distorted on stderr."""
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise PixforgeError(f"the output {dst} is the input video: choose another --out")
    require_libx264()
    info = info or check_input(src, even_size=via_xvid)
    randomness = Randomness(seed, exact=exact_random)
    passes = _passes(steps, crf, via_xvid)
    audio = src if info.has_audio else None
    frame_passes = sum(bool(p.steps or p.xvid or info.frame_count is None) for p in passes)
    bar = tqdm(total=(info.frame_count or 0) * frame_passes or None, desc=src.name, unit="frame", leave=False,
               dynamic_ncols=True, disable=not progress or not frame_passes)
    with contextlib.ExitStack() as stack:
        stack.callback(bar.close)
        current = src
        for i, stage in enumerate(passes):
            last = i == len(passes) - 1
            known = info if current == src else None
            if stage.xvid:  # official --via_xvid: OpenCV decodes, distorts, writes an XVID .avi; ffmpeg's libx264
                avi = stack.enter_context(_temp_video(dst, ".avi"))
                _encode(OpenCVReader(current, batch_size, known),
                        lambda v, avi=avi: XvidWriter(avi, v.fps, v.width, v.height), stage.steps, randomness, bar)
                current, stage, known = avi, _Pass([], stage.crf), None
            target = dst if last else stack.enter_context(_temp_video(dst, ".mp4"))
            if stage.steps or info.frame_count is None:
                _encode(VideoReader(current, batch_size, known), lambda v, target=target, crf=stage.crf: VideoWriter(
                    target, v.fps_fraction, crf=crf, preset=preset, pix_fmt=_pix_fmt(v.width, v.height),
                    audio_from=audio), stage.steps, randomness, bar)
            else:
                _transcode(current, target, info, stage.crf, preset, audio)
            current = target
    _check_same_video(src, dst, info)
    return dst


def _check_same_video(src: Path, dst: Path, info) -> None:
    """The official check_video.py's checks (size, fps, frame count); a failing output is removed."""
    out = probe_video(dst)
    problems = [f"{name} {a} != {b}" for name, a, b in (
        ("width", info.width, out.width), ("height", info.height, out.height),
        ("fps", info.fps_fraction, out.fps_fraction), ("frame count", info.frame_count, out.frame_count))
        if a != b]
    if problems:
        dst.unlink()
        raise PixforgeError(f"{dst} does not match its input {src} ({'; '.join(problems)}), so it was removed")
