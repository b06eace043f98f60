"""Video files <-> batches of uint8 RGB frames (N x H x W x 3), streamed through an ffmpeg subprocess. No torch.

The ffmpeg binary comes from PATH, else from imageio-ffmpeg (which ships no ffprobe, so probing parses the
output of `ffmpeg -i`). Memory stays constant in video length: frames go through pipes one batch at a time.
Every reader names the file it could not read; every writer is atomic and keeps the source's audio on request.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from pixforge.export.atomic import atomic_path
from pixforge.export.errors import PixforgeError

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")

CRF_CODECS = ("libx264", "libx264rgb", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1")
PRESET_CODECS = ("libx264", "libx264rgb", "libx265")


def check_preset(preset: str) -> str:
    """A tool's `--preset` (libx264's), checked before any work: a PixforgeError listing the presets."""
    if preset not in X264_PRESETS:
        raise PixforgeError(f"--preset {preset!r} is not a libx264 preset: choose one of {', '.join(X264_PRESETS)}")
    return preset


def is_video_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def ffmpeg_exe() -> str:
    """The ffmpeg binary: `ffmpeg` on PATH, else the one bundled with imageio-ffmpeg."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        raise PixforgeError("no ffmpeg found: install ffmpeg on PATH or `pip install imageio-ffmpeg`") from None


