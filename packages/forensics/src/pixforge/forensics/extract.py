"""`extract-faces`: one face track per video, 1.3x square crops of it on evenly sampled frames, the boxes saved so
a real video's manipulated versions are cut at the same places (FaceForensics++ / DeeperForensics advice).

Per video (`extract_video`): `--frames` frames sampled evenly (0: all), faces tracked with `pixforge.core.faces`
(detection on every `--detect-every`-th sampled frame, upsampled once for frames under `SMALL_SIDE` px unless
`--upsample` says otherwise; landmarks re-fitted in between), the main track picked (largest mean box area x number
of frames it covers) and joined with the tracks that continue it after it was lost (`link_tracks`), the samples
before its first and after its last detection dropped (a clip's faceless seconds: `track.dropped_without_face`),
its boxes filled in where it was lost in between (linear; landmarks re-fitted there), smoothed over time (a
zero-phase Gaussian of `SMOOTH_FRAMES` source frames, so sparse samples stay put), squared and scaled (`--scale`),
and cropped to `--size`: `OUT/<video path less its suffix>/<frame index>.png` and `track.json` (frame indices, crop
and face boxes, landmarks in frame and crop pixels, what was detected, the probe info, the options). With
`--boxes-from REAL_DIR` a video takes the frames and face boxes of its real video's `track.json` (matched by name:
the same stem, else the longest real stem that starts the fake's followed by `_`, `-` or `.`, as FaceForensics++
`000_003` and DeeperForensics `000_M101` name their fakes after their target `000`); only landmarks are re-fitted
on its own frames.

A video's folder appears whole or not at all (written beside it, then renamed), so a killed run resumes by
skipping finished folders. Every source (and its real track) is checked before anything is written.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from pixforge.export.atomic import atomic_path, write_text
from pixforge.export.errors import PixforgeError
from pixforge.export.shard import parse_shard, shard_indices
from pixforge.export.video import VideoInfo, VideoReader

SMOOTH_FRAMES = 2.0  # sigma of the box smoothing, in source frames
TRACK_FILE = "track.json"
KEEP_BYTES = 512 << 20  # sampled frames held in memory between tracking and cropping; more are decoded twice
SMALL_SIDE = 320  # frames with a shorter longer side are upsampled once for detection (HOG finds ~80 px faces at 0)


@dataclass(frozen=True)
class FaceJob:
    """One video: `src` -> folder `dst`; `key` its path relative to the input; `real` the track to reuse."""

    src: Path
    dst: Path
    key: str
    real: Path | None = None


@dataclass(frozen=True)
class ExtractOptions:
    frames: int = 32
    scale: float = 1.3
    size: int = 299
    detect_every: int = 1
    detector: str = "hog"
    max_side: int = 640
    upsample: int | None = None  # detector upsampling; None: 1 for frames whose longer side is under SMALL_SIDE


# ------------------------------------------------------------------------------------------------------- planning

def match_real(stem: str, reals: dict[str, Path]) -> Path | None:
    """The real track for a fake named `stem`: the same stem, else the longest real stem that starts it followed
    by ``_``, ``-`` or ``.``."""
    if stem in reals:
        return reals[stem]
    best = max((r for r in reals if len(stem) > len(r) and stem.startswith(r) and stem[len(r)] in "_-."),
               key=len, default=None)
    return reals[best] if best is not None else None


def real_tracks(folder: Path) -> dict[str, Path]:
    """{video stem: track.json} of a finished extract-faces output folder."""
    if not folder.is_dir():
        raise PixforgeError(f"--boxes-from {folder} does not exist or is not a folder")
    tracks: dict[str, Path] = {}
    for path in sorted(folder.rglob(TRACK_FILE)):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):  # a run's unfinished folder
            continue
        name = path.parent.name
        if name in tracks:  # two real videos of one name in different folders: a fake could not choose
            raise PixforgeError(f"--boxes-from {folder} holds two real tracks named {name!r} ({tracks[name].parent} "
                                f"and {path.parent}): point it at one of their folders")
        tracks[name] = path
    if not tracks:
        raise PixforgeError(f"--boxes-from {folder} holds no {TRACK_FILE} (run extract-faces on the real videos first)")
    return tracks


def plan_jobs(videos: Sequence[Path], root: Path, out: Path, boxes_from: Path | None) -> list[FaceJob]:
    """One job per video; with `boxes_from`, each matched to its real track (all unmatched ones named at once)."""
    reals = real_tracks(boxes_from) if boxes_from is not None else None
    jobs, unmatched = [], []
    for video in videos:
        rel = Path(video.name if root.is_file() else video.relative_to(root).as_posix())
        real = None
        if reals is not None:
            real = match_real(video.stem, reals)
            if real is None:
                unmatched.append(video.name)
        jobs.append(FaceJob(video, out / rel.with_suffix(""), rel.as_posix(), real))
    if unmatched:
        more = f" (and {len(unmatched) - 1} more)" if len(unmatched) > 1 else ""
        raise PixforgeError(f"{len(unmatched)} video(s) have no real track under --boxes-from {boxes_from}: "
                            f"{unmatched[0]}{more}")
    for track in dict.fromkeys(j.real for j in jobs if j.real is not None):
        _check_track(track)
    return jobs


def _check_track(path: Path) -> None:
    """A real track `--boxes-from` lends its boxes from: readable JSON with finite frames, probe and boxes."""
    try:
        record = json.loads(path.read_text())
        boxes = np.asarray(record["face_boxes"], np.float64).reshape(-1, 4)
        ok = len(boxes) == len(record["frames"]) and np.isfinite(boxes).all() and {"width", "height"} <= set(
            record["probe"])
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError):
        ok = False
    if not ok:
        raise PixforgeError(f"--boxes-from: {path} is not a track.json written by extract-faces (unreadable, or its "
                            "frames and face boxes are missing, mismatched or not finite)")


def sample_indices(count: int, frames: int) -> list[int]:
    """`frames` frame indices spread evenly over `count` (first and last included); all when `frames` is 0 or
    at least `count`."""
    if frames <= 0 or frames >= count:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, frames)})


# ------------------------------------------------------------------------------------------------------- one video

def iter_frames(path: Path, indices: Sequence[int], info: VideoInfo) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, uint8 RGB frame) for the wanted indices, decoding the video once."""
    wanted, position = set(indices), 0
    last = max(indices) if indices else -1
    with VideoReader(path, batch_size=8, info=info) as reader:
        for batch in reader:
            for frame in batch:
                if position in wanted:
                    yield position, frame.copy()  # a view would keep its whole decoded batch alive
                position += 1
                if position > last:
                    return


