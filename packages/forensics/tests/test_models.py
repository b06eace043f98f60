"""The detectors: parameter counts against their reference architectures, forward shapes, public-layout weights."""

from __future__ import annotations

import pytest
import torch

from pixforge.core.nets.resnet import ResNet
from pixforge.export.errors import PixforgeError
from pixforge.forensics.models import MODELS, build, count_parameters, spec
from pixforge.forensics.models.weights import torchvision_to_mmaction

RESNET50_BODY = 23_508_032  # torchvision resnet50 (25,557,032) less its 2048 x 1000 fc


def conv3d(cin, cout, k=27):
    return cin * cout * k + cout


def test_reference_counts_are_the_architectures():
    """The registry's reference counts, derived here from the layer shapes."""
    c3d_body = sum(conv3d(a, b) for a, b in ((3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512),
                                               (512, 512), (512, 512))) + (8192 * 4096 + 4096) + (4096 * 4096 + 4096)
    assert MODELS["c3d"].reference_params == c3d_body + 4096 * 487 + 487
    # I3D: the 2D body, the stem made 5x7x7, the inflated bottlenecks' first 1x1 convs made 3x1x1 (x3)
    inflated_conv1 = (64 * 64 + 2 * 256 * 64) + (256 * 128 + 512 * 128) + (512 * 256 + 2 * 1024 * 256) + 2048 * 512
    i3d_body = RESNET50_BODY + 3 * 64 * 49 * 4 + 2 * inflated_conv1
    assert MODELS["i3d"].reference_params == i3d_body + 2048 * 400 + 400
    assert MODELS["tsn"].reference_params == RESNET50_BODY + 2048 * 400 + 400
    lstm = 4 * (512 * 2048 + 512 * 512 + 2 * 512)
    assert MODELS["resnet_lstm"].reference_params == RESNET50_BODY + lstm + 512 * 2 + 2
    assert MODELS["xception"].reference_params == 22_855_952  # Cadene's pretrainedmodels xception, 1000 classes


@pytest.mark.parametrize("name", list(MODELS))
def test_parameter_count_with_reference_head(name):
    s = MODELS[name]
    net = build(name, num_classes=s.reference_classes)
    assert count_parameters(net) == s.reference_params
    features = {"c3d": 4096, "resnet_lstm": 512}.get(name, 2048)
    assert count_parameters(net) - count_parameters(build(name)) == (s.reference_classes - 1) * (features + 1)


SHAPES = {"xception": (2, 3, 72, 72), "c3d": (1, 3, 16, 112, 112), "tsn": (2, 3, 3, 32, 32),
          "i3d": (2, 3, 8, 32, 32), "resnet_lstm": (2, 3, 3, 32, 32)}


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_shapes(name):
    torch.manual_seed(0)
    net = build(name, generator=torch.Generator().manual_seed(0)).eval()
    with torch.no_grad():
        out = net(torch.randn(SHAPES[name]))
    assert out.shape == (SHAPES[name][0], 1) and torch.isfinite(out).all()
    assert spec(name).input_shape(2)[-1] == spec(name).size


def test_spec_names_and_errors():
    assert spec("ResNet-LSTM").name == "resnet_lstm" and spec("I3D").clip == 32
    with pytest.raises(PixforgeError, match="unknown detector"):
        spec("vgg")


def _same(a: dict, b: dict, skip=()):
    for key, value in a.items():
        if key in skip:
            continue
        assert torch.equal(value, b[key]), key


