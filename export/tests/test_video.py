"""pixforge.export.video: probing, streamed reading, atomic writing with audio, clear errors. No torch."""

import re
import subprocess
from fractions import Fraction

import numpy as np
import pytest

from pixforge.export.errors import PixforgeError
from pixforge.export.images import write_image
from pixforge.export.video import (
    VideoReader,
    VideoWriter,
    _mux_extra_args,
    _packet_rate,
    _run_ffmpeg,
    copy_video,
    ffmpeg_exe,
    is_video_path,
    probe_video,
)


def lavfi(path, *, seconds=2.0, rate="25", size="64x48", audio=True, codec_args=("-c:v", "libx264")):
    """A synthetic clip made by ffmpeg: testsrc2 video, optionally with a 440 Hz sine track."""
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440"]
    cmd += ["-t", str(seconds), *codec_args, "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, check=True)
    return path


def noise_frames(n, h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_suffixes():
    assert is_video_path("a/clip.MP4") and is_video_path("x.mkv")
    assert not is_video_path("x.png")


@pytest.mark.parametrize("rate, fps, frames", [("25", "25/1", 50), ("30000/1001", "30000/1001", 60)])
def test_probe(tmp_path, rate, fps, frames):
    info = probe_video(lavfi(tmp_path / "clip.mp4", rate=rate))
    assert (info.width, info.height, info.fps_fraction, info.frame_count) == (64, 48, fps, frames)
    assert info.fps == pytest.approx(float(Fraction(fps)))
    assert info.has_audio and info.codec == "h264"
    assert info.duration == pytest.approx(2.0, abs=0.05)
    # constant rate: the mean rate from the packets' timestamps is the nominal one, exactly
    assert (info.mean_fps_fraction, info.mean_fps, info.variable_rate) == (fps, info.fps, False)
    assert info.playback_fps_fraction == fps


@pytest.mark.parametrize("suffix", [".mkv", ".mov"])
def test_probe_constant_rate_in_other_containers(tmp_path, suffix):
    info = probe_video(lavfi(tmp_path / f"clip{suffix}", rate="30", audio=False))
    assert (info.fps_fraction, info.mean_fps_fraction, info.frame_count, info.variable_rate) == ("30/1", "30/1", 60,
                                                                                                  False)


def vfr_clip(path, audio=True):
    """40 frames: 20 at 10 fps, then 20 at 40 fps (2.5 s, 16 fps on average; ffmpeg's nominal rate is 40)."""
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=40:duration=1"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:duration=2.5"]
    cmd += ["-vf", "setpts='if(lt(N,20),N/10,2+(N-20)/40)/TB'", "-fps_mode", "vfr", "-c:v", "libx264",
            "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, check=True)
    return path


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov"])
def test_probe_measures_a_variable_rate(tmp_path, suffix):
    info = probe_video(vfr_clip(tmp_path / f"vfr{suffix}", audio=False))
    assert (info.fps_fraction, info.frame_count) == ("40/1", 40)  # the nominal rate: 1 s by the count
    assert (info.mean_fps_fraction, info.mean_fps, info.variable_rate) == ("16/1", 16.0, True)
    assert info.playback_fps_fraction == "16/1" and info.playback_fps == 16.0
    assert info.frame_count / info.mean_fps == pytest.approx(info.duration, abs=0.05)


def test_probe_is_one_ffmpeg_run(tmp_path, monkeypatch):
    path = vfr_clip(tmp_path / "vfr.mp4", audio=False)
    calls = []
    run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a) or run(*a, **k))
    assert probe_video(path).variable_rate and len(calls) == 1


def test_copy_video_keeps_a_variable_rate_videos_duration_and_audio(tmp_path):
    src = vfr_clip(tmp_path / "vfr.mp4")
    dst = copy_video(src, tmp_path / "dst.mp4", lambda batch: batch, batch_size=8, preset="ultrafast")
    info = probe_video(dst)
    assert (info.fps_fraction, info.mean_fps_fraction, info.frame_count, info.variable_rate) == ("16/1", "16/1", 40,
                                                                                                  False)
    assert info.duration == pytest.approx(2.5, abs=0.05) and info.has_audio


