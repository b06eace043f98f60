"""GAN pretraining on the synthesizers and low-shot finetuning, on a tiny StyleGAN2: the generated training set,
pretrain -> finetune (init, Freeze-D), sample, export, filter diversity, bad input."""

from __future__ import annotations

import inspect
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pixforge.core.checkpoint import Checkpoints, read_checkpoint
from pixforge.export.command import invoke
from pixforge.export.errors import PixforgeError
from pixforge.export.images import read_image, write_image
from pixforge.primitives.cli import Primitives
from pixforge.primitives.filters import layer_similarity, network_similarity
from pixforge.primitives.models import NAMES, get
from pixforge.primitives.training import DATASETS, SynthTrainingSet

TINY = {"batch": 4, "cbase": 256, "cmax": 32, "map": 2, "metric_images": 16, "device": "cpu", "workers": 0,
        "quiet": True, "tick": 0.008, "snap": 1, "kimg": 0.016}  # 4 steps of a StyleGAN2 small enough for seconds
TOOL = "pixforge-primitives"


def latest(run: Path) -> dict:
    return read_checkpoint(Checkpoints(run / "checkpoints").latest())


# ---------------------------------------------------------------------------------------------------------------
# the generated training set


def test_every_synthesizer_is_a_data_name():
    assert sorted(DATASETS) == sorted(NAMES)


def test_generated_set_is_deterministic_per_seed_and_index():
    ds = DATASETS["primitives-ps"](resolution=16, seed=3)
    image, label = ds[5]
    assert image.dtype == torch.uint8 and image.shape == (3, 16, 16) and image.is_contiguous()
    assert label.dtype == torch.float32 and label.shape == (0,)
    assert ds.resolution == 16 and ds.num_channels == 3 and ds.image_shape == [3, 16, 16]
    assert ds.label_dim == 0 and ds.label_shape == [0] and not ds.has_labels
    assert ds.random_labels(5).shape == (5, 0)
    expected = get("primitives-ps").sample(3, [5], 16, torch.device("cpu"))[0]  # the pixels `generate` writes
    assert torch.equal(image, torch.from_numpy(expected).permute(2, 0, 1))
    assert torch.equal(DATASETS["primitives-ps"](resolution=16, seed=3)[5][0], image)
    assert torch.equal(ds.item(5)[0], image)
    assert not torch.equal(ds[6][0], image)
    assert not torch.equal(DATASETS["primitives-ps"](resolution=16, seed=4)[5][0], image)
    assert not torch.equal(DATASETS["primitives"](resolution=16, seed=3)[5][0], image)


def test_generated_set_is_picklable_and_loads_in_workers():
    ds = DATASETS["pinknoise"](resolution=32, seed=1)
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[7][0], ds[7][0])
    loader = torch.utils.data.DataLoader(ds, batch_sampler=[[0, 1, 2], [9, 10, 11]], num_workers=1)
    batches = [images for images, _ in loader]
    assert torch.equal(batches[1][2], ds[11][0]) and batches[0].shape == (3, 3, 32, 32)


@pytest.mark.parametrize("res", [24, 8])
def test_generated_set_refuses_sizes_stylegan_cannot_train(res):
    with pytest.raises(PixforgeError):
        SynthTrainingSet(get("primitives"), res)


# ---------------------------------------------------------------------------------------------------------------
# pretrain -> finetune


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    return Path(Primitives.pretrain("primitives-ps", str(tmp_path_factory.mktemp("pre")), res=16, **TINY))


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Path:
    """8 random 16 x 16 images (.png, .tif and .tiff files)."""
    folder = tmp_path_factory.mktemp("target")
    rng = np.random.default_rng(0)
    for i in range(8):
        write_image(folder / f"{i}{('.png', '.tif', '.tiff')[i % 3]}", rng.integers(0, 256, (16, 16, 3), np.uint8))
    return folder


@pytest.fixture(scope="module")
def finetuned(pretrained, target, tmp_path_factory) -> Path:
    options = {k: v for k, v in TINY.items() if k not in ("cbase", "cmax", "map")}  # taken from the pretrained run
    # another seed than the pretraining: networks built afresh would differ from the pretrained ones
    return Path(Primitives.finetune(pretrained, target, str(tmp_path_factory.mktemp("ft")), freeze_d=2, seed=1,
                                    **options))


