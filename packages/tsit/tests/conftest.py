"""Shared fixtures: tiny image folders, label maps, and one tiny trained style-transfer run.

The networks here are tiny: intra-op threading costs more than it gains on them (about 2x slower with 2 threads on a
busy 2-core machine), so every test and every fixture that trains runs with one torch thread (`one_thread`), restored
afterwards so that other packages' tests in the same session keep their settings.
"""


import numpy as np
import pytest
import torch

from pixforge.core.datagen import single_thread as one_thread
from pixforge.core.io import embedded_images, write_image
from pixforge.core.nets.vgg import VGG19

TINY = {"size": 32, "ngf": 4, "levels": 4, "ndf": 4, "device": "cpu", "quiet": True}


def _crops(names, side):
    out = []
    for img in embedded_images(names):
        h, w = img.shape[:2]
        s = min(h, w)
        crop = img[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2]
        from PIL import Image

        out.append(np.asarray(Image.fromarray(crop).resize((side, side), Image.Resampling.BICUBIC)))
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="session")
def single_thread():
    """The `one_thread` context manager, for fixtures wider than a test (which run before `_one_thread`)."""
    return one_thread


@pytest.fixture(scope="session")
def tiny():
    """Options of a tiny network: 32 px, ngf 4, 4 levels (stride 8), on the CPU."""
    return dict(TINY)


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    """content/ (3 photos, 48 px), style/ (2 textures), and mmis style with two condition subfolders."""
    root = tmp_path_factory.mktemp("data")
    for i, img in enumerate(_crops(["astronaut", "chelsea", "coffee"], 48)):
        write_image(root / "content" / f"c{i}.png", img)
    for i, img in enumerate(_crops(["brick", "grass"], 48)):
        write_image(root / "style" / f"s{i}.png", img)
        write_image(root / "conditions" / ("warm" if i == 0 else "cold") / f"s{i}.png", img)
    return root


@pytest.fixture(scope="session")
def labels(tmp_path_factory):
    """labels/ (PNG class ids 0..3, 32 px) and images/ with matching names."""
    root = tmp_path_factory.mktemp("sis")
    rng = np.random.default_rng(0)
    for i, img in enumerate(_crops(["astronaut", "chelsea"], 32)):
        lab = np.zeros((32, 32), np.uint8)
        lab[:, 16:] = 1
        lab[rng.integers(0, 16):, :8] = 2 + i
        write_image(root / "labels" / f"x{i}.png", lab)
        write_image(root / "images" / f"x{i}.jpg", img)
    return root


@pytest.fixture(scope="session")
def torch_graph():
    """make(run, code="style", **Pipeline options): the pipeline `translate` runs, the model's exported graph in
    PyTorch on the CPU (`pipe.session.run(pipe.feeds(...))` gives its float outputs, as with an ONNX session)."""
    from pixforge.export.pipeline import Pipeline
    from pixforge.tsit.export import session
    from pixforge.tsit.model import load

    def make(run, code="style", **options):
        return Pipeline(session(load(run), torch.device("cpu"), code=code), **options)

    return make


@pytest.fixture(scope="session")
def vgg_file(tmp_path_factory):
    """Random VGG19 weights saved in torchvision's vgg19 state-dict format."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg19-dcbb9e9d.pth"
    torch.save(VGG19().state_dict(), path)
    return path


@pytest.fixture(scope="session")
def ast_run(tmp_path_factory, folders):
    """A style-transfer run of a few steps (release weights written)."""
    from pixforge.tsit.train import train

    out = tmp_path_factory.mktemp("runs") / "ast"
    with one_thread():
        return train(str(out), content=str(folders / "content"), style=str(folders / "style"), batch=2, steps=3,
                     sample_every=3, ckpt_every=3, **TINY)