def test_xception_cadene_and_faceforensics_files(tmp_path):
    ref = build("xception", 1000, generator=torch.Generator().manual_seed(1))
    # Cadene's file: 2-D pointwise weights (torch 0.3), no BatchNorm counters, fc head
    cadene = {k: (v[:, :, 0, 0] if k.endswith("pointwise.weight") else v) for k, v in ref.state_dict().items()
              if not k.endswith("num_batches_tracked")}
    torch.save(cadene, tmp_path / "xception-43020ad28.pth")
    net = build("xception", 1000, weights=tmp_path / "xception-43020ad28.pth")
    assert net.head_loaded
    _same(ref.state_dict(), net.state_dict())
    binary = build("xception", weights=tmp_path / "xception-43020ad28.pth")  # ImageNet head on a binary model
    assert not binary.head_loaded and binary.fc.weight.shape == (1, 2048)
    _same(ref.state_dict(), binary.state_dict(), skip=("fc.weight", "fc.bias"))
    # FaceForensics++ TransferModel: model. prefix, last_linear = Sequential(Dropout, Linear(2048, 2))
    ff = {"model." + (k.replace("fc.", "last_linear.1.") if k.startswith("fc.") else k): v
          for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    ff["model.last_linear.1.weight"], ff["model.last_linear.1.bias"] = torch.randn(2, 2048), torch.randn(2)
    torch.save({"state_dict": ff}, tmp_path / "ffpp.pth")
    two = build("xception", 2, weights=tmp_path / "ffpp.pth")
    assert two.head_loaded and torch.equal(two.fc.weight, ff["model.last_linear.1.weight"])


def test_resnet_based_models_load_torchvision_resnet50(tmp_path):
    ref = ResNet("resnet50", generator=torch.Generator().manual_seed(2))
    torch.save(ref.state_dict(), tmp_path / "resnet50-0676ba61.pth")
    body = {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    for name in ("tsn", "resnet_lstm"):
        net = build(name, weights=tmp_path / "resnet50-0676ba61.pth")
        assert not net.head_loaded
        _same(body, {k[len("backbone."):]: v for k, v in net.state_dict().items() if k.startswith("backbone.")})
    # I3D inflates it: each 2D kernel repeated over time / T
    net = build("i3d", weights=tmp_path / "resnet50-0676ba61.pth")
    state = net.state_dict()
    stem = state["backbone.conv1.conv.weight"]
    assert stem.shape == (64, 3, 5, 7, 7)
    assert torch.allclose(stem.sum(2), ref.conv1.weight, atol=1e-6)
    assert torch.allclose(state["backbone.layer1.0.conv1.conv.weight"][:, :, 1] * 3, ref.layer1[0].conv1.weight)
    assert torch.equal(state["backbone.layer4.2.conv3.bn.running_var"], ref.layer4[2].bn3.running_var)


def test_mmaction_checkpoints_round_trip(tmp_path):
    for name in ("c3d", "i3d"):
        ref = build(name, 400, generator=torch.Generator().manual_seed(3))
        torch.save({"state_dict": ref.state_dict()}, tmp_path / f"{name}.pth")
        net = build(name, 400, weights=tmp_path / f"{name}.pth")
        assert net.head_loaded
        _same(ref.state_dict(), net.state_dict())
    # mmaction2 TSN: mmcv ResNet keys under backbone., cls_head.fc_cls
    ref = build("tsn", 400, generator=torch.Generator().manual_seed(4))
    mm = {("backbone." + torchvision_to_mmaction(k[len("backbone."):]) if k.startswith("backbone.") else k): v
          for k, v in ref.state_dict().items()}
    assert "backbone.layer1.0.downsample.conv.weight" in mm and "backbone.conv1.bn.running_mean" in mm
    torch.save({"state_dict": mm}, tmp_path / "tsn_r50.pth")
    net = build("tsn", 400, weights=tmp_path / "tsn_r50.pth")
    assert net.head_loaded
    _same(ref.state_dict(), net.state_dict())


def test_c3d_pytorch_port_layout(tmp_path):
    ref = build("c3d", 487, generator=torch.Generator().manual_seed(5))
    names = {"conv1a": "conv1", "conv2a": "conv2"}
    port = {}
    for key, value in ref.state_dict().items():
        key = key.replace("backbone.", "").replace("cls_head.fc_cls", "fc8").replace(".conv.", ".")
        port[names.get(key.split(".")[0], key.split(".")[0]) + "." + key.split(".", 1)[1]] = value
    assert "conv1.weight" in port and "fc8.bias" in port
    torch.save(port, tmp_path / "c3d.pickle.pth")
    _same(ref.state_dict(), build("c3d", 487, weights=tmp_path / "c3d.pickle.pth").state_dict())


def test_resnet_lstm_own_file_and_wrong_architecture(tmp_path):
    ref = build("resnet_lstm", generator=torch.Generator().manual_seed(6))
    torch.save({k: v for k, v in ref.state_dict().items()}, tmp_path / "own.pth")
    _same(ref.state_dict(), build("resnet_lstm", weights=tmp_path / "own.pth").state_dict())
    xc = build("xception", 1000)
    torch.save(xc.state_dict(), tmp_path / "xception.pth")
    with pytest.raises(PixforgeError, match=r"not a C3D state dict \(it looks like Xception\)"):
        build("c3d", weights=tmp_path / "xception.pth")
    with pytest.raises(PixforgeError, match="not a ResNet-50 state dict"):
        build("tsn", weights=tmp_path / "xception.pth")
    torch.save(ResNet("resnet18").state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(PixforgeError, match="wrong shape|missing"):
        build("i3d", weights=tmp_path / "resnet18.pth")
    with pytest.raises(PixforgeError, match="does not exist"):
        build("xception", weights=tmp_path / "nope.pth")


# ------------------------------------------------------------------------------- the real networks, small inputs

# (size, clip, batch): small enough for one CPU thread; C3D's fc6 fixes its input at 16 x 112 x 112
SMALL = {"xception": (64, 1, 2), "c3d": (112, 16, 1), "tsn": (32, 2, 2), "i3d": (32, 8, 2), "resnet_lstm": (32, 3, 2)}


def _small_detector(name):
    from pixforge.forensics.detector import build_detector, make_arch

    size, clip, batch = SMALL[name]
    arch = make_arch(name, size, clip)
    det = build_detector(arch, seed=0)
    shape = (batch, 3, size, size) if arch["sampling"] == "image" else (batch, 3, arch["clip"], size, size)
    return det, arch, shape


@pytest.mark.parametrize("name", list(MODELS))
def test_real_detectors_train_a_step(name):
    """The registry networks themselves (not the tests' stand-ins) behind the detector's normalisation: uint8
    clips in, one logit per clip out, finite gradients reaching the first and the last layer, and an optimiser step
    that moves the (eval-mode) logits. One thread, idle machine: 0.5-5 s each (C3D, at its fixed 16 x 112 x 112)."""
    torch.manual_seed(0)
    det, _, shape = _small_detector(name)
    x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(shape[0]).float() % 2
    with torch.no_grad():
        before = det.eval()(x)
    logits = det.train()(x)
    assert logits.shape == before.shape == (shape[0],) and torch.isfinite(logits).all()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    loss.backward()
    params = [p for p in det.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    assert params[0].grad.abs().sum() > 0 and params[-1].grad.abs().sum() > 0
    torch.nn.utils.clip_grad_norm_(params, 40.0)  # as `train` does for the video models (BatchNorm over 2 values)
    torch.optim.SGD(params, lr=1e-3).step()
    with torch.no_grad():
        after = det.eval()(x)
    assert torch.isfinite(after).all() and not torch.equal(after, before)


# torch.export + ONNX conversion of the full network: 7-10 s each on one idle thread (40-60 s at load 6)
@pytest.mark.parametrize("name", ["xception", "resnet_lstm"])
def test_real_detectors_export_to_onnx_with_parity(name, tmp_path):
    """A finished run of the real network (small input) through `export`: the ONNX graph (normalisation and sigmoid
    inside) gives PyTorch's probabilities on another batch size, and the metadata records the layout."""
    import json

    import numpy as np
    import onnxruntime as ort

    from pixforge.core.checkpoint import save_release
    from pixforge.forensics.detector import load_run
    from pixforge.forensics.export import ProbabilityGraph, export

    torch.manual_seed(0)
    det, arch, shape = _small_detector(name)
    det.train()
    with torch.no_grad():  # BatchNorm statistics of real inputs, so eval mode is not the identity-init net's
        for seed in range(3):
            det(torch.randint(0, 256, (4, *shape[1:]), generator=torch.Generator().manual_seed(seed)).float())
    save_release(tmp_path / "run", det.net, {**arch, "step": 1, "seed": 0})
    path = export(run=str(tmp_path / "run"), out=str(tmp_path / "m.onnx"))  # verify_onnx ran inside
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    extra = json.loads(session.get_modelmeta().custom_metadata_map["pixforge.extra"])
    assert extra["model"] == name and extra["size"] == shape[-1] and extra["clip"] == arch["clip"]
    x = torch.randint(0, 256, (3, *shape[1:]), generator=torch.Generator().manual_seed(7)).float()
    loaded, _ = load_run(tmp_path / "run")
    with torch.no_grad():
        expected = ProbabilityGraph(loaded)(x).numpy()
    got = session.run(None, {"clip": x.numpy()})[0]
    assert got.shape == (3,)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-4)
