"""`open_backend(name, **options)`: the one way tools get a face backend, by the name a `--backend` flag gives."""

from __future__ import annotations

from pixforge.core.faces.face import FaceBackend
from pixforge.export.errors import PixforgeError

BACKENDS = ("dlib",)


def open_backend(name: str = "dlib", **options) -> FaceBackend:
    """The face backend `name` built with `options` (dlib: `detector="hog"|"cnn"`, `upsample`, `points`,
    `threshold`, `models`); a `PixforgeError` naming the extra to install when its library is missing."""
    if name == "dlib":
        from pixforge.core.faces.dlib_backend import DlibBackend

        return DlibBackend(**options)
    raise PixforgeError(f"--backend must be one of {', '.join(BACKENDS)}, got {name!r}")
