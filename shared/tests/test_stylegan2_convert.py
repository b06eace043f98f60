"""pixforge.core.stylegan2.convert: official NVlabs snapshots read through a restricted unpickler.

The snapshots are built here in NVlabs' pickle layout without NVlabs' code: throw-away `torch_utils.persistence`
and `dnnlib.util` modules exist only while pickling, so the loader has nothing real to fall back on.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import pickle
import subprocess
import sys
import types
from collections import OrderedDict

import pytest
import torch

from pixforge.core.nets.stylegan2 import Generator
from pixforge.core.stylegan2.convert import (
    DROPPED_GENERATOR_KWARGS,
    generator_kwargs,
    load_official_pickle,
)
from pixforge.export.errors import PixforgeError

FAKE_MODULES = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")


@contextlib.contextmanager
def official_modules():
    """`torch_utils.persistence._reconstruct_persistent_obj` and `dnnlib.util.EasyDict`, picklable by reference."""
    assert not any(name in sys.modules for name in FAKE_MODULES)
    torch_utils, persistence = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")
    dnnlib, util = types.ModuleType("dnnlib"), types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("the fake reconstruct function must never be called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"

    class EasyDict(dict):
        pass

    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util.EasyDict = EasyDict
    torch_utils.persistence, dnnlib.util = persistence, util
    sys.modules.update({"torch_utils": torch_utils, "torch_utils.persistence": persistence, "dnnlib": dnnlib,
                        "dnnlib.util": util})
    try:
        yield types.SimpleNamespace(reconstruct=_reconstruct_persistent_obj, EasyDict=EasyDict)
    finally:
        for name in FAKE_MODULES:
            sys.modules.pop(name, None)


class Persistent:
    """Pickles as NVlabs' persistent objects do: `_reconstruct_persistent_obj(meta)`."""

    def __init__(self, fake, class_name, state, module_src):
        self.fake, self.meta = fake, dict(type="class", version=6, module_src=module_src, class_name=class_name,
                                          state=state)

    def __reduce__(self):
        return self.fake.reconstruct, (self.meta,)


def record_tree(fake, module: torch.nn.Module, module_src: str, init_kwargs=None) -> Persistent:
    """A module's `__dict__` as NVlabs pickles it: nested records for submodules, real tensors, hook dicts."""
    state = {
        "training": False,
        "_parameters": OrderedDict(module._parameters),
        "_buffers": OrderedDict(module._buffers),
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": OrderedDict(),
        "_forward_hooks": OrderedDict(),
        "_forward_pre_hooks": OrderedDict(),
        "_state_dict_hooks": OrderedDict(),
        "_load_state_dict_pre_hooks": OrderedDict(),
        "_modules": OrderedDict((name, record_tree(fake, sub, module_src)) for name, sub in module._modules.items()),
        "_init_args": (),
        "_init_kwargs": fake.EasyDict(init_kwargs or {}),
    }
    state.update({k: v for k, v in vars(module).items() if isinstance(v, (int, float, str, list)) and k[0] != "_"})
    return Persistent(fake, type(module).__name__, state, module_src)


G_KWARGS = dict(z_dim=16, c_dim=2, w_dim=16, img_resolution=32, img_channels=3)
MAPPING = dict(num_layers=2)
SYNTHESIS = dict(channel_base=256, channel_max=32, num_fp16_res=4, conv_clamp=256)


def make_generator(seed: int) -> Generator:
    torch.manual_seed(seed)
    synthesis = {k: v for k, v in SYNTHESIS.items() if k != "num_fp16_res"}
    G = Generator(**G_KWARGS, mapping_kwargs=MAPPING, synthesis_kwargs=synthesis).eval().requires_grad_(False)
    for name, tensor in G.named_parameters():  # non-trivial noise strengths and biases
        if name.endswith(("noise_strength", "bias")):
            tensor.copy_(torch.randn_like(tensor) * 0.3)
    G.mapping.w_avg.copy_(torch.randn(16))
    return G


