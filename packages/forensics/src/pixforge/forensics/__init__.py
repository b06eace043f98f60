"""pixforge-forensics: the DeeperForensics-1.0 real-world distortions for frames, videos and training batches.

    from pixforge.forensics import distort, Randomness
    out = distort(frame_rgb_uint8, "GB", 3)                      # same output as the official function
    out = distort(frame, "GNC", 5, Randomness(seed=0))           # random ones take explicit random streams

    from pixforge.forensics.augment import RandomDistortion    # torch training augmentation (CPU or CUDA)
    from pixforge.forensics.video import perturb_video          # a video, audio kept, meta `TYPE:LEVEL`
"""

from importlib.metadata import PackageNotFoundError, version

from pixforge.forensics.distortions import FRAME_TYPES, LEVELS, PARAMS, TYPES, Randomness, distort, parameter

try:
    __version__ = version("pixforge-forensics")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = ["TYPES", "FRAME_TYPES", "LEVELS", "PARAMS", "Randomness", "distort", "parameter", "__version__"]
