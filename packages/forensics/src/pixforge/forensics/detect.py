"""Detection on videos: faces tracked as extract-faces does, the run's detector on their crops, an overlay video.

Per video: `--frames` frames sampled evenly (0: all; extract-faces' tracking, detecting on every
`--detect-every`-th sample and re-fitting landmarks on the tracked box in between, and cropping at the run's size,
in a temporary folder), the detector's evaluation items over them (frames for Xception, clips for the video models,
run in batches of `--batch`), P(fake) = the mean item probability. Written to OUT: `<video>.json` (the
probability, each item's probability with its frame indices and face boxes; `timing`: seconds in the face stage
(decode, detect / track, crop), the model stage (crops read, batched inference) and the overlay) and
`<video>.overlay.mp4` (every source frame with the nearest sampled face box and the item probability drawn in, red
above 0.5, green below; the audio copied), both written atomically (a temporary file renamed into place, with the
mode the user's umask gives). A video without a face gets P(fake) 0.5, a warning in its JSON and on stderr, and no
overlay. Everything is checked before the first video is read; for a folder, the next video's face stage runs in
a worker thread while this one's model stage and overlay run (`prefetched`), with the sequential loop's results.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from pixforge.export.atomic import write_text
from pixforge.export.errors import PixforgeError

T = TypeVar("T")
R = TypeVar("R")


def detect(videos: str | None = None, run: str | None = None, out: str | None = None, frames: int = 32,
           detect_every: int = 1, batch: int = 16, overlay: bool = True, device: str = "auto",
           overwrite: bool = False, prefetch: bool = True) -> dict[str, float]:
    """P(fake) of a video or of every video under a folder with the detector of --run: faces tracked on --frames
    evenly sampled frames (0: every frame; extract-faces' tracker, dlib, detecting on every --detect-every-th of
    them and following the face in between), cropped at the run's size; OUT/<video>.json holds the
    per-frame probabilities, OUT/<video>.overlay.mp4 the video with box and probability drawn (audio kept;
    --nooverlay skips it). No face found: 0.5 and a warning. Options, outputs, input videos, the run and the face
    backend are all checked before any work. `prefetch`: the next video's face stage runs in a worker thread while
    this one's model stage and overlay run (dlib and torch release the GIL); results, files, warnings and errors
    are those of the plain sequential loop (`prefetch=False`), in the same order."""
    from pixforge.core.runtime import resolve_device
    from pixforge.export.options import check_outside, whole_number
    from pixforge.forensics.detector import load_run
    from pixforge.forensics.extract import ExtractOptions, FaceJob, open_backend
    from pixforge.forensics.jobs import check_sources, list_videos
    from pixforge.forensics.options import out_folder

    if videos is None or run is None or out is None:
        raise PixforgeError("VIDEO|DIR, --run RUN and --out OUT are required")
    whole_number("--frames", frames, 0)
    whole_number("--detect-every", detect_every, 1)
    whole_number("--batch", batch, 1)
    src, out_dir = Path(videos), out_folder(out)  # refused: --out, or a path above it, is a file (a video)
    check_outside(out_dir, [src if src.is_dir() else None, run])  # inside the videos: read back as videos next time
    video_list = list_videos(src)
    root = src if src.is_dir() else src.parent
    keys = {v: v.relative_to(root).with_suffix("").as_posix() for v in video_list}
    check_outputs(keys, out_dir, overlay, overwrite)
    # every video probed (frames are sampled by index, as extract-faces does: a variable rate is fine)
    infos = check_sources([FaceJob(v, out_dir, key) for v, key in keys.items()], variable_rate=True)
    det, arch = load_run(run)
    dev = resolve_device(device)
    options = ExtractOptions(frames=frames, size=arch["size"], detect_every=detect_every)
    backend = open_backend(options)  # the faces extra is checked here, before any video is read
    det = det.to(dev)

    def face_stage(video: Path) -> Faces:
        return find_faces(video, keys[video], options, backend, infos[video])

    stages = prefetched(face_stage, video_list) if prefetch else (face_stage(v) for v in video_list)
    results = {}
    with contextlib.closing(stages):
        for video, faces in zip(video_list, stages, strict=True):
            with faces:
                results[keys[video]] = detect_video(video, keys[video], faces, det, arch, out_dir, batch, overlay,
                                                    dev, infos[video])
    return results


def check_outputs(keys: dict[Path, str], out_dir: Path, overlay: bool, overwrite: bool) -> None:
    """Refuse, before any work: two videos with one output name (a.mp4 and a.mov), an output path that is a folder,
    and an existing JSON without `overwrite` (an --out that is, or lies in, the input folder: `check_outside`)."""
    owner: dict[str, Path] = {}
    for video, key in keys.items():
        if key in owner:
            raise PixforgeError(f"{owner[key]} and {video} would both write {out_dir / key}.json: rename one of them")
        owner[key] = video
        paths = [out_dir / f"{key}.json"] + ([out_dir / f"{key}.overlay.mp4"] if overlay else [])
        for path in paths:
            if path.is_dir():
                raise PixforgeError(f"{path} is a folder: remove it or choose another --out")
        if not overwrite and paths[0].exists():
            raise PixforgeError(f"{paths[0]} already exists: pass --overwrite to replace it")


def prefetched(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """fn(item) for each of `items`, in order, the next item's call running in one worker thread while the caller
    works on the current result. An error of fn is raised where its result would have come, so at the point the
    sequential loop raises it; a result made ahead and never taken (the caller stopped and closed this generator)
    is closed (`.close()`), after waiting for it."""
    queue = iter(items)
    with ThreadPoolExecutor(1) as pool:
        ahead = [pool.submit(fn, item) for item in itertools.islice(queue, 1)]
        try:
            while ahead:
                current = ahead.pop().result()
                ahead = [pool.submit(fn, item) for item in itertools.islice(queue, 1)]
                yield current
        finally:
            for future in ahead:
                if not future.cancel() and future.exception() is None:
                    future.result().close()


@dataclass
class Faces:
    """One video's face stage: its crops in a temporary folder (removed by `close`), the track (None: no face
    found) and the stage's seconds."""

    folder: tempfile.TemporaryDirectory
    track: dict | None
    seconds: float

    def close(self) -> None:
        self.folder.cleanup()

    def __enter__(self) -> Faces:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def find_faces(video: Path, key: str, options, backend, info) -> Faces:
    """extract-faces' tracking and crops of `video` (extract_video) into a new temporary folder."""
    from pixforge.forensics.extract import FaceJob, extract_video

    folder = tempfile.TemporaryDirectory(prefix="pixforge-detect-")
    try:
        start = time.perf_counter()
        try:
            track = extract_video(FaceJob(video, Path(folder.name) / "faces", key), options, backend, info)
        except PixforgeError as err:
            if "no face found" not in str(err):
                raise
            track = None
        return Faces(folder, track, time.perf_counter() - start)
    except BaseException:
        folder.cleanup()
        raise


