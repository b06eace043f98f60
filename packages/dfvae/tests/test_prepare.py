"""`pixforge-dfvae prepare` on a synthetic face video (the astronaut's face, jittered per frame): one identity,
aligned crops, landmarks, affines, masks, contact sheet; resume, --shard, NAME=PATH; bad inputs are one line and
exit 2 with nothing written."""

import json
import shutil
import sys

import numpy as np
import pytest

from pixforge.export.command import invoke
from pixforge.export.images import read_image


def cli(*args):
    from pixforge.dfvae.cli import DFVAE

    return invoke(DFVAE, [str(a) for a in args], "pixforge-dfvae")


@pytest.fixture(scope="module")
def video(face_video):
    return face_video


@pytest.fixture(scope="module")
def prepared(video, tmp_path_factory):
    pytest.importorskip("dlib")
    from pixforge.dfvae.prepare import prepare

    data = tmp_path_factory.mktemp("prepared") / "data"
    # detection on every frame (re-fitted frames: test_frames_after_the_face_left_are_not_training_data)
    report = prepare(str(video), out=str(data), size=64, detect_every=1, quiet=True)
    return data, report


def test_the_prepared_folders_follow_the_umask(prepared):
    from pixforge.export.atomic import umask

    data, _ = prepared
    folders = [p for p in data.rglob("*") if p.is_dir()]
    assert folders and {p.stat().st_mode & 0o777 for p in folders} == {0o777 & ~umask()}


def test_prepare_writes_one_identity_with_consistent_arrays(prepared, video):
    from pixforge.core.faces import template, warp
    from pixforge.core.io import VideoReader

    data, report = prepared
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["identities"] == {"astro": {"frames": 12, "clips": [manifest["identities"]["astro"]["clips"][0]]}}
    assert manifest["options"]["size"] == 64 and "pixforge-dfvae" in manifest["versions"]
    clip = data / manifest["identities"]["astro"]["clips"][0]
    record = json.loads((clip.parent / "source.json").read_text())
    assert record["frames"] == record["frames_with_face"] == 12 and "astro: 12 frames" in report
    crops, landmarks = np.load(clip / "crops.npy"), np.load(clip / "landmarks.npy")
    affines, frames = np.load(clip / "affines.npy"), np.load(clip / "frame_index.npy")
    masks = np.load(clip / "masks.npy")
    assert crops.shape == (12, 64, 64, 3) and crops.dtype == np.uint8
    assert landmarks.shape == (12, 68, 2) and landmarks.dtype == np.float32
    assert affines.shape == (12, 2, 3) and masks.shape == (12, 64, 64) and masks.dtype == np.uint8
    assert frames.tolist() == list(range(12))
    assert ((landmarks >= 0) & (landmarks < 64)).all()
    assert 0.2 < masks.mean() < 0.8 and set(np.unique(masks)) == {0, 1}
    # the stored affine is the one that made the crop, and the landmarks sit on the alignment template
    decoded = np.concatenate(list(VideoReader(video)))
    for i in (0, 7):
        assert np.array_equal(warp(decoded[i], affines[i], 64), crops[i])
    index, positions = template(68, 64, 0.25)
    assert np.abs(landmarks[:, list(index)] - positions).mean() < 2.0
    sheet = read_image(clip / "contact.png")
    assert sheet.shape[0] > 64 and sheet.shape[1] > 3 * 64


def test_prepare_resumes_by_skipping_finished_sources(prepared, video):
    data, _ = prepared
    record = next(data.glob("*/source.json"))
    before = record.stat().st_mtime_ns
    from pixforge.dfvae.prepare import prepare

    assert "prepared 0 source(s), skipped 1" in prepare(str(video), out=str(data), size=64, quiet=True)
    assert record.stat().st_mtime_ns == before
    assert cli("prepare", video, "--out", data, "--size", "128") == 2  # other options: refused, nothing redone
    assert record.stat().st_mtime_ns == before


