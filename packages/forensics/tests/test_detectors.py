"""Part 2's detector verbs on tiny data: metrics against scikit-learn, training (loss, exact resume), evaluation
numbers from fixed weights, ONNX parity, bad inputs, torchrun DDP against one process. Face folders are written
directly by `write_faces` (scikit-image's astronaut face drifting a little per frame, 68 synthetic landmarks: no
dlib); tiny registry models (a conv or two, added to MODELS for the test) keep the CPU time down."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from integration_helpers import launcher
from PIL import Image
from torch import nn

from pixforge.core.checkpoint import read_checkpoint
from pixforge.export.errors import PixforgeError
from pixforge.forensics import metrics
from pixforge.forensics.models import MODELS, ModelSpec


def astronaut_face() -> tuple[np.ndarray, np.ndarray]:
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
    return crop, np.concatenate([jaw, brows, nose, eyes, mouth]).astype(np.float32)


def write_faces(root: Path, videos: int = 2, frames: int = 4, size: int = 64, fake: bool = False,
                seed: int = 0) -> Path:
    """`videos` folders of `frames` crops (`size` px); `fake` ones get a warped, recoloured face region so a
    detector has something to find."""
    import cv2

    face, landmarks = astronaut_face()
    rng = np.random.default_rng(seed)
    for v in range(videos):
        folder = Path(root) / f"{v:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        files, marks = [], []
        for f in range(frames):
            dx, dy = rng.integers(-3, 4, 2)
            shifted = np.roll(face, (int(dy), int(dx)), (0, 1))
            if fake:
                inner = shifted[24:80, 20:76].astype(np.int16)
                inner = np.clip(inner[:, :, [1, 0, 2]] + 20, 0, 255).astype(np.uint8)
                shifted = shifted.copy()
                shifted[24:80, 20:76] = cv2.GaussianBlur(inner, (5, 5), 2)
            image = cv2.resize(shifted, (size, size), interpolation=cv2.INTER_AREA)
            name = f"{f * 5:06d}.png"
            cv2.imwrite(str(folder / name), image[:, :, ::-1])
            files.append(name)
            marks.append(((landmarks + [dx, dy]) * size / 96).tolist())
        (folder / "track.json").write_text(json.dumps({"files": files, "frames": [f * 5 for f in range(frames)],
                                                       "crop_landmarks": marks}))
    return Path(root)


class TinyImage(nn.Module):
    def __init__(self, num_classes=1, weights=None, generator=None):
        super().__init__()
        g = generator or torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, 2, 1)
        self.fc = nn.Linear(8, num_classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


class TinyClip(TinyImage):
    def __init__(self, num_classes=1, weights=None, generator=None):
        nn.Module.__init__(self)
        g = generator or torch.Generator().manual_seed(0)
        self.conv = nn.Conv3d(3, 8, 3, (1, 2, 2), 1)
        self.fc = nn.Linear(8, num_classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3, 4)))


@pytest.fixture
def tiny(monkeypatch):
    """Two tiny detectors in the registry: `tiny` (images) and `tinyclip` (3-frame clips)."""
    def add(name, builder, clip):
        monkeypatch.setitem(MODELS, name, ModelSpec(name, builder, 32, clip, (127.5,) * 3, (127.5,) * 3, "test", 1,
                                                    0, "none"))
    add("tiny", TinyImage, 1)
    add("tinyclip", TinyClip, 3)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    return (write_faces(root / "real", videos=2, frames=4, size=48),
            write_faces(root / "fake", videos=2, frames=4, size=48, fake=True, seed=1))


# ------------------------------------------------------------------------------------------------------- metrics

def test_metrics_match_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.clip(0.5 + 0.25 * (labels - 0.5) + 0.3 * rng.standard_normal(200), 0.01, 0.99)
    scores[:40] = np.clip(np.round(scores[:40], 1), 0.1, 0.9)  # ties
    assert metrics.roc_auc(labels, scores) == pytest.approx(sk.roc_auc_score(labels, scores), abs=1e-12)
    assert metrics.accuracy(labels, scores) == pytest.approx(sk.accuracy_score(labels, scores >= 0.5))
    assert metrics.log_loss(labels, scores) == pytest.approx(sk.log_loss(labels, scores), rel=1e-12)
    fpr, tpr, thr = metrics.roc_curve(labels, scores)
    sfpr, stpr, sthr = sk.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sfpr)
    np.testing.assert_allclose(tpr, stpr)
    np.testing.assert_allclose(thr[1:], sthr[1:])
    fnr = 1 - stpr  # EER from sklearn's curve: the crossing of fpr and fnr, linear between the points around it
    k = int(np.flatnonzero(fnr - sfpr <= 0)[0])
    d0, d1 = fnr[k - 1] - sfpr[k - 1], fnr[k] - sfpr[k]
    expected = sfpr[k - 1] + d0 / (d0 - d1) * (sfpr[k] - sfpr[k - 1])
    assert metrics.eer(labels, scores) == pytest.approx(expected)
    assert metrics.eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert metrics.eer([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert np.isnan(metrics.roc_auc([1, 1], [0.2, 0.3]))


# ------------------------------------------------------------------------------------------------------- data

def test_clip_sampling_and_sbi_clips(faces):
    from pixforge.forensics import data

    real, _ = faces
    videos = data.scan(real, landmarks=True)
    assert [v.key for v in videos] == ["000", "001"] and len(videos[0]) == 4
    clips = data.TrainClips(videos, "sbi", 3, 32, "consecutive", seed=5)
    a, b = clips[7], clips[7]
    assert a["clip"].shape == (3, 3, 32, 32) and a["clip"].dtype == torch.uint8 and float(a["label"]) == 1
    assert torch.equal(a["clip"], b["clip"])  # a function of (seed, index)
    assert not torch.equal(clips[6]["clip"], a["clip"])
    assert data.train_indices(2, 3, "consecutive", np.random.default_rng(0)) in ([0, 1, 0], [1, 0, 1])  # looped
    assert data.eval_indices(10, 3, "segments") == [[1, 5, 8]]
    assert data.eval_indices(7, 3, "consecutive") == [[0, 1, 2], [3, 4, 5]]
    distorted = data.TrainClips(videos, "sbi", 1, 32, "image", seed=5, distort_p=1.0)
    assert distorted[0]["clip"].shape == (3, 32, 32)
    with pytest.raises(PixforgeError, match="does not exist"):
        data.scan(Path(real).parent / "x")
    with pytest.raises(PixforgeError, match="no extract-faces output"):
        data.scan(Path(real) / "000" / "..", "--real") if False else data.scan(Path(__file__).parent / "fixtures")


def _item_before(clips, index: int) -> torch.Tensor:
    """TrainClips' item as __getitem__ drew it before `distort_fake_only` existed (the draws resumed runs rely on)."""
    from pixforge.forensics import data

    rng = np.random.default_rng([clips.seed, int(index)])
    label = index % 2
    videos = clips.fake if label else clips.real
    video = videos[int(rng.integers(len(videos)))]
    idx = data.train_indices(len(video), clips.clip, clips.sampling, rng)
    frames = [data.read_frame(video.folder / video.files[k]) for k in idx]
    if label and clips.sbi:
        frames = data.self_blend_clip(frames, [video.landmarks[k] for k in idx], (clips.seed, int(index)))
    frames = [data.resize(f, clips.size) for f in frames]
    if clips.distort_p > 0 and rng.random() < clips.distort_p:
        kind = data.FRAME_TYPES[int(rng.integers(len(data.FRAME_TYPES)))]
        frames = data.apply_distortion(frames, kind, int(rng.integers(1, 6)), (clips.seed, int(index), 1))
    return data.to_tensor(frames, clips.sampling == "image")


