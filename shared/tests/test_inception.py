"""InceptionV3 for FID: public state-dict format, strict loading, preprocessing, parameter counts, errors.

No real weights can be downloaded here, so random weights are saved in the official key format
(torchvision's `inception_v3` / pytorch-fid's `fid_inception_v3`) and loaded back.
"""

import pickle
import re

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from pixforge.core.metrics import FrechetDistance
from pixforge.core.nets import inception
from pixforge.core.nets.inception import InceptionFeatures, InceptionV3, load_weights
from pixforge.export.errors import PixforgeError

FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
TV_FILE = "inception_v3_google-0cc3c7bd.pth"

# torchvision's InceptionAux(768, 1000): conv0 1x1 768->128, conv1 5x5 128->768 (each conv + BN), fc 768->1000
AUX_SHAPES = {
    "AuxLogits.conv0.conv.weight": (128, 768, 1, 1),
    **{f"AuxLogits.conv0.bn.{k}": (128,) for k in ("weight", "bias", "running_mean", "running_var")},
    "AuxLogits.conv1.conv.weight": (768, 128, 5, 5),
    **{f"AuxLogits.conv1.bn.{k}": (768,) for k in ("weight", "bias", "running_mean", "running_var")},
    "AuxLogits.fc.weight": (1000, 768),
    "AuxLogits.fc.bias": (1000,),
}


def official_state(variant: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the public file's format, scaled so activations stay O(1) through the trunk."""
    torch.manual_seed(seed)
    net = InceptionV3(variant)
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            module.weight.data.uniform_(0.8, 1.2)
            module.bias.data.normal_(0, 0.1)
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    state = {k: v.clone() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    if variant == "torchvision":
        state.update({k: torch.randn(shape) * 0.01 for k, shape in AUX_SHAPES.items()})
    return state


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """Per variant: (state dict, .pth path, .safetensors path), named like the public files."""
    root = tmp_path_factory.mktemp("inception")
    files = {}
    for variant, name in (("fid", FID_FILE), ("torchvision", TV_FILE)):
        state = official_state(variant)
        pth, st = root / variant / name, root / variant / name.replace(".pth", ".safetensors")
        pth.parent.mkdir()
        torch.save(state, pth)
        save_file(state, str(st))
        files[variant] = (state, pth, st)
    return files


def _reference_features(state: dict[str, torch.Tensor], variant: str, images_01: torch.Tensor) -> torch.Tensor:
    """pytorch-fid's pipeline written out: bilinear resize to 299, 2x - 1, trunk, global average pool."""
    net = InceptionV3(variant).eval()
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith("AuxLogits.")}, strict=False)
    x = F.interpolate(images_01, size=(299, 299), mode="bilinear", align_corners=False)
    with torch.no_grad():
        return net(2 * x - 1)


def _n_params(state: dict[str, torch.Tensor]) -> int:
    return sum(v.numel() for k, v in state.items() if "running_" not in k and "num_batches" not in k)


def test_parameter_counts_match_the_published_architectures(weight_files):
    # derived by hand from torchvision's layer list: trunk 21,785,568 + fc 2048 x classes + classes
    assert sum(p.numel() for p in InceptionV3("fid").parameters()) == 21_785_568 + 2048 * 1008 + 1008 == 23_850_960
    assert sum(p.numel() for p in InceptionV3("torchvision").parameters()) == 23_834_568
    # with the auxiliary classifier the file holds torchvision's published 27,161,264 parameters
    assert _n_params(weight_files["torchvision"][0]) == 23_834_568 + 3_326_696 == 27_161_264
    assert _n_params(weight_files["fid"][0]) == 23_850_960
    assert InceptionV3("fid").fc.out_features == 1008


def test_module_names_are_the_official_state_dict_keys():
    keys = set(InceptionV3("torchvision").state_dict())
    for key in (
        "Conv2d_1a_3x3.conv.weight",
        "Conv2d_4a_3x3.bn.running_var",
        "Mixed_5b.branch1x1.conv.weight",
        "Mixed_6e.branch7x7dbl_5.bn.bias",
        "Mixed_7a.branch7x7x3_4.conv.weight",
        "Mixed_7c.branch3x3dbl_3b.bn.running_mean",
        "fc.weight",
        "fc.bias",
    ):
        assert key in keys
    assert keys == set(InceptionV3("fid").state_dict())


