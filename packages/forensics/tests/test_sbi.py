"""Self-blended images against their definition (Shiohara & Yamasaki 2022)."""

from __future__ import annotations

import numpy as np
import pytest

from pixforge.export.errors import PixforgeError
from pixforge.forensics import sbi


@pytest.fixture(scope="module")
def face():
    """A 96 px crop of scikit-image's astronaut centred on her face, and 68 synthetic landmarks on it (an ellipse of
    jaw, brow, nose, eye and mouth points: the mask code needs their order, not a detector)."""
    from skimage import data

    crop = np.ascontiguousarray(data.astronaut()[31:223, 127:319][::2, ::2])
    t = np.linspace(np.pi * 1.05, -0.05 * np.pi, 17)
    jaw = np.stack([48 + 30 * np.cos(t), 48 - 34 * np.sin(t)], 1)[::-1]
    brows = np.stack([np.linspace(22, 74, 10), np.full(10, 34.0)], 1)
    nose = np.stack([np.full(9, 48.0), np.linspace(38, 60, 9)], 1)
    ring = np.arange(6) / 6 * 2 * np.pi
    eyes = np.concatenate([np.stack([x + 6 * np.cos(ring), 42 + 3 * np.sin(ring)], 1) for x in (34, 62)])
    lips = np.arange(20) / 20 * 2 * np.pi
    mouth = np.stack([48 + 12 * np.cos(lips), 70 + 5 * np.sin(lips)], 1)
    landmarks = np.concatenate([jaw, brows, nose, eyes, mouth]).astype(np.float32)
    assert landmarks.shape == (68, 2)
    return crop, landmarks


def test_blend_is_the_formula_and_target_outside_the_mask(face):
    crop, landmarks = face
    for index in range(6):
        out = sbi.self_blend(crop, landmarks, seed=(1, index))
        m = out.mask[..., None].astype(np.float64)
        assert out.mask.dtype == np.float32 and 0 <= out.mask.min() and out.mask.max() <= out.ratio + 1e-6
        assert out.mask.max() == pytest.approx(out.ratio, abs=1e-6)  # the blurred mask peaks at 1 before the ratio
        outside = out.mask == 0
        assert outside.any() and (~outside).any()
        assert np.array_equal(out.blended[outside], out.target[outside])
        formula = np.floor(m * out.source + (1 - m) * out.target)
        assert np.abs(out.blended.astype(np.float64) - formula).max() <= 1  # float32 vs float64 at a floor's edge
        assert (out.blended.astype(np.float64) != formula).mean() < 0.01


def test_ratio_set_hull_kinds_and_jitter_sides(face):
    crop, landmarks = face
    outs = [sbi.self_blend(crop, landmarks, seed=(2, i)) for i in range(40)]
    ratios = {o.ratio for o in outs}
    assert ratios <= set(sbi.BLEND_RATIOS) and len(ratios) >= 3
    assert sum(o.ratio == 1.0 for o in outs) > sum(o.ratio == 0.25 for o in outs)  # 1 is drawn 3 times in 6
    assert {o.hull for o in outs} == set(sbi.HULLS)
    assert {o.draws["jittered"] for o in outs} == {"source", "target"}
    for o in outs:  # the side not colour-jittered is the input itself (the target) or its warp (the source)
        if o.draws["jittered"] == "source":
            assert np.array_equal(o.target, crop)
        else:
            assert not np.array_equal(o.target, crop) or o.draws["brightness"] == 0


