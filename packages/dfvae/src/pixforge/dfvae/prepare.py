"""`prepare`: videos and image sequences -> DF-VAE's training data (aligned face crops, landmarks, masks, affines).

Per source (a video, or a folder of images read as one frame sequence): faces tracked over every frame
(`pixforge.core.faces.track_faces`: detection every `--detect-every` frames, landmarks re-fitted between; a
re-fitted frame kept only between two detections of its track, `confirmed`), the longest track kept
(`--all-tracks`: every track of `--min-frames` or more), its 68 landmarks smoothed over time (One Euro,
`smooth_sequence`), each frame aligned to dlib's mean face (`align`) at `--size`. Two passes over the frames: the
first tracks (landmarks only, little memory), the second aligns the chosen tracks' frames straight into a
memory-mapped array, so a long video never has to fit in memory.

    DATA/manifest.json                 summary: options, identities (frames, clips), sources, versions
    DATA/<source key>/source.json      one finished source (written last: its presence means "done")
    DATA/<source key>/track-<id>/      one clip = one face track of that source = frames of one identity
        crops.npy        (T, S, S, 3) uint8 RGB aligned crops (np.load(..., mmap_mode="r"): O(1) random access)
        landmarks.npy    (T, 68, 2) float32, (x, y) in crop pixels (pixel centres at integers), smoothed
        affines.npy      (T, 2, 3) float64, frame pixels -> crop pixels (`paste_back` inverts it)
        frame_index.npy  (T,) int64, the frame of the source each crop comes from (consecutive = the same track)
        masks.npy        (T, S, S) uint8 0/1, the filled face outline of the landmarks (`masks.face_mask`: m_t)
        contact.png      up to 16 crops, evenly spaced, landmarks drawn

A source is processed in a hidden staging folder beside its target and renamed into place when complete, so an
interrupted run leaves no half-written source; a rerun skips the finished ones (`--overwrite` redoes them).
`--shard K/N` takes every N-th source of the sorted source keys, so N jobs (one per machine or torchrun rank) can
prepare one DATA folder together; each rewrites manifest.json at its end from every finished source.json, and the
training data reader reads the source.json files themselves.

Identities: a source's identity is its file stem (a folder of images: the folder's name), or NAME from `NAME=PATH`
(a folder of videos given as NAME=FOLDER: every video in it is NAME). Sources that share a name are one identity.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from pixforge.export.atomic import umask, write_text
from pixforge.export.errors import PixforgeError
from pixforge.export.images import is_image_path, list_images, make_grid, read_image, write_image
from pixforge.export.options import check_numbers, check_outside
from pixforge.export.shard import parse_shard
from pixforge.export.video import VideoReader, is_video_path, probe_video

FORMAT = "pixforge-dfvae-faces/1"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
CONTACT_FRAMES = 16
DATA_OPTIONS = ("size", "padding", "all_tracks")  # what a finished source must share with a rerun
log = logging.getLogger("pixforge")


@dataclass(frozen=True)
class Source:
    """One input to prepare: a video file, or a folder of images read as frames in sorted order."""

    path: Path
    identity: str
    kind: str  # "video" or "images"
    fps: float
    frames: int | None  # the probed frame count (None when the container does not say)

    @property
    def key(self) -> str:
        """The source's folder in DATA: readable stem + a hash of (absolute path, identity)."""
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", self.path.stem if self.kind == "video" else self.path.name)
        digest = hashlib.sha1(f"{self.path.resolve()}\0{self.identity}".encode()).hexdigest()[:8]
        return f"{stem.lstrip('.') or 'source'}-{digest}"

    def read(self) -> Iterator[np.ndarray]:
        """Every frame, uint8 H x W x 3 RGB."""
        if self.kind == "video":
            with VideoReader(self.path, batch_size=8) as reader:
                for batch in reader:
                    yield from batch
        else:
            for path in list_images(self.path, recursive=False):
                yield read_image(path)


