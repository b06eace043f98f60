import json

import pytest

from pixforge.core.rundir import RunDir
from pixforge.export.errors import PixforgeError


def test_new_run_layout(tmp_path):
    run = RunDir(tmp_path / "run")
    config = run.start({"lr": 0.1})
    assert config == {"lr": 0.1}
    assert json.loads(run.config.read_text()) == {"lr": 0.1}
    assert run.checkpoints.is_dir() and run.samples.is_dir() and run.log.exists()
    assert run.sample_path(12).name == "step-000000012.png"


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    RunDir(tmp_path / "run").start({"lr": 0.1})
    with pytest.raises(PixforgeError, match="--resume"):
        RunDir(tmp_path / "run").start({"lr": 0.2})
    assert RunDir(tmp_path / "run").start({"lr": 0.1, "steps": 5}, resume=True) == {"lr": 0.1, "steps": 5}
    assert RunDir(tmp_path / "run").start({"lr": 0.3}, overwrite=True) == {"lr": 0.3}


def test_resume_without_run_is_an_error(tmp_path):
    with pytest.raises(PixforgeError, match="not a run directory"):
        RunDir(tmp_path / "nothing").start({}, resume=True)


def test_a_file_in_the_way_and_an_unreadable_config_are_clear_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PixforgeError, match="exists and is not a folder"):
        RunDir(tmp_path / "file").start({"a": 1})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{not json")
    with pytest.raises(PixforgeError, match="config.json is not a readable JSON file"):
        RunDir(tmp_path / "run").start({"a": 1}, resume=True)


@pytest.mark.parametrize(("option", "value"), [("steps", 0), ("batch", -1), ("size", 0), ("ckpt_every", 0)])
def test_reference_loop_checks_its_options_before_making_the_run(tmp_path, option, value):
    from pixforge.core import toy

    with pytest.raises(PixforgeError, match=f"--{option.replace('_', '-')} must be a positive integer"):
        toy.train(str(tmp_path / "run"), **{option: value})
    assert not (tmp_path / "run").exists()
