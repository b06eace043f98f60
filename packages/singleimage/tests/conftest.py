"""Shared fixtures: a tiny training image and one tiny finished SinGAN run (CPU, one torch thread)."""

import numpy as np
import pytest
from PIL import Image

from pixforge.core.datagen import single_thread as one_thread
from pixforge.core.io import embedded_images, write_image
from pixforge.core.loop import read_metrics
from pixforge.singleimage.train import train

# 30x40 with --min-size 15 --max-size 40: 5 scales of 15x20 ... 30x40 (the official rule), a second or two a run
TINY_SINGAN = {"method": "singan", "min_size": 15, "max_size": 40, "device": "cpu", "quiet": True}


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="session")
def image_file(tmp_path_factory):
    cat = np.asarray(Image.fromarray(embedded_images(["chelsea"])[0]).resize((40, 30), Image.Resampling.BICUBIC))
    path = tmp_path_factory.mktemp("img") / "cat.png"
    write_image(path, cat)
    return path


@pytest.fixture(scope="session")
def singan_run(tmp_path_factory, image_file):
    with one_thread():
        return train(str(image_file), str(tmp_path_factory.mktemp("runs") / "singan"), iters=4, **TINY_SINGAN)


@pytest.fixture
def logged():
    """A run's metrics.jsonl records without their wall-clock times: what a resumed run must log as a straight one."""
    return lambda run: [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(run / "metrics.jsonl")]
