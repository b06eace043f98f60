"""pixforge-tsit: TSIT two-stream image-to-image translation (Jiang et al., ECCV 2020)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pixforge-tsit")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
