"""Contrastive pretraining, linear evaluation, export: formulas, determinism, end to end, bad input."""

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pixforge.core.nets.resnet import IMAGENET_MEAN, IMAGENET_STD, resnet
from pixforge.export.command import invoke
from pixforge.export.errors import PixforgeError
from pixforge.export.images import write_image
from pixforge.spectra.cli import Spectra
from pixforge.spectra.contrastive import MoCo, TwoViews, align_loss, info_nce_logits, uniform_loss
from pixforge.spectra.pretrain import ContrastiveLoss, build_model, train

TINY = dict(arch="resnet18", size=32, gen_size=32, batch=4, queue=16, n=8, device="cpu", quiet=True,
            sample_every=1000, ckpt_every=1000)


def run_cli(*args):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = invoke(Spectra, [str(a) for a in args], "pixforge-spectra")
    return code, err.getvalue()


@pytest.fixture(scope="module")
def moco():
    torch.manual_seed(0)
    return MoCo("resnet18", dim=8, K=8, m=0.9, T=0.2, generator=torch.Generator().manual_seed(0))


def test_momentum_update_follows_the_formula(moco):
    with torch.no_grad():
        for p in moco.encoder_q.parameters():
            p.add_(torch.randn_like(p))
    before_k = [p.clone() for p in moco.encoder_k.parameters()]
    query = [p.clone() for p in moco.encoder_q.parameters()]
    moco.momentum_update()
    for k_old, q, k_new in zip(before_k, query, moco.encoder_k.parameters(), strict=True):
        torch.testing.assert_close(k_new, 0.9 * k_old + 0.1 * q, rtol=1e-6, atol=1e-6)
    assert not any(p.requires_grad for p in moco.encoder_k.parameters())


def test_queue_overwrites_the_oldest_keys_in_order(moco):
    moco.queue_ptr.zero_()
    first, second, third = (F.normalize(torch.randn(4, 8), dim=1) for _ in range(3))
    moco.dequeue_and_enqueue(first)
    assert int(moco.queue_ptr) == 4
    torch.testing.assert_close(moco.queue[:, :4], first.T)
    moco.dequeue_and_enqueue(second)
    assert int(moco.queue_ptr) == 0  # wrapped: K = 8
    torch.testing.assert_close(moco.queue[:, 4:], second.T)
    moco.dequeue_and_enqueue(third)  # the oldest (first) go
    torch.testing.assert_close(moco.queue, torch.cat([third.T, second.T], 1))
    with pytest.raises(ValueError, match="multiple"):
        moco.dequeue_and_enqueue(torch.randn(3, 8))


def test_info_nce_positive_at_index_0_and_loss_by_hand():
    q, k = F.normalize(torch.randn(3, 5), dim=1), F.normalize(torch.randn(3, 5), dim=1)
    queue = F.normalize(torch.randn(5, 7), dim=0)
    logits, labels = info_nce_logits(q, k, queue, 0.2)
    assert logits.shape == (3, 8) and labels.tolist() == [0, 0, 0]
    for i in range(3):
        assert math.isclose(logits[i, 0].item(), float(q[i] @ k[i]) / 0.2, rel_tol=1e-5)
        for j in range(7):
            assert math.isclose(logits[i, 1 + j].item(), float(q[i] @ queue[:, j]) / 0.2, rel_tol=1e-5, abs_tol=1e-6)
    by_hand = np.mean([-(float(q[i] @ k[i]) / 0.2) + math.log(
        math.exp(float(q[i] @ k[i]) / 0.2) + sum(math.exp(float(q[i] @ queue[:, j]) / 0.2) for j in range(7)))
        for i in range(3)])
    assert math.isclose(F.cross_entropy(logits, labels).item(), by_hand, rel_tol=1e-5)


def test_align_and_uniform_losses_follow_the_formulas():
    x, y = F.normalize(torch.randn(6, 4), dim=1), F.normalize(torch.randn(6, 4), dim=1)
    align = np.mean([float(((x[i] - y[i]) ** 2).sum()) for i in range(6)])  # alpha 2: squared distance
    assert math.isclose(align_loss(x, y, 2).item(), align, rel_tol=1e-5)
    assert math.isclose(align_loss(x, y, 1).item(), np.mean([float((x[i] - y[i]).norm()) for i in range(6)]),
                        rel_tol=1e-5)
    pairs = [math.exp(-2 * float(((x[i] - x[j]) ** 2).sum())) for i in range(6) for j in range(i + 1, 6)]
    assert math.isclose(uniform_loss(x, 2).item(), math.log(np.mean(pairs)), rel_tol=1e-5)