@dataclass
class VideoInfo:
    """What `probe_video` reads from a file; width and height are those of the decoded (rotated) frames.

    `fps` / `fps_fraction` is the stream's nominal rate (ffmpeg's r_frame_rate). `mean_fps` / `mean_fps_fraction`
    is the rate measured from the video packets' own timestamps: frames over the time they span (None where fewer
    than two packets or no span). They agree on a constant-rate video; a variable-frame-rate one (a phone's HEVC
    .mov that says 120 or 30 frames/s and averages 26.5) plays at its mean rate, so `variable_rate` tells it and
    `playback_fps_fraction` is the rate to write its decoded frames at to keep its duration (and audio).
    """

    width: int
    height: int
    fps: float
    fps_fraction: str
    frame_count: int | None
    duration: float | None
    has_audio: bool
    codec: str
    mean_fps: float | None = None
    mean_fps_fraction: str | None = None

    @property
    def variable_rate(self) -> bool:
        """The mean rate differs from the nominal one by more than 1 %."""
        if self.mean_fps_fraction is None:
            return False
        nominal = Fraction(self.fps_fraction)
        return abs(Fraction(self.mean_fps_fraction) - nominal) > nominal / 100

    @property
    def playback_fps_fraction(self) -> str:
        """The rate the decoded frames are shown at: the nominal `fps_fraction`, unless `variable_rate`, then the
        mean rate (to a denominator of at most 1001)."""
        if not self.variable_rate:
            return self.fps_fraction
        mean = Fraction(self.mean_fps_fraction).limit_denominator(1001)
        return f"{mean.numerator}/{mean.denominator}"

    @property
    def playback_fps(self) -> float:
        return float(Fraction(self.playback_fps_fraction))


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read size, exact and mean frame rate, frame count (packets counted without decoding), duration, audio and
    codec, in one ffmpeg run."""
    path = Path(path)
    # output 0 lists the video packets (stream copy as framecrc: their count, pts and durations give the frame
    # count and the mean rate); output 1 decodes one frame as framecrc, whose header gives the exact nominal frame
    # rate (as the stream time base) and the size after rotation. Two outputs, as `-frames` ends its whole output.
    fd, first = tempfile.mkstemp(prefix="pixforge-probe-", suffix=".txt")
    os.close(fd)
    try:
        rc, err, out = _run_ffmpeg(path, ["-map", "0:v:0", "-c", "copy", "-f", "framecrc", "pipe:1",
                                          "-map", "0:v:0", "-frames:v", "1", "-c:v", "rawvideo", "-f", "framecrc",
                                          "-y", f"file:{first}"])
        frame = Path(first).read_text("utf-8", "replace")
    finally:
        os.unlink(first)
    header = _parse_header(path, err)
    if header["video"] is None:
        raise PixforgeError(f"{path} has no video stream")
    if rc != 0:
        raise PixforgeError(f"{path} is not a readable video ({ffmpeg_error(err)})")
    tb = re.search(r"^#tb 0: (\d+)/(\d+)", frame, re.M)
    dims = re.search(r"^#dimensions 0: (\d+)x(\d+)", frame, re.M)
    if not (tb and dims):
        raise PixforgeError(f"{path} has no decodable video frame")
    fps = Fraction(int(tb.group(2)), int(tb.group(1)))
    count, mean = _packet_rate(out)
    return VideoInfo(width=int(dims.group(1)), height=int(dims.group(2)), fps=float(fps),
                     fps_fraction=f"{fps.numerator}/{fps.denominator}", frame_count=count, duration=header["duration"],
                     has_audio=header["has_audio"], codec=header["video"].split()[0].rstrip(","),
                     mean_fps=float(mean) if mean else None,
                     mean_fps_fraction=f"{mean.numerator}/{mean.denominator}" if mean else None)


def _packet_rate(framecrc: str) -> tuple[int | None, Fraction | None]:
    """(packet count, mean rate) of a stream-copy framecrc listing: the packets over the time they span, from the
    first pts to the end (pts + duration) of the last; with no packet durations, over the first to the last pts
    less one frame."""
    tb = re.search(r"^#tb 0: (\d+)/(\d+)", framecrc, re.M)
    if tb is None:
        return None, None
    starts, ends = [], []
    for line in framecrc.splitlines():
        if line.startswith("#"):
            continue
        fields = line.split(",", 4)
        if len(fields) < 5 or fields[0].strip() != "0":
            continue
        try:
            pts, duration = int(fields[2]), int(fields[3])
        except ValueError:
            continue
        starts.append(pts)
        ends.append(pts + duration)
    if len(starts) < 2:
        return len(starts), None
    span, frames = max(ends) - min(starts), len(starts)
    if ends == starts:  # no packet durations: the last frame's is unknown
        span, frames = max(starts) - min(starts), frames - 1
    if span <= 0:
        return len(starts), None
    return len(starts), frames / (span * Fraction(int(tb.group(1)), int(tb.group(2))))


class VideoReader:
    """Iterate over a video in batches of uint8 RGB frames, `(n, H, W, 3)`, n <= batch_size.

    Frames are decoded by an ffmpeg subprocess and read from its stdout, so memory does not grow with the
    video's length. Every frame of the source is returned once (no frame-rate conversion); any decode error
    stops the read with a `PixforgeError` naming the file. A caller that has probed the file already passes
    its `VideoInfo` as `info` (each probe is an ffmpeg run).
    """

    def __init__(self, path: str | os.PathLike, batch_size: int = 16, info: VideoInfo | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.path = Path(path)
        self.batch_size = batch_size
        self._proc: subprocess.Popen | None = None
        self._stderr: Any = None
        self._done = False
        self.info = info if info is not None else probe_video(self.path)

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> VideoReader:
        return self

    def __next__(self) -> np.ndarray:
        if self._done:
            raise StopIteration
        if self._proc is None:
            self._start()
        h, w = self.info.height, self.info.width
        batch = np.empty((self.batch_size, h, w, 3), dtype=np.uint8)
        view, filled = memoryview(batch).cast("B"), 0
        while filled < len(view):
            n = self._proc.stdout.readinto(view[filled:])
            if not n:
                break
            filled += n
        if filled < len(view):  # end of stream: make sure ffmpeg finished cleanly before handing out the rest
            self._finish()
            if filled % (h * w * 3):
                raise PixforgeError(f"{self.path}: the decoder returned a partial frame")
            if filled == 0:
                raise StopIteration
        return batch[: filled // (h * w * 3)]

    def close(self) -> None:
        """Stop the decoder (if still running) and release its pipes."""
        self._done = True
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.stdout.close()
            self._proc.wait()
            self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    __del__ = close

    def _start(self) -> None:
        self._stderr = tempfile.TemporaryFile()
        exe = ffmpeg_exe()
        cmd = [exe, "-hide_banner", "-nostdin", "-v", "error", "-xerror", "-i", f"file:{self.path}",
               "-map", "0:v:0", *passthrough_args(exe), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr)

    def _finish(self) -> None:
        rc = self._proc.wait()
        self._stderr.seek(0)
        err = self._stderr.read().decode("utf-8", "replace")
        self.close()
        if rc != 0:
            raise PixforgeError(f"{self.path} could not be decoded ({ffmpeg_error(err)})")


class VideoWriter:
    """Encode uint8 RGB frames into a video file with ffmpeg; the file appears only when `close()` succeeds.

    `fps` is a number or an exact "num/den" string (e.g. `VideoInfo.fps_fraction`). The frame size is fixed by
    the first `write`. `crf` and `preset` go to the encoders that take them (x264, x265, VP9, AV1) and are ignored
    by others (e.g. `mpeg4`, lossless `ffv1`); `pix_fmt=None` lets the encoder choose. When `audio_from` names a
    file with an audio stream, that audio is muxed in, cut (or padded with silence) to exactly the video's length,
    frames / fps; with `audio_codec="copy"` it is kept whole. `extra_args` are passed to ffmpeg as output options.

    With audio, the frames are first encoded alone into a second temporary file beside the target; `close()`
    then knows the exact duration and muxes that video (stream copy) with the audio in a second, cheap pass
    (`-t` cuts the padded audio to the sample). `extra_args` go to both passes, except video filters (`-vf`,
    `-filter:v`, `-filter_complex`), which only the encoding pass can apply; an unqualified `-filter` applies to
    the audio in the second pass, as it did to every stream of a single pass.
    """

    def __init__(self, path: str | os.PathLike, fps: float | str, *, codec: str = "libx264", crf: int | None = 18,
                 preset: str | None = "medium", pix_fmt: str | None = "yuv420p",
                 audio_from: str | os.PathLike | None = None, audio_codec: str = "aac",
                 extra_args: list[str] | None = None):
        self.path = Path(path)
        if not is_video_path(self.path):
            raise PixforgeError(f"{self.path}: unsupported video format (use one of {', '.join(VIDEO_SUFFIXES)})")
        self.fps = _fps_string(fps)
        self.codec, self.crf, self.preset, self.pix_fmt = codec, crf, preset, pix_fmt
        self.audio_codec = audio_codec
        self.extra_args = list(extra_args or [])
        self.audio_from = Path(audio_from) if audio_from is not None and _has_audio(Path(audio_from)) else None
        self.size: tuple[int, int] | None = None
        self.frames_written = 0
        self._proc: subprocess.Popen | None = None
        self._stderr: Any = None
        self._atomic: Any = None
        self._tmp: Path | None = None
        self._video_tmp: Path | None = None  # the video-only first pass, when audio is muxed in at close()
        self._closed = False

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort(exc)

    def write(self, frames: np.ndarray) -> None:
        """Append one frame (H, W, 3) or a batch (n, H, W, 3) of uint8 RGB."""
        if self._closed:
            raise ValueError(f"VideoWriter for {self.path} is closed")
        batch = np.asarray(frames)
        batch = batch[None] if batch.ndim == 3 else batch
        if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
            raise ValueError(f"VideoWriter.write expects uint8 (n, H, W, 3) or (H, W, 3) RGB frames, "
                             f"got {batch.dtype} {batch.shape}")
        if self._proc is None:
            self._start(batch.shape[2], batch.shape[1])
        if batch.shape[1:3] != (self.size[1], self.size[0]):
            raise ValueError(f"{self.path}: frame size changed from {self.size[0]}x{self.size[1]} to "
                             f"{batch.shape[2]}x{batch.shape[1]}")
        try:
            self._proc.stdin.write(np.ascontiguousarray(batch).data)
        except BrokenPipeError:  # ffmpeg exited early: report why
            self._fail()
        self.frames_written += len(batch)

    def close(self) -> None:
        """Finish encoding and move the file into place; raises `PixforgeError` (leaving nothing) on failure."""
        if self._closed:
            return
        if self._proc is None:
            self._closed = True
            raise PixforgeError(f"{self.path}: no frames were written, so no video was created")
        try:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
            if self._proc.wait() != 0:
                self._fail()
            self._stderr.close()
            if self._video_tmp is not None:
                self._mux_audio()
        except BaseException as exc:  # e.g. KeyboardInterrupt while waiting: leave nothing behind
            self._abort(exc)
            raise
        self._closed = True
        self._remove_video_tmp()
        self._atomic.__exit__(None, None, None)

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self._abort(None)

    def _start(self, width: int, height: int) -> None:
        sub_w, sub_h = _chroma_subsampling(self.pix_fmt)
        if width % sub_w or height % sub_h:
            need = "width and height" if sub_h == 2 else "width"
            raise PixforgeError(f"{self.path}: pix_fmt {self.pix_fmt} needs an even {need}, got frames of "
                                f"{width}x{height}; crop or pad them, or use pix_fmt='yuv444p'")
        self.size = (width, height)
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        if self.audio_from is not None:  # on any error from here on, `_abort` removes both temporary files
            fd, video_tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.video-", suffix=self.path.suffix,
                                             dir=self.path.parent)
            os.close(fd)
            self._video_tmp = Path(video_tmp)
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(self._command(width, height), stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL, stderr=self._stderr)

    def _command(self, width: int, height: int) -> list[str]:
        """The encoding pass: frames from stdin, video only (the audio, if any, is added by `_mux_audio`)."""
        cmd = [ffmpeg_exe(), "-hide_banner", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", self.fps, "-i", "pipe:0", "-map", "0:v:0", "-c:v", self.codec]
        if self.crf is not None and self.codec in CRF_CODECS:
            cmd += ["-crf", str(self.crf)]
        if self.preset is not None and self.codec in PRESET_CODECS:
            cmd += ["-preset", self.preset]
        if self.pix_fmt is not None:
            cmd += ["-pix_fmt", self.pix_fmt]
        return cmd + ["-fflags", "+bitexact"] + self.extra_args + [f"file:{self._video_tmp or self._tmp}"]

    def _mux_command(self) -> list[str]:
        """The second pass: the encoded video (stream copy) plus the source's audio, cut to frames / fps."""
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", f"file:{self._video_tmp}",
               "-i", f"file:{self.audio_from}", "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
               "-c:a", self.audio_codec]
        if self.audio_codec != "copy":  # pad with silence, then cut exactly (to the sample) at the video's end
            duration = Fraction(self.frames_written) / Fraction(self.fps)
            cmd += ["-af", "apad", "-t", f"{duration.numerator / duration.denominator:.6f}"]
        return cmd + ["-fflags", "+bitexact"] + _mux_extra_args(self.extra_args) + [f"file:{self._tmp}"]

    def _mux_audio(self) -> None:
        proc = subprocess.run(self._mux_command(), stdin=subprocess.DEVNULL, capture_output=True)
        if proc.returncode != 0:
            message = ffmpeg_error(proc.stderr.decode("utf-8", "replace"))
            for tmp in (self._tmp, self._video_tmp):
                message = message.replace(str(tmp), str(self.path))
            raise PixforgeError(f"{self.path}: ffmpeg could not add the audio of {self.audio_from} ({message})")

    def _remove_video_tmp(self) -> None:
        if self._video_tmp is not None:
            self._video_tmp.unlink(missing_ok=True)
            self._video_tmp = None

    def _fail(self) -> None:
        self._proc.wait()
        self._stderr.seek(0)
        message = ffmpeg_error(self._stderr.read().decode("utf-8", "replace"))
        for tmp in (self._tmp, self._video_tmp):
            if tmp is not None:
                message = message.replace(str(tmp), str(self.path))
        err = PixforgeError(f"{self.path}: ffmpeg could not encode the video ({message})")
        self._abort(err)
        raise err

    def _abort(self, exc: BaseException | None) -> None:
        """Stop ffmpeg and remove the temporary files."""
        if self._closed:
            return
        self._closed = True
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            for stream in (self._proc.stdin, self._stderr):
                try:
                    stream.close()
                except BrokenPipeError:
                    pass
        self._remove_video_tmp()
        if self._atomic is not None:
            exc = exc or PixforgeError(f"{self.path}: writer aborted")
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)


