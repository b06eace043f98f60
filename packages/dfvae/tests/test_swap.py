"""`swap`, `export` and `metrics` on a tiny model (32 px, 2 training steps: speed and plumbing, not quality) and a
12-frame 160 px video of the astronaut with an audio track. Needs dlib (skipped without it)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from pixforge.export.command import invoke

pytest.importorskip("dlib")

TINY = ["--size", "32", "--width", "8", "--max-width", "32", "--structure-channels", "8", "--appearance-dim", "16",
        "--fusion-width", "8", "--device", "cpu", "--quiet", "--perceptual", "off"]


def cli(*args):
    from pixforge.dfvae.cli import DFVAE

    return invoke(DFVAE, [str(a) for a in args], "pixforge-dfvae")


@pytest.fixture(scope="module")
def run(tmp_path_factory, dataset_maker):
    root = tmp_path_factory.mktemp("swap")
    data = dataset_maker(root / "data", {"anna": 6, "ben": 5}, size=32)
    assert cli("train", root / "run", "--data", data, "--steps", 2, "--batch", 2, *TINY) == 0
    return root / "run"


@pytest.fixture(scope="module")
def target(tmp_path_factory, video_writer, frames_maker):
    """12 frames at 25 fps with a 440 Hz sine track."""
    from pixforge.export.video import ffmpeg_exe

    root = tmp_path_factory.mktemp("target")
    silent = video_writer(root / "silent.mp4", frames_maker(12, 160))
    path = root / "target.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(silent), "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=0.48", "-c:v", "copy", "-c:a", "aac", "-shortest", str(path)],
                   check=True)
    return path


def _comment(path) -> str:
    from pixforge.export.video import ffmpeg_exe

    err = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    return next((line.split(":", 1)[1].strip() for line in err.splitlines() if line.strip().startswith("comment")),
                "")


def test_references_are_kept_at_the_end_of_training(run):
    index = json.loads((run / "references" / "references.json").read_text())
    assert index["size"] == 32 and sorted(index["identities"]) == ["anna", "ben"]
    assert all((run / "references" / f["file"]).is_file() for f in index["identities"]["ben"])
    assert json.loads((run / "model.json").read_text())["tool"] == "pixforge-dfvae"


def test_swap_keeps_frames_fps_audio_and_says_it_is_synthetic(run, target, tmp_path):
    from pixforge.export.video import probe_video

    out = tmp_path / "swapped.mp4"
    assert cli("swap", target, "--run", run, "--source-id", "ben", "--out", out, "--preview", "--batch", 5,
               "--detect-every", 4, "--quiet") == 0
    src, got = probe_video(target), probe_video(out)
    assert (got.frame_count, got.fps_fraction, got.has_audio) == (src.frame_count, src.fps_fraction, True)
    assert (got.width, got.height) == (src.width, src.height)
    meta = json.loads(_comment(out))
    assert meta["synthetic"] is True and meta["tool"] == "pixforge-dfvae" and meta["source_identity"] == "ben"
    side = probe_video(tmp_path / "swapped-preview.mp4")
    assert (side.width, side.frame_count, side.has_audio) == (2 * src.width, src.frame_count, True)
    assert json.loads(_comment(tmp_path / "swapped-preview.mp4"))["synthetic"] is True


def test_a_variable_frame_rate_video_keeps_its_duration(run, tmp_path, video_writer, frames_maker):
    """Phone videos (HEVC .mov) are often variable-rate with a nominal rate far from their mean; here 12 frames in
    pairs 1/120 s apart, 0.075 s between pairs (nominally 25/s, ~27/s on average): the swap is written at the mean
    rate, so it lasts as long as the target instead of playing too fast."""
    from fractions import Fraction

    from pixforge.export.video import ffmpeg_exe, probe_video

    cfr = video_writer(tmp_path / "cfr.mp4", frames_maker(12, 160))
    vfr = tmp_path / "vfr.mov"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(cfr), "-vf",
                    "setpts='(floor(N/2)*0.075+mod(N,2)/120)/TB'", "-fps_mode", "passthrough", "-c:v", "libx264",
                    "-preset", "ultrafast", "-video_track_timescale", "12000", str(vfr)], check=True)
    src = probe_video(vfr)
    rate = Fraction(src.playback_fps_fraction)
    assert src.fps_fraction == "25/1" and src.variable_rate and 26 < rate < 28.5
    assert probe_video(cfr).playback_fps_fraction == "25/1"  # a constant-rate video keeps its exact rate
    out = tmp_path / "swapped.mp4"
    assert cli("swap", vfr, "--run", run, "--source-id", "ben", "--out", out, "--quiet") == 0
    got = probe_video(out)
    assert got.frame_count == 12 and abs(got.fps - float(rate)) < 0.05


def test_frames_after_the_face_left_are_not_swapped(run, tmp_path, video_writer, frames_maker, capsys):
    """12 frames of a face, then 8 of a title card: the tracker carries the face into the card for up to 10 frames;
    swap holds the frames between detection runs and swaps a carried face only when both runs found it."""
    card = np.full((8, 160, 160, 3), (40, 90, 160), np.uint8)
    video = video_writer(tmp_path / "cut.mp4", np.concatenate([frames_maker(12, 160), card]))
    assert cli("swap", video, "--run", run, "--source-id", "ben", "--out", tmp_path / "out.mp4",
               "--detect-every", 5, "--quiet") == 0
    assert "into 11 of 20 frames" in capsys.readouterr().out  # 0-10: frame 11 lies before the run at 15


def test_image_swap_changes_only_the_masked_face_and_carries_provenance(run, tmp_path, frames_maker):
    from PIL import Image

    from pixforge.core.faces import detect_faces, open_backend, paste_back
    from pixforge.dfvae.model import load
    from pixforge.dfvae.pipeline import Aligner
    from pixforge.export.images import read_image, write_image

    image = frames_maker(1, 160, seed=5)[0]
    write_image(tmp_path / "face.png", image)
    out = tmp_path / "out" / "face.png"
    assert cli("swap", tmp_path / "face.png", "--run", run, "--source-id", "anna", "--out", out, "--quiet") == 0
    result = read_image(out)
    assert result.shape == image.shape
    # the frame-space weight of the pasted crop, from the same (deterministic) detection and alignment
    face = max(detect_faces(image, open_backend("dlib")), key=lambda f: f.size)
    job = Aligner(32, load(run).padding)(image, face.landmarks)
    white = np.full((32, 32, 1), 255, np.uint8)
    alpha = paste_back(np.zeros((*image.shape[:2], 1), np.uint8), white, job.matrix, job.mask)[..., 0]
    # where the mask is above 0 at all (any positive m^b made 1), grown by a pixel for the bilinear footprint
    reach = paste_back(np.zeros((*image.shape[:2], 1), np.uint8), white, job.matrix,
                       np.minimum(1, job.mask * 1e6))[..., 0] > 0
    padded = np.pad(reach, 1)
    reach = np.max([padded[1 + dy:padded.shape[0] - 1 + dy, 1 + dx:padded.shape[1] - 1 + dx]
                    for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
    assert (~reach).mean() > 0.5 and (alpha > 200).any()
    assert np.array_equal(result[~reach], image[~reach])  # outside the mask: the target, bit for bit
    assert np.abs(result.astype(int) - image)[alpha > 200].mean() > 1  # inside: the swap
    meta = json.loads(Image.open(out).text["Comment"])
    assert meta == {**meta, "synthetic": True, "tool": "pixforge-dfvae", "source_identity": "anna"}


def test_a_folder_of_images_gives_a_folder_of_pngs(run, tmp_path, frames_maker):
    from pixforge.export.images import write_image

    for k, frame in enumerate(frames_maker(2, 128, seed=7)):
        write_image(tmp_path / "in" / f"f{k}.jpg", frame)
    assert cli("swap", tmp_path / "in", "--run", run, "--source-id", "ben", "--out", tmp_path / "out",
               "--preview", "--quiet") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["f0-preview.png", "f0.png", "f1-preview.png",
                                                                    "f1.png"]


def _other_tool_checkpoint(path):
    from pixforge.core.checkpoint import save_checkpoint

    save_checkpoint(path / "checkpoints" / "step-000000001.pt", step=1, models={"G": {}},
                    config={"arch": {"tool": "pixforge-tsit", "format": 1}})
    return path


def test_bad_inputs_are_one_line_exit_2_and_write_nothing(run, target, tmp_path, capsys, video_writer,
                                                          monkeypatch):
    import torch

    out = tmp_path / "out.mp4"
    noise = video_writer(tmp_path / "noise.mp4", np.random.default_rng(0).integers(0, 256, (6, 96, 96, 3),
                                                                                    dtype=np.uint8))
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    (tmp_path / "taken.mp4").write_bytes(b"x")
    other = _other_tool_checkpoint(tmp_path / "tsit-run")
    base = ["swap", target, "--run", run, "--source-id", "ben"]
    cases = [(["swap", noise, "--run", run, "--source-id", "ben", "--out", out], "no face found in any of its 6 "
              "frames"),
             ([*base[:4], "carol", "--out", out], "unknown identity 'carol': the model knows anna, ben"),
             ([*base[:4], "--out", out], "--source-id is required: the model knows anna, ben"),
             (["swap", tmp_path / "broken.mp4", "--run", run, "--source-id", "ben", "--out", out], "broken.mp4"),
             (["swap", target, "--run", other, "--source-id", "ben", "--out", out], "pixforge-tsit"),
             (["swap", target, "--run", tmp_path / "nope", "--source-id", "ben", "--out", out], "does not exist"),
             ([*base, "--out", target, "--overwrite"], "is an input"),
             ([*base, "--out", tmp_path / "taken.mp4"], "already exists"),
             ([*base, "--out", tmp_path / "x.png"], "must be a video"),
             ([*base, "--out", out, "--batch", 0], "--batch"),
             ([*base, "--out", out, "--reference", 99], "--reference 99"),
             (["swap", tmp_path / "missing.mp4", "--run", run, "--out", out], "does not exist"),
             ([*base, "--out", out, "--occluder", tmp_path / "taken.mp4"], "taken.mp4 could not be loaded"),
             ([*base, "--out", out, "--preset", "bogus"], "is not a libx264 preset"),
             (base, "--out")]
    if not torch.cuda.is_available():
        cases.append(([*base, "--out", out, "--device", "cuda"], "no CUDA GPU is available"))
    for args, message in cases:
        assert cli(*args, "--quiet") == 2, args  # (quiet: no progress bar on stderr beside the error)
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (args, err)
    monkeypatch.setitem(sys.modules, "dlib", None)  # the faces extra missing
    assert cli(*base, "--out", out) == 2
    assert "pixforge-core[faces]" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4", "noise.mp4", "taken.mp4", "tsit-run"]


def test_outputs_never_replace_the_runs_files_or_land_among_the_source_images(run, tmp_path, capsys,
                                                                                frames_maker):
    import shutil

    from pixforge.export.images import write_image

    write_image(tmp_path / "face.png", frames_maker(1, 160, seed=5)[0])
    crops = tmp_path / "crops"
    shutil.copytree(run / "references" / "ben", crops)
    reference = next(run.glob("references/ben/*.png"))
    kept = {p: p.read_bytes() for p in (*crops.iterdir(), reference, run / "model.json")}
    base = ["swap", tmp_path / "face.png", "--run", run, "--overwrite", "--quiet"]
    cases = [([*base, "--source-images", crops, "--out", crops / "swap.png"], "is inside the input folder"),
             ([*base, "--source-id", "ben", "--out", reference], "is inside the input folder"),
             (["metrics", "--run", run, "--target", tmp_path / "face.png"], "must be a video"),
             (["metrics", "--run", run, "--target", tmp_path / "x.mp4", "--out", run / "model.json", "--overwrite"],
              "is inside the input folder")]
    for args, message in cases:
        assert cli(*args) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (args, err)
    assert all(p.read_bytes() == data for p, data in kept.items())


def test_a_video_without_frames_is_refused(run, tmp_path, capsys):
    from pixforge.export.video import ffmpeg_exe

    audio_only = tmp_path / "sound.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "sine=duration=0.2", "-c:a", "aac",
                    str(audio_only)], check=True)
    assert cli("swap", audio_only, "--run", run, "--source-id", "ben", "--out", tmp_path / "o.mp4") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no video stream" in err
    assert not (tmp_path / "o.mp4").exists()


def test_onnx_export_matches_pytorch_and_swaps_the_same(run, tmp_path, frames_maker):
    pytest.importorskip("onnxruntime")
    import onnx
    import torch

    from pixforge.dfvae.export import graph, inputs, session
    from pixforge.dfvae.model import load
    from pixforge.export.images import read_image, write_image
    from pixforge.export.session import open_session

    model = tmp_path / "m.onnx"
    assert cli("export", "--run", run, "--out", model, "--quiet") == 0
    onnx_session, trained = open_session(model, "cpu"), load(run)
    assert onnx_session.meta.package == "pixforge-dfvae" and onnx_session.meta.task == "face-swap"
    assert [s.name for s in onnx_session.meta.inputs] == ["target", "heatmaps", "reference", "mask"]
    assert onnx_session.meta.extra["identities"] == ["anna", "ben"]
    ops = [node.op_type for node in onnx.load(str(model)).graph.node]  # the sub-pixel upsampling, as swap's torch path
    assert ops.count("ConvTranspose") == trained.model.config.levels + 2 and "Resize" not in ops
    torch_session = session(trained, torch.device("cpu"))
    feeds = dict(zip(["target", "heatmaps", "reference", "mask"], [x.numpy() for x in inputs(5, 32, seed=3)],
                     strict=True))
    a, b = onnx_session.run(feeds)["swapped"], torch_session.run(feeds)["swapped"]
    assert a.shape == (5, 3, 32, 32) and np.abs(a - b).max() < 1e-4  # float32: ~1e-6 measured
    assert graph(trained).meta.input("target").size == (32, 32)
    # swap through onnxruntime = swap through torch (same code path), to a pixel of rounding
    write_image(tmp_path / "face.png", frames_maker(1, 160, seed=2)[0])
    for name, extra in (("torch.png", []), ("onnx.png", ["--model", model])):
        assert cli("swap", tmp_path / "face.png", "--run", run, "--source-id", "ben", "--out", tmp_path / name,
                   "--device", "cpu", "--quiet", *extra) == 0
    diff = np.abs(read_image(tmp_path / "torch.png").astype(int) - read_image(tmp_path / "onnx.png"))
    assert diff.max() <= 1


def test_metrics_json(run, target, tmp_path):
    out = tmp_path / "metrics.json"
    assert cli("metrics", "--run", run, "--target", target, "--source-id", "ben", "--out", out, "--quiet",
               "--max-frames", 8) == 0
    report = json.loads(out.read_text())
    assert report["frames"] == 8 and report["frames_with_face"] == 8 and report["source_id"] == "ben"
    identity = report["identity"]
    assert -1 <= identity["cosine_to_source"] <= 1 and -1 <= identity["cosine_to_target"] <= 1
    assert identity["distance_to_source"] >= 0 and identity["closer_to"] in ("source", "target")
    assert 0 <= report["landmarks"]["error"] < 1  # a 2-step model keeps the target's landmarks roughly
    assert report["flicker"]["swap"] >= 0 and report["flicker"]["target"] > 0
    assert report["reconstruction"]["psnr"] > 5 and -1 <= report["reconstruction"]["ssim"] <= 1
    assert report["provenance"]["synthetic"] is True


def test_a_run_without_references_takes_them_from_its_data(run, tmp_path):
    import shutil

    from pixforge.dfvae.model import load, load_references

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    kept = load_references(load(copy), "ben")
    shutil.rmtree(copy / "references")
    crops, landmarks = load_references(load(copy), "ben")
    assert crops.shape == kept[0].shape == (5, 32, 32, 3) and landmarks.shape == (5, 68, 2)
    assert np.array_equal(crops, kept[0])
    step = load(copy / "checkpoints" / "step-000000002.pt")  # a checkpoint file loads too
    assert step.identities == ["anna", "ben"] and step.run == copy


def test_demo_runs(tmp_path):
    from pixforge.dfvae.cli import DFVAE

    report = DFVAE().demo(out=str(tmp_path / "demo"), steps=2)
    assert "convincing swap needs real footage" in report
    for name in ("swapped.mp4", "swapped-preview.mp4", "model.onnx", "metrics.json"):
        assert (tmp_path / "demo" / name).is_file(), name
    identities = json.loads((tmp_path / "demo" / "data" / "manifest.json").read_text())["identities"]
    assert sorted(identities) == ["astronaut", "cameraman"]


def test_an_occluder_keeps_what_is_in_front_of_the_face(run, tmp_path, frames_maker, occluder_maker):
    """A blue patch (a microphone) over the mouth: with `--occluder` (a model that sees blue as an occluder) the
    patch is the target's bit for bit; without, the swap paints over it, and the colour match, which took the patch
    for face, turns the face blue."""
    from pixforge.export.images import read_image, write_image

    image = frames_maker(1, 160, seed=5)[0].copy()
    image[95:125, 60:90] = (20, 30, 230)
    write_image(tmp_path / "face.png", image)
    occluder = occluder_maker(tmp_path / "blue.onnx")
    base = ["swap", tmp_path / "face.png", "--run", run, "--source-id", "anna", "--quiet"]
    assert cli(*base, "--out", tmp_path / "plain.png") == 0
    assert cli(*base, "--out", tmp_path / "kept.png", "--occluder", occluder) == 0
    patch = (slice(100, 120), slice(65, 85))
    plain, kept = read_image(tmp_path / "plain.png"), read_image(tmp_path / "kept.png")
    assert np.abs(plain[patch].astype(int) - image[patch]).mean() > 5  # painted over
    assert np.array_equal(kept[patch], image[patch])
    face = (slice(60, 90), slice(90, 120))  # the other cheek and eye: swapped in both
    assert np.abs(kept[face].astype(int) - image[face]).mean() > 1
    blue = [(out[face][..., 2].astype(float) - out[face][..., 0]).mean() for out in (image, plain, kept)]
    assert blue[1] > blue[2] + 10 and abs(blue[2] - blue[0]) < abs(blue[1] - blue[0])  # (B - R) of the cheek


def test_an_occluder_works_on_videos(run, tmp_path, frames_maker, video_writer, occluder_maker, capsys):
    """The same blue patch on 6 frames of a video: kept (up to the encoder's loss) with the occluder, painted over
    without; the report names the occluder's stage."""
    from pixforge.export.video import VideoReader

    frames = np.repeat(frames_maker(1, 160, seed=5), 6, axis=0)
    frames[:, 95:125, 60:90] = (20, 30, 230)
    video = video_writer(tmp_path / "mic.mp4", frames)
    base = ["swap", video, "--run", run, "--source-id", "anna", "--quiet", "--batch", 3]
    assert cli(*base, "--out", tmp_path / "plain.mp4") == 0
    capsys.readouterr()
    assert cli(*base, "--out", tmp_path / "kept.mp4", "--occluder", occluder_maker(tmp_path / "blue.onnx")) == 0
    assert ", occlude " in capsys.readouterr().out

    def read(path):
        with VideoReader(path) as reader:
            return np.concatenate(list(reader))

    patch = (slice(None), slice(100, 120), slice(65, 85))
    original, plain, kept = (read(p) for p in (video, tmp_path / "plain.mp4", tmp_path / "kept.mp4"))
    assert len(kept) == 6
    assert np.abs(plain[patch].astype(int) - original[patch]).mean() > 5
    assert np.abs(kept[patch].astype(int) - original[patch]).mean() < 2
