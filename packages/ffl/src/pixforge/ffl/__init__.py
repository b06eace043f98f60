"""pixforge-ffl: Focal Frequency Loss (FFT and DCT forms), the LFD metric, spectrum pictures, a with/without comparison.

    from pixforge.ffl import FocalFrequencyLoss, lfd
    ffl = FocalFrequencyLoss(loss_weight=1.0, alpha=1.0)
    loss = F.mse_loss(out, x) + ffl(out, x)
"""

from importlib.metadata import PackageNotFoundError, version

from pixforge.ffl.lfd import lfd
from pixforge.ffl.loss import FocalFrequencyLoss, focal_frequency_loss

try:
    __version__ = version("pixforge-ffl")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = ["FocalFrequencyLoss", "focal_frequency_loss", "lfd", "__version__"]
