"""Clips of `extract-faces` folders for the detectors: training draws, evaluation items, on-the-fly distortions.

A face folder is `DIR/<video>/<frame>.png` + `track.json` (its `files` in time order and their `crop_landmarks`);
every finished video below DIR counts (folders starting with "." are unfinished and skipped).

Frame sampling, by the model (`sampling`):
  image        Xception: one frame (training: a random frame; evaluation: every frame is an item);
  consecutive  C3D, I3D, ResNet+LSTM: `clip` consecutive extracted frames (training: a random start; evaluation:
               non-overlapping clips from the first frame), looped when the video has fewer (mmaction2's
               `out_of_bound_opt="loop"`). Frames are the extracted ones: with `extract-faces --frames 32` they
               are 32 evenly spaced samples, with `--frames 0` the source frames;
  segments     TSN: the video cut into `clip` equal segments, one frame from each (training: random in the
               segment; evaluation: its middle, one item per video), as mmaction2's `SampleFrames(clip_len=1,
               num_clips=clip)`.

Training item `i` (`TrainClips`) is a pure function of (seed, i): label `i % 2` (0 real, 1 fake: every batch is
half and half), the video drawn uniformly from its class, the frames, the SBI draw and the distortion drawn from
`numpy.random.default_rng([seed, i])`. With `fake="sbi"` a fake is a self-blended version of a real clip
(`pixforge.forensics.sbi.self_blend` with seed (seed, i)): the same seed for every frame of a clip, so every frame
gets the same draw (hull kind, which copy is jittered and how, the affine, the blur kernels, the ratio) while the
mask follows each frame's own landmarks. With `distort_p` p a clip is distorted with probability p by one random
frame type (CS, CC, BW, GNC, GB, JPEG; not VC, an encoder setting: train on make-variants folders for it) at a
random level 1-5, the same type and level on every frame (BW / GNC draw per frame, as in a distorted video);
`distort_fake_only`: only the fake items (label 1) are distorted, the real ones stay clean (the thesis' std/sing
setting), with the same draws.

Items are uint8 tensors on [0, 255] RGB, 3 x H x W (image) or 3 x T x H x W, resized to `size` (cv2 INTER_AREA
down, INTER_LINEAR up); the model wrapper normalises them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from pixforge.export.errors import PixforgeError
from pixforge.forensics.distortions import FRAME_TYPES, LEVELS, Randomness, check_level, check_type, distort, parameter

SAMPLINGS = ("image", "consecutive", "segments")
MIN_CROP = 16  # extract-faces' smallest --size


@dataclass
class Video:
    key: str                      # its path below the scanned folder
    folder: Path
    files: list[str]
    landmarks: np.ndarray | None  # len(files) x 68 x 2 crop coordinates

    def __len__(self) -> int:
        return len(self.files)


def scan(root: str | os.PathLike, what: str = "face folder", landmarks: bool = False) -> list[Video]:
    """The finished videos of an extract-faces output folder (a `PixforgeError` when there are none, or when
    `landmarks` are needed and a track has none)."""
    root = Path(root)
    if not root.is_dir():
        raise PixforgeError(f"{what} {root} does not exist or is not a folder")
    videos = []
    for track_file in sorted(root.rglob("track.json")):
        rel = track_file.parent.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        try:
            track = json.loads(track_file.read_text())
            files = [str(f) for f in track["files"]]
        except (OSError, ValueError, KeyError, TypeError):
            raise PixforgeError(f"{track_file} is not an extract-faces track.json (no readable 'files')") from None
        if not files:
            continue
        marks = track.get("crop_landmarks")
        if landmarks and (not marks or len(marks) != len(files)):
            raise PixforgeError(f"{track_file} has no crop_landmarks for each file (needed by --fake sbi)")
        try:
            marks = np.asarray(marks, np.float32) if marks else None
        except (ValueError, TypeError):  # ragged, or not numbers
            marks = None
        if landmarks and (marks is None or not np.isfinite(marks).all()):
            raise PixforgeError(f"{track_file}: its crop_landmarks are not all finite numbers (needed by --fake sbi)")
        for name in files:
            check_crop(track_file.parent / name)
        videos.append(Video(rel.as_posix(), track_file.parent, files, marks))
    if not videos:
        raise PixforgeError(f"{what} {root} holds no extract-faces output (no track.json below it)")
    return videos


def check_crop(path: Path) -> None:
    """A face crop that training or evaluation will read: a readable image of at least MIN_CROP px a side (its
    header only: a folder of thousands of crops is checked in seconds)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError, ValueError):
        raise PixforgeError(f"cannot read face crop {path}") from None
    if min(width, height) < MIN_CROP:
        raise PixforgeError(f"face crop {path} is {width}x{height}: at least {MIN_CROP} px a side is needed")