def copy_video(src: str | os.PathLike, dst: str | os.PathLike, fn: Callable[[np.ndarray], np.ndarray],
               batch_size: int = 16, **writer_kwargs: Any) -> Path:
    """Write `fn(batch)` for every batch of `src` to `dst`, keeping the frame rate (a variable-rate video's mean
    rate, `VideoInfo.playback_fps_fraction`, so that it keeps its duration) and (by default) the audio."""
    writer_kwargs.setdefault("audio_from", src)
    with VideoReader(src, batch_size) as reader:
        with VideoWriter(dst, reader.info.playback_fps_fraction, **writer_kwargs) as writer:
            for batch in reader:
                writer.write(fn(batch))
    return Path(dst)


def _run_ffmpeg(path: Path, output_args: list[str]) -> tuple[int, str, str]:
    """Run `ffmpeg -i path OUTPUT_ARGS`; returns (exit code, stderr, stdout)."""
    if not path.is_file():
        raise PixforgeError(f"{path} does not exist or is not a file")
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", f"file:{path}", *output_args]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
    return proc.returncode, proc.stderr.decode("utf-8", "replace"), proc.stdout.decode("utf-8", "replace")


def _parse_header(path: Path, stderr: str) -> dict[str, Any]:
    """Read the `Input #0` block of ffmpeg's stderr: container duration, first video stream, audio presence."""
    start = stderr.find("Input #0, ")
    if start < 0:
        reason = re.search(r"Error opening input[^:\n]*: (.+)", stderr)
        raise PixforgeError(f"{path} is not a readable video ({reason.group(1) if reason else ffmpeg_error(stderr)})")
    block = re.split(r"\n(?:Stream mapping|Output #|At least one output)", stderr[start:])[0]
    fmt = block[len("Input #0, "):].split(", from")[0]
    if fmt == "image2" or fmt.endswith("_pipe"):
        raise PixforgeError(f"{path} is a still image, not a video")
    duration = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", block)
    streams = re.findall(r"^\s*Stream #0:\d+\S*: (Video|Audio|\w+): (.*)$", block, re.M)
    videos = [desc for kind, desc in streams if kind == "Video" and "(attached pic)" not in desc]
    return {"duration": (int(duration.group(1)) * 3600 + int(duration.group(2)) * 60 + float(duration.group(3))
                         if duration else None),
            "video": videos[0] if videos else None,
            "has_audio": any(kind == "Audio" for kind, _ in streams)}


