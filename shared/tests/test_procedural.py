"""pfr18, the procedural ResNet-18 that ships with pixforge-core: the asset, the features, the distances named for
what they are, the perceptual loss and its choice, the `fd` verb."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from pixforge.core.io import embedded_images, write_image
from pixforge.core.losses import PERCEPTUAL, ProceduralPerceptualLoss, perceptual_kind, perceptual_loss
from pixforge.core.metrics import FrechetDistance, KernelDistance
from pixforge.core.nets.procedural import ProceduralFeatures, asset_path, asset_record
from pixforge.core.nets.resnet import ResNet
from pixforge.export.errors import PixforgeError


@pytest.fixture(scope="module")
def features():
    return ProceduralFeatures()


@pytest.fixture(scope="module")
def crops():
    """48 uint8 64 x 64 crops of four embedded photos (N x 3 x H x W)."""
    rng = np.random.default_rng(0)
    out = []
    for img in embedded_images(["astronaut", "coffee", "chelsea", "rocket"]):
        for _ in range(12):
            y, x = rng.integers(0, img.shape[0] - 128), rng.integers(0, img.shape[1] - 128)
            out.append(img[y:y + 128:2, x:x + 128:2])
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def test_the_asset_is_small_recorded_and_intact():
    path, record = asset_path(), asset_record()
    assert path.stat().st_size <= 25 * 2**20 and record["bytes"] == path.stat().st_size
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"]
    assert record["command"].startswith("pixforge-spectra pretrain") and record["config"]["arch"] == "resnet18"
    with safe_open(str(path), "pt") as fh:
        keys = list(fh.keys())
        assert fh.get_tensor("conv1.weight").dtype == torch.float16
    assert "layer4.1.bn2.running_var" in keys and not any(k.startswith("fc.") for k in keys)
    assert record["parameters"] == sum(p.numel() for p in ResNet("resnet18", 0).parameters()) == 11_176_512


def test_features_contract(features, crops):
    out = features(crops[:4])
    assert out.shape == (4, 512) and out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(features(crops[:4].float() / 255), out)  # uint8 and [0, 1] floats: the same input
    torch.testing.assert_close(features(crops[:4]), out, rtol=0, atol=0)  # deterministic
    big = torch.nn.functional.interpolate(crops[:2].float() / 255, scale_factor=2, mode="nearest")
    assert features(big).shape == (2, 512)  # any size: resized to 64
    features.train()
    assert not features.training and not any(p.requires_grad for p in features.parameters())
    assert features.names == ("fd_pfr18", "kd_pfr18") and "not Inception" in features.label
    with pytest.raises(PixforgeError, match=r"float images in \[0, 1\]"):
        features(crops[:2].float())
    with pytest.raises(PixforgeError, match="N x 3 x H x W"):
        features(crops[:2, :1])


def test_other_weights_load_and_are_not_called_pfr18(tmp_path, features, crops):
    own = tmp_path / "encoder.safetensors"
    save_file(ResNet("resnet18", 0, generator=torch.Generator().manual_seed(3)).state_dict(), str(own))
    mine = ProceduralFeatures(own)
    assert mine.names == ("fd", "kd") and "encoder.safetensors" in mine.label
    assert not torch.allclose(mine(crops[:2]), features(crops[:2]))
    wrong = tmp_path / "resnet34.safetensors"
    save_file(ResNet("resnet34", 0).state_dict(), str(wrong))
    with pytest.raises(PixforgeError, match="resnet34.safetensors are not a ResNet-18 encoder"):
        ProceduralFeatures(wrong)


def test_distances_are_named_fd_pfr18_and_kd_pfr18(features, crops):
    fd, kd = FrechetDistance(features), KernelDistance(features, subset_size=20, subsets=5)
    for metric in (fd, kd):
        metric.update(crops[:24], real=True)
        metric.update(crops[24:], real=False)
    assert set(fd.compute()) == {"fd_pfr18", "features", "num_real", "num_fake"}
    assert {"kd_pfr18_mean", "kd_pfr18_std"} <= set(kd.compute())


def test_fd_pfr18_grows_with_degradation(features, crops):
    """Noise and blur of increasing strength move the set further from the clean one, step by step."""
    from kornia.filters import gaussian_blur2d

    clean = crops.float() / 255
    generator = torch.Generator().manual_seed(0)
    ladders = {"noise": [(clean + s * torch.randn(clean.shape, generator=generator)).clamp(0, 1)
                         for s in (0.02, 0.08, 0.2)],
               "blur": [gaussian_blur2d(clean, (k, k), (k / 6, k / 6)) for k in (3, 7, 13)]}
    for name, ladder in ladders.items():
        fd = FrechetDistance(features, reset_real_features=False)
        fd.update(clean, real=True)
        values = []
        for images in ladder:
            fd.update(images, real=False)
            values.append(fd.compute()["fd_pfr18"])
            fd.reset()
        assert values == sorted(values) and values[0] > 0, (name, values)


def test_perceptual_loss_is_lpips_form_on_the_stages(features, crops):
    loss = ProceduralPerceptualLoss()
    x = crops[:3].float() / 127.5 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    assert loss(x, x).item() == 0.0
    expected = 0.0
    for a, b in zip(features.stages(features.normalise((x + 1) / 2)), features.stages(features.normalise((y + 1) / 2)),
                    strict=True):
        a, b = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
        expected += ((a - b) ** 2).sum(1).mean() / 4
    torch.testing.assert_close(loss(y, x), expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ProceduralPerceptualLoss(input_range=(0, 1))((y + 1) / 2, (x + 1) / 2), loss(y, x))
    smaller = loss((x + 0.1 * (y - x)), x)
    assert 0 < smaller < loss(y, x)
    y = y.requires_grad_()
    loss(y, x).backward()
    assert y.grad.abs().sum() > 0 and all(p.grad is None for p in loss.parameters())


def test_perceptual_choice(monkeypatch, tmp_path):
    from pixforge.core.nets.vgg import VGG19

    monkeypatch.delenv("PIXFORGE_VGG19_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert PERCEPTUAL == ("auto", "vgg", "pfr18", "off")
    assert perceptual_kind("auto") == "pfr18" and perceptual_kind("off") == "off"
    assert isinstance(perceptual_loss("auto"), ProceduralPerceptualLoss) and perceptual_loss("off") is None
    with pytest.raises(PixforgeError, match="--perceptual vgg needs torchvision's VGG19 weights"):
        perceptual_kind("vgg")
    with pytest.raises(PixforgeError, match="--perceptual must be one of auto, vgg, pfr18, off, got 'lpips'"):
        perceptual_kind("lpips")
    weights = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(VGG19().state_dict(), weights)
    assert perceptual_kind("auto", weights) == "vgg" and perceptual_kind("pfr18", weights) == "pfr18"
    monkeypatch.setenv("PIXFORGE_VGG19_WEIGHTS", str(weights))
    assert type(perceptual_loss("auto")).__name__ == "VGGPerceptualLoss"


def test_fd_verb(tmp_path):
    rng = np.random.default_rng(0)
    for name, shift in (("real", 0), ("fake", 80)):
        for i in range(6):
            write_image(tmp_path / name / f"{i}.png", np.clip(rng.normal(90 + shift, 40, (24, 24, 3)), 0, 255)
                        .astype(np.uint8))
    cmd = [sys.executable, "-m", "pixforge.core.tool", "fd", str(tmp_path / "real"), str(tmp_path / "fake"),
           "--kid", "--kid-subset-size", "3", "--json-out", "--device", "cpu"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["fd_pfr18"] > 0 and "kd_pfr18_mean" in scores and "pfr18-64" in scores["features"]
    missing = subprocess.run(cmd[:3] + [str(tmp_path / "nope"), str(tmp_path / "fake")], capture_output=True,
                             text=True)
    assert missing.returncode == 2 and "nope" in missing.stderr and "Traceback" not in missing.stderr
