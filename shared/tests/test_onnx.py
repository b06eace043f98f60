import onnx
import onnxruntime as ort
import pytest
import torch

from pixforge.core.onnx import OnnxParityError, export_onnx, verify_onnx
from pixforge.export.metadata import TensorSpec, parse_metadata


class TwoInputs(torch.nn.Module):
    """content + style statistics: two image inputs that must share the batch size."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, content, style):
        mean = style.mean(dim=(2, 3), keepdim=True)
        return torch.tanh(self.conv(content) + mean)


def _export(tmp_path, model, example, **kw):
    return export_onnx(model, example, tmp_path / "m.onnx", input_names=["content", "style"],
                       output_names=["out"],
                       inputs=[TensorSpec("content", range=(-1, 1)), TensorSpec("style", range=(-1, 1))],
                       outputs=[TensorSpec("out", range=(-1, 1))], package="pixforge-test", version="9.9",
                       task="style-transfer", extra={"note": "x"},
                       dynamic_axes={"content": {0: "batch", 2: "h", 3: "w"},
                                     "style": {0: "batch", 2: "hs", 3: "ws"}}, **kw)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = TwoInputs().eval()
    path = _export(tmp_path_factory.mktemp("onnx"), model, (torch.randn(2, 3, 16, 24), torch.randn(2, 3, 20, 20)))
    return model, path


def test_metadata_is_written(exported):
    _, path = exported
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    meta = parse_metadata(props, str(path))
    assert (meta.package, meta.version, meta.task) == ("pixforge-test", "9.9", "style-transfer")
    assert [s.name for s in meta.inputs] == ["content", "style"] and meta.extra == {"note": "x"}
    assert meta.input("content").range == (-1.0, 1.0)


def test_dynamic_axes_and_parity_on_new_shapes(exported):
    model, path = exported
    report = verify_onnx(path, model, [torch.randn(3, 3, 40, 12), torch.randn(3, 3, 8, 30)])
    assert report.max_abs_diff < 1e-5 and report.shapes == [(3, 3, 40, 12)]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    assert isinstance(shape[0], str) and isinstance(shape[2], str) and shape[1] == 3


def test_parity_failure_is_reported(exported):
    model, path = exported
    other = TwoInputs().eval()
    with pytest.raises(OnnxParityError, match="differs from PyTorch"):
        verify_onnx(path, other, [torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8)])


def test_fp16_export(tmp_path):
    torch.manual_seed(0)
    model = TwoInputs().eval()
    path = _export(tmp_path, model, (torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)), fp16=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float16)"
    report = verify_onnx(path, model, [torch.randn(2, 3, 12, 12), torch.randn(2, 3, 12, 12)], atol=5e-3)
    assert report.max_abs_diff < 5e-3


def test_names_must_match_specs(tmp_path):
    with pytest.raises(ValueError, match="TensorSpec names"):
        export_onnx(TwoInputs(), (torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8)), tmp_path / "m.onnx",
                    input_names=["a", "b"], output_names=["out"], inputs=[TensorSpec("a"), TensorSpec("x")],
                    outputs=[TensorSpec("out")], package="p", version="0", task="t")
    assert not (tmp_path / "m.onnx").exists()
