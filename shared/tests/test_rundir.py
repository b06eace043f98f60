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


def test_overwrite_deletes_runs_only(tmp_path):
    """A folder with files but no run (no config.json) is never cleared, --overwrite or not."""
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.png").write_bytes(b"x")
    for overwrite in (False, True):
        with pytest.raises(PixforgeError, match="photos is not empty and holds no run"):
            RunDir(tmp_path / "photos").start({"a": 1}, overwrite=overwrite)
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["a.png"]


@pytest.mark.parametrize("where, message", [("data", "is the input"), ("data/run", "is inside the input folder"),
                                            (".", "holds the input")])
def test_a_run_directory_over_its_inputs_is_refused_before_anything_is_written(tmp_path, where, message):
    data = tmp_path / "data"
    data.mkdir()
    (data / "config.json").write_text("{}")  # even one that looks like a run: --overwrite would delete the data
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for overwrite in (False, True):
        with pytest.raises(PixforgeError, match=message):
            RunDir(tmp_path / where, inputs=[None, data]).start({"a": 1}, overwrite=overwrite)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_check_outside(tmp_path):
    from pixforge.export.options import check_outside

    (tmp_path / "in").mkdir()
    check_outside(tmp_path / "out", [tmp_path / "in", None])
    check_outside(tmp_path, [tmp_path / "in"])  # holding an input is allowed unless `holding`
    for out, holding, message in ((tmp_path / "in", False, "is the input"),
                                  (tmp_path / "in" / "x.json", False, "is inside the input folder"),
                                  (tmp_path, True, "holds the input")):
        with pytest.raises(PixforgeError, match=message):
            check_outside(out, [tmp_path / "in"], "--out", holding=holding)


def test_nan_weights_are_refused_when_loaded(tmp_path):
    """Release weights, checkpoints and weight files that hold NaN or infinity: one sentence naming the tensor."""
    import torch

    from pixforge.core.checkpoint import load_release, read_checkpoint, save_checkpoint, save_release
    from pixforge.core.nets.inception import load_weights

    state = {"w": torch.ones(3), "b": torch.tensor([0.0, float("nan")]), "steps": torch.tensor([3])}
    save_release(tmp_path / "run", state, {})
    save_checkpoint(tmp_path / "step.pt", step=1, models={"G": state})
    torch.save(state, tmp_path / "w.pth")
    for load, where in ((lambda: load_release(tmp_path / "run"), "model.safetensors"),
                        (lambda: read_checkpoint(tmp_path / "step.pt"), "step.pt (model 'G')"),
                        (lambda: load_weights(tmp_path / "w.pth"), "w.pth")):
        with pytest.raises(PixforgeError, match=r"holds NaN or infinite weights \(b\)") as err:
            load()
        assert where in str(err.value)
    state["b"] = torch.zeros(2)
    save_release(tmp_path / "run", state, {})
    assert load_release(tmp_path / "run")[0]["b"].tolist() == [0.0, 0.0]


def test_resume_refuses_a_run_of_another_tool(tmp_path):
    RunDir(tmp_path / "run").start({"tool": "pixforge-forensics", "lr": 0.1})
    with pytest.raises(PixforgeError, match="is a pixforge-forensics run, not a pixforge-dfvae run"):
        RunDir(tmp_path / "run").start({"tool": "pixforge-dfvae"}, resume=True)
    RunDir(tmp_path / "other").start({"lr": 0.1})
    with pytest.raises(PixforgeError, match="is a run of another tool, not a pixforge-dfvae run"):
        RunDir(tmp_path / "other").start({"tool": "pixforge-dfvae"}, resume=True)


def test_check_tool_names_the_tool_of_a_run(tmp_path):
    """`RunDir.check_tool`: a run whose config.json names another tool (`tool`, or `arch.tool` as pixforge-tsit) is
    refused naming it; a run that names none, or no run at all, passes to the caller's own checks."""
    from pixforge.core.rundir import recorded_tool

    for name, config in (("dfvae", {"tool": "pixforge-dfvae"}), ("tsit", {"arch": {"tool": "pixforge-tsit"}}),
                         ("plain", {"lr": 0.1})):
        RunDir(tmp_path / name).start(config)
    for name in ("dfvae", "tsit"):
        with pytest.raises(PixforgeError) as err:
            RunDir(tmp_path / name).check_tool("pixforge-x")
        assert str(err.value) == f"{tmp_path / name} is a pixforge-{name} run, not a pixforge-x run"
    RunDir(tmp_path / "dfvae").check_tool("pixforge-dfvae")
    RunDir(tmp_path / "plain").check_tool("pixforge-x")
    RunDir(tmp_path / "missing").check_tool("pixforge-x")
    assert recorded_tool({"arch": "stylegan2"}) is None


def test_check_not_replacing(tmp_path):
    """A file written into a run earlier (an export, a picture) may be replaced; the run's records and the inputs
    themselves never; a folder is not a file."""
    from pixforge.export.options import check_not_replacing

    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.safetensors", "config.json", "encoder.onnx", "paint.png"):
        (run / name).write_text("x")
    (tmp_path / "image.png").write_text("x")
    inputs = [run, tmp_path / "image.png", None]
    for ok in (run / "encoder.onnx", run / "paint.png", run / "new.json", tmp_path / "other.png"):
        check_not_replacing(ok, inputs)
    for out, message in ((run / "model.safetensors", "would replace model.safetensors, a record"),
                         (run / "config.json", "would replace config.json"), (tmp_path / "image.png", "is the input"),
                         (run, "is a folder")):
        with pytest.raises(PixforgeError, match=message):
            check_not_replacing(out, inputs)
