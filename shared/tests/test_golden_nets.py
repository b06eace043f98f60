"""Golden outputs of core's networks: a tiny seeded configuration, an expected output slice (diffusers-style);
InceptionV3's is in test_inception.py, beside the weights it uses.

A refactor that changes the numbers (initialisation, layer order, a resampling filter, a weight name mapped
to the wrong layer) fails here loudly. Float kernels differ by CPU type and thread count
(ATEN_CPU_CAPABILITY=default vs avx2, 1 vs 2 threads: up to 6e-6 relative on this machine), so the values are
compared with rtol 1e-4 — two orders of magnitude above that, far below any real change.
"""

import torch

from pixforge.core.nets.resnet import ResNet
from pixforge.core.nets.stylegan2 import Generator

STYLEGAN2 = [
    -0.710774, -0.419166, -0.277853, -0.559032, -0.307620, -0.171643, -0.422599, -0.251976, -0.108854,
    0.048517, 0.365823, 0.338730, 0.347819, 0.452679, 0.420329, 0.399075, 0.334491, 0.274290,
    -0.968230, -0.778264, -0.647630, -0.731522, -0.614837, -0.556633, -0.279905, -0.255231, -0.285999,
    -0.334350, -0.244235, -0.200824, -0.566199, -0.365553, -0.240850, -0.563456, -0.337351, -0.218791,
    -0.140757, -0.193658, -0.262680, -0.138341, -0.240561, -0.255773, -0.182793, -0.258818, -0.249718,
    0.080933, 0.106416, 0.067047, 0.052021, 0.157778, 0.120061, 0.048101, 0.134126, 0.088104,
]

RESNET18 = [
    0.767514, -0.462471, 0.182940, -0.085700, -0.428825, 0.070543, -1.132012, -0.311801, 1.152799,
    -0.104130, 0.627437, -0.447664, 0.120433, 0.119182, -0.404336, 0.053732, -1.222945, -0.282236,
    1.084105, -0.396975,
]



def _close(got: torch.Tensor, expected: list[float], atol: float) -> None:
    torch.testing.assert_close(got.flatten(), torch.tensor(expected), rtol=1e-4, atol=atol)


def test_stylegan2_generator_golden():
    torch.manual_seed(0)
    g = Generator(z_dim=16, w_dim=16, img_resolution=16, img_channels=3, mapping_kwargs={"num_layers": 2},
                  synthesis_kwargs={"channel_base": 256, "channel_max": 32}).eval()
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        image = g(z, noise_mode="const")
    _close(image[:, :, -3:, -3:], STYLEGAN2, atol=1e-5)


def test_resnet18_golden():
    torch.manual_seed(0)
    net = ResNet("resnet18", num_classes=10).eval()
    with torch.no_grad():
        logits = net(torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    _close(logits, RESNET18, atol=1e-5)
