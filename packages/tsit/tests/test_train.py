"""Training: losses move the right way, exact resume, run-directory contents, semantic and multi-modal tasks."""

import json
import os
import signal

import numpy as np
import pytest
import torch

from pixforge.core.checkpoint import read_checkpoint
from pixforge.core.loop import MetricLogger, read_metrics
from pixforge.export.errors import PixforgeError
from pixforge.tsit import train as train_module
from pixforge.tsit.model import load
from pixforge.tsit.train import TASK_WEIGHTS, check_size, parse_size, train


def test_short_training_lowers_the_generator_losses(tmp_path, folders, vgg_file, tiny):
    run = train(str(tmp_path / "run"), content=str(folders / "content"), style=str(folders / "style"), batch=2,
                steps=48, vgg_weights=str(vgg_file), sample_every=100, ckpt_every=100, **tiny)
    records = read_metrics(run / "metrics.jsonl")
    assert len(records) == 48 and all(r["g_vgg"] > 0 for r in records)
    # feature matching + perceptual, over a quarter of the run at each end: 24 steps were too few (the last 6
    # steps' mean 0.87 vs the first 6's 0.85 with AVX2 / AVX-512 kernels); here 0.97 -> 0.73 on all three
    g = [r["g_feat"] + r["g_vgg"] for r in records]
    assert np.mean(g[-12:]) < np.mean(g[:12])
    d = [r["d_real"] + r["d_fake"] for r in records]
    assert abs(d[0] - 2.0) < 0.1 and np.mean(d[-12:]) < 2.0  # hinge starts at ~2 and D learns
    assert all(np.isfinite(list(r.values())[2:]).all() for r in records)


def test_without_vgg_weights_the_perceptual_term_is_pfr18(tmp_path, folders, tiny, monkeypatch):
    monkeypatch.delenv("PIXFORGE_VGG19_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    run = train(str(tmp_path / "run"), content=str(folders / "content"), style=str(folders / "style"), batch=2,
                steps=2, sample_every=100, ckpt_every=100, **tiny)
    assert json.loads((run / "config.json").read_text())["perceptual"] == "pfr18"
    assert all(r["g_vgg"] > 0 for r in read_metrics(run / "metrics.jsonl"))
    off = train(str(tmp_path / "off"), content=str(folders / "content"), style=str(folders / "style"), batch=2,
                steps=2, sample_every=100, ckpt_every=100, perceptual="off", **tiny)
    assert all(r["g_vgg"] == 0 for r in read_metrics(off / "metrics.jsonl"))


def test_run_directory_and_release(ast_run):
    for name in ("config.json", "metrics.jsonl", "log.txt", "generator.safetensors", "generator.json"):
        assert (ast_run / name).is_file()
    assert [p.name for p in (ast_run / "samples").iterdir()] == ["step-000000003.png"]
    config = json.loads((ast_run / "config.json").read_text())
    assert config["arch"]["tool"] == "pixforge-tsit" and config["arch"]["stride"] == 8
    assert (config["lambda_vgg"], config["lambda_feat"]) == TASK_WEIGHTS["ast"] == (1.0, 1.0)
    ckpt = read_checkpoint(ast_run / "checkpoints" / "step-000000003.pt")
    assert set(ckpt["models"]) == {"G", "D"} and set(ckpt["optimizers"]) == {"G", "D"}
    opt = ckpt["optimizers"]["G"]["param_groups"][0]
    assert opt["lr"] == 1e-4 and tuple(opt["betas"]) == (0.0, 0.9)
    assert ckpt["optimizers"]["D"]["param_groups"][0]["lr"] == 4e-4
    trained = load(ast_run)
    assert not trained.generator.training and trained.encoder is None


class InterruptAt(MetricLogger):
    """Sends this process SIGINT right after step `at` is logged, as a user pressing Ctrl-C."""

    at = 2

    def log(self, step, **scalars):
        values = super().log(step, **scalars)
        if step == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return values


