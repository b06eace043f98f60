"""The `pixforge` umbrella command finds tools through the `pixforge.tools` entry points."""

import subprocess
import sys

import pytest

UMBRELLA = [sys.executable, "-m", "pixforge.core.umbrella"]


def _run(*args):
    return subprocess.run([*UMBRELLA, *args], capture_output=True, text=True)


def test_list_shows_core_and_runtime():
    result = _run("list")
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.strip().splitlines()]
    assert names[0] == "core" and "run" in names


def test_tool_verbs_are_reachable():
    result = _run("core", "env")
    assert result.returncode == 0 and '"torch"' in result.stdout


def test_unknown_tool_is_a_clear_error():
    result = _run("nosuchtool", "train")
    assert result.returncode == 2 and "unknown tool" in result.stderr and len(result.stderr.splitlines()) == 1


def test_demo_with_unknown_only_is_a_clear_error(tmp_path):
    result = _run("demo", "--out", str(tmp_path / "d"), "--only", "nosuchtool")
    assert result.returncode == 2 and "nosuchtool" in result.stderr
    assert not (tmp_path / "d").exists()


def test_tool_errors_keep_the_convention(tmp_path):
    result = _run("core", "export", str(tmp_path / "missing-run"), str(tmp_path / "m.onnx"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "missing-run" in result.stderr and not (tmp_path / "m.onnx").exists()


def test_train_bad_input_is_one_line_and_writes_nothing(tmp_path):
    import torch

    if not torch.cuda.is_available():
        result = _run("core", "train", str(tmp_path / "run"), "--device", "cuda")
        assert result.returncode == 2 and "no CUDA GPU" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
    result = _run("core", "train", str(tmp_path / "r2"), "--device", "tpu")
    assert result.returncode == 2 and "not a device" in result.stderr and not (tmp_path / "r2").exists()
    (tmp_path / "r3").mkdir()
    (tmp_path / "r3" / "config.json").write_text("{}")
    result = _run("core", "train", str(tmp_path / "r3"), "--device", "cpu")
    assert result.returncode == 2 and "--resume" in result.stderr
    assert sorted(p.name for p in (tmp_path / "r3").iterdir()) == ["config.json"]


@pytest.mark.parametrize("tool, args", [("apa", ["--kimg", "0"]), ("tsit", ["--steps", "0"]),
                                        ("singleimage", ["--steps", "0"])])
def test_a_demo_refuses_bad_numbers_before_writing(tmp_path, tool, args):
    result = _run(tool, "demo", "--out", str(tmp_path / "d"), *args)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "d").exists()
