"""`open_backend(name, **options)`: the one way tools get a face backend, by the name a `--backend` flag gives."""

from __future__ import annotations

from pixforge.core.faces.face import FaceBackend
from pixforge.export.errors import PixforgeError

BACKENDS = ("dlib", "mediapipe")
DETECTORS = ("hog", "cnn", "mediapipe")  # what a tool's --detector names: dlib's two detectors, or mediapipe


def open_backend(name: str = "dlib", **options) -> FaceBackend:
    """The face backend `name` built with `options` (dlib: `detector="hog"|"cnn"`, `upsample`, `points`,
    `threshold`, `models`; mediapipe: `model=0|1`, `points=68|478`, `min_score`, `mesh_score`); a `PixforgeError`
    naming what to install when its library is missing."""
    if name == "dlib":
        from pixforge.core.faces.dlib_backend import DlibBackend

        return DlibBackend(**options)
    if name == "mediapipe":
        from pixforge.core.faces.mediapipe_backend import MediapipeBackend

        return MediapipeBackend(**options)
    raise PixforgeError(f"--backend must be one of {', '.join(BACKENDS)}, got {name!r}")


def open_detector(detector: str = "hog", **dlib_options) -> FaceBackend:
    """The backend behind a tool's `--detector`: "hog" and "cnn" are dlib's (`dlib_options`: `upsample`, ...),
    "mediapipe" is BlazeFace + Face Mesh giving 68 points in dlib's order (its own environment; no embedding)."""
    if detector == "mediapipe":
        return open_backend("mediapipe")
    if detector in ("hog", "cnn"):
        return open_backend("dlib", detector=detector, **dlib_options)
    raise PixforgeError(f"--detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
