"""Option checks shared by the CLI and the model classes (run before any work)."""

from __future__ import annotations

from pixforge.export.errors import PixforgeError


def whole_number(option: str, value, minimum: int = 1, maximum: int | None = None) -> None:
    """Refuse a value of `--option` that is not a whole number in [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum else f"at least {minimum}"
        raise PixforgeError(f"--{option} must be a whole number {bounds}, got {value!r}")
