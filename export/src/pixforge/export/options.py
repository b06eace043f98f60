"""Checks of command-line option values, torch-free (so video and runtime paths can use them)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pixforge.export.errors import PixforgeError

RECORDS = (".safetensors", ".pt", ".pth", ".pkl", ".json", ".jsonl", ".npy", ".npz")  # a run's records: never replaced


def whole_number(flag: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """`value` of `flag` if it is a whole number in [minimum, maximum], else a PixforgeError naming the flag."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum else f"at least {minimum}"
        raise PixforgeError(f"{flag} must be a whole number {bounds}, got {value!r}")
    return value


def check_numbers(options: dict[str, Any], *, integers: dict[str, int] | None = None, positive: tuple[str, ...] = (),
                  non_negative: tuple[str, ...] = (), fractions: tuple[str, ...] = ()) -> None:
    """Check the numeric options a verb was given (None: not given), before anything is read or written: `integers`
    (name -> least value), `positive` (> 0), `non_negative` (>= 0) and `fractions` ([0, 1)) numbers, finite. The
    first one out of bounds is a PixforgeError naming its flag."""
    def fail(name: str, rule: str):
        raise PixforgeError(f"--{name.replace('_', '-')} must be {rule}, got {options[name]!r}")

    for name, low in (integers or {}).items():
        value = options[name]
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
            fail(name, f"an integer of at least {low}")
    for names, rule, ok in ((positive, "a number above 0", lambda v: v > 0),
                            (non_negative, "a number of at least 0", lambda v: v >= 0),
                            (fractions, "a number from 0 up to (not including) 1", lambda v: 0 <= v < 1)):
        for name in names:
            value = options[name]
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                          and math.isfinite(value) and ok(value)):
                fail(name, rule)


def check_outside(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], flag: str = "--out",
                  holding: bool = False) -> None:
    """Refuse, before any work, an output `out` that is one of `inputs` or lies inside an input folder (a later run
    would read it back as an input); with `holding` (an output folder that may be cleared, a run directory) also one
    that holds an input. None inputs are skipped. A PixforgeError naming both paths."""
    target = Path(out).resolve()
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if target == source:
            raise PixforgeError(f"{flag} {out} is the input {given}: choose another {flag}")
        if source in target.parents:
            raise PixforgeError(f"{flag} {out} is inside the input folder {given}: choose a path outside it")
        if holding and target in source.parents:
            raise PixforgeError(f"{flag} {out} holds the input {given}: choose a folder that does not")


def check_not_replacing(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None],
                        flag: str = "--out") -> None:
    """Refuse, before any work, an output file that is a folder, is one of `inputs`, or would replace a record an
    input folder holds (weights, checkpoints, JSON and array files: `RECORDS`): an image or an export written into
    its run earlier may be replaced with --overwrite."""
    target = Path(out)
    if target.is_dir():
        raise PixforgeError(f"{flag} {out} is a folder: give a file path")
    if not target.exists():
        return
    check_outside(target, [p for p in inputs if p is not None and not Path(p).is_dir()], flag)
    for given in inputs:
        if given is not None and Path(given).is_dir() and Path(given).resolve() in target.resolve().parents \
                and target.suffix.lower() in RECORDS:
            raise PixforgeError(f"{flag} {out} would replace {target.name}, a record of the input folder {given}: "
                                "choose another path")

