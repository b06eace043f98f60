"""`open_session(model)`: an onnxruntime session on the device that was asked for, and the model's metadata.

* `device="auto"` runs on CUDA when onnxruntime offers it and on the CPU otherwise (one notice on stderr);
  `"cuda"` / `"cuda:N"` insist on the GPU and raise `PixforgeError` when it is missing, including the case
  where onnxruntime-gpu silently falls back to the CPU because the CUDA libraries cannot load;
* `Session.run` takes and returns numpy arrays; on CUDA it goes through IOBinding (inputs copied to the
  device once, outputs allocated there and copied back once);
* inputs are cast to the graph's declared types (a float16 model takes the pipeline's float32) and float16
  outputs come back as float32.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from pixforge.export.errors import PixforgeError
from pixforge.export.metadata import ModelMeta, parse_metadata

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PROG = "pixforge-run"
ORT_ERRORS = tuple(getattr(ort_state, name) for name in (
    "Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError", "RuntimeException", "InvalidProtobuf",
    "ModelLoaded", "NotImplemented", "InvalidGraph", "EPFail") if hasattr(ort_state, name))
NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
               "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
               "tensor(int8)": np.int8, "tensor(bool)": np.bool_}
GPU_HINT = ("swap onnxruntime for its CUDA build (both install the same 'onnxruntime' module): "
            "pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'onnxruntime-gpu[cuda,cudnn]'")


class ModelSession(Protocol):
    """What `Pipeline` and the jobs need of a model: an onnxruntime `Session` here, or pixforge-core's
    `TorchSession` (the torch module a tool exports, run by torch: its inference verbs share this code path)."""

    path: Path  # names the model in messages
    meta: ModelMeta
    inputs: dict[str, GraphIO]  # the graph's inputs (dims: ints, or names for dynamic axes)
    provider: str  # what runs it, for the user

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@dataclass
class GraphIO:
    """One graph input or output as onnxruntime declares it: dims are ints or symbolic names (None if unnamed)."""

    name: str
    shape: list[int | str | None]
    type: str


class Session:
    """An onnxruntime session bound to one provider, with the model's pixforge metadata."""

    def __init__(self, path: Path, session: ort.InferenceSession, meta: ModelMeta, device_id: int):
        self.path = path
        self.session = session
        self.meta = meta
        self.device_id = device_id
        self.provider = session.get_providers()[0]
        self.inputs = {a.name: GraphIO(a.name, list(a.shape), a.type) for a in session.get_inputs()}
        self.outputs = {a.name: GraphIO(a.name, list(a.shape), a.type) for a in session.get_outputs()}

    @property
    def device_type(self) -> str:
        return "cuda" if self.provider == CUDA else "cpu"

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on numpy inputs (cast to the graph's types); float outputs come back as float32."""
        feeds = {name: np.ascontiguousarray(value, dtype=NUMPY_TYPES.get(self.inputs[name].type))
                 for name, value in feeds.items()}
        try:
            if self.device_type == "cuda":
                values = self._run_bound(feeds, "cuda")
            else:
                values = self.session.run(list(self.outputs), feeds)
        except ORT_ERRORS as err:
            raise PixforgeError(f"{self.path}: onnxruntime could not run the model ({_first_line(err)})") from None
        return {name: value.astype(np.float32) if value.dtype == np.float16 else value
                for name, value in zip(self.outputs, values, strict=True)}

    def _run_bound(self, feeds: dict[str, np.ndarray], device: str) -> list[np.ndarray]:
        """IOBinding run: inputs placed on `device` as OrtValues, outputs allocated there, then copied back."""
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, device, self.device_id))
        for name in self.outputs:
            binding.bind_output(name, device, self.device_id)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()


def open_session(model_path: str | Path, device: str = "auto", threads: int | None = None,
                 notice: bool = True) -> Session:
    """Load `model_path` on `device` ("auto", "cpu", "cuda" or "cuda:N") and read its pixforge metadata.

    `threads` caps the CPU threads onnxruntime uses inside one operator (default: all cores); `notice`: say on
    stderr (as pixforge-run) when "auto" runs on the CPU.
    """
    path = Path(model_path)
    session, device_id = ort_session(path, device, threads, notice=False)
    meta = parse_metadata(session.get_modelmeta().custom_metadata_map, str(path))
    result = Session(path, session, meta, device_id)
    check_specs(result)
    if notice:  # only for a model that will run: an error is then the one line on stderr
        _cpu_notice(session, device)
    return result


