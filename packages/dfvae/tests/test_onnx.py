"""The swap network exports to ONNX (core's exporter, dynamic batch and size) and matches PyTorch, as trained and
with the sub-pixel upsampling the exported graph uses (`export.sub_pixel`: one `ConvTranspose` per `Up`)."""

import pytest
import torch

from pixforge.dfvae import __version__
from pixforge.dfvae.nets import DFVAE, DFVAEConfig
from pixforge.export.metadata import TensorSpec

pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("fold", [False, True])
def test_onnx_export_matches_pytorch(tmp_path, fold):
    import onnx

    from pixforge.core.onnx import export_onnx, verify_onnx
    from pixforge.dfvae.export import sub_pixel

    torch.manual_seed(0)
    config = DFVAEConfig(resolution=32, width=8, max_width=16, structure_channels=4, appearance_dim=8, fusion_width=4)
    model = DFVAE(config).eval()
    stride = 2**config.levels

    def inputs(n: int, h: int, w: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(n * h + w)
        return [torch.rand(n, 68, h, w, generator=g), torch.rand(n, 3, h, w, generator=g) * 2 - 1,
                torch.rand(n, 3, h, w, generator=g) * 2 - 1, torch.rand(n, 1, h, w, generator=g)]

    # sizes as multiples of the stride; the example avoids sizes 1, which torch.export would specialise
    batch, h, w = torch.export.Dim("batch", min=1), torch.export.Dim("h", min=1), torch.export.Dim("w", min=1)
    spatial = {0: batch, 2: stride * h, 3: stride * w}
    image = {"kind": "image", "range": (-1.0, 1.0)}
    specs = [TensorSpec("heatmaps", kind="tensor", shape=["N", 68, "H", "W"]),
             TensorSpec("reference", **image), TensorSpec("target", **image, multiple=stride),
             TensorSpec("mask", kind="tensor", shape=["N", 1, "H", "W"])]
    path = export_onnx(sub_pixel(model) if fold else model, inputs(2, 2 * stride, 3 * stride),
                       tmp_path / "dfvae.onnx", input_names=[s.name for s in specs], output_names=["swapped"],
                       inputs=specs, outputs=[TensorSpec("swapped", **image)],
                       package="pixforge-dfvae", version=__version__, task="face-swap",
                       dynamic_shapes=(spatial,) * 4)
    # against the model as trained, on another batch and width than exported
    report = verify_onnx(path, model, inputs(3, 32, 48), atol=1e-4)
    assert report.max_abs_diff < 1e-4 and report.shapes == [(3, 3, 32, 48)]
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert ("ConvTranspose" in ops) == fold and ("Resize" in ops) != fold
