"""How much disk a set of perturbed videos will take, measured rather than guessed.

The size of an output depends far more on what the encoder is fed than on the input's size: white noise
(GNC) at CRF 18 costs several times the clean clip, a blur or a VC level far less. So `--plan` encodes the
first `SAMPLE_FRAMES` frames of one source video with each distinct final pass the plan needs (the frame
steps, then the CRF the last pass uses) and compares that with the same frames of the source (stream-copied,
no re-encode): output size ~= source size x that ratio. Mixtures drawn at random can need more distinct
passes than is worth sampling; past `MAX_SAMPLES` a pass takes the mean ratio of the sampled passes that end
at the same CRF (or of all of them).
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from pixforge.export.errors import PixforgeError
from pixforge.export.video import VideoReader, VideoWriter, ffmpeg_error, ffmpeg_exe
from pixforge.forensics.distortions import Randomness, distort, parameter
from pixforge.forensics.video import XVID_FINAL_CRF

SAMPLE_FRAMES = 24
MAX_SAMPLES = 48
Signature = tuple[tuple[tuple[str, int], ...], int]  # (frame steps in order, CRF of the final encode)


def signature(steps: Sequence[tuple[str, int]], crf: int, via_xvid: bool) -> Signature:
    """What decides an output's size: its frame steps and the CRF its last pass encodes with."""
    frame_steps = tuple((k, int(v)) for k, v in steps if k != "VC")
    if steps and steps[-1][0] == "VC":
        final = int(parameter("VC", steps[-1][1]))
    else:
        final = XVID_FINAL_CRF if via_xvid else crf
    return frame_steps, final


def _source_sample(video: Path, frames: int, dst: Path) -> int:
    """Bytes of the first `frames` frames of `video`'s video stream as they are stored (stream copy)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", f"file:{video}", "-map", "0:v:0",
           "-c", "copy", "-frames:v", str(frames), f"file:{dst}"]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
    if proc.returncode != 0:
        raise PixforgeError(f"{video}: ffmpeg could not read a sample ({ffmpeg_error(proc.stderr.decode())})")
    return dst.stat().st_size


def _encoded_bytes(frames: np.ndarray, fps: str, sig: Signature, preset: str, dst: Path) -> int:
    steps, crf = sig
    randomness = Randomness(0, exact=False)
    with VideoWriter(dst, fps, crf=crf, preset=preset,
                     pix_fmt="yuv420p" if frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0 else "yuv444p") as w:
        for frame in frames:
            for kind, level in steps:
                frame = distort(frame, kind, level, randomness)
            w.write(frame[None])
    return dst.stat().st_size


def size_ratios(sample_video: Path, signatures: Iterable[Signature], preset: str) -> dict[Signature, float]:
    """Output/source size ratio for each signature, from the first frames of `sample_video`."""
    wanted = list(dict.fromkeys(signatures))
    sampled = wanted[:MAX_SAMPLES]
    frames = []
    with VideoReader(sample_video, SAMPLE_FRAMES) as reader:
        fps = reader.info.fps_fraction
        for batch in reader:
            frames.append(batch)
            break
    if not frames:
        raise PixforgeError(f"{sample_video} has no video frames")
    frames = frames[0][:SAMPLE_FRAMES]
    ratios: dict[Signature, float] = {}
    with tempfile.TemporaryDirectory(prefix="pixforge-plan-") as tmp:
        source = _source_sample(sample_video, len(frames), Path(tmp) / f"source{sample_video.suffix or '.mp4'}")
        for i, sig in enumerate(sampled):
            ratios[sig] = _encoded_bytes(frames, fps, sig, preset, Path(tmp) / f"{i}.mp4") / max(source, 1)
    for sig in wanted[MAX_SAMPLES:]:
        same_crf = [r for s, r in ratios.items() if s[1] == sig[1]] or list(ratios.values())
        ratios[sig] = statistics.fmean(same_crf)
    return ratios