def sampling_of(spec) -> str:
    """How a registered model's clips are sampled."""
    if not spec.video:
        return "image"
    return "segments" if spec.name == "tsn" else "consecutive"


def train_indices(n: int, clip: int, sampling: str, rng: np.random.Generator) -> list[int]:
    if sampling == "image":
        return [int(rng.integers(n))]
    if sampling == "segments":
        edges = np.linspace(0, n, clip + 1)
        return [min(n - 1, int(edges[k] + rng.random() * (edges[k + 1] - edges[k]))) for k in range(clip)]
    start = int(rng.integers(max(n - clip, 0) + 1))
    return [(start + k) % n for k in range(clip)]


def eval_indices(n: int, clip: int, sampling: str) -> list[list[int]]:
    """The evaluation items of an n-frame video (frame index lists)."""
    if sampling == "image":
        return [[k] for k in range(n)]
    if sampling == "segments":
        edges = np.linspace(0, n, clip + 1)
        return [[min(n - 1, int((edges[k] + edges[k + 1]) / 2)) for k in range(clip)]]
    starts = range(0, max(n - clip, 0) + 1, clip)
    return [[(s + k) % n for k in range(clip)] for s in starts]


def read_frame(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise PixforgeError(f"cannot read face crop {path}")
    return np.ascontiguousarray(image[:, :, ::-1])


def resize(frame: np.ndarray, size: int) -> np.ndarray:
    h, w = frame.shape[:2]
    if (h, w) == (size, size):
        return frame
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR)


def self_blend_clip(frames: list[np.ndarray], landmarks: list[np.ndarray], seed) -> list[np.ndarray]:
    """One SBI draw (`seed`) applied to each frame with its own landmarks."""
    from pixforge.forensics.sbi import self_blend

    return [self_blend(f, lm, seed=seed).blended for f, lm in zip(frames, landmarks, strict=True)]


def compress(frames: list[np.ndarray], crf: int) -> list[np.ndarray]:
    """VC: the frames through a libx264 encode at `crf` (25 fps) and back."""
    import tempfile

    from pixforge.export.video import VideoReader, VideoWriter

    with tempfile.TemporaryDirectory(prefix="pixforge-vc-") as tmp:
        path = Path(tmp) / "clip.mp4"
        with VideoWriter(path, 25, crf=crf, preset="medium") as writer:
            writer.write(np.stack(frames))
        with VideoReader(path) as reader:
            out = [f for batch in reader for f in batch]
    return out[: len(frames)]


def apply_distortion(frames: list[np.ndarray], kind: str, level: int, seed) -> list[np.ndarray]:
    """Distortion `kind` at `level` on every frame (BW / GNC from one `Randomness` per clip, drawn per frame)."""
    if kind == "VC":
        return compress(frames, int(parameter("VC", level)))
    randomness = Randomness(int(np.random.default_rng(seed).integers(2**32)), exact=False)
    return [distort(np.ascontiguousarray(f), kind, level, randomness) for f in frames]


def to_tensor(frames: list[np.ndarray], image: bool) -> torch.Tensor:
    clip = torch.from_numpy(np.ascontiguousarray(np.stack(frames).transpose(3, 0, 1, 2)))  # 3 x T x H x W
    return clip[:, 0] if image else clip


