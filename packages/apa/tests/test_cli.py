"""pixforge-apa end to end on a tiny StyleGAN2: train, resume, generate, diagnose, export + pixforge-run, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pixforge.apa.cli import APA
from pixforge.core.checkpoint import Checkpoints, read_checkpoint
from pixforge.export.command import invoke
from pixforge.export.images import read_image


@pytest.fixture(scope="module")
def run(images16, tmp_path_factory, train_tiny) -> Path:
    return train_tiny(images16, tmp_path_factory.mktemp("runs"), kimg=0.032, aug="apa", p=0.2)


def test_run_directory_as_nvlabs(run):
    assert run.name.startswith("00000-") and run.name.endswith("-auto1-apa-kimg0.032-batch4")
    for name in ("training_options.json", "stats.jsonl", "reals.png", "fakes_init.png", "metric-swd.jsonl",
                 "model.safetensors", "log.txt"):
        assert (run / name).is_file(), name
    assert list(run.glob("fakes0000*.png"))
    ticks = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [t["step"] for t in ticks] == [2, 4, 6, 8]
    assert all(0 <= t["augment/p"] for t in ticks) and "signs/real" in ticks[-1]
    options = json.loads((run / "training_options.json").read_text())
    assert options["aug"] == "apa" and options["spec"]["batch"] == 4


def ticks(run: Path) -> list[dict]:
    """A run's stats.jsonl records without their timings."""
    return [{k: v for k, v in json.loads(line).items() if k not in ("time", "sec_per_kimg")}
            for line in (run / "stats.jsonl").read_text().splitlines()]


def test_resume_continues_exactly(images16, tmp_path, train_tiny):
    """4 steps, stop, resume to 8 == 8 steps at once: weights, p and the controller's state; the resumed run trains
    (and logs) steps 5-8 only (training from step 0 again would end on the same weights)."""
    whole = train_tiny(images16, tmp_path / "a", kimg=0.032, aug="apa", p=0.3, target=0.0)
    first = train_tiny(images16, tmp_path / "b", kimg=0.016, aug="apa", p=0.3, target=0.0)
    assert [t["step"] for t in ticks(first)] == [2, 4]
    resumed = train_tiny(images16, tmp_path / "b", kimg=0.032, aug="apa", p=0.3, target=0.0, resume=True)
    assert resumed == first and [p.name for p in (tmp_path / "b").iterdir()] == [first.name]
    assert [t["step"] for t in ticks(whole)] == [2, 4, 6, 8]
    assert ticks(resumed) == ticks(whole)  # each tick logged once, with the uninterrupted run's losses and p
    a, b = (read_checkpoint(Checkpoints(r / "checkpoints").latest()) for r in (whole, resumed))
    assert a["step"] == b["step"] == 8
    assert a["extra"]["strategy"] == b["extra"]["strategy"]
    moved = abs(a["extra"]["strategy"]["controller"]["p"] - 0.3)  # updated at steps 4 and 8, by 4 * 4 / 500k each
    assert moved in (pytest.approx(0.0, abs=1e-12), pytest.approx(2 * 16 / 500_000)) and moved > 0
    for name in ("G", "D", "G_ema"):
        for key, value in a["models"][name].items():
            assert torch.equal(value, b["models"][name][key]), (name, key)


def test_generate_diagnose_export(run, tmp_path):
    from pixforge.export.cli import Runtime

    code = invoke(APA, ["generate", run, "--out", tmp_path / "gen", "--seeds", "0-3,7", "--trunc", "0.7"],
                  "pixforge-apa")
    assert code == 0
    files = sorted(p.name for p in (tmp_path / "gen").iterdir())
    assert files == ["grid.png", "seed0000.png", "seed0001.png", "seed0002.png", "seed0003.png", "seed0007.png"]
    assert read_image(tmp_path / "gen" / "seed0000.png").shape == (16, 16, 3)
    again = tmp_path / "gen2"
    assert invoke(APA, ["generate", run, "--out", again, "--seeds", "0", "--trunc", "0.7"], "pixforge-apa") == 0
    assert np.array_equal(read_image(again / "seed0000.png"), read_image(tmp_path / "gen" / "seed0000.png"))

    assert invoke(APA, ["diagnose", run, "--out", tmp_path / "diag"], "pixforge-apa") == 0
    series = json.loads((tmp_path / "diag" / "diagnose.json").read_text())
    assert len(series["kimg"]) == len(series["p"]) == len(series["lambda_r"]) == 4
    assert "swd" in series["metrics"] and (tmp_path / "diag" / "diagnose.png").stat().st_size > 1000

    model = tmp_path / "g.onnx"
    assert invoke(APA, ["export", run, "--out", model], "pixforge-apa") == 0
    Runtime().run(str(model), out=str(tmp_path / "onnx"), count=3, seed=0, device="cpu")
    assert len(list((tmp_path / "onnx").glob("*.png"))) == 3


