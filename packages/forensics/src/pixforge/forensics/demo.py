"""`pixforge-forensics demo`: the contact sheet of scikit-image's astronaut, and a 3-second video built from
embedded photos (a slow pan across each, with a 440 Hz tone as audio) perturbed with a 3-distortion mixture."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from pixforge.core.cli import output_dir
from pixforge.core.io import VideoWriter, embedded_images, probe_video, write_image
from pixforge.forensics.jobs import make_job, run_jobs, write_meta
from pixforge.forensics.preview import contact_sheet
from pixforge.forensics.video import draw_steps

FPS, SIZE = 25, (360, 240)  # width, height


def _tone(path: Path, seconds: float, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.tobytes())
    return path


def make_clip(path: Path, seconds: int = 3) -> Path:
    """A pan across astronaut, coffee and chelsea (one second each) with a tone track."""
    w, h = SIZE
    audio = _tone(path.with_suffix(".wav"), seconds)
    with VideoWriter(path, FPS, crf=18, audio_from=audio) as writer:
        for image in embedded_images(["astronaut", "coffee", "chelsea"])[:seconds]:
            for i in range(FPS):
                left = (image.shape[1] - w) * i // (FPS - 1)
                writer.write(image[:h, left:left + w])
    audio.unlink()
    return path


def run_demo(out: Path, overwrite: bool) -> str:
    (astronaut,) = embedded_images(["astronaut"])  # first: without scikit-image, nothing is created
    out = output_dir(out, overwrite)  # its own files are replaced; nothing else in the folder is touched
    sheet = write_image(out / "astronaut_distortions.png", contact_sheet(astronaut))
    clip = make_clip(out / "clip.mp4")
    job = make_job(clip, clip, out / "perturbed", draw_steps(0, clip.name, mix=3), 0)
    run_jobs([job], crf=18, preset="veryfast", overwrite=True)
    meta = write_meta(out / "meta.txt", [job], None)
    src, dst = probe_video(clip), probe_video(job.dst)
    return (f"contact sheet: {sheet}\nclip: {clip} ({src.frame_count} frames, audio {src.has_audio})\n"
            f"perturbed ({meta.read_text().split(' ', 1)[1].strip()}): {job.dst} ({dst.frame_count} frames at "
            f"{dst.fps_fraction} fps, audio {dst.has_audio})\nmeta: {meta}")
