"""The torch inference graph `swap` runs (`export.InferenceGraph`: sub-pixel upsampling, in-place activations, one
appearance code per reference crop, chunks, channels_last) computes the exported `SwapGraph` up to float rounding."""

import copy

import pytest
import torch

from pixforge.dfvae.blocks import Up
from pixforge.dfvae.export import InferenceGraph, SubPixelUp, SwapGraph, inputs
from pixforge.dfvae.nets import DFVAE, DFVAEConfig

TOLERANCE = 1e-4  # absolute, on outputs in [-1, 1] (measured ~1e-7)


def _model(resolution: int, seed: int = 0) -> DFVAE:
    torch.manual_seed(seed)
    model = DFVAE(DFVAEConfig(resolution=resolution, width=8, max_width=32, structure_channels=8, appearance_dim=16,
                              fusion_width=8)).eval().requires_grad_(False)
    for p in model.parameters():  # livelier than the default init: the face, not the blend, dominates the output
        p.mul_(2.0)
    return model


@pytest.mark.parametrize("shape", [(1, 5, 1, 1), (3, 6, 8, 8), (2, 4, 5, 7)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_sub_pixel_up_equals_upsample_then_convolve(shape, channels_last):
    torch.manual_seed(0)
    n, cin, h, w = shape
    up = Up(cin, 3).eval()
    fast = SubPixelUp(up)
    x = torch.randn(n, cin, h, w)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x, fast = x.contiguous(memory_format=layout), fast.to(memory_format=layout)  # as InferenceGraph / the export
    with torch.inference_mode():
        want, got = up(x), fast(x)
    assert got.shape == want.shape == (n, 3, 2 * h, 2 * w)
    assert got.is_contiguous(memory_format=layout)  # the layout stays (no transposing copies between layers)
    assert (got - want).abs().max() < 1e-5 * max(1.0, want.abs().max().item())


@pytest.mark.parametrize("resolution", [32, 64])
def test_inference_graph_equals_the_exported_graph(resolution):
    model = _model(resolution)
    before = copy.deepcopy(model.state_dict())
    plain, fast = SwapGraph(model), InferenceGraph(model)
    fast.chunk = 2  # chunks of 2 faces over a batch of 5
    target, heatmaps, reference, mask = inputs(5, resolution)
    same = reference[1:2].expand(5, -1, -1, -1).clone()
    other = reference[3:4].expand(5, -1, -1, -1).clone()
    with torch.inference_mode():
        for ref in (reference, same, same, other, reference[:3]):  # per-face crops, one crop (cached), a new crop
            n = ref.shape[0]
            want = plain(target[:n], heatmaps[:n], ref, mask[:n])
            got = fast(target[:n], heatmaps[:n], ref, mask[:n])
            assert got.shape == want.shape
            assert (got - want).abs().max() < TOLERANCE
            assert (want - target[:n]).abs().max() > 0.1  # the comparison is not of the target with itself
    # the trained model is left as it was: weights, layout, modules
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.is_contiguous() for p in model.parameters())
    assert any(isinstance(m, Up) for m in model.modules())
    assert not any(isinstance(m, Up) for m in fast.modules())


def test_inference_graph_chunks_by_resolution():
    assert InferenceGraph(DFVAE(DFVAEConfig(resolution=128))).chunk == 4
    assert InferenceGraph(DFVAE(DFVAEConfig(resolution=32, width=8, max_width=16, fusion_width=8))).chunk == 256


@pytest.mark.parametrize("device, calls", [("cpu", 3), ("meta", 1)])
def test_inference_graph_chunks_on_the_cpu_only(device, calls):
    """On a CPU a batch of 5 runs in chunks of 2 (3 decoder passes); elsewhere (the meta device stands for a GPU,
    whose caching allocator makes the chunks a loss) whole, in one."""
    fast = InferenceGraph(_model(32)).to(device)
    fast.chunk = 2
    codes = torch.zeros(5, fast.model.config.appearance_dim, device=device)
    fast.appearance = lambda reference: codes[:reference.shape[0]]  # the cache compares values: none on meta
    passes = []
    fast.model.decoder.register_forward_hook(lambda module, args, out: passes.append(out.shape[0]))
    target, heatmaps, reference, mask = (x.to(device) for x in inputs(5, 32))
    with torch.inference_mode():
        out = fast(target, heatmaps, reference, mask)
    assert out.shape == (5, 3, 32, 32) and out.device.type == device
    assert len(passes) == calls and sum(passes) == 5


def test_session_runs_the_inference_graph(tmp_path):
    import numpy as np

    from pixforge.dfvae.export import graph, session
    from pixforge.dfvae.model import Trained

    model = _model(32)
    trained = Trained(model, vars(model.config), ["a"], {"padding": 0.25}, tmp_path, None)
    sess = session(trained, torch.device("cpu"))
    assert isinstance(sess.module, InferenceGraph)
    feeds = dict(zip(("target", "heatmaps", "reference", "mask"), (x.numpy() for x in inputs(3, 32)), strict=True))
    with torch.inference_mode():
        want = graph(trained).module(*(torch.from_numpy(feeds[k]) for k in ("target", "heatmaps", "reference",
                                                                           "mask")))
    assert np.abs(sess.run(feeds)["swapped"] - want.numpy()).max() < TOLERANCE


def test_swapper_through_the_session_equals_the_plain_graph(tmp_path, synthetic_landmarks):
    """`Swapper` + `session` (channels-last heatmaps from the `Aligner`, no C-order copy) gives the crops that the
    exported graph run plainly gives (uint8, within 1)."""
    import numpy as np

    from pixforge.core.session import TorchSession
    from pixforge.dfvae.export import graph, session
    from pixforge.dfvae.heatmaps import landmark_heatmaps
    from pixforge.dfvae.model import Trained
    from pixforge.dfvae.pipeline import Aligner, Swapper

    model = _model(32)
    trained = Trained(model, vars(model.config), ["a"], {"padding": 0.25}, tmp_path, None)
    rng = np.random.default_rng(0)
    aligner = Aligner(32, 0.25)
    jobs = []
    for k, points in enumerate(synthetic_landmarks(3, 96, seed=1).numpy()):
        frame = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
        jobs.append(aligner(frame, points, k))
    job = jobs[0]
    assert job.heatmaps.shape == (68, 32, 32) and job.heatmaps.strides[0] == 4  # channels last in memory
    np.testing.assert_array_equal(job.heatmaps, landmark_heatmaps(torch.from_numpy(job.landmarks)[None], 32,
                                                                  aligner.sigma)[0].numpy())
    g = graph(trained)
    plain = TorchSession(g.module, g.meta, tmp_path, torch.device("cpu"))
    reference = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    fast = Swapper(session(trained, torch.device("cpu")), reference).crops(jobs)
    want = Swapper(plain, reference).crops(jobs)
    for a, b in zip(fast, want, strict=True):
        assert np.abs(a.astype(int) - b).max() <= 1
    assert any(np.abs(a.astype(int) - j.crop).max() > 8 for a, j in zip(want, jobs, strict=True))


def test_swapper_pastes_the_face_with_the_blurred_mask_once(synthetic_landmarks):
    """The network returns m^b·face + (1 - m^b)·aligned target (its fusion); the frame must get a·face + (1 - a)·frame
    (a = m^b warped back, the thesis' one blend), not a²·face plus the resampled target."""
    import numpy as np

    from pixforge.core.faces import paste_back
    from pixforge.dfvae.pipeline import Aligner, Swapper

    class RedFace:  # the network's fusion with a pure red face
        def run(self, feeds):
            red = np.array([1.0, -1.0, -1.0], np.float32).reshape(1, 3, 1, 1)
            return {"swapped": feeds["mask"] * red + (1 - feeds["mask"]) * feeds["target"]}

    frame = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    job = Aligner(64, 0.25)(frame, synthetic_landmarks(1, 128, seed=2).numpy()[0], 0)
    swapper = Swapper(RedFace(), np.zeros((64, 64, 3), np.uint8), color_match=False)
    out = Swapper.paste(frame, [job], swapper.crops([job])).astype(float)
    # a = the warped mask (core's premultiplied paste of 255·m^b; the plain paste of white would be darkened where
    # the bilinear footprint leaves the crop, as m^b reaches the crop's border here)
    alpha = paste_back(np.zeros((128, 128, 1), np.uint8), 255 * job.mask[..., None], job.matrix, job.mask,
                       premultiplied=True)[..., :1] / 255.0
    want = alpha * [255.0, 0, 0] + (1 - alpha) * frame
    band = (alpha[..., 0] > 0.05) & (alpha[..., 0] < 0.95)
    assert band.sum() > 100 and (alpha[..., 0] > 0.95).sum() > 100
    assert np.abs(out - want)[band].max() <= 2.5 and np.abs(out - want)[alpha[..., 0] > 0.95].max() <= 2.5
