"""pixforge-primitives CLI: generate (workers, shards, formats), preview, spectrum-ssim, demo, dataset, bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from pixforge.core.datagen import read_images
from pixforge.core.stylegan2.dataset import TrainingSet
from pixforge.export.command import invoke
from pixforge.export.images import write_image
from pixforge.primitives.cli import Primitives


def tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_list_names_every_synthesizer():
    listing = Primitives().list()
    for name in ("pinknoise", "primitives", "primitives-s", "primitives-ps"):
        assert name in listing


def test_two_workers_and_shards_give_the_same_dataset(tmp_path):
    cli = Primitives()
    one = json.loads(cli.generate("primitives-ps", n=30, size=32, out=str(tmp_path / "one"), quiet=True))
    assert one["generated"] == 30
    two = json.loads(cli.generate("primitives-ps", n=30, size=32, out=str(tmp_path / "two"), workers=2,
                                  quiet=True))
    assert two["generated"] == 30
    for k in (2, 1):
        cli.generate("primitives-ps", n=30, size=32, out=str(tmp_path / "split"), shard=f"{k}/2", quiet=True)
    assert tree(tmp_path / "one") == tree(tmp_path / "two") == tree(tmp_path / "split")


def test_npz_shards_hold_the_same_pixels_as_png(tmp_path):
    cli = Primitives()
    cli.generate("primitives", n=7, size=24, out=str(tmp_path / "png"), quiet=True)
    cli.generate("primitives", n=7, size=24, out=str(tmp_path / "npz"), format="npz-shards", per_shard=3,
                 quiet=True)
    assert sorted(p.name for p in (tmp_path / "npz").glob("*.npz")) == [f"shard-00000{i}.npz" for i in range(3)]
    np.testing.assert_array_equal(np.stack(list(read_images(tmp_path / "png"))),
                                  np.stack(list(read_images(tmp_path / "npz"))))


def test_options_are_recorded_in_the_manifest(tmp_path):
    Primitives().generate("pinknoise", n=2, size=32, out=str(tmp_path), paper_exponents=True, quiet=True)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["params"]["paper_exponents"] is True and manifest["package"] == "pixforge-primitives"


def test_preview_has_a_row_per_synthesizer(tmp_path):
    path = Primitives().preview(out=str(tmp_path / "grid.png"), size=32, per_model=3)
    grid = next(read_images(path))
    assert grid.shape[0] == 4 * (32 + 4)


def test_spectrum_ssim_is_one_for_the_same_set_and_lower_for_another(tmp_path):
    cli = Primitives()
    cli.generate("primitives-ps", n=12, size=64, out=str(tmp_path / "ps"), quiet=True)
    cli.generate("pinknoise", n=12, size=64, out=str(tmp_path / "pink"), quiet=True)
    same = json.loads(cli.spectrum_ssim(str(tmp_path / "ps"), str(tmp_path / "ps"), size=64))
    other = json.loads(cli.spectrum_ssim(str(tmp_path / "ps"), str(tmp_path / "pink"), size=64,
                                         out=str(tmp_path / "pic")))
    assert same["spectrum_ssim"] == pytest.approx(1.0)
    assert other["spectrum_ssim"] < 0.99 and (tmp_path / "pic" / "average_spectra.png").is_file()


def test_demo_runs(tmp_path):
    report = Primitives().demo(out=str(tmp_path), n=20, size=32, workers=1)
    assert "spectrum SSIM" in report and (tmp_path / "preview.png").is_file()
    assert len(list((tmp_path / "primitives-ps").rglob("*.png"))) == 20


@pytest.mark.parametrize("args, message", [
    (["generate", "squares"], "unknown model 'squares'"),
    (["generate", "primitives-ps", "--size", "8"], "16 to 4096 pixels"),
    (["generate", "primitives-ps", "--size", "0"], "--size must be a whole number at least 1, got 0"),
    (["generate", "primitives-ps", "--n", "-3"], "--n must be a whole number at least 1, got -3"),
    (["generate", "primitives-ps", "--shard", "3/2"], "K must be between 1 and N"),
    (["generate", "primitives-ps", "--format", "gif"], "--format 'gif'"),
    (["generate", "primitives-ps", "--shapez", "5"], "primitives-ps has no option shapez (options: shapes,"),
    (["generate"], "generate: missing MODEL"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "pixforge.primitives.cli", *args, "--out", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """A small image set, and npz shards that do not hold 8-bit images."""
    root = tmp_path_factory.mktemp("sets")
    Primitives().generate("pinknoise", n=3, size=16, out=str(root / "good"), quiet=True)
    for name, images in (("floats", np.random.default_rng(0).random((2, 16, 16, 3))),
                         ("nan", np.full((2, 16, 16, 3), np.nan)), ("none", np.zeros((0, 16, 16, 3), np.uint8))):
        (root / name).mkdir()
        np.savez(root / name / "shard-000000.npz", images=images, indices=np.arange(len(images)))
    (root / "file.txt").write_text("not a folder")
    return root


def _in_process(capsys, *args):
    """`pixforge-primitives ARGS` through the same Fire entry point: (exit code, stderr)."""
    return invoke(Primitives, args, "pixforge-primitives"), capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["spectrum-ssim", "good", "good", "--out", "file.txt"], "--out file.txt exists and is not a folder"),
    (["spectrum-ssim", "good", "good", "--out", "good/pic", "--overwrite"], "--out good/pic is inside the input good"),
    (["spectrum-ssim", "good", "floats"], "floats/shard-000000.npz holds no 8-bit images ('images' is float64"),
    (["spectrum-ssim", "good", "nan", "--out", "new"], "nan/shard-000000.npz holds no 8-bit images"),
    (["spectrum-ssim", "good", "none", "--out", "new"], "none/shard-000000.npz holds no 8-bit images"),
    (["spectrum-ssim", "good", "missing", "--out", "new"], "missing does not exist"),
    (["spectrum-ssim", "good", "good", "--limit", "0"], "--limit must be at least 1 image, got 0"),
    (["generate", "pinknoise", "--quality", "500", "--format", "jpg", "--out", "new"],
     "--quality must be a whole number from 1 to 100, got 500"),
    (["generate", "pinknoise", "--quality", "0", "--out", "new"], "got 0"),
    (["preview", "--out", "good", "--overwrite"], "--out good must name an image file"),
    (["preview", "--out", "new.txt"], "--out new.txt must name an image file"),
    (["demo", "--n", "0", "--out", "new"], "--n must be a positive number of images, got 0"),
    (["demo", "--size", "8", "--out", "new"], "16 to 4096 pixels, not 8"),
])
def test_bad_values_are_one_line_before_any_work(sets, capsys, monkeypatch, args, message):
    monkeypatch.chdir(sets)
    before = tree(sets)
    code, err = _in_process(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("pixforge-primitives: error: "), err
    assert message in lines[0]
    assert tree(sets) == before and not (sets / "new").exists()


def test_spectrum_ssim_reads_grey_shards_as_their_luma(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (2, 20, 20, 3), dtype=np.uint8)
    grey = np.repeat(rgb[..., :1], 3, axis=-1)
    for name, images in (("grey", grey[..., 0]), ("grey-rgb", grey), ("rgb", rgb)):
        (tmp_path / name).mkdir()
        np.savez(tmp_path / name / "shard-000000.npz", images=images, indices=np.arange(2))
    cli = Primitives()
    same = json.loads(cli.spectrum_ssim(str(tmp_path / "grey"), str(tmp_path / "grey-rgb"), size=16))
    other = json.loads(cli.spectrum_ssim(str(tmp_path / "grey"), str(tmp_path / "rgb"), size=16))
    assert same["real_images"] == 2 and same["spectrum_ssim"] == 1.0 and other["spectrum_ssim"] < 0.99


def test_dataset_takes_tiff_images(tmp_path, capsys):
    photos = tmp_path / "photos"
    for i, suffix in enumerate((".png", ".tif", ".tiff")):
        write_image(photos / f"{i}{suffix}", np.full((20, 24, 3), 80 * i, np.uint8))
    assert _in_process(capsys, "dataset", photos, tmp_path / "set.zip", "--res", 16)[0] == 0
    written = TrainingSet(tmp_path / "set.zip")
    assert [int(written.item(k)[0].float().mean()) for k in range(len(written))] == [0, 80, 160]


@pytest.mark.parametrize("damage", ["not an image", "truncated"])
def test_dataset_checks_every_image_before_writing(tmp_path, capsys, damage):
    photos = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for i in range(20):
        write_image(photos / f"{i:02d}.png", rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    bad = photos / "05.png"
    bad.write_bytes(b"not a png" if damage == "not an image" else bad.read_bytes()[:200])
    for dest in ("set.zip", "set"):
        code, err = _in_process(capsys, "dataset", photos, tmp_path / dest, "--res", 16)
        lines = err.strip().splitlines()  # one line: no progress bar, the images were not started
        assert code == 2 and len(lines) == 1 and f"{bad} is not a readable image" in lines[0], err
    assert [p.name for p in tmp_path.iterdir()] == ["photos"]