@pytest.mark.parametrize("argv, words", [
    (["train", "{data}", "{out}", "--aug", "ada+nope"], "--aug"),
    (["train", "{data}", "{out}", "--kimg", "0"], "--kimg"),
    (["train", "{data}", "{out}", "--cfg", "paper9"], "--cfg"),
    (["train", "{data}", "{out}", "--metrics", "fid"], "--inception"),
    (["train", "{data}", "{out}", "--init", "{out}/missing.pkl"], "missing.pkl"),
    (["train", "{data}", "{out}", "--res", "32"], "32x32"),
    (["train", "{out}/nothing", "{out}"], "nothing"),
    (["train", "{data}", "{out}", "--resume"], "no run"),
    (["generate", "{out}", "--out", "{out}/g"], "not a StyleGAN2 run"),
    (["generate", "{data}", "--out", "{out}/g", "--seeds", "5-2"], "backwards"),
    (["diagnose", "{data}", "--out", "{out}/d"], "stats.jsonl"),
    (["export", "{out}", "--out", "{out}/g.onnx"], "not a StyleGAN2 run"),
])
def test_bad_input_is_one_line_and_nothing_written(images16, tmp_path, capsys, argv, words):
    out = tmp_path / "runs"
    out.mkdir()
    args = [a.format(data=images16, out=out) for a in argv]
    assert invoke(APA, args, "pixforge-apa") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert list(out.iterdir()) == []  # no run folder, no g/, d/ or g.onnx


@pytest.mark.parametrize("name, content, line", [
    ("stats.jsonl", b'{"kimg": 0.004}\n{"kimg": 0.008, "augm\n{"kimg": 0.012}\n', 2),  # a line cut short
    ("stats.jsonl", b"garbage\n", 1),
    ("stats.jsonl", b'{"kimg": 0.004}\n{"kimg": 0.008, "augm\n', 2),  # cut short, not the line being written
    ("stats.jsonl", b'{"kimg": 0.004}\n[1, 2]\n', 2),  # JSON, but not a record
    ("stats.jsonl", b'{"kimg": 0.004}\n\xff\xfe\n', 2),  # not UTF-8
    ("stats.jsonl", b'{"step": 1}\n', 1),  # no kimg
    ("metric-swd.jsonl", b'{"kimg": 0.004, "results": {"swd": 1.0}}\n{"kimg": 0.008, "results": [1]}\n', 2),
])
def test_diagnose_names_a_damaged_log_line(tmp_path, capsys, name, content, line):
    """A damaged stats.jsonl or metric-*.jsonl is one line naming the file and the line, before anything is written
    (a cut-off line was skipped without a word, other damage was a traceback)."""
    run = tmp_path / "00000-run"
    run.mkdir()
    (run / "stats.jsonl").write_bytes(b'{"kimg": 0.004, "augment/p": 0.1}\n')
    (run / name).write_bytes(content)
    assert invoke(APA, ["diagnose", run, "--out", tmp_path / "diag"], "pixforge-apa") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{run / name} line {line} is not a log record" in err[0], err
    assert not (tmp_path / "diag").exists() and {p.name for p in run.iterdir()} <= {"stats.jsonl", name}


def test_a_run_of_another_tool_is_named(tmp_path, capsys):
    """generate / export name the tool a run's config.json records (here pixforge-tsit's `arch.tool`)."""
    run = tmp_path / "tsit-run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"arch": {"tool": "pixforge-tsit", "format": 1}}))
    for args in (["generate", run, "--out", tmp_path / "g"], ["export", run, "--out", tmp_path / "g.onnx"]):
        assert invoke(APA, args, "pixforge-apa") == 2
        err = capsys.readouterr().err.strip()
        assert err == f"pixforge-apa: error: {run} is a pixforge-tsit run, not a StyleGAN2 run"
    assert [p.name for p in tmp_path.iterdir()] == ["tsit-run"]


