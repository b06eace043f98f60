"""`pixforge-ffl`: lfd and spectrum outputs, and bad input -> one line, exit 2, nothing written.

Two tests run the real command in a subprocess; the others drive the same Fire entry point in-process
(`pixforge.core.cli.run` with argv), which is the same code path without paying for a fresh interpreter.
"""

import json
import subprocess
import sys
from importlib.metadata import entry_points

import numpy as np
import pytest

from pixforge.core.io import write_image
from pixforge.export.command import invoke
from pixforge.ffl.cli import FFL


def _subprocess(*args):
    return subprocess.run([sys.executable, "-m", "pixforge.ffl.cli", *args], capture_output=True, text=True)


@pytest.fixture
def _cli(capsys):
    """Run `pixforge-ffl ARGS` in-process: a CompletedProcess-like (returncode, stdout, stderr)."""
    def call(*args):
        code = invoke(FFL, args, "pixforge-ffl")
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)
    return call


def _assert_user_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pixforge-ffl: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """real/ and fake/ with three matched images (one in a subfolder), plus odd cases beside them."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "sub/c.png"):
        real = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        write_image(root / "real" / name, real)
        write_image(root / "fake" / name, np.clip(real + rng.normal(0, 10, real.shape), 0, 255).astype(np.uint8))
    write_image(root / "other" / "x.png", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    write_image(root / "small" / "a.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("not an image")
    (root / "broken.png").write_bytes(b"\x89PNG broken")
    return root


def test_lfd_in_a_subprocess(folders):
    report = _subprocess("lfd", str(folders / "real"), str(folders / "fake"), "--json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["count"] == 3
    _assert_user_error(_subprocess("lfd", str(folders / "real"), str(folders / "other")), "no file of the same name")


def test_lfd_table_and_json(folders, _cli):
    table = _cli("lfd", str(folders / "real"), str(folders / "fake"))
    assert table.returncode == 0, table.stderr
    assert "3 image pair(s)" in table.stdout and all(m in table.stdout for m in ("LFD", "PSNR", "SSIM"))
    report = json.loads(_cli("lfd", str(folders / "real"), str(folders / "fake"), "--json").stdout)
    assert report["count"] == 3 and [r["name"] for r in report["images"]] == ["a.png", "b.png", "sub/c.png"]
    direct = FFL().lfd(str(folders / "real" / "a.png"), str(folders / "fake" / "a.png"), json=True)
    assert json.loads(direct)["images"][0]["lfd"] == pytest.approx(report["images"][0]["lfd"], rel=1e-12)
    assert 0 < report["metrics"]["lfd"]["mean"] < 20 and report["metrics"]["psnr"]["mean"] > 20


@pytest.mark.parametrize("case,fragments", [
    (("real", "other"), ["a.png and 2 more", "no file of the same name in"]),
    (("real/a.png", "small/a.png"), ["small/a.png is 16x16 but", "real/a.png is 32x24"]),
    (("real", "empty"), ["empty holds no image files"]),
    (("notes.txt", "real/a.png"), ["notes.txt is not an image file"]),
    (("broken.png", "real/a.png"), ["broken.png is not a readable image"]),
    (("real", "real/a.png"), ["must both be image files or both be folders"]),
    (("missing", "real"), ["missing does not exist"]),
])
def test_lfd_bad_input(folders, _cli, case, fragments):
    _assert_user_error(_cli("lfd", *(str(folders / p) for p in case)), *fragments)


def test_spectrum_outputs(folders, tmp_path, _cli):
    out = tmp_path / "spec"
    result = _cli("spectrum", str(folders / "real"), str(folders / "fake"), "--out", str(out), "--pictures", "2")
    assert result.returncode == 0, result.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "average/fake.png", "average/real.png", "focal_weight.png", "radial_power.png",
        "spectra/fake/a.png", "spectra/fake/b.png", "spectra/real/a.png", "spectra/real/b.png"]
    rows = (out / "radial_power.csv").read_text().splitlines()
    assert rows[0] == "group,frequency_cycles_per_pixel,power" and len(rows) == 1 + 2 * 13
    again = _cli("spectrum", str(folders / "real" / "a.png"), "--out", str(out))
    _assert_user_error(again, "is not empty")


def test_spectrum_bad_input_writes_nothing(folders, tmp_path, _cli):
    out = tmp_path / "never"
    _assert_user_error(_cli("spectrum", str(folders / "real"), str(folders / "small"), "--out", str(out)),
                       "focal weight map compares images of one size", "pass --size N")
    _assert_user_error(_cli("spectrum", str(folders / "empty"), "--out", str(out)), "holds no image files")
    mixed = tmp_path / "mixed"
    for name in ("real/a.png", "small/a.png"):
        (mixed / name).parent.mkdir(parents=True, exist_ok=True)
        (mixed / name).write_bytes((folders / name).read_bytes())
    _assert_user_error(_cli("spectrum", str(mixed), "--out", str(out)), "averaging needs one size")
    assert not out.exists()
    resized = _cli("spectrum", str(mixed), "--out", str(out), "--size", "16")
    assert resized.returncode == 0, resized.stderr
    assert (out / "average" / "mixed.png").is_file()
    # inside an input folder, the next run would average the plots as images
    _assert_user_error(_cli("spectrum", str(mixed), "--out", str(mixed / "plots"), "--size", "16"),
                       "is inside the input folder")
    _assert_user_error(_cli("spectrum", str(mixed), "--out", str(out), "--alpha", "nan"), "finite number")
    assert not (mixed / "plots").exists()


def test_compare_bad_options_write_nothing(tmp_path, _cli):
    out = tmp_path / "cmp"
    _assert_user_error(_cli("compare", "--out", str(out), "--size", "48"), "--size 48", "power of two")
    _assert_user_error(_cli("compare", "--out", str(out), "--size", "16", "--patch-factor", "3"),
                       "--size 16 is not divisible by --patch-factor 3")
    _assert_user_error(_cli("compare", "--out", str(out), "--data", str(tmp_path / "nope")), "nope")
    _assert_user_error(_cli("compare", "--out", str(out), "--transform", "wavelet"), "--transform")
    for flag, value in (("--alpha", -1), ("--kl-weight", -1), ("--workers", -1), ("--width", 0), ("--latent", 0),
                        ("--lr", 0), ("--ckpt-every", 0), ("--sample-every", 0), ("--keep-last", 0), ("--threads", 0)):
        _assert_user_error(_cli("compare", "--out", str(out), flag, value), flag, str(value))
    _assert_user_error(_cli("compare", "--out", str(out), "--amp", "bogus"), "--amp 'bogus'")
    data = tmp_path / "data"
    for i in range(3):
        write_image(data / f"{i}.png", np.zeros((16, 16, 3), np.uint8))
    (data / "0.png").write_bytes(b"\x89PNG broken")  # a training image (the held-out one is 2.png)
    _assert_user_error(_cli("compare", "--out", str(out), "--data", str(data), "--size", "16"),
                       "0.png is not a readable image")
    assert not out.exists()


@pytest.mark.parametrize("value", [0, -2])
def test_compare_patch_factor_below_one(tmp_path, _cli, value):
    """--patch-factor 0 or below names the flag and its range (it said the size was not divisible by it)."""
    out = tmp_path / "cmp"
    _assert_user_error(_cli("compare", "--out", str(out), "--size", "16", "--patch-factor", value),
                       f"--patch-factor must be a whole number from 1 (the whole image) to --size 16, got {value}")
    _assert_user_error(_cli("compare", "--out", str(out), "--seed", -1), "--seed must be at least 0, got -1")
    assert not out.exists()


def test_compare_resume_refuses_a_damaged_run_in_one_line(tmp_path, _cli):
    out = tmp_path / "cmp"
    for name in ("without_ffl", "with_ffl"):
        (out / name / "checkpoints").mkdir(parents=True)
        (out / name / "config.json").write_text("{}")
    empty = out / "with_ffl" / "checkpoints" / "step-000000002.pt"
    empty.touch()  # a 0-byte checkpoint, as a full disk leaves it
    _assert_user_error(_cli("compare", "--out", str(out), "--resume"), f"checkpoint {empty} is empty (0 bytes)")
    (out / "without_ffl" / "config.json").unlink()
    result = _cli("compare", "--out", str(out), "--resume")
    _assert_user_error(result, f"{out / 'without_ffl'} is not a compare run (no config.json)")
    assert "pass --resume" not in result.stderr
    assert sorted(p.name for p in out.rglob("*")) == ["checkpoints", "checkpoints", "config.json",
                                                      "step-000000002.pt", "with_ffl", "without_ffl"]


def test_spectrum_bad_values(folders, tmp_path, _cli):
    out = tmp_path / "never"
    image = str(folders / "real" / "a.png")
    _assert_user_error(_cli("spectrum", image, "--out", out, "--alpha", -1), "--alpha must be at least 0, got -1")
    _assert_user_error(_cli("spectrum", image, "--out", out, "--pictures", -2), "--pictures must be at least 0")
    assert not out.exists()


def test_registered_for_the_umbrella():
    tools = {ep.name: ep for ep in entry_points(group="pixforge.tools")}
    assert tools["ffl"].load() is FFL and callable(FFL().demo)
