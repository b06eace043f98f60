"""pixforge.core.io: tensor <-> image conversion, grids, image folders, embedded images, random crops."""

import numpy as np
import pytest
import torch

from pixforge.core import io
from pixforge.core.io import (
    ImageFolder,
    RandomCrops,
    embedded_images,
    image_to_tensor,
    read_image,
    save_grid,
    tensor_to_image,
    write_image,
)
from pixforge.export.errors import PixforgeError


def noise(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 1.0), (0.0, 255.0)])
def test_tensor_image_round_trip_is_exact(value_range):
    every_value = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    batch = np.stack([every_value, every_value[::-1]])
    tensor = image_to_tensor(batch, value_range)
    assert tensor.shape == (2, 3, 16, 16) and tensor.dtype == torch.float32
    assert tensor.min().item() == pytest.approx(value_range[0]) and tensor.max().item() == pytest.approx(value_range[1])
    np.testing.assert_array_equal(tensor_to_image(tensor, value_range), batch)
    single = image_to_tensor(every_value, value_range)
    assert single.shape == (3, 16, 16)
    np.testing.assert_array_equal(tensor_to_image(single, value_range), every_value)


def test_tensor_to_image_clamps_rounds_and_refuses_nan():
    tensor = torch.tensor([-3.0, -1.0, 0.5, 0.51, 1.0, 7.0]).view(1, 1, 6).expand(3, 1, 6)
    assert tensor_to_image(tensor)[0, :, 0].tolist() == [0, 0, 191, 193, 255, 255]  # 191.25 and 192.6 rounded
    with pytest.raises(PixforgeError, match="NaN"):
        tensor_to_image(torch.full((3, 2, 2), float("nan")))
    with pytest.raises(ValueError):
        image_to_tensor(np.zeros((4, 4, 3), np.float32))


def test_save_grid(tmp_path):
    batch = image_to_tensor(np.stack([noise(8, 10, seed=i) for i in range(5)]))
    path = save_grid(batch, tmp_path / "samples" / "grid.png", nrow=3, pad=2)
    grid = read_image(path)
    assert grid.shape == (2 + 2 * (8 + 2), 2 + 3 * (10 + 2), 3)
    np.testing.assert_array_equal(grid[2:10, 14:24], noise(8, 10, seed=1))
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]


def test_image_folder_recursive_resize_and_crop(tmp_path):
    write_image(tmp_path / "a.png", noise(40, 80))
    write_image(tmp_path / "nested" / "deeper" / "b.jpg", noise(64, 32, seed=1))
    write_image(tmp_path / ".hidden" / "c.png", noise(8, 8))
    data = ImageFolder(tmp_path, size=32)
    assert [p.name for p in data.files] == ["a.png", "b.jpg"]
    for item in data:
        assert item.shape == (3, 32, 32) and item.dtype == torch.float32
        assert -1.0 <= item.min() and item.max() <= 1.0
    rect = ImageFolder(tmp_path, size=(20, 40), crop="random", hflip=True, value_range=(0.0, 1.0))
    assert rect[0].shape == (3, 20, 40) and rect[1].shape == (3, 20, 40) and rect[0].min() >= 0


def test_image_folder_center_crop_without_resize_keeps_pixels(tmp_path):
    image = noise(36, 48)
    write_image(tmp_path / "a.png", image)
    item = ImageFolder(tmp_path, size=(36, 40))[0]
    np.testing.assert_array_equal(tensor_to_image(item), image[:, 4:44])


def test_image_folder_errors_name_the_file(tmp_path):
    write_image(tmp_path / "good.png", noise(16, 16))
    bad = tmp_path / "sub" / "bad.png"
    bad.parent.mkdir()
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    data = ImageFolder(tmp_path, size=8)
    assert len(data) == 2
    with pytest.raises(PixforgeError) as err:
        data[1]
    assert str(bad) in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PixforgeError, match="holds no image files"):
        ImageFolder(tmp_path / "empty", size=8)


def test_embedded_images():
    images = embedded_images(["astronaut", "brick"])
    assert [img.shape for img in images] == [(512, 512, 3), (512, 512, 3)]
    assert all(img.dtype == np.uint8 for img in images)
    assert (images[1][..., 0] == images[1][..., 2]).all()  # gray texture repeated over 3 channels
    assert len(embedded_images()) == len(io.EMBEDDED_IMAGES)
    with pytest.raises(PixforgeError, match="unknown embedded image"):
        embedded_images(["nope"])


def test_random_crops_are_deterministic_per_seed_and_index():
    images = [noise(50, 60, seed=i) for i in range(3)]
    a = RandomCrops(images, size=16, length=1000, seed=7)
    b = RandomCrops(list(images), size=16, length=1000, seed=7)
    other = RandomCrops(images, size=16, length=1000, seed=8)
    assert len(a) == 1000 and a[3].shape == (3, 16, 16)
    assert torch.equal(a[5], b[5]) and torch.equal(a[999], b[999])
    assert torch.equal(a[5], a[5])
    assert not torch.equal(a[5], a[6])
    assert not torch.equal(a[5], other[5])
    with pytest.raises(IndexError):
        a[1000]
    crop = tensor_to_image(a[0])  # each item is a real crop of one of the images, maybe flipped
    found = any((img[y:y + 16, x:x + 16] == c).all()
                for img in images for c in (crop, crop[:, ::-1]) for y in range(35) for x in range(45))
    assert found


def test_random_crops_errors():
    with pytest.raises(PixforgeError, match="smaller than the crop size"):
        RandomCrops([noise(10, 10)], size=16, length=4)
    with pytest.raises(PixforgeError, match="at least one image"):
        RandomCrops([], size=16, length=4)
