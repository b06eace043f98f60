"""pixforge-forensics: the DeeperForensics-1.0 real-world distortions for frames, videos and training batches.

    from pixforge.forensics import distort, Randomness
    out = distort(frame_rgb_uint8, "GB", 3)                      # same output as the official function
    out = distort(frame, "GNC", 5, Randomness(seed=0))           # random ones take explicit random streams

    from pixforge.forensics.augment import RandomDistortion    # torch training augmentation (CPU or CUDA)
    from pixforge.forensics.video import perturb_video          # a video, audio kept, meta `TYPE:LEVEL`
"""

from importlib.metadata import version

from pixforge.forensics.distortions import FRAME_TYPES, LEVELS, PARAMS, TYPES, Randomness, distort, parameter

__version__ = version("pixforge-forensics")  # pixforge runs installed (entry points, extras)

__all__ = ["TYPES", "FRAME_TYPES", "LEVELS", "PARAMS", "Randomness", "distort", "parameter", "__version__"]