def count_frames(path: Path, info: VideoInfo) -> int:
    if info.frame_count is not None:
        return info.frame_count
    total = 0
    with VideoReader(path, batch_size=32, info=info) as reader:
        for batch in reader:
            total += len(batch)
    return total


def smooth_boxes(boxes: np.ndarray, frames: Sequence[int], sigma: float = SMOOTH_FRAMES) -> np.ndarray:
    """Boxes (T x 4) at `frames` smoothed as centre and size by a zero-phase Gaussian over frame indices."""
    boxes = np.asarray(boxes, np.float64)
    if sigma <= 0 or len(boxes) < 2:
        return boxes
    t = np.asarray(frames, np.float64)
    weights = np.exp(-0.5 * ((t[:, None] - t[None, :]) / sigma) ** 2)
    weights /= weights.sum(axis=1, keepdims=True)
    centre = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
    half = np.stack([(boxes[:, 2] - boxes[:, 0]) / 2, (boxes[:, 3] - boxes[:, 1]) / 2], 1)
    centre, half = weights @ centre, weights @ half
    return np.concatenate([centre - half, centre + half], axis=1)


def fill_gaps(positions: Sequence[int], boxes: np.ndarray, length: int) -> np.ndarray:
    """Boxes known at sample `positions` spread over all `length` samples: linear between, held at the ends."""
    boxes = np.asarray(boxes, np.float64)
    grid = np.arange(length)
    return np.stack([np.interp(grid, positions, boxes[:, j]) for j in range(4)], axis=1)