def identity_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise PixforgeError(f"identity name {name!r} is not valid: use letters, digits, '.', '_' and '-' "
                            "(starting with a letter or digit)")
    return name


def find_sources(specs: Sequence[str], fps: float) -> list[Source]:
    """The sources named on the command line (videos, image folders, folders of videos, NAME=PATH), each checked
    (exists, readable, has frames) before anything is written."""
    sources: list[Source] = []
    for spec in specs:
        spec = str(spec)
        name = None
        if not Path(spec).exists() and "=" in spec:
            name, spec = spec.split("=", 1)
            name = identity_name(name)
        path = Path(spec)
        if not path.exists():
            raise PixforgeError(f"source {path} does not exist")
        if path.is_file():
            if not is_video_path(path):
                raise PixforgeError(f"source {path} is not a video (give a video, or a folder of images or videos)")
            sources.append(_video(path, name))
            continue
        videos = sorted(p for p in path.iterdir() if p.is_file() and is_video_path(p))
        images = [p for p in path.iterdir() if p.is_file() and is_image_path(p) and not p.name.startswith(".")]
        if not videos and not images:
            raise PixforgeError(f"source folder {path} holds no images or videos")
        sources += [_video(v, name) for v in videos]
        if images:
            sources.append(Source(path, name or identity_name(_safe(path.resolve().name)), "images", fps, len(images)))
    keys = [s.key for s in sources]
    if len(set(keys)) != len(keys):
        raise PixforgeError("a source is named twice on the command line")
    return sorted(sources, key=lambda s: s.key)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip("._-") or "source"


def _video(path: Path, name: str | None) -> Source:
    info = probe_video(path)
    if info.frame_count == 0:
        raise PixforgeError(f"video {path} has no frames")
    fps = info.playback_fps  # a variable-frame-rate video's mean rate (the smoothing's clock)
    return Source(path, name or identity_name(_safe(path.stem)), "video", fps, info.frame_count)


def versions() -> dict[str, str]:
    found = {}
    for package in ("pixforge-dfvae", "pixforge-core", "dlib-bin", "dlib", "torch", "kornia", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def prepare(*sources: str, out: str | None = None, size: int = 128, detector: str = "hog", detect_every: int = 5,
            padding: float = 0.25, all_tracks: bool = False, min_frames: int = 2, max_side: int = 640,
            fps: float = 25.0, shard: str | None = None, overwrite: bool = False, quiet: bool = False) -> str:
    """Extract DF-VAE training data from SOURCE... (videos, folders of images (one sequence each) or of videos;
    NAME=PATH names the identity, default the file stem) into the folder --out DATA: per source its longest face
    track (--all-tracks: every track of --min-frames or more, identities NAME-0, NAME-1, ... by length), landmarks
    smoothed (One Euro), crops aligned to dlib's mean face at --size (--padding: margin per side, dlib's), the 2x3
    affines, 68 landmarks in crop pixels, face masks, and a contact sheet per clip. Detection (--detector hog or
    cnn: dlib, extra pixforge-core[faces]; mediapipe: in its own environment) on every --detect-every-th frame,
    landmarks re-fitted in between, frames shrunk to --max-side for detection. --fps: frame rate of image folders
    (for the smoothing). Resumable: finished
    sources are skipped (--overwrite redoes them); --shard K/N prepares every N-th source, for parallel jobs."""
    check_numbers(dict(size=size, detect_every=detect_every, min_frames=min_frames, max_side=max_side, fps=fps,
                       padding=padding),
                  integers={"size": 16, "detect_every": 1, "min_frames": 1, "max_side": 64},
                  positive=("fps",), non_negative=("padding",))
    if out is None:
        raise PixforgeError("--out DATA is required (the dataset folder)")
    if not sources:
        raise PixforgeError("prepare needs at least one SOURCE (a video, or a folder of images or videos)")
    data = Path(out)
    if data.exists() and not data.is_dir():
        raise PixforgeError(f"--out {data} exists and is not a folder")
    k, n = parse_shard(shard)
    found = find_sources(sources, fps)
    check_outside(data, [s.path for s in found if s.kind == "images"])  # not among the images it reads
    mine = [s for i, s in enumerate(found) if i % n == k]
    options = {"size": size, "padding": padding, "detector": detector, "detect_every": detect_every,
               "all_tracks": all_tracks, "min_frames": min_frames, "max_side": max_side}
    todo = []
    for source in mine:
        record = read_record(data / source.key)
        if record is not None and not overwrite:
            saved = {key: record["options"].get(key) for key in DATA_OPTIONS}
            if saved != {key: options[key] for key in DATA_OPTIONS}:
                given = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in saved.items())
                raise PixforgeError(f"{data / source.key} was prepared with {given}: give the same options, or "
                                    "--overwrite to redo it")
            continue
        todo.append(source)
    from pixforge.core.faces import open_detector  # the faces extra, checked before anything is written

    backend = open_detector(detector) if todo else None
    from tqdm import tqdm

    done = []
    for source in tqdm(todo, desc="prepare", unit="source", disable=quiet or len(todo) < 2):
        done.append(prepare_source(source, data, backend, options))
    if data.is_dir():
        write_manifest(data, options)
    skipped = len(mine) - len(todo)
    shard_note = f" (shard {k + 1}/{n} of {len(found)})" if n > 1 else ""
    lines = [f"prepared {len(done)} source(s), skipped {skipped} finished{shard_note} -> {data}"]
    lines += [f"  {', '.join(c['identity'] for c in r['clips'])}: {sum(c['frames'] for c in r['clips'])} frames "
              f"from {r['path']}" for r in done]
    return "\n".join(lines)