def _mux_extra_args(args: list[str]) -> list[str]:
    """`extra_args` for the stream-copy pass: without the video filters (applied by the encoding pass already,
    and refused by ffmpeg with stream copy); an unqualified `-filter` / `-filter_script` is kept for the audio."""
    out, i = [], 0
    while i < len(args):
        name = args[i]
        base, _, spec = name.partition(":")
        if base in ("-filter", "-filter_script") and not spec:
            out += [f"{base}:a", *args[i + 1:i + 2]]
        elif name in ("-filter_complex", "-lavfi", "-filter_complex_script", "-vf") or \
                (base in ("-filter", "-filter_script") and spec.startswith("v")):
            pass
        else:
            out.append(name)
            i += 1
            continue
        i += 2
    return out


def _has_audio(path: Path) -> bool:
    return _parse_header(path, _run_ffmpeg(path, [])[1])["has_audio"]


def ffmpeg_error(stderr: str) -> str:
    """The most telling line of an ffmpeg error log: the first error message, without its `[codec @ 0x..]` tag."""
    lines = [re.sub(r"^(\[[^]]+\] )+", "", line).strip() for line in stderr.replace("\r", "\n").splitlines()]
    lines = [line for line in lines if line and not re.match(r"(x26\d )?\[(info|warning)\]", line)
             and not line.startswith(("frame=", "Last message repeated", "Input #", "Duration:", "Stream #"))]
    return lines[0] if lines else "ffmpeg failed with no message"