def test_same_seed_same_sample(face):
    crop, landmarks = face
    a, b = sbi.self_blend(crop, landmarks, seed=(3, 5)), sbi.self_blend(crop, landmarks, seed=(3, 5))
    for field in ("target", "source", "mask", "blended"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert a.draws == b.draws
    c = sbi.self_blend(crop, landmarks, seed=(3, 6))
    assert not np.array_equal(a.blended, c.blended)


def official_masks(landmarks: np.ndarray, shape) -> dict[str, np.ndarray]:
    """Face X-ray's DeepFakeMask.py (dfl_full, extended, components, facehull) written out with OpenCV on int32
    landmarks, as SBI's random_get_hull calls it."""
    import cv2

    lm = landmarks.astype(np.int32)

    def fill(parts):
        mask = np.zeros(shape[:2], np.float32)
        for part in parts:
            cv2.fillConvexPoly(mask, cv2.convexHull(np.concatenate(part)), 1.0)
        return mask

    def components(p):
        return [(p[0:9], p[17:18]), (p[8:17], p[26:27]), (p[17:20], p[8:9]), (p[24:27], p[8:9]), (p[19:25], p[8:9]),
                (p[17:22], p[27:28], p[31:36], p[8:9]), (p[22:27], p[27:28], p[31:36], p[8:9]),
                (p[27:31], p[31:36])]

    ext = lm.copy()
    ml, mr = (ext[36] + ext[0]) // 2, (ext[16] + ext[45]) // 2
    ql, qr = (ext[36] + ml) // 2, (ext[45] + mr) // 2
    bot_l = np.array((ql, ext[36], ext[37], ext[38], ext[39]))
    bot_r = np.array((ext[42], ext[43], ext[44], ext[45], qr))
    ext[17:22] = ext[17:22] + (ext[17:22] - bot_l) // 2
    ext[22:27] = ext[22:27] + (ext[22:27] - bot_r) // 2
    return {"dfl_full": fill([(lm[0:17], lm[48:68], lm[0:1], lm[8:9], lm[16:17]), (lm[27:31], lm[33:34]),
                              (lm[17:27], lm[0:1], lm[27:28], lm[16:17], lm[33:34])]),
            "extended": fill(components(ext)), "components": fill(components(lm)),
            "facehull": fill([(lm,)])}


def test_masks_are_face_xrays(face):
    """Each hull kind against Face X-ray's code on the same face at 4x (int32 landmarks there, floats here; OpenCV
    and PIL rasterise the edges a pixel apart)."""
    crop, landmarks = face
    shape, lm = (crop.shape[0] * 4, crop.shape[1] * 4), landmarks * 4 + 1.5  # pixel centres at 4x
    official = official_masks(lm, shape)
    ours = {kind: sbi.landmark_mask(lm, shape, kind) for kind in sbi.HULLS}
    for kind in sbi.HULLS:
        inter, union = np.logical_and(ours[kind], official[kind]).sum(), np.logical_or(ours[kind], official[kind]).sum()
        assert set(np.unique(ours[kind])) <= {0.0, 1.0} and inter / union > 0.98, (kind, inter / union)
    # the kinds differ as Face X-ray's do: extended reaches above the brows, components and dfl_full apart
    assert ours["extended"].sum() > ours["components"].sum()
    assert np.logical_xor(ours["components"], ours["dfl_full"]).sum() > 0.02 * ours["dfl_full"].sum()
    with pytest.raises(ValueError, match="68 landmarks"):
        sbi.landmark_mask(landmarks[:5], crop.shape, "facehull")


def test_elastic_blur_is_scipys_gaussian_filter():
    from scipy import ndimage

    noise = np.random.default_rng(0).uniform(-1, 1, (2, 40, 23))
    for n in noise:  # a side under the 57 taps: the mirrored border folds more than once
        np.testing.assert_allclose(sbi.gaussian_filter(n, sbi.ELASTIC_SIGMA), ndimage.gaussian_filter(n, 7.0),
                                   atol=1e-12)


def test_affine_scales_x_and_y_apart(face):
    crop, landmarks = face
    scales = [sbi.self_blend(crop, landmarks, seed=(4, i)).draws["scale"] for i in range(8)]
    assert all(len(s) == 2 and 0.95 <= min(s) and max(s) <= 1 / 0.95 for s in scales)
    assert all(sx != sy for sx, sy in scales)


def test_blend_mask_is_eroded_and_soft():
    rng = np.random.default_rng(0)
    mask = np.zeros((128, 128), np.float32)
    mask[32:96, 32:96] = 1
    weights = sbi.blend_mask(mask, rng, {})
    assert weights.max() == pytest.approx(1.0) and weights.min() == 0.0
    assert weights[64, 64] == pytest.approx(1.0, abs=1e-3)
    assert weights[:8].max() == 0 and ((weights > 0) & (weights < 1)).mean() > 0.05  # a soft edge, nothing far out
    # the erosion: with the first blur's draw the cut mask lies inside the box; the second blur's spread bounds the
    # weights' support
    support = np.argwhere(weights > 0)
    assert support.min() >= 32 - 12 * 128 / 192 - 1 and support.max() <= 96 + 12 * 128 / 192 + 1
    assert np.array_equal(sbi.blend(np.full((2, 2, 3), 200, np.uint8), np.full((2, 2, 3), 100, np.uint8),
                                    np.array([[0, 0.5], [1, 0.25]], np.float32))[..., 0], [[100, 150], [200, 125]])


def test_dataset_over_extracted_faces(face, tmp_path):
    import json

    import torch
    from PIL import Image

    crop, landmarks = face
    folder = tmp_path / "faces" / "000"
    folder.mkdir(parents=True)
    for name in ("0000.png", "0005.png"):
        Image.fromarray(crop).save(folder / name)
    (folder / "track.json").write_text(json.dumps({"files": ["0000.png", "0005.png"],
                                                   "crop_landmarks": [landmarks.tolist()] * 2}))
    data = sbi.SelfBlendedFaces(tmp_path / "faces", seed=4)
    assert len(data) == 2
    item = data[1]
    assert item["real"].shape == item["fake"].shape == (3, 96, 96) and item["real"].dtype == torch.uint8
    assert item["mask"].shape == (1, 96, 96) and item["key"] == "000/0005.png"
    expected = sbi.self_blend(crop, landmarks, seed=(4, 1, 0))
    assert np.array_equal(item["fake"].permute(1, 2, 0).numpy(), expected.blended)
    data.set_epoch(1)
    assert not torch.equal(data[1]["fake"], item["fake"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PixforgeError, match="no extract-faces output"):
        sbi.SelfBlendedFaces(tmp_path / "empty")
