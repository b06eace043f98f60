"""Golden outputs of TSIT's networks (diffusers-style): a tiny seeded configuration, an expected output slice.

A refactor that changes the numbers (initialisation, layer order, a norm, a resampling mode, FAdaIN's statistics)
fails here loudly. The networks run in training mode (FADE's batch norm on batch statistics, one spectral-norm
power step), as they train. Float kernels differ by CPU type and thread count (ATEN_CPU_CAPABILITY=default vs
avx2, 1 vs 2 threads), so values are compared with rtol 1e-4 and an atol of 1e-4 of the slice's scale.
"""

import torch

from pixforge.core.nets.patchgan import MultiScaleDiscriminator
from pixforge.tsit.model import build_encoder, build_generator, make_arch
from pixforge.tsit.nets import init_weights

GENERATOR = [
    -7.3622668e-04, -1.5132648e-03, -7.7281515e-03, 8.4128213e-04, -7.5191294e-04, -7.2791320e-03,
    -2.8960304e-03, -6.3822409e-03, -9.4175432e-03, 6.9371220e-03, 5.5372017e-03, 4.0886103e-04,
    4.2260522e-03, 3.3115470e-03, -1.1693129e-03, 6.8525755e-04, 7.4255833e-04, -2.6398450e-03,
    9.9268397e-03, 8.7540848e-03, 1.3398559e-02, 7.1604946e-03, 6.2670251e-03, 1.2590866e-02,
    -8.0162747e-04, -1.6755798e-03, 2.7263789e-03, -1.0984977e-02, -9.0265572e-03, -5.2033169e-03,
    -6.6941399e-03, -6.3601970e-03, -4.9269921e-03, -5.4028034e-03, -6.7435536e-03, -9.5498348e-03,
    7.9557924e-03, 9.9313492e-03, 1.9798251e-03, 1.5437055e-03, 3.6425011e-03, 1.8037077e-04,
    1.2722530e-03, 1.6344039e-03, 4.2265904e-04, 2.4912690e-03, -8.7957195e-04, 7.7223112e-03,
    3.6895953e-04, -4.3910770e-03, 6.4884406e-03, -4.3278439e-03, -7.3123048e-03, -5.2627554e-04,
]
DISCRIMINATOR = [
    1.2873921e-02, 4.4827242e-03, 4.4434532e-03, -6.0238861e-03, 1.9859202e-02, -3.3787135e-03,
    -2.8375857e-02, -1.5468474e-03, 2.2970289e-03, 7.6276343e-03, -1.3304383e-02, -6.4691715e-03,
    -1.3466868e-02, 5.9751794e-04, 9.6154623e-03, 1.1711772e-02, -6.2924951e-02, 1.1853497e+00,
    5.4555720e-01, -2.3141824e-02,
]
ENCODER = [
    -2.9090157e-02, 2.1029802e-02, 1.1570230e-02, -3.1363619e-03, 1.9871406e-03, -2.1981984e-02,
    -2.0517342e-02, 1.9240476e-02, -4.8353486e-03, 5.1948380e-02, -2.2062477e-02, -6.5955450e-04,
    -1.9281454e-02, -2.0786049e-02, -3.8576148e-02, 2.2594467e-02, -1.5326191e-02, -2.4322089e-02,
    -2.2595827e-02, 8.6400602e-03, 3.5963964e-02, 9.3627162e-04, -1.9446431e-02, -1.0791487e-02,
    3.7668400e-02, -6.6958144e-03, -2.2206862e-02, 8.8302232e-03, 1.0030831e-02, 5.0551421e-03,
    3.2688915e-03, -1.8103847e-02,
]
SIS_GENERATOR = [
    -1.3549131e-02, -9.4316965e-03, -8.9222072e-03, -9.6425628e-03, 1.2151881e-03, 3.0474267e-03,
    -2.8860073e-03, 4.0923185e-03, -1.7619582e-02, -1.8782575e-02, -9.5901554e-03, -9.8957708e-03,
    2.8035054e-03, 7.4752001e-03, -2.8909631e-03, 4.4174329e-03, -1.1392644e-03, -1.1138057e-02,
    -7.8496215e-04, -4.4187419e-03, 2.5301336e-03, 3.8346453e-03, 8.1776606e-04, 2.6010617e-03,
]


def _close(got: torch.Tensor, expected: list[float], atol: float) -> None:
    torch.testing.assert_close(got.flatten(), torch.tensor(expected), rtol=1e-4, atol=atol)


def _uniform(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=gen) * 2 - 1


def test_style_transfer_generator_golden():
    """Content and style streams, FADE blocks, FAdaIN at alpha 0.75, noise start; official init."""
    torch.manual_seed(0)
    G = init_weights(build_generator(make_arch("ast", ngf=4, levels=3, size=(16, 24))))
    gen = torch.Generator().manual_seed(1)
    content, style, noise = _uniform(gen, 2, 3, 16, 24), _uniform(gen, 2, 3, 16, 24), torch.randn(2, 3, 4, 6,
                                                                                                   generator=gen)
    with torch.no_grad():
        image = G(content, style, noise, 0.75)
    _close(image[:, :, -3:, -3:], GENERATOR, atol=1e-6)


def test_multiscale_discriminator_golden():
    """TSIT's D: two scales of 3-layer PatchGANs (spectral + instance norm); logits and an intermediate feature."""
    torch.manual_seed(0)
    D = init_weights(MultiScaleDiscriminator(3, 2, 4, 3))
    with torch.no_grad():
        outs = D(_uniform(torch.Generator().manual_seed(1), 2, 3, 16, 24))
    got = torch.cat([outs[0][-1][:, 0, -2:, -2:].flatten(), outs[1][-1][:, 0, -2:, -2:].flatten(),
                     outs[1][1][:, :2, -1, -1].flatten()])
    _close(got, DISCRIMINATOR, atol=1e-5)


def test_vae_encoder_and_semantic_generator_golden():
    """Semantic synthesis with the VAE: the encoder's (mu, logvar) and the generator started from the code mu."""
    torch.manual_seed(0)
    arch = make_arch("sis", ngf=4, levels=3, size=(16, 16), num_classes=3, vae=True, z_dim=8, enc_size=16)
    G, E = init_weights(build_generator(arch)), init_weights(build_encoder(arch))
    gen = torch.Generator().manual_seed(1)
    image = _uniform(gen, 2, 3, 16, 16)
    labels = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 16, 16), generator=gen), 3).movedim(-1, 1).float()
    with torch.no_grad():
        mu, logvar = E(image)
        out = G(labels, None, mu)
    _close(torch.cat([mu.flatten(), logvar.flatten()]), ENCODER, atol=1e-6)
    _close(out[:, :, -2:, -2:], SIS_GENERATOR, atol=1e-6)
