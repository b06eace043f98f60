"""translate (images, folders, videos, padding to the stride) and export (ONNX parity, pixforge-run equality)."""

import numpy as np
import onnxruntime as ort
import pytest

from pixforge.core.checkpoint import save_release
from pixforge.core.io import VideoWriter, probe_video, read_image, write_image
from pixforge.export.cli import Runtime
from pixforge.export.metadata import parse_metadata
from pixforge.export.pipeline import Pipeline
from pixforge.export.session import open_session
from pixforge.export.video import VideoReader
from pixforge.tsit.export import export
from pixforge.tsit.model import load
from pixforge.tsit.translate import translate


@pytest.fixture(scope="module")
def odd_content(tmp_path_factory, folders):
    """Content images whose sizes are not multiples of the stride (8): 45x37 and 40x48."""
    root = tmp_path_factory.mktemp("odd")
    img = read_image(folders / "content" / "c0.png")
    write_image(root / "a.png", img[:45, :37])
    write_image(root / "sub" / "b.png", img[:40])
    return root


def test_translate_keeps_sizes_and_is_deterministic(tmp_path, ast_run, folders, odd_content):
    style = folders / "style" / "s0.png"
    out = translate(str(odd_content), run=str(ast_run), out=str(tmp_path / "a"), style=str(style), quiet=True,
                    device="cpu")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a.png", "sub/b.png"]
    assert read_image(tmp_path / "a" / "a.png").shape == (45, 37, 3)
    assert read_image(tmp_path / "a" / "sub" / "b.png").shape == (40, 48, 3)
    translate(str(odd_content), run=str(ast_run), out=str(tmp_path / "b"), style=str(style), batch=1, quiet=True,
              device="cpu")
    for name in ("a.png", "sub/b.png"):  # batch size does not change results
        assert np.array_equal(read_image(tmp_path / "a" / name), read_image(tmp_path / "b" / name))
    with pytest.raises(Exception, match="already exists"):
        translate(str(odd_content), run=str(ast_run), out=str(tmp_path / "a"), style=str(style), quiet=True,
                  device="cpu")


def test_padding_equals_running_the_padded_image(ast_run, folders, torch_graph):
    pipe = torch_graph(ast_run, images={"style": str(folders / "style" / "s1.png")})
    img = read_image(folders / "content" / "c1.png")[:29, :35]
    out = pipe.run([img], [5], ["img"])[0]["image"]
    padded = np.pad(img, ((0, 3), (0, 5), (0, 0)), mode="reflect")
    full = pipe.run([padded], [5], ["padded"])[0]["image"]
    assert out.shape == (29, 35, 3) and np.array_equal(out, full[:29, :35])


def test_style_folder_and_alpha(tmp_path, ast_run, folders):
    src = folders / "content" / "c2.png"
    translate(str(src), run=str(ast_run), out=str(tmp_path / "all"), style=str(folders / "style"), quiet=True,
              device="cpu")
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["s0", "s1"]
    translate(str(src), run=str(ast_run), out=str(tmp_path / "a0"), style=str(folders / "style" / "s0.png"),
              alpha=0.0, quiet=True, device="cpu")
    translate(str(src), run=str(ast_run), out=str(tmp_path / "a1"), style=str(folders / "style" / "s1.png"),
              alpha=0.0, quiet=True, device="cpu")
    assert np.array_equal(read_image(tmp_path / "a0" / "c2.png"), read_image(tmp_path / "a1" / "c2.png"))


def test_video_frames_share_one_noise_map(tmp_path, ast_run, folders):
    frame = read_image(folders / "content" / "c0.png")[:40, :48]
    video = tmp_path / "clip.mp4"
    with VideoWriter(video, 5, crf=0, pix_fmt="yuv444p") as writer:
        writer.write(np.stack([frame] * 4))
    translate(str(video), run=str(ast_run), out=str(tmp_path / "out"), style=str(folders / "style" / "s0.png"),
              batch=3, quiet=True, device="cpu")
    info = probe_video(tmp_path / "out" / "clip.mp4")
    assert (info.width, info.height, info.frame_count) == (48, 40, 4)
    with VideoReader(tmp_path / "out" / "clip.mp4", 8) as reader:
        frames = np.concatenate(list(reader)).astype(int)
    assert np.abs(frames - frames[0]).max() <= 2  # identical frames in, (codec-)identical frames out


@pytest.fixture(scope="module")
def ast_train_mode(tmp_path_factory, ast_run):
    """ast_run's generator recorded with --inference train (the official test mode of MMIS and photo2art)."""
    trained = load(ast_run)
    root = tmp_path_factory.mktemp("train-mode")
    save_release(root, trained.generator, {**trained.arch, "inference": "train"}, name="generator")
    return root


