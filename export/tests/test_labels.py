"""Label-map inputs (TensorSpec kind "labels"): read as stored ids, checked, resized nearest, fed as float ids; paired
inputs (one file per item, e.g. instance maps): matched by relative name, checked up front, fitted as the primary.

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
    with pytest.raises(ValueError, match="num_classes of a labels input must be >= 1"):
        TensorSpec("seg", kind="labels", num_classes=0)
    with pytest.raises(ValueError, match="dontcare needs num_classes"):
        TensorSpec("seg", kind="labels", dontcare=255)
    ids = TensorSpec("inst", kind="labels", paired=True)  # any ids, one file per item
    assert parse_metadata(build_metadata("p", "1", "t", [spec, ids], [TensorSpec("out")]), "m.onnx").inputs[1] == ids
    assert (ids.num_classes, ids.paired, TensorSpec("seg", kind="labels", num_classes=2).paired) == (None, True, False)
    with pytest.raises(ValueError, match="only image and labels inputs can be paired"):
        TensorSpec("z", kind="noise", shape=["N", 4], paired=True)
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


def paired_model(path: Path, size=None) -> Path:
    """labels (primary, 5 classes, multiple 4) + ids (paired, any ids): out = 16 * labels + ids, as a grey image."""
    x = helper.make_tensor_value_info("labels", FLOAT, ["N", 1, "H", "W"])
    i = helper.make_tensor_value_info("ids", FLOAT, ["N", 1, "H", "W"])
    y = helper.make_tensor_value_info("out", FLOAT, ["N", 1, "H", "W"])
    sixteen = helper.make_tensor("sixteen", FLOAT, [], [16.0])
    nodes = [helper.make_node("Constant", [], ["k"], value=sixteen), helper.make_node("Mul", ["labels", "k"], ["m"]),
             helper.make_node("Add", ["m", "ids"], ["out"])]
    specs = [TensorSpec("labels", kind="labels", num_classes=5, multiple=4, size=size),
             TensorSpec("ids", kind="labels", multiple=4, size=size, paired=True)]
    return _model(path, specs, [TensorSpec("out", color="GRAY", range=(0.0, 255.0))], nodes, [x, i], [y])


@pytest.fixture
def paired_data(tmp_path):
    """in/a.png (6x7), in/sub/b.png (5x9) label maps and ids/ with each one's id map (16-bit), same relative names."""
    rng = np.random.default_rng(4)
    labels, ids = {}, {}
    for name, hw in (("a", (6, 7)), ("sub/b", (5, 9))):
        labels[name] = rng.integers(0, 5, hw).astype(np.uint8)
        ids[name] = rng.integers(0, 16, hw).astype(np.uint16) * 1  # 16-bit PNG: I;16 ids
        palette_png(tmp_path / "in" / f"{name}.png", labels[name])
        (tmp_path / "ids" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ids[name]).save(tmp_path / "ids" / f"{name}.png")
    return tmp_path, labels, ids


@pytest.mark.parametrize("size", [None, (8, 8)])
def test_paired_input_gives_each_item_its_own_file(paired_data, size):
    root, labels, ids = paired_data
    model = paired_model(root / "m.onnx", size)
    Runtime().run(str(model), str(root / "in"), out=str(root / "out"), input=f"ids={root / 'ids'}", device="cpu",
                  batch=2)
    for name in labels:
        got = np.asarray(Image.open(root / "out" / f"{name}.png")).astype(int)
        if size is None:  # both reflect-padded to multiples of 4, cropped back: exact
            assert np.array_equal(got, 16 * labels[name].astype(int) + ids[name])
        else:  # both resized nearest to 8x8, the output resized back (bicubic)
            assert got.shape == labels[name].shape
    pipe = Pipeline(open_session(str(model), "cpu"), images={"ids": str(root / "ids")})
    a = read_labels(root / "in" / "a.png")
    with pytest.raises(ValueError, match="'ids' is paired with the items"):
        pipe.feeds([a], [0])
    fed = pipe.feeds([a], [0], {"ids": [read_labels(root / "ids" / "a.png")]})["ids"]
    assert fed.shape == (1, 1, *(size or (8, 8))) and fed.dtype == np.float32
    if size is None:  # reflect-padded to 8x8 as the primary input
        assert np.array_equal(fed[0, 0, :6, :7], ids["a"]) and np.array_equal(fed[0, 0, 6:, :7], ids["a"][[4, 3]])
    else:  # resized nearest as the primary input
        assert np.array_equal(fed[0, 0], np.asarray(Image.fromarray(ids["a"]).resize((8, 8), Image.NEAREST)))


def test_paired_inputs_are_checked_before_anything_is_written(paired_data):
    root, labels, ids = paired_data
    model, out = paired_model(root / "m.onnx"), root / "out"

    def fails(match, **kw):
        with pytest.raises(PixforgeError, match=match):
            Runtime().run(str(model), str(root / "in"), out=str(out), device="cpu", **kw)
        assert not out.exists()

    fails(r"needs the input ids, one file per item: pass --input ids=DIR")
    fails(r"takes one 'ids' per item .* give a folder", input=f"ids={root / 'ids' / 'a.png'}")
    (root / "ids" / "sub" / "b.png").rename(root / "b.png")
    fails(r"in/sub/b\.png has no 'ids' file .*ids/sub/b\.\*", input=f"ids={root / 'ids'}")
    Image.fromarray(ids["sub/b"][:4]).save(root / "ids" / "sub" / "b.png")
    fails(r"ids/sub/b\.png is 9x4 but its item .*in/sub/b\.png is 9x5", input=f"ids={root / 'ids'}")
    Image.fromarray(ids["sub/b"]).save(root / "ids" / "sub" / "b.png")
    Image.fromarray(ids["sub/b"]).save(root / "ids" / "sub" / "b.tif")
    fails(r"has more than one 'ids' file", input=f"ids={root / 'ids'}")
    (root / "ids" / "sub" / "b.tif").unlink()
    Image.fromarray(np.full((6, 7), 2**24, np.int32), mode="I").save(root / "ids" / "a.tif")
    (root / "ids" / "a.png").unlink()
    fails(r"ids/a\.tif holds id 16777216; ids are fed as float32", input=f"ids={root / 'ids'}")
    with pytest.raises(PixforgeError, match=r"is a folder, but 'mask' is one image for every item"):
        Pipeline(open_session(str(masked_model(root / "mask.onnx")), "cpu"), images={"mask": str(root / "ids")})


def test_info_and_bench_know_paired_inputs(tmp_path, capsys):
    model = paired_model(tmp_path / "m.onnx")
    Runtime().info(str(model), device="cpu")
    text = capsys.readouterr().out
    assert "labels 5 classes multiple 4" in text and "labels (ids) multiple 4, one file per item" in text
    Runtime().bench(str(model), device="cpu", batch_sizes=2, size=8, iters=1, warmup=0, json=True)
    assert '"batch": 2' in capsys.readouterr().out
