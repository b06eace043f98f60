"""The command-line conventions every pixforge tool follows.

Tools write `def main(): run(MyTool, name="pixforge-mytool")`, raise `pixforge.export.errors.PixforgeError`
(its one import path) for user errors (one sentence naming what and where: exit code 2, no traceback;
`--verbose` shows it) and validate their paths with the helpers below before writing anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pixforge.export.command import run
from pixforge.export.errors import PixforgeError
from pixforge.export.options import check_not_replacing, check_outside

__all__ = ["run", "require_file", "require_dir", "output_dir", "output_file"]


def require_file(path: str | Path, what: str = "input") -> Path:
    path = Path(path)
    if not path.is_file():
        raise PixforgeError(f"{what} {path} does not exist or is not a file")
    return path


def require_dir(path: str | Path, what: str = "input folder") -> Path:
    path = Path(path)
    if not path.is_dir():
        raise PixforgeError(f"{what} {path} does not exist or is not a folder")
    return path


def output_dir(path: str | Path, overwrite: bool = False, inputs: Iterable[str | Path | None] = ()) -> Path:
    """An `--out` folder: created when missing; a non-empty one is refused unless `overwrite`; one that is an
    input or lies inside an input folder (`inputs`) is refused always."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PixforgeError(f"--out {path} exists and is not a folder")
    check_outside(path, inputs)
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise PixforgeError(f"--out {path} is not empty: choose another folder or pass --overwrite")
    path.mkdir(parents=True, exist_ok=True)
    return path


def output_file(path: str | Path, suffix: str, overwrite: bool = False,
                inputs: Iterable[str | Path | None] = ()) -> Path:
    """An `--out` file (e.g. an exported `.onnx`): it must end in `suffix`, must not be a folder, and an existing one
    is refused unless `overwrite`, always when it is one of `inputs` or a file inside an input folder (a run's
    weights). Nothing is created."""
    path = Path(path)
    if path.suffix != suffix:
        raise PixforgeError(f"--out {path} must end in {suffix}")
    if path.is_dir():
        raise PixforgeError(f"--out {path} is a folder: give the {suffix} file to write")
    check_not_replacing(path, inputs)
    if path.exists() and not overwrite:
        raise PixforgeError(f"{path} already exists: pass --overwrite to replace it")
    return path
