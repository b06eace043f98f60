"""The frame distortions against outputs of the official DeeperForensics-1.0 functions (fixtures), and the
batched torch path against the reference path."""

from __future__ import annotations

import hashlib
import math
import platform

import cv2
import numpy as np
import pytest
import torch

from pixforge.forensics import batch
from pixforge.forensics import distortions as D
from pixforge.forensics.distortions import FRAME_TYPES, PARAMS, Randomness, block_count, distort
from pixforge.forensics.resample import gaussian_kernel

CASES = [(kind, level) for kind in FRAME_TYPES for level in range(1, 6)]
# The fixtures were made where OpenCV's float colour conversions fuse multiply-adds (x86-64 with FMA3). Elsewhere
# (e.g. OPENCV_CPU_DISABLE=AVX512-SKX,AVX2,FMA3,FP16,AVX) the official CS and GNC themselves round a few values
# differently, and so does pixforge, which follows the OpenCV it runs on (tests below compare on this machine).
FUSED = platform.machine().lower() in ("x86_64", "amd64") and cv2.checkHardwareSupport(12)  # CV_CPU_FMA3


def _assert_official(frame, expected, kind, what):
    if FUSED or kind not in ("CS", "GNC"):
        assert np.array_equal(frame, expected), f"{what}: {(frame != expected).sum()} values differ"
    else:
        diff = np.abs(frame.astype(int) - expected)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, what


def _frames(image, kind, level, seed, count):
    randomness = Randomness(seed, exact=True)  # == random.seed(seed); np.random.seed(seed)
    return [distort(image, kind, level, randomness) for _ in range(count)]


@pytest.mark.parametrize("kind,level", CASES)
def test_small_image_matches_official_bit_for_bit(official, kind, level):
    ref, meta, inputs = official
    case = meta["cases"][f"small/{kind}/{level}"]
    for i, frame in enumerate(_frames(inputs["small"], kind, level, case["seed"], case["frames"])):
        expected = ref[f"small/{kind}/{level}/{i}"]
        assert frame.dtype == np.uint8 and frame.shape == expected.shape
        _assert_official(frame, expected, kind, f"{kind}:{level} frame {i}")


@pytest.mark.parametrize("kind,level", CASES)
def test_large_image_matches_official_bit_for_bit(official, kind, level):
    ref, meta, inputs = official
    case = meta["cases"][f"large/{kind}/{level}"]
    for i, frame in enumerate(_frames(inputs["large"], kind, level, case["seed"], case["frames"])):
        name = f"large/{kind}/{level}/{i}"
        _assert_official(frame[100:124, 120:144], ref[f"{name}/crop"], kind, name)
        if FUSED or kind not in ("CS", "GNC"):
            assert hashlib.sha256(frame.tobytes()).digest() == ref[f"{name}/sha256"].tobytes()


def test_block_wise_does_nothing_below_256_and_scales_above(official):
    _, _, inputs = official
    small = inputs["small"]
    assert np.array_equal(distort(small, "BW", 5, Randomness(0)), small)
    assert block_count(1080, 1920, 1) == 4 * 16 and block_count(255, 4000, 5) == 0
    large = distort(inputs["large"], "BW", 1, Randomness(0))
    assert (large != inputs["large"]).any(axis=2).sum() <= 16 * 64


def test_random_streams_continue_frame_to_frame(official):
    _, _, inputs = official
    first, second = _frames(inputs["large"], "GNC", 3, 5, 2)
    assert not np.array_equal(first, second)
    fast = Randomness(5, exact=False)
    assert np.array_equal(distort(inputs["large"], "GNC", 3, fast),
                          distort(inputs["large"], "GNC", 3, Randomness(5, exact=False)))


@pytest.mark.parametrize("level", range(1, 6))
def test_fast_saturation_equals_the_official_arithmetic_on_every_colour(level):
    """The float32 affine path (plus its exact fallback near integers) against the official arithmetic
    (OpenCV's float conversions), on all 2**24 RGB colours, in four slices to bound memory."""
    colours = np.arange(1 << 24, dtype=np.uint32).view(np.uint8).reshape(4096, 4096, 4)[..., :3]
    p = np.float32(PARAMS["CS"][level - 1])
    for part in np.split(colours, 4):
        part = np.ascontiguousarray(part)
        assert np.array_equal(D.color_saturation(part, level), D.color_saturation_official(part, p))
    bgr = np.ascontiguousarray(colours[::16])  # BGR order: the same map with the channels swapped
    assert np.array_equal(D.color_saturation(bgr, level, "bgr"), D.color_saturation_official(bgr, p, "bgr"))