@pytest.mark.parametrize("variant", ["fid", "torchvision"])
def test_pth_and_safetensors_load_strictly_and_agree(weight_files, variant):
    state, pth, st = weight_files[variant]
    images = torch.randint(0, 256, (2, 3, 40, 56), dtype=torch.uint8)
    from_pth = InceptionFeatures(variant, weights=pth)
    from_st = InceptionFeatures(variant, weights=st)
    for key, value in from_pth.net.state_dict().items():
        assert torch.equal(from_st.net.state_dict()[key], value), key
    with torch.no_grad():
        a = from_pth(images)
        as_float = from_pth(images[1:].float() / 255)
    assert a.shape == (2, 2048) and a.dtype == torch.float32
    assert a.std() > 1e-2  # the scaled random weights keep activations alive through 11 blocks
    close = {"rtol": 1e-4, "atol": 1e-4}  # batch size may change the CPU conv algorithm
    torch.testing.assert_close(a[:1], _reference_features(state, variant, images[:1].float() / 255), **close)
    torch.testing.assert_close(as_float, a[1:], **close)  # uint8 0..255 and float [0, 1] agree
    assert torch.equal(from_pth.net.Mixed_7c.branch_pool.bn.running_var, state["Mixed_7c.branch_pool.bn.running_var"])
    assert variant in from_pth.label and pth.name in from_pth.label and from_pth.num_features == 2048


def test_logits_output_and_eval_only(weight_files):
    _, pth, _ = weight_files["fid"]
    net = InceptionFeatures("fid", weights=pth, output="logits")
    net.train()
    assert not net.training and not net.net.Mixed_5b.branch1x1.bn.training
    assert not any(p.requires_grad for p in net.parameters())
    with torch.no_grad():
        assert net(torch.rand(1, 3, 299, 299)).shape == (1, 1008) and net.num_features == 1008


def test_fid_variant_pools_ignore_padding_and_last_block_max_pools():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert inception._pool_3x3(x, "avg_tf")[0, 0, 0, 0] == (0 + 1 + 4 + 5) / 4  # TF: zeros not counted
    assert inception._pool_3x3(x, "avg")[0, 0, 0, 0] == (0 + 1 + 4 + 5) / 9
    assert inception._pool_3x3(x, "max")[0, 0, 0, 0] == 5
    fid, tv = InceptionV3("fid"), InceptionV3("torchvision")
    assert (fid.Mixed_5b.pool, fid.Mixed_6e.pool, fid.Mixed_7b.pool, fid.Mixed_7c.pool) == ("avg_tf",) * 3 + ("max",)
    assert {tv.Mixed_5b.pool, tv.Mixed_6e.pool, tv.Mixed_7b.pool, tv.Mixed_7c.pool} == {"avg"}