def write_snapshot(path, marker, *, extra=None, G_class="Generator", with_pipe=True):
    """An official-layout snapshot: G and G_ema of ours, a small D and an augment pipe, as persistent records."""
    module_src = (f"open({str(marker)!r}, 'w').write('the pickled source code ran')\n"
                  "raise SystemExit('module_src must never be executed')\n")
    G, G_ema = make_generator(0), make_generator(1)
    with official_modules() as fake:
        E = fake.EasyDict
        kwargs = E(G_KWARGS, mapping_kwargs=E(MAPPING), synthesis_kwargs=E(SYNTHESIS))
        D_state = {"_parameters": OrderedDict(), "_buffers": OrderedDict(),
                   "_modules": OrderedDict(b32=Persistent(fake, "DiscriminatorBlock", {
                       "_parameters": OrderedDict(weight=torch.nn.Parameter(torch.arange(6.0).reshape(2, 3))),
                       "_buffers": OrderedDict(resample_filter=torch.ones(4, 4) / 16), "_modules": OrderedDict(),
                   }, module_src)),
                   "_init_kwargs": E(c_dim=2, img_resolution=32, img_channels=3, architecture="resnet")}
        data = {
            "training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset", "path": "data.zip",
                                    "resolution": 32, "use_labels": True, "max_size": 10, "xflip": False},
            "G": record_tree(fake, G, module_src, kwargs),
            "D": Persistent(fake, "Discriminator", D_state, module_src),
            "G_ema": record_tree(fake, G_ema, module_src, kwargs),
        }
        if G_class != "Generator":
            data["G"].meta["class_name"] = G_class
        if with_pipe:
            data["augment_pipe"] = Persistent(fake, "AugmentPipe", {
                "_parameters": OrderedDict(), "_buffers": OrderedDict(p=torch.tensor(0.25)), "_modules": {},
                "xflip": 1.0, "imgfilter_bands": [1, 1, 1, 1]}, module_src)
        data.update(extra or {})
        with open(path, "wb") as fh:
            pickle.dump(data, fh)
    assert not any(name in sys.modules for name in FAKE_MODULES)
    return G, G_ema


@pytest.fixture
def snapshot(tmp_path):
    path, marker = tmp_path / "network-snapshot-000100.pkl", tmp_path / "pwned.txt"
    G, G_ema = write_snapshot(path, marker)
    return path, marker, G, G_ema


def test_snapshot_converts_to_our_generator_exactly(snapshot):
    path, marker, G, G_ema = snapshot
    with open(path, "rb") as fh:  # the file really is in NVlabs' layout
        raw = fh.read()
    assert b"torch_utils.persistence" in raw and b"_reconstruct_persistent_obj" in raw and b"_load_from_bytes" in raw
    data = load_official_pickle(path)
    assert not marker.exists()
    assert not any(name in sys.modules for name in FAKE_MODULES)
    assert set(data) == {"G", "D", "G_ema", "augment_p", "training_set_kwargs"}
    assert data["augment_p"] == 0.25
    assert data["training_set_kwargs"]["resolution"] == 32 and data["training_set_kwargs"]["use_labels"] is True
    for key, original in (("G", G), ("G_ema", G_ema)):
        net = data[key]
        assert net["class_name"] == "Generator"
        assert type(net["init_kwargs"]["mapping_kwargs"]) is dict and net["init_kwargs"]["mapping_kwargs"] == MAPPING
        assert net["init_kwargs"]["synthesis_kwargs"] == SYNTHESIS
        assert set(net["state_dict"]) == set(original.state_dict())
        ours = Generator(**generator_kwargs(net["init_kwargs"]))
        ours.load_state_dict(net["state_dict"], strict=True)
        ours.eval()
        z = torch.randn(3, 16, generator=torch.Generator().manual_seed(7))
        c = torch.eye(2)[[0, 1, 0]]
        torch.testing.assert_close(ours(z, c, noise_mode="const"), original(z, c, noise_mode="const"), rtol=0, atol=0)
        torch.testing.assert_close(ours(z, c, truncation_psi=0.5, noise_mode="const"),
                                   original(z, c, truncation_psi=0.5, noise_mode="const"), rtol=0, atol=0)
    const = "synthesis.b4.const"
    assert not torch.equal(data["G"]["state_dict"][const], data["G_ema"]["state_dict"][const])
    D = data["D"]
    assert D["class_name"] == "Discriminator" and D["init_kwargs"]["architecture"] == "resnet"
    assert set(D["state_dict"]) == {"b32.weight", "b32.resample_filter"}
    assert torch.equal(D["state_dict"]["b32.weight"], torch.arange(6.0).reshape(2, 3))
    assert not marker.exists()