class TrainClips(torch.utils.data.Dataset):
    """Training draws (module docstring): item i -> {"clip", "label", "index", "key"}."""

    def __init__(self, real: list[Video], fake: list[Video] | str, clip: int, size: int, sampling: str,
                 seed: int = 0, distort_p: float = 0.0, distort_fake_only: bool = False):
        self.real, self.sbi = real, isinstance(fake, str)
        self.fake = real if self.sbi else fake
        self.clip, self.size, self.sampling, self.seed, self.distort_p = clip, size, sampling, seed, distort_p
        self.distort_fake_only = distort_fake_only

    def __len__(self) -> int:
        return 2**62

    def epoch_size(self) -> int:
        """Items in an epoch: twice the larger class's units (frames for an image model, videos otherwise)."""
        def units(videos):
            return sum(len(v) for v in videos) if self.sampling == "image" else len(videos)
        return 2 * max(units(self.real), units(self.fake))

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, int(index)])
        label = index % 2
        videos = self.fake if label else self.real
        video = videos[int(rng.integers(len(videos)))]
        idx = train_indices(len(video), self.clip, self.sampling, rng)
        frames = [read_frame(video.folder / video.files[k]) for k in idx]
        if label and self.sbi:
            frames = self_blend_clip(frames, [video.landmarks[k] for k in idx], (self.seed, int(index)))
        frames = [resize(f, self.size) for f in frames]
        if self.distort_p > 0 and rng.random() < self.distort_p and (label or not self.distort_fake_only):
            kind = FRAME_TYPES[int(rng.integers(len(FRAME_TYPES)))]
            frames = apply_distortion(frames, kind, int(rng.integers(1, 6)), (self.seed, int(index), 1))
        return {"clip": to_tensor(frames, self.sampling == "image"), "label": torch.tensor(float(label)),
                "index": int(index), "key": video.key}


class EvalClips(torch.utils.data.Dataset):
    """Every evaluation item of the real (label 0) and fake (label 1) videos; `fake="sbi"`: each real item again,
    self-blended with seed (seed, item). `distortion` (TYPE, LEVEL): applied to every item on the fly, the random
    types seeded by (seed, item) (`distort_fake_only`: the fake items only). `limit`: at most that many items,
    evenly spread over the list."""

    def __init__(self, real: list[Video], fake: list[Video] | str, clip: int, size: int, sampling: str,
                 seed: int = 0, distortion: tuple[str, int] | None = None, limit: int | None = None,
                 distort_fake_only: bool = False):
        self.clip, self.size, self.sampling, self.seed = clip, size, sampling, seed
        self.distortion, self.distort_fake_only = distortion, distort_fake_only
        self.items: list[tuple[Video, list[int], int, bool]] = []  # video, frames, label, self-blend
        sbi_fakes = isinstance(fake, str)
        for label, videos, sbi in ((0, real, False), (1, real if sbi_fakes else fake, sbi_fakes)):
            for video in videos:
                for idx in eval_indices(len(video), clip, sampling):
                    self.items.append((video, idx, label, sbi))
        if limit is not None and len(self.items) > limit:  # evenly spread, both classes kept
            keep = np.linspace(0, len(self.items) - 1, limit).round().astype(int)
            self.items = [self.items[k] for k in keep]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        video, idx, label, sbi = self.items[index]
        frames = [read_frame(video.folder / video.files[k]) for k in idx]
        if sbi:
            frames = self_blend_clip(frames, [video.landmarks[k] for k in idx], (self.seed, int(index)))
        frames = [resize(f, self.size) for f in frames]
        if self.distortion is not None and (label or not self.distort_fake_only):
            frames = apply_distortion(frames, *self.distortion, (self.seed, int(index), 2))
        return {"clip": to_tensor(frames, self.sampling == "image"), "label": torch.tensor(float(label)),
                "index": int(index), "video": f"{'fake' if label else 'real'}/{video.key}",
                "frame": video.files[idx[len(idx) // 2]]}


def parse_distortion(text: str) -> tuple[str, int]:
    """`TYPE:LEVEL` (e.g. GB:3) -> (type, level), any of the 7 types."""
    try:
        kind, level = str(text).split(":")
        return check_type(kind.strip()), check_level(level.strip())
    except (ValueError, PixforgeError):
        raise PixforgeError(f"--distort must be TYPE:LEVEL with TYPE one of CS, CC, BW, GNC, GB, JPEG, VC and "
                            f"LEVEL 1-5, got {text!r}") from None


__all__ = ["Video", "scan", "TrainClips", "EvalClips", "SAMPLINGS", "LEVELS", "parse_distortion", "sampling_of"]
