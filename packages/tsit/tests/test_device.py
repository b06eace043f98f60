import numpy as np
import pytest
import torch

from pixforge.export.pipeline import Pipeline
from pixforge.tsit.export import session
from pixforge.tsit.model import Trained, build_encoder, build_generator, make_arch


@pytest.mark.parametrize("task, options", [("ast", {}), ("sis", {"num_classes": 3, "dontcare": 3, "instance": True}),
                                           ("sis", {"num_classes": 3, "vae": True, "enc_size": 8})])
def test_translate_graph_keeps_every_tensor_on_its_device(task, options):
    """The meta device stands in for CUDA: the runtime's feeds moved there, and nothing the graph module makes of
    them (one-hot label maps, instance edges, codes) left on the CPU, which would raise there as on a GPU."""
    arch = make_arch(task, ngf=2, levels=3, size=(16, 16), z_dim=4, **options)
    trained = Trained(arch, build_generator(arch).eval(), None, "memory")
    if arch["start"] == "vae":
        trained.encoder = build_encoder(arch).eval()
    model = session(trained, torch.device("meta"))
    rng = np.random.default_rng(0)
    images, paired = {}, None
    if task == "sis":
        contents = [rng.integers(0, 3 + ("dontcare" in options), (16, 16, 1)).astype(np.int32) for _ in range(2)]
        if options.get("vae"):
            images["style"] = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
        if options.get("instance"):
            paired = {"instances": contents}
    else:
        contents = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(2)]
        images["style"] = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    pipe = Pipeline(model, images=images)
    feeds = pipe.feeds(contents, [0, 1], paired)
    with torch.no_grad():
        out = model.module(*[torch.from_numpy(feeds[s.name]).to("meta") for s in model.meta.inputs])
    assert out.device.type == "meta" and out.shape == (2, 3, 16, 16)