def read_record(folder: Path) -> dict | None:
    """A finished source's source.json (None when the source is not finished)."""
    path = folder / "source.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise PixforgeError(f"{path} is not a readable JSON file (delete {folder} to prepare it again)") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise PixforgeError(f"{path} is not a pixforge-dfvae source record ({FORMAT})")
    return record


def track_source(source: Source, backend, detect_every: int, max_side: int) -> tuple[dict, int, int]:
    """({track id: Track}, frames read, frames with a face) of one pass over the source."""
    from pixforge.core.faces import FaceTracker, track_faces

    tracker = FaceTracker()
    frames = 0
    for _ in track_faces(source.read(), backend, detect_every=detect_every, tracker=tracker, max_side=max_side):
        frames += 1
    if frames == 0:
        raise PixforgeError(f"{source.path} has no frames")
    tracks = {i: confirmed(t, detect_every) for i, t in tracker.tracks.items()}
    tracks = {i: t for i, t in tracks.items() if t.frames}
    return tracks, frames, len({f for t in tracks.values() for f in t.frames})


def confirmed(track, detect_every: int):
    """`track` without the frames the detector did not vouch for: a frame whose landmarks were only re-fitted on
    the predicted box is kept when the detection runs around it (the frames k * detect_every before and after it)
    both found this track's face; so none after the video's last detection run. The tracker carries a face that
    has left the picture (a cut, a title card, a fade to black) for up to `max_gap` frames: without this, crops of
    whatever is there would be training data."""
    found = {f for f, d in zip(track.frames, track.detected, strict=True) if d}
    keep = [i for i, (f, d) in enumerate(zip(track.frames, track.detected, strict=True))
            if d or (f - f % detect_every in found and f - f % detect_every + detect_every in found)]
    return replace(track, frames=[track.frames[i] for i in keep], faces=[track.faces[i] for i in keep],
                   detected=[track.detected[i] for i in keep])


