"""Semantic image synthesis end to end: label conventions (don't care, instance edges), translate, export and
pixforge-run."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from pixforge.core.io import read_image, write_image
from pixforge.core.onnx import export_onnx
from pixforge.export.cli import Runtime
from pixforge.export.errors import PixforgeError
from pixforge.export.metadata import TensorSpec, parse_metadata
from pixforge.export.pipeline import Pipeline, label_classes, read_labels
from pixforge.export.session import open_session
from pixforge.tsit import data as tdata
from pixforge.tsit.export import LabelGraph, export
from pixforge.tsit.model import load
from pixforge.tsit.train import train
from pixforge.tsit.translate import translate


def palette_png(path, ids):
    """A P-mode PNG whose colours are not the ids as grey levels (a grey conversion would break them)."""
    img = Image.fromarray(np.asarray(ids, np.uint8), mode="P")
    img.putpalette([v for k in range(256) for v in ((53 * k) % 256, (101 * k + 7) % 256, (29 * k + 90) % 256)])
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


@pytest.fixture(scope="session")
def sis_data(tmp_path_factory, labels):
    """labels/ as palette PNGs with don't-care (255) pixels, images/, instances/, odd-sized maps in odd/, and
    all_instances/ holding the instance maps of both labels/ and odd/."""
    root = tmp_path_factory.mktemp("sis_dc")
    rng = np.random.default_rng(3)
    for i in range(2):
        ids = read_labels(labels / "labels" / f"x{i}.png")[..., 0].copy()
        ids[:4, :4] = 255
        palette_png(root / "labels" / f"x{i}.png", ids)
        write_image(root / "images" / f"x{i}.png", read_image(labels / "images" / f"x{i}.jpg"))
        inst = (np.arange(32)[:, None] // 8 * 1000 + np.arange(32)[None] // 16 + i).astype(np.uint16)
        (root / "instances").mkdir(exist_ok=True)
        Image.fromarray(inst).save(root / "instances" / f"x{i}.png")  # 16-bit, as Cityscapes' *_instanceIds.png
    (root / "all_instances").mkdir()
    for name, hw in (("a", (24, 40)), ("b", (17, 30))):
        palette_png(root / "odd" / f"{name}.png", rng.choice([0, 1, 2, 3, 255], hw))
        Image.fromarray((rng.integers(0, 4, hw) * 1000 + 24).astype(np.uint16)).save(root / "all_instances" /
                                                                                     f"{name}.png")
    for path in (root / "instances").iterdir():
        (root / "all_instances" / path.name).write_bytes(path.read_bytes())
    return root


class Identity(torch.nn.Module):
    def forward(self, content, style=None, noise=None, alpha=1.0):
        return content


@pytest.mark.parametrize("dontcare", [None, 255, 0, 2])
def test_label_graph_maps_ids_like_the_runtime(dontcare):
    k = 4
    ids = torch.tensor([0, 1, 2, 3, 4, 255], dtype=torch.float32)
    classes = label_classes(ids.numpy(), k, dontcare)
    keep = classes >= 0
    one_hot = LabelGraph(Identity(), None, k, dontcare)(ids[keep].view(1, 1, 1, -1))
    expected = np.eye(k + (dontcare is not None))[classes[keep]].T
    assert np.array_equal(one_hot[0, :, 0].numpy(), expected)


def test_edges_are_the_official_boundary_map():
    inst = torch.tensor([[[1, 1, 2], [1, 1, 2], [3, 3, 3]]])
    t = inst[:, None]
    ref = torch.zeros_like(t, dtype=torch.bool)  # the official get_edges, written out
    ref[:, :, :, 1:] = ref[:, :, :, 1:] | (t[:, :, :, 1:] != t[:, :, :, :-1])
    ref[:, :, :, :-1] = ref[:, :, :, :-1] | (t[:, :, :, 1:] != t[:, :, :, :-1])
    ref[:, :, 1:, :] = ref[:, :, 1:, :] | (t[:, :, 1:, :] != t[:, :, :-1, :])
    ref[:, :, :-1, :] = ref[:, :, :-1, :] | (t[:, :, 1:, :] != t[:, :, :-1, :])
    out = tdata.edges(inst)
    assert torch.equal(out, ref.float()) and out[0, 0].tolist() == [[0, 1, 1], [1, 1, 1], [1, 1, 1]]
    sem = tdata.semantics(torch.tensor([[[0, 1, 2]]]), 3, torch.tensor([[[5, 5, 6]]]))
    assert sem.shape == (1, 4, 1, 3) and sem[0, :, 0, 0].tolist() == [1, 0, 0, 0] and sem[0, 3, 0].tolist() == [0, 1, 1]


def test_dontcare_ids_and_errors(tmp_path, sis_data):
    classes = tdata.read_label_map(sis_data / "labels" / "x0.png", 4, 255)
    assert classes[:4, :4].max() == 4 and classes.max() == 4  # 255 -> the extra class K
    with pytest.raises(PixforgeError, match=r"x0\.png holds class id 255, outside --num-classes 4"):
        tdata.read_label_map(sis_data / "labels" / "x0.png", 4)  # without --dontcare, 255 is an error
    write_image(tmp_path / "rgb.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(PixforgeError, match=r"rgb\.png is a RGB image"):
        tdata.read_label_map(tmp_path / "rgb.png", 4)


def _sis_run(tmp_path, sis_data, tiny, **kw):
    return train(str(tmp_path / "sis"), task="sis", content=str(sis_data / "labels"), style=str(sis_data / "images"),
                 num_classes=4, dontcare=255, batch=1, steps=1, sample_every=1, enc_size=32, **kw, **tiny)


@pytest.fixture(scope="module")
def sis_runs(tmp_path_factory, sis_data, tiny, single_thread):
    """One-step semantic-synthesis runs (4 classes + don't care 255), {vae: run directory}: without the VAE, and with
    it and instance maps (as the official Cityscapes model)."""
    with single_thread():
        return {False: _sis_run(tmp_path_factory.mktemp("vae0"), sis_data, tiny, vae=False),
                True: _sis_run(tmp_path_factory.mktemp("vae1"), sis_data, tiny, vae=True,
                               instances=str(sis_data / "instances"))}


def _meta(model):
    return parse_metadata(ort.InferenceSession(str(model)).get_modelmeta().custom_metadata_map, str(model))


@pytest.mark.parametrize("vae", [False, True])
def test_sis_translate_export_and_pixforge_run_agree(tmp_path, sis_data, sis_runs, vae, torch_graph):
    run = sis_runs[vae]
    arch = load(run).arch
    assert arch["content_channels"] == 5 + vae and arch["dontcare"] == 255 and arch["instance"] == vae
    assert arch["start"] == ("vae" if vae else "content")
    model = export(run, tmp_path / "sis.onnx")  # verify_onnx inside: ids -> classes -> one-hot (+ edges) in the graph
    meta = _meta(model)
    assert [s.name for s in meta.inputs] == (["content", "instances", "style"] if vae else ["content"])
    spec = meta.input("content")
    assert (spec.kind, spec.num_classes, spec.dontcare, spec.size) == ("labels", 4, 255, (32, 32) if vae else None)
    if vae:
        inst = meta.input("instances")
        assert (inst.kind, inst.num_classes, inst.paired, inst.size) == ("labels", None, True, (32, 32))
    style, instances = sis_data / "images" / "x1.png", sis_data / "all_instances"
    extra = {"images": {"style": str(style), "instances": str(instances)}} if vae else {}
    # float outputs: pixforge-run's feeds through onnxruntime vs through translate's graph in PyTorch (odd-sized
    # label maps)
    ids = [read_labels(sis_data / "odd" / "a.png")] * 2
    paired = {"instances": [read_labels(instances / "a.png")] * 2} if vae else None
    pipe = Pipeline(open_session(str(model), "cpu"), **extra)
    got = pipe.session.run(pipe.feeds(ids, [0, 1], paired))["image"]
    torch_pipe = torch_graph(run, **extra)
    expected = torch_pipe.session.run(torch_pipe.feeds(ids, [0, 1], paired))["image"]
    assert got.shape == expected.shape == ((2, 3, 32, 32) if vae else (2, 3, 24, 40))
    assert np.abs(got - expected).max() < 1e-3
    # pictures: every item, pixforge-run vs pixforge-tsit translate
    inputs = [str(sis_data / "labels"), str(sis_data / "odd")]
    Runtime().run(str(model), *inputs, out=str(tmp_path / "rt"), device="cpu",
                  input=f"style={style},instances={instances}" if vae else None)
    translate(*inputs, run=str(run), out=str(tmp_path / "tr"), style=str(style) if vae else None, quiet=True,
              device="cpu", instances=str(instances) if vae else None)
    for name, hw in (("x0.png", (32, 32)), ("x1.png", (32, 32)), ("a.png", (24, 40)), ("b.png", (17, 30))):
        a, b = read_image(tmp_path / "rt" / name).astype(int), read_image(tmp_path / "tr" / name).astype(int)
        assert a.shape == b.shape == (*hw, 3) and np.abs(a - b).max() <= 1, name


def test_fp16_export_keeps_label_and_instance_ids_exact(tmp_path, sis_data, sis_runs):
    """float16 holds integers exactly only up to 2048, Cityscapes' instance ids reach 33001: an fp16 export
    keeps its `labels` inputs float32 and runs the network in half precision after the one-hot / edges."""
    run = sis_runs[True]
    model = export(run, tmp_path / "sis16.onnx", fp16=True)  # verify_onnx inside, at the fp16 tolerance
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    types = {i.name: i.type for i in session.get_inputs()}
    assert types == {"content": "tensor(float)", "instances": "tensor(float)", "style": "tensor(float16)"}
    meta = _meta(model)
    assert (meta.input("content").dtype, meta.input("style").dtype) == ("float32", "float16")
    ids = np.ones((1, 1, 32, 32), np.float32)
    inst = np.full((1, 1, 32, 32), 26001, np.float32)
    inst[..., 16:] = 26002  # one boundary, invisible in float16 (both ids round to 26000)
    style = (read_image(sis_data / "images" / "x1.png").transpose(2, 0, 1)[None] / 127.5 - 1).astype(np.float16)
    got = session.run(None, {"content": ids, "instances": inst, "style": style})[0].astype(np.float32)
    trained = load(run)
    graph = LabelGraph(trained.generator, trained.encoder, 4, 255, instance=True).eval()
    with torch.no_grad():
        expected = graph(torch.from_numpy(ids), torch.from_numpy(inst), torch.from_numpy(style).float()).numpy()
    assert np.abs(got - expected).max() < 5e-2
    # what the network sees: the one-hot maps and the instance boundary, through an fp16 graph
    specs = [TensorSpec("content", kind="labels", num_classes=4, dontcare=255),
             TensorSpec("instances", kind="labels")]
    seen = export_onnx(LabelGraph(Identity(), None, 4, 255, instance=True), (torch.from_numpy(ids),
                       torch.from_numpy(inst)), tmp_path / "seen.onnx", input_names=["content", "instances"],
                       output_names=["semantics"], inputs=specs, outputs=[TensorSpec("semantics", kind="tensor")],
                       package="test", version="0", task="test", fp16=True)
    semantics = ort.InferenceSession(str(seen)).run(None, {"content": ids, "instances": inst})[0]
    assert semantics.dtype == np.float16 and semantics.shape == (1, 6, 32, 32)
    assert np.array_equal(semantics[0, 1], np.ones((32, 32))) and semantics[0, 5].sum() == 2 * 32  # columns 15, 16


def test_vae_code_follows_the_style_image(sis_data, sis_runs, torch_graph):
    ids, paired = [read_labels(sis_data / "labels" / "x0.png")], {"instances": [read_labels(sis_data / "instances" /
                                                                                            "x0.png")]}
    a, b = (torch_graph(sis_runs[True], images={"style": str(sis_data / "images" / name)}) for name in ("x0.png",
                                                                                                        "x1.png"))
    assert np.abs(a.session.run(a.feeds(ids, [0], paired))["image"]
                  - b.session.run(b.feeds(ids, [0], paired))["image"]).max() > 0


def test_random_code_export_gives_multimodal_output_as_translate(tmp_path, sis_data, sis_runs, torch_graph):
    run, instances = sis_runs[True], sis_data / "all_instances"
    model = export(run, tmp_path / "random.onnx", code="random")  # verify_onnx inside: z -> image == PyTorch
    meta = _meta(model)
    assert [s.name for s in meta.inputs] == ["content", "instances", "z"]
    assert (meta.input("z").kind, meta.input("z").shape) == ("noise", ["N", 256])
    # float outputs: pixforge-run draws z per item from (seed, index); translate without a style image the same
    ids = [read_labels(sis_data / "labels" / "x0.png")] * 2
    paired = {"instances": [read_labels(instances / "x0.png")] * 2}
    pipe = Pipeline(open_session(str(model), "cpu"), seed=5, images={"instances": str(instances)})
    got = pipe.session.run(pipe.feeds(ids, [0, 1], paired))["image"]
    torch_pipe = torch_graph(run, code="random", seed=5, images={"instances": str(instances)})
    expected = torch_pipe.session.run(torch_pipe.feeds(ids, [0, 1], paired))["image"]
    assert np.abs(got - expected).max() < 1e-3
    assert np.abs(got[0] - got[1]).max() > 0  # one label map, two items: two appearances
    # pictures: pixforge-run --seed 3 vs translate --seed 3 without --style
    inputs = [str(sis_data / "labels"), str(sis_data / "odd")]
    Runtime().run(str(model), *inputs, out=str(tmp_path / "rt"), device="cpu", seed=3, input=f"instances={instances}")
    translate(*inputs, run=str(run), out=str(tmp_path / "tr"), seed=3, instances=str(instances), quiet=True,
              device="cpu")
    for name in ("x0.png", "x1.png", "a.png", "b.png"):
        a, b = read_image(tmp_path / "rt" / name).astype(int), read_image(tmp_path / "tr" / name).astype(int)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1, name
    with pytest.raises(PixforgeError, match=r"needs the input instances, one file per item: pass --input instances"):
        Runtime().run(str(model), inputs[0], out=str(tmp_path / "no"), device="cpu")
    with pytest.raises(PixforgeError, match="--code random is for semantic-synthesis models with a VAE"):
        export(sis_runs[False], tmp_path / "no.onnx", code="random")
    assert not (tmp_path / "no").exists() and not (tmp_path / "no.onnx").exists()


def test_instance_maps(tmp_path, sis_data, tiny):
    run = _sis_run(tmp_path, sis_data, tiny, vae=False, instances=str(sis_data / "instances"))
    config = json.loads((run / "config.json").read_text())
    assert config["arch"]["instance"] and config["arch"]["content_channels"] == 4 + 1 + 1
    d = torch.load(run / "checkpoints" / "step-000000001.pt", weights_only=True)["models"]["D"]
    assert d["scales.0.blocks.0.0.weight"].shape[1] == 3 + 6  # D sees one-hot + don't care + edges + image
    out = translate(str(sis_data / "labels"), run=str(run), out=str(tmp_path / "tr"),
                    instances=str(sis_data / "instances"), quiet=True, device="cpu")
    assert sorted(p.name for p in out.iterdir()) == ["x0.png", "x1.png"]
    with pytest.raises(PixforgeError, match="--instances DIR"):
        translate(str(sis_data / "labels"), run=str(run), out=str(tmp_path / "no"), quiet=True, device="cpu")
    with pytest.raises(PixforgeError, match=r"a\.png has no 'instances' file .*instances/a\.\*"):
        translate(str(sis_data / "labels"), str(sis_data / "odd"), run=str(run), out=str(tmp_path / "no"),
                  instances=str(sis_data / "instances"), quiet=True, device="cpu")
    (tmp_path / "small").mkdir()
    Image.fromarray(np.zeros((16, 32), np.uint16)).save(tmp_path / "small" / "x0.png")
    with pytest.raises(PixforgeError, match=r"small/x0\.png is 32x16 but its item .*x0\.png is 32x32"):
        translate(str(sis_data / "labels" / "x0.png"), run=str(run), out=str(tmp_path / "no"),
                  instances=str(tmp_path / "small"), quiet=True, device="cpu")
    assert not (tmp_path / "no").exists()