def test_generator_kwargs_maps_and_drops():
    kwargs = dict(G_KWARGS, mapping_kwargs=dict(num_layers=8, lr_multiplier=0.01),
                  synthesis_kwargs=dict(channel_base=16384, channel_max=512, num_fp16_res=4, conv_clamp=256,
                                        architecture="skip", resample_filter=[1, 3, 3, 1]))
    out = generator_kwargs(kwargs)
    assert out == dict(G_KWARGS, mapping_kwargs=dict(num_layers=8, lr_multiplier=0.01),
                       synthesis_kwargs=dict(channel_base=16384, channel_max=512, conv_clamp=256, architecture="skip",
                                             resample_filter=(1, 3, 3, 1)))
    assert "num_fp16_res" in DROPPED_GENERATOR_KWARGS and "num_fp16_res" in generator_kwargs.__doc__
    Generator(**dict(out, img_resolution=8, synthesis_kwargs=dict(out["synthesis_kwargs"], channel_base=64)))
    with pytest.raises(PixforgeError, match="resnet"):
        generator_kwargs(dict(G_KWARGS, synthesis_kwargs=dict(architecture="resnet")))
    with pytest.raises(PixforgeError, match="synthesis_kwargs.fused_modconv"):
        generator_kwargs(dict(G_KWARGS, synthesis_kwargs=dict(fused_modconv=True)))
    with pytest.raises(PixforgeError, match="img_resolution"):
        generator_kwargs({"z_dim": 512})


class Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("func, name", [(os.system, f"{os.system.__module__}.system"), (builtins.exec, "builtins.exec"),
                                        (subprocess.Popen, "subprocess.Popen"), (builtins.eval, "builtins.eval")])
def test_foreign_globals_are_refused_before_running(tmp_path, func, name):
    marker = tmp_path / "ran.txt"
    payload = {
        os.system: f"touch {marker}",
        builtins.exec: f"open({str(marker)!r}, 'w').close()",
        builtins.eval: f"open({str(marker)!r}, 'w').close()",
        subprocess.Popen: ["touch", str(marker)],
    }[func]
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G": Evil(func, payload), "D": None, "G_ema": None}))
    with pytest.raises(PixforgeError) as info:
        load_official_pickle(path)
    message = str(info.value)
    assert name in message and str(path) in message and "\n" not in message
    assert not marker.exists()


def test_foreign_global_inside_a_record_is_refused(tmp_path):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "nested.pkl"
    with official_modules() as fake:
        state = {"_parameters": {}, "_buffers": {}, "_modules": {}, "hook": Evil(os.system, f"touch {marker}")}
        data = {k: Persistent(fake, c, state, "") for k, c in (("G", "Generator"), ("D", "Discriminator"),
                                                                 ("G_ema", "Generator"))}
        path.write_bytes(pickle.dumps(data))
    with pytest.raises(PixforgeError, match=r"\.system"):
        load_official_pickle(path)
    assert not marker.exists()


def test_official_classes_by_reference_are_refused(tmp_path):
    path = tmp_path / "real.pkl"
    path.write_bytes(b"\x80\x02ctraining.networks\nGenerator\n)\x81.")  # GLOBAL, EMPTY_TUPLE, NEWOBJ, STOP
    with pytest.raises(PixforgeError, match="training.networks.Generator"):
        load_official_pickle(path)


def test_truncated_and_foreign_files(tmp_path, snapshot):
    path = snapshot[0]
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(PixforgeError, match="truncated") as info:
        load_official_pickle(truncated)
    assert str(truncated) in str(info.value)
    text = tmp_path / "notes.pkl"
    text.write_text("these are not the weights you are looking for\n")
    with pytest.raises(PixforgeError, match="not a Python pickle"):
        load_official_pickle(text)
    checkpoint = tmp_path / "model.pt"
    torch.save({"w": torch.ones(1)}, checkpoint)
    with pytest.raises(PixforgeError, match="zip"):
        load_official_pickle(checkpoint)
    empty = tmp_path / "empty.pkl"
    empty.touch()
    with pytest.raises(PixforgeError, match="empty"):
        load_official_pickle(empty)
    with pytest.raises(PixforgeError, match="does not exist"):
        load_official_pickle(tmp_path / "missing.pkl")