def test_defaults_follow_the_official_recipe():
    pre = inspect.signature(Primitives.pretrain).parameters
    assert (pre["cfg"].default, pre["aug"].default, pre["policy"].default, pre["res"].default) == \
        ("low_shot", "diffaug", "color,translation,cutout", 256)
    assert pre["kimg"].default is None  # low_shot's 300
    ft = inspect.signature(Primitives.finetune).parameters
    assert list(ft)[:3] == ["run", "data", "out"] and "init" not in ft
    assert (ft["cfg"].default, ft["aug"].default, ft["kimg"].default, ft["freeze_d"].default) == \
        ("low_shot", "diffaug", 400, 0)


def test_pretrain_runs_end_to_end_on_generated_data(pretrained):
    assert pretrained.name == "00000-primitives-ps-low_shot-diffaug-kimg0.016-batch4"
    for name in ("model.safetensors", "model.json", "reals.png", "fakes_init.png", "stats.jsonl"):
        assert (pretrained / name).is_file(), name
    options = json.loads((pretrained / "training_options.json").read_text())
    assert options["data"] == "primitives-ps" and options["aug"] == "diffaug"
    assert options["spec"]["lr"] == 0.002 and options["spec"]["gamma"] == 10 and options["spec"]["map"] == 2
    assert latest(pretrained)["step"] == 4
    reals = read_image(pretrained / "reals.png")  # 8 x 4 grid of images 0..31 of seed 0 (2 px padding)
    first = get("primitives-ps").sample(0, [0], 16, torch.device("cpu"))[0]
    assert np.array_equal(reals[2:18, 2:18], first)


def test_finetune_starts_from_the_pretrained_weights(pretrained, finetuned):
    options = json.loads((finetuned / "training_options.json").read_text())
    assert options["init"] == str(Checkpoints(pretrained / "checkpoints").latest())
    assert options["num_images"] == 8  # the .tif and .tiff files too
    assert (options["cbase"], options["cmax"], options["map"], options["res"]) == (256, 32, 2, 16)
    assert options["freeze_d"] == 2 and options["cfg"] == "low_shot" and options["aug"] == "diffaug"
    before, after = latest(pretrained)["models"], latest(finetuned)["models"]
    for name, key in (("G", "mapping.fc0.weight"), ("G", "synthesis.b16.conv1.weight"), ("G_ema", "mapping.fc1.weight"),
                      ("D", "b8.conv1.weight")):
        a, b = before[name][key], after[name][key]
        assert not torch.equal(a, b), (name, key)  # trained (G_ema: follows G) ...
        assert (a - b).norm() < 0.05 * a.norm(), (name, key)  # ... from the pretrained weights
    from pixforge.core.stylegan2.configs import spec
    from pixforge.core.stylegan2.train import build_networks

    torch.manual_seed(1)  # what a run with seed 1 but no --init would start from
    G, _ = build_networks(spec("low_shot", 16, 1, cbase=256, cmax=32), DATASETS["primitives"](resolution=16), None)
    fresh = G.state_dict()["mapping.fc0.weight"]
    assert (fresh - after["G"]["mapping.fc0.weight"]).norm() > 0.5 * fresh.norm()


def test_freeze_d_keeps_the_first_d_layers(pretrained, finetuned):
    before, after = latest(pretrained)["models"]["D"], latest(finetuned)["models"]["D"]
    for key in ("b16.fromrgb.weight", "b16.fromrgb.bias", "b16.conv0.weight"):
        assert torch.equal(before[key], after[key]), key
    for key in ("b16.conv1.weight", "b8.conv0.weight", "b4.fc.weight"):
        assert not torch.equal(before[key], after[key]), key
    from pixforge.core.stylegan2.configs import spec
    from pixforge.core.stylegan2.train import build_networks

    _, D = build_networks(spec("low_shot", 16, 1, cbase=256, cmax=32), DATASETS["primitives"](resolution=16), None, 2)
    buffers, params = dict(D.named_buffers()), dict(D.named_parameters())
    assert "b16.conv0.weight" in buffers and "b16.conv1.weight" in params


def test_sample_and_export_through_the_cli(finetuned, tmp_path):
    import onnx

    assert invoke(Primitives, ["sample", finetuned, "--out", tmp_path / "s", "--seeds", "0-2"], TOOL) == 0
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["grid.png", "seed0000.png", "seed0001.png",
                                                                 "seed0002.png"]
    assert read_image(tmp_path / "s" / "seed0001.png").shape == (16, 16, 3)
    assert invoke(Primitives, ["export", finetuned, "--out", tmp_path / "g.onnx"], TOOL) == 0
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "g.onnx")).metadata_props}
    assert TOOL in json.dumps(meta)


# ---------------------------------------------------------------------------------------------------------------
# filter diversity


