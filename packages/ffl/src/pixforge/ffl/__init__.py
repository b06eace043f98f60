"""pixforge-ffl: Focal Frequency Loss (FFT and DCT forms), the LFD metric, spectrum pictures, a with/without comparison.

    from pixforge.ffl import FocalFrequencyLoss, lfd
    ffl = FocalFrequencyLoss(loss_weight=1.0, alpha=1.0)
    loss = F.mse_loss(out, x) + ffl(out, x)
"""

from importlib.metadata import version

from pixforge.ffl.lfd import lfd
from pixforge.ffl.loss import FocalFrequencyLoss, focal_frequency_loss

__version__ = version("pixforge-ffl")  # pixforge runs installed (entry points, extras)

__all__ = ["FocalFrequencyLoss", "focal_frequency_loss", "lfd", "__version__"]
