"""Detection on videos: faces tracked as extract-faces does, the run's detector on their crops, an overlay video.

Per video: `--frames` frames sampled evenly (0: all; extract-faces' tracking, detecting on every
`--detect-every`-th sample and re-fitting landmarks on the tracked box in between, and cropping at the run's size,
in a temporary folder), the detector's evaluation items over them (frames for Xception, clips for the video models,
run in batches of `--batch`), P(fake) = the mean item probability. Written to OUT: `<video>.json` (the
probability, each item's probability with its frame indices and face boxes; `timing`: seconds in the face stage
(decode, detect / track, crop), the model stage (crops read, batched inference) and the overlay) and
`<video>.overlay.mp4` (every source frame with the nearest sampled face box and the item probability drawn in, red
above 0.5, green below; the audio copied). A video without a face gets P(fake) 0.5, a warning in its JSON and on
stderr, and no overlay.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pixforge.export.errors import PixforgeError


def detect(videos: str | None = None, run: str | None = None, out: str | None = None, frames: int = 32,
           detect_every: int = 1, batch: int = 16, overlay: bool = True, device: str = "auto",
           overwrite: bool = False) -> dict[str, float]:
    """P(fake) of a video or of every video under a folder with the detector of --run: faces tracked on --frames
    evenly sampled frames (0: every frame; extract-faces' tracker, dlib, detecting on every --detect-every-th of
    them and following the face in between), cropped at the run's size; OUT/<video>.json holds the
    per-frame probabilities, OUT/<video>.overlay.mp4 the video with box and probability drawn (audio kept;
    --nooverlay skips it). No face found: 0.5 and a warning."""
    from pixforge.core.runtime import resolve_device
    from pixforge.export.options import whole_number
    from pixforge.forensics.detector import load_run
    from pixforge.forensics.jobs import list_videos

    if videos is None or run is None or out is None:
        raise PixforgeError("VIDEO|DIR, --run RUN and --out OUT are required")
    whole_number("--frames", frames, 0)
    whole_number("--detect-every", detect_every, 1)
    whole_number("--batch", batch, 1)
    src, out_dir = Path(videos), Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise PixforgeError(f"--out {out_dir} exists and is not a folder")
    video_list = list_videos(src)
    det, arch = load_run(run)
    dev = resolve_device(device)
    det = det.to(dev)
    root = src if src.is_dir() else src.parent
    keys = [v.relative_to(root).with_suffix("").as_posix() for v in video_list]
    if not overwrite:
        for key in keys:
            if (out_dir / f"{key}.json").exists():
                raise PixforgeError(f"{out_dir / (key + '.json')} already exists: pass --overwrite to replace it")
    results = {}
    for video, key in zip(video_list, keys, strict=True):
        results[key] = detect_video(video, key, det, arch, out_dir, frames, detect_every, batch, overlay, dev)
    return results


def detect_video(video: Path, key: str, det, arch: dict, out_dir: Path, frames: int, detect_every: int, batch: int,
                 overlay: bool, dev) -> float:
    from pixforge.export.video import probe_video
    from pixforge.forensics import data as fdata
    from pixforge.forensics.detector import predict
    from pixforge.forensics.extract import ExtractOptions, FaceJob, extract_video, open_backend

    options = ExtractOptions(frames=frames, size=arch["size"], detect_every=detect_every)
    info = probe_video(video)
    record: dict = {"video": str(video), "run_model": arch["model"]}
    timing: dict = {}
    with tempfile.TemporaryDirectory(prefix="pixforge-detect-") as tmp:
        job = FaceJob(video, Path(tmp) / "faces", key)
        start = time.perf_counter()
        try:
            track = extract_video(job, options, open_backend(options), info)
        except PixforgeError as err:
            if "no face found" not in str(err):
                raise
            track = None
            warning = f"no face found in {video}: P(fake) set to 0.5"
            print(f"pixforge-forensics: warning: {warning}", file=sys.stderr)
            record.update(p_fake=0.5, warning=warning, items=[])
        timing["faces_s"] = time.perf_counter() - start
        if track is not None:
            start = time.perf_counter()
            faces = fdata.scan(job.dst.parent, "faces")
            data = fdata.EvalClips(faces, [], arch["clip"], arch["size"], arch["sampling"])
            probs, _, _ = predict(det, data, batch=batch, device=dev)
            items = []
            for k, (_, idx, _, _) in enumerate(data.items):
                items.append({"frames": [track["frames"][i] for i in idx], "p_fake": float(probs[k]),
                              "boxes": [track["face_boxes"][i] for i in idx]})
            record.update(p_fake=float(np.mean(probs)), items=items)
            timing.update(model_s=time.perf_counter() - start, frames=len(track["frames"]))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{key}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    if overlay and record["items"]:
        start = time.perf_counter()
        record["overlay"] = str(draw_overlay(video, record["items"], out_dir / f"{key}.overlay.mp4", info))
        timing["overlay_s"] = time.perf_counter() - start
    record["timing"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in timing.items()}
    target.write_text(json.dumps(record, indent=1))
    return record["p_fake"]


def draw_overlay(video: Path, items: list[dict], path: Path, info) -> Path:
    """Every frame with the nearest sampled frame's face box and its item's probability; audio from `video`."""
    import cv2

    from pixforge.export.video import VideoReader, VideoWriter

    sampled = sorted({f: (b, it["p_fake"]) for it in items for f, b in zip(it["frames"], it["boxes"],
                                                                            strict=True)}.items())
    positions = np.array([f for f, _ in sampled])
    index = 0
    with (VideoReader(video, info=info) as reader,
          VideoWriter(path, info.playback_fps_fraction, audio_from=video) as writer):
        for chunk in reader:
            out = chunk.copy()
            for frame in out:
                (x0, y0, x1, y1), p = sampled[int(np.abs(positions - index).argmin())][1]
                colour = (255, 0, 0) if p >= 0.5 else (0, 200, 0)
                cv2.rectangle(frame, (int(x0), int(y0)), (int(x1), int(y1)), colour, 2)
                cv2.putText(frame, f"fake {p:.2f}", (int(x0), max(12, int(y0) - 6)), cv2.FONT_HERSHEY_SIMPLEX,
                            0.5, colour, 1, cv2.LINE_AA)
                index += 1
            writer.write(out)
    return path