def ort_session(path: str | Path, device: str = "auto", threads: int | None = None,
                notice: bool = True) -> tuple[ort.InferenceSession, int]:
    """(an onnxruntime session of any ONNX file at `path` on `device`, the CUDA device index): `open_session`'s
    provider choice without pixforge metadata, for models made elsewhere (a face occluder, ...). `notice`: say on
    stderr when "auto" runs on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise PixforgeError(f"{path} does not exist or is not a file")
    warning = double_install_warning()
    if warning:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    want, device_id = parse_device(device)
    available = ort.get_available_providers()
    if want == "cuda" and CUDA not in available:
        raise PixforgeError(f"CUDA was requested but this onnxruntime ({ort.__version__}) has no "
                            f"{CUDA} (available: {', '.join(available)}): {GPU_HINT}")
    use_cuda = want == "cuda" or (want == "auto" and CUDA in available)
    if use_cuda and hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels, when installed
        with contextlib.redirect_stdout(sys.stderr):
            ort.preload_dlls()
    providers: list[Any] = [(CUDA, {"device_id": device_id}), CPU] if use_cuda else [CPU]
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: provider-assignment warnings are noise for users
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except ORT_ERRORS as err:
        raise PixforgeError(f"{path} could not be loaded by onnxruntime ({_first_line(err)})") from None
    actual = session.get_providers()[0]
    if want == "cuda" and actual != CUDA:
        raise PixforgeError(f"CUDA was requested but onnxruntime fell back to {actual} for {path}: the CUDA "
                            "provider could not load the CUDA / cuDNN libraries it was built for (see "
                            f"onnxruntime's log above); or {GPU_HINT}")
    if notice:
        _cpu_notice(session, device)
    return session, device_id


def _cpu_notice(session: ort.InferenceSession, device: str) -> None:
    """One line on stderr when `device` "auto" runs on the CPU, and why."""
    actual = session.get_providers()[0]
    if parse_device(device)[0] == "auto" and actual != CUDA:
        reason = "the CUDA provider failed to load" if CUDA in ort.get_available_providers() else \
            "no CUDA provider available"
        print(f"{PROG}: running on {actual} ({reason})", file=sys.stderr)


def parse_device(device: str) -> tuple[str, int]:
    """("auto" | "cpu" | "cuda", device index) from "auto", "cpu", "cuda" or "cuda:N"."""
    text = str(device).strip().lower()
    if text in ("auto", "cpu", "cuda"):
        return text, 0
    kind, _, index = text.partition(":")
    if kind == "cuda" and index.isdigit():
        return "cuda", int(index)
    raise PixforgeError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")


def double_install_warning() -> str | None:
    """A one-line fix when both `onnxruntime` and `onnxruntime-gpu` are installed (they overwrite each other)."""
    present = []
    for name in ("onnxruntime", "onnxruntime-gpu"):
        with contextlib.suppress(PackageNotFoundError):
            distribution(name)
            present.append(name)
    if len(present) < 2:
        return None
    return ("both onnxruntime and onnxruntime-gpu are installed and share one 'onnxruntime' module, so the GPU "
            "build may be shadowed; fix: pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu")


def check_specs(session: Session) -> None:
    """The metadata must describe exactly the graph's inputs and outputs, with matching image channels."""
    meta, where = session.meta, session.path
    for label, specs, graph in (("input", meta.inputs, session.inputs), ("output", meta.outputs, session.outputs)):
        names = [s.name for s in specs]
        if sorted(names) != sorted(graph):
            raise PixforgeError(f"{where}: pixforge metadata lists {label}s {names} but the graph has "
                                f"{list(graph)}; re-export the model")
    for spec in meta.inputs:
        io = session.inputs[spec.name]
        if spec.kind != "image" or len(io.shape) != 4:
            continue
        dim = io.shape[1] if spec.layout == "NCHW" else io.shape[3]
        if isinstance(dim, int) and spec.channels is not None and dim != spec.channels:
            raise PixforgeError(f"{where}: metadata says input '{spec.name}' has {spec.channels} channels but the "
                                f"graph takes {dim}; re-export the model")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else err.__class__.__name__