def _score(track) -> float:
    """Mean box area x number of frames: what makes a track the video's main face."""
    return float(np.mean([(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in track.faces])) * len(track.frames)


def main_track(tracks) -> object:
    """The track with the largest mean box area x number of frames."""
    return max(tracks, key=_score)


def link_tracks(best, tracks, reach: float = 0.5) -> tuple[dict[int, tuple[object, bool]], list[int]]:
    """The main track joined with the tracks that continue it where it was lost (the tracker ends a track after
    `max_gap` frames unseen, and a face that comes back opens a new one): a track sharing no frame with those
    taken, whose end nearest to them lies within `reach` face sizes of the nearest taken face, at a size within
    1.5x, is added (best score first). Returns ({sample position: (face, detected)}, the linked track ids)."""
    chosen = {p: (f, d) for p, f, d in zip(best.frames, best.faces, best.detected, strict=True)}
    linked = [best.id]
    for other in sorted((t for t in tracks if t is not best), key=_score, reverse=True):
        if set(other.frames) & set(chosen):
            continue
        ends = {other.frames[0]: other.faces[0], other.frames[-1]: other.faces[-1]}
        near_other, near_chosen = min(((a, b) for a in ends for b in (min(chosen), max(chosen))),
                                      key=lambda ab: abs(ab[0] - ab[1]))
        a, b = ends[near_other], chosen[near_chosen][0]
        centre = np.hypot((a.box[0] + a.box[2] - b.box[0] - b.box[2]) / 2,
                          (a.box[1] + a.box[3] - b.box[1] - b.box[3]) / 2)
        if centre <= reach * b.size and 1 / 1.5 <= a.size / b.size <= 1.5:
            chosen.update({p: (f, d) for p, f, d in zip(other.frames, other.faces, other.detected, strict=True)})
            linked.append(other.id)
    return dict(sorted(chosen.items())), linked


def _fits(indices: Sequence[int], info: VideoInfo) -> bool:
    return len(indices) * info.width * info.height * 3 <= KEEP_BYTES


def extract_video(job: FaceJob, options: ExtractOptions, backend, info: VideoInfo) -> dict:
    """Extract `job` into its folder (whole or not at all); returns its track record."""
    from pixforge.core.faces import FaceTracker, crop_box, square_box, track_faces, transform_points

    count = count_frames(job.src, info)
    real = json.loads(job.real.read_text()) if job.real is not None else None
    if real is not None:
        indices = list(real["frames"])
        if indices and max(indices) >= count:
            raise PixforgeError(f"{job.src} has {count} frames but its real video's track ({job.real}) uses frame "
                                f"{max(indices)}: not the same length")
        width, height = real["probe"]["width"], real["probe"]["height"]
        if (width, height) != (info.width, info.height):
            raise PixforgeError(f"{job.src} is {info.width}x{info.height} but its real video ({job.real}) is "
                                f"{width}x{height}: the boxes would not fit")
        face_boxes, detected, track_note = np.asarray(real["face_boxes"], np.float64), [False] * len(indices), {
            "boxes_from": str(job.real)}
        frames = list(iter_frames(job.src, indices, info)) if _fits(indices, info) else None
        landmarks = [None] * len(indices)
    else:
        indices = sample_indices(count, options.frames)
        keep = _fits(indices, info)
        frames = [] if keep else None
        tracker = FaceTracker(max_gap=max(10, options.detect_every))

        def source() -> Iterator[np.ndarray]:
            for index, frame in iter_frames(job.src, indices, info):
                if keep:
                    frames.append((index, frame))
                yield frame

        for _ in track_faces(source(), backend_for(backend, options, info), detect_every=options.detect_every,
                             tracker=tracker,
                             max_side=options.max_side):
            pass
        if keep and len(frames) != len(indices):
            raise PixforgeError(f"{job.src}: only {len(frames)} of the {len(indices)} frames its header declares "
                                "could be decoded")
        tracks = [t for t in tracker.tracks.values() if any(t.detected)]
        if not tracks:
            looked = -(-len(indices) // options.detect_every)
            note = f" (detection ran on {looked} of them: --detect-every {options.detect_every})" if looked < len(
                indices) else ""
            raise PixforgeError(f"no face found in any of the {len(indices)} sampled frames of {job.src}{note}")
        best = main_track(tracks)
        chosen, linked = link_tracks(best, tracks)
        # only the samples where the face is: from its first detection to its last (and the frames tracked after
        # it until the next detection frame); boxes are filled in inside that span, not held over samples
        # without the face (a clip's seconds of cartoon before the person walks in)
        seen = [p for p, (_, d) in chosen.items() if d]
        lo, hi = min(seen), min(max(seen) + options.detect_every - 1, max(chosen))
        dropped = [lo, len(indices) - 1 - hi]
        chosen = {p - lo: v for p, v in chosen.items() if lo <= p <= hi}
        indices = indices[lo:hi + 1]
        if frames is not None:
            frames = frames[lo:hi + 1]
        positions = list(chosen)
        face_boxes = smooth_boxes(fill_gaps(positions, [chosen[p][0].box for p in positions], len(indices)), indices)
        landmarks = [chosen[p][0].landmarks if p in chosen else None for p in range(len(indices))]
        detected = [bool(chosen[p][1]) if p in chosen else False for p in range(len(indices))]
        track_note = {"id": best.id, "linked": linked, "frames_covered": len(positions), "tracks_found": len(tracks),
                      "dropped_without_face": dropped, "boxes_from": None}
    crop_boxes = [square_box(tuple(b), options.scale) for b in face_boxes]
    width = max(4, len(str(count - 1)))
    names = list(real["files"]) if real is not None else [f"{i:0{width}d}.png" for i in indices]
    for stale in job.dst.parent.glob(f".{job.dst.name}.tmp-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = job.dst.parent / f".{job.dst.name}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True)
    try:
        frame_lm, crop_lm = [], []
        stream = frames if frames is not None else iter_frames(job.src, indices, info)
        for position, (_, frame) in enumerate(stream):
            box = crop_boxes[position]
            lm = landmarks[position]
            if lm is None:  # a frame the track missed, or a fake cut at its real's boxes: its own landmarks
                lm = backend.landmarks(frame, tuple(float(v) for v in face_boxes[position]))
            crop, matrix = crop_box(frame, box, options.size)
            Image.fromarray(crop).save(tmp / names[position], compress_level=1)
            frame_lm.append(np.round(np.asarray(lm, np.float64), 2).tolist())
            crop_lm.append(np.round(transform_points(np.asarray(lm, np.float64), matrix), 2).tolist())
        if len(frame_lm) != len(indices):
            raise PixforgeError(f"{job.src}: only {len(frame_lm)} of the {len(indices)} sampled frames could be "
                                "decoded")
        record = {"video": str(job.src), "key": job.key, "probe": asdict(info), "frame_count": count,
                  "frames": indices, "files": names,
                  "boxes": np.asarray(crop_boxes).tolist(), "face_boxes": np.asarray(face_boxes).tolist(),
                  "detected": detected, "landmarks": frame_lm, "crop_landmarks": crop_lm, "size": options.size,
                  "scale": options.scale, "backend": backend.name,
                  "detect_every": options.detect_every, "track": track_note}
        write_text(tmp / TRACK_FILE, json.dumps(record) + "\n")
        if job.dst.exists():
            shutil.rmtree(job.dst)
        os.replace(tmp, job.dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record


# ---------------------------------------------------------------------------------------------------- many videos

_WORKER: dict = {}


def upsample_for(options: ExtractOptions, info: VideoInfo) -> int:
    """The detector's upsampling for a video: `options.upsample`, or (None) 1 for small frames, else 0."""
    if options.upsample is not None:
        return int(options.upsample)
    return 1 if max(info.width, info.height) < SMALL_SIDE else 0


_BACKENDS: dict = {}


def backend_for(backend, options: ExtractOptions, info: VideoInfo):
    """`backend`, or one like it with the upsampling this video needs (`upsample_for`; opened once per value)."""
    want = upsample_for(options, info)
    if getattr(backend, "upsample", want) == want:
        return backend
    key = (options.detector, want)
    if key not in _BACKENDS:
        from pixforge.core.faces import open_detector

        _BACKENDS[key] = open_detector(options.detector, upsample=want)
    return _BACKENDS[key]


def _init_worker(options: ExtractOptions) -> None:
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    _WORKER["backend"] = open_backend(options)


def _work(job: FaceJob, options: ExtractOptions, info: VideoInfo) -> str:
    extract_video(job, options, _WORKER["backend"], info)
    return job.key


def open_backend(options: ExtractOptions):
    from pixforge.core.faces import open_detector

    return open_detector(options.detector, upsample=options.upsample or 0)


def is_done(job: FaceJob) -> bool:
    return (job.dst / TRACK_FILE).is_file()


def run_extract(jobs: Sequence[FaceJob], options: ExtractOptions, *, shard: str | None = None, workers: int = 1,
                overwrite: bool = False) -> tuple[list[FaceJob], list[FaceJob], list[str]]:
    """Extract this shard's videos (sources checked first); returns (done now, done before, failures)."""
    from pixforge.forensics.jobs import check_sources

    k, n = parse_shard(shard)
    mine = [jobs[i] for i in shard_indices(len(jobs), k, n)]
    todo = [j for j in mine if overwrite or not is_done(j)]
    skipped = [j for j in mine if j not in todo]
    for job in todo:
        if job.dst.exists() and not is_done(job) and any(job.dst.iterdir()) and not overwrite:
            raise PixforgeError(f"{job.dst} exists and is not a finished extract-faces folder: remove it or pass "
                                "--overwrite")
    infos = check_sources(todo, variable_rate=True)  # frames are read by index, not by time
    backend = open_backend(options)  # the faces extra is checked here, before any video is read
    done, failures = [], []
    bar = tqdm(total=len(mine), initial=len(skipped), desc="extract-faces", unit="video", dynamic_ncols=True,
               disable=not todo)
    if workers > 1 and len(todo) > 1:
        # spawn, not fork: the parent has run torch / OpenMP / dlib threads, whose locks a forked child can inherit
        # held (and then wait on forever)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                                 initargs=(options,)) as pool:
            futures = {pool.submit(_work, job, options, infos[job.src]): job for job in todo}
            for future in as_completed(futures):
                _collect(futures[future], future.exception(), done, failures)
                bar.update(1)
    else:
        for job in todo:
            try:
                extract_video(job, options, backend, infos[job.src])
                error = None
            except PixforgeError as err:
                error = err
            _collect(job, error, done, failures)
            bar.update(1)
    bar.close()
    return done, skipped, failures


def _collect(job: FaceJob, error: BaseException | None, done: list, failures: list) -> None:
    if error is None:
        done.append(job)
    elif isinstance(error, PixforgeError):
        failures.append(str(error))
    else:
        raise error


def contact_sheet(jobs: Sequence[FaceJob], path: Path, tile: int = 128, limit: int = 100) -> Path | None:
    """One PNG of the middle crop of each finished video (up to `limit`), labelled with its name."""
    finished = [j for j in jobs if is_done(j)][:limit]
    if not finished:
        return None
    cols = min(10, math.ceil(math.sqrt(len(finished))))
    rows = math.ceil(len(finished) / cols)
    label = 14
    sheet = Image.new("RGB", (cols * tile, rows * (tile + label)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i, job in enumerate(finished):
        files = json.loads((job.dst / TRACK_FILE).read_text())["files"]
        with Image.open(job.dst / files[len(files) // 2]) as image:
            thumb = image.convert("RGB").resize((tile, tile), Image.Resampling.BILINEAR)
        x, y = (i % cols) * tile, (i // cols) * (tile + label)
        sheet.paste(thumb, (x, y))
        draw.text((x + 2, y + tile + 1), job.key[-(tile // 6):], fill=(230, 230, 230))
    with atomic_path(path) as tmp:
        sheet.save(tmp)
    return path


def summary(done: Sequence[FaceJob], skipped: Sequence[FaceJob], failures: Sequence[str], out: Path,
            sheet: Path | None) -> str:
    """The verb's last line; failures (each video's one line) make it a PixforgeError."""
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise PixforgeError(f"{len(failures)} of {len(done) + len(skipped) + len(failures)} videos failed (the "
                            f"others are written): {failures[0]}{more}")
    text = f"extracted the faces of {len(done)} video(s) to {out}" + (f", {len(skipped)} already done" if skipped
                                                                        else "")
    return text + (f"; contact sheet: {sheet}" if sheet else "")
