"""linear-eval's labelled folders: torchvision's views of the whole image, streamed, seeded, with clear errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from pixforge.export.errors import PixforgeError
from pixforge.export.images import write_image
from pixforge.spectra.lineval import FileSet, center_view, class_folders, crop_box, labelled_data, train_view


def test_crop_box_draws_torchvisions_area_and_aspect_ranges():
    """RandomResizedCrop.get_params: area share uniform in (0.08, 1), aspect log-uniform in (3/4, 4/3), redrawn
    when the box does not fit; the box inside the image and its position uniform over the places it fits."""
    rng = np.random.default_rng(0)
    boxes = np.array([crop_box(300, 300, rng) for _ in range(4000)])
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 300).all() and (left + w <= 300).all()
    share, aspect = h * w / 300**2, w / h
    assert share.min() > 0.075 and share.max() <= 1.0
    assert aspect.min() > 0.74 and aspect.max() < 1.35 and abs(np.log(aspect).mean()) < 0.02
    # every share up to 3/4 fits a square at any aspect in range: uniform there (two halves hold equal counts)
    low, high = np.sum((share >= 0.08) & (share < 0.415)), np.sum((share >= 0.415) & (share < 0.75))
    assert abs(low - high) < 0.1 * (low + high), (low, high)
    assert np.mean(share > 0.75) < 0.25  # larger shares only fit at some aspects: redrawn more often
    # the top-left corner is uniform over the free space: centred on average
    assert abs(np.mean((top + h / 2) / 300) - 0.5) < 0.02 and abs(np.mean((left + w / 2) / 300) - 0.5) < 0.02


@pytest.mark.parametrize("width, height, want", [(10, 1000, (493, 0, 13, 10)),    # too tall: 3/4 aspect, centred
                                                 (1000, 10, (0, 493, 10, 13))])   # too wide: 4/3 aspect
def test_crop_box_falls_back_to_the_clamped_centre_crop(width, height, want):
    """No crop of 8-100 % of the area with aspect 3/4..4/3 fits a 10 x 1000 strip: after 10 tries torchvision takes
    the centre crop with the aspect ratio clamped into the range."""
    assert crop_box(width, height, np.random.default_rng(1)) == want


def stripes(width=96, height=32):
    """A wide image: red left third, green middle, blue right third."""
    img = np.zeros((height, width, 3), np.uint8)
    for i in range(3):
        img[:, i * width // 3:(i + 1) * width // 3, i] = 255
    return img


def test_centre_view_is_resize_shorter_side_then_centre_crop():
    """Resize(round(8/7 S)) keeps the aspect (shorter side 37 for S = 32, the longer int(37 * 96 / 32) = 111),
    CenterCrop(S) takes the middle: of the stripes only green."""
    view = np.asarray(center_view(Image.fromarray(stripes()), 32))
    assert view.shape == (32, 32, 3)
    assert view[..., 1].min() == 255 and view[..., 0].max() == 0 and view[..., 2].max() == 0
    tall = center_view(Image.fromarray(np.zeros((90, 30, 3), np.uint8)), 32)
    assert tall.size == (32, 32)


def test_training_views_see_the_whole_image_not_only_its_centre():
    """The official RandomResizedCrop is taken from the whole image: over many draws the views hold the left and
    right thirds of a wide image too (a crop of a stored centre square never would)."""
    img = Image.fromarray(stripes())
    seen = np.zeros(3)
    for i in range(200):
        view = np.asarray(train_view(img, 32, np.random.default_rng(i)))
        assert view.shape == (32, 32, 3)
        seen += view.reshape(-1, 3).max(0) > 128
    assert seen.min() > 40, seen


def test_flip_is_drawn_half_the_time_and_mirrors():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    flipped = 0
    for i in range(400):
        rng = np.random.default_rng(i)
        top, left, h, w = crop_box(*img.size, np.random.default_rng(i))
        plain = np.asarray(img.crop((left, top, left + w, top + h)).resize((32, 32), Image.Resampling.BILINEAR))
        view = np.asarray(train_view(img, 32, rng))
        assert np.array_equal(view, plain) or np.array_equal(view, plain[:, ::-1])
        flipped += not np.array_equal(view, plain)
    assert 160 < flipped < 240


@pytest.fixture
def folders(tmp_path):
    """Two classes of 6 wide images (photos of other shapes than the view), one image per file."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        for i in range(6):
            write_image(tmp_path / "train" / name / f"{i}.png", rng.integers(0, 256, (40, 70, 3), dtype=np.uint8))
            write_image(tmp_path / "val" / name / f"{i}.png", rng.integers(0, 256, (50, 30, 3), dtype=np.uint8))
    return tmp_path


def test_folder_sets_hold_paths_and_read_each_batch_the_same_with_any_workers(folders):
    """Nothing is decoded up front (memory does not grow with the set), and the views of an epoch depend on
    (seed, epoch, image), not on how many worker processes read them."""
    train, held, names, _ = labelled_data(str(folders / "train"), str(folders / "val"), 32, 0, 0.2)
    assert isinstance(train, FileSet) and names == ["a", "b"] and (len(train), len(held)) == (12, 12)
    assert not any(isinstance(v, (np.ndarray, torch.Tensor)) and v.ndim == 4 for v in vars(train).values())
    order = torch.randperm(12, generator=torch.Generator().manual_seed(3))
    cpu = torch.device("cpu")
    one = list(train.batches(order, 5, cpu, epoch=2, workers=0))
    two = list(train.batches(order, 5, cpu, epoch=2, workers=2))
    assert [len(labels) for _, labels in one] == [5, 5, 2]
    for (va, la), (vb, lb) in zip(one, two, strict=True):
        assert torch.equal(va, vb) and torch.equal(la, lb)
    other = torch.cat([v for v, _ in train.batches(order, 5, cpu, epoch=3)])
    assert not torch.equal(torch.cat([v for v, _ in one]), other)  # a new epoch, new crops
    # the labels follow the files: class a's images are labelled 0
    labels = torch.cat([lab for _, lab in train.batches(torch.arange(12), 12, cpu)])
    assert labels.tolist() == [int(f.parent.name == "b") for f in train.files]


def test_given_validation_folder_shuffles_the_training_order_so_max_samples_holds_every_class(folders):
    """With --val DIR the training images come in a seeded random order: --max-samples takes both classes, not
    the first class's files."""
    train, *_ = labelled_data(str(folders / "train"), str(folders / "val"), 32, 0, 0.2)
    assert set(train.labels[:4].tolist()) == {0, 1}
    again, *_ = labelled_data(str(folders / "train"), str(folders / "val"), 32, 0, 0.2)
    assert again.files == train.files


def test_an_image_that_fails_to_decode_mid_run_is_one_line(folders):
    """A truncated JPEG passes the header check; decoding it in a worker raises the one-line error in the main
    process (not the worker's traceback)."""
    bad = folders / "train" / "a" / "broken.jpg"
    write_image(bad, np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    bad.write_bytes(bad.read_bytes()[:-2000])
    train, _ = class_folders(folders / "train", 32, 0)
    index = train.files.index(bad)
    for workers in (0, 1):
        with pytest.raises(PixforgeError) as err:
            list(train.batches(torch.tensor([0, index]), 2, torch.device("cpu"), workers=workers))
        assert str(bad) in str(err.value) and "not a readable image" in str(err.value)
        assert len(str(err.value).splitlines()) == 1