def prepare_source(source: Source, data: Path, backend, options: dict) -> dict:
    """Track, smooth, align and write one source (staged, renamed into place when complete); its record."""
    from pixforge.core.faces import smooth_sequence

    size, padding = options["size"], options["padding"]
    tracks, frames, with_face = track_source(source, backend, options["detect_every"], options["max_side"])
    if with_face == 0:
        raise PixforgeError(f"{source.path}: no face found in any of its {frames} frames (try --detector cnn, "
                            "or a larger --max-side for small faces)")
    ranked = sorted(tracks.values(), key=lambda t: (-len(t.frames), -np.mean([f.size for f in t.faces]), t.id))
    chosen = [t for t in ranked if len(t.frames) >= options["min_frames"]]
    if not options["all_tracks"]:
        chosen = chosen[:1]
    if not chosen:
        raise PixforgeError(f"{source.path}: its longest face track has {len(ranked[0].frames)} frames, fewer than "
                            f"--min-frames {options['min_frames']}")
    if len(chosen[0].faces[0].landmarks) != 68:
        raise PixforgeError("DF-VAE needs 68-point landmarks")
    names = [f"{source.identity}-{i}" for i in range(len(chosen))] if options["all_tracks"] else [source.identity]
    smoothed = {t.id: smooth_sequence(np.stack([f.landmarks for f in t.faces]), t.frames, source.fps)
                for t in chosen}
    target = data / source.key
    data.mkdir(parents=True, exist_ok=True)  # only now: every check of this source has passed
    for stale in (*data.glob(f".{source.key}.tmp-*"), *data.glob(f".{source.key}.old-*")):
        shutil.rmtree(stale, ignore_errors=True)  # left by an interrupted run (shards never share a source)
    staging = Path(tempfile.mkdtemp(prefix=f".{source.key}.tmp-", dir=data))
    os.chmod(staging, 0o777 & ~umask())  # mkdtemp's 0700 would stay on the source's folder
    try:
        clips = {}
        for track, name in zip(chosen, names, strict=True):
            folder = staging / f"track-{track.id}"
            folder.mkdir()
            t = len(track.frames)
            clips[track.id] = {
                "folder": folder, "identity": name, "rows": {f: i for i, f in enumerate(track.frames)},
                "crops": np.lib.format.open_memmap(folder / "crops.npy", "w+", np.uint8, (t, size, size, 3)),
                "landmarks": np.zeros((t, 68, 2), np.float32), "affines": np.zeros((t, 2, 3), np.float64)}
        _align_frames(source, chosen, smoothed, clips, size, padding)
        records = []
        for track in chosen:
            clip = clips[track.id]
            clip["crops"].flush()
            records.append(write_clip(clip["folder"], clip["crops"], clip["landmarks"], clip["affines"],
                                      np.asarray(track.frames, np.int64), clip["identity"], track=track.id))
            del clip["crops"]
        record = {"format": FORMAT, "path": str(source.path.resolve()), "kind": source.kind,
                  "identity": source.identity, "frames": frames, "frames_with_face": with_face, "fps": source.fps,
                  "tracks_found": len(tracks), "clips": records, "options": options, "versions": versions()}
        write_text(staging / "source.json", json.dumps(record, indent=2))
        if target.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{source.key}.old-", dir=data))
            os.replace(target, trash / "old")
            os.replace(staging, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("%s: %d of %d frames with a face, %d track(s) kept", source.path, with_face, frames, len(chosen))
    return record


def _align_frames(source: Source, chosen, smoothed: dict, clips: dict, size: int, padding: float) -> None:
    """Second pass: every chosen track's frames aligned into its clip's arrays."""
    from pixforge.core.faces import align, transform_points

    wanted = {f for t in chosen for f in t.frames}
    last = max(wanted)
    for index, frame in enumerate(source.read()):
        if index in wanted:
            for track in chosen:
                clip = clips[track.id]
                row = clip["rows"].get(index)
                if row is None:
                    continue
                points = smoothed[track.id][row]
                crop, matrix = align(frame, points, size, padding)
                clip["crops"][row] = crop
                clip["landmarks"][row] = transform_points(points, matrix)
                clip["affines"][row] = matrix
        if index >= last:
            break


def write_clip(folder: Path, crops: np.ndarray, landmarks: np.ndarray, affines: np.ndarray,
               frame_index: np.ndarray, identity: str, track: int = 0) -> dict:
    """Write a clip's arrays (crops.npy unless already there), masks and contact sheet into `folder`; its record.
    Also what tests and other tools use to build a dataset from crops they already have."""
    import torch

    from pixforge.dfvae.masks import face_mask

    folder.mkdir(parents=True, exist_ok=True)
    t, size = len(crops), crops.shape[1]
    if not (crops.shape == (t, size, size, 3) and crops.dtype == np.uint8 and landmarks.shape == (t, 68, 2)
            and affines.shape == (t, 2, 3) and frame_index.shape == (t,)):
        raise ValueError(f"clip arrays do not match: crops {crops.shape} {crops.dtype}, landmarks {landmarks.shape}, "
                         f"affines {affines.shape}, frame_index {frame_index.shape}")
    if not (folder / "crops.npy").exists():
        np.save(folder / "crops.npy", np.ascontiguousarray(crops))
    np.save(folder / "landmarks.npy", landmarks.astype(np.float32))
    np.save(folder / "affines.npy", affines.astype(np.float64))
    np.save(folder / "frame_index.npy", frame_index.astype(np.int64))
    masks = np.lib.format.open_memmap(folder / "masks.npy", "w+", np.uint8, (t, size, size))
    for start in range(0, t, 64):
        chunk = torch.from_numpy(landmarks[start:start + 64].astype(np.float32))
        masks[start:start + 64] = face_mask(chunk, size)[:, 0].to(torch.uint8).numpy()
    masks.flush()
    del masks
    write_image(folder / "contact.png", contact_sheet(crops, landmarks))
    return {"folder": folder.name, "identity": identity, "track": int(track), "frames": int(t),
            "first_frame": int(frame_index[0]), "last_frame": int(frame_index[-1])}


def contact_sheet(crops: np.ndarray, landmarks: np.ndarray, count: int = CONTACT_FRAMES) -> np.ndarray:
    """Up to `count` crops, evenly spaced over the clip, with their landmarks drawn (green dots), in a grid."""
    from PIL import Image, ImageDraw

    picks = np.unique(np.linspace(0, len(crops) - 1, min(count, len(crops))).round().astype(int))
    size = crops.shape[1]
    r = max(1.0, size / 128)
    tiles = []
    for i in picks:
        image = Image.fromarray(np.asarray(crops[i]))
        draw = ImageDraw.Draw(image)
        for x, y in landmarks[i]:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(0, 255, 0))
        tiles.append(np.asarray(image))
    return make_grid(tiles, nrow=min(len(tiles), 4))


def write_manifest(data: Path, options: dict) -> Path:
    """DATA/manifest.json from every finished source in DATA (atomic; what a human or a script reads first)."""
    sources, identities = {}, {}
    for folder in sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith(".")):
        record = read_record(folder)
        if record is None:
            continue
        sources[folder.name] = {k: record[k] for k in ("path", "kind", "identity", "frames", "frames_with_face",
                                                       "fps")}
        sources[folder.name]["options"] = record["options"]
        for clip in record["clips"]:
            entry = identities.setdefault(clip["identity"], {"frames": 0, "clips": []})
            entry["frames"] += clip["frames"]
            entry["clips"].append(f"{folder.name}/{clip['folder']}")
    manifest = {"format": FORMAT, "options": options, "identities": dict(sorted(identities.items())),
                "sources": sources, "versions": versions()}
    path = data / "manifest.json"
    write_text(path, json.dumps(manifest, indent=2))
    return path
