"""SinGAN: the official scale rule, the coarsest-scale reconstruction, exact resume, any-size sampling."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from pixforge.core.loop import read_metrics
from pixforge.export.errors import PixforgeError
from pixforge.singleimage.data import singan_scales
from pixforge.singleimage.sample import load_model
from pixforge.singleimage.singan import Generator, width_at
from pixforge.singleimage.train import train

TINY_SINGAN = {"method": "singan", "min_size": 15, "max_size": 40, "device": "cpu", "quiet": True}


def official_sizes(h, w, min_size=25, max_size=250, r=0.75):
    """tamarott/SinGAN's adjust_scales2image + creat_reals_pyramid, re-typed from its formulas."""
    num_scales = math.ceil(math.log(math.pow(min_size / min(h, w), 1), r)) + 1
    scale2stop = math.ceil(math.log(min([max_size, max([h, w])]) / max([h, w]), r))
    stop_scale = num_scales - scale2stop
    scale1 = min(max_size / max([h, w]), 1)
    h1, w1 = math.ceil(h * scale1), math.ceil(w * scale1)
    factor = math.pow(min_size / min(h1, w1), 1 / stop_scale)
    return [(math.ceil(h1 * math.pow(factor, stop_scale - i)), math.ceil(w1 * math.pow(factor, stop_scale - i)))
            for i in range(stop_scale + 1)], factor


@pytest.mark.parametrize("hw", [(188, 250), (300, 400), (250, 250), (1000, 500), (64, 333), (27, 26)])
def test_scale_pyramid_is_the_official_rule(hw):
    assert singan_scales(*hw) == official_sizes(*hw)


def test_scale_pyramid_known_values():
    sizes, factor = singan_scales(30, 40, min_size=15, max_size=40)
    assert sizes == [(15, 20), (18, 24), (22, 29), (26, 34), (30, 40)]
    assert factor == pytest.approx(0.5 ** 0.25)
    sizes, _ = singan_scales(300, 400)  # longer side above max_size: resized to 188x250 first, 9 scales
    assert len(sizes) == 9 and sizes[-1] == (188, 250) and sizes[0][0] == 25


def test_widths_double_every_four_scales():
    assert [width_at(n) for n in range(14)] == [32] * 4 + [64] * 4 + [128] * 6


def test_too_small_image_names_the_minimum():
    with pytest.raises(PixforgeError, match="at least 25 px"):
        singan_scales(20, 30)


def test_generator_is_residual_and_keeps_the_size():
    g = Generator(8)
    prev = torch.rand(1, 3, 13, 17)
    assert g(torch.zeros_like(prev) + prev, prev).shape == prev.shape


def test_coarsest_scale_reconstruction_improves(tmp_path, image_file):
    run = train(str(image_file), str(tmp_path / "r"), iters=25, log_every=1, min_size=25, max_size=40,
                method="singan", device="cpu", quiet=True)  # 30x40 -> scales 25x34 (coarsest), 30x40
    rec = [m["rec"] for m in read_metrics(run / "metrics.jsonl") if m["scale"] == 0]
    assert len(rec) == 25
    assert sum(rec[-5:]) / 5 < 0.7 * sum(rec[:5]) / 5, rec


def kill_after(run, stop):
    """Leave `run` as a kill after writing checkpoint `stop` and logging the later steps would: the later
    checkpoints and the release gone, metrics.jsonl as it was (a resume drops the records after `stop`)."""
    for ckpt in (run / "checkpoints").iterdir():
        if int(ckpt.stem.split("-")[1]) > stop:
            ckpt.unlink()
    (run / "model.safetensors").unlink()


def test_resume_is_exact(tmp_path, image_file, singan_run, logged):
    """4 iterations x 5 scales straight through == the same run resumed from its checkpoint at step 10 (a scale
    boundary) and at step 6 (inside a scale), bit for bit; the resumed run trains (and logs) only the steps after
    the checkpoint (training from step 0 again would end on the same weights)."""
    straight = load_file(singan_run / "model.safetensors")
    straight_log = logged(singan_run)
    assert [r["step"] for r in straight_log] == [4, 8, 10, 12, 16, 20]  # log_every 10 and every scale's end
    image = json.loads((singan_run / "config.json").read_text())["image"]
    for stop in (10, 6):
        run = tmp_path / f"r{stop}"
        train(image, str(run), iters=4, ckpt_every=1, keep_last=100, **TINY_SINGAN)
        kill_after(run, stop)
        train(image, str(run), iters=4, ckpt_every=1, keep_last=100, resume=True, **TINY_SINGAN)
        resumed = load_file(run / "model.safetensors")
        assert straight.keys() == resumed.keys()
        for key in straight:
            assert torch.equal(straight[key], resumed[key]), (stop, key)
        # every step logged once (the records after `stop` dropped, then logged again), the losses of the straight
        # run's: nothing up to `stop` was trained again
        assert logged(run) == straight_log, stop


def test_any_size_sampling(singan_run):
    model = load_model(singan_run)
    for size in [(30, 40), (20, 64), (48, 24)]:
        out = model.sample(3, size, seed=1)
        assert out.shape == (3, 3, *size)
        assert out.min() >= -1 and out.max() <= 1
    # sample i depends on (seed, i) alone (up to the batch size's float rounding)
    torch.testing.assert_close(model.sample(3, seed=2)[2], model.sample(1, seed=2, first=2)[0], atol=1e-5, rtol=0)


def test_reconstruction_comes_from_z_opt(singan_run):
    model = load_model(singan_run)
    assert all(z.abs().sum() == 0 for z in model.zopts[1:]) and model.zopts[0].abs().sum() > 0
    assert torch.equal(model.zopts[0][:, 0], model.zopts[0][:, 2])  # one channel repeated (official)


def test_sample_grids_per_scale(singan_run):
    names = {p.name for p in (singan_run / "samples").iterdir()}
    assert names == {f"scale-{n:02d}.png" for n in range(5)} | {"final.png"}


def test_official_redraws_z_opt(tmp_path, singan_run):
    image = json.loads((singan_run / "config.json").read_text())["image"]
    run = train(image, str(tmp_path / "o"), iters=4, official=True, **TINY_SINGAN)
    ours, theirs = load_model(singan_run), load_model(run)
    assert not torch.equal(ours.zopts[0], theirs.zopts[0])  # the last of the per-iteration draws
    assert json.loads((run / "config.json").read_text())["official"] is True
