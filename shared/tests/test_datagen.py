"""pixforge.core.datagen: per-index determinism, shard splits, resume, formats, manifest checks, readers."""

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from pixforge.core import datagen
from pixforge.export.errors import PixforgeError


@dataclass
class Noise:
    """A toy image model: uniform noise from the per-index generator; counts the images it computes."""

    name: str = "noise"
    batch: int = 1
    level: int = 255
    calls: int = 0

    def params(self):
        return {"level": self.level}

    def check_size(self, size):
        if size > 64:
            raise PixforgeError(f"noise makes images of at most 64 pixels, not {size}")

    def sample(self, seed, indices, size, device):
        self.calls += len(indices)
        return np.stack([datagen.rng(seed, i).integers(0, self.level + 1, (size, size, 3), dtype=np.uint8)
                         for i in indices])


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_rng_is_a_function_of_seed_and_index():
    assert datagen.rng(1, 2).random() == datagen.rng(1, 2).random()
    assert datagen.rng(1, 2).random() != datagen.rng(1, 3).random() != datagen.rng(2, 2).random()


@pytest.mark.parametrize("fmt", datagen.FORMATS)
def test_shard_splits_give_the_same_bytes(tmp_path, fmt):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    summary = datagen.generate(Noise(), whole, n=23, size=8, fmt=fmt, per_shard=5, show_progress=False)
    assert summary["generated"] == 23 and summary["skipped"] == 0
    for k in (3, 1, 2):  # any order
        datagen.generate(Noise(), parts, n=23, size=8, fmt=fmt, per_shard=5, shard=f"{k}/3", show_progress=False)
    assert files(whole) == files(parts)
    images = np.stack(list(datagen.read_images(whole)))
    assert images.shape == (23, 8, 8, 3)
    if fmt != "jpg":  # lossless formats read back exactly
        np.testing.assert_array_equal(images, Noise().sample(0, range(23), 8, None))


def test_resume_skips_what_exists_and_rebuilds_what_is_missing(tmp_path):
    out = tmp_path / "set"
    datagen.generate(Noise(), out, n=12, size=8, show_progress=False)
    before = files(out)
    (out / "00000000" / "00000004.png").unlink()
    model = Noise()
    summary = datagen.generate(model, out, n=12, size=8, show_progress=False)
    assert summary["generated"] == 1 and summary["skipped"] == 11 and model.calls == 1
    assert files(out) == before


def test_batches_are_aligned_to_multiples_of_the_batch(tmp_path):
    model = Noise(batch=4)
    got = datagen.sample_aligned(model, 0, [5, 6, 9], 8, None)
    assert sorted(got) == [5, 6, 9] and model.calls == 8  # blocks [4, 8) and [8, 12)
    np.testing.assert_array_equal(got[9], Noise().sample(0, [9], 8, None)[0])


def test_manifest_records_the_dataset_and_guards_resume(tmp_path):
    out = tmp_path / "set"
    datagen.generate(Noise(), out, n=3, size=8, seed=5, show_progress=False, package="pkg", version="1.2")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == "noise" and manifest["params"] == {"level": 255}
    assert (manifest["seed"], manifest["count"], manifest["size"], manifest["format"]) == (5, 3, 8, "png")
    assert manifest["version"] == "1.2"
    with pytest.raises(PixforgeError, match="holds another dataset.*seed"):
        datagen.generate(Noise(), out, n=3, size=8, seed=6, show_progress=False)
    with pytest.raises(PixforgeError, match="level"):
        datagen.generate(Noise(level=9), out, n=3, size=8, seed=5, show_progress=False)
    summary = datagen.generate(Noise(level=9), out, n=3, size=8, seed=5, overwrite=True, show_progress=False)
    assert summary["generated"] == 3
    assert json.loads((out / "manifest.json").read_text())["params"] == {"level": 9}


def test_a_foreign_folder_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PixforgeError, match="not empty"):
        datagen.generate(Noise(), tmp_path, n=2, size=8, show_progress=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, "--n must be a whole number at least 1, got 0"),
    ({"size": 128}, "at most 64 pixels"),
    ({"fmt": "gif"}, "--format 'gif'"),
    ({"shard": "3/2"}, "K must be between 1 and N"),
    ({"workers": 0}, "--workers"),
    ({"encoding": "bmp"}, "--encoding"),
    ({"quality": 500}, "--quality must be a whole number from 1 to 100, got 500"),
    ({"seed": -1}, "--seed must be a whole number at least 0, got -1"),
    ({"per_shard": "x"}, "--per-shard must be a whole number at least 1, got 'x'"),
])
def test_bad_requests_write_nothing(tmp_path, kwargs, message):
    args = {"n": 4, "size": 8} | kwargs
    with pytest.raises(PixforgeError, match=message):
        datagen.generate(Noise(), tmp_path / "out", show_progress=False, **args)
    assert not (tmp_path / "out").exists()


def test_unwritable_output_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PixforgeError, match="not a folder"):
        datagen.generate(Noise(), blocker, n=2, size=8, show_progress=False)
    with pytest.raises(PixforgeError, match="cannot be written|not writable"):
        datagen.generate(Noise(), blocker / "sub", n=2, size=8, show_progress=False)


def test_generated_dataset_matches_written_files(tmp_path):
    datagen.generate(Noise(), tmp_path, n=4, size=8, fmt="npz-shards", show_progress=False)
    written = list(datagen.read_images(tmp_path))
    ds = datagen.GeneratedDataset(Noise(), n=4, size=8, value_range=(0.0, 255.0))
    assert len(ds) == 4
    for i in range(4):
        item = ds[i]
        assert item.shape == (3, 8, 8) and item.dtype == torch.float32
        np.testing.assert_array_equal(item.permute(1, 2, 0).numpy().astype(np.uint8), written[i])
    with pytest.raises(IndexError):
        ds[4]


def test_jpg_and_tar_encodings(tmp_path):
    datagen.generate(Noise(level=0), tmp_path / "j", n=2, size=8, fmt="jpg", show_progress=False)
    assert (tmp_path / "j" / "00000000" / "00000001.jpg").is_file()
    datagen.generate(Noise(), tmp_path / "t", n=3, size=8, fmt="webdataset-tar", encoding="png",
                     show_progress=False)
    import tarfile

    with tarfile.open(tmp_path / "t" / "shard-000000.tar") as tar:
        assert tar.getnames() == ["00000000.png", "00000001.png", "00000002.png"]
    assert len(list(datagen.read_images(tmp_path / "t", limit=2))) == 2


def test_read_images_reports_bad_shards(tmp_path):
    (tmp_path / "shard-000000.npz").write_bytes(b"not an npz")
    with pytest.raises(PixforgeError, match="not a readable shard"):
        list(datagen.read_images(tmp_path))


def test_preview_grid_has_one_labelled_row_per_model():
    grid = datagen.preview_grid([Noise(), Noise(name="other", level=3)], size=8, per_model=3, label_width=40)
    assert grid.shape == (2 * (8 + 4), 40 + 2 + 3 * 10, 3)


@pytest.mark.parametrize("images", [np.zeros((2, 8, 8, 3), np.float32), np.full((2, 8, 8, 2), 3, np.uint8),
                                    np.zeros((0, 8, 8, 3), np.uint8), np.full((2, 8, 8, 3), np.nan)])
def test_shards_without_8_bit_rgb_images_are_refused(tmp_path, images):
    np.savez(tmp_path / "shard-000000.npz", images=images)
    with pytest.raises(PixforgeError, match="shard-000000.npz holds no 8-bit images"):
        list(datagen.read_images(tmp_path))
