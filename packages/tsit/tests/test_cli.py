"""Bad input through the command line: one clear line on stderr, exit code 2, nothing left behind.

The error cases run the console script's own entry (`pixforge.export.command.invoke`: Fire, the error handling,
the exit code) in this process, which saves an interpreter start and a torch import per case; one translation and
one error go through a real `python -m pixforge.tsit.cli` process."""

import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from pixforge.core.checkpoint import save_checkpoint
from pixforge.core.io import read_image, write_image
from pixforge.export.command import invoke
from pixforge.tsit.cli import TSIT

TINY = ["--size", "32", "--ngf", "4", "--levels", "4", "--ndf", "4", "--steps", "1", "--device", "cpu", "--quiet"]


def process(*args):
    return subprocess.run([sys.executable, "-m", "pixforge.tsit.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})  # tiny networks: one thread


@pytest.fixture
def cli(capsys):
    """Run the command line in this process: (returncode, stdout, stderr) as a finished process would give them."""
    def call(*args):
        capsys.readouterr()
        code = invoke(TSIT, args, "pixforge-tsit")
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return call


def _one_error_line(result, *needles):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("pixforge-tsit: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def bad(tmp_path_factory, folders):
    root = tmp_path_factory.mktemp("bad")
    (root / "empty").mkdir()
    broken = root / "broken"
    write_image(broken / "ok.png", np.zeros((40, 40, 3), np.uint8))
    (broken / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    write_image(root / "labels" / "x.png", np.full((32, 32), 9, np.uint8))
    write_image(root / "images" / "x.png", np.zeros((32, 32, 3), np.uint8))
    save_checkpoint(root / "other.pt", step=1, models={}, config={"tool": "someone-else"})
    return root


def test_bad_training_inputs(tmp_path, bad, folders, cli):
    content, style = folders / "content", folders / "style"
    cases = [
        (["--content", bad / "empty", "--style", style], ["holds no image files", "empty"]),
        (["--content", content, "--style", bad / "broken"], ["bad.png", "not a readable image"]),
        (["--task", "sis", "--content", bad / "labels", "--style", bad / "images", "--num-classes", "4"],
         ["x.png", "class id 9", "--num-classes 4"]),
        (["--content", content, "--style", style, "--size", "36"], ["not divisible by the network's stride 8"]),
        (["--content", content, "--style", style, "--vgg-weights", tmp_path / "nope.pth"], ["nope.pth",
                                                                                              "does not exist"]),
        (["--content", content, "--style", style, "--perceptual", "vgg"], ["--perceptual vgg needs torchvision's VGG19",
                                                                            "--vgg-weights"]),
        (["--content", content, "--style", style, "--perceptual", "lpips"], ["--perceptual must be one of auto, vgg, "
                                                                              "pfr18, off, got 'lpips'"]),
        (["--content", content, "--style", style, "--steps", "0"], ["--steps must be an integer of at least 1",
                                                                    "got 0"]),
        (["--content", content, "--style", style, "--kimg", "0"], ["--kimg must be a number above 0"]),
        (["--content", content, "--style", style, "--levels", "1"], ["--levels must be an integer of at least 2"]),
        (["--content", content, "--style", style, "--ngf", "0"], ["--ngf must be an integer of at least 1"]),
        (["--content", content, "--style", style, "--ckpt-every", "0"], ["--ckpt-every must be"]),
        (["--content", content, "--style", style, "--ema", "1.5"], ["--ema must be a number from 0 up to"]),
        (["--content", content, "--style", style, "--keep-last", "0"], ["--keep-last must be"]),
        (["--content", content, "--style", style, "--amp", "fp8"], ["--amp 'fp8'"]),
    ]
    for k, (args, needles) in enumerate(cases):
        out = tmp_path / f"run{k}"
        _one_error_line(cli("train", "--out", out, *TINY, *args), *needles)
        assert not out.exists()
    (tmp_path / "file").write_text("x")
    _one_error_line(cli("train", "--out", tmp_path / "file", *TINY, "--content", content, "--style", style),
                    "--out", "file exists and is not a folder")


def test_bad_translate_and_export_inputs(tmp_path, bad, ast_run, folders, cli):
    content, style = folders / "content" / "c0.png", folders / "style" / "s0.png"
    _one_error_line(cli("translate", content, "--run", bad / "other.pt", "--style", style, "--out", tmp_path / "o"),
                    "other.pt", "not written by pixforge-tsit")
    _one_error_line(cli("translate", content, "--run", ast_run, "--style", bad / "broken" / "bad.png", "--out",
                        tmp_path / "o"), "bad.png")
    _one_error_line(cli("translate", tmp_path / "missing.png", "--run", ast_run, "--style", style, "--out",
                        tmp_path / "o"), "missing.png", "does not exist")
    _one_error_line(cli("export", bad / "other.pt", "--out", tmp_path / "m.onnx"), "not written by pixforge-tsit")
    dfvae_run = tmp_path / "dfvae-run"
    dfvae_run.mkdir()
    (dfvae_run / "config.json").write_text('{"tool": "pixforge-dfvae"}')
    _one_error_line(cli("export", dfvae_run, "--out", tmp_path / "m.onnx"),
                    f"{dfvae_run} is a pixforge-dfvae run, not a pixforge-tsit run")
    _one_error_line(cli("export", ast_run, "--out", tmp_path / "m.onnx", "--code", "random"),
                    "--code random is for semantic-synthesis models with a VAE encoder")
    _one_error_line(cli("export", ast_run, "--out", tmp_path / "m.onnx", "--code", "zero"), "--code must be one of")
    assert not (tmp_path / "o").exists() and not (tmp_path / "m.onnx").exists()


def test_translate_through_the_cli(tmp_path, ast_run, folders, bad):
    _one_error_line(process("export", bad / "other.pt", "--out", tmp_path / "m.onnx"), "not written by pixforge-tsit")
    assert not (tmp_path / "m.onnx").exists()
    result = process("translate", folders / "content", "--run", ast_run, "--style", folders / "style" / "s0.png",
                     "--out", tmp_path / "o", "--quiet", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["c0.png", "c1.png", "c2.png"]


def test_translate_never_writes_over_an_input(tmp_path, ast_run, folders, cli):
    work = tmp_path / "d"
    write_image(work / "x.png", read_image(folders / "content" / "c0.png"))
    write_image(work / "s0.png", read_image(folders / "style" / "s0.png"))
    before = {p.name: p.read_bytes() for p in work.iterdir()}
    for args in (["--style", folders / "style" / "s0.png"], ["--style", folders / "style" / "s0.png", "--overwrite"]):
        _one_error_line(cli("translate", work / "x.png", "--run", ast_run, "--out", work, *args, "--device", "cpu"),
                        f"{work / 'x.png'} is an input: choose an --out that does not write over the inputs")
    # the style image is an input too: content s0.png from elsewhere, written into the style's folder
    _one_error_line(cli("translate", folders / "style" / "s0.png", "--run", ast_run, "--style", work / "s0.png",
                        "--out", work, "--overwrite", "--device", "cpu"), f"{work / 's0.png'} is an input")
    assert {p.name: p.read_bytes() for p in work.iterdir()} == before
    _one_error_line(cli("translate", work / "x.png", "--run", ast_run, "--style", work / "s0.png", "--out",
                        work / "x.png", "--device", "cpu"), "--out", "x.png exists and is not a folder")


def test_a_short_boolean_flag_keeps_the_next_positional(tmp_path, ast_run, folders, cli):
    result = cli("translate", "-q", folders / "content" / "c1.png", "--run", ast_run, "--style",
                 folders / "style" / "s0.png", "--out", tmp_path / "o", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["c1.png"]


def test_empty_checkpoints_are_one_line_and_leave_the_run_alone(tmp_path, ast_run, folders, cli):
    (tmp_path / "empty.pt").write_bytes(b"")
    content, style = folders / "content", folders / "style"
    _one_error_line(cli("translate", content, "--run", tmp_path / "empty.pt", "--style", style / "s0.png", "--out",
                        tmp_path / "o"), "empty.pt is empty (0 bytes)")
    _one_error_line(cli("convert", tmp_path / "empty.pt", "--out", tmp_path / "c"), "empty.pt is empty (0 bytes)")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_bytes((ast_run / "config.json").read_bytes())
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "step-000000003.pt").write_bytes(b"")
    _one_error_line(cli("train", "--out", run, *TINY, "--content", content, "--style", style, "--resume"),
                    "step-000000003.pt is empty (0 bytes)")
    assert (run / "config.json").read_bytes() == (ast_run / "config.json").read_bytes()
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.json"]
    assert not (tmp_path / "o").exists() and not (tmp_path / "c").exists()
