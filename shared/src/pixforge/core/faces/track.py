"""Link per-frame faces into identity tracks (IoU + landmark distance), and track between sparse detections.

`FaceTracker.update(frame, faces)` matches a frame's detections to the live tracks' predicted faces (constant
velocity from the last two matched detections): a pair may match when its IoU reaches `iou_threshold` or its mean
landmark distance, divided by the face size, is at most `landmark_threshold`; pairs are taken greedily by cost
(1 - IoU + landmark distance). Unmatched detections open new tracks (ids count up from 0 and never change);
a track that goes more than `max_gap` frames without a detection ends.

`track_faces(frames, backend, detect_every=k)` detects on every k-th frame only; in between, each live track's
predicted box is handed to the backend's landmarker (a few ms with dlib, against tens for detection) and the box
follows the re-fitted landmarks (`refit`). `FaceTracker.carry` records such faces without matching.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from pixforge.core.faces.detect import detect_faces
from pixforge.core.faces.face import Box, Face, FaceBackend
from pixforge.export.errors import PixforgeError


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def landmark_distance(a: np.ndarray, b: np.ndarray, size: float) -> float:
    """Mean euclidean distance between corresponding landmarks, divided by the face size."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - b, axis=1).mean() / max(size, 1e-6))


@dataclass
class Track:
    """One identity: the frames it was seen in and its face there (`detected[i]`: found by the detector)."""

    id: int
    frames: list[int] = field(default_factory=list)
    faces: list[Face] = field(default_factory=list)
    detected: list[bool] = field(default_factory=list)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # box change per frame
    last_detected: int = -1

    def predict(self, frame: int) -> Face:
        """The last face moved on at constant velocity to `frame`."""
        last = self.faces[-1]
        step = self.velocity * (frame - self.frames[-1])
        box = tuple(float(v) for v in np.asarray(last.box) + step)
        if last.landmarks is None:
            return last.with_(box=box, embedding=None)
        shift = np.array([(step[0] + step[2]) / 2, (step[1] + step[3]) / 2], np.float32)
        return last.with_(box=box, landmarks=last.landmarks + shift, embedding=None)

    def _add(self, frame: int, face: Face, detected: bool) -> None:
        if detected:
            previous = next((i for i in range(len(self.faces) - 1, -1, -1) if self.detected[i]), None)
            if previous is not None and frame > self.frames[previous]:
                gap = frame - self.frames[previous]
                self.velocity = (np.asarray(face.box) - self.faces[previous].box) / gap
            self.last_detected = frame
        self.frames.append(frame)
        self.faces.append(face)
        self.detected.append(detected)


class FaceTracker:
    """Identity tracks over a video, fed one frame's faces at a time (see the module docstring)."""

    def __init__(self, iou_threshold: float = 0.3, landmark_threshold: float = 0.15, max_gap: int = 10):
        self.iou_threshold, self.landmark_threshold, self.max_gap = iou_threshold, landmark_threshold, max_gap
        self.tracks: dict[int, Track] = {}  # every track, live or ended, by id
        self._live: list[int] = []

    @property
    def live(self) -> list[Track]:
        """The tracks that may still continue."""
        return [self.tracks[i] for i in self._live]

    def predict(self, frame: int) -> dict[int, Face]:
        """Each live track's predicted face at `frame` (ends the tracks unseen for over `max_gap` frames)."""
        self._expire(frame)
        return {track.id: track.predict(frame) for track in self.live}

    def update(self, frame: int, faces: Sequence[Face]) -> dict[int, Face]:
        """Match `frame`'s detected faces to the live tracks; returns {track id: face} for every face."""
        predicted = self.predict(frame)
        pairs = []
        for track_id, guess in predicted.items():
            for j, face in enumerate(faces):
                overlap = iou(guess.box, face.box)
                distance = (landmark_distance(guess.landmarks, face.landmarks, guess.size)
                            if guess.landmarks is not None and face.landmarks is not None else None)
                if overlap >= self.iou_threshold or (distance is not None and distance <= self.landmark_threshold):
                    pairs.append((1.0 - overlap + (distance or 0.0), track_id, j))
        assigned: dict[int, Face] = {}
        taken: set[int] = set()
        for _, track_id, j in sorted(pairs):
            if track_id not in assigned and j not in taken:
                assigned[track_id] = faces[j]
                taken.add(j)
        for j, face in enumerate(faces):
            if j not in taken:
                track_id = len(self.tracks)
                self.tracks[track_id] = Track(track_id)
                self._live.append(track_id)
                assigned[track_id] = face
        for track_id, face in assigned.items():
            self.tracks[track_id]._add(frame, face, detected=True)
        return dict(sorted(assigned.items()))

    def carry(self, frame: int, faces: dict[int, Face]) -> dict[int, Face]:
        """Record faces found without detection (re-fitted on predicted boxes) on their tracks, as given."""
        for track_id, face in faces.items():
            self.tracks[track_id]._add(frame, face, detected=False)
        return dict(sorted(faces.items()))

    def _expire(self, frame: int) -> None:
        self._live = [i for i in self._live if frame - self.tracks[i].last_detected <= self.max_gap]


def refit(image: np.ndarray, backend: FaceBackend, guess: Face) -> Face:
    """`guess` (a predicted face) with landmarks re-fitted in `image`, its box moved and scaled with them."""
    landmarks = backend.landmarks(image, guess.box)
    if guess.landmarks is None:
        return guess.with_(landmarks=landmarks)
    old = np.asarray(guess.landmarks, np.float64)
    new = np.asarray(landmarks, np.float64)
    old_c, new_c = old.mean(axis=0), new.mean(axis=0)
    scale = np.sqrt(((new - new_c) ** 2).sum(axis=1).mean() / max(((old - old_c) ** 2).sum(axis=1).mean(), 1e-12))
    x0, y0, x1, y1 = guess.box
    corners = (np.array([[x0, y0], [x1, y1]]) - old_c) * scale + new_c
    return guess.with_(box=tuple(float(v) for v in corners.ravel()), landmarks=landmarks)


def track_faces(frames: Iterable[np.ndarray], backend: FaceBackend, *, detect_every: int = 1,
                tracker: FaceTracker | None = None, max_side: int | None = 640,
                embed: bool = False) -> Iterator[tuple[int, dict[int, Face]]]:
    """(frame index, {track id: face}) for each frame: detection on every `detect_every`-th frame, landmarks
    re-fitted on the tracks' predicted boxes in between. `tracker.tracks` holds the whole history afterwards.

    Embeddings (`embed=True`) are computed on detection frames only. A face that leaves the picture is carried
    (re-fitted on its predicted box) until `tracker.max_gap` frames have passed since its last detection.
    """
    tracker = tracker if tracker is not None else FaceTracker()
    if detect_every < 1 or tracker.max_gap < detect_every - 1:
        raise PixforgeError(f"--detect-every must be between 1 and max_gap + 1 ({tracker.max_gap + 1}), "
                            f"got {detect_every}")
    for index, frame in enumerate(frames):
        if index % detect_every == 0:
            yield index, tracker.update(index, detect_faces(frame, backend, embed=embed, max_side=max_side))
        else:
            guesses = tracker.predict(index)
            yield index, tracker.carry(index, {i: refit(frame, backend, g) for i, g in guesses.items()})