def detect_video(video: Path, key: str, faces: Faces, det, arch: dict, out_dir: Path, batch: int, overlay: bool,
                 dev, info) -> float:
    """The model stage on `faces`, the overlay and OUT/<key>.json (each written atomically); P(fake)."""
    from pixforge.forensics import data as fdata
    from pixforge.forensics.detector import predict

    record: dict = {"video": str(video), "run_model": arch["model"]}
    timing: dict = {"faces_s": faces.seconds}
    track = faces.track
    if track is None:
        warning = f"no face found in {video}: P(fake) set to 0.5"
        print(f"pixforge-forensics: warning: {warning}", file=sys.stderr)
        record.update(p_fake=0.5, warning=warning, items=[])
    else:
        start = time.perf_counter()
        crops = fdata.scan(Path(faces.folder.name), "faces")
        data = fdata.EvalClips(crops, [], arch["clip"], arch["size"], arch["sampling"])
        probs, _, _ = predict(det, data, batch=batch, device=dev)
        items = []
        for k, (_, idx, _, _) in enumerate(data.items):
            items.append({"frames": [track["frames"][i] for i in idx], "p_fake": float(probs[k]),
                          "boxes": [track["face_boxes"][i] for i in idx]})
        record.update(p_fake=float(np.mean(probs)), items=items)
        timing.update(model_s=time.perf_counter() - start, frames=len(track["frames"]))
    if overlay and record["items"]:
        start = time.perf_counter()
        record["overlay"] = str(draw_overlay(video, record["items"], out_dir / f"{key}.overlay.mp4", info))
        timing["overlay_s"] = time.perf_counter() - start
    record["timing"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in timing.items()}
    write_text(out_dir / f"{key}.json", json.dumps(record, indent=1))  # atomic, created folders included
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
