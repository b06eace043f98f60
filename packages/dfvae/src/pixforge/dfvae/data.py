"""DF-VAE's training samples from one or several prepared folders (`pixforge-dfvae prepare`): many-to-many, one
model over every identity found.

Sample `index` is a pure function of (seed, index): an identity drawn uniformly (so a short clip's identity is
seen as often as a long one's), a frame x_t of it drawn uniformly, x' another frame of the same identity (any clip
of it; x_t itself only when the identity has one frame), x_{t-1} the frame before x_t in the same track (x_t itself
at a track's first frame or after a gap, where the temporal term then asks for no flow between x̃_t and x_t).
Identities with the same name in several folders are one identity. Crops and masks are memory-mapped (`crops.npy`,
`masks.npy`), opened lazily in each loader worker; landmarks are held in memory (544 bytes a frame).

Each item: `frame`, `previous`, `reference` (3, S, S) in [-1, 1]; `heatmaps`, `previous_heatmaps` (68, S, S)
(`heatmaps.landmark_heatmaps`, sigma = 2 S / 128); `mask` (1, S, S) m^b (`masks.blur_mask` of the stored m_t,
sigma = S / 32); `landmarks` (68, 2); `identity` (int64, position in `identities`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pixforge.dfvae.heatmaps import landmark_heatmaps
from pixforge.dfvae.masks import blur_mask
from pixforge.dfvae.prepare import FORMAT, read_record
from pixforge.export.errors import PixforgeError

SAMPLE_SALT = 0x5EED


@dataclass
class Clip:
    """One track of one source: its folder, identity and per-frame landmarks and frame numbers."""

    folder: Path
    identity: str
    landmarks: np.ndarray  # (T, 68, 2) float32, crop pixels
    frame_index: np.ndarray  # (T,) int64


def find_clips(roots: Sequence[str | Path]) -> tuple[list[Clip], int]:
    """Every clip of every finished source in the prepared folders `roots`; (clips, crop size)."""
    clips, sizes = [], set()
    for root in map(Path, roots):
        if not root.is_dir():
            raise PixforgeError(f"--data {root} does not exist or is not a folder")
        found = 0
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            record = read_record(folder)
            if record is None:
                continue
            found += 1
            size = record["options"]["size"]
            sizes.add(size)
            for clip in record["clips"]:
                path = folder / clip["folder"]
                try:
                    landmarks = np.load(path / "landmarks.npy")
                    frame_index = np.load(path / "frame_index.npy")
                    shapes = {name: np.load(path / f"{name}.npy", mmap_mode="r").shape for name in ("crops", "masks")}
                except (OSError, ValueError) as err:
                    raise PixforgeError(f"{path} is incomplete ({err.__class__.__name__}: {err}); delete {folder} "
                                        "and prepare it again") from None
                count = len(frame_index)
                expected = {"landmarks": (count, 68, 2), "crops": (count, size, size, 3), "masks": (count, size, size)}
                shapes["landmarks"] = landmarks.shape
                for name, shape in expected.items():
                    if tuple(shapes[name]) != shape:
                        raise PixforgeError(f"{path / name}.npy holds {tuple(shapes[name])}, not {shape} ({count} "
                                            f"frames at {size} px); delete {folder} and prepare it again")
                if not np.isfinite(landmarks).all():
                    raise PixforgeError(f"{path / 'landmarks.npy'} holds NaN or infinite values; delete {folder} and "
                                        "prepare it again")
                clips.append(Clip(path, clip["identity"], landmarks.astype(np.float32), frame_index))
        if found == 0:
            raise PixforgeError(f"--data {root} holds no prepared sources ({FORMAT}): run pixforge-dfvae prepare")
    if len(sizes) > 1:
        raise PixforgeError(f"the --data folders hold crops of different sizes {sorted(sizes)}: prepare them at one "
                            "--size")
    return clips, sizes.pop()


class FaceFrames(torch.utils.data.Dataset):
    """DF-VAE training samples (see the module docstring) from prepared folders `roots`, at `size` (default: the
    prepared crop size; another size resizes crops, masks and landmarks), `identities` a subset of names."""

    def __init__(self, roots: Sequence[str | Path], size: int | None = None, seed: int = 0,
                 identities: Sequence[str] | None = None, length: int = 2**31 - 1):
        clips, self.data_size = find_clips(roots)
        names = sorted({c.identity for c in clips})
        if identities:
            unknown = sorted(set(identities) - set(names))
            if unknown:
                raise PixforgeError(f"unknown identit{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                                    f"the data holds {', '.join(names)}")
            names = sorted(set(identities))
            clips = [c for c in clips if c.identity in names]
        self.clips, self.identities = clips, names
        self.size = size or self.data_size
        self.seed, self.length = seed, length
        self.sigma, self.blur = 2.0 * self.size / 128, self.size / 32
        self.scale = self.size / self.data_size
        # per identity: (clip number, row) of each of its frames, in a fixed order
        self.frames: list[np.ndarray] = []
        for name in names:
            rows = [(i, r) for i, c in enumerate(clips) if c.identity == name for r in range(len(c.frame_index))]
            self.frames.append(np.asarray(rows, np.int64).reshape(-1, 2))
        self._maps: dict[tuple[int, str], np.ndarray] = {}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.sample(index)

    def counts(self) -> dict[str, int]:
        """Frames per identity."""
        return {name: len(f) for name, f in zip(self.identities, self.frames, strict=True)}

    def sample(self, index: int, identity: int | None = None) -> dict[str, torch.Tensor]:
        """Sample `index` (a pure function of (seed, index)); with `identity`, a frame of that identity (drawn
        from a stream of its own)."""
        index = int(index)
        stream = (self.seed, index, SAMPLE_SALT) if identity is None else (self.seed, index, SAMPLE_SALT, identity + 1)
        rng = np.random.default_rng(stream)
        who = int(rng.integers(len(self.identities))) if identity is None else identity
        frames = self.frames[who]
        pick = int(rng.integers(len(frames)))
        other = pick
        if len(frames) > 1:  # any other frame of the identity
            other = int(rng.integers(len(frames) - 1))
            other += other >= pick
        clip_no, row = frames[pick]
        clip = self.clips[clip_no]
        previous = row - 1 if row > 0 and clip.frame_index[row - 1] == clip.frame_index[row] - 1 else row
        frame, landmarks, mask = self._frame(clip_no, row)
        prev, prev_landmarks, _ = self._frame(clip_no, previous)
        reference = self._frame(*frames[other])[0]
        points = torch.stack([landmarks, prev_landmarks])
        heatmaps = landmark_heatmaps(points, self.size, self.sigma)
        return {"frame": frame, "previous": prev, "reference": reference, "heatmaps": heatmaps[0],
                "previous_heatmaps": heatmaps[1], "mask": blur_mask(mask[None], self.blur)[0],
                "landmarks": landmarks, "identity": torch.tensor(who)}

    def _array(self, clip_no: int, name: str) -> np.ndarray:
        key = (clip_no, name)
        if key not in self._maps:  # opened on first use, in the process that reads (loader workers)
            self._maps[key] = np.load(self.clips[clip_no].folder / f"{name}.npy", mmap_mode="r")
        return self._maps[key]

    def _frame(self, clip_no: int, row: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(crop (3, S, S) in [-1, 1], landmarks (68, 2), mask m_t (1, S, S)) at the dataset's size."""
        crop = torch.from_numpy(np.array(self._array(clip_no, "crops")[row])).permute(2, 0, 1).float() / 127.5 - 1
        mask = torch.from_numpy(np.array(self._array(clip_no, "masks")[row]))[None].float()
        landmarks = torch.from_numpy(self.clips[clip_no].landmarks[row])
        if self.scale != 1:
            size = (self.size, self.size)
            crop = F.interpolate(crop[None], size, mode="bilinear", antialias=True, align_corners=False)[0]
            mask = F.interpolate(mask[None], size, mode="bilinear", antialias=True, align_corners=False)[0]
            landmarks = (landmarks + 0.5) * self.scale - 0.5  # pixel centres at integers
        return crop.clamp(-1, 1), landmarks, mask.clamp(0, 1)

    def __getstate__(self) -> dict:  # memory maps are reopened in each worker, never pickled
        return {**self.__dict__, "_maps": {}}

    def describe(self) -> str:
        return ", ".join(f"{n} ({c} frames)" for n, c in self.counts().items())

