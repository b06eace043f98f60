"""pixforge-apa: Adaptive Pseudo Augmentation for GAN training with limited data (Jiang et al., NeurIPS 2021)."""

from importlib.metadata import version

__version__ = version("pixforge-apa")  # pixforge runs installed (entry points, extras)

__all__ = ["__version__"]
