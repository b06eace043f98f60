"""The training samples over prepared folders: pure functions of (seed, index), x' another frame of the same
identity, x_{t-1} the frame before in the track, resizing, several folders, clear errors."""

import pickle

import numpy as np
import pytest
import torch

from pixforge.dfvae.data import FaceFrames
from pixforge.export.errors import PixforgeError


@pytest.fixture(scope="module")
def data(tmp_path_factory, dataset_maker):
    return dataset_maker(tmp_path_factory.mktemp("data"), {"anna": 6, "ben": 5}, size=32)


def _crops(dataset):
    """Every crop of every clip as the dataset scales them, with (identity, row) labels."""
    out = []
    for clip in dataset.clips:
        crops = torch.from_numpy(np.load(clip.folder / "crops.npy")).permute(0, 3, 1, 2).float() / 127.5 - 1
        out += [(clip.identity, row, crop) for row, crop in enumerate(crops)]
    return out


def _find(crops, image):
    return [(name, row) for name, row, crop in crops if torch.equal(crop, image)]


def test_samples_are_pure_functions_of_seed_and_index(data):
    a, b = FaceFrames([data], seed=3), FaceFrames([data], seed=3)
    again = pickle.loads(pickle.dumps(a))  # what a loader worker gets
    for index in (0, 1, 17, 2**40):
        x, y, z = a[index], b[index], again[index]
        for key in x:
            assert torch.equal(x[key], y[key]) and torch.equal(x[key], z[key]), key
    other = FaceFrames([data], seed=4)
    assert any(not torch.equal(a[i]["frame"], other[i]["frame"]) for i in range(4))


def test_reference_is_another_frame_of_the_same_identity_and_previous_the_one_before(data):
    dataset = FaceFrames([data], seed=0)
    crops = _crops(dataset)
    seen = set()
    for index in range(24):
        item = dataset[index]
        (name, row), = _find(crops, item["frame"])
        (ref_name, ref_row), = _find(crops, item["reference"])
        (prev_name, prev_row), = _find(crops, item["previous"])
        assert ref_name == name == dataset.identities[int(item["identity"])] and ref_row != row
        assert prev_name == name and prev_row == max(row - 1, 0)
        seen.add(name)
        assert item["heatmaps"].shape == item["previous_heatmaps"].shape == (68, 32, 32)
        assert item["mask"].shape == (1, 32, 32) and 0 <= item["mask"].min() and item["mask"].max() <= 1
        peak = item["heatmaps"].flatten(1).argmax(1)
        ys, xs = peak // 32, peak % 32
        assert (xs - item["landmarks"][:, 0]).abs().max() <= 0.5 and (ys - item["landmarks"][:, 1]).abs().max() <= 0.5
    assert seen == {"anna", "ben"}
    forced = dataset.sample(5, identity=1)
    assert _find(crops, forced["frame"])[0][0] == "ben" and int(forced["identity"]) == 1


def test_resizing_subsets_several_folders_and_the_loader(data, tmp_path, dataset_maker):
    more = dataset_maker(tmp_path / "more", {"anna": 3, "cleo": 4}, size=32, seed=5)
    dataset = FaceFrames([data, more], size=64, identities=["anna", "cleo"])
    assert dataset.identities == ["anna", "cleo"] and dataset.counts() == {"anna": 9, "cleo": 4}
    item = dataset[0]
    assert item["frame"].shape == (3, 64, 64) and item["heatmaps"].shape == (68, 64, 64)
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=0)
    batch = next(iter(loader))
    assert batch["frame"].shape == (3, 3, 64, 64) and batch["identity"].shape == (3,)


def test_bad_data_is_a_clear_error(data, tmp_path, dataset_maker):
    with pytest.raises(PixforgeError, match="unknown identity nobody; the data holds anna, ben"):
        FaceFrames([data], identities=["nobody"])
    with pytest.raises(PixforgeError, match="holds no prepared sources"):
        FaceFrames([tmp_path])
    with pytest.raises(PixforgeError, match="does not exist"):
        FaceFrames([tmp_path / "missing"])
    other = dataset_maker(tmp_path / "big", {"dan": 2}, size=64)
    with pytest.raises(PixforgeError, match="different sizes"):
        FaceFrames([data, other])
