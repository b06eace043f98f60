"""What every face backend returns and takes: the `Face` record, the `FaceBackend` protocol, image checks.

Coordinates are in pixels of the image given to the backend. A box is `(x0, y0, x1, y1)` in pixel-edge coordinates
(the box of a 10 x 10 face whose top-left pixel is (20, 30) is `(20, 30, 30, 40)`); landmarks are in pixel-centre
coordinates (pixel row i, column j is the point (j, i)), so they can be fed to the warps of `align` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import numpy as np

from pixforge.export.errors import PixforgeError

Box = tuple[float, float, float, float]

FACES_EXTRA = "face detection needs the faces extra: pip install 'pixforge-core[faces]'"


@dataclass(frozen=True)
class Face:
    """One detected face: its box, the detector's score, and what was computed for it.

    `landmarks` is (N, 2) float32 (N = 68 in dlib's iBUG-300W order for the dlib backend), `embedding` the
    backend's identity vector (dlib: 128 floats, as dlib gives them, not re-normalised: same person when the
    euclidean distance is below 0.6). `score` is on the detector's own scale (HOG margin, CNN confidence).
    """

    box: Box
    score: float
    landmarks: np.ndarray | None = None
    embedding: np.ndarray | None = None

    @property
    def size(self) -> float:
        """The face's scale in pixels: the geometric mean of the box's width and height."""
        x0, y0, x1, y1 = self.box
        return float(np.sqrt(max(x1 - x0, 1e-6) * max(y1 - y0, 1e-6)))

    def with_(self, **changes) -> Face:
        """A copy with some fields replaced (`face.with_(landmarks=...)`)."""
        return replace(self, **changes)


@runtime_checkable
class FaceBackend(Protocol):
    """A face detector + landmarker (+ optional identity embedder) that `detect_faces` and `track_faces` drive.

    Images are uint8 H x W x 3 RGB arrays. `detect` returns faces with box and score only (landmarks and
    embeddings are asked for separately, so a tracker can re-fit landmarks on a carried box without detecting).
    """

    name: str
    landmark_count: int

    def detect(self, image: np.ndarray) -> list[Face]:
        """Every face in `image` (box and score), best first."""
        ...

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        """(landmark_count, 2) float32 landmarks of the face in `box`."""
        ...

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The identity embedding of the face with these landmarks (a `PixforgeError` when the backend has none)."""
        ...


def check_image(image: np.ndarray) -> np.ndarray:
    """`image` as a C-contiguous uint8 H x W x 3 array; a ValueError naming the shape and dtype otherwise."""
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"face functions expect a uint8 H x W x 3 RGB image, got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array)


def missing_extra() -> PixforgeError:
    """The one-sentence error for a missing `faces` extra."""
    return PixforgeError(FACES_EXTRA)