def test_pickles_without_networks_or_with_wrong_classes(tmp_path):
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(PixforgeError, match="no G, D, G_ema networks") as info:
        load_official_pickle(plain)
    assert str(plain) in str(info.value)
    listing = tmp_path / "list.pkl"
    listing.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(PixforgeError, match="list"):
        load_official_pickle(listing)
    wrong = tmp_path / "wrong.pkl"
    write_snapshot(wrong, tmp_path / "marker", G_class="MappingNetwork", with_pipe=False)
    with pytest.raises(PixforgeError, match="G is a MappingNetwork, not the Generator"):
        load_official_pickle(wrong)
    not_record = tmp_path / "not_record.pkl"
    not_record.write_bytes(pickle.dumps({"G": {"a": 1}, "D": {}, "G_ema": {}}))
    with pytest.raises(PixforgeError, match="G is a dict"):
        load_official_pickle(not_record)


def test_snapshot_without_augment_pipe_or_kwargs(tmp_path):
    path = tmp_path / "bare.pkl"
    write_snapshot(path, tmp_path / "marker", with_pipe=False, extra={"training_set_kwargs": None})
    assert set(load_official_pickle(path)) == {"G", "D", "G_ema"}


def test_convert_verb_writes_a_checkpoint_that_generate_reads(snapshot, tmp_path):
    """`convert` -> a pixforge checkpoint (G, D, G_ema) whose G_ema generates what the official one does."""
    from pixforge.core.stylegan2.generate import class_labels, load_generator, seed_latents
    from pixforge.core.stylegan2.tool import convert

    path, marker, _, G_ema = snapshot
    out = tmp_path / "converted.pt"
    assert "G, D, G_ema" in convert(str(path), str(out))
    G, _ = load_generator(out)
    z, c = seed_latents([0, 5], G.z_dim), class_labels(G, 2, 1)
    torch.testing.assert_close(G(z, c, noise_mode="const"), G_ema(z, c, noise_mode="const"), rtol=0, atol=0)
    with pytest.raises(PixforgeError, match="exists"):
        convert(str(path), str(out))
    with pytest.raises(PixforgeError, match="conditional"):
        class_labels(G, 2, None)
    assert not marker.exists()


def test_generate_and_export_never_write_over_their_run(snapshot, tmp_path):
    """An OUT that is the run, or an export over its checkpoint, is refused; seeds below 0 and a run of another
    tool are one line (they were tracebacks)."""
    from pixforge.core.checkpoint import save_release
    from pixforge.core.stylegan2.tool import convert, export_verb, generate

    path, _, _, _ = snapshot
    run = tmp_path / "run"
    convert(str(path), str(run / "checkpoints" / "step-000000001.pt"))
    checkpoint = (run / "checkpoints" / "step-000000001.pt").read_bytes()
    export = export_verb("pixforge-core")
    for call, message in ((lambda: generate(str(run), str(run), seeds="0"), "is the input"),
                          (lambda: generate(str(run), str(run / "samples"), seeds="0"), "is inside the input"),
                          (lambda: export(str(run), str(run / "checkpoints" / "step-000000001.pt"),
                                          overwrite=True), "must end in .onnx"),
                          (lambda: generate(str(run), str(tmp_path / "g"), seeds=-5), "such as 0-63 .*, got -5")):
        with pytest.raises(PixforgeError, match=message):
            call()
    assert (run / "checkpoints" / "step-000000001.pt").read_bytes() == checkpoint
    save_release(tmp_path / "other", {"w": torch.zeros(1)}, {"method": "singan"})
    with pytest.raises(PixforgeError, match="not a StyleGAN2 run"):
        generate(str(tmp_path / "other"), str(tmp_path / "g"), seeds="0")
