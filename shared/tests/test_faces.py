"""pixforge.core.faces without a backend: Umeyama, alignment round trip, masks, boxes, One Euro, tracking, errors."""

import math
import sys

import numpy as np
import pytest

from pixforge.core.faces import (
    FACES_EXTRA,
    Face,
    FaceTracker,
    OneEuroFilter,
    align,
    alignment_matrix,
    box_matrix,
    crop_box,
    feather,
    hull_mask,
    invert_affine,
    iou,
    open_backend,
    paste_back,
    smooth_sequence,
    square_box,
    template,
    transform_points,
    umeyama,
)
from pixforge.core.faces.align import MEAN_FACE_68
from pixforge.core.faces.backends import open_detector
from pixforge.core.faces.mediapipe_backend import MEDIAPIPE_EXTRA
from pixforge.core.io import embedded_images
from pixforge.export.errors import PixforgeError


def _similarity(angle, scale, tx, ty):
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


def _landmarks68(matrix):
    """Plausible 68-point landmarks: dlib's mean face (points 17..67) plus a jaw arc, moved by `matrix`."""
    jaw = np.stack([0.5 + 0.55 * np.cos(np.linspace(math.pi, 0, 17)), 0.3 + 0.7 * np.sin(np.linspace(math.pi, 0, 17))],
                   axis=1)
    return transform_points(np.concatenate([jaw, MEAN_FACE_68]) * 100, matrix).astype(np.float32)


# --- Umeyama ----------------------------------------------------------------------------------------------------


def test_umeyama_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(-50, 50, (20, 2))
    truth = _similarity(0.7, 1.8, 12.0, -30.0)
    assert np.allclose(umeyama(src, transform_points(src, truth)), truth, atol=1e-9)
    noisy = transform_points(src, truth) + rng.normal(0, 0.01, src.shape)
    assert np.allclose(umeyama(src, noisy), truth, atol=0.01)


