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