def test_shards_split_the_sources_and_names_are_given(video, tmp_path):
    pytest.importorskip("dlib")
    from pixforge.dfvae.prepare import prepare

    second = tmp_path / "clip2.mp4"
    shutil.copy(video, second)
    sources = [str(video), f"alice={second}"]
    data = tmp_path / "data"
    first = prepare(*sources, out=str(data), size=32, detect_every=4, shard="1/2", quiet=True)
    assert "prepared 1 source(s)" in first and "shard 1/2 of 2" in first
    assert len(list(data.glob("*/source.json"))) == 1
    prepare(*sources, out=str(data), size=32, detect_every=4, shard="2/2", quiet=True)
    assert len(list(data.glob("*/source.json"))) == 2
    manifest = json.loads((data / "manifest.json").read_text())
    assert sorted(manifest["identities"]) == ["alice", "astro"]


def test_only_frames_vouched_for_by_a_detection_are_kept():
    """A re-fitted (carried) frame stays only between two detections of its track."""
    from pixforge.core.faces.track import Track
    from pixforge.dfvae.prepare import confirmed

    frames = list(range(0, 23))  # detection runs at 0, 5, 10, 15, 20: found at 0, 5, 10 and 20, not at 15
    track = Track(0, frames=frames, faces=[f"face {f}" for f in frames], detected=[f in (0, 5, 10, 20) for f in frames])
    kept = confirmed(track, detect_every=5)
    assert kept.frames == [*range(0, 10 + 1), 20]
    assert kept.faces == [f"face {f}" for f in kept.frames]
    assert kept.detected == [f in (0, 5, 10, 20) for f in kept.frames]


def test_frames_after_the_face_left_are_not_training_data(tmp_path, frames_maker, video_writer):
    """12 frames of a face, then 8 without one (a title card): the tracker carries the face into them, prepare
    keeps only the frames up to the last detection that found it."""
    pytest.importorskip("dlib")
    from pixforge.dfvae.prepare import prepare

    card = np.full((8, 160, 160, 3), (40, 90, 160), np.uint8)
    video = video_writer(tmp_path / "cut.mp4", np.concatenate([frames_maker(12, 160), card]))
    prepare(str(video), out=str(tmp_path / "data"), size=32, detect_every=5, quiet=True)
    record = json.loads(next((tmp_path / "data").glob("*/source.json")).read_text())
    assert record["frames"] == 20 and record["frames_with_face"] == 11
    clip = next((tmp_path / "data").glob("*/track-*"))
    assert np.load(clip / "frame_index.npy").tolist() == list(range(11))


def test_a_video_without_faces_is_one_line_and_writes_nothing(tmp_path, capsys, video_writer):
    pytest.importorskip("dlib")
    noise = np.random.default_rng(0).integers(0, 256, (6, 96, 96, 3), dtype=np.uint8)
    video = video_writer(tmp_path / "noise.mp4", noise)
    assert cli("prepare", video, "--out", tmp_path / "data") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no face found in any of its 6 frames" in err
    assert not (tmp_path / "data").exists()


def test_bad_sources_are_one_line_and_write_nothing(video, tmp_path, capsys, monkeypatch):
    data, empty = tmp_path / "data", tmp_path / "empty"
    empty.mkdir()
    cases = [(["prepare", tmp_path / "missing.mp4", "--out", data], "does not exist"),
             (["prepare", empty, "--out", data], "holds no images or videos"),
             (["prepare", f"bad name={video}", "--out", data], "identity name 'bad name' is not valid"),
             (["prepare", f"alice={tmp_path / 'missing.mp4'}", "--out", data], "does not exist"),
             (["prepare", video], "--out DATA is required"),
             (["prepare", video, "--out", data, "--shard", "3/2"], "--shard")]
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    cases.append((["prepare", tmp_path / "broken.mp4", "--out", data], "broken.mp4"))
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        (images / f"{i}.png").write_bytes((empty.parent / "broken.mp4").read_bytes())
    cases += [(["prepare", images, "--out", images], "is the input"),
              (["prepare", images, "--out", images / "data"], "is inside the input folder")]
    for args, message in cases:
        assert cli(*args) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (args, err)
    monkeypatch.setitem(sys.modules, "dlib", None)  # the faces extra missing
    assert cli("prepare", video, "--out", data) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pixforge-core[faces]" in err
    assert not data.exists()

