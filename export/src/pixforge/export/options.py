"""Checks of command-line option values, torch-free (so video and runtime paths can use them)."""

from __future__ import annotations

from typing import Any

from pixforge.export.errors import PixforgeError


def whole_number(flag: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """`value` of `flag` if it is a whole number in [minimum, maximum], else a PixforgeError naming the flag."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum else f"at least {minimum}"
        raise PixforgeError(f"{flag} must be a whole number {bounds}, got {value!r}")
    return value
