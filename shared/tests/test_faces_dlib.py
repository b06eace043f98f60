"""pixforge.core.faces with the dlib backend (the faces extra): detection, landmarks, identity, dlib chip parity."""

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("dlib")

from pixforge.core.faces import align, detect_faces, open_backend, track_faces  # noqa: E402
from pixforge.core.io import embedded_images  # noqa: E402

SAME_PERSON = 0.6  # dlib's euclidean threshold for its 128-d embedding


@pytest.fixture(scope="module")
def hog():
    return open_backend("dlib", detector="hog")


@pytest.fixture(scope="module")
def astronaut():
    return embedded_images(["astronaut"])[0]


def test_hog_finds_the_astronaut_face_with_68_landmarks(hog, astronaut):
    faces = detect_faces(astronaut, hog)
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0].box
    assert 170 <= x0 < x1 <= 290 and 40 <= y0 < y1 <= 190 and x1 - x0 > 60
    landmarks = faces[0].landmarks
    assert landmarks.shape == (68, 2) and landmarks.dtype == np.float32
    grow = 0.15 * (x1 - x0)  # the jaw line may reach a little past dlib's box
    assert (landmarks[:, 0] >= x0 - grow).all() and (landmarks[:, 0] <= x1 + grow).all()
    assert (landmarks[:, 1] >= y0 - grow).all() and (landmarks[:, 1] <= y1 + grow).all()
    eyes, mouth = landmarks[36:48], landmarks[48:68]
    assert eyes[:, 1].mean() < landmarks[30, 1] < mouth[:, 1].mean()  # eyes above nose tip above mouth
    assert landmarks[36:42, 0].mean() < landmarks[42:48, 0].mean()  # the face's right eye on the image's left


def test_large_frames_are_detected_downsized_and_mapped_back(hog, astronaut):
    big = np.asarray(Image.fromarray(astronaut).resize((1024, 1024), Image.Resampling.BICUBIC))
    full = detect_faces(astronaut, hog, landmarks=False)[0]
    faces = detect_faces(big, hog, max_side=512)
    assert len(faces) == 1
    assert np.allclose(faces[0].box, np.multiply(full.box, 2), atol=4)
    assert faces[0].landmarks[:, 0].max() > 512  # landmarks fitted on the full-size frame


def test_identity_embedding_separates_people(hog, astronaut):
    face = detect_faces(astronaut, hog, embed=True)[0]
    assert face.embedding.shape == (128,) and face.embedding.dtype == np.float32
    moved = np.zeros((480, 520, 3), np.uint8)  # the same photo, 0.8x and shifted
    moved[37:447, 61:471] = np.asarray(Image.fromarray(astronaut).resize((410, 410), Image.Resampling.LANCZOS))
    again = detect_faces(moved, hog, embed=True)
    assert len(again) == 1 and np.linalg.norm(face.embedding - again[0].embedding) < SAME_PERSON / 2

    cameraman = embedded_images(["camera"])[0]  # grey, as 3 channels
    other = detect_faces(cameraman, open_backend("dlib", detector="cnn"), embed=True)  # a turned face: CNN finds it
    assert len(other) == 1 and 170 < other[0].box[0] < other[0].box[2] < 270
    assert np.linalg.norm(face.embedding - other[0].embedding) > SAME_PERSON


def test_align_matches_dlibs_face_chip(hog, astronaut):
    import dlib

    face = detect_faces(astronaut, hog)[0]
    crop, _ = align(astronaut, face.landmarks, size=150, padding=0.25)
    parts = dlib.points([dlib.point(int(x), int(y)) for x, y in face.landmarks])
    shape = dlib.full_object_detection(dlib.rectangle(*map(int, face.box)), parts)
    reference = dlib.get_face_chip(astronaut, shape, size=150, padding=0.25)
    assert np.abs(crop.astype(int) - reference)[10:-10, 10:-10].mean() < 1.5  # dlib stretches by size / (size - 1)


def test_track_faces_between_sparse_detections(hog, astronaut):
    frames = []
    for i in range(7):  # the top of the photo, moving 3 px right and 2 px down per frame
        frame = np.zeros((330, 540, 3), np.uint8)
        frame[2 * i:2 * i + 300, 3 * i:3 * i + 512] = astronaut[:300]
        frames.append(frame)
    seen = list(track_faces(frames, hog, detect_every=3))
    assert [index for index, _ in seen] == list(range(7))
    assert all(list(by_track) == [0] for _, by_track in seen)
    first = seen[0][1][0]
    for index, by_track in seen:
        face, shift = by_track[0], (3 * index, 2 * index)
        assert np.abs(face.landmarks - first.landmarks - shift).mean() < 1.5, index
        assert np.allclose(face.box[:2], np.add(first.box[:2], shift), atol=8), index  # HOG boxes step by ~8 px
