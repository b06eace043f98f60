"""pixforge-export: run exported pixforge ONNX models in production, with no torch.

This package is also the torch-free base every pixforge package stands on: the error type and
Fire runner shared by every CLI (`errors`, `command`), atomic file writes (`atomic`), numpy
image and ffmpeg video I/O (`images`, `video`), the ONNX metadata schema (`metadata`) and generators' size
rules (`sizing`).
"""

from importlib.metadata import version

__version__ = version("pixforge-export")  # pixforge runs installed (entry points, extras)