def _official_gnc(img_bgr, param):
    """The official `gaussian_noise_color` (distortions.py), whole frame, its helpers inlined."""
    x = cv2.cvtColor(img_bgr.astype(np.float32), cv2.COLOR_BGR2YCR_CB)[:, :, (0, 2, 1)].astype(np.float32)
    x[:, :, 0] = (x[:, :, 0] * (235 - 16) + 16) / 255.0
    x[:, :, 1:] = (x[:, :, 1:] * (240 - 16) + 16) / 255.0
    b = (x / 255 + math.sqrt(param) * np.random.randn(*x.shape)) * 255
    b = b.astype(np.float32)
    b[:, :, 0] = (b[:, :, 0] * 255.0 - 16) / (235 - 16)
    b[:, :, 1:] = (b[:, :, 1:] * 255.0 - 16) / (240 - 16)
    b = cv2.cvtColor(b[:, :, (0, 2, 1)].astype(np.float32), cv2.COLOR_YCR_CB2BGR)
    return np.clip(b, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(37, 53, 3), (9, 4095, 3), (300, 517, 3)])
def test_exact_noise_is_the_official_arithmetic_on_this_machine(shape):
    """Blocks of rows, RGB or BGR, frame after frame: the official function's values, whatever OpenCV's code
    path (no fixture: the official code runs here)."""
    frame = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    for level in (1, 5):
        np.random.seed(level)
        expected = [_official_gnc(frame[..., ::-1].copy(), PARAMS["GNC"][level - 1])[..., ::-1] for _ in range(2)]
        rgb, bgr = Randomness(level), Randomness(level)
        for want in expected:
            assert np.array_equal(distort(frame, "GNC", level, rgb), want)
            assert np.array_equal(distort(frame[..., ::-1].copy(), "GNC", level, bgr, "bgr")[..., ::-1], want)


@pytest.mark.parametrize("kind", FRAME_TYPES)
def test_in_place_gives_the_same_frame_and_plain_calls_leave_the_input_alone(kind):
    frame = np.random.default_rng(4).integers(0, 256, (300, 260, 3), dtype=np.uint8)
    original = frame.copy()
    expected = distort(frame, kind, 4, Randomness(1))
    assert np.array_equal(frame, original) and not np.array_equal(expected, original)
    assert np.array_equal(distort(frame, kind, 4, Randomness(1), inplace=True), expected)


def test_contrast_table_equals_the_float_product_on_every_value():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    for level, factor in enumerate(PARAMS["CC"], start=1):
        official = (values.astype(np.float32) * np.float32(factor)).astype(np.uint8)
        assert np.array_equal(distort(values, "CC", level), official)


def test_fast_noise_path_matches_the_exact_one_and_is_normal(official):
    _, _, inputs = official
    image = inputs["large"]
    noise = np.random.RandomState(4).randn(*image.shape)
    for level in (1, 5):  # same noise values, float32 affine vs OpenCV's arithmetic: within one grey level
        fast = D.gaussian_noise_color(image, level, noise=noise.astype(np.float32))
        exact = D.gaussian_noise_color(image, level, noise=noise)
        assert np.abs(fast.astype(int) - exact).max() <= 1 and (fast != exact).mean() < 0.01
    draws = D.gnc_noise(np.random.default_rng(0), (512, 512, 3))
    assert draws.dtype == np.float32 and abs(draws.mean()) < 0.01 and abs(draws.std() - 1) < 0.01
    assert abs(np.mean(np.abs(draws) > 2) - 0.0455) < 0.002  # the two-sided 2-sigma tail of a normal
    zero = np.zeros(image.shape, np.float32)
    assert np.abs(D.gaussian_noise_color(image, 3, noise=zero).astype(int) - image).max() <= 1


def test_gaussian_kernels_are_opencvs_fixed_point():
    assert gaussian_kernel(7).tolist() == [3, 20, 61, 88, 61, 20, 3]
    for size in (7, 9, 13, 17, 21):
        assert gaussian_kernel(size).sum() == 256 and len(gaussian_kernel(size)) == size


def _to_batch(image):
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()


def _to_image(x):
    return x[0].permute(1, 2, 0).round().to(torch.uint8).numpy()


