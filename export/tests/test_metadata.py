"""The pixforge ONNX metadata schema: build -> metadata_props -> parse round trips, validation, shapes. No torch."""

from __future__ import annotations

import json

import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from pixforge.export.errors import PixforgeError
from pixforge.export.metadata import (
    KEYS,
    SCHEMA_VERSION,
    ModelMeta,
    TensorSpec,
    build_metadata,
    parse_metadata,
    resolve_shape,
)

INPUTS = [TensorSpec("image", layout="NHWC", color="BGR", range=(-1, 1), mean=[0.1, 0.2, 0.3], std=[1, 2, 3],
                     multiple=8, description="the photo"),
          TensorSpec("noise", kind="noise", shape=["N", 64, "H/8", "W/8"]),
          TensorSpec("strength", kind="scalar", default=0.5)]
OUTPUTS = [TensorSpec("out", size=(32, 48)), TensorSpec("logits", kind="tensor")]


def _props(**overrides) -> dict[str, str]:
    props = build_metadata("pixforge-demo", "1.2.3", "image-to-image", INPUTS, OUTPUTS, {"labels": ["a", "b"]})
    props.update(overrides)
    return props


def test_build_gives_string_props_with_every_key():
    props = _props()
    assert set(KEYS) | {"pixforge.extra"} == set(props)
    assert all(isinstance(v, str) for v in props.values())
    assert props["pixforge.schema"] == SCHEMA_VERSION
    assert "pixforge.extra" not in build_metadata("p", "1", "t", INPUTS, OUTPUTS)


def test_round_trip_keeps_every_field():
    meta = parse_metadata(_props(), "m.onnx")
    assert (meta.package, meta.version, meta.task) == ("pixforge-demo", "1.2.3", "image-to-image")
    assert meta.inputs == INPUTS and meta.outputs == OUTPUTS
    assert meta.extra == {"labels": ["a", "b"]}
    image = meta.input("image")
    assert image.range == (-1.0, 1.0) and isinstance(image.range, tuple)  # JSON lists come back as tuples
    assert meta.output("out").size == (32, 48) and isinstance(meta.output("out").size, tuple)
    assert meta.input("noise").shape == ["N", 64, "H/8", "W/8"]
    assert [s.name for s in meta.image_inputs] == ["image"]
    with pytest.raises(KeyError):
        meta.input("nope")


def test_round_trip_through_an_onnx_file(tmp_path):
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3, "H", "W"])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["image"], ["out"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, build_metadata("p", "0.1", "identity", [TensorSpec("image")],
                                                 [TensorSpec("out")]))
    onnx.save(model, str(tmp_path / "m.onnx"))
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    meta = parse_metadata(session.get_modelmeta().custom_metadata_map, str(tmp_path / "m.onnx"))
    assert isinstance(meta, ModelMeta) and meta.task == "identity" and meta.inputs == [TensorSpec("image")]
    assert meta.extra == {}


def test_no_metadata_names_the_file():
    with pytest.raises(PixforgeError, match=r"^m\.onnx has no pixforge metadata"):
        parse_metadata({"other": "x"}, "m.onnx")


def test_incomplete_metadata_lists_missing_keys():
    props = _props()
    del props["pixforge.task"], props["pixforge.outputs"]
    with pytest.raises(PixforgeError, match="missing pixforge.task, pixforge.outputs"):
        parse_metadata(props, "m.onnx")


def test_other_schema_version_asks_for_an_upgrade():
    with pytest.raises(PixforgeError, match="schema '2'.*upgrade pixforge-export"):
        parse_metadata(_props(**{"pixforge.schema": "2"}), "m.onnx")


@pytest.mark.parametrize("key,value", [
    ("pixforge.inputs", "not json"),
    ("pixforge.outputs", json.dumps([{"name": "out", "kind": "mask"}])),
    ("pixforge.extra", "{"),
    ("pixforge.inputs", json.dumps([{"kind": "image"}])),  # no name
])
def test_malformed_metadata(key, value):
    with pytest.raises(PixforgeError, match=r"^m\.onnx has malformed pixforge metadata"):
        parse_metadata(_props(**{key: value}), "m.onnx")


def test_unknown_spec_fields_are_ignored():
    """A newer exporter may add fields: this runtime reads what it knows."""
    spec = dict(TensorSpec("image").to_dict(), future_field=[1, 2])
    meta = parse_metadata(_props(**{"pixforge.inputs": json.dumps([spec])}), "m.onnx")
    assert meta.inputs == [TensorSpec("image")]


@pytest.mark.parametrize("kwargs,message", [
    ({"kind": "mask"}, "kind must be one of"),
    ({"layout": "CHW"}, "layout must be NCHW or NHWC"),
    ({"color": "YUV"}, "color must be one of"),
    ({"range": (1, 0)}, "high > low"),
    ({"multiple": 0}, "multiple must be >= 1"),
    ({"kind": "noise"}, "needs a shape"),
    ({"kind": "scalar"}, "needs a default"),
])
def test_spec_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TensorSpec("x", **kwargs)


def test_non_image_specs_skip_image_checks():
    assert TensorSpec("z", kind="noise", layout="whatever", shape=[1]).layout == "whatever"


@pytest.mark.parametrize("shape,expected", [
    (["N", 64, "H/8", "W/8"], [4, 64, 12, 10]),
    (["N", "H", "W"], [4, 96, 80]),
    ([1, 512], [1, 512]),
    (["N", " H / 128 ", "W/1000"], [4, 1, 1]),  # never below 1
    ([], []),
])
def test_resolve_shape(shape, expected):
    assert resolve_shape(shape, batch=4, height=96, width=80) == expected


@pytest.mark.parametrize("shape", [["C"], ["N", "H*2"], ["N", "H/x"]])
def test_resolve_shape_rejects_bad_dims(shape):
    with pytest.raises(ValueError):
        resolve_shape(shape, 1, 8, 8)

