"""pixforge.core.faces with the mediapipe backend: runs only where mediapipe 0.10.21 is installed, which pins
numpy<2 and so lives in its own environment (`nox -s faces_mediapipe`); the main test venv skips this file."""

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("mediapipe", reason="mediapipe 0.10.21 runs in its own venv: nox -s faces_mediapipe")
pytest.importorskip("dlib", reason="the comparison with dlib needs the faces extra")

from pixforge.core.faces import align, detect_faces, iou, open_backend, open_detector, track_faces  # noqa: E402
from pixforge.core.faces.mediapipe_backend import MESH_TO_68  # noqa: E402
from pixforge.core.io import embedded_images  # noqa: E402
from pixforge.export.errors import PixforgeError  # noqa: E402


@pytest.fixture(scope="module")
def mp68():
    return open_backend("mediapipe")


@pytest.fixture(scope="module")
def dlib_face(astronaut):
    return detect_faces(astronaut, open_backend("dlib", detector="hog"))[0]


@pytest.fixture(scope="module")
def astronaut():
    return embedded_images(["astronaut"])[0]


def nme(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance over the outer-eye-corner distance of `b` (68-point order)."""
    return float(np.linalg.norm(a - b, axis=1).mean() / np.linalg.norm(b[36] - b[45]))


def test_blazeface_finds_the_astronaut_where_dlib_does(mp68, astronaut, dlib_face):
    faces = mp68.detect(astronaut)
    assert len(faces) == 1 and faces[0].score > 0.8
    assert iou(faces[0].box, dlib_face.box) > 0.5


def test_mesh_to_68_agrees_with_dlib(mp68, astronaut, dlib_face):
    ours = mp68.landmarks(astronaut, dlib_face.box)
    assert ours.shape == (68, 2) and ours.dtype == np.float32
    assert nme(ours, dlib_face.landmarks) < 0.06  # tools/mediapipe_68.py: 0.027 on this image
    assert len(set(MESH_TO_68)) == 68 and max(MESH_TO_68) < 478


def test_mesh_points_follow_a_shift_and_a_scale_of_the_image(astronaut, dlib_face):
    mesh = open_backend("mediapipe", points=478)
    base = mesh.landmarks(astronaut, dlib_face.box)
    assert base.shape == (478, 2)
    shifted = np.zeros((612, 562, 3), np.uint8)
    shifted[70:582, 30:542] = astronaut
    x0, y0, x1, y1 = dlib_face.box
    moved = mesh.landmarks(shifted, (x0 + 30, y0 + 70, x1 + 30, y1 + 70))
    assert np.abs(moved - base - (30, 70)).mean() < 0.5
    big = np.asarray(Image.fromarray(astronaut).resize((1024, 1024), Image.Resampling.BICUBIC))
    doubled = mesh.landmarks(big, tuple(2 * v for v in dlib_face.box))
    assert np.abs(doubled - ((base + 0.5) * 2 - 0.5)).mean() < 1.5  # pixel centres scale about the edge


def test_alignment_from_mediapipe_points_matches_dlib(mp68, astronaut, dlib_face):
    ours, theirs = (align(astronaut, pts, size=128)[0].astype(np.float64)
                    for pts in (mp68.landmarks(astronaut, dlib_face.box), dlib_face.landmarks))
    assert np.abs(ours - theirs).mean() < 12  # grey levels: the same face, framed within a few pixels


def test_tracking_with_mediapipe(mp68, astronaut):
    frames = [np.roll(astronaut, 4 * i, axis=1) for i in range(4)]
    per_frame = list(track_faces(frames, mp68, detect_every=2))
    ids = [set(faces) for _, faces in per_frame]
    assert all(i == ids[0] and len(i) == 1 for i in ids)


def test_detector_mediapipe_gives_dlib_order_landmarks(astronaut, dlib_face):
    backend = open_detector("mediapipe")
    assert backend.landmark_count == 68 and backend.landmarks(astronaut, dlib_face.box).shape == (68, 2)


def test_errors_are_one_sentence(mp68):
    with pytest.raises(PixforgeError, match="no identity embedding"):
        mp68.embed(np.zeros((64, 64, 3), np.uint8), np.zeros((68, 2)))
    with pytest.raises(PixforgeError, match="found no face"):
        mp68.landmarks(np.zeros((200, 200, 3), np.uint8), (50, 50, 150, 150))
    for options, message in (({"model": 2}, "--model"), ({"points": 5}, "--points"), ({"min_score": 2}, "--min-score")):
        with pytest.raises(PixforgeError, match=message):
            open_backend("mediapipe", **options)