def test_interrupt_and_resume_is_exact(tmp_path, folders, tiny, monkeypatch):
    common = dict(content=str(folders / "content"), style=str(folders / "style"), batch=2, steps=4, ckpt_every=3,
                  sample_every=100, ema=0.9, decay_steps=3, **tiny)
    straight = train(str(tmp_path / "a"), **common)
    with monkeypatch.context() as m:
        m.setattr(train_module, "MetricLogger", InterruptAt)
        train(str(tmp_path / "b"), **common)
    assert [p.name for p in (tmp_path / "b" / "checkpoints").iterdir()] == ["step-000000002.pt"]
    assert not (tmp_path / "b" / "generator.safetensors").exists()
    resumed = train(str(tmp_path / "b"), resume=True, **common)
    a = read_checkpoint(straight / "checkpoints" / "step-000000004.pt")
    b = read_checkpoint(resumed / "checkpoints" / "step-000000004.pt")
    for name in ("G", "D", "G_ema"):
        for key, value in a["models"][name].items():
            assert torch.equal(value, b["models"][name][key]), (name, key)
    ma, mb = read_metrics(straight / "metrics.jsonl"), read_metrics(resumed / "metrics.jsonl")
    assert [r["g_gan"] for r in ma] == [r["g_gan"] for r in mb]
    assert [r["lr_scale"] for r in ma] == [1.0, 1.0, 2 / 3, 1 / 3]


def test_semantic_synthesis_with_vae(tmp_path, labels, tiny):
    run = train(str(tmp_path / "sis"), task="sis", content=str(labels / "labels"), style=str(labels / "images"),
                num_classes=4, batch=2, steps=2, enc_size=32, sample_every=2, ckpt_every=2, **tiny)
    config = json.loads((run / "config.json").read_text())
    assert config["vae"] and (config["lambda_vgg"], config["lambda_feat"]) == (20.0, 10.0)
    assert config["arch"]["latent_hw"] == [4, 4] and config["arch"]["style_stream"] is False
    records = read_metrics(run / "metrics.jsonl")
    assert all(r["g_kld"] > 0 for r in records)
    ckpt = read_checkpoint(run / "checkpoints" / "step-000000002.pt")
    d_first = ckpt["models"]["D"]["scales.0.blocks.0.0.weight"]
    assert d_first.shape[1] == 3 + 4  # D sees (one-hot labels, image)
    assert len([k for k in ckpt["models"]["D"] if k.startswith("scales.0.blocks.") and k.endswith("bias")]) == 2
    trained = load(run)
    assert trained.encoder is not None


def test_semantic_synthesis_without_vae_starts_from_labels(tmp_path, labels, tiny):
    run = train(str(tmp_path / "sis"), task="sis", content=str(labels / "labels"), style=str(labels / "images"),
                num_classes=4, vae=False, batch=1, steps=1, sample_every=1, **tiny)
    arch = load(run).arch
    assert arch["start"] == "content" and arch["latent_hw"] is None


def test_multimodal_records_conditions(tmp_path, folders, tiny):
    run = train(str(tmp_path / "mmis"), task="mmis", content=str(folders / "content"),
                style=str(folders / "conditions"), batch=1, steps=1, sample_every=1, **tiny)
    assert load(run).arch["conditions"] == ["cold", "warm"]
    with pytest.raises(PixforgeError, match="two or more condition"):
        train(str(tmp_path / "one"), task="mmis", content=str(folders / "content"), style=str(folders / "style"),
              steps=1, **tiny)
    assert not (tmp_path / "one").exists()


def test_sizes():
    assert parse_size(256) == (256, 256) and parse_size("128x256") == (128, 256)
    with pytest.raises(PixforgeError, match="not divisible by the network's stride 128"):
        check_size((200, 256), 8)
    with pytest.raises(PixforgeError, match="1x1 map"):
        check_size((128, 128), 8)
    check_size((128, 256), 8)


def test_fid_is_logged_with_inception_weights(tmp_path, folders, tiny):
    from pixforge.core.nets.inception import InceptionV3

    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(InceptionV3("fid").state_dict(), weights)
    common = dict(content=str(folders / "content"), style=str(folders / "style"), batch=1, steps=2, fid_every=2,
                  fid_images=4, sample_every=100, **tiny)
    run = train(str(tmp_path / "run"), inception_weights=str(weights), **common)
    fids = [r for r in read_metrics(run / "metrics.jsonl") if "fid" in r]
    assert [r["step"] for r in fids] == [2] and np.isfinite(fids[0]["fid"]) and fids[0]["fid"] >= 0
    with pytest.raises(PixforgeError, match="--inception-weights"):
        train(str(tmp_path / "no"), **common)
    assert not (tmp_path / "no").exists()