def test_two_views_differ_have_the_size_and_repeat_per_seed():
    images = torch.randint(0, 256, (4, 3, 48, 48), dtype=torch.uint8)
    for kind in ("mocov2", "alignunif"):
        q, k = TwoViews(kind, 32, seed=1)(images, step=5)
        assert q.shape == k.shape == (4, 3, 32, 32)
        assert not torch.equal(q, k)
        q2, k2 = TwoViews(kind, 32, seed=1)(images, step=5)
        assert torch.equal(q, q2) and torch.equal(k, k2)
        assert not torch.equal(q, TwoViews(kind, 32, seed=2)(images, step=5)[0])
        assert not torch.equal(q, TwoViews(kind, 32, seed=1)(images, step=6)[0])


@pytest.mark.parametrize("method", ["mocov2", "alignunif"])
def test_loss_goes_down_on_a_fixed_batch(method):
    """A fixed batch of generated images, fixed views; MoCo against a fixed queue (reset before each step: with the
    batch's own keys enqueued the positives would reappear as negatives and the target would move)."""
    from pixforge.spectra.pretrain import open_data

    data = open_data("dead-leaves-squares,color", 32, 48, 8, 0)
    images = torch.stack([data.image(i) for i in range(8)])
    torch.manual_seed(0)
    config = dict(method=method, arch="resnet18", dim=16, queue=8, moco_momentum=0.99, temperature=0.2, mlp=True,
                  bn="shuffle", align_w=1.0, unif_w=1.0, align_alpha=2.0, unif_t=2.0)
    model = build_model(config, torch.Generator().manual_seed(0))
    opt = torch.optim.SGD(model.encoder_q.parameters(), lr=0.05, momentum=0.9)
    loss = ContrastiveLoss(model, config, None, torch.amp.GradScaler("cpu", enabled=False))
    q, k = TwoViews(method, 32, seed=0)(images, step=0)
    initial = model.queue.clone() if method == "mocov2" else None
    values = []
    for _ in range(8):
        if initial is not None:
            model.queue.copy_(initial)
        opt.zero_grad()
        values.append(loss.accumulate_gradients("main", q, k)["loss"].item())
        opt.step()
    assert np.mean(values[-2:]) < values[0], values


