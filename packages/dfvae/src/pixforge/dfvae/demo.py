"""`pixforge-dfvae demo`: prepare -> train -> swap -> export -> metrics on the real faces that ship offline.

No talking-head video is installed with pixforge's dependencies, so the demo films two photos of scikit-image
(the astronaut, Eileen Collins, and the cameraman) with a slowly panning and zooming virtual camera: short clips of
real faces, 160 px. The cameraman's face is turned, so his clip is prepared with dlib's CNN detector. A small model
(64 px crops, narrow widths) trains a few hundred steps on the CPU, then the cameraman's face is swapped into a
third clip of the astronaut with a sound track, the network is exported to ONNX, and the swap is scored.
A convincing swap needs real footage of both people (minutes of video each) and GPU hours of training.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from pathlib import Path

import numpy as np

from pixforge.export.errors import PixforgeError

SIZE, FRAMES, SIDE = 64, 24, 160
FACES = {  # identity -> (scikit-image photo, centre x, centre y, half side of the filmed square in its pixels)
    "astronaut": ("astronaut", 223.0, 125.0, 95.0),
    "cameraman": ("camera", 220.0, 160.0, 95.0),
}
TINY = dict(width=16, max_width=128, structure_channels=16, appearance_dim=64, fusion_width=16)


def film(name: str, frames: int = FRAMES, side: int = SIDE, phase: float = 0.0) -> np.ndarray:
    """`frames` uint8 RGB frames of a scikit-image photo seen by a camera that pans and zooms slowly."""
    from PIL import Image
    from skimage import data

    photo_name, cx, cy, half = FACES[name]
    photo = getattr(data, photo_name)()
    if photo.ndim == 2:
        photo = np.stack([photo] * 3, axis=-1)
    image = Image.fromarray(photo)
    out = []
    for t in range(frames):
        a = 2 * math.pi * t / frames + phase
        h = half * (1 + 0.06 * math.sin(a))
        x, y = cx + 8 * math.sin(a + 1), cy + 5 * math.cos(a)
        box = (x - h, y - h, x + h, y + h)
        out.append(np.asarray(image.resize((side, side), Image.Resampling.BICUBIC, box=box)))
    return np.stack(out)


def _video(path: Path, frames: np.ndarray, audio: bool = False) -> Path:
    from pixforge.export.video import VideoWriter, ffmpeg_exe

    if not audio:
        with VideoWriter(path, 25, crf=12, preset="ultrafast") as writer:
            writer.write(frames)
        return path
    silent = path.with_name(f".{path.stem}-silent.mp4")
    with VideoWriter(silent, 25, crf=12, preset="ultrafast") as writer:
        writer.write(frames)
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(silent), "-f", "lavfi", "-i",
                    f"sine=frequency=220:duration={len(frames) / 25}", "-c:v", "copy", "-c:a", "aac", "-shortest",
                    str(path)], check=True)
    silent.unlink()
    return path


def demo(out: str = "dfvae-demo", steps: int = 300, overwrite: bool = False) -> str:
    """A ~2-minute CPU run on real faces (scikit-image's astronaut and cameraman, filmed as short clips): prepare
    (64 px), train --steps (small widths), swap the cameraman into an astronaut clip (with audio, side-by-side
    preview), export to ONNX, metrics. Everything under OUT."""
    from pixforge.core.cli import output_dir
    from pixforge.core.datagen import single_thread
    from pixforge.core.faces import open_backend
    from pixforge.dfvae.export import export
    from pixforge.dfvae.metrics import metrics
    from pixforge.dfvae.prepare import prepare
    from pixforge.dfvae.swap import swap
    from pixforge.dfvae.train import train
    from pixforge.export.options import check_numbers

    check_numbers({"steps": steps}, integers={"steps": 1})
    open_backend("dlib")  # the faces extra (dlib), checked before anything is written
    try:
        import skimage  # noqa: F401
    except ImportError:
        raise PixforgeError("the demo films scikit-image's photos: pip install 'pixforge-dfvae[demo]'") from None
    root = output_dir(out, overwrite)
    start = time.perf_counter()
    clips = root / "clips"
    clips.mkdir(exist_ok=True)
    with single_thread():  # one torch thread: small networks on a busy CPU run faster so
        sources = {name: _video(clips / f"{name}.mp4", film(name)) for name in FACES}
        target = _video(clips / "target.mp4", film("astronaut", FRAMES, SIDE, phase=math.pi / 2), audio=True)
        data = root / "data"
        prepare(str(sources["astronaut"]), out=str(data), size=SIZE, overwrite=overwrite, quiet=True)
        prepare(str(sources["cameraman"]), out=str(data), size=SIZE, detector="cnn", detect_every=1,
                overwrite=overwrite, quiet=True)
        run = train(str(root / "run"), data=str(data), steps=steps, batch=4, lr=1e-3, perceptual="off",
                    sample_every=max(1, steps // 3), ckpt_every=steps, device="cpu", overwrite=overwrite, quiet=True,
                    **TINY)
        swapped = root / "swapped.mp4"
        swap(str(target), run=str(run), source_id="cameraman", out=str(swapped), preview=True, batch=8,
             device="cpu", overwrite=overwrite, quiet=True)
        model = export(str(run), str(root / "model.onnx"), overwrite=overwrite, quiet=True)
        report = metrics(str(run), str(target), source_id="cameraman", out=str(root / "metrics.json"),
                         device="cpu", overwrite=overwrite, quiet=True)
    scores = json.loads(report)
    identity = scores["identity"]
    samples = sorted((Path(run) / "samples").glob("*.png"))
    return "\n".join([
        f"DF-VAE demo ({steps} steps at {SIZE} px, {time.perf_counter() - start:.0f} s) in {root}:",
        f"  data     {data} (astronaut: HOG detector; cameraman: CNN detector; contact sheets per clip)",
        f"  run      {run} (samples/{samples[-1].name if samples else '-'}: source | target | reconstruction | "
        "swap; references/)",
        f"  swap     {swapped} (cameraman into the astronaut clip, audio kept) and {swapped.stem}-preview.mp4 "
        "(target | swap)",
        f"  onnx     {model} (pixforge-dfvae swap --model {model.name} --run RUN ...)",
        f"  metrics  {root / 'metrics.json'}: identity cosine to source {identity['cosine_to_source']:.3f} vs "
        f"target {identity['cosine_to_target']:.3f}, landmark error {scores['landmarks']['error']:.3f} IOD, "
        f"flicker {scores['flicker']['swap']:.2f} (target's own {scores['flicker']['target']:.2f}), "
        f"self-reconstruction PSNR {scores['reconstruction']['psnr']:.1f} dB",
        "  This is a smoke run: a convincing swap needs real footage of both people (minutes of video each) "
        "and GPU hours of training at 128 px or more."])