def test_dataset_verb_and_init_of_another_resolution(images16, run, tmp_path, capsys):
    """`dataset` makes a 32-px NVlabs zip; training on it from the 16-px run's weights is refused in one line."""
    from pixforge.core.stylegan2.dataset import TrainingSet

    data = tmp_path / "set32.zip"
    assert invoke(APA, ["dataset", images16, data, "--res", "32", "--transform", "resize"], "pixforge-apa") == 0
    assert len(TrainingSet(data)) == 24 and TrainingSet(data).resolution == 32
    capsys.readouterr()
    checkpoint = Checkpoints(run / "checkpoints").latest()
    out = tmp_path / "runs"
    args = ["train", data, out, "--init", checkpoint, "--batch", "4", "--cbase", "256", "--cmax", "32", "--map", "2",
            "--kimg", "0.004", "--device", "cpu", "--workers", "0", "--quiet", "--metrics", "none"]
    assert invoke(APA, args, "pixforge-apa") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(checkpoint) in err[0] and "another resolution" in err[0], err
    assert not out.exists() or not any(out.iterdir())


def test_cuda_asked_but_absent(images16, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert invoke(APA, ["train", images16, tmp_path / "runs", "--device", "cuda"], "pixforge-apa") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CUDA" in err[0]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("interval, every_step", [(0, True), (16, False)])
def test_r1_every_step_without_lazy_regularisation(images16, tmp_path, train_tiny, interval, every_step):
    """--d-reg-interval 0: R1 with D's main loss on every step ("Dboth", Primitives-PS pretraining); 16: lazily."""
    run = train_tiny(images16, tmp_path, kimg=0.016, tick=0.004, aug="noaug", d_reg_interval=interval,
                     g_reg_interval=interval, metrics="none")
    ticks = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [t["step"] for t in ticks] == [1, 2, 3, 4]
    assert ["D/reg" in t for t in ticks] == [True, every_step, every_step, every_step]
    assert ["G/reg" in t for t in ticks] == [True, every_step, every_step, every_step]


def test_fid_and_kid_with_an_inception_weights_file(images16, tmp_path, train_tiny):
    """--metrics swd,fid,kid --inception FILE: each snapshot appends to metric-<name>.jsonl (random weights in the
    public file's key format stand in for pt_inception-2015-12-05; the values are not FIDs of a real network)."""
    from pixforge.core.nets.inception import InceptionV3

    torch.manual_seed(0)
    weights = tmp_path / "pt_inception.pth"
    state = InceptionV3("fid").state_dict()
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, weights)
    run = train_tiny(images16, tmp_path / "runs", kimg=0.008, tick=0.008, metrics="swd,fid,kid",
                     inception=str(weights), aug="noaug")
    for name, key in (("swd", "swd"), ("fid", "fid"), ("kid", "kid_mean")):
        records = [json.loads(line) for line in (run / f"metric-{name}.jsonl").read_text().splitlines()]
        assert len(records) == 1 and records[0]["kimg"] == 0.008 and np.isfinite(records[0]["results"][key])
        assert records[0]["results"]["num_real"] == records[0]["results"]["num_fake"] == 16


@pytest.mark.cuda
def test_trains_resumes_and_exports_on_a_gpu(images16, tmp_path, train_tiny):
    """The CUDA path: bf16 AMP, channels_last, APA; then the exported graph against the trained G on the CPU."""
    from pixforge.export.cli import Runtime

    run = train_tiny(images16, tmp_path / "runs", kimg=0.016, aug="ada+apa", p=0.2, device="cuda", amp=True,
                     channels_last=True)
    run = train_tiny(images16, tmp_path / "runs", kimg=0.032, aug="ada+apa", p=0.2, device="cuda", amp=True,
                     channels_last=True, resume=True)
    assert read_checkpoint(Checkpoints(run / "checkpoints").latest())["step"] == 8
    assert invoke(APA, ["export", run, "--out", tmp_path / "g.onnx"], "pixforge-apa") == 0
    Runtime().run(str(tmp_path / "g.onnx"), out=str(tmp_path / "onnx"), count=2, seed=0, device="cpu")
