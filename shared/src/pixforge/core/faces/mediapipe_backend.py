"""The optional face backend: mediapipe 0.10.21 (BlazeFace detection + the 478-point Face Mesh with iris points).

mediapipe 0.10.21 is the last release whose wheel carries these models, and it pins numpy < 2 and protobuf < 5: it
cannot live in the same environment as the rest of pixforge's tests, so it has its own (`nox -s faces_mediapipe`,
or `pip install mediapipe==0.10.21 "numpy<2"` in a separate venv). Later mediapipe releases ship no models.

Detection: BlazeFace, `model=1` (full range, faces up to ~5 m; default) or `model=0` (short range, faces within
~2 m of the camera, faster). Landmarks: Face Mesh on a square crop around the given box (1.6x its size), so a
tracker can re-fit landmarks on a carried box; `points=478` gives the mesh (468 + 10 iris points, x and y in
pixels), `points=68` gives iBUG-300W's 68 points (dlib's order) read off the mesh by `MESH_TO_68` so `align`,
DF-VAE's heatmaps and SBI's masks work unchanged. There is no identity network: `embed` says so.

`MESH_TO_68` was fitted by `tools/mediapipe_68.py` (the mesh vertex nearest each dlib point on average over
frames of the offline face videos, both aligned to dlib's mean face); its residual is in that script's output
and the faces README.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from pixforge.core.faces.face import Box, Face, check_image
from pixforge.export.errors import PixforgeError

MEDIAPIPE_EXTRA = ("the mediapipe face backend needs mediapipe 0.10.21 (it pins numpy<2, so install it in its own "
                   "environment: pip install mediapipe==0.10.21 'numpy<2'; nox -s faces_mediapipe does)")

# iBUG-300W point i (dlib's 68-point order) -> Face Mesh vertex, fitted by tools/mediapipe_68.py on 136 frames
# (normalised mean error against dlib 0.043: jaw 0.073, brows 0.047, nose 0.030, eyes 0.020, mouth 0.035).
MESH_TO_68 = (
    127, 234, 177, 215, 172, 136, 149, 148, 152, 377, 378, 365, 397, 435, 401, 454, 356,  # jaw 0-16
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,  # brows 17-26
    168, 197, 5, 4, 75, 97, 2, 326, 460,  # nose 27-35
    7, 160, 158, 112, 153, 144, 382, 385, 387, 263, 373, 380,  # eyes 36-47
    61, 39, 37, 11, 267, 269, 291, 405, 314, 17, 84, 91,  # outer lips 48-59
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips 60-67
)
CROP_SCALE = 1.6  # the square crop Face Mesh sees, relative to the box's size
MESH_POINTS = 478


class MediapipeBackend:
    """mediapipe BlazeFace detection and Face Mesh landmarks (478, or 68 in dlib's order); no embedding.

    `min_score` is BlazeFace's detection threshold (0-1), `mesh_score` Face Mesh's on its crop.
    """

    def __init__(self, model: int = 1, points: int = 68, min_score: float = 0.5, mesh_score: float = 0.5):
        if model not in (0, 1):
            raise PixforgeError(f"--model must be 0 (short range) or 1 (full range) for mediapipe, got {model!r}")
        if points not in (68, MESH_POINTS):
            raise PixforgeError(f"--points must be 68 or {MESH_POINTS} for the mediapipe backend, got {points!r}")
        for name, value in (("min_score", min_score), ("mesh_score", mesh_score)):
            if not 0.0 <= value <= 1.0:
                raise PixforgeError(f"--{name.replace('_', '-')} must be within 0..1, got {value!r}")
        try:
            from mediapipe.python.solutions import face_detection, face_mesh
        except ImportError:
            raise PixforgeError(MEDIAPIPE_EXTRA) from None
        self.name = f"mediapipe-{'full' if model else 'short'}"
        self.landmark_count = points
        self._detector = face_detection.FaceDetection(model_selection=model, min_detection_confidence=min_score)
        self._mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                        min_detection_confidence=mesh_score)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Every face in `image` (box and score), highest score first."""
        image = check_image(image)
        height, width = image.shape[:2]
        faces = []
        for found in self._detector.process(image).detections or ():
            rel = found.location_data.relative_bounding_box
            x0, y0 = max(rel.xmin * width, 0.0), max(rel.ymin * height, 0.0)
            x1, y1 = min((rel.xmin + rel.width) * width, width), min((rel.ymin + rel.height) * height, height)
            if x1 > x0 and y1 > y0:
                faces.append(Face(box=(x0, y0, x1, y1), score=float(found.score[0])))
        return sorted(faces, key=lambda face: -face.score)

    def mesh(self, image: np.ndarray, box: Box) -> np.ndarray:
        """(478, 2) float32 Face Mesh points (pixel centres) of the face in `box`; a `PixforgeError` when the mesh
        finds no face in the crop around it."""
        image = check_image(image)
        crop, (left, top), scale = _square_crop(image, box)
        result = self._mesh.process(crop)
        if not result.multi_face_landmarks:
            raise PixforgeError(f"mediapipe's face mesh found no face in the box {tuple(round(v) for v in box)}")
        points = np.array([(p.x, p.y) for p in result.multi_face_landmarks[0].landmark], dtype=np.float64)
        edges = points * crop.shape[1] / scale + (left, top)  # normalised crop -> image edge coordinates
        return (edges - 0.5).astype(np.float32)  # -> pixel centres

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        """(68, 2) landmarks in dlib's order, or the (478, 2) mesh with `points=478`."""
        mesh = self.mesh(image, box)
        return mesh if self.landmark_count == MESH_POINTS else mesh[list(MESH_TO_68)]

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        raise PixforgeError("the mediapipe face backend has no identity embedding: use --backend dlib for it")


def _square_crop(image: np.ndarray, box: Box, side: int = 256) -> tuple[np.ndarray, tuple[int, int], float]:
    """A `side` x `side` RGB crop of the square CROP_SCALE x the box (zero outside the image): the crop, its
    top-left corner in the image, and the resize factor (crop pixels per image pixel)."""
    x0, y0, x1, y1 = box
    half = CROP_SCALE * max(x1 - x0, y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top, extent = int(round(cx - half)), int(round(cy - half)), max(int(round(2 * half)), 1)
    height, width = image.shape[:2]
    canvas = np.zeros((extent, extent, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(left, 0), max(top, 0), min(left + extent, width), min(top + extent, height)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = image[sy0:sy1, sx0:sx1]
    crop = np.asarray(Image.fromarray(canvas).resize((side, side), Image.Resampling.BILINEAR))
    return crop, (left, top), side / extent