def test_train_mode_normalises_each_image_by_itself(ast_run, ast_train_mode, odd_content, folders, torch_graph):
    images = [read_image(odd_content / "sub" / "b.png"), read_image(folders / "content" / "c0.png")[:40, :48]]
    style = {"style": str(folders / "style" / "s1.png")}
    pipe = torch_graph(ast_train_mode, images=style)
    both = pipe.session.run(pipe.feeds(images, [3, 7]))["image"]
    alone = pipe.session.run(pipe.feeds(images[1:], [7]))["image"][0]
    np.testing.assert_allclose(alone, both[1], atol=1e-5, rtol=1e-4)
    eval_mode = torch_graph(ast_run, images=style)
    assert np.abs(eval_mode.session.run(eval_mode.feeds(images, [3, 7]))["image"] - both).max() > 1e-3


def test_export_parity_and_pixforge_run_equals_translate(tmp_path, ast_train_mode, folders, odd_content, capsys,
                                                         torch_graph):
    """On a model in the official train mode (per-image statistics: InstanceNormalization in the graph); eval-mode
    exports: test_sis."""
    model = export(ast_train_mode, tmp_path / "tsit.onnx")
    said = capsys.readouterr().err  # the two long steps announce themselves
    assert f"pixforge-tsit: exporting {ast_train_mode} to {model}" in said and f"checking {model} against" in said
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    meta = parse_metadata(session.get_modelmeta().custom_metadata_map, str(model))
    assert [s.name for s in meta.inputs] == ["content", "style", "noise", "alpha"]
    assert meta.inputs[0].multiple == 8 and meta.inputs[2].shape == ["N", 3, "H/8", "W/8"]
    assert meta.package == "pixforge-tsit" and meta.extra["arch"]["tool"] == "pixforge-tsit"
    style = folders / "style" / "s1.png"
    # float outputs: the runtime's feeds through onnxruntime vs through translate's graph in PyTorch, on a non-square
    # batch of two pictures (batch statistics would mix them)
    images = [read_image(odd_content / "sub" / "b.png"), read_image(folders / "content" / "c0.png")[:40, :48]]
    pipe = Pipeline(open_session(str(model), "cpu"), images={"style": str(style)})
    got = pipe.session.run(pipe.feeds(images, [3, 7]))["image"]
    torch_pipe = torch_graph(ast_train_mode, images={"style": str(style)})
    expected = torch_pipe.session.run(torch_pipe.feeds(images, [3, 7]))["image"]
    assert got.shape == (2, 3, 40, 48) and np.abs(got - expected).max() < 1e-3
    # pictures: pixforge-run vs pixforge-tsit translate, every item, within one grey level (rounding)
    Runtime().run(str(model), str(odd_content), out=str(tmp_path / "rt"), input=f"style={style}", device="cpu")
    translate(str(odd_content), run=str(ast_train_mode), out=str(tmp_path / "tr"), style=str(style), quiet=True,
              device="cpu")
    for name in ("a.png", "sub/b.png"):
        a, b = read_image(tmp_path / "rt" / name).astype(int), read_image(tmp_path / "tr" / name).astype(int)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1


def test_shard_and_several_styles_inside_the_input_folder(tmp_path, ast_run, folders, odd_content):
    out = translate(str(odd_content), run=str(ast_run), out=str(tmp_path / "s"), style=str(folders / "style" /
                                                                                          "s0.png"),
                    shard="2/2", quiet=True, device="cpu")
    assert [p.relative_to(out).as_posix() for p in out.rglob("*.png")] == ["sub/b.png"]  # the second of two parts
    before = (out / "sub" / "b.png").stat().st_mtime_ns
    translate(str(odd_content), run=str(ast_run), out=str(out), style=str(folders / "style" / "s0.png"),
              skip_existing=True, quiet=True, device="cpu")  # writes the first part, keeps the second
    assert (out / "a.png").is_file() and (out / "sub" / "b.png").stat().st_mtime_ns == before
    work = tmp_path / "work"
    write_image(work / "x.png", read_image(folders / "content" / "c0.png"))
    options = dict(run=str(ast_run), out=str(work / "out"), style=str(folders / "style"), quiet=True, device="cpu")
    translate(str(work), **options)
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*.png")) == ["out/s0/x.png", "out/s1/x.png",
                                                                                  "x.png"]
    translate(str(work), overwrite=True, **options)  # earlier results of every style (all under --out) are no inputs
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*.png")) == ["out/s0/x.png", "out/s1/x.png",
                                                                                  "x.png"]