@pytest.mark.parametrize("listing, count, mean", [
    ("#tb 0: 1/1000\n0, 0, 0, 40, 9, 0x1\n0, 40, 40, 40, 9, 0x2\n0, 80, 80, 40, 9, 0x3\n", 3, Fraction(25)),
    ("#tb 0: 1/1000\n0, 0, 0, 0, 9, 0x1\n0, 40, 40, 0, 9, 0x2\n0, 80, 80, 0, 9, 0x3\n", 3, Fraction(25)),
    ("#tb 0: 1/90000\n0, -3003, 0, 3003, 9, 0x1, S=1, 8, 0x2\n0, 0, 6006, 3003, 9, 0x3\n"
     "0, 3003, 3003, 3003, 9, 0x4\n", 3, Fraction(30000, 1001)),
    ("#tb 0: 1/1000\n0, 0, 0, 40, 9, 0x1\n", 1, None),
    ("#tb 0: 1/1000\n", 0, None),
])
def test_packet_rate_from_a_framecrc_listing(listing, count, mean):
    """Frames over the span of their timestamps (packets in decoding order, pts reordered); without durations,
    the span between the first and last pts holds one frame less."""
    assert _packet_rate(listing) == (count, mean)


@pytest.mark.parametrize("rate", ["25", "30000/1001"])
def test_round_trip_keeps_frames_fps_size_and_audio(tmp_path, rate):
    src = lavfi(tmp_path / "src.mp4", rate=rate)
    dst = copy_video(src, tmp_path / "out" / "dst.mp4", lambda batch: 255 - batch, batch_size=7)
    before, after = probe_video(src), probe_video(dst)
    assert (after.width, after.height, after.fps_fraction, after.frame_count) == \
        (before.width, before.height, before.fps_fraction, before.frame_count)
    assert after.has_audio
    assert sorted(p.name for p in dst.parent.iterdir()) == ["dst.mp4"]  # no temporary file left
    with VideoReader(src) as a, VideoReader(dst) as b:  # lossy, but the mapped content is there
        assert np.abs((255 - next(a)).astype(int) - next(b)).mean() < 8


@pytest.mark.parametrize("suffix, codec, pix_fmt, args", [
    (".mkv", "ffv1", "bgr0", []),
    (".mp4", "libx264rgb", "rgb24", ["-qp", "0"]),
])
def test_lossless_round_trip_is_exact(tmp_path, suffix, codec, pix_fmt, args):
    frames = noise_frames(20)
    path = tmp_path / f"lossless{suffix}"
    with VideoWriter(path, 24, codec=codec, crf=None, pix_fmt=pix_fmt, extra_args=args) as writer:
        writer.write(frames[:13])
        for frame in frames[13:]:
            writer.write(frame)
    assert writer.frames_written == 20
    with VideoReader(path, batch_size=10) as reader:  # 20 frames: the stream ends right after a full batch
        decoded = np.concatenate(list(reader))
    np.testing.assert_array_equal(decoded, frames)


def test_reader_streams_in_batches(tmp_path):
    path = lavfi(tmp_path / "long.mp4", seconds=12, size="32x24", audio=False)
    with VideoReader(path, batch_size=16) as reader:
        assert reader.info.frame_count == 300
        sizes = [len(batch) for batch in reader]
        assert not reader._proc  # the decoder has exited once the stream is drained
    assert sizes == [16] * 18 + [12]


def test_reader_takes_a_probe_it_was_given(tmp_path, monkeypatch):
    path = lavfi(tmp_path / "clip.mp4", seconds=1, audio=False)
    info = probe_video(path)
    expected = np.concatenate(list(VideoReader(path, batch_size=8)))
    import pixforge.export.video as video

    def no_probe(path):
        raise AssertionError("probed again")

    monkeypatch.setattr(video, "probe_video", no_probe)
    with VideoReader(path, batch_size=8, info=info) as reader:
        assert np.array_equal(np.concatenate(list(reader)), expected)


def test_reader_close_stops_decoder(tmp_path):
    reader = VideoReader(lavfi(tmp_path / "clip.mp4", audio=False), batch_size=4)
    first = next(reader)
    assert first.shape == (4, 48, 64, 3) and first.dtype == np.uint8
    proc = reader._proc
    reader.close()
    assert proc.poll() is not None
    assert list(reader) == []