@pytest.mark.parametrize("fake", ["sbi", "dir"])
def test_distort_fake_only_leaves_the_reals_clean(faces, fake):
    from pixforge.forensics import data

    real, fake_dir = faces
    reals = data.scan(real, landmarks=True)
    fakes = "sbi" if fake == "sbi" else data.scan(fake_dir)
    clean = data.TrainClips(reals, fakes, 1, 32, "image", seed=3)
    both = data.TrainClips(reals, fakes, 1, 32, "image", seed=3, distort_p=1.0)
    fake_only = data.TrainClips(reals, fakes, 1, 32, "image", seed=3, distort_p=1.0, distort_fake_only=True)
    for i in range(8):
        item = fake_only[i]
        assert float(item["label"]) == i % 2 and item["key"] == clean[i]["key"]
        if i % 2 == 0:  # real: exactly the undistorted item
            assert torch.equal(item["clip"], clean[i]["clip"]), i
            assert not torch.equal(item["clip"], both[i]["clip"]), i
        else:  # fake: distorted, with the same draws as when both classes are
            assert not torch.equal(item["clip"], clean[i]["clip"]), i
            assert torch.equal(item["clip"], both[i]["clip"]), i


@pytest.mark.parametrize("distort_p", [0.0, 0.5, 1.0])
def test_default_training_draws_are_unchanged(faces, distort_p):
    from pixforge.forensics import data

    real, _ = faces
    reals = data.scan(real, landmarks=True)
    default = data.TrainClips(reals, "sbi", 1, 32, "image", seed=7, distort_p=distort_p)
    explicit = data.TrainClips(reals, "sbi", 1, 32, "image", seed=7, distort_p=distort_p, distort_fake_only=False)
    for i in range(10):
        before = _item_before(default, i)
        assert torch.equal(default[i]["clip"], before) and torch.equal(explicit[i]["clip"], before), i
    fake_only = data.TrainClips(reals, "sbi", 1, 32, "image", seed=7, distort_p=0.5, distort_fake_only=True)
    half = data.TrainClips(reals, "sbi", 1, 32, "image", seed=7, distort_p=0.5)
    assert all(torch.equal(fake_only[i]["clip"], half[i]["clip"]) for i in range(1, 10, 2))  # same fake draws


