"""A trained DF-VAE: loading it back from a run directory, a checkpoint or a release folder, and the reference crops
of each identity that swapping needs.

The release config (`model.json`) and every checkpoint's config carry `tool: "pixforge-dfvae"`, so a checkpoint
of another tool is refused with one line; records written before the tag existed are read when their architecture
keys are DF-VAE's.

Reference crops: the appearance encoder E_β needs a face of the source identity (the thesis' unpaired x'). At the
end of training the run keeps `REFERENCES` aligned crops per identity (`references/<identity>/NN.png` with
`references/references.json`: their landmarks and where they came from), ordered so that crop 00 is the one whose
landmarks are closest to the identity's mean layout (its most typical, usually most frontal, pose). A run without
them (stopped early, or trained before they existed) takes them from its training data folders on first use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from pixforge.core.checkpoint import Checkpoints, load_release, read_checkpoint
from pixforge.core.rundir import recorded_tool
from pixforge.dfvae.nets import DFVAE, DFVAEConfig
from pixforge.export.errors import PixforgeError

TOOL = "pixforge-dfvae"
REFERENCES = 8
ARCH_FIELDS = tuple(f.name for f in fields(DFVAEConfig))


@dataclass
class Trained:
    """A loaded model (eval mode), its architecture, the identities it was trained on, its run's config, and where it
    came from."""

    model: DFVAE
    arch: dict
    identities: list[str]
    config: dict
    source: Path
    run: Path | None  # the run directory (for its references), when known

    @property
    def size(self) -> int:
        return self.arch["resolution"]

    @property
    def padding(self) -> float:
        return float(self.config.get("padding", 0.25))


def check_record(record, source: str | Path) -> None:
    """Refuse a record of another tool (or none)."""
    if not isinstance(record, dict):
        raise PixforgeError(f"{source} is not a pixforge-dfvae model (no config)")
    arch, tool = record.get("arch", record), recorded_tool(record)
    if tool is not None and tool != TOOL:
        raise PixforgeError(f"{source} was written by {tool}, not {TOOL}: give a pixforge-dfvae run")
    if tool is None and not (isinstance(arch, dict) and {"resolution", "appearance_dim"} <= set(arch)):
        raise PixforgeError(f"{source} was not written by {TOOL} (its config has no tool: {TOOL!r})")


def load(path: str | Path, map_location: str | torch.device = "cpu") -> Trained:
    """A run directory (its release weights `model.safetensors`, else its newest checkpoint), a checkpoint file or a
    release folder -> `Trained` (model in eval mode)."""
    path = Path(path)
    if not path.exists():
        raise PixforgeError(f"--run {path} does not exist")
    if path.is_dir() and (path / "model.safetensors").is_file():
        state, record = load_release(path)
        check_record(record, path / "model.json")
        arch = {k: record[k] for k in ARCH_FIELDS if k in record}
        config = _run_config(path)
        config.setdefault("identities", record.get("identities", []))
        return _assemble(arch, state, config, path, path)
    run = None
    if path.is_dir():
        latest = Checkpoints(path / "checkpoints").latest()
        if latest is None:
            raise PixforgeError(f"--run {path} holds neither release weights (model.safetensors) nor checkpoints: "
                                "is it a pixforge-dfvae run directory?")
        run, path = path, latest
    elif path.suffix == ".safetensors":
        raise PixforgeError(f"--run {path} is a release weights file: give the folder that holds it and its "
                            f"model.json (--run {path.parent})")
    elif path.parent.name == "checkpoints":
        run = path.parent.parent
    ckpt = read_checkpoint(path, map_location)
    config = ckpt.get("config") or {}
    check_record(config, path)
    if "model" not in ckpt.get("models", {}):
        raise PixforgeError(f"checkpoint {path} holds no DF-VAE model")
    return _assemble(config["arch"], ckpt["models"]["model"], config, path, run)


def _run_config(run: Path) -> dict:
    path = run / "config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise PixforgeError(f"{path} is not a readable JSON file") from None
    check_record(config, path)
    return config


def _assemble(arch: dict, state: dict, config: dict, source: Path, run: Path | None) -> Trained:
    try:
        model = DFVAE(DFVAEConfig(**arch))
        model.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError) as err:
        raise PixforgeError(f"{source}: weights do not match the recorded architecture "
                            f"({str(err).splitlines()[0][:200]})") from None
    identities = list(config.get("identities") or [])
    return Trained(model.eval().requires_grad_(False), dict(arch), identities, config, source, run)


def check_identity(trained: Trained, identity: str | None) -> str:
    """The source identity (`--source-id`), one the model was trained on; the known ones are listed otherwise."""
    known = trained.identities
    if identity is None:
        raise PixforgeError(f"--source-id is required: one of the run's identities ({', '.join(known) or 'none'})")
    if str(identity) not in known:
        raise PixforgeError(f"unknown identity {identity!r}: the model knows {', '.join(known) or 'none'}")
    return str(identity)


def pick_references(crops: np.ndarray, landmarks: np.ndarray, count: int = REFERENCES) -> np.ndarray:
    """Indices of up to `count` crops spread over the clip, the one nearest the mean landmark layout first."""
    picks = np.unique(np.linspace(0, len(crops) - 1, min(count, len(crops))).round().astype(int))
    mean = landmarks.mean(axis=0)
    order = np.argsort([np.abs(landmarks[i] - mean).mean() for i in picks], kind="stable")
    return picks[order]


def write_references(run: Path, dataset, count: int = REFERENCES) -> Path:
    """`run/references/`: up to `count` aligned crops per identity of `dataset` (a `FaceFrames`: at its size), with
    references.json (identity -> files, landmarks in crop pixels)."""
    from pixforge.export.atomic import write_text
    from pixforge.export.images import write_image

    folder = run / "references"
    index = {}
    for who, name in enumerate(dataset.identities):
        rows = dataset.frames[who]
        picks = np.unique(np.linspace(0, len(rows) - 1, min(4 * count, len(rows))).round().astype(int))
        items = [dataset._frame(*rows[i]) for i in picks]
        crops = np.stack([((c.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
                          for c, _, _ in items])
        landmarks = np.stack([lm.numpy() for _, lm, _ in items])
        chosen = pick_references(crops, landmarks, count)
        files = []
        for k, i in enumerate(chosen):
            file = f"{name}/{k:02d}.png"
            write_image(folder / file, crops[i])
            files.append({"file": file, "landmarks": landmarks[i].round(3).tolist()})
        index[name] = files
    write_text(folder / "references.json", json.dumps({"size": dataset.size, "identities": index}))
    return folder


def load_references(trained: Trained, identity: str) -> tuple[np.ndarray, np.ndarray]:
    """(crops (K, S, S, 3) uint8, landmarks (K, 68, 2)) of `identity` at the model's size: the run's references/,
    else drawn from its training data."""
    from pixforge.export.images import read_image

    folder = trained.run / "references" if trained.run is not None else None
    if folder is not None and (folder / "references.json").is_file():
        index = json.loads((folder / "references.json").read_text())
        files = index["identities"].get(identity)
        if files and index.get("size") == trained.size:
            crops = np.stack([read_image(folder / f["file"]) for f in files])
            return crops, np.asarray([f["landmarks"] for f in files], np.float32)
    from pixforge.dfvae.data import FaceFrames

    data = trained.config.get("data") or []
    try:
        dataset = FaceFrames(data, size=trained.size, identities=[identity])
    except PixforgeError as err:
        raise PixforgeError(f"{trained.source} has no reference crops of {identity!r} and its training data cannot "
                            f"be read ({err}); give --source-images DIR (aligned crops of the source)") from None
    rows = dataset.frames[0]
    picks = np.unique(np.linspace(0, len(rows) - 1, min(4 * REFERENCES, len(rows))).round().astype(int))
    items = [dataset._frame(*rows[i]) for i in picks]
    crops = np.stack([((c.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
                      for c, _, _ in items])
    landmarks = np.stack([lm.numpy() for _, lm, _ in items])
    chosen = pick_references(crops, landmarks)
    return crops[chosen], landmarks[chosen]