def test_pretrain_end_to_end_resume_exact_and_weights_load_both_ways(tmp_path):
    straight = train("dead-leaves-squares,spectrum", str(tmp_path / "straight"), epochs=2, **TINY)
    metrics = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4] and all(math.isfinite(m["loss"]) for m in metrics)
    assert metrics[0]["lr"] == metrics[1]["lr"] == pytest.approx(0.015 * 4 / 256)  # lr per 256, per epoch
    assert metrics[2]["lr"] == pytest.approx(0.015 * 4 / 256 / 2)  # cosine at epoch 1 of 2
    train("dead-leaves-squares,spectrum", str(tmp_path / "split"), epochs=1, **TINY)
    split = train("dead-leaves-squares,spectrum", str(tmp_path / "split"), epochs=2, resume=True, **TINY)
    from safetensors.torch import load_file

    a, b = load_file(straight / "model.safetensors"), load_file(split / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)  # queue and key encoder too
    # the resumed run trained (and logged) steps 3 and 4 only: each step once, with the straight run's loss and lr
    # (training from step 0 again would end on the same weights)
    resumed = [json.loads(line) for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in m.items() if k != "time"} for m in resumed] == [
        {k: v for k, v in m.items() if k != "time"} for m in metrics]
    # the backbone loads as a torchvision-named ResNet, from the release and from the MoCo-layout state
    encoder = resnet("resnet18", weights=straight / "encoder.safetensors")
    from_moco = resnet("resnet18", weights=straight / "model.safetensors")
    assert isinstance(encoder.fc, torch.nn.Identity)
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, from_moco.state_dict()[key])
        assert torch.equal(value, a[f"encoder_q.{key}"])
    assert sorted(p.name for p in (straight / "samples").iterdir()) == ["step-000000004.png"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Three classes of 24 generated 32 px images each (one model per class)."""
    root = tmp_path_factory.mktemp("classes")
    for name in ("dead-leaves-squares", "spectrum", "color"):
        Spectra().generate(name, n=24, size=32, out=str(root / name), quiet=True)
        (root / name / "manifest.json").unlink()
    return root


def test_linear_eval_small_scale_probe_uses_adam_and_its_decay(labelled, monkeypatch):
    """--optimizer adam (--momentum as beta1) and --lr-decay: align/uniform's linear_eval_imagenet100.py recipe."""
    seen = []
    step = torch.optim.Adam.step

    def recording(self, *args, **kwargs):
        seen.append((self.param_groups[0]["lr"], self.param_groups[0]["betas"]))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording)
    report = json.loads(Spectra().linear_eval(data=str(labelled), arch="random-resnet18", size=32, epochs=3,
                                              batch=32, milestones="1,2", optimizer="adam", lr=1e-3, momentum=0.5,
                                              lr_decay=0.2, standardize=False, augment=False, quiet=True,
                                              device="cpu"))
    per_epoch = -(-report["train"] // 32)
    assert len(seen) == 3 * per_epoch and all(betas == (0.5, 0.999) for _, betas in seen)
    assert [lr for lr, _ in seen[::per_epoch]] == pytest.approx([1e-3, 2e-4, 4e-5])
    assert (report["optimizer"], report["lr_decay"], report["momentum"]) == ("adam", 0.2, 0.5)
    with pytest.raises(PixforgeError, match="--optimizer must be sgd or adam"):
        Spectra().linear_eval(data=str(labelled), arch="random-resnet18", optimizer="lbfgs")


def test_linear_eval_beats_chance_and_export_matches(tmp_path, labelled):
    report = json.loads(Spectra().linear_eval(data=str(labelled), arch="random-resnet18", size=32, epochs=30,
                                              augment=False, quiet=True, device="cpu"))
    assert report["classes"] == 3 and report["train"] + report["val"] == 72
    assert report["top1"] > 60 > report["chance_top1"] and report["top5"] == 100.0
    run = train("spectrum", str(tmp_path / "run"), steps=1, **TINY)
    report = json.loads(Spectra().linear_eval(run=str(run), data=str(labelled), epochs=2, batch=32, quiet=True,
                                              device="cpu"))  # the official path: augmented views
    assert report["encoder"].startswith("resnet18") and 0 <= report["top1"] <= 100
    exported = json.loads(Spectra().export(run=str(run)))
    assert exported["features"] == 512 and exported["max_abs_diff"] < 1e-3
    import onnxruntime as ort

    session = ort.InferenceSession(exported["onnx"], providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["pixforge.task"] == "features" and json.loads(meta["pixforge.extra"])["arch"] == "resnet18"
    assert session.run(None, {"image": np.zeros((2, 3, 40, 40), np.float32)})[0].shape == (2, 512)
    # the file itself (not the exporter's own check): an RGB batch in [0, 1], normalised as the file's metadata says
    # (ImageNet's mean and std, which the runtime applies), gives the pooled features of the run's encoder
    (spec,) = json.loads(meta["pixforge.inputs"])
    assert (spec["name"], spec["range"]) == ("image", [0.0, 1.0])
    assert (tuple(spec["mean"]), tuple(spec["std"])) == (IMAGENET_MEAN, IMAGENET_STD)
    image = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    x = (image - torch.tensor(spec["mean"]).view(1, 3, 1, 1)) / torch.tensor(spec["std"]).view(1, 3, 1, 1)
    encoder = resnet("resnet18", weights=run / "encoder.safetensors")  # eval mode
    with torch.no_grad():
        want = encoder.features(x)
    got = torch.from_numpy(session.run(["features"], {"image": x.numpy()})[0])
    assert want.shape == (3, 512) and (want[0] - want[1]).abs().max() > 0.1  # features that tell images apart
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)  # float32 ONNX vs PyTorch: ~3e-6 measured


def test_bad_input_is_one_line_exit_2(tmp_path, labelled):
    empty = tmp_path / "empty"
    empty.mkdir()
    one_class = tmp_path / "one"
    (one_class / "only").mkdir(parents=True)
    (one_class / "only" / "a.png").write_bytes((labelled / "spectrum" / "00000000" / "00000000.png").read_bytes())
    run = train("spectrum", str(tmp_path / "run"), steps=1, **TINY)
    cases = [
        (["pretrain", "--data", "dead-leaves-triangles", "--out", tmp_path / "a"], "neither a folder nor a model"),
        (["pretrain", "--data", empty, "--out", tmp_path / "b"], "holds no image"),
        (["pretrain", "--data", "spectrum", "--out", tmp_path / "c", "--device", "cuda"]
         if not torch.cuda.is_available() else None, "no CUDA GPU"),
        (["pretrain", "--data", "spectrum", "--out", tmp_path / "d", "--queue", 10, "--batch", 4], "multiple"),
        (["linear-eval", "--data", one_class, "--arch", "random-resnet18"], "one class"),
        (["linear-eval", "--data", empty, "--arch", "random-resnet18"], "no class sub-folders"),
        (["linear-eval", "--data", labelled, "--run", run, "--arch", "resnet50"], "holds a resnet18 encoder"),
        (["linear-eval", "--data", labelled, "--weights", run / "model.safetensors", "--arch", "resnet50"],
         "not a resnet50"),
        (["export", "--run", empty], "no encoder.safetensors"),
        (["export", "--run", run, "--out", run / "encoder.safetensors", "--overwrite"], "must end in .onnx"),
        (["linear-eval", "--data", labelled, "--run", run, "--out", run / "model.safetensors"], "must end in .json"),
        (["linear-eval", "--data", labelled, "--run", run, "--out", run / "config.json", "--overwrite"],
         "would replace config.json, a record"),
        (["linear-eval", "--data", labelled, "--run", run, "--lr", 0], "--lr must be a number above 0"),
        (["linear-eval", "--data", labelled, "--run", run, "--val", tmp_path / "nope"], "--val"),
        (["linear-eval", "--data", labelled, "--run", run, "--milestones", "a,b"], "--milestones"),
        (["linear-eval", "--data", labelled, "--run", run, "--workers", -1], "--workers must be a whole number"),
        (["pretrain", "--data", labelled / "color", "--out", labelled / "color", "--overwrite"], "is the input"),
    ]
    for args, message in cases:
        if args is None:
            continue
        code, err = run_cli(*args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
    for name in "abcd":
        assert not (tmp_path / name).exists()
    # resuming a run with another architecture: its checkpoint does not fit
    code, err = run_cli("pretrain", "--data", "spectrum", "--out", run, "--resume", "--arch", "resnet50",
                        "--size", 32, "--gen-size", 32, "--steps", 2, "--batch", 4, "--queue", 16, "--device", "cpu",
                        "--quiet")
    assert code == 2 and "does not match this network" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("damage", ["not an image", "truncated"])
def test_pretrain_checks_every_image_before_the_run_folder_exists(tmp_path, damage):
    data = tmp_path / "data"
    for i in range(4):
        write_image(data / f"{i}.png", np.random.default_rng(i).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    bad = data / "2.png"
    bad.write_bytes(b"not a png" if damage == "not an image" else bad.read_bytes()[:200])
    code, err = run_cli("pretrain", "--data", data, "--out", tmp_path / "run", "--arch", "resnet18", "--size", 32,
                        "--gen-size", 32, "--batch", 4, "--queue", 16, "--steps", 1, "--device", "cpu", "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1 and f"{bad} is not a readable image" in err, err
    assert not (tmp_path / "run").exists()


def test_linear_eval_digits_end_to_end_beats_chance_and_writes_the_report(tmp_path):
    """`linear-eval --data digits` through the CLI on a random-init ResNet-18 at 32 px (scikit-learn's 1,797 8 x 8
    digits, 360 held out): top-1 at least 30 points above chance (10 %; a random ResNet-18's pooled features give
    93 % measured), the JSON printed and written to --out. ~5-10 s on one CPU core."""
    pytest.importorskip("sklearn")
    out = tmp_path / "report" / "digits.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        code = invoke(Spectra, ["linear-eval", "--arch", "random-resnet18", "--data", "digits", "--size", "32",
                                "--epochs", "10", "--no-augment", "--device", "cpu", "--quiet", "--out", str(out)],
                      "pixforge-spectra")
    assert code == 0
    report = json.loads(out.read_text())
    assert json.loads(printed.getvalue().strip().splitlines()[-1]) == report
    assert report["data"] == "digits" and report["classes"] == 10 and report["encoder"] == "random resnet18"
    assert report["train"] + report["val"] == 1797 and report["val"] == 359
    assert report["chance_top1"] == 10.0 and report["size"] == 32 and report["augment"] is False
    assert report["top1"] >= report["chance_top1"] + 30, report
    assert report["top5"] >= report["top1"] and math.isfinite(report["final_train_loss"])