# ------------------------------------------------------------------------------------------------------- training

def _train(out, real, fake, model="tiny", **kw):
    from pixforge.forensics.train import train

    options = {"batch": 4, "steps": 4, "seed": 0, "quiet": True, "device": "cpu", "lr": 1e-2}
    options.update(kw)
    return train(real=str(real), fake=str(fake), model=model, out=str(out), **options)


def _losses(run):
    return [r["loss"] for r in map(json.loads, (Path(run) / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_training_lowers_the_loss_on_sbi(tiny, faces, tmp_path):
    real, _ = faces
    run = _train(tmp_path / "run", real, "sbi", steps=24, batch=8, optimizer="adam", lr=3e-2)
    losses = _losses(run)
    assert np.mean(losses[-6:]) < np.mean(losses[:6]), losses
    assert (run / "model.safetensors").is_file() and (run / "samples" / "real-fake.png").is_file()
    config = json.loads((run / "config.json").read_text())
    assert config["optimizer"] == "adam" and config["arch"]["sampling"] == "image"


def test_train_distort_fake_only_is_in_the_config_and_checked(tiny, faces, tmp_path):
    real, _ = faces
    run = _train(tmp_path / "run", real, "sbi", steps=1, distort_p=0.5, distort_fake_only=True)
    config = json.loads((run / "config.json").read_text())
    assert config["distort_fake_only"] is True and config["distort_p"] == 0.5
    assert json.loads((_train(tmp_path / "plain", real, "sbi", steps=1) / "config.json").read_text())[
        "distort_fake_only"] is False
    with pytest.raises(PixforgeError, match="--distort-fake-only is a flag"):
        _train(tmp_path / "bad", real, "sbi", steps=1, distort_p=0.5, distort_fake_only="yes")
    with pytest.raises(PixforgeError, match="--distort-fake-only needs --distort-p above 0"):
        _train(tmp_path / "bad", real, "sbi", steps=1, distort_fake_only=True)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("model", ["tiny", "tinyclip"])
def test_resume_is_exact(tiny, faces, model, tmp_path):
    from safetensors.torch import load_file

    real, fake = faces
    whole = _train(tmp_path / "whole", real, fake, model, steps=4, optimizer="sgd")
    _train(tmp_path / "half", real, fake, model, steps=2, optimizer="sgd")
    half = _train(tmp_path / "half", real, fake, model, steps=4, optimizer="sgd", resume=True)
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(half / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(whole) == _losses(half)


# ------------------------------------------------------------------------------------------------------- evaluation

def test_evaluate_fixed_numbers(tiny, faces, tmp_path):
    from pixforge.forensics.evaluate import evaluate

    real, fake = faces
    run = _train(tmp_path / "run", real, fake, steps=1, lr=1e-9)  # ~ the fixed initial weights
    report = evaluate(run=str(run), real=str(real), fake=str(fake), out=str(tmp_path / "rep"), device="cpu",
                      per_distortion=True)
    frame, video = report["sets"]["fake"]["frame"], report["sets"]["fake"]["video"]
    assert (frame["n"], frame["n_fake"], video["n"]) == (16, 8, 4)
    saved = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert saved["sets"]["fake"]["frame"]["auc"] == pytest.approx(frame["auc"])
    got = {"acc": frame["acc"], "auc": frame["auc"], "log_loss": frame["log_loss"], "eer": frame["eer"],
           "video_auc": video["auc"], "gb5_auc": report["per_distortion"]["table"]["GB:5"]["auc"]}
    assert got == pytest.approx(FIXED, abs=1e-6)
    assert len(report["per_distortion"]["table"]) == 35
    assert (tmp_path / "rep" / "per_distortion.md").read_text().count("|") > 40
    preds = json.loads((tmp_path / "rep" / "predictions.json").read_text())
    assert len(preds["fake"]["items"]) == 16 and len(preds["fake"]["videos"]) == 4
    mask = os.umask(0o022)
    os.umask(mask)
    written = sorted(p.name for p in (tmp_path / "rep").iterdir())  # atomic: no temporary file left, umask followed
    assert not [n for n in written if ".tmp-" in n]
    assert all(((tmp_path / "rep" / n).stat().st_mode & 0o777) == 0o666 & ~mask for n in written)


# measured once from the seed-0 tiny model (weights after one step at lr 1e-9) on the fixed faces
FIXED = {"acc": 0.5, "auc": 0.140625, "log_loss": 0.7089231229382693, "eer": 0.875, "video_auc": 0.0,
         "gb5_auc": 0.03125}


# ------------------------------------------------------------------------------------------------------- export

@pytest.mark.parametrize("model", ["tiny", "tinyclip"])
def test_onnx_parity_and_metadata(tiny, faces, model, tmp_path):
    import onnxruntime as ort

    from pixforge.forensics.detector import load_run
    from pixforge.forensics.export import ProbabilityGraph, export

    real, fake = faces
    run = _train(tmp_path / "run", real, fake, model, steps=1)
    path = export(run=str(run), out=str(tmp_path / "m.onnx"))  # verify_onnx ran inside
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    extra = json.loads(session.get_modelmeta().custom_metadata_map["pixforge.extra"])
    shape = (5, 3, 3, 32, 32) if model == "tinyclip" else (5, 3, 32, 32)
    assert extra["layout"] == ("NCTHW" if model == "tinyclip" else "NCHW") and extra["normalisation"]["mean"]
    x = torch.rand(shape) * 255
    det, _ = load_run(run)
    with torch.no_grad():
        expected = ProbabilityGraph(det)(x).numpy()
    np.testing.assert_allclose(session.run(None, {"clip": x.numpy()})[0], expected, atol=1e-5)


# ------------------------------------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("args, message", [
    (["train", "--real", "{real}", "--fake", "sbi", "--out", "{out}"], "exactly one of --steps or --epochs"),
    (["train", "--real", "{missing}", "--fake", "sbi", "--out", "{out}", "--steps", "2"], "does not exist"),
    (["train", "--real", "{real}", "--fake", "sbi", "--out", "{out}", "--steps", "2", "--model", "vgg"],
     "unknown detector"),
    (["train", "--real", "{real}", "--fake", "sbi", "--out", "{out}", "--steps", "0"], "--steps must be"),
    (["train", "--real", "{real}", "--fake", "sbi", "--out", "{out}", "--steps", "2", "--distort-p", "2"],
     "--distort-p"),
    (["train", "--real", "{real}", "--fake", "sbi", "--out", "{out}", "--steps", "2", "--distort-fake-only"],
     "--distort-fake-only needs --distort-p above 0"),
    (["evaluate", "--run", "{missing}", "--real", "{real}", "--fake", "sbi", "--out", "{out}"], "--run"),
    (["evaluate", "--run", "{real}", "--real", "{real}", "--fake", "sbi", "--out", "{out}"], "model.safetensors"),
    (["export", "--run", "{real}", "--out", "{out}/m.txt"], "must end in .onnx"),
    (["detect", "{missing}", "--run", "{real}", "--out", "{out}"], "input {missing} does not exist"),
])
def test_bad_inputs_exit_2_one_line_nothing_written(faces, tmp_path, args, message):
    real, _ = faces
    out = tmp_path / "out"
    values = {"real": str(real), "out": str(out), "missing": str(tmp_path / "missing")}
    cmd = [sys.executable, "-m", "pixforge.forensics.cli"] + [a.format(**values) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**__import__("os").environ,
                                                                    "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message.format(**values) in lines[0], proc.stderr
    assert not out.exists()


def _spoiled_faces(root, how):
    """A copy of 2 videos' crops with one problem: a corrupt crop, a 1x1 crop or NaN landmarks."""
    real = write_faces(root, videos=2, frames=4, size=48)
    if how == "corrupt":
        (real / "001" / "000005.png").write_text("not an image")
    elif how == "tiny":
        Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(real / "001" / "000005.png")
    else:
        track = json.loads((real / "001" / "track.json").read_text())
        track["crop_landmarks"][2][0] = [float("nan"), 1.0]
        (real / "001" / "track.json").write_text(json.dumps(track))
    return real


@pytest.mark.parametrize("how, message", [("corrupt", "cannot read face crop"), ("tiny", "is 1x1: at least 16 px"),
                                          ("nan", "crop_landmarks are not all finite")])
def test_bad_crops_are_refused_before_training_or_evaluation(tiny, faces, tmp_path, how, message):
    """Every crop's header and the landmarks are checked when the folder is scanned: before any step, no run."""
    from pixforge.forensics.evaluate import evaluate

    real = _spoiled_faces(tmp_path / "real", how)
    run = _train(tmp_path / "good", faces[0], "sbi", steps=1)
    for call in (lambda: _train(tmp_path / "run", real, "sbi", steps=1),
                 lambda: evaluate(run=str(run), real=str(real), fake="sbi", out=str(tmp_path / "eval"))):
        with pytest.raises(PixforgeError, match=message) as err:
            call()
        assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists() and not (tmp_path / "eval").exists()


def test_outputs_over_or_inside_the_inputs_are_refused(tiny, tmp_path):
    """train --out at the crops with --overwrite would delete them; evaluate's report inside them would be scanned
    as crops next time: both refused, the crops kept."""
    from pixforge.forensics.evaluate import evaluate

    real = write_faces(tmp_path / "real", videos=2, frames=4, size=48)
    before = sorted(real.rglob("*"))
    with pytest.raises(PixforgeError, match="is the input"):
        _train(real, real, "sbi", steps=1, overwrite=True)
    run = _train(tmp_path / "run", real, "sbi", steps=1)
    for out, message in ((real / "report", "is inside the input folder"), (run, "is the input")):
        with pytest.raises(PixforgeError, match=message):
            evaluate(run=str(run), real=str(real), fake="sbi", out=str(out))
    assert sorted(real.rglob("*")) == before


# ------------------------------------------------------------------------------------------------------- detect

def test_detect_writes_probability_json_and_overlay(tiny, faces, tmp_path):
    pytest.importorskip("dlib")
    import cv2
    from skimage import data

    from pixforge.export.video import VideoReader, VideoWriter
    from pixforge.forensics.detect import detect

    real, fake = faces
    run = _train(tmp_path / "run", real, fake, steps=1)
    image = data.astronaut()
    frames = [cv2.warpAffine(image, np.array([[1.0, 0, 160 - 223 + 2 * t], [0, 1.0, 128 - 127.0]]), (320, 256),
                             borderMode=cv2.BORDER_REFLECT) for t in range(6)]
    with VideoWriter(tmp_path / "v" / "clip.mp4", 12, preset="veryfast") as writer:
        writer.write(np.stack(frames))
    with VideoWriter(tmp_path / "v" / "blank.mp4", 12, preset="veryfast") as writer:
        writer.write(np.zeros((3, 64, 64, 3), np.uint8))
    results = detect(videos=str(tmp_path / "v"), run=str(run), out=str(tmp_path / "out"), frames=4, device="cpu")
    record = json.loads((tmp_path / "out" / "clip.json").read_text())
    assert 0 < results["clip"] < 1 and len(record["items"]) == 4 and record["p_fake"] == results["clip"]
    assert set(record["timing"]) == {"faces_s", "model_s", "overlay_s", "frames"} and record["timing"]["frames"] == 4
    with VideoReader(tmp_path / "out" / "clip.overlay.mp4") as reader:
        assert sum(len(batch) for batch in reader) == 6
    assert results["blank"] == 0.5 and "no face" in json.loads((tmp_path / "out" / "blank.json").read_text())["warning"]


def _face_video(path: Path, shift: int = 0, frames: int = 6) -> Path:
    """The astronaut drifting right by 2 px a frame (dlib finds her face), 320 x 256 at 12 fps."""
    import cv2
    from skimage import data

    from pixforge.export.video import VideoWriter

    image = data.astronaut()
    with VideoWriter(path, 12, preset="veryfast") as writer:
        writer.write(np.stack([cv2.warpAffine(image, np.array([[1.0, 0, 160 - 223 + 2 * t + shift],
                                                                [0, 1.0, 128 - 127.0]]), (320, 256),
                                              borderMode=cv2.BORDER_REFLECT) for t in range(frames)]))
    return path


def _blank_video(path: Path) -> Path:
    from pixforge.export.video import VideoWriter

    with VideoWriter(path, 12, preset="veryfast") as writer:
        writer.write(np.zeros((3, 64, 64, 3), np.uint8))
    return path


def _folder(root: Path) -> Path:
    """a (face), b (no face: a warning), sub/c (face, shifted): three videos for `detect` over a folder."""
    _face_video(root / "a.mp4")
    _blank_video(root / "b.mp4")
    _face_video(root / "sub" / "c.mp4", shift=-30)
    return root


def _outputs(out: Path) -> dict:
    """Every output of a detect run: JSON records without their timing (and the overlay's folder), overlay
    frames."""
    from pixforge.export.video import VideoReader

    found = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.suffix == ".json":
            record = json.loads(path.read_text())
            record.pop("timing")
            record["overlay"] = Path(record["overlay"]).relative_to(out).as_posix() if "overlay" in record else None
            found[rel] = record
        elif path.suffix == ".mp4":
            with VideoReader(path) as reader:
                found[rel] = np.concatenate(list(reader))
        elif path.is_file():
            found[rel] = path.read_bytes()
    return found


@pytest.fixture
def no_stray_temps(tmp_path, monkeypatch):
    """detect's temporary face folders go under tmp_path/tmp, which the test checks is empty afterwards."""
    import tempfile

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_detect_prefetched_equals_sequential(tiny, faces, tmp_path, capsys, no_stray_temps):
    """The next video's face stage in a worker thread: the same results in the same order, the same JSON (less
    timing), overlays and warnings as the plain loop."""
    pytest.importorskip("dlib")
    from pixforge.forensics.detect import detect

    real, fake = faces
    run = _train(tmp_path / "run", real, fake, steps=1)
    videos = _folder(tmp_path / "v")
    capsys.readouterr()
    runs = {}
    for prefetch in (False, True):
        out = tmp_path / f"out-{prefetch}"
        results = detect(videos=str(videos), run=str(run), out=str(out), frames=4, device="cpu", prefetch=prefetch)
        runs[prefetch] = (list(results.items()), _outputs(out), capsys.readouterr().err)
    (seq_results, seq_files, seq_err), (pre_results, pre_files, pre_err) = runs[False], runs[True]
    assert [k for k, _ in seq_results] == ["a", "b", "sub/c"] and pre_results == seq_results
    assert sorted(seq_files) == ["a.json", "a.overlay.mp4", "b.json", "sub/c.json", "sub/c.overlay.mp4"]
    assert sorted(pre_files) == sorted(seq_files)
    for name, value in seq_files.items():
        assert np.array_equal(pre_files[name], value) if name.endswith(".mp4") else pre_files[name] == value, name
    assert pre_err == seq_err and seq_err.count("warning: no face found") == 1
    assert not any(no_stray_temps.iterdir())


@pytest.mark.parametrize("failing", ["faces", "model"])
def test_detect_error_surfaces_where_the_sequential_loop_raises_it(tiny, faces, tmp_path, monkeypatch, capsys,
                                                                   no_stray_temps, failing):
    """An error in b's face stage (computed ahead, while a's model stage runs) or in b's model stage (while c's
    faces are computed ahead): the same one-line error after a's outputs, nothing of b or c, no temporary folder
    left, with and without prefetching."""
    pytest.importorskip("dlib")
    from pixforge.forensics import detector, extract
    from pixforge.forensics.detect import detect

    real, fake = faces
    run = _train(tmp_path / "run", real, fake, steps=1)
    videos = tmp_path / "v"
    for name in ("a", "b", "c"):
        _face_video(videos / f"{name}.mp4")
    extract_video, predict = extract.extract_video, detector.predict

    def failing_extract(job, *args):
        if failing == "faces" and job.src.name == "b.mp4":
            raise PixforgeError(f"{job.src}: decoding failed")
        return extract_video(job, *args)

    calls = []

    def failing_predict(det, data, **kw):
        calls.append(data)
        if failing == "model" and len(calls) == 2:  # b's
            raise PixforgeError("model stage failed")
        return predict(det, data, **kw)

    monkeypatch.setattr(extract, "extract_video", failing_extract)
    monkeypatch.setattr(detector, "predict", failing_predict)
    errors = {}
    for prefetch in (False, True):
        out = tmp_path / f"out-{prefetch}"
        calls.clear()
        with pytest.raises(PixforgeError) as err:
            detect(videos=str(videos), run=str(run), out=str(out), frames=4, device="cpu", prefetch=prefetch)
        errors[prefetch] = str(err.value).replace(str(out), "OUT")
        assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.overlay.mp4"]
        assert not any(no_stray_temps.iterdir())
    assert errors[True] == errors[False] and "\n" not in errors[True]
    assert ("decoding failed" if failing == "faces" else "model stage failed") in errors[True]


def test_detect_json_is_atomic_and_follows_the_umask(tiny, faces, tmp_path, monkeypatch):
    """A write that fails half way (a full disk) leaves the earlier JSON whole and no temporary file; the files
    get 0666 less the umask."""
    import errno

    pytest.importorskip("dlib")
    from pixforge.forensics.detect import detect

    real, fake = faces
    run = _train(tmp_path / "run", real, fake, steps=1)
    video = _face_video(tmp_path / "v" / "a.mp4")
    out = tmp_path / "out"
    mask = os.umask(0o027)
    try:
        detect(videos=str(video), run=str(run), out=str(out), frames=4, device="cpu")
    finally:
        os.umask(mask)
    assert (out / "a.json").stat().st_mode & 0o777 == 0o640
    assert (out / "a.overlay.mp4").stat().st_mode & 0o777 == 0o640
    before = (out / "a.json").read_bytes()
    real_open = Path.open

    class HalfWrite:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[:len(data) // 2])
            self.fh.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

    def half_open(self, mode="r", *args, **kwargs):
        fh = real_open(self, mode, *args, **kwargs)
        return HalfWrite(fh) if "w" in mode and self.parent == out and ".json" in self.name else fh

    monkeypatch.setattr(Path, "open", half_open)
    with pytest.raises(OSError, match="No space"):
        detect(videos=str(video), run=str(run), out=str(out), frames=4, device="cpu", overlay=False, overwrite=True)
    monkeypatch.undo()
    assert (out / "a.json").read_bytes() == before and json.loads(before)["p_fake"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.overlay.mp4"]


@pytest.mark.parametrize("case, message", [
    ("out_under_video", "exists and is not a folder"),
    ("two_videos_one_name", "would both write"),
    ("overlay_over_input", "is the input"),
    ("out_in_the_videos", "is inside the input folder"),
    ("json_is_folder", "is a folder"),
    ("unusable_video", "unusable, so nothing was written"),
    ("run_of_another_tool", "is not a forensics detector's record"),
    ("run_of_another_model", "weights do not match a tinyclip"),
    ("unfinished_run", "no model.safetensors"),
])
def test_detect_bad_inputs_refused_before_any_work(tiny, faces, tmp_path, monkeypatch, case, message):
    """Each refused with one line before a face is looked for or a file written."""
    from pixforge.core.checkpoint import save_release
    from pixforge.forensics import extract
    from pixforge.forensics.detect import detect

    real, fake = faces
    run = _train(tmp_path / "run", real, fake, steps=1)
    videos = tmp_path / "v"
    _blank_video(videos / "a.mp4")
    _blank_video(videos / "b.mp4")
    out = tmp_path / "out"
    if case == "out_under_video":
        out = videos / "a.mp4" / "out"
    elif case == "two_videos_one_name":
        _blank_video(videos / "b.mov")
    elif case == "overlay_over_input":
        _blank_video(videos / "a.overlay.mp4")  # an earlier run's overlay, --out at the input folder
        out = videos
    elif case == "out_in_the_videos":  # the next run would score the overlays as videos
        out = videos / "scores"
    elif case == "json_is_folder":
        (out / "b.json").mkdir(parents=True)
    elif case == "unusable_video":
        (videos / "c.mp4").write_bytes(b"not a video")
    elif case == "run_of_another_tool":
        run = tmp_path / "singan"
        save_release(run, nn.Linear(2, 2), {"method": "singan", "sizes": [[8, 8]]})
    elif case == "run_of_another_model":
        record = json.loads((run / "model.json").read_text())
        (run / "model.json").write_text(json.dumps({**record, "model": "tinyclip", "clip": 3}))
    elif case == "unfinished_run":
        (run / "model.safetensors").unlink()
    before = sorted(tmp_path.rglob("*"))
    monkeypatch.setattr(extract, "extract_video", lambda *a: pytest.fail("a face stage ran"))
    with pytest.raises(PixforgeError, match=message) as err:
        detect(videos=str(videos), run=str(run), out=str(out), frames=4, device="cpu")
    assert "\n" not in str(err.value)
    assert sorted(tmp_path.rglob("*")) == before


# ------------------------------------------------------------------------------------------------------- torchrun

def _ddp_wrapper() -> str:
    """A script that registers `TinyImage` as model "tiny" and runs the CLI (torchrun's processes do not see this
    test's registry)."""
    return "\n".join([
        "import sys", "import torch", "from torch import nn", "from pixforge.forensics.cli import main",
        "from pixforge.forensics.models import MODELS, ModelSpec", inspect.getsource(TinyImage),
        'MODELS["tiny"] = ModelSpec("tiny", TinyImage, 32, 1, (127.5,) * 3, (127.5,) * 3, "test", 1, 0, "none")',
        'sys.argv = ["pixforge-forensics", *sys.argv[1:]]', "main()"])


def _train_tiny_cli(tmp_path, out, real, batch, processes=1):
    script = tmp_path / "train_tiny.py"
    script.write_text(_ddp_wrapper())
    cmd = [sys.executable, *launcher(processes), str(script), "train", "--real", str(real), "--fake", "sbi",
           "--model", "tiny", "--out", str(out), "--batch", str(batch), "--steps", "3", "--optimizer", "sgd",
           "--lr", "0.05", "--device", "cpu", "--threads", "1", "--quiet"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_two_processes_train_what_one_trains_on_the_doubled_batch(faces, tmp_path):
    """torchrun, 2 processes (gloo, CPU) at --batch 2 against one at --batch 4: the loss is a batch mean, DDP
    averages the gradients, every clip and SBI fake is drawn from (seed, global sample index), only rank 0 writes.
    The detector is tiny and has no batch norm (BN normalises over each process' own batch, so a real Xception is
    not split-invariant); a wrapper script registers it, as torchrun's processes do not see this test's registry.
    float32 sums split in two round differently: ~1e-7, not bit for bit."""
    real, _ = faces
    ddp = _train_tiny_cli(tmp_path, tmp_path / "ddp", real, batch=2, processes=2)
    one = _train_tiny_cli(tmp_path, tmp_path / "one", real, batch=4)
    a = read_checkpoint(ddp / "checkpoints" / "step-000000003.pt")
    b = read_checkpoint(one / "checkpoints" / "step-000000003.pt")
    assert a["config"]["batch"] == 2 and b["config"]["batch"] == 4
    assert set(a["models"]["net"]) == set(b["models"]["net"]) == {"conv.weight", "conv.bias", "fc.weight", "fc.bias"}
    start = TinyImage(generator=torch.Generator().manual_seed(b["config"]["seed"])).state_dict()  # as train builds it
    for key, value in b["models"]["net"].items():
        torch.testing.assert_close(a["models"]["net"][key], value, atol=1e-6, rtol=1e-5, msg=key)
        for ckpt in (a, b):  # training moved every tensor (equal runs prove nothing if neither trains)
            assert not torch.equal(ckpt["models"]["net"][key], start[key]), key
    losses = [[json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
               if "loss" in json.loads(line)] for run in (ddp, one)]
    assert len(losses[0]) == 3 and max(abs(x - y) for x, y in zip(*losses, strict=True)) < 1e-6
    assert (ddp / "model.safetensors").is_file() and not list(ddp.glob("*.tmp*"))
