"""pixforge-tsit: TSIT two-stream image-to-image translation (Jiang et al., ECCV 2020)."""

from importlib.metadata import version

__version__ = version("pixforge-tsit")  # pixforge runs installed (entry points, extras)

__all__ = ["__version__"]
