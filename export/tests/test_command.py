"""The shared Fire runner: every mistake on the command line is caught before the verb runs."""

import subprocess
import sys

import pytest

SCRIPT = """
import sys
from pathlib import Path
from pixforge.export.command import run

class Tool:
    '''A test tool.'''

    def make(self, *inputs: str, out: str = "o", quiet: bool = False, num_items: int = 1, sure: bool = True):
        '''Write a marker file naming what it got.'''
        Path(out).write_text(repr((inputs, quiet, num_items, sure)))
        return "done"

    def spectrum_ssim(self, real: str, fake: str, size: int = 8, alpha: float | None = None):
        '''Two required inputs.'''
        return f"{real} {fake} {size} {alpha}"

    def train(self, data: str = "d", seed: int = 0, amp: bool | str = False, **options):
        '''An optional-value switch and model options.'''
        return repr((data, amp, seed, sorted(options.items())))

run(Tool, name="t")
"""


@pytest.fixture
def cli(tmp_path):
    script = tmp_path / "tool.py"
    script.write_text(SCRIPT)

    def call(*args):
        return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, cwd=tmp_path)
    return call


def test_switch_does_not_swallow_the_next_positional(cli, tmp_path):
    result = cli("make", "-q", "photo.png", "--out", "m")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m").read_text() == "(('photo.png',), True, 1, True)"


def test_dashes_negated_switch_and_values(cli, tmp_path):
    assert cli("make", "a", "--num-items", "3", "--no-sure", "--out=m").returncode == 0
    assert (tmp_path / "m").read_text() == "(('a',), False, 3, False)"
    assert cli("make", "--quiet=False", "--num_items=-2", "--out", "m").returncode == 0
    assert (tmp_path / "m").read_text() == "((), False, -2, True)"


@pytest.mark.parametrize(("args", "message"), [
    (["make", "a", "--out", "m", "--overwirte"], "unknown option --overwirte for make (see make --help)"),
    (["make", "a", "--num-itmes", "2"], "unknown option --num-itmes for make (did you mean --num-items?)"),
    (["make", "--out"], "--out needs a value"),
    (["maek"], "unknown command 'maek' (did you mean make?); commands: make, spectrum-ssim"),
    (["spectrum-ssim", "a"], "spectrum-ssim: missing FAKE"),
    (["spectrum-ssim", "a", "b", "4", "0.5", "c"], "spectrum-ssim: unexpected argument 'c'"),
    (["make", "--no-sure=1"], "--no-sure takes no value"),
    (["make", "--num-items", "abc"], "--num-items must be a whole number, got 'abc'"),
    (["make", "--num-items=2.5"], "--num-items must be a whole number, got '2.5'"),
    (["spectrum-ssim", "a", "b", "4.5"], "SIZE must be a whole number, got '4.5'"),
    (["spectrum-ssim", "a", "b", "--alpha", "nan"], "--alpha must be a finite number, got 'nan'"),
    (["spectrum-ssim", "a", "b", "--alpha", "1e999"], "--alpha must be a finite number, got '1e999'"),
    (["spectrum-ssim", "a", "b", "--alpha", "x"], "--alpha must be a finite number, got 'x'"),
])
def test_mistakes_exit_2_before_any_work(cli, tmp_path, args, message):
    result = cli(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("t: error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize(("args", "want"), [
    (["train", "--amp"], ("d", True, 0, [])),
    (["train", "--amp", "--seed", "3"], ("d", True, 3, [])),
    (["train", "--amp", "bf16"], ("d", "bf16", 0, [])),
    (["train", "--amp=fp16"], ("d", "fp16", 0, [])),
    (["train", "--no-amp"], ("d", False, 0, [])),
    # a flag only **options takes keeps its value, text or number, and a bare one stands alone
    (["train", "x", "--encoder", "run/e.safetensors"], ("x", False, 0, [("encoder", "run/e.safetensors")])),
    (["train", "x", "--units", "pair", "--n", "4"], ("x", False, 0, [("n", 4), ("units", "pair")])),
    (["train", "--paper-shapes", "--seed", "1"], ("d", False, 1, [("paper_shapes", True)])),
])
def test_optional_value_switches_and_model_options(cli, args, want):
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(want)


def test_dashed_and_underscored_verbs(cli):
    assert cli("spectrum-ssim", "a", "b", "--size", "4").stdout.strip() == "a b 4 None"
    assert cli("spectrum_ssim", "a", "b", "--alpha", "0.5").stdout.strip() == "a b 8 0.5"
    assert cli("spectrum_ssim", "a", "b", "--alpha", "None", "--size", "-3").stdout.strip() == "a b -3 None"


def test_help_is_ours_with_dashes_and_no_fire_noise(cli, tmp_path):
    top = cli("--help")
    assert top.returncode == 0 and top.stderr == ""
    assert "spectrum-ssim" in top.stdout and "spectrum_ssim" not in top.stdout
    verb = cli("make", "x", "--help")
    assert verb.returncode == 0 and verb.stderr == "" and not (tmp_path / "o").exists()
    assert "--num-items NUM_ITEMS" in verb.stdout and "--sure / --no-sure" in verb.stdout
    assert "INFO" not in verb.stdout + verb.stderr and "num_items " not in verb.stdout


def test_invoke_runs_in_process_and_returns_the_exit_code(tmp_path, capsys, monkeypatch):
    from pixforge.export.command import invoke
    from pixforge.export.errors import PixforgeError

    class Tool:
        def ok(self, x: int = 1):
            return x * 2

        def bad(self):
            raise PixforgeError("nope")

    assert invoke(Tool, ["ok", "--x", 3], "t") == 0 and capsys.readouterr().out.strip() == "6"
    assert invoke(Tool, ["bad"], "t") == 2 and capsys.readouterr().err.strip() == "t: error: nope"
    assert invoke(Tool, ["ok", "--y", 1], "t") == 2