def test_fps_kept_from_float_and_string(tmp_path):
    for i, fps in enumerate([30000 / 1001, "30000/1001", 12.5]):
        path = tmp_path / f"f{i}.mp4"
        with VideoWriter(path, fps) as writer:
            writer.write(noise_frames(5))
        assert probe_video(path).fps_fraction == ("25/2" if fps == 12.5 else "30000/1001")
    for bad in (0, -5, "abc", "1/0"):
        with pytest.raises(PixforgeError, match="fps"):
            VideoWriter(tmp_path / "x.mp4", bad)


def test_shorter_audio_does_not_cut_video(tmp_path):
    src = lavfi(tmp_path / "src.mp4", seconds=1)
    with VideoWriter(tmp_path / "long.mkv", 25, audio_from=src) as writer:
        writer.write(noise_frames(75))
    info = probe_video(tmp_path / "long.mkv")
    assert info.frame_count == 75 and info.has_audio


def decoded_durations(path):
    """(video, audio) durations in seconds of what a player gets: the decoded frames and samples (framecrc)."""
    out = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:v:0", "-map", "0:a:0", "-c:v",
                          "rawvideo", "-c:a", "pcm_s16le", "-f", "framecrc", "-"], capture_output=True, text=True,
                         check=True).stdout
    tbs = {int(i): Fraction(int(num), int(den)) for i, num, den in re.findall(r"^#tb (\d+): (\d+)/(\d+)", out, re.M)}
    rows = [[int(x) for x in line.split(",")[:4]] for line in out.splitlines() if line and not line.startswith("#")]
    return tuple(float(sum(r[3] for r in rows if r[0] == i) * tbs[i]) for i in (0, 1))


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_audio_is_cut_or_padded_to_the_video_exactly_and_reproducibly(tmp_path, suffix):
    """The audio ends with the video (within one AAC frame) on every run, and equal inputs give equal bytes.

    A single pass with `-af apad -shortest` made about one file in five 0.1-0.4 s too long (its cut depends on
    how ffmpeg happened to interleave the pipe), so this runs the mux 10 times over several rates and lengths.
    """
    src = lavfi(tmp_path / "src.mp4", seconds=2)
    frames = noise_frames(75)
    cases = [("25", 30), ("30000/1001", 37), ("24", 29), ("25", 75), ("12.5", 11)]  # cut, cut, cut, padded, cut
    for run in range(2):
        for i, (fps, n) in enumerate(cases):
            path = tmp_path / f"run{run}" / f"out{i}{suffix}"
            with VideoWriter(path, fps, audio_from=src) as writer:
                writer.write(frames[:n])
            video, audio = decoded_durations(path)
            assert video == pytest.approx(n / float(Fraction(fps)), abs=1e-6)
            assert audio == pytest.approx(video, abs=1024 / 44100), (fps, n, run)
            if run:
                assert path.read_bytes() == (tmp_path / "run0" / path.name).read_bytes(), (fps, n)
    for run in range(2):  # nothing but the outputs: the video-only first pass is gone
        assert sorted(p.name for p in (tmp_path / f"run{run}").iterdir()) == [f"out{i}{suffix}" for i in range(5)]


def test_audio_mux_failure_names_the_cause_and_leaves_nothing(tmp_path):
    src = lavfi(tmp_path / "src.mp4", seconds=1)
    out = tmp_path / "out"
    with pytest.raises(PixforgeError, match=r"out\.mp4: ffmpeg could not add the audio of .*src\.mp4.*nope"):
        with VideoWriter(out / "out.mp4", 25, audio_from=src, audio_codec="nope") as writer:
            writer.write(noise_frames(10))
    assert list(out.iterdir()) == []
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(out / "out.mp4", 25, audio_from=src) as writer:
            writer.write(noise_frames(10))
            raise RuntimeError("boom")
    assert list(out.iterdir()) == []


def test_audio_mux_with_extra_args_and_copied_audio(tmp_path):
    src = lavfi(tmp_path / "src.mp4", seconds=2)
    frames = noise_frames(10)
    # a video filter acts in the encoding pass only (stream copy refuses filters); audio options in the mux pass
    with VideoWriter(tmp_path / "flip.mkv", 25, codec="ffv1", crf=None, pix_fmt="bgr0", audio_from=src,
                     extra_args=["-vf", "hflip", "-ac", "1"]) as writer:
        writer.write(frames)
    with VideoReader(tmp_path / "flip.mkv") as reader:
        np.testing.assert_array_equal(next(reader), frames[:, :, ::-1])
    _, err, _ = _run_ffmpeg(tmp_path / "flip.mkv", [])
    assert re.search(r"Audio: aac.*, mono,", err)
    assert decoded_durations(tmp_path / "flip.mkv")[1] == pytest.approx(0.4, abs=1024 / 44100)
    with VideoWriter(tmp_path / "copy.mp4", 25, audio_from=src, audio_codec="copy") as writer:  # kept whole
        writer.write(frames)
    assert decoded_durations(tmp_path / "copy.mp4") == pytest.approx((0.4, 2.0), abs=1024 / 44100)


