"""pixforge-core: the CUDA training utilities every pixforge tool shares.

Modules: `runtime` (device, precision, seeding), `distributed` (torchrun/DDP, sharding), `checkpoint`
(atomic save, resume, release weights), `loop` (EMA, progress, metric logs, sample grids, graceful stop),
`rundir` (the run-directory convention), `io` (images, grids, datasets, video), `onnx` (export + parity),
`metrics` (PSNR/SSIM/FID/KID), `lpips`, `losses` (GAN and perceptual losses), `nets` (shared networks),
`datagen` (deterministic sharded dataset generation), `cli` (the Fire runner) and `umbrella` (`pixforge`).
"""

from importlib.metadata import version

__version__ = version("pixforge-core")  # pixforge runs installed (entry points, extras)
