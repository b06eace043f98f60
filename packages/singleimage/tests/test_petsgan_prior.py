"""PetsGAN's external prior: a tiny StyleGAN2 in pixforge-core's format, inversion, jitter, a tiny run; bad input."""

import pytest
import torch

from pixforge.core.checkpoint import save_release
from pixforge.core.nets.stylegan2 import Generator
from pixforge.export.command import invoke
from pixforge.singleimage.cli import SingleImage
from pixforge.singleimage.sample import load_model
from pixforge.singleimage.stylegan2_prior import invert, jitter, mean_w
from pixforge.singleimage.train import train

KWARGS = {"z_dim": 8, "w_dim": 8, "img_resolution": 16, "img_channels": 3, "mapping_kwargs": {"num_layers": 2},
          "synthesis_kwargs": {"channel_base": 128, "channel_max": 16}}


def _tiny_stylegan2(folder):
    """A random tiny generator saved as a finished pixforge-core StyleGAN2 run (model.safetensors + model.json)."""
    torch.manual_seed(0)
    G = Generator(**KWARGS).eval()
    save_release(folder, G, {"arch": "stylegan2", "generator": KWARGS})
    return G


def test_inversion_reconstructs_a_synthesis_and_jitter_spreads_around_it(tmp_path):
    G = _tiny_stylegan2(tmp_path)
    w_mean = mean_w(G, seed=0)
    with torch.no_grad():
        w_true = G.mapping(torch.randn(1, 8, generator=torch.Generator().manual_seed(5)), None)[:, 0]
        target = G.synthesis(w_true[:, None].expand(-1, G.num_ws, -1), noise_mode="const")

    def error(w):
        with torch.no_grad():
            return (G.synthesis(w[:, None].expand(-1, G.num_ws, -1), noise_mode="const") - target).pow(2).mean()

    w_star = invert(G, target, w_mean, steps=100)
    assert error(w_star) < 0.25 * error(w_mean)  # the inversion gets much closer than the centre of W
    samples = jitter(G, w_star, w_mean, 10, (12, 20), seed=1)
    assert samples.shape == (10, 3, 12, 20)
    assert samples.std(0).mean() > 1e-3  # perturbed, not copies


def test_tiny_run_with_a_stylegan2_prior(tmp_path, image_file):
    _tiny_stylegan2(tmp_path / "sg2")
    run = train(str(image_file), str(tmp_path / "p"), method="petsgan", prior="stylegan2",
                prior_model=str(tmp_path / "sg2"), prior_samples=5, downscale=2, warmup_g=2, warmup_f=2, joint=2,
                batch_g=4, augment=6, g_dim=8, ir_dim=8, d_dim=8, device="cpu", quiet=True)
    assert load_model(run).sample(2).shape == (2, 3, 30, 40)


@pytest.mark.parametrize("content", [b"not a torch file", None])
def test_a_prior_of_the_wrong_format_is_one_line_and_exit_2(tmp_path, capsys, image_file, content):
    bad = tmp_path / "prior.pt"
    if content is None:  # a real PyTorch file, but not a pixforge StyleGAN2 checkpoint
        torch.save({"G": torch.zeros(3)}, bad)
    else:
        bad.write_bytes(content)
    capsys.readouterr()
    code = invoke(SingleImage, ["train", str(image_file), "--out", str(tmp_path / "run"), "--method", "petsgan",
                                "--prior", "stylegan2", "--prior-model", str(bad)], "pixforge-singleimage")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "prior.pt" in lines[0], lines
    assert not (tmp_path / "run").exists()
