"""pixforge.core.stylegan2.dataset: NVlabs-layout training sets, make_dataset, resume-exact data order."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from pixforge.core.stylegan2.dataset import TRANSFORMS, TrainingSet, make_dataset
from pixforge.export.errors import PixforgeError


def noise(h, w, c=3, seed=0):
    shape = (h, w) if c == 1 else (h, w, c)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)
    return path


def square_folder(root, n=5, size=8, c=3, labels=None):
    """n PNGs `img{i}.png` (one in a subfolder), optionally with a dataset.json."""
    names = []
    for i in range(n):
        name = f"sub/img{i}.png" if i == n - 1 else f"img{i}.png"
        save(root / name, noise(size, size, c, seed=i))
        names.append(name)
    if labels is not None:
        entries = [[n, lab] for n, lab in zip(names, labels, strict=False)]
        (root / "dataset.json").write_text(json.dumps({"labels": entries}))
    return names


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


# ---------------------------------------------------------------------------------------------------------------
# make_dataset -> TrainingSet


@pytest.mark.parametrize("dest_name", ["data.zip", "data"])
def test_round_trip_with_labels(tmp_path, dest_name):
    src = tmp_path / "src"
    names = square_folder(src, n=5, size=8, labels=[0, 2, 1, 2, 0])
    dest = make_dataset(src, tmp_path / dest_name, 8, progress=False)
    assert dest == tmp_path / dest_name and dest.exists()
    if dest_name.endswith(".zip"):
        with zipfile.ZipFile(dest) as zf:
            members = sorted(zf.namelist())
            meta = json.loads(zf.read("dataset.json"))
    else:
        members = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
        meta = json.loads((dest / "dataset.json").read_text())
    assert members == ["00000/img00000000.png", "00000/img00000001.png", "00000/img00000002.png",
                       "00000/img00000003.png", "00000/img00000004.png", "dataset.json"]
    assert meta == {"labels": [[f"00000/img{i:08d}.png", lab] for i, lab in enumerate([0, 2, 1, 2, 0])]}
    data = TrainingSet(dest, resolution=8, use_labels=True)
    assert len(data) == 5 and data.resolution == 8 and data.num_channels == 3
    assert data.image_shape == [3, 8, 8] and data.label_shape == [3] and data.label_dim == 3 and data.has_labels
    for k, name in enumerate(sorted(names)):  # make_dataset keeps the sorted source order; 8x8 in, no resampling
        image, label = data.item(k)
        assert image.dtype == torch.uint8 and image.shape == (3, 8, 8)
        np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), np.asarray(Image.open(src / name)))
        assert label.dtype == torch.float32
    assert data.item(1)[1].tolist() == [0.0, 0.0, 1.0]
    assert torch.stack([data.item(k)[1] for k in range(5)]).sum(0).tolist() == [2.0, 1.0, 2.0]
    unlabelled = TrainingSet(dest)
    assert unlabelled.label_dim == 0 and not unlabelled.has_labels and unlabelled.item(0)[1].shape == (0,)
    assert leftovers(tmp_path) == []
    assert (dest.stat().st_mode & 0o777) == (0o777 if dest.is_dir() else 0o666) & ~_umask()


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_float_labels_mirror_and_max_size(tmp_path):
    src = tmp_path / "src"
    square_folder(src, n=4, size=4, labels=[[0.5, 1.0], [1.5, 2.0], [2.5, 3.0], [3.5, 4.0]])
    data = TrainingSet(make_dataset(src, tmp_path / "d.zip", 4, progress=False), use_labels=True, mirror=True)
    assert len(data) == 8 and data.label_dim == 2
    for k in range(4):
        image, label = data.item(k)
        flipped, flipped_label = data.item(k + 4)
        assert torch.equal(flipped, image.flip(-1)) and not torch.equal(flipped, image)
        assert torch.equal(label, flipped_label)
    assert data.item(2)[1].tolist() == [2.5, 3.0]
    small = TrainingSet(tmp_path / "d.zip", max_size=3, seed=1, mirror=True, use_labels=True)
    assert len(small) == 6
    firsts = {small.item(k)[1][0].item() for k in range(3)}
    assert len(firsts) == 3 and {small.item(k)[1][0].item() for k in range(3, 6)} == firsts
    labels = data.random_labels(64, torch.Generator().manual_seed(0))
    assert labels.shape == (64, 2) and labels.dtype == torch.float32
    assert {tuple(r) for r in labels.tolist()} <= {(0.5, 1.0), (1.5, 2.0), (2.5, 3.0), (3.5, 4.0)}
    assert torch.equal(labels, data.random_labels(64, torch.Generator().manual_seed(0)))
    assert TrainingSet(tmp_path / "d.zip").random_labels(5).shape == (5, 0)


def test_greyscale_stays_one_channel_and_rgba_becomes_rgb(tmp_path):
    grey = tmp_path / "grey"
    for i in range(3):
        save(grey / f"{i}.png", noise(16, 16, 1, seed=i), "L")
    data = TrainingSet(make_dataset(grey, tmp_path / "g.zip", 16, progress=False))
    assert data.num_channels == 1 and data.item(0)[0].shape == (1, 16, 16)
    np.testing.assert_array_equal(data.item(0)[0][0].numpy(), noise(16, 16, 1, seed=0))
    mixed = tmp_path / "mixed"
    save(mixed / "a.png", noise(16, 16, 4), "RGBA")
    save(mixed / "b.png", noise(16, 16, 1), "L")
    data = TrainingSet(make_dataset(mixed, tmp_path / "m", 16, progress=False))
    assert data.num_channels == 3
    np.testing.assert_array_equal(data.item(0)[0].permute(1, 2, 0).numpy(), noise(16, 16, 4)[..., :3])
    grey_b = data.item(1)[0]
    assert torch.equal(grey_b[0], grey_b[1]) and torch.equal(grey_b[1], grey_b[2])


def test_transforms_sizes_and_known_pixels(tmp_path):
    src = tmp_path / "src"
    wide = np.zeros((32, 64, 3), np.uint8)
    wide[:, 16:48] = (200, 10, 10)  # a red centre square, black sides
    save(src / "wide.png", wide)
    tall = np.full((64, 32, 3), 90, np.uint8)
    save(src / "tall.jpg", tall)
    for transform in TRANSFORMS:
        data = TrainingSet(make_dataset(src, tmp_path / f"{transform}.zip", 16, transform, progress=False))
        assert len(data) == 2 and data.resolution == 16
        img_tall, img_wide = (data.item(k)[0].permute(1, 2, 0).numpy().astype(int) for k in range(2))
        assert np.abs(img_tall[8, 8] - 90).max() <= 3
        if transform == "center-crop":  # the centre 32 x 32 of the wide image: all red
            assert np.abs(img_wide - (200, 10, 10)).max() <= 3
        elif transform == "resize":  # squashed: red in the middle half, black at the sides
            assert np.abs(img_wide[8, 8] - (200, 10, 10)).max() <= 3 and img_wide[8, 0].max() <= 3
        elif transform == "pad":  # scaled to 16 x 8 and letterboxed: black bars above and below, red centre
            assert img_wide[:3].max() == 0 and img_wide[-3:].max() == 0
            assert np.abs(img_wide[8, 8] - (200, 10, 10)).max() <= 3 and img_wide[8, 0].max() <= 3
            assert img_tall[:, :3].max() == 0 and np.abs(img_tall[8, 8] - 90).max() <= 3
        else:  # center-crop-wide: a 16 x 12 band letterboxed; black bars of 2 rows
            assert img_wide[:2].max() == 0 and img_wide[-2:].max() == 0
            assert np.abs(img_wide[8, 8] - (200, 10, 10)).max() <= 3
    data = TrainingSet(make_dataset(src, tmp_path / "wide8.zip", 16, "center-crop-wide", wide_height=8,
                                    progress=False))
    assert data.item(1)[0][:, :4].max() == 0 and data.item(1)[0][:, 12:].max() == 0
    with pytest.raises(PixforgeError, match="unknown transform"):
        make_dataset(src, tmp_path / "x.zip", 16, "stretch", progress=False)
    with pytest.raises(PixforgeError, match="power of two"):
        make_dataset(src, tmp_path / "x.zip", 24, progress=False)


def test_max_images_and_zip_source_with_labels(tmp_path):
    src = tmp_path / "src"
    square_folder(src, n=5, size=8, labels=[4, 3, 2, 1, 0])
    first = make_dataset(src, tmp_path / "first.zip", 8, progress=False)
    second = make_dataset(first, tmp_path / "second", 8, max_images=3, progress=False)
    data = TrainingSet(second, use_labels=True)
    assert len(data) == 3 and data.label_dim == 5
    assert [int(data.item(k)[1].argmax()) for k in range(3)] == [4, 3, 2]
    relabelled = make_dataset(src, tmp_path / "relabelled.zip", 8, labels={f"img{i}.png": [float(i)] for i in range(4)}
                              | {"sub/img4.png": [9.0]}, progress=False)
    assert TrainingSet(relabelled, use_labels=True).item(4)[1].tolist() == [9.0]


# ---------------------------------------------------------------------------------------------------------------
# data order


def test_epoch_permutations_are_pure_and_resume_invariant(tmp_path):
    src = tmp_path / "src"
    for i in range(10):
        save(src / f"{i:02d}.png", np.full((4, 4, 3), i, np.uint8))
    data = TrainingSet(src)
    n = len(data)
    perm0, perm1 = data.permutation(0).copy(), data.permutation(1).copy()
    assert sorted(perm0) == list(range(n)) and sorted(perm1) == list(range(n))
    assert not np.array_equal(perm0, perm1)
    assert not np.array_equal(perm0, TrainingSet(src, seed=1).permutation(0))
    np.testing.assert_array_equal(perm0, TrainingSet(src).permutation(0))
    order = [int(data[i][0][0, 0, 0]) for i in range(3 * n)]
    assert order[:n] == perm0.tolist() and order[n:2 * n] == perm1.tolist()
    assert sorted(order[2 * n:]) == list(range(n))
    resumed = TrainingSet(src)  # a fresh process picking up at global sample 17, the cache cold
    assert [int(resumed[i][0][0, 0, 0]) for i in range(17, 3 * n)] == order[17:]
    assert [int(resumed[i][0][0, 0, 0]) for i in (3, 25, 4)] == [order[3], order[25], order[4]]
    with pytest.raises(IndexError):
        data[-1]
    with pytest.raises(IndexError):
        data.item(n)
    mirrored = TrainingSet(src, mirror=True)
    assert sorted(mirrored.permutation(0)) == list(range(2 * n))


# ---------------------------------------------------------------------------------------------------------------
# errors


def test_training_set_errors_name_the_path(tmp_path):
    with pytest.raises(PixforgeError, match="does not exist") as info:
        TrainingSet(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    with pytest.raises(PixforgeError, match="holds no images"):
        TrainingSet(tmp_path / "empty")
    (tmp_path / "file.txt").write_text("hi")
    with pytest.raises(PixforgeError, match="neither a folder nor a .zip"):
        TrainingSet(tmp_path / "file.txt")
    (tmp_path / "bad.zip").write_bytes(b"not a zip at all")
    with pytest.raises(PixforgeError, match="bad.zip is not a readable zip"):
        TrainingSet(tmp_path / "bad.zip")

    corrupt = tmp_path / "corrupt"
    square_folder(corrupt, n=2, size=8)
    (corrupt / "sub" / "img1.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(PixforgeError, match="sub/img1.png is not a readable image"):
        TrainingSet(corrupt)
    truncated = tmp_path / "truncated"
    square_folder(truncated, n=2, size=64)
    data_bytes = (truncated / "sub" / "img1.png").read_bytes()
    (truncated / "sub" / "img1.png").write_bytes(data_bytes[: len(data_bytes) // 2])
    data = TrainingSet(truncated)  # the header is fine; decoding names the file
    with pytest.raises(PixforgeError, match="sub/img1.png is not a readable image"):
        data.item(1)

    square_folder(tmp_path / "good_src", n=3, size=8)
    damaged = make_dataset(tmp_path / "good_src", tmp_path / "damaged.zip", 8, progress=False)
    raw = bytearray(damaged.read_bytes())
    with zipfile.ZipFile(damaged) as zf:
        info = zf.getinfo("00000/img00000001.png")
    middle = info.header_offset + 30 + len(info.filename) + info.file_size // 2  # inside the stored pixel data
    raw[middle] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    with pytest.raises(PixforgeError, match=r"damaged.zip:00000/img00000001.png is not a readable image"):
        TrainingSet(damaged).item(1)

    mixed = tmp_path / "mixed"
    save(mixed / "a.png", noise(8, 8))
    save(mixed / "b.png", noise(16, 16))
    with pytest.raises(PixforgeError) as info:
        TrainingSet(mixed)
    message = str(info.value)
    assert "a.png is 8x8" in message and "b.png is 16x16" in message and "--res" in message

    for name, shape, words in (("rect", (8, 16), "not square"), ("odd", (12, 12), "not a power of two")):
        save(tmp_path / name / "a.png", noise(*shape))
        with pytest.raises(PixforgeError, match=words) as info:
            TrainingSet(tmp_path / name)
        assert "make_dataset" in str(info.value) and "--res" in str(info.value)
    save(tmp_path / "alpha" / "a.png", noise(8, 8, 4), "RGBA")
    with pytest.raises(PixforgeError, match="RGBA image"):
        TrainingSet(tmp_path / "alpha")

    good = tmp_path / "good"
    square_folder(good, n=3, size=8)
    with pytest.raises(PixforgeError, match="not the 16x16 asked for") as info:
        TrainingSet(good, resolution=16)
    assert str(good) in str(info.value)
    with pytest.raises(PixforgeError, match="has no labels") as info:
        TrainingSet(good, use_labels=True)
    assert str(good) in str(info.value)
    (good / "dataset.json").write_text(json.dumps({"labels": None}))
    with pytest.raises(PixforgeError, match="has no labels"):
        TrainingSet(good, use_labels=True)
    (good / "dataset.json").write_text(json.dumps({"labels": [["img0.png", 1], ["img1.png", 0]]}))
    with pytest.raises(PixforgeError, match="does not match the images: it has no label for sub/img2.png") as info:
        TrainingSet(good, use_labels=True)
    assert str(good / "dataset.json") in str(info.value)
    (good / "dataset.json").write_text("{not json")
    with pytest.raises(PixforgeError, match="dataset.json is not valid JSON"):
        TrainingSet(good, use_labels=True)
    (good / "dataset.json").write_text(json.dumps({"labels": [["img0.png", 1], ["img1.png", [0.5]],
                                                              ["sub/img2.png", 0]]}))
    with pytest.raises(PixforgeError, match="all int class ids or all float vectors"):
        TrainingSet(good, use_labels=True)
    assert len(TrainingSet(good)) == 3  # without use_labels the labels file is not read


def test_make_dataset_errors_leave_nothing_behind(tmp_path):
    src = tmp_path / "src"
    square_folder(src, n=3, size=8)
    with pytest.raises(PixforgeError, match="must not be the source"):
        make_dataset(src, src, 8, progress=False)
    with pytest.raises(PixforgeError, match="must not be the source"):
        make_dataset(src, src / "inside.zip", 8, progress=False)
    assert not (src / "inside.zip").exists()
    with pytest.raises(PixforgeError, match="must not be the source"):  # overwriting would delete the source
        make_dataset(src, tmp_path, 8, overwrite=True, progress=False)
    with pytest.raises(PixforgeError, match="does not exist"):
        make_dataset(tmp_path / "missing", tmp_path / "x.zip", 8, progress=False)

    existing = make_dataset(src, tmp_path / "d.zip", 8, progress=False)
    before = existing.read_bytes()
    with pytest.raises(PixforgeError, match="already exists; pass --overwrite"):
        make_dataset(src, existing, 8, progress=False)
    (src / "img1.png").write_bytes(b"not a png")
    for dest in (existing, tmp_path / "folder", tmp_path / "new.zip"):
        with pytest.raises(PixforgeError, match="img1.png is not a readable image") as info:
            make_dataset(src, dest, 8, overwrite=True, progress=False)
        assert "\n" not in str(info.value)
    assert existing.read_bytes() == before  # the old dataset is intact
    assert not (tmp_path / "folder").exists() and not (tmp_path / "new.zip").exists()
    assert leftovers(tmp_path) == []

    square_folder(src, n=3, size=8, labels=[0, 1])  # two labels for three images
    with pytest.raises(PixforgeError, match="have no entry for .*sub/img2.png"):
        make_dataset(src, tmp_path / "l.zip", 8, progress=False)
    assert not (tmp_path / "l.zip").exists()


def test_make_dataset_overwrites_a_folder_atomically(tmp_path):
    src = tmp_path / "src"
    square_folder(src, n=2, size=8)
    dest = make_dataset(src, tmp_path / "out", 8, progress=False)
    (dest / "stale.txt").write_text("old")
    save(src / "extra.png", noise(8, 8))
    make_dataset(src, dest, 8, overwrite=True, progress=False)
    assert not (dest / "stale.txt").exists() and len(TrainingSet(dest)) == 3
    assert leftovers(tmp_path) == []