def test_torchvision_variant_equals_torchvisions_own_preprocessing(weight_files):
    """torchvision's pretrained inception_v3 pipeline written out: ImageNet mean / std normalisation, then its
    `transform_input=True` (`_transform_input`, per channel x * std / 0.5 + (mean - 0.5) / 0.5), then the trunk.
    InceptionFeatures feeds 2x - 1 instead: the same numbers."""
    state, pth, _ = weight_files["torchvision"]
    images = torch.randint(0, 256, (2, 3, 31, 45), dtype=torch.uint8)
    x = F.interpolate(images.float() / 255, size=(299, 299), mode="bilinear", align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    normalised = (x - mean) / std
    transformed = torch.cat([normalised[:, c:c + 1] * (std[0, c] / 0.5) + (mean[0, c] - 0.5) / 0.5
                             for c in range(3)], 1)
    net = InceptionV3("torchvision").eval()
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith("AuxLogits.")}, strict=False)
    with torch.no_grad():
        want = torch.cat([net(transformed[i:i + 1]) for i in range(2)])  # one image per call, as below
        got = torch.cat([InceptionFeatures("torchvision", weights=pth)(images[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert got.std() > 1e-2


def test_weights_from_environment_and_torch_hub_cache(weight_files, monkeypatch, tmp_path):
    state, pth, _ = weight_files["fid"]
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv(inception.WEIGHTS_ENV, str(pth))
    assert InceptionFeatures("fid").net.fc.weight.shape == (1008, 2048)
    monkeypatch.delenv(inception.WEIGHTS_ENV)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / FID_FILE).symlink_to(pth)
    assert torch.equal(InceptionFeatures("fid").net.fc.bias, state["fc.bias"])


@pytest.mark.parametrize(("variant", "name"), [("fid", FID_FILE), ("torchvision", TV_FILE)])
def test_missing_weights_name_the_public_file(monkeypatch, tmp_path, variant, name):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
    with pytest.raises(PixforgeError, match=f"FID/KID need the public InceptionV3 weights file {name}") as err:
        InceptionFeatures(variant)
    assert "weights=PATH" in str(err.value) and inception.WEIGHTS_ENV in str(err.value)
    with pytest.raises(PixforgeError, match="does not exist"):
        InceptionFeatures(variant, weights=tmp_path / name)


def test_corrupt_files_name_the_path(weight_files, tmp_path):
    _, pth, st = weight_files["fid"]
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(pth.read_bytes()[: 1 << 20])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x07not a safetensors file" * 10)
    not_weights = tmp_path / "pickled_object.pth"
    not_weights.write_bytes(pickle.dumps(_Unpicklable(), protocol=2))
    list_of_tensors = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], list_of_tensors)
    for path, reason in ((truncated, "is truncated or corrupt"), (garbage, "is not a readable safetensors file"),
                         (not_weights, "holds Python objects (possibly code) besides tensors")):
        with pytest.raises(PixforgeError, match=re.escape(f"weights file {path} {reason}")) as err:
            load_weights(path)
        assert "\n" not in str(err.value) and "weights_only" not in str(err.value)
    with pytest.raises(PixforgeError, match=re.escape(f"{list_of_tensors} does not hold a state dict")):
        load_weights(list_of_tensors)


class _Unpicklable:
    """Anything but tensors must be refused by torch.load(weights_only=True)."""


def test_wrong_keys_and_the_other_variants_file_are_explained(weight_files, tmp_path):
    wrong = tmp_path / "resnet.safetensors"
    save_file({"conv1.weight": torch.zeros(1)}, str(wrong))
    with pytest.raises(PixforgeError) as err:
        InceptionFeatures("fid", weights=wrong)
    message = str(err.value)
    assert str(wrong) in message and "missing: Conv2d_1a_3x3.conv.weight" in message
    assert "unexpected: conv1.weight" in message
    _, fid_pth, _ = weight_files["fid"]
    with pytest.raises(PixforgeError, match=r"fc layer matches variant 'fid'.*wrong shape: fc.weight \(1008, 2048\)"):
        InceptionFeatures("torchvision", weights=fid_pth)
    with pytest.raises(PixforgeError, match="unknown InceptionV3 variant"):
        InceptionFeatures("inception-v4", weights=fid_pth)


def test_unreachable_url_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(PixforgeError, match="could not download weights from http://127.0.0.1:9/"):
        load_weights(f"http://127.0.0.1:9/{FID_FILE}")


def test_bad_images_are_rejected(weight_files):
    net = InceptionFeatures("fid", weights=weight_files["fid"][1])
    with pytest.raises(PixforgeError, match=r"in \[0, 1\].*\(x \+ 1\) / 2"):
        net(torch.rand(1, 3, 32, 32) * 2 - 1)
    with pytest.raises(PixforgeError, match="N x 3 x H x W"):
        net(torch.rand(1, 1, 32, 32))
    with pytest.raises(PixforgeError, match="uint8 or float"):
        net(torch.zeros(1, 3, 32, 32, dtype=torch.int32))


def test_fid_with_inception_features(weight_files):
    fid = FrechetDistance(InceptionFeatures("fid", weights=weight_files["fid"][1]))
    fid.update(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), real=True)
    fid.update(torch.randint(0, 128, (2, 3, 32, 32), dtype=torch.uint8), real=False)
    result = fid.compute()
    assert result["fid"] > 0 and result["features"].startswith("inception-v3-fid/pool")
    other = FrechetDistance(InceptionFeatures("torchvision", weights=weight_files["torchvision"][1]))
    assert other.names == ("fd", "kd")  # FID is the published network's number only


@pytest.mark.cuda
@pytest.mark.parametrize("variant", ["fid", "torchvision"])
def test_cuda_matches_cpu(weight_files, variant):
    net = InceptionFeatures(variant, weights=weight_files[variant][1])
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        cpu = net(images)
        gpu = net.cuda()(images.cuda()).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-3 * cpu.abs().max().item())


INCEPTION = [
    0.067509, 0.000000, 14.003608, 21.507544, 1.577996, 1.529947, 3.903035, 1.951715, 3.590524,
    0.000000, 13.163918, 7.213665,
]


def test_inception_fid_golden():
    """A fixed slice of the pool features with official_state's weights (rtol 1e-4, see test_golden_nets.py)."""
    net = InceptionV3("fid").eval()
    net.load_state_dict(official_state("fid"), strict=False)
    x = torch.rand(1, 3, 299, 299, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        out = net(x)
    out = out[0] if isinstance(out, (tuple, list)) else out
    torch.testing.assert_close(out.flatten()[:12], torch.tensor(INCEPTION), rtol=1e-4, atol=1e-4)