def test_layer_similarity_by_hand():
    assert layer_similarity(torch.ones(4, 2, 3, 3)) == pytest.approx(1.0)
    assert layer_similarity(torch.eye(6).reshape(6, 6, 1, 1)) == pytest.approx(0.0, abs=1e-15)
    opposite = torch.stack([torch.ones(2, 3, 3), -torch.ones(2, 3, 3)])
    assert layer_similarity(opposite) == pytest.approx(-1.0)
    assert layer_similarity(opposite, absolute=True) == pytest.approx(1.0)
    w = torch.randn(5, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    flat = w.reshape(5, -1).numpy().astype(np.float64)
    pairs = [flat[i] @ flat[j] / np.linalg.norm(flat[i]) / np.linalg.norm(flat[j])
             for i in range(5) for j in range(5) if i != j]
    assert layer_similarity(w) == pytest.approx(np.mean(pairs), abs=1e-12)
    assert layer_similarity(w, absolute=True) == pytest.approx(np.mean(np.abs(pairs)), abs=1e-12)


def test_network_similarity_averages_the_3x3_layers():
    g = torch.Generator().manual_seed(1)
    state = {"a.weight": torch.randn(4, 2, 3, 3, generator=g), "b.weight": torch.ones(3, 4, 3, 3),
             "rgb.weight": torch.randn(3, 4, 1, 1, generator=g), "fc.weight": torch.ones(8, 8),
             "a.bias": torch.zeros(4)}
    result = network_similarity(state)
    assert list(result["layers"]) == ["a.weight", "b.weight"] and result["filters"] == {"a.weight": 4, "b.weight": 3}
    assert result["mean"] == pytest.approx((layer_similarity(state["a.weight"]) + 1.0) / 2)
    assert list(network_similarity(state, include_1x1=True)["layers"]) == ["a.weight", "b.weight", "rgb.weight"]


def test_filter_diversity_of_a_run(finetuned, tmp_path):
    out = Primitives().filter_diversity(str(finetuned), out=str(tmp_path / "fd.json"))
    lines = out.splitlines()
    result = json.loads(lines[-1])
    assert result == json.loads((tmp_path / "fd.json").read_text())
    assert any("paper Table 4" in line for line in lines)
    models = latest(finetuned)["models"]
    assert len(result["D"]["layers"]) == 5 and len(result["G"]["layers"]) == 5  # 16 px: 2 + 2 + 1, 1 + 2 + 2
    key = "b8.conv1.weight"
    assert result["D"]["layers"][key] == pytest.approx(layer_similarity(models["D"][key]))
    assert result["G"]["mean"] == pytest.approx(np.mean([layer_similarity(models["G_ema"][k])
                                                         for k in result["G"]["layers"]]))


# ---------------------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("argv, words", [
    (["pretrain", "--data", "primitives-xx", "--out", "{out}", "--res", "16"], "primitives-xx"),
    (["pretrain", "--data", "primitives-ps", "--out", "{out}", "--res", "24"], "power of two"),
    (["pretrain", "--data", "primitives", "--out", "{out}", "--res", "16", "--device", "cuda"], "CUDA"),
    (["finetune", "{run}", "{empty}", "{out}"], "holds no images"),
    (["finetune", "{target}", "{target}", "{out}"], "not a run"),
    (["finetune", "{run}", "{target}", "{out}", "--cbase", "512"], "--cbase 512"),
    (["finetune", "{run}", "{target}", "{out}", "--res", "32"], "--res 32"),
    (["filter-diversity", "--run", "{target}"], "not a run"),
    (["sample", "{target}", "--out", "{out}/s"], "not a StyleGAN2 run"),
])
def test_bad_input_is_one_line_and_nothing_written(pretrained, target, tmp_path, capsys, argv, words):
    out, empty = tmp_path / "runs", tmp_path / "empty"
    out.mkdir()
    empty.mkdir()
    args = [a.format(out=out, run=pretrained, target=target, empty=empty) for a in argv]
    assert invoke(Primitives, args, TOOL) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not any(out.iterdir())


@pytest.mark.parametrize("given, inside", [("run", ""), ("run", "ft"), ("checkpoint", "")])
def test_finetune_out_in_the_pretraining_run_is_refused(pretrained, target, capsys, given, inside):
    before = sorted(pretrained.rglob("*"))
    run = pretrained if given == "run" else max((pretrained / "checkpoints").glob("step-*.pt"))
    out = pretrained / inside
    options = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items() if k not in ("cbase", "cmax", "map")]
    assert invoke(Primitives, ["finetune", run, target, out, *options], TOOL) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--out {out} " in err[0] and f" {pretrained}" in err[0], err
    assert sorted(pretrained.rglob("*")) == before
