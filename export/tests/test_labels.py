"""Label-map inputs (TensorSpec kind "labels"): read as stored ids, checked, resized nearest, fed as float ids.

No torch: tiny ONNX graphs built with onnx.helper.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from pixforge.export.cli import Runtime
from pixforge.export.errors import PixforgeError
from pixforge.export.metadata import TensorSpec, build_metadata, parse_metadata
from pixforge.export.pipeline import Pipeline, label_classes, read_labels
from pixforge.export.session import open_session

FLOAT = TensorProto.FLOAT


def _model(path: Path, specs_in, specs_out, nodes, inputs, outputs) -> Path:
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, build_metadata("pixforge-tests", "0.0.1", "labels", specs_in, specs_out))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def ids_model(path: Path, num_classes=4, dontcare=None, size=None, multiple=1) -> Path:
    """out = the label ids as they were fed, written back as a grey image (range 0..255 = the ids)."""
    x = helper.make_tensor_value_info("labels", FLOAT, ["N", 1, "H", "W"])
    y = helper.make_tensor_value_info("out", FLOAT, ["N", 1, "H", "W"])
    spec = TensorSpec("labels", kind="labels", num_classes=num_classes, dontcare=dontcare, size=size,
                      multiple=multiple)
    return _model(path, [spec], [TensorSpec("out", color="GRAY", range=(0.0, 255.0))],
                  [helper.make_node("Identity", ["labels"], ["out"])], [x], [y])


def masked_model(path: Path) -> Path:
    """image (primary, RGB) + mask (secondary label map, 2 classes): out = image * mask."""
    x = helper.make_tensor_value_info("image", FLOAT, ["N", 3, "H", "W"])
    m = helper.make_tensor_value_info("mask", FLOAT, ["N", 1, "H", "W"])
    y = helper.make_tensor_value_info("out", FLOAT, ["N", 3, "H", "W"])
    specs = [TensorSpec("image"), TensorSpec("mask", kind="labels", num_classes=2)]
    return _model(path, specs, [TensorSpec("out")], [helper.make_node("Mul", ["image", "mask"], ["out"])], [x, m], [y])


def palette_png(path: Path, ids: np.ndarray) -> Path:
    """A P-mode PNG whose palette colours are not grey levels equal to the indices (converting to L breaks ids)."""
    img = Image.fromarray(ids.astype(np.uint8), mode="P")
    img.putpalette([v for k in range(256) for v in ((37 * k) % 256, (91 * k + 50) % 256, (13 * k + 200) % 256)])
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def test_labels_spec_round_trip_and_validation():
    spec = TensorSpec("seg", kind="labels", num_classes=35, dontcare=255, multiple=8, description="label map")
    meta = parse_metadata(build_metadata("p", "1", "t", [spec], [TensorSpec("out")]), "m.onnx")
    assert meta.inputs == [spec] and meta.image_inputs == [spec]
    assert (spec.channels, spec.color, spec.num_classes, spec.dontcare) == (1, "GRAY", 35, 255)
    with pytest.raises(ValueError, match="needs num_classes"):
        TensorSpec("seg", kind="labels")
    with pytest.raises(ValueError, match="one channel"):
        TensorSpec("seg", kind="labels", num_classes=3, channels=3)
    with pytest.raises(ValueError, match="dontcare"):
        TensorSpec("seg", kind="labels", num_classes=3, dontcare=-1)


def test_label_classes_follow_the_dontcare_conventions():
    ids = np.array([0, 1, 2, 3, 4, 255])
    assert label_classes(ids, 4).tolist() == [0, 1, 2, 3, -1, -1]
    assert label_classes(ids, 4, dontcare=255).tolist() == [0, 1, 2, 3, -1, 4]  # SPADE: 255 -> K
    assert label_classes(ids, 4, dontcare=0).tolist() == [4, 0, 1, 2, 3, -1]  # ADE20K: 0 -> K, ids move down


def test_palette_and_16_bit_label_maps_are_read_as_ids(tmp_path):
    ids = np.arange(12, dtype=np.uint8).reshape(3, 4) % 5
    assert np.array_equal(read_labels(palette_png(tmp_path / "p.png", ids))[..., 0], ids)
    big = (np.arange(12).reshape(3, 4) * 2500).astype(np.uint16)
    Image.fromarray(big).save(tmp_path / "i16.png")
    assert np.array_equal(read_labels(tmp_path / "i16.png")[..., 0], big)
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(PixforgeError, match=r"rgb\.png is a RGB image"):
        read_labels(tmp_path / "rgb.png")


def test_pixforge_run_feeds_stored_ids_not_grey_levels(tmp_path):
    model = ids_model(tmp_path / "m.onnx", num_classes=5, multiple=4)
    ids = np.random.default_rng(0).integers(0, 5, (6, 7)).astype(np.uint8)
    palette_png(tmp_path / "in" / "a.png", ids)
    Runtime().run(str(model), str(tmp_path / "in"), out=str(tmp_path / "out"), device="cpu")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "a.png")), ids)  # padded to 8x8, cropped back


def test_fixed_size_label_maps_are_resized_nearest(tmp_path):
    pipe = Pipeline(open_session(str(ids_model(tmp_path / "m.onnx", size=(8, 12))), "cpu"))
    ids = np.random.default_rng(1).integers(0, 4, (5, 7, 1)).astype(np.int32)
    fed = pipe.feeds([ids], [0])["labels"]
    expected = np.asarray(Image.fromarray(ids[..., 0]).resize((12, 8), Image.NEAREST))
    assert fed.shape == (1, 1, 8, 12) and fed.dtype == np.float32
    assert np.array_equal(fed[0, 0], expected) and set(np.unique(fed)) <= set(np.unique(ids))


def test_secondary_label_map_input(tmp_path):
    model = masked_model(tmp_path / "m.onnx")
    mask = np.zeros((2, 3), np.uint8)
    mask[:, 1:] = 1
    palette_png(tmp_path / "mask.png", mask)
    pipe = Pipeline(open_session(str(model), "cpu"), images={"mask": str(tmp_path / "mask.png")})
    fed = pipe.feeds([np.full((4, 6, 3), 200, np.uint8)] * 2, [0, 1])["mask"]
    assert fed.shape == (2, 1, 4, 6) and np.array_equal(fed[1, 0], np.repeat(np.repeat(mask, 2, 0), 2, 1))
    write_bad = tmp_path / "bad.png"
    Image.fromarray(np.full((2, 3), 7, np.uint8)).save(write_bad)
    with pytest.raises(PixforgeError, match=r"bad\.png holds class id 7, outside the model's 2 classes"):
        Pipeline(open_session(str(model), "cpu"), images={"mask": str(write_bad)})


def test_bad_label_maps_fail_before_anything_is_written(tmp_path):
    model = ids_model(tmp_path / "m.onnx", num_classes=4, dontcare=255)
    inputs = tmp_path / "in"
    palette_png(inputs / "a.png", np.array([[0, 3], [255, 1]]))  # 255 is "don't care": fine
    Image.fromarray(np.array([[0, 9], [1, 1]], np.uint8)).save(inputs / "b.png")
    result = subprocess.run([sys.executable, "-m", "pixforge.export.cli", "run", model, inputs, "--out",
                             tmp_path / "out", "--device", "cpu"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "b.png holds class id 9" in lines[0] and "ids 0..3 and 255" in lines[0], lines
    assert not (tmp_path / "out").exists()
    Runtime().run(str(model), str(inputs / "a.png"), out=str(tmp_path / "ok"), device="cpu")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "ok" / "a.png")), [[0, 3], [255, 1]])