def _fps_string(fps: float | str) -> str:
    """An exact ffmpeg frame rate ("30000/1001", "25") from a number or a "num/den" string."""
    try:
        value = Fraction(fps) if isinstance(fps, str) else Fraction(fps).limit_denominator(1_000_000)
    except (ValueError, TypeError, ZeroDivisionError):
        value = Fraction(0)
    if value <= 0:
        raise PixforgeError(f"fps must be a positive number or a 'num/den' string, got {fps!r}")
    return str(value)


def _chroma_subsampling(pix_fmt: str | None) -> tuple[int, int]:
    """(horizontal, vertical) factor by which a pixel format's width and height must divide."""
    if pix_fmt is None:
        return 1, 1
    if "420" in pix_fmt or pix_fmt.startswith(("nv12", "nv21", "p010")):
        return 2, 2
    if "422" in pix_fmt or pix_fmt in ("yuyv422", "uyvy422"):
        return 2, 1
    return 1, 1


@lru_cache
def passthrough_args(exe: str) -> tuple[str, ...]:
    """Options that keep every decoded frame as is: `-fps_mode` from ffmpeg 5.1, `-vsync` before."""
    out = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True).stdout
    version = re.search(r"version n?(\d+)\.(\d+)", out)
    if version and (int(version.group(1)), int(version.group(2))) < (5, 1):
        return ("-vsync", "passthrough")
    return ("-fps_mode", "passthrough")