@pytest.mark.parametrize("kind,level", CASES)
@pytest.mark.parametrize("key", ["small", "large"])
def test_torch_batch_path_within_one_grey_level(official, kind, level, key):
    _, _, inputs = official
    image = inputs[key]
    randomness = Randomness(3)
    if kind == "GNC":
        noise = np.random.RandomState(3).randn(*image.shape)
        out = batch.gaussian_noise_color(_to_batch(image), level, noise=torch.from_numpy(noise).permute(2, 0, 1)[None])
    elif kind == "BW":
        count = block_count(*image.shape[:2], level)
        spots = [(randomness.python.randint(0, image.shape[1] - 9), randomness.python.randint(0, image.shape[0] - 9))
                 for _ in range(count)]
        out = batch.block_wise(_to_batch(image), level, positions=torch.tensor(spots).view(1, count, 2))
        randomness = Randomness(3)
    else:
        out = batch.distort_batch(_to_batch(image), kind, level)
    expected = distort(image, kind, level, randomness)
    diff = np.abs(_to_image(out).astype(int) - expected)
    assert diff.max() <= 1
    if kind in ("CC", "BW", "GB", "JPEG"):
        assert diff.max() == 0


def test_torch_batch_path_is_differentiable(official):
    _, _, inputs = official
    x = _to_batch(inputs["small"]).requires_grad_(True)
    for kind in ("CS", "CC", "GNC", "GB", "JPEG"):
        out = batch.distort_batch(x, kind, 3, generator=torch.Generator().manual_seed(0), differentiable=True)
        (grad,) = torch.autograd.grad(out.mean(), x)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, kind
        assert (out - batch.distort_batch(x.detach(), kind, 3, generator=torch.Generator().manual_seed(0))
                ).abs().max() <= 1.0 + 1e-4, kind


@pytest.mark.cuda
@pytest.mark.parametrize("kind", FRAME_TYPES)
def test_cuda_matches_cpu(official, kind):
    _, _, inputs = official
    x = _to_batch(inputs["large"]).repeat(2, 1, 1, 1)
    cpu = batch.distort_batch(x, kind, 4, generator=torch.Generator().manual_seed(1))
    gpu = batch.distort_batch(x.cuda(), kind, 4, generator=torch.Generator().manual_seed(1)).cpu()
    assert (cpu - gpu).abs().max() <= 1.0


@pytest.mark.cuda
@pytest.mark.parametrize("kind", ["BW", "GNC"])
def test_a_cuda_generator_draws_on_the_gpu(kind):
    x = torch.randint(0, 256, (2, 3, 64, 64), device="cuda").float()
    a = batch.distort_batch(x, kind, 4, generator=torch.Generator("cuda").manual_seed(1))
    b = batch.distort_batch(x, kind, 4, generator=torch.Generator("cuda").manual_seed(1))
    assert a.device == x.device and torch.equal(a, b) and not torch.equal(a, x)


@pytest.mark.parametrize("differentiable", [False, True])
@pytest.mark.parametrize("kind", FRAME_TYPES)
def test_batch_path_keeps_every_tensor_on_the_input_device(kind, differentiable):
    """The meta device stands in for CUDA: a helper tensor made on the CPU (kernels, taps, masks) raises there."""
    x = torch.empty(2, 3, 64, 48, device="meta")
    out = batch.distort_batch(x, kind, 3, generator=torch.Generator().manual_seed(0), differentiable=differentiable)
    assert out.device == x.device and out.shape == x.shape


@pytest.mark.parametrize("shape", [(37, 53, 3), (9, 4095, 3), (1, 1, 3)])
def test_row_blocks_of_any_frame_shape_give_the_same_colours(shape):
    """CS, CC and GNC work on blocks of rows, 4 pixels to a matrix row where the block allows it and 1 where
    it does not (odd sizes, the last block): every shape gives the whole-frame arithmetic's result."""
    frame = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    p = np.float32(PARAMS["CS"][1])
    assert np.array_equal(D.color_saturation(frame, 2), D.color_saturation_official(frame, p))
    factor = np.float32(PARAMS["CC"][2])
    assert np.array_equal(D.color_contrast(frame, 3), (frame.astype(np.float32) * factor).astype(np.uint8))
    noise = np.random.RandomState(2).randn(*shape)
    fast = D.gaussian_noise_color(frame, 4, noise=noise.astype(np.float32))
    assert np.abs(fast.astype(int) - D.gaussian_noise_color(frame, 4, noise=noise)).max() <= 1
