"""PetsGAN's official post-processing: TTSR refinement (not trained, VGG19 conv1_1 features) and the hrnet stage."""

import pytest
import torch
from safetensors.torch import load_file

from pixforge.core.loop import read_metrics
from pixforge.export.errors import PixforgeError
from pixforge.singleimage.highres import HRNet, TTSRRefiner, fold_divisor
from pixforge.singleimage.sample import load_model, sample
from pixforge.singleimage.train import train


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A torchvision-layout VGG19 state dict holding conv1_1 only (random): all the refiner reads."""
    gen = torch.Generator().manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save({"features.0.weight": torch.randn(64, 3, 3, 3, generator=gen) * 0.3,
                "features.0.bias": torch.zeros(64)}, path)
    return path


def test_refiner_shapes_and_reference_is_a_fixed_point(vgg_file):
    refiner = TTSRRefiner(vgg_file, kernel=5, rounds=2)
    gen = torch.Generator().manual_seed(1)
    ref = torch.rand(1, 3, 12, 16, generator=gen) * 2 - 1
    x = torch.rand(2, 3, 12, 16, generator=gen) * 2 - 1
    out = refiner(x, ref)
    assert out.shape == x.shape and out.min() >= -1 - 1e-6 and out.max() <= 1 + 1e-6
    # each window of the reference matches itself (cosine 1): the reference comes back
    assert torch.allclose(refiner(ref, ref), ref, atol=1e-5)
    # chunked search = one matrix
    whole = TTSRRefiner(vgg_file, kernel=5, rounds=2, chunk=10**6)
    assert torch.equal(TTSRRefiner(vgg_file, kernel=5, rounds=2, chunk=7).search(x, ref), whole.search(x, ref))
    assert fold_divisor((12, 16), 5, 2).min() > 0


def test_refiner_bad_input(tmp_path, vgg_file):
    with pytest.raises(PixforgeError, match="needs VGG19 weights"):
        TTSRRefiner(None)
    with pytest.raises(PixforgeError, match="nothing is downloaded"):
        TTSRRefiner("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth")
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3)}, tmp_path / "other.pth")
    with pytest.raises(PixforgeError, match="not a torchvision VGG19"):
        TTSRRefiner(tmp_path / "other.pth")
    with pytest.raises(PixforgeError, match="N x 3 x H x W"):
        TTSRRefiner(vgg_file)(torch.zeros(1, 1, 8, 8), torch.zeros(1, 3, 8, 8))


@pytest.mark.parametrize("factor", [2, 4])
def test_hrnet_shapes(factor):
    out = HRNet(8, factor)(torch.zeros(2, 3, 6, 10))
    assert out.shape == (2, 3, 6 * factor, 10 * factor)


HR_RUN = {"method": "petsgan", "downscale": 2, "warmup_g": 1, "warmup_f": 1, "joint": 1, "batch_g": 4,
          "augment": 4, "g_dim": 8, "ir_dim": 8, "d_dim": 8, "hr_factor": 2, "hr_steps": 12, "log_every": 1,
          "ckpt_every": 1, "keep_last": 100, "device": "cpu", "quiet": True}


def test_hr_stage_trains_resumes_and_samples(tmp_path, image_file, vgg_file, logged):
    run = train(str(image_file), str(tmp_path / "p"), **HR_RUN)
    rows = [r for r in read_metrics(run / "metrics.jsonl") if r["phase"] == 3]
    loss = [r["hr_rec"] for r in rows]
    assert len(loss) == 12 and sum(loss[-3:]) < sum(loss[:3]), loss  # hrnet's MSE falls
    assert "phase-hr.png" in {p.name for p in (run / "samples").iterdir()}
    straight, straight_log = load_file(run / "model.safetensors"), logged(run)
    assert [r["step"] for r in straight_log] == list(range(1, 16))  # 3 PetsGAN steps, 12 hrnet steps
    # resumed inside the hrnet stage (as if killed after checkpoint 6, the log holding later steps): the same, bit
    # for bit, and only the steps after 6 trained again (training from step 0 would end on the same weights), each
    # logged once
    for ckpt in (run / "checkpoints").iterdir():
        if int(ckpt.stem.split("-")[1]) > 6:
            ckpt.unlink()
    train(str(image_file), str(run), resume=True, **HR_RUN)
    resumed = load_file(run / "model.safetensors")
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert logged(run) == straight_log

    later = train(str(image_file), str(tmp_path / "q"), **{**HR_RUN, "hr_factor": 1})  # finished without the stage,
    assert [r["step"] for r in logged(later)] == [1, 2, 3]
    train(str(image_file), str(later), resume=True, **HR_RUN)  # then continued with it: the same as straight
    resumed = load_file(later / "model.safetensors")
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert logged(later) == straight_log  # the continuation trained the hrnet steps 4-15 only

    model = load_model(run)
    assert model.hr_factor == 2 and model.image.shape == (1, 3, 30, 40)
    up = sample(str(run), n=2, hr=True)
    assert up.name == "generated-60x80" and len(list(up.glob("sample-*.png"))) == 2
    both = sample(str(run), n=1, size="20x30", refine=True, hr=True, vgg=str(vgg_file))
    assert both.name == "generated-40x60-refined"
    from pixforge.core.io import read_image

    assert read_image(both / "sample-0000.png").shape[:2] == (40, 60)
    assert sample(str(run), n=1, refine=True, vgg=str(vgg_file)).name == "generated-30x40-refined"


def test_refine_and_hr_bad_input_write_nothing(tmp_path, image_file, singan_run):
    run = train(str(image_file), str(tmp_path / "p"), **{**HR_RUN, "hr_factor": 1, "ckpt_every": 100})
    with pytest.raises(PixforgeError, match="no hrnet stage"):
        sample(str(run), n=1, hr=True)
    with pytest.raises(PixforgeError, match="needs VGG19 weights"):
        sample(str(run), n=1, refine=True)
    with pytest.raises(PixforgeError, match="PetsGAN options"):
        sample(str(singan_run), n=1, refine=True)
    assert not [p for p in run.iterdir() if p.name.startswith("generated")]
    with pytest.raises(PixforgeError, match="--hr-factor"):
        train(str(image_file), str(tmp_path / "q"), **{**HR_RUN, "hr_factor": 3})
    assert not (tmp_path / "q").exists()
