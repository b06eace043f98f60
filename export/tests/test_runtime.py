"""pixforge-export's runtime (session, pipeline, `pixforge-run`) on tiny ONNX models built with onnx.helper.

No torch anywhere: these run in a venv that has only pixforge-export installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from pixforge.export import session as session_mod
from pixforge.export.errors import PixforgeError
from pixforge.export.metadata import TensorSpec, build_metadata
from pixforge.export.pipeline import Pipeline, from_network, to_network
from pixforge.export.session import open_session
from pixforge.export.video import VideoReader, ffmpeg_exe, probe_video

FLOAT = TensorProto.FLOAT
RNG = np.random.default_rng(1234)
CONV_W = RNG.normal(0, 0.3, (3, 3, 3, 3)).astype(np.float32)
CONV_B = RNG.normal(0, 0.1, 3).astype(np.float32)
needs_ort_cuda = pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                                    reason="needs onnxruntime-gpu and a GPU")


# -- tiny models -------------------------------------------------------------------------------------------


def _save(path: Path, nodes, inputs, outputs, initializers=(), specs=None, opset=17) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="pixforge-tests")
    if specs is not None:
        helper.set_model_props(model, build_metadata("pixforge-tests", "0.0.1", "image-to-image", *specs))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def conv_model(path: Path, *, meta: bool = True, multiple: int = 1, size=None, hw=("H", "W")) -> Path:
    """3x3 conv (zero padding 1) + tanh: [0, 1] RGB in, [-1, 1] RGB out, dynamic N (and H, W unless fixed)."""
    x = helper.make_tensor_value_info("image", FLOAT, ["N", 3, *hw])
    y = helper.make_tensor_value_info("out", FLOAT, ["N", 3, *hw])
    nodes = [helper.make_node("Conv", ["image", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Tanh", ["c"], ["out"])]
    inits = [numpy_helper.from_array(CONV_W, "w"), numpy_helper.from_array(CONV_B, "b")]
    specs = ([TensorSpec("image", multiple=multiple, size=size)], [TensorSpec("out", range=(-1.0, 1.0))])
    return _save(path, nodes, [x], [y], inits, specs if meta else None)


def conv_reference(pixels: np.ndarray) -> np.ndarray:
    """What conv_model writes for a uint8 H x W x 3 image, in numpy."""
    x = np.pad(pixels.astype(np.float64).transpose(2, 0, 1) / 255.0, ((0, 0), (1, 1), (1, 1)))
    h, w = pixels.shape[:2]
    y = np.zeros((3, h, w)) + CONV_B[:, None, None]
    for i in range(3):
        for j in range(3):
            y += np.einsum("oc,chw->ohw", CONV_W[:, :, i, j], x[:, i:i + h, j:j + w])
    return np.clip(np.rint((np.tanh(y) + 1) * 127.5), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def noisy_model(path: Path) -> Path:
    """out = image + strength * 0.1 * upsample2x(noise), noise ["N", 1, "H/2", "W/2"], image multiple of 2."""
    x = helper.make_tensor_value_info("image", FLOAT, ["N", 3, "H", "W"])
    z = helper.make_tensor_value_info("noise", FLOAT, ["N", 1, "h", "w"])
    s = helper.make_tensor_value_info("strength", FLOAT, [1])
    y = helper.make_tensor_value_info("out", FLOAT, ["N", 3, "H", "W"])
    nodes = [helper.make_node("Resize", ["noise", "", "scales"], ["up"], mode="nearest"),
             helper.make_node("Mul", ["up", "strength"], ["su"]),
             helper.make_node("Mul", ["su", "tenth"], ["st"]),
             helper.make_node("Add", ["image", "st"], ["out"])]
    inits = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             numpy_helper.from_array(np.array(0.1, np.float32), "tenth")]
    specs = ([TensorSpec("image", multiple=2), TensorSpec("noise", kind="noise", shape=["N", 1, "H/2", "W/2"]),
              TensorSpec("strength", kind="scalar", default=1.0)], [TensorSpec("out")])
    return _save(path, nodes, [x, z, s], [y], inits, specs)


def classifier_model(path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """Global average pool -> linear: 4 logits (a tensor output); ImageNet-style mean/std on the input."""
    w = RNG.normal(0, 1, (3, 4)).astype(np.float32)
    b = RNG.normal(0, 1, 4).astype(np.float32)
    x = helper.make_tensor_value_info("image", FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("logits", FLOAT, ["N", 4])
    nodes = [helper.make_node("GlobalAveragePool", ["image"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "w", "b"], ["logits"])]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    specs = ([TensorSpec("image", mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3])], [TensorSpec("logits", kind="tensor")])
    return _save(path, nodes, [x], [y], inits, specs), w, b


def unary_model(path: Path, op_nodes, *, channels: int = 3, in_spec=None, out_spec=None, shape=None) -> Path:
    """A one-input, one-output image model made of `op_nodes` (from "image" to "out")."""
    shape = shape or ["N", channels, "H", "W"]
    x = helper.make_tensor_value_info("image", FLOAT, shape)
    y = helper.make_tensor_value_info("out", FLOAT, shape)
    specs = ([in_spec or TensorSpec("image", channels=channels)], [out_spec or TensorSpec("out", channels=channels)])
    return _save(path, op_nodes, [x], [y], [], specs)


def nan_model(path: Path) -> Path:
    return unary_model(path, [helper.make_node("Sqrt", ["image"], ["r"]),
                              helper.make_node("Neg", ["r"], ["n"]),
                              helper.make_node("Sqrt", ["n"], ["out"])])  # sqrt(-sqrt(x)) is NaN where x > 0


def upscale_model(path: Path) -> Path:
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    x = helper.make_tensor_value_info("image", FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("out", FLOAT, ["N", 3, "H2", "W2"])
    return _save(path, [helper.make_node("Resize", ["image", "", "scales"], ["out"], mode="nearest")], [x], [y],
                 [scales], ([TensorSpec("image", multiple=4)], [TensorSpec("out")]))


def write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def random_image(h: int, w: int, channels: int = 3) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, channels), dtype=np.uint8).squeeze()


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def cli(*args, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pixforge.export.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


# -- pipeline and session, in process ----------------------------------------------------------------------


@pytest.mark.parametrize("spec", [
    TensorSpec("x"),
    TensorSpec("x", layout="NHWC", color="BGR", range=(-1.0, 1.0)),
    TensorSpec("x", mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    TensorSpec("x", channels=1, color="GRAY", range=(0.0, 255.0)),
])
def test_to_from_network_round_trip(spec):
    pixels = RNG.integers(0, 256, (2, 5, 7, 1 if spec.color == "GRAY" else 3), dtype=np.uint8)
    x = to_network(pixels, spec)
    assert x.dtype == np.float32
    assert x.shape == ((2, pixels.shape[3], 5, 7) if spec.layout == "NCHW" else pixels.shape)
    np.testing.assert_array_equal(from_network(x, spec), pixels)


def test_to_network_applies_range_mean_std_and_bgr():
    spec = TensorSpec("x", color="BGR", range=(-1.0, 1.0), mean=[0.0, 0.5, 1.0], std=[1.0, 2.0, 4.0])
    x = to_network(np.array([[[[255, 0, 51]]]], np.uint8), spec)  # one RGB pixel
    # BGR order: (51, 0, 255) -> range [-1, 1] -> (x - mean) / std
    expected = (np.array([51, 0, 255]) / 127.5 - 1 - np.array([0.0, 0.5, 1.0])) / np.array([1.0, 2.0, 4.0])
    np.testing.assert_allclose(x[0, :, 0, 0], expected, rtol=1e-6)


def test_session_reads_metadata_and_runs_on_cpu(tmp_path):
    session = open_session(conv_model(tmp_path / "m.onnx"), "cpu")
    assert session.provider == "CPUExecutionProvider"
    assert session.meta.task == "image-to-image" and session.meta.input("image").multiple == 1
    assert session.inputs["image"].shape == ["N", 3, "H", "W"]
    pixels = random_image(6, 5)
    out = session.run({"image": to_network(pixels[None], session.meta.input("image"))})["out"]
    np.testing.assert_allclose(from_network(out, session.meta.output("out"))[0], conv_reference(pixels), atol=1)


def test_iobinding_path_matches_plain_run(tmp_path):
    """The binding code used on CUDA, exercised on the CPU device."""
    session = open_session(conv_model(tmp_path / "m.onnx"), "cpu")
    feeds = {"image": RNG.random((2, 3, 8, 6), dtype=np.float32)}
    np.testing.assert_array_equal(session._run_bound(feeds, "cpu")[0], session.run(feeds)["out"])


def float16_model(path: Path) -> Path:
    """float16 in and out (cast to float32 inside, so that the CPU provider has kernels for it)."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT16, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT16, ["N", 3, "H", "W"])
    nodes = [helper.make_node("Cast", ["image"], ["f"], to=FLOAT), helper.make_node("Tanh", ["f"], ["t"]),
             helper.make_node("Cast", ["t"], ["out"], to=TensorProto.FLOAT16)]
    return _save(path, nodes, [x], [y], [], ([TensorSpec("image")], [TensorSpec("out")]))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_ort_cuda)])
