"""The applications (harmonize, edit, paint2image, upscale) on tiny SinGAN and PetsGAN runs; bad input."""

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from pixforge.core.io import write_image
from pixforge.export.command import invoke
from pixforge.singleimage.cli import SingleImage
from pixforge.singleimage.train import train


@pytest.fixture(scope="module")
def petsgan_run(tmp_path_factory, image_file):
    from pixforge.core.datagen import single_thread

    with single_thread():
        return train(str(image_file), str(tmp_path_factory.mktemp("runs") / "pets"), method="petsgan", downscale=2,
                     warmup_g=1, warmup_f=1, joint=1, batch_g=2, augment=2, g_dim=4, ir_dim=4, d_dim=4,
                     device="cpu", quiet=True)


@pytest.fixture
def cli(capsys):
    def call(*args):
        capsys.readouterr()
        code = invoke(SingleImage, [str(a) for a in args], "pixforge-singleimage")
        return SimpleNamespace(returncode=code, stderr=capsys.readouterr().err)

    return call


@pytest.fixture
def user_images(tmp_path):
    """A 45x60 'paste' (another aspect than the 30x40 runs), its mask and a wrongly sized mask."""
    rng = np.random.default_rng(0)
    write_image(tmp_path / "paste.png", rng.integers(0, 256, (45, 60, 3), dtype=np.uint8))
    mask = np.zeros((45, 60, 1), np.uint8)
    mask[10:30, 20:40] = 255
    write_image(tmp_path / "mask.png", np.repeat(mask, 3, -1))
    write_image(tmp_path / "small.png", np.zeros((20, 20, 3), np.uint8))
    return tmp_path


def _size(path):
    with Image.open(path) as img:
        return img.size[::-1]


@pytest.mark.parametrize("which", ["singan_run", "petsgan_run"])
def test_every_application_writes_an_image_of_the_expected_size(request, cli, user_images, which):
    run = request.getfixturevalue(which)
    d = user_images
    for verb, args in (("harmonize", ["--paste", d / "paste.png", "--mask", d / "mask.png"]),
                       ("edit", ["--image", d / "paste.png", "--mask", d / "mask.png"]),
                       ("paint2image", ["--paint", d / "paste.png"])):
        out = d / f"{which}-{verb}.png"
        result = cli(verb, "--run", run, *args, "--out", out)
        assert result.returncode == 0, result.stderr
        assert _size(out) == (30, 40)  # the training size
    result = cli("upscale", "--run", run, "--out", d / f"{which}-up.png")
    assert result.returncode == 0, result.stderr
    assert _size(d / f"{which}-up.png") == ((120, 160) if which == "singan_run" else (60, 80))


def test_harmonize_keeps_the_paste_outside_the_mask(singan_run, user_images):
    from pixforge.singleimage.apply import harmonize

    out = harmonize(str(singan_run), str(user_images / "paste.png"), str(user_images / "mask.png"),
                    out=str(user_images / "h.png"))
    result = np.asarray(Image.open(out)).astype(int)
    paste = np.asarray(Image.open(user_images / "paste.png").resize((40, 30), Image.Resampling.BICUBIC)).astype(int)
    assert np.abs(result[:3, :3] - paste[:3, :3]).max() <= 40  # a corner far from the mask: the paste (resampled)


def _one_error_line(result, needle):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and needle in lines[0], result.stderr


def test_bad_input_is_one_line_and_exit_2(cli, singan_run, petsgan_run, user_images):
    d = user_images
    _one_error_line(cli("harmonize", "--run", singan_run, "--paste", d / "paste.png", "--mask", d / "small.png",
                        "--out", d / "x.png"), "same size")
    _one_error_line(cli("edit", "--run", petsgan_run, "--image", d / "paste.png", "--mask", d / "small.png",
                        "--out", d / "x.png"), "same size")
    _one_error_line(cli("paint2image", "--run", singan_run, "--paint", d / "paste.png", "--scale", 99,
                        "--out", d / "x.png"), "--scale")
    _one_error_line(cli("paint2image", "--run", petsgan_run, "--paint", d / "paste.png", "--scale", 1,
                        "--out", d / "x.png"), "--scale")
    _one_error_line(cli("upscale", "--run", petsgan_run, "--factor", 3, "--out", d / "x.png"), "--factor")
    _one_error_line(cli("upscale", "--run", singan_run, "--factor", 0.5, "--out", d / "x.png"), "--factor")
    assert not (d / "x.png").exists()
