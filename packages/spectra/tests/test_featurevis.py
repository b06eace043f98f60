"""Feature-visualisation models: the objective rises, determinism per (seed, index) whatever the batch, the
official unit order, lucent's parameterisation and transforms against reference formulas, encoder files, bad input."""

import json
import math
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pixforge.core.datagen import rng
from pixforge.core.nets import resnet18
from pixforge.core.nets.resnet import IMAGENET_MEAN, IMAGENET_STD
from pixforge.export.errors import PixforgeError
from pixforge.spectra import get
from pixforge.spectra.featurevis import COLOR, PAD, affine, image, to_uint8, warp

CPU = torch.device("cpu")
TINY = {"arch": "resnet18", "steps": 6}


@pytest.fixture(scope="module")
def moco_checkpoint(tmp_path_factory):
    """A MoCo v2 checkpoint of a (random) resnet18, in the official key layout, and the network it holds."""
    net = resnet18(generator=torch.Generator().manual_seed(11)).eval()
    state = {f"module.encoder_q.{k}": v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    state |= {f"module.encoder_k.{k}": v.clone() for k, v in net.state_dict().items() if not k.startswith("fc.")}
    state |= {"module.encoder_q.fc.0.weight": torch.zeros(512, 512), "module.encoder_q.fc.2.weight":
              torch.zeros(128, 512), "module.queue": torch.zeros(128, 16)}
    path = tmp_path_factory.mktemp("encoder") / "checkpoint_0199.pth.tar"
    torch.save({"epoch": 200, "arch": "resnet18", "state_dict": state}, path)
    return path, net


def activation(model, seed, indices, images):
    """The objective of each image (no transforms): mean of its units in `model.layer` (avgpool)."""
    net, channels = model.network(seed)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        features = net.features((images - mean) / std)
    return np.array([features[r, model.units_of(seed, i, channels)].mean().item() for r, i in enumerate(indices)])


def start_images(model, seed, indices, size):
    latent = np.stack([rng(seed, i, 0).standard_normal((3, size, size // 2 + 1, 2)) * model.init_std
                       for i in indices])
    return image(torch.from_numpy(latent).float(), size)


def test_optimisation_raises_the_chosen_units():
    indices = [0, 700, 90000]  # one unit, a pair, a later pair
    plain = get("featurevis-random", arch="resnet18", steps=24, transforms=False)
    images, history = plain.optimize(3, indices, 32, CPU)
    before, after = activation(plain, 3, indices, start_images(plain, 3, indices, 32)), activation(
        plain, 3, indices, images)
    assert np.all(before > 0)  # (a unit whose ReLU is off everywhere has no gradient: its image stays noise)
    assert np.all(after > 10 * before)
    np.testing.assert_allclose(history[:, 0], before, rtol=1e-4)  # the first step sees the noise start
    jittered = get("featurevis-random", arch="resnet18", steps=24)
    _, history = jittered.optimize(3, indices, 32, CPU)
    assert np.all(history[:, -6:].mean(1) > history[:, :6].mean(1))


def test_images_depend_only_on_seed_and_index():
    m = get("featurevis-random", **TINY)
    images = m.sample(5, [0, 1, 2600], 32, CPU)
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
    assert images.reshape(3, -1).min(1).tolist() == [0, 0, 0] and images.reshape(3, -1).max(1).tolist() == [255] * 3
    np.testing.assert_array_equal(m.sample(5, [2600, 0], 32, CPU), images[[2, 0]])  # batch-independent on CPU
    np.testing.assert_array_equal(m.sample(5, [1], 32, CPU)[0], images[1])
    assert not np.array_equal(m.sample(6, [0], 32, CPU)[0], images[0])  # another dataset: another network
    net5, net6 = m.network(5)[0], m.network(6)[0]
    assert not torch.equal(net5.conv1.weight, net6.conv1.weight)


def test_sorted_units_follow_the_official_order():
    m = get("featurevis-random")
    n = 7
    official = [[i] for i in range(n)] + [[i, j] for i in range(n) for j in range(i + 1, n)]  # sorted_k_of_n
    assert [m.units_of(0, k, n) for k in range(len(official))] == official
    assert m.units_of(0, len(official), n) == [0]  # then again from the start
    assert m.units_of(0, 2048 + 2047 + 5, 2048) == [1, 7]
    assert [get("featurevis-random", units="single").units_of(0, k, n) for k in (3, 10)] == [[3], [3]]
    assert get("featurevis-random", units="pair").units_of(0, 6, n) == [1, 2]
    rand = get("featurevis-random", units="random")
    drawn = [rand.units_of(3, k, 2048) for k in range(50)]
    assert drawn == [rand.units_of(3, k, 2048) for k in range(50)]
    assert {len(u) for u in drawn} == {1, 2} and all(len(set(u)) == len(u) for u in drawn)


def test_fft_parameterisation_matches_lucent_formula():
    size = 12
    latent = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, size, size // 2 + 1, 2))).float()
    fy, fx = np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[: size // 2 + 1]
    scale = 1 / np.maximum(np.hypot(fx, fy), 1 / size)
    spectrum = (latent[..., 0].numpy() + 1j * latent[..., 1].numpy()) * scale
    x = np.fft.irfft2(spectrum, s=(size, size), norm="ortho") / 4
    x = np.einsum("dc,nchw->ndhw", COLOR, x)
    np.testing.assert_allclose(image(latent, size).numpy(), 1 / (1 + np.exp(-x)), atol=1e-6)
    assert np.linalg.norm(COLOR, axis=0).max() == pytest.approx(1.0)
    pixels = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(image(pixels, 4, fft=False, decorrelate=False), torch.sigmoid(pixels))


def _shift(x, dx, dy):
    out = torch.zeros_like(x)
    out[..., dy:, dx:] = x[..., : x.shape[-2] - dy, : x.shape[-1] - dx]
    return out


def _lucent_chain(img, jitter, scale, degrees, late, size):
    """lucent's standard_transforms + final resize, step by step (rotation by OpenCV, kornia's convention)."""
    x = _shift(F.pad(img, [PAD] * 4, value=0.5), *jitter)
    p = x.shape[-1]
    n = math.ceil(scale * p)
    pad = max(0, math.ceil((p - n) / 2))
    x = F.pad(F.interpolate(x, size=(n, n), mode="bilinear", align_corners=True), [pad] * 4)
    q = x.shape[-1]
    m = cv2.getRotationMatrix2D(((q - 1) / 2, (q - 1) / 2), degrees, 1.0)
    x = torch.from_numpy(np.stack([cv2.warpAffine(c.numpy(), m, (q, q), flags=cv2.INTER_LINEAR) for c in x[0]]))
    return F.interpolate(_shift(x[None], *late), size=(size, size), mode="bilinear", align_corners=True)


@pytest.mark.parametrize("jitter, scale, degrees, late", [((5, 2), 1.0, 0, (0, 0)), ((0, 0), 1.0, 10, (0, 0)),
                                                          ((3, 7), 1.1, -7, (2, 3)), ((6, 1), 0.92, 4, (1, 0)),
                                                          ((0, 4), 0.9, -10, (3, 1))])
def test_one_warp_matches_lucents_transform_chain(jitter, scale, degrees, late):
    size = 64
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = torch.from_numpy(np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (xx + 0.3 * yy)), 0.5 + 0.4 * np.cos(
        2 * np.pi * yy), 0.8 * xx + 0.1])).float()[None]
    reference = _lucent_chain(img, jitter, scale, degrees, late, size)[..., 16:-16, 16:-16]

    def ours(angle):
        theta = affine(np.array([jitter]), np.array([scale]), np.array([angle], float), np.array([late]), size)
        return warp(img, torch.from_numpy(theta), size)[..., 16:-16, 16:-16]

    error = (ours(degrees) - reference).abs().mean().item()
    assert error < 2e-3
    if degrees:  # the rotation's direction matters
        assert (ours(-degrees) - reference).abs().mean().item() > 10 * error


def test_official_writer_normalisation():
    x = torch.tensor([0.2, 0.3, 0.6, 0.2]).view(1, 1, 2, 2).repeat(1, 3, 1, 1)
    x[0, 2, 0, 0] = 0.25
    out = to_uint8(x)
    assert out.shape == (1, 2, 2, 3)
    assert out[0, :, :, 0].ravel().tolist() == [0, 63, 255, 0]  # floor(255 * (x - min) / (max - min))
    assert out[0, 0, 0].tolist() == [0, 0, 31]


def test_deadleaves_encoder_from_a_moco_checkpoint(moco_checkpoint):
    path, net = moco_checkpoint
    m = get("featurevis-deadleaves", encoder=str(path), **TINY)
    loaded, channels = m.network(0)
    assert channels == 512 and all(torch.equal(loaded.state_dict()[k], v) for k, v in net.state_dict().items()
                                   if not k.startswith("fc."))
    images = m.sample(0, [0, 1], 32, CPU)
    np.testing.assert_array_equal(m.sample(0, [1], 32, CPU)[0], images[1])
    assert not np.array_equal(images, get("featurevis-random", **TINY).sample(0, [0, 1], 32, CPU))
    params = m.params()
    assert params["encoder"] == str(path) and len(params["encoder_sha256"]) == 64 and "batch" not in params


def test_bad_options_raise_one_clear_error(tmp_path):
    with pytest.raises(PixforgeError, match="MoCo v2 on dead-leaves-shapes.*--encoder PATH.*pretrain --data"):
        get("featurevis-deadleaves")
    with pytest.raises(PixforgeError, match="takes no --encoder"):
        get("featurevis-random", encoder="x.pth")
    with pytest.raises(PixforgeError, match="missing.pth does not exist"):
        get("featurevis-deadleaves", encoder=str(tmp_path / "missing.pth"))
    for options, message in [({"arch": "vgg16"}, "--arch"), ({"units": "three"}, "--units"),
                             ({"steps": 0}, "--steps"), ({"lr": -1.0}, "--lr"), ({"paper_alpha": True}, "no option")]:
        with pytest.raises(PixforgeError, match=message):
            get("featurevis-random", **options)
    m = get("featurevis-random", **TINY)
    for size in (16, 33, 2048):
        with pytest.raises(PixforgeError, match="even sizes from 32 to 1024"):
            m.check_size(size)
    with pytest.raises(PixforgeError, match="--layer 'layer9' is not a module of resnet18"):
        get("featurevis-random", layer="layer9", **TINY).check_size(32)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00" * 10)
    with pytest.raises(PixforgeError, match="corrupt.pth"):
        get("featurevis-deadleaves", encoder=str(corrupt), **TINY).check_size(32)


def test_cli_generate_and_missing_encoder(tmp_path):
    from pixforge.spectra.cli import Spectra

    summary = json.loads(Spectra().generate("featurevis-random", n=2, size=32, out=str(tmp_path / "fv"),
                                            arch="resnet18", steps=3, units="single", quiet=True))
    assert summary["generated"] == 2
    manifest = json.loads((tmp_path / "fv" / "manifest.json").read_text())
    assert manifest["params"]["steps"] == 3 and manifest["params"]["units"] == "single"
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "pixforge.spectra.cli", "generate", "featurevis-deadleaves",
                             "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 2 and "--encoder PATH" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.cuda
def test_cuda_optimisation_raises_the_units():
    m = get("featurevis-random", arch="resnet18", steps=12, transforms=False, batch=3)
    images, history = m.optimize(3, [0, 700, 90000], 32, torch.device("cuda"))
    assert images.shape == (3, 3, 32, 32) and images.device.type == "cpu"
    assert np.all(history[:, -1] > 3 * history[:, 0])
