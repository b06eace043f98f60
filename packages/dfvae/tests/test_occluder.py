"""The face occluder (`swap --occluder`): the XSeg convention (BGR crops in [0, 1], mask 1 where the face is
visible), fixed and dynamic input sizes and batches, both layouts, FaceFusion's softening, and bad models."""

import numpy as np
import pytest

from pixforge.export.errors import PixforgeError


def _crops(n=3, side=48):
    """n grey crops with a 16 px pure-blue square at (8, 8) and a pure-red one at (24, 24)."""
    crops = np.full((n, side, side, 3), 128, np.uint8)
    crops[:, 8:24, 8:24] = (0, 0, 255)
    crops[:, 24:40, 24:40] = (255, 0, 0)
    return crops


@pytest.mark.parametrize("size, batch, channels_last", [(64, 1, True), (None, None, True), (32, None, False)])
def test_the_blue_square_is_occluded_and_the_red_one_is_not(tmp_path, occluder_maker, size, batch, channels_last):
    from pixforge.dfvae.occluder import Occluder

    occluder = Occluder(occluder_maker(tmp_path / "o.onnx", size, batch, channels_last))
    crops = _crops()
    crops[1, 8:24, 8:24] = 128  # the middle crop has no blue square: each crop gets its own mask, in order
    mask = occluder(crops)
    assert mask.shape == (3, 48, 48) and mask.dtype == np.float32 and 0 <= mask.min() and mask.max() <= 1
    # BGR in: the square that is blue in RGB is blue to the model; a mix-up would occlude the red one instead
    assert mask[[0, 2], 14:18, 14:18].max() == 0 and mask[:, 30:34, 30:34].min() > 0.99
    assert mask[:, 44:, :4].min() > 0.99 and mask[1].min() > 0.99  # far from a blue square: visible


def test_the_mask_is_softened_as_facefusion_softens_it(tmp_path, occluder_maker):
    """A model output m (here: 0 in the blue square, 1 elsewhere, at the crop's size) becomes
    (clip(blur_σ(m), 0.5, 1) - 0.5) x 2 with σ = 5 px x side / 256."""
    import onnxruntime as ort
    import torch

    from pixforge.dfvae.masks import blur_mask
    from pixforge.dfvae.occluder import Occluder

    crops = _crops(1, 48)
    got = Occluder(occluder_maker(tmp_path / "o.onnx", None, None))(crops)[0]
    session = ort.InferenceSession(str(tmp_path / "o.onnx"))  # the model's own output
    m = session.run(None, {"input": crops[..., ::-1].astype(np.float32) / 255})[0][..., 0]
    blurred = blur_mask(torch.from_numpy(m)[:, None], 5.0 * 48 / 256)[0, 0].numpy()
    np.testing.assert_allclose(got, (np.clip(blurred, 0.5, 1) - 0.5) * 2, atol=1e-6)
    assert got.min() == 0 and got.max() > 0.999


def test_bad_occluders_are_one_clear_error(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from pixforge.dfvae.occluder import Occluder

    (tmp_path / "text.onnx").write_text("not a model")
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "flat",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "flat.onnx"))
    for name, message in (("missing.onnx", "does not exist"), ("text.onnx", "could not be loaded by onnxruntime"),
                          ("flat.onnx", "must take one image input")):
        with pytest.raises(PixforgeError, match=message) as err:
            Occluder(tmp_path / name)
        assert str(tmp_path / name) in str(err.value) and "\n" not in str(err.value)
