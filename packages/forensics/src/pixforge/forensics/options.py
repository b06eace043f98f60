"""The options of the video verbs (perturb, make-variants, preview, demo), checked before any work."""

from __future__ import annotations

from pathlib import Path

from pixforge.export.errors import PixforgeError
from pixforge.export.options import whole_number
from pixforge.export.shard import parse_shard
from pixforge.export.video import check_preset
from pixforge.forensics.distortions import check_level, check_type


def distortion(kind: str) -> str:
    """--type: a distortion type, or "random"."""
    return "random" if str(kind).lower() == "random" else check_type(kind)


def level(value) -> int | str:
    """--level: 1-5, or "random"."""
    return "random" if str(value).lower() == "random" else check_level(value)


def out_folder(out: str | Path, flag: str = "--out") -> Path:
    """An output folder (created later, by the first write): refused when it, or the nearest existing path
    above it, is not a folder."""
    path = Path(out)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise PixforgeError(f"{flag} {path}: {existing} exists and is not a folder")
    return path


def meta_file(meta: str | None) -> Path | None:
    """--meta: the meta file's path (its folder checked like an output folder), or None."""
    if meta is None:
        return None
    path = Path(meta)
    if path.is_dir():
        raise PixforgeError(f"--meta {path} is a folder: give the meta file's path, e.g. {path / 'meta.txt'}")
    out_folder(path.parent, f"--meta {path}: its folder")
    return path


def check_encoding(crf: int, workers: int, batch_size: int, preset: str, seed: int, shard: str | None) -> None:
    """The options every video verb shares."""
    whole_number("--seed", seed, 0)
    whole_number("--crf", crf, 0, 51)
    whole_number("--workers", workers)
    whole_number("--batch-size", batch_size)
    check_preset(preset)
    parse_shard(shard)
