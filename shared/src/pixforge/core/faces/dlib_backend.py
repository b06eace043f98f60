"""The default face backend: dlib (the `dlib-bin` wheel) with the model files of `face-recognition-models`.

Detectors: "hog" (dlib's frontal HOG + linear SVM: fast on a CPU, frontal and near-frontal faces of 80 px and up
at `upsample=0`, 40 px at 1) and "cnn" (dlib's MMOD CNN: finds turned and smaller faces, ~60x slower on a CPU).
Landmarks: the 68-point iBUG-300W predictor (DF-VAE's convention) or the 5-point one (eye corners, nose base).
Embedding: dlib's 128-d face-recognition ResNet (99.38% on LFW); two faces are the same person when the
euclidean distance between their embeddings is below 0.6.

The model files are located through the installed `face_recognition_models` package without importing it (its
`__init__` imports `pkg_resources`, which recent setuptools no longer ship). Everything is loaded lazily:
constructing the backend imports dlib, the landmark and embedding networks load on first use.
"""

from __future__ import annotations

import importlib.util
import threading
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import numpy as np

from pixforge.core.cli import require_file
from pixforge.core.faces.face import Box, Face, check_image, missing_extra
from pixforge.export.errors import PixforgeError

MODEL_FILES = {
    "landmarks68": "shape_predictor_68_face_landmarks.dat",
    "landmarks5": "shape_predictor_5_face_landmarks.dat",
    "embed": "dlib_face_recognition_resnet_model_v1.dat",
    "cnn": "mmod_human_face_detector.dat",
}


_PREDICTORS: dict[str, object] = {}  # shape predictors by model file, loaded once per process
_PREDICTORS_LOCK = threading.Lock()
_IDLE_HOGS: list = []  # built HOG detectors not running now
_HOGS_LOCK = threading.Lock()


def models_dir() -> Path:
    """The folder of dlib model files that the `face-recognition-models` wheel installs."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise missing_extra()
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class DlibBackend:
    """dlib face detection ("hog" or "cnn"), 68- or 5-point landmarks and the 128-d identity embedding.

    `upsample` doubles the image that many times before detecting (finds smaller faces, 4x slower each);
    `threshold` shifts the detector's decision (lower finds more faces and more false ones); `models` is a
    folder holding the model files under their dlib names (default: the `face-recognition-models` wheel's).

    The landmark predictor (~0.5 s to load) is loaded once per process and shared by every backend (dlib's
    `shape_predictor` is read-only when fitting, so threads may share it); HOG detectors (~0.2 s to build each,
    and one may not run in two threads at once) are lent from a process-wide pool, which builds a new one only
    when every built one is busy.
    """

    def __init__(self, detector: str = "hog", upsample: int = 0, points: int = 68, threshold: float = 0.0,
                 models: str | Path | None = None):
        if detector not in ("hog", "cnn"):
            raise PixforgeError(f"--detector must be 'hog' or 'cnn', got {detector!r}")
        if points not in (68, 5):
            raise PixforgeError(f"--points must be 68 or 5 for the dlib backend, got {points!r}")
        if upsample < 0:
            raise PixforgeError(f"--upsample must be 0 or more, got {upsample}")
        try:
            import dlib
        except ImportError:
            raise missing_extra() from None
        self._dlib = dlib
        self.models = Path(models) if models is not None else models_dir()
        self.detector, self.upsample, self.threshold = detector, int(upsample), float(threshold)
        self.name = f"dlib-{detector}"
        self.landmark_count = points
        if detector == "hog":
            with self._frontal():  # the first one is built now, so a broken dlib shows when the backend is opened
                pass
        else:
            self._cnn = dlib.cnn_face_detection_model_v1(str(self._model("cnn")))

    def _model(self, key: str) -> Path:
        return require_file(self.models / MODEL_FILES[key], what="dlib model file")

    @contextmanager
    def _frontal(self):
        """A HOG detector from the pool, for this call only (dlib's detector keeps scratch state while it runs)."""
        with _HOGS_LOCK:
            hog = _IDLE_HOGS.pop() if _IDLE_HOGS else None
        if hog is None:
            hog = self._dlib.get_frontal_face_detector()
        try:
            yield hog
        finally:
            with _HOGS_LOCK:
                _IDLE_HOGS.append(hog)

    @cached_property
    def _predictor(self):
        path = str(self._model(f"landmarks{self.landmark_count}").resolve())
        with _PREDICTORS_LOCK:
            if path not in _PREDICTORS:
                _PREDICTORS[path] = self._dlib.shape_predictor(path)
            return _PREDICTORS[path]

    @cached_property
    def _recognizer(self):
        return self._dlib.face_recognition_model_v1(str(self._model("embed")))

    def detect(self, image: np.ndarray) -> list[Face]:
        """Every face in `image` (box and score), highest score first."""
        image = check_image(image)
        if self.detector == "hog":
            with self._frontal() as hog:
                rects, scores, _ = hog.run(image, self.upsample, self.threshold)
            found = list(zip(rects, scores, strict=True))
        else:
            found = [(d.rect, d.confidence) for d in self._cnn(image, self.upsample)
                     if d.confidence >= self.threshold]
        faces = [Face(box=_box(rect), score=float(score)) for rect, score in found]
        return sorted(faces, key=lambda face: -face.score)

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        """(68, 2) or (5, 2) float32 landmarks of the face in `box`."""
        shape = self._predictor(check_image(image), self._rect(box))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """dlib's 128-d identity embedding (float32, as dlib gives it: norm near 1.5, not re-normalised)."""
        landmarks = np.asarray(landmarks, dtype=np.float64)
        if landmarks.shape not in ((68, 2), (5, 2)):
            raise ValueError(f"dlib's embedding needs (68, 2) or (5, 2) landmarks, got {landmarks.shape}")
        dlib = self._dlib
        x0, y0 = landmarks.min(axis=0)
        x1, y1 = landmarks.max(axis=0) + 1
        parts = dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in landmarks])
        shape = dlib.full_object_detection(self._rect((x0, y0, x1, y1)), parts)
        return np.asarray(self._recognizer.compute_face_descriptor(check_image(image), shape), dtype=np.float32)

    def _rect(self, box: Box):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        return self._dlib.rectangle(x0, y0, max(x1 - 1, x0), max(y1 - 1, y0))


def _box(rect) -> Box:
    """A dlib rectangle (inclusive right/bottom) as an edge-coordinate box."""
    return (float(rect.left()), float(rect.top()), float(rect.right() + 1), float(rect.bottom() + 1))
