"""pixforge-primitives: the Primitives-PS synthesizers as seeded functions of (seed, index, size).

    from pixforge.primitives import get
    model = get("primitives-ps")
    images = model.sample(seed=0, indices=range(8), size=256, device=torch.device("cpu"))  # uint8 N x S x S x 3
"""

from importlib.metadata import version

from pixforge.primitives.models import NAMES, Synthesizer, get

__version__ = version("pixforge-primitives")  # pixforge runs installed (entry points, extras)

__all__ = ["NAMES", "Synthesizer", "get", "__version__"]