def test_mux_pass_drops_only_video_filters():
    args = ["-vf", "hflip", "-filter:v:0", "x", "-filter_complex", "y", "-filter", "volume=2", "-b:a", "64k",
            "-movflags", "+faststart", "-af", "volume=3"]
    assert _mux_extra_args(args) == ["-filter:a", "volume=2", "-b:a", "64k", "-movflags", "+faststart",
                                     "-af", "volume=3"]


def test_audio_from_silent_source_is_skipped(tmp_path):
    src = lavfi(tmp_path / "silent.mp4", audio=False)
    with VideoWriter(tmp_path / "out.mp4", 25, audio_from=src) as writer:
        writer.write(noise_frames(3))
    assert not probe_video(tmp_path / "out.mp4").has_audio


def test_exception_inside_writer_leaves_nothing(tmp_path):
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(target, 25) as writer:
            writer.write(noise_frames(10))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_ffmpeg_failure_names_the_cause_and_leaves_nothing(tmp_path):
    with pytest.raises(PixforgeError, match=r"out\.mp4.*Unknown encoder 'nope'"):
        with VideoWriter(tmp_path / "out.mp4", 25, codec="nope") as writer:
            for _ in range(20):
                writer.write(noise_frames(8))
    assert list(tmp_path.iterdir()) == []


def test_odd_size_needs_even_for_yuv420p(tmp_path):
    with pytest.raises(PixforgeError, match="even width and height"):
        with VideoWriter(tmp_path / "odd.mp4", 25) as writer:
            writer.write(noise_frames(2, 49, 65))
    assert list(tmp_path.iterdir()) == []
    with VideoWriter(tmp_path / "odd.mp4", 25, pix_fmt="yuv444p") as writer:
        writer.write(noise_frames(2, 49, 65))
    assert (probe_video(tmp_path / "odd.mp4").width, probe_video(tmp_path / "odd.mp4").height) == (65, 49)


def test_writer_misuse(tmp_path):
    with pytest.raises(PixforgeError, match="unsupported video format"):
        VideoWriter(tmp_path / "x.png", 25)
    with pytest.raises(PixforgeError, match="no frames"):
        with VideoWriter(tmp_path / "empty.mp4", 25):
            pass
    with pytest.raises(ValueError, match="frame size changed"):
        with VideoWriter(tmp_path / "x.mp4", 25) as writer:
            writer.write(noise_frames(1))
            writer.write(noise_frames(1, 24, 32))
    with pytest.raises(ValueError, match="uint8"):
        with VideoWriter(tmp_path / "x.mp4", 25) as writer:
            writer.write(np.zeros((2, 48, 64, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_name_the_path(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    text = tmp_path / "notes.mkv"
    text.write_text("not a video\n")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(lavfi(tmp_path / "full.mp4").read_bytes()[:3000])  # mp4 index (moov) is at the end
    image = write_image(tmp_path / "still.png", noise_frames(1)[0])
    audio = tmp_path / "tone.wav"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine", "-t", "1", str(audio)], check=True)
    cases = {tmp_path / "missing.mp4": "does not exist", garbage: "not a readable video",
             text: "not a readable video", truncated: "not a readable video", image: "still image, not a video",
             audio: "no video stream"}
    for path, reason in cases.items():
        for fn in (probe_video, VideoReader):
            with pytest.raises(PixforgeError, match=reason) as err:
                fn(path)
            assert str(path) in str(err.value)


def test_decode_error_mid_stream_names_the_file(tmp_path):
    path = lavfi(tmp_path / "crc.mkv", audio=False, codec_args=("-c:v", "ffv1", "-level", "3", "-slicecrc", "1"))
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 2000] = bytes(b ^ 0x5A for b in data[mid:mid + 2000])
    path.write_bytes(bytes(data))
    with pytest.raises(PixforgeError, match="could not be decoded") as err:
        for _ in VideoReader(path):
            pass
    assert str(path) in str(err.value)
