"""pixforge-dfvae: DF-VAE face swapping from DeeperForensics-1.0 (Jiang et al., CVPR 2020)."""

from importlib.metadata import version

__version__ = version("pixforge-dfvae")  # pixforge runs installed (entry points, extras)

__all__ = ["__version__"]
