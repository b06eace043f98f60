"""pixforge-spectra: the image models of "Learning to See by Looking at Noise" as seeded functions of
(seed, index, size), and image-statistics analysis.

    from pixforge.spectra import get
    model = get("dead-leaves-shapes")
    images = model.sample(seed=0, indices=range(8), size=128, device=torch.device("cpu"))  # uint8 N x S x S x 3
"""

from importlib.metadata import version

from pixforge.spectra.featurevis import FeatureVis
from pixforge.spectra.models import NAMES, DeadLeaves, Statistical, get
from pixforge.spectra.stylegan import RandomStyleGAN

__version__ = version("pixforge-spectra")  # pixforge runs installed (entry points, extras)

__all__ = ["NAMES", "DeadLeaves", "FeatureVis", "RandomStyleGAN", "Statistical", "get", "__version__"]
