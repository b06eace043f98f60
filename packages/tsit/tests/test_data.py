"""Training-data preprocessing: the official preprocess modes, paired geometry for label maps and images."""

import numpy as np
import pytest
from PIL import Image

from pixforge.core.io import write_image
from pixforge.export.errors import PixforgeError
from pixforge.tsit.data import Geometry, PairedData, UnpairedData, pil_resize

IMG = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)


def test_crop_cuts_without_resizing():
    geo = Geometry((16, 24), "crop", 0, top=0.5, left=0.99)
    y, x = int(0.5 * (40 - 16 + 1)), int(0.99 * (50 - 24 + 1))
    assert np.array_equal(geo.apply(IMG, Image.Resampling.BICUBIC), IMG[y:y + 16, x:x + 24])
    small = Geometry((48, 24), "crop", 0, top=0.3, left=0.0).apply(IMG, Image.Resampling.BICUBIC)
    assert small.shape == (48, 24, 3) and np.array_equal(small[:40], IMG[:, :24]) and not small[40:].any()  # PIL's fill
    flipped = Geometry((16, 24), "crop", 0, top=0.5, left=0.99, flip=True).apply(IMG, Image.Resampling.BICUBIC)
    assert np.array_equal(flipped, IMG[y:y + 16, x:x + 24][:, ::-1])


@pytest.mark.parametrize("mode,resized", [("resize_and_crop", (32, 32)), ("scale_width_and_crop", (25, 32)),
                                          ("scale_shortside_and_crop", (32, 40)), ("fixed", None)])
def test_scaling_modes(mode, resized):
    out = Geometry((16, 24), mode, 32, top=0.0, left=1 - 1e-9).apply(IMG, Image.Resampling.BICUBIC)
    assert out.shape == (16, 24, 3)
    if resized is None:
        assert np.array_equal(out, pil_resize(IMG, (16, 24), Image.Resampling.BICUBIC))
    else:
        full = pil_resize(IMG, resized, Image.Resampling.BICUBIC)
        assert np.array_equal(out, full[:16, full.shape[1] - 24:])  # crop at the right edge


def test_paired_crops_keep_labels_and_images_aligned(tmp_path):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 4, (40, 50), dtype=np.uint8)
    write_image(tmp_path / "labels" / "a.png", ids)
    write_image(tmp_path / "images" / "a.png", np.repeat((ids * 60)[..., None], 3, 2).astype(np.uint8))
    data = PairedData([(tmp_path / "labels" / "a.png", tmp_path / "images" / "a.png")], 4, (16, 24), seed=3,
                      preprocess="crop")
    for i in range(6):
        item = data[i]
        red = ((item["style"][0] + 1) * 127.5).round().long()
        assert item["content"].shape == (16, 24) and np.array_equal(red // 60, item["content"])


def test_bad_preprocess_options(tmp_path):
    with pytest.raises(PixforgeError, match="--preprocess must be one of .*scale_width or none"):
        UnpairedData([], [], (16, 16), preprocess="scale_width")
    with pytest.raises(PixforgeError, match="--load-size 8 is smaller than the 16x16 crop"):
        UnpairedData([], [], (16, 16), preprocess="resize_and_crop", load_size=8)
