"""Shared fixtures: the official reference outputs, and tiny generated videos (with and without audio)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def official():
    """(reference arrays, metadata, {crop key: RGB input}) from fixtures/official_distortions.npz."""
    from skimage import data

    ref = dict(np.load(FIXTURES / "official_distortions.npz"))
    meta = json.loads(ref["meta"].tobytes())
    inputs = {}
    for key, (name, top, left, w, h) in meta["crops"].items():
        image = np.ascontiguousarray(getattr(data, name)()[top:top + h, left:left + w])
        assert hashlib.sha256(image.tobytes()).digest() == ref[f"{key}/input_sha256"].tobytes(), "input changed"
        inputs[key] = image
    return ref, meta, inputs


def _ffmpeg() -> str:
    from pixforge.export.video import ffmpeg_exe

    return ffmpeg_exe()


def make_video(path: Path, frames: int = 12, size: str = "64x48", audio: bool = True, fps: int = 12) -> Path:
    """A small test video (ffmpeg's testsrc2, optional sine audio) encoded with libx264."""
    cmd = [_ffmpeg(), "-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i",
           f"testsrc2=size={size}:rate={fps}:duration={frames / fps}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={frames / fps}", "-c:a", "aac", "-shortest"]
    cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-frames:v", str(frames), str(path)]
    subprocess.run(cmd, check=True)
    return path


@pytest.fixture
def video_factory(tmp_path):
    return lambda name="clip.mp4", **kw: make_video(tmp_path / name, **kw)