def test_float16_model_takes_and_returns_float32(tmp_path, device):
    session = open_session(float16_model(tmp_path / "h.onnx"), device)
    feeds = {"image": RNG.random((1, 3, 4, 4), dtype=np.float32)}
    out = session.run(feeds)["out"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.tanh(feeds["image"]), atol=2e-3)


@needs_ort_cuda
def test_cuda_session_runs_on_the_gpu_and_matches_cpu(tmp_path):
    model = conv_model(tmp_path / "m.onnx")
    gpu, cpu = open_session(model, "cuda"), open_session(model, "cpu")
    assert gpu.provider == "CUDAExecutionProvider" and gpu.device_type == "cuda"
    feeds = {"image": RNG.random((3, 3, 17, 11), dtype=np.float32)}
    np.testing.assert_allclose(gpu.run(feeds)["out"], cpu.run(feeds)["out"], atol=1e-4)


def test_cuda_absent_is_an_error(tmp_path):
    model = conv_model(tmp_path / "m.onnx")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(PixforgeError, match=r"CUDA was requested.*onnxruntime-gpu\[cuda,cudnn\]"):
        open_session(model, "cuda")


def test_silent_cpu_fallback_is_caught(tmp_path, monkeypatch, capsys):
    """onnxruntime-gpu whose CUDA libraries cannot load lists CUDA as available, then runs on the CPU."""
    model = conv_model(tmp_path / "m.onnx")
    monkeypatch.setattr(session_mod.ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(session_mod.ort, "preload_dlls", lambda: None, raising=False)
    with pytest.warns(UserWarning), pytest.raises(PixforgeError, match="fell back to CPUExecutionProvider"):
        open_session(model, "cuda:0")
    with pytest.warns(UserWarning):
        assert open_session(model, "auto").provider == "CPUExecutionProvider"
    assert "the CUDA provider failed to load" in capsys.readouterr().err


def test_auto_without_cuda_says_so(tmp_path, capsys):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    open_session(conv_model(tmp_path / "m.onnx"), "auto")
    assert capsys.readouterr().err.strip() == \
        "pixforge-run: running on CPUExecutionProvider (no CUDA provider available)"


def test_double_install_is_detected(monkeypatch):
    monkeypatch.setattr(session_mod, "distribution", lambda name: object())
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in session_mod.double_install_warning()

    def only_cpu(name):
        if name == "onnxruntime-gpu":
            raise session_mod.PackageNotFoundError(name)

    monkeypatch.setattr(session_mod, "distribution", only_cpu)
    assert session_mod.double_install_warning() is None


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu:0"])
def test_unknown_device(tmp_path, device):
    with pytest.raises(PixforgeError, match="unknown device"):
        open_session(conv_model(tmp_path / "m.onnx"), device)


def test_metadata_must_match_the_graph(tmp_path):
    x = helper.make_tensor_value_info("image", FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("out", FLOAT, ["N", 3, "H", "W"])
    path = _save(tmp_path / "m.onnx", [helper.make_node("Identity", ["image"], ["out"])], [x], [y], [],
                 ([TensorSpec("input")], [TensorSpec("out")]))
    with pytest.raises(PixforgeError, match=r"lists inputs \['input'\] but the graph has \['image'\]"):
        open_session(path, "cpu")
    path = _save(tmp_path / "c.onnx", [helper.make_node("Identity", ["image"], ["out"])], [x], [y], [],
                 ([TensorSpec("image", channels=1, color="GRAY")], [TensorSpec("out")]))
    with pytest.raises(PixforgeError, match="has 1 channels but the graph takes 3"):
        open_session(path, "cpu")


def test_noise_depends_on_seed_and_index_only(tmp_path):
    session = open_session(noisy_model(tmp_path / "n.onnx"), "cpu")
    images = [random_image(6, 8) for _ in range(3)]
    one_by_one = [Pipeline(session).feeds([img], [i])["noise"][0] for i, img in enumerate(images)]
    batched = Pipeline(session).feeds(images, [0, 1, 2])["noise"]
    assert batched.shape == (3, 1, 3, 4)
    np.testing.assert_array_equal(np.stack(one_by_one), batched)
    assert not np.array_equal(batched[0], batched[1])
    assert not np.array_equal(Pipeline(session, seed=1).feeds(images, [0, 1, 2])["noise"], batched)
    assert Pipeline(session).feeds(images, [0, 1, 2])["strength"].tolist() == [1.0]
    assert Pipeline(session, scalars={"strength": 0.25}).feeds(images, [0])["strength"].tolist() == [0.25]
    with pytest.raises(PixforgeError, match="no scalar input 'gain'"):
        Pipeline(session, scalars={"gain": 2})


# -- pixforge-run run --------------------------------------------------------------------------------------


def test_run_matches_numpy_reference(tmp_path):
    model = conv_model(tmp_path / "m.onnx")
    a, b, c = random_image(12, 9), random_image(12, 9), random_image(7, 10)
    write_png(tmp_path / "in" / "a.png", a)
    write_png(tmp_path / "in" / "sub" / "b.png", b)
    write_png(tmp_path / "c.png", c)
    proc = cli("run", model, tmp_path / "in", tmp_path / "c.png", "--out", tmp_path / "out", "--device", "cpu",
               "--batch", 2)
    assert "wrote 3 file(s)" in proc.stdout
    for name, pixels in (("a.png", a), ("sub/b.png", b), ("c.png", c)):
        got = read_png(tmp_path / "out" / name)
        assert np.abs(got.astype(int) - conv_reference(pixels)).max() <= 1, name


def test_run_refuses_to_overwrite(tmp_path):
    model = conv_model(tmp_path / "m.onnx")
    write_png(tmp_path / "in" / "a.png", random_image(4, 4))
    write_png(tmp_path / "in" / "b.png", random_image(4, 4))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "b.png").write_bytes(b"keep me")
    proc = cli("run", model, tmp_path / "in", "--out", tmp_path / "out", "--device", "cpu", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"pixforge-run: error: {tmp_path / 'out' / 'b.png'} already exists: pass "
                                   "--overwrite to replace it (or --skip-existing to keep it)")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.png"]
    cli("run", model, tmp_path / "in", "--out", tmp_path / "out", "--device", "cpu", "--skip_existing")
    assert (tmp_path / "out" / "b.png").read_bytes() == b"keep me" and (tmp_path / "out" / "a.png").is_file()
    cli("run", model, tmp_path / "in", "--out", tmp_path / "out", "--device", "cpu", "--overwrite")
    assert read_png(tmp_path / "out" / "b.png").shape == (4, 4, 3)


def test_results_inside_an_input_folder_are_not_inputs(tmp_path):
    model = conv_model(tmp_path / "m.onnx")
    write_png(tmp_path / "in" / "a.png", random_image(4, 4))
    for _ in range(2):
        cli("run", model, tmp_path / "in", "--out", tmp_path / "in" / "res", "--device", "cpu", "--overwrite")
    assert sorted(p.relative_to(tmp_path / "in").as_posix() for p in (tmp_path / "in").rglob("*.png")) == \
        ["a.png", "res/a.png"]


def test_an_out_that_is_the_input_folder_is_named_as_such(tmp_path):
    model = conv_model(tmp_path / "m.onnx")
    write_png(tmp_path / "in" / "a.png", random_image(4, 4))
    proc = cli("run", model, tmp_path / "in", "--out", tmp_path / "in", "--device", "cpu", check=False)
    assert proc.returncode == 2 and f"--out {tmp_path / 'in'} is the input folder" in proc.stderr


def test_never_writes_over_an_input(tmp_path):
    model = conv_model(tmp_path / "m.onnx")
    original = write_png(tmp_path / "d" / "x.png", random_image(4, 4)).read_bytes()
    proc = cli("run", model, tmp_path / "d" / "x.png", "--out", tmp_path / "d", "--overwrite", "--device", "cpu",
               check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"pixforge-run: error: {tmp_path / 'd' / 'x.png'} is an input: choose an --out that does not write over "
        "the inputs")
    assert (tmp_path / "d" / "x.png").read_bytes() == original


@pytest.mark.parametrize(("args", "message"), [
    (["--out", "FILE"], "--out {FILE} exists and is not a folder"),
    (["--devcie", "cuda", "--out", "OUT"], "unknown option --devcie for run (did you mean --device?)"),
    (["--overwirte", "--out", "OUT"], "unknown option --overwirte for run (did you mean --overwrite?)"),
    (["--threads", "-2", "--out", "OUT"], "--threads takes integers >= 1, got -2"),
    (["--set", "strength=nan", "--out", "OUT"], "--set strength=nan: not a finite number"),
])
def test_bad_run_options_fail_before_any_work(tmp_path, args, message):
    model = conv_model(tmp_path / "m.onnx")
    write_png(tmp_path / "a.png", random_image(6, 6))
    (tmp_path / "file").write_text("x")
    names = {"FILE": str(tmp_path / "file"), "OUT": str(tmp_path / "out")}
    proc = cli("run", model, tmp_path / "a.png", *[names.get(a, a) for a in args], check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "pixforge-run: error: " + message.format(**names) + (
        " (see run --help)" if "unknown" in message else "")
    assert not (tmp_path / "out").exists()


def test_an_image_smaller_than_the_network_stride_is_refused(tmp_path):
    model = conv_model(tmp_path / "m.onnx", multiple=8)
    write_png(tmp_path / "tiny.png", np.full((1, 1, 3), 7, np.uint8))
    proc = cli("run", model, tmp_path / "tiny.png", "--out", tmp_path / "out", "--device", "cpu", check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"pixforge-run: error: {tmp_path / 'tiny.png'} is 1x1: too small for {model}, whose deepest feature map "
        "(stride 8) needs 2 cells or more; give an image at least 8x16 pixels")
    write_png(tmp_path / "ok.png", random_image(9, 3))
    cli("run", model, tmp_path / "ok.png", "--out", tmp_path / "out", "--device", "cpu")


def test_noise_outputs_do_not_depend_on_batching(tmp_path):
    model = noisy_model(tmp_path / "n.onnx")
    for i in range(3):
        write_png(tmp_path / "in" / f"{i}.png", random_image(7, 9))
    for batch in (1, 3):
        cli("run", model, tmp_path / "in", "--out", tmp_path / f"b{batch}", "--batch", batch, "--device", "cpu")
    cli("run", model, tmp_path / "in", "--out", tmp_path / "s1", "--seed", 1, "--device", "cpu")
    cli("run", model, tmp_path / "in", "--out", tmp_path / "off", "--set", "strength=0", "--device", "cpu")
    for i in range(3):
        b1, b3 = read_png(tmp_path / "b1" / f"{i}.png"), read_png(tmp_path / "b3" / f"{i}.png")
        assert b1.shape == (7, 9, 3)  # padded to 8 x 10 for the model, cropped back
        np.testing.assert_array_equal(b1, b3)
        assert not np.array_equal(b1, read_png(tmp_path / "s1" / f"{i}.png"))
        np.testing.assert_array_equal(read_png(tmp_path / "off" / f"{i}.png"), read_png(tmp_path / "in" / f"{i}.png"))


def test_multiple_pads_and_crops_back_at_output_scale(tmp_path):
    conv = conv_model(tmp_path / "m.onnx", multiple=8)
    pixels = random_image(13, 10)
    write_png(tmp_path / "x.png", pixels)
    cli("run", conv, tmp_path / "x.png", "--out", tmp_path / "out", "--device", "cpu")
    padded = np.pad(pixels, ((0, 3), (0, 6), (0, 0)), mode="reflect")
    got = read_png(tmp_path / "out" / "x.png")
    assert got.shape == (13, 10, 3)
    assert np.abs(got.astype(int) - conv_reference(padded)[:13, :10]).max() <= 1
    cli("run", upscale_model(tmp_path / "up.onnx"), tmp_path / "x.png", "--out", tmp_path / "up", "--device", "cpu")
    np.testing.assert_array_equal(read_png(tmp_path / "up" / "x.png"), pixels.repeat(2, 0).repeat(2, 1))


def test_fixed_size_resizes_and_restores(tmp_path):
    model = unary_model(tmp_path / "f.onnx", [helper.make_node("Identity", ["image"], ["out"])],
                        shape=["N", 3, 16, 16], in_spec=TensorSpec("image", size=(16, 16)))
    pixels = np.full((30, 20, 3), 77, np.uint8)
    pixels[:, :, 1] = 200
    write_png(tmp_path / "x.png", pixels)
    write_png(tmp_path / "y.png", random_image(9, 40))
    cli("run", model, tmp_path / "x.png", tmp_path / "y.png", "--out", tmp_path / "out", "--device", "cpu")
    np.testing.assert_array_equal(read_png(tmp_path / "out" / "x.png"), pixels)  # flat colours survive resizing
    assert read_png(tmp_path / "out" / "y.png").shape == (9, 40, 3)


def test_fixed_graph_without_size_rejects_other_sizes(tmp_path):
    model = unary_model(tmp_path / "f.onnx", [helper.make_node("Identity", ["image"], ["out"])],
                        shape=["N", 3, 16, 16])
    write_png(tmp_path / "x.png", random_image(8, 8))
    proc = cli("run", model, tmp_path / "x.png", "--out", tmp_path / "out", "--device", "cpu", check=False)
    assert proc.returncode == 2 and "x.png is 8x8 but" in proc.stderr and "takes 16x16 images only" in proc.stderr


def test_tensor_outputs_are_written_per_item(tmp_path):
    model, w, b = classifier_model(tmp_path / "cls.onnx")
    pixels = random_image(5, 6)
    write_png(tmp_path / "x.png", pixels)
    cli("run", model, tmp_path / "x.png", "--out", tmp_path / "out", "--device", "cpu")
    data = json.loads((tmp_path / "out" / "x.json").read_text())
    x = (pixels.reshape(-1, 3).mean(0) / 255.0 - [0.5, 0.4, 0.3]) / [0.2, 0.25, 0.3]
    assert data["shape"] == [4]
    np.testing.assert_allclose(data["values"], x @ w + b, rtol=1e-4, atol=1e-5)
    cli("run", model, tmp_path / "x.png", "--out", tmp_path / "npy", "--device", "cpu", "--tensor_format", "npy")
    np.testing.assert_allclose(np.load(tmp_path / "npy" / "x.npy"), data["values"], rtol=1e-6)


def test_secondary_image_input(tmp_path):
    x = helper.make_tensor_value_info("content", FLOAT, ["N", 3, "H", "W"])
    s = helper.make_tensor_value_info("style", FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("out", FLOAT, ["N", 3, "H", "W"])
    model = _save(tmp_path / "st.onnx", [helper.make_node("Sub", ["content", "style"], ["out"])], [x, s], [y], [],
                  ([TensorSpec("content"), TensorSpec("style")], [TensorSpec("out", range=(-1.0, 1.0))]))
    content = random_image(6, 4)
    write_png(tmp_path / "c.png", content)
    write_png(tmp_path / "s.png", np.full((3, 3, 3), 255, np.uint8))  # resized to the content's 6 x 4
    proc = cli("run", model, tmp_path / "c.png", "--out", tmp_path / "out", "--device", "cpu", check=False)
    assert proc.returncode == 2 and "--input style=PATH" in proc.stderr
    cli("run", model, tmp_path / "c.png", "--out", tmp_path / "out", "--device", "cpu", "--input",
        f"style={tmp_path / 's.png'}")
    expected = np.rint((content / 255.0 - 1 + 1) * 127.5).astype(np.uint8)  # (c - s) in [-1, 1] -> pixels
    assert np.abs(read_png(tmp_path / "out" / "c.png").astype(int) - expected).max() <= 1


def test_generator_writes_count_samples(tmp_path):
    z = helper.make_tensor_value_info("z", FLOAT, ["N", 3, 4, 4])
    y = helper.make_tensor_value_info("out", FLOAT, ["N", 3, 4, 4])
    model = _save(tmp_path / "g.onnx", [helper.make_node("Tanh", ["z"], ["out"])], [z], [y], [],
                  ([TensorSpec("z", kind="noise", shape=["N", 3, 4, 4])], [TensorSpec("out", range=(-1.0, 1.0))]))
    cli("run", model, "--count", 5, "--out", tmp_path / "all", "--device", "cpu", "--batch", 2)
    for k in range(2):
        cli("run", model, "--count", 5, "--shard", f"{k + 1}/2", "--out", tmp_path / "sharded", "--device", "cpu")
    names = sorted(p.name for p in (tmp_path / "all").iterdir())
    assert names == [f"{i:06d}.png" for i in range(5)]
    for name in names:
        np.testing.assert_array_equal(read_png(tmp_path / "all" / name), read_png(tmp_path / "sharded" / name))


def sized_generator(path: Path, rule: dict | None) -> Path:
    """A two-scale generator: out = tanh(z1) + 0 * mean(z0), noise z0 N x 1 x 3 x 4, z1 N x 3 x 6 x 8 (export-time
    size 6x8, dynamic in the graph), with the size rule `rule` (None: a model exported before size rules)."""
    z0 = helper.make_tensor_value_info("z0", FLOAT, ["N", 1, "h0", "w0"])
    z1 = helper.make_tensor_value_info("z1", FLOAT, ["N", 3, "h1", "w1"])
    y = helper.make_tensor_value_info("out", FLOAT, ["N", 3, "h1", "w1"])
    nodes = [helper.make_node("ReduceMean", ["z0"], ["m"], axes=[1, 2, 3]),
             helper.make_node("Mul", ["m", "zero"], ["m0"]), helper.make_node("Tanh", ["z1"], ["t"]),
             helper.make_node("Add", ["t", "m0"], ["out"])]
    specs = [TensorSpec("z0", kind="noise", shape=["N", 1, 3, 4]), TensorSpec("z1", kind="noise", shape=["N", 3, 6, 8])]
    graph = helper.make_graph(nodes, "g", [z0, z1], [y], [numpy_helper.from_array(np.zeros((), np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    extra = {"size": [6, 8]} | ({"size_rule": rule} if rule else {})
    helper.set_model_props(model, build_metadata("pixforge-tests", "0.0.1", "generate", specs,
                                                 [TensorSpec("out", range=(-1.0, 1.0))], extra))
    onnx.save(model, str(path))
    return path


PYRAMID = {"rule": "pyramid", "sizes": [[3, 4], [6, 8]], "rounding": "half-even", "min": [4, 4], "default": [6, 8]}


def test_generator_size_follows_the_rule(tmp_path):
    from pixforge.export.sizing import pyramid_sizes

    model = sized_generator(tmp_path / "g.onnx", PYRAMID)
    cli("run", model, "--count", 2, "--size", "9x20", "--out", tmp_path / "big", "--device", "cpu")
    assert [read_png(p).shape for p in sorted((tmp_path / "big").iterdir())] == [(9, 20, 3)] * 2
    pipe = Pipeline(open_session(model, "cpu"), size=(9, 20))
    assert pipe.noise_shapes == {"z0": ["N", 1, 4, 10], "z1": ["N", 3, 9, 20]}  # 4.5 -> 4: half to even
    assert pyramid_sizes([(3, 4), (6, 8)], (9, 20)) == [(4, 10), (9, 20)]
    feeds = pipe.feeds(None, [0, 1])
    assert feeds["z0"].shape == (2, 1, 4, 10) and feeds["z1"].shape == (2, 3, 9, 20)
    # the default stays the export-time size, and --size at that size is the same noise
    cli("run", model, "--count", 2, "--out", tmp_path / "default", "--device", "cpu")
    cli("run", model, "--count", 2, "--size", "6x8", "--out", tmp_path / "same", "--device", "cpu")
    for name in ("000000.png", "000001.png"):
        np.testing.assert_array_equal(read_png(tmp_path / "default" / name), read_png(tmp_path / "same" / name))
        assert read_png(tmp_path / "default" / name).shape == (6, 8, 3)


def test_generator_size_errors(tmp_path):
    model = sized_generator(tmp_path / "g.onnx", PYRAMID)
    assert "--size 3x8 is below the minimum 4x4" in _bad(tmp_path, model, "--count", 2, "--size", "3x8")
    divide = sized_generator(tmp_path / "d.onnx", {"rule": "divide", "factor": 2, "min": [4, 4], "default": [6, 8]})
    assert "give multiples of 2" in _bad(tmp_path, divide, "--count", 2, "--size", "7x8")
    old = sized_generator(tmp_path / "old.onnx", None)
    assert "export-time size (6x8) only" in _bad(tmp_path, old, "--count", 2, "--size", "8x8")
    cli("run", old, "--count", 1, "--out", tmp_path / "fixed", "--device", "cpu")  # still runs at its fixed size
    assert read_png(tmp_path / "fixed" / "000000.png").shape == (6, 8, 3)
    write_png(tmp_path / "a.png", random_image(4, 4))
    assert "--size is for generators" in _bad(tmp_path, conv_model(tmp_path / "m.onnx"), tmp_path / "a.png",
                                              "--size", "8x8")
    broken = sized_generator(tmp_path / "b.onnx", {**PYRAMID, "sizes": [[6, 8]]})
    assert "malformed size rule" in _bad(tmp_path, broken, "--count", 2, "--size", "8x8")


def test_bench_size_as_run_size(tmp_path):
    """bench --size follows the model as `run --size` does (it was ignored without a word): a generator's size rule
    draws it, a generator without a rule and a model whose input size is fixed refuse it in one line."""
    model = sized_generator(tmp_path / "g.onnx", PYRAMID)
    args = ("--device", "cpu", "--batch-sizes", 1, "--iters", 1, "--warmup", 0, "--json")
    assert json.loads(cli("bench", model, *args, "--size", "9x20").stdout)["size"] == [9, 20]
    assert json.loads(cli("bench", model, *args).stdout)["size"] is None  # its export-time size
    fixed = conv_model(tmp_path / "fixed.onnx", size=(8, 8))
    assert json.loads(cli("bench", fixed, *args, "--size", 8).stdout)["size"] == [8, 8]
    for path, size, message in (
            (sized_generator(tmp_path / "old.onnx", None), "8x8", "draws samples at its export-time size (6x8) only"),
            (fixed, "16x12", f"--size 16x12: the input size of {fixed} is fixed at 8x8; drop --size"),
            (conv_model(tmp_path / "graph.onnx", hw=(8, 8)), "16", "is fixed at 8x8; drop --size")):
        proc = cli("bench", path, *args, "--size", size, check=False)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
        assert proc.stdout == ""


def test_sizes_over_the_pixel_limit(tmp_path):
    """A --size over MAX_PIXELS (4096 x 4096 in area) is one line before anything is allocated, in run and bench."""
    from pixforge.export.sizing import MAX_PIXELS, check_pixels

    model = sized_generator(tmp_path / "g.onnx", PYRAMID)
    assert "--size 100000x100000: too large, an image may have at most 16,777,216 pixels (4096x4096)" in _bad(
        tmp_path, model, "--count", 1, "--size", "100000x100000")
    proc = cli("bench", conv_model(tmp_path / "m.onnx"), "--device", "cpu", "--size", "5000", check=False)
    assert proc.returncode == 2 and "--size 5000x5000: too large" in proc.stderr and proc.stdout == ""
    assert check_pixels((4096, 4096)) == (4096, 4096) and MAX_PIXELS == 4096 * 4096
    with pytest.raises(PixforgeError, match="--size 4097x4096: too large"):
        check_pixels((4097, 4096))


def _make_video(path: Path, frames: int = 12, size: str = "32x24", rate: int = 10) -> Path:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}",
                    "-f", "lavfi", "-i", "sine=frequency=440", "-frames:v", str(frames), "-shortest",
                    "-pix_fmt", "yuv420p", "-c:v", "libx264", "-c:a", "aac", str(path)], check=True)
    return path


def test_video_in_video_out(tmp_path):
    video = _make_video(tmp_path / "clip.mp4")
    write_png(tmp_path / "still.png", random_image(5, 5))
    model = conv_model(tmp_path / "m.onnx")
    cli("run", model, video, tmp_path / "still.png", "--out", tmp_path / "out", "--device", "cpu", "--batch", 5)
    src, got = probe_video(video), probe_video(tmp_path / "out" / "clip.mp4")
    assert (got.width, got.height, got.fps_fraction, got.frame_count) == (32, 24, src.fps_fraction, 12)
    assert got.has_audio
    assert (tmp_path / "out" / "still.png").is_file()
    with VideoReader(video, 1) as reader, VideoReader(tmp_path / "out" / "clip.mp4", 1) as result:
        first, out = next(iter(reader))[0], next(iter(result))[0]
    luma = np.array([0.299, 0.587, 0.114])  # 4:2:0 chroma at 32 x 24 is coarse: compare brightness
    assert np.abs((out - conv_reference(first).astype(float)) @ luma).mean() < 4


# -- bad inputs: one line on stderr naming the file, exit code 2, nothing written ------------------------------


def _bad(tmp_path: Path, model: Path, *args) -> str:
    out = tmp_path / "out"
    proc = cli("run", model, *args, "--out", out, "--device", "cpu", check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pixforge-run: error: "), proc.stderr
    assert not out.exists() or not any(out.rglob("*"))
    return lines[0]


def test_missing_input(tmp_path):
    write_png(tmp_path / "ok.png", random_image(4, 4))
    assert f"{tmp_path / 'nope.png'} does not exist" in _bad(tmp_path, conv_model(tmp_path / "m.onnx"),
                                                               tmp_path / "ok.png", tmp_path / "nope.png")


def test_corrupt_image_among_good_ones(tmp_path):
    write_png(tmp_path / "in" / "a.png", random_image(4, 4))
    (tmp_path / "in" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert f"{tmp_path / 'in' / 'b.png'} is not a readable image" in _bad(tmp_path, conv_model(tmp_path / "m.onnx"),
                                                                          tmp_path / "in")


def test_truncated_png(tmp_path):
    write_png(tmp_path / "a.png", random_image(4, 4))
    data = write_png(tmp_path / "t.png", random_image(64, 64)).read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    assert "t.png is not a readable image" in _bad(tmp_path, conv_model(tmp_path / "m.onnx"),
                                                   tmp_path / "a.png", tmp_path / "t.png")


def test_corrupt_video(tmp_path):
    write_png(tmp_path / "a.png", random_image(4, 4))
    (tmp_path / "v.mp4").write_bytes(b"not a video at all")
    assert f"{tmp_path / 'v.mp4'} is not a readable video" in _bad(tmp_path, conv_model(tmp_path / "m.onnx"),
                                                                   tmp_path / "a.png", tmp_path / "v.mp4")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    assert f"{tmp_path / 'empty'} holds no image or video files" in _bad(tmp_path, conv_model(tmp_path / "m.onnx"),
                                                                         tmp_path / "empty")


def test_nan_output(tmp_path):
    write_png(tmp_path / "a.png", random_image(4, 4) | 1)
    line = _bad(tmp_path, nan_model(tmp_path / "nan.onnx"), tmp_path / "a.png")
    assert "nan.onnx produced NaN/inf in output 'out'" in line and str(tmp_path / "a.png") in line


def test_model_without_metadata(tmp_path):
    write_png(tmp_path / "a.png", random_image(4, 4))
    model = conv_model(tmp_path / "raw.onnx", meta=False)
    assert f"{model} has no pixforge metadata" in _bad(tmp_path, model, tmp_path / "a.png")
    proc = cli("info", model, check=False)  # device auto: no "running on the CPU" line before the error
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_corrupt_model(tmp_path):
    write_png(tmp_path / "a.png", random_image(4, 4))
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    assert f"{tmp_path / 'bad.onnx'} could not be loaded by onnxruntime" in _bad(tmp_path, tmp_path / "bad.onnx",
                                                                                 tmp_path / "a.png")


def test_wrong_channel_count(tmp_path):
    model = unary_model(tmp_path / "rgba.onnx", [helper.make_node("Identity", ["image"], ["out"])], channels=4)
    write_png(tmp_path / "rgb.png", random_image(4, 4))
    assert f"{tmp_path / 'rgb.png'} has no alpha channel" in _bad(tmp_path, model, tmp_path / "rgb.png")
    write_png(tmp_path / "rgba.png", random_image(4, 4, 4))
    cli("run", model, tmp_path / "rgba.png", "--out", tmp_path / "ok", "--device", "cpu")
    np.testing.assert_array_equal(read_png(tmp_path / "ok" / "rgba.png"), read_png(tmp_path / "rgba.png"))


def test_cuda_requested_but_absent(tmp_path):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    write_png(tmp_path / "a.png", random_image(4, 4))
    proc = cli("run", conv_model(tmp_path / "m.onnx"), tmp_path / "a.png", "--out", tmp_path / "out",
               "--device", "cuda", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "CUDA was requested" in proc.stderr and not (tmp_path / "out").exists()


# -- info, bench, no torch ---------------------------------------------------------------------------------


def test_info(tmp_path):
    model = noisy_model(tmp_path / "n.onnx")
    text = cli("info", model, "--device", "cpu").stdout
    assert "pixforge-tests 0.0.1" in text and "image-to-image" in text and "CPUExecutionProvider" in text
    assert "noise ['N', 1, 'H/2', 'W/2']" in text and "scalar default 1.0" in text and "multiple 2" in text
    data = json.loads(cli("info", model, "--device", "cpu", "--json").stdout)
    assert [t["name"] for t in data["inputs"]] == ["image", "noise", "strength"]
    assert data["inputs"][0]["shape"] == ["N", 3, "H", "W"] and data["inputs"][0]["type"] == "tensor(float)"
    assert data["providers"]["running"] == "CPUExecutionProvider" and data["package"] == "pixforge-tests"


def test_bench(tmp_path):
    model = noisy_model(tmp_path / "n.onnx")
    proc = cli("bench", model, "--device", "cpu", "--batch-sizes", "1,2", "--size", "15x9", "--iters", 3,
               "--warmup", 1, "--json")
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["batch"] for r in rows] == [1, 2] and all(r["size"] == [16, 10] for r in rows)
    assert all(r["median_ms"] > 0 and r["p90_ms"] >= r["median_ms"] and r["items_per_s"] > 0 for r in rows)
    table = cli("bench", model, "--device", "cpu", "--batch-sizes", 3, "--iters", 2).stdout.splitlines()
    assert table[0].split() == ["provider", "batch", "size", "median", "ms", "p90", "ms", "items/s"]
    assert table[1].split()[:3] == ["CPUExecutionProvider", "3", "256x256"]


@pytest.mark.parametrize(("args", "message"), [
    (["--batch-sizes", "0"], "--batch-sizes takes integers >= 1, got 0"),
    (["--batch-sizes", "1,0"], "--batch-sizes takes integers >= 1, got 0"),
    (["--iters", "0"], "--iters takes integers >= 1, got 0"),
    (["--warmup", "-1"], "--warmup takes integers >= 0, got -1"),
])
def test_bench_refuses_empty_measurements(tmp_path, args, message):
    proc = cli("bench", noisy_model(tmp_path / "n.onnx"), "--device", "cpu", *args, check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == f"pixforge-run: error: {message}" and proc.stdout == ""


def test_help_shows_docstrings():
    proc = subprocess.run([sys.executable, "-m", "pixforge.export.cli", "run", "--help"], capture_output=True,
                          text=True, timeout=60, env={"PAGER": "cat", "PATH": "/usr/bin:/bin"})
    assert "Run MODEL on image files, folders (recursive) and videos" in proc.stdout + proc.stderr


def test_no_torch_import(tmp_path):
    model = conv_model(tmp_path / "m.onnx")
    write_png(tmp_path / "a.png", random_image(6, 6))
    script = textwrap.dedent(f"""
        import importlib, pkgutil, sys

        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch must not be imported by pixforge.export")
                return None

        sys.meta_path.insert(0, NoTorch())
        import pixforge.export
        for module in pkgutil.iter_modules(pixforge.export.__path__):
            importlib.import_module("pixforge.export." + module.name)
        from pixforge.export.cli import main
        for argv in (["info", {str(model)!r}, "--device", "cpu"],
                     ["run", {str(model)!r}, {str(tmp_path / "a.png")!r}, "--out", {str(tmp_path / "out")!r},
                      "--device", "cpu"]):
            sys.argv = ["pixforge-run", *argv]
            main()
        assert "torch" not in sys.modules, "torch was imported"
        print("NO TORCH OK")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "NO TORCH OK" in proc.stdout and (tmp_path / "out" / "a.png").is_file()
