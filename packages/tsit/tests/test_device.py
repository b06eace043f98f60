import numpy as np
import pytest
import torch

from pixforge.tsit.model import Trained, build_encoder, build_generator, make_arch
from pixforge.tsit.translate import Translator


@pytest.mark.parametrize("task, options", [("ast", {}), ("sis", {"num_classes": 3, "dontcare": 3, "instance": True}),
                                           ("sis", {"num_classes": 3, "vae": True, "enc_size": 8})])
def test_translator_keeps_every_tensor_on_its_device(task, options):
    """The meta device stands in for CUDA: inputs, noise, one-hot label maps or instance edges left on the CPU raise
    there, as they would on a GPU."""
    arch = make_arch(task, ngf=2, levels=3, size=(16, 16), z_dim=4, **options)
    trained = Trained(arch, build_generator(arch).eval(), None, "memory")
    if arch["start"] == "vae":
        trained.encoder = build_encoder(arch).eval()
    translator = Translator(trained, torch.device("meta"))
    rng = np.random.default_rng(0)
    if task == "sis":
        contents = [rng.integers(0, 3 + ("dontcare" in options), (16, 16, 1)).astype(np.uint8) for _ in range(2)]
        style = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8) if options.get("vae") else None
        instances = contents if options.get("instance") else None
    else:
        contents = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(2)]
        style, instances = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8), None
    out = translator.run(contents, style, [0, 1], instances)
    assert out.device.type == "meta" and out.shape == (2, 3, 16, 16)
