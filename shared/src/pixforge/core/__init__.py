"""pixforge-core: the CUDA training utilities every pixforge tool shares.

Modules: `runtime` (device, precision, seeding), `distributed` (torchrun/DDP, sharding), `checkpoint`
(atomic save, resume, release weights), `loop` (EMA, progress, metric logs, sample grids, graceful stop),
`rundir` (the run-directory convention), `io` (images, grids, datasets, video), `onnx` (export + parity),
`metrics` (PSNR/SSIM/FID/KID), `lpips`, `losses` (GAN and perceptual losses), `nets` (shared networks),
`datagen` (deterministic sharded dataset generation), `cli` (the Fire runner) and `umbrella` (`pixforge`).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pixforge-core")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
