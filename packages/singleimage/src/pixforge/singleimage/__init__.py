"""pixforge-singleimage: single-image generation (SinGAN baseline, Shaham et al. ICCV 2019; PetsGAN, Zhang et al.
AAAI 2022)."""

from importlib.metadata import version

__version__ = version("pixforge-singleimage")  # pixforge runs installed (entry points, extras)

__all__ = ["__version__"]