def test_umeyama_never_reflects():
    src = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 5.0], [7.0, 9.0]])
    mirrored = src * [-1.0, 1.0]
    matrix = umeyama(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0
    assert np.allclose(umeyama(src, src + 3.0, scale=False), [[1, 0, 3], [0, 1, 3]], atol=1e-12)


# --- alignment, paste back, masks, boxes -------------------------------------------------------------------------


def test_alignment_puts_the_landmarks_on_the_template():
    for size in (128, 256, 512):
        landmarks = _landmarks68(_similarity(-0.3, 1.4, 150.0, 90.0))
        index, target = template(68, size, padding=0.25)
        moved = transform_points(landmarks, alignment_matrix(landmarks, size, padding=0.25))[list(index)]
        assert np.abs(moved - target).max() < 1e-3
        assert (target > 0).all() and (target < size).all()


def test_align_then_paste_back_returns_the_frame():
    frame = embedded_images(["astronaut"])[0]
    landmarks = _landmarks68(_similarity(0.2, 1.2, 170.0, 60.0))
    crop, matrix = align(frame, landmarks, size=256)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    mask = feather(hull_mask(transform_points(landmarks, matrix), crop.shape), sigma=4)
    out = paste_back(frame, crop, matrix, mask)
    coverage = paste_back(np.zeros_like(frame), np.full_like(crop, 255), matrix, mask)[..., 0]
    inside, outside = coverage == 255, coverage == 0
    assert inside.sum() > 5000 and outside.sum() > 100_000
    diff = np.abs(out.astype(int) - frame)
    assert np.array_equal(out[outside], frame[outside])
    assert diff[inside].mean() < 3.0 and np.percentile(diff[inside], 99) < 20  # two bilinear resamplings


def test_paste_back_of_a_modified_crop_lands_where_the_face_was():
    frame = np.zeros((300, 400, 3), np.uint8)
    landmarks = _landmarks68(_similarity(0.0, 1.0, 200.0, 100.0))
    crop, matrix = align(frame, landmarks, size=128)
    mask = hull_mask(transform_points(landmarks, matrix), crop.shape)
    out = paste_back(frame, np.full_like(crop, 200), matrix, mask)
    painted = hull_mask(landmarks, frame.shape) > 0
    assert (out[..., 0][painted] > 100).mean() > 0.97  # the face area is painted
    assert (out[..., 0][~painted] > 100).mean() < 0.01  # and little else



def test_premultiplied_paste_blends_a_composited_crop_once_with_the_frames_own_pixels():
    """A crop composited over its own aligned background, c = m·face + (1 - m)·crop, pasted as c - (1 - m)·crop
    (in [0, 255 m]) premultiplied: the frame gets a·face + (1 - a)·frame (a = the warped mask), the mask once; the
    plain paste of c gives the face a², and mixes in the crop's resampled background."""
    frame = embedded_images(["astronaut"])[0]
    landmarks = _landmarks68(_similarity(0.2, 1.2, 170.0, 60.0))
    crop, matrix = align(frame, landmarks, size=128)
    mask = feather(hull_mask(transform_points(landmarks, matrix), crop.shape), sigma=4)[..., None]
    red = np.zeros_like(crop, dtype=np.float32)
    red[..., 0] = 255
    composited = np.round(mask * red + (1 - mask) * crop).astype(np.uint8)
    face = np.clip(composited.astype(np.float32) - (1 - mask) * crop, 0, 255 * mask)  # m·face, within rounding
    once = paste_back(frame, face, matrix, mask[..., 0], premultiplied=True)
    twice = paste_back(frame, composited, matrix, mask[..., 0])
    alpha = paste_back(np.zeros_like(frame), np.full_like(crop, 255), matrix, mask[..., 0])[..., :1] / 255.0
    want = alpha * [255.0, 0, 0] + (1 - alpha) * frame
    band = (alpha[..., 0] > 0.05) & (alpha[..., 0] < 0.95)
    assert band.sum() > 1000
    assert np.abs(once.astype(float) - want)[band].max() <= 2.5  # roundings of the mask, composite and result
    assert np.abs(twice.astype(float) - want)[band].mean() > 10  # m² and the resampled background
    assert np.array_equal(once[alpha[..., 0] == 0], frame[alpha[..., 0] == 0])

def test_hull_mask_fills_the_convex_hull():
    square = np.array([[10, 10], [30, 10], [30, 30], [10, 30], [20, 20], [15, 25]], np.float32)
    mask = hull_mask(square, (40, 50, 3))
    assert mask.shape == (40, 50) and mask.dtype == np.float32
    assert mask[10:31, 10:31].min() == 1.0 and mask.sum() == 21 * 21
    soft = feather(mask, 2.0)
    assert 0.3 < soft[20, 10] < 0.7 and soft[20, 20] > 0.99 and soft[0, 0] == 0.0


def test_square_box_and_crop_box():
    assert square_box((10, 20, 50, 100), scale=1.3) == pytest.approx((-22, 8, 82, 112))
    frame = np.arange(60 * 80 * 3, dtype=np.int64).reshape(60, 80, 3).astype(np.uint8)
    crop, matrix = crop_box(frame, (10, 20, 42, 52), 32)  # a 32 px box at 32 px: a plain copy
    assert np.array_equal(crop, frame[20:52, 10:42])
    half, _ = crop_box(frame * 0 + 100, (-10, -10, 30, 30), 20)  # leaves the frame: black there
    assert half[:4, :4].max() == 0 and half[10:, 10:].min() == 100
    assert np.allclose(invert_affine(matrix) @ [0, 0, 1], [10, 20])


def test_large_downscales_average_blocks_first_and_stay_near_the_plain_gaussian():
    """Below scale 1/4 `warp` averages k x k blocks before its Gaussian: within 2 grey levels (mean) of blurring the
    whole region with sigma (1/s - 1)/2 and sampling it, the same matrix, and a plain copy at scale 1 unchanged."""
    import torch
    from kornia.filters import gaussian_blur2d
    from kornia.geometry.transform import warp_affine

    from pixforge.core.io import embedded_images

    frame = np.ascontiguousarray(np.tile(embedded_images(["astronaut"])[0], (2, 2, 1))[:900, :1000])
    for box, size in (((40.0, 30.0, 940.0, 880.0), 112), ((100.0, 100.0, 700.0, 700.0), 128)):
        crop, matrix = crop_box(frame, box, size)
        scale = size / (box[2] - box[0])
        sigma = (1 / scale - 1) / 2
        src = torch.from_numpy(frame).permute(2, 0, 1)[None].float().contiguous()
        blurred = gaussian_blur2d(src, 2 * int(np.ceil(3 * sigma)) + 1, (sigma, sigma), border_type="replicate")
        ref = warp_affine(blurred, torch.from_numpy(matrix).float()[None], (size, size), align_corners=True)
        ref = ref[0].permute(1, 2, 0).round().clamp(0, 255).numpy()
        diff = np.abs(crop.astype(np.float64) - ref)
        assert diff.mean() < 2.0 and np.allclose(matrix, box_matrix(box, size)), diff.mean()


# --- One Euro ---------------------------------------------------------------------------------------------------


def test_one_euro_matches_the_formula_on_a_hand_computed_sequence():
    min_cutoff, beta, d_cutoff = 1.0, 0.5, 1.0
    xs, ts = [0.0, 1.0, 3.0, 2.0], [0.0, 0.1, 0.2, 0.35]

    def alpha(te, fc):
        return 1.0 / (1.0 + (1.0 / (2 * math.pi * fc)) / te)

    expected, x_hat, dx_hat = [xs[0]], xs[0], 0.0
    for i in range(1, len(xs)):
        te = ts[i] - ts[i - 1]
        dx_hat = alpha(te, d_cutoff) * (xs[i] - x_hat) / te + (1 - alpha(te, d_cutoff)) * dx_hat
        a = alpha(te, min_cutoff + beta * abs(dx_hat))
        x_hat = a * xs[i] + (1 - a) * x_hat
        expected.append(x_hat)
    assert expected[1] == pytest.approx(0.647958, abs=1e-6)  # by hand: a_d = 0.385869, fc = 2.929345, a = 0.647958

    one_euro = OneEuroFilter(min_cutoff, beta, d_cutoff)
    got = [float(one_euro(np.array([x, -x]), t)[0]) for x, t in zip(xs, ts, strict=True)]
    assert got == pytest.approx(expected, abs=1e-12)
    out = one_euro(np.array([2.0, -2.0]), 0.5)
    assert out[1] == pytest.approx(-out[0])  # elementwise, each coordinate its own filter


def test_one_euro_is_an_ema_at_beta_zero_and_follows_fast_motion_with_beta():
    steady = smooth_sequence(np.ones((5, 68, 2)) * 7, list(range(5)), fps=25)
    assert np.allclose(steady, 7)
    ramp = np.arange(30, dtype=np.float64)[:, None] * 10.0  # 250 px/s
    lag_ema = ramp[-1, 0] - smooth_sequence(ramp, range(30), fps=25, beta=0.0)[-1, 0]
    lag_fast = ramp[-1, 0] - smooth_sequence(ramp, range(30), fps=25, beta=0.5)[-1, 0]
    assert lag_fast < 0.2 * lag_ema
    one_euro = OneEuroFilter()
    one_euro(np.zeros(2), 1.0)
    with pytest.raises(ValueError, match="increase"):
        one_euro(np.zeros(2), 1.0)


# --- tracking ---------------------------------------------------------------------------------------------------


def _face(cx, cy, side=60.0):
    return Face(box=(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2), score=1.0)


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_crossing_faces_keep_their_ids():
    tracker = FaceTracker(max_gap=3)
    for frame in range(30):
        a, b = _face(20 + 10 * frame, 100), _face(310 - 10 * frame, 110)
        faces = [b, a] if frame % 2 else [a, b]  # detector order must not matter
        assigned = tracker.update(frame, faces)
        assert assigned[0] is a and assigned[1] is b, frame
    assert sorted(tracker.tracks) == [0, 1] and len(tracker.tracks[0].frames) == 30


def test_a_short_gap_keeps_the_id_and_a_long_one_starts_a_new_track():
    tracker = FaceTracker(max_gap=3)
    for frame in range(5):
        tracker.update(frame, [_face(100 + 5 * frame, 100)])
    assert tracker.update(5, []) == {}
    assert tracker.update(6, []) == {}
    assert list(tracker.update(7, [_face(135, 100)])) == [0]  # 3 frames later, where the motion leads
    for frame in range(8, 12):
        tracker.update(frame, [])
    assert list(tracker.update(12, [_face(160, 100)])) == [1]  # 5 frames without it: a new identity
    assert [t.id for t in tracker.live] == [1]


def test_landmarks_decide_when_boxes_barely_overlap():
    landmarks = _landmarks68(_similarity(0.0, 0.6, 70.0, 70.0))
    tracker = FaceTracker(iou_threshold=0.9, landmark_threshold=0.15)
    tracker.update(0, [Face((70, 70, 130, 130), 1.0, landmarks)])
    moved = Face((72, 70, 132, 130), 1.0, landmarks + [2, 0])  # IoU 0.94 ...
    assert list(tracker.update(1, [moved])) == [0]
    jump = Face((82, 70, 142, 130), 1.0, landmarks + [12, 0])  # IoU 0.67 < 0.9, landmarks 0.1 face sizes away
    assert list(tracker.update(2, [jump])) == [0]


# --- errors ---------------------------------------------------------------------------------------------------


def test_missing_faces_extra_is_one_clear_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` now raises ImportError
    with pytest.raises(PixforgeError) as info:
        open_backend("dlib")
    assert str(info.value) == FACES_EXTRA == "face detection needs the faces extra: pip install 'pixforge-core[faces]'"


def test_missing_mediapipe_names_the_version_and_its_own_environment(monkeypatch):
    for module in ("mediapipe", "mediapipe.python", "mediapipe.python.solutions"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(PixforgeError) as info:
        open_backend("mediapipe")
    assert str(info.value) == MEDIAPIPE_EXTRA
    assert "mediapipe==0.10.21" in MEDIAPIPE_EXTRA and "numpy<2" in MEDIAPIPE_EXTRA


def test_open_detector_names_the_three_detectors(monkeypatch):
    with pytest.raises(PixforgeError, match="--detector must be one of hog, cnn, mediapipe, got 'yunet'"):
        open_detector("yunet")
    for module in ("mediapipe", "mediapipe.python", "mediapipe.python.solutions"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(PixforgeError, match="mediapipe==0.10.21"):
        open_detector("mediapipe")


def test_missing_model_files_name_the_extra(monkeypatch):
    pytest.importorskip("dlib")
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(PixforgeError, match=r"pixforge-core\[faces\]"):
        open_backend("dlib")


def test_unknown_backend_and_bad_options():
    with pytest.raises(PixforgeError, match="--backend must be one of dlib, mediapipe"):
        open_backend("opencv")
    with pytest.raises(ValueError, match="uint8 H x W x 3"):
        from pixforge.core.faces import detect_faces

        detect_faces(np.zeros((10, 10), np.float32), backend=None)
