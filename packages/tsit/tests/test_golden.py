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
    -1.6963033e-02, -1.6851060e-02, -9.2497971e-03, -1.6444882e-02, -1.5567086e-02, -8.6227953e-03,
    -1.7676107e-03, -2.2743046e-03, -3.0385768e-03, -5.0682446e-04, -1.9438518e-03, 1.5714179e-03,
    3.0424024e-03, 2.9904846e-04, 1.3776402e-03, -7.7788840e-04, -5.7005003e-04, -1.1911321e-03,
    8.9333458e-03, 1.1512562e-02, 6.3514928e-03, 9.5290411e-03, 8.6382851e-03, 3.4279299e-03,
    3.3841452e-03, 2.8893363e-03, -7.2342798e-04, -7.6583023e-03, -1.0078570e-02, -4.5066900e-03,
    -7.9932474e-03, -7.6978202e-03, -4.6428791e-03, 1.6072566e-03, 6.5854273e-04, -2.5434094e-03,
    -2.6333511e-03, -3.9678877e-03, 4.4607357e-04, 1.8784640e-04, -4.1046464e-03, -6.9817319e-04,
    -7.0212357e-04, 9.6706301e-04, -8.7494141e-04, -7.1285027e-03, 1.8464980e-03, 4.6064132e-03,
    -2.2841625e-04, -1.7097114e-04, 3.1137783e-03, 2.8441660e-04, -6.9749582e-04, 1.2868877e-03,
]
DISCRIMINATOR = [
    -6.4869281e-03, 5.2619134e-03, -2.1885574e-02, -3.4560896e-03, 1.7905500e-02, 1.3625644e-02,
    -2.5092259e-03, 8.1123160e-03, 2.7321759e-03, -2.3687245e-02, -1.6096247e-02, -1.6297387e-02,
    -2.7201984e-03, 1.1396181e-02, -1.4966226e-02, 1.2489692e-03, -2.9078720e-02, -6.0127713e-02,
    4.6666002e-01, -2.3744761e-03,
]
ENCODER = [
    -8.1550516e-04, -1.4412440e-02, 3.2607433e-03, -1.1283075e-02, -2.1653827e-02, 3.9232232e-02,
    -4.8988448e-03, -3.3510972e-02, -5.3729508e-03, -2.1100074e-02, 1.6615156e-02, -1.5596500e-02,
    8.6887535e-03, 5.0106544e-02, -1.9228742e-02, -1.3930148e-02, 2.3218133e-03, 1.4736019e-03,
    1.0502618e-03, -1.9967115e-02, -2.6755732e-02, -2.2139031e-02, 3.1105678e-03, 1.6106121e-02,
    -2.0963861e-02, -3.2217730e-02, 1.4579927e-03, -1.8183690e-02, 4.6833334e-03, -2.7138241e-02,
    2.1703878e-02, 1.6065497e-02,
]
SIS_GENERATOR = [
    2.8238313e-03, -3.0722891e-05, 2.5328707e-03, 9.9729176e-04, -5.4945308e-03, 3.0162479e-04,
    6.2760632e-06, 2.2576686e-03, 8.2194537e-04, 1.1137880e-03, -1.5636362e-03, -6.5776188e-04,
    1.4731826e-02, 7.7812597e-03, 1.0577092e-03, 4.4393507e-04, 1.5770439e-02, 1.1529815e-02,
    1.1546071e-02, 1.0156602e-02, -1.5548299e-02, -1.2319651e-02, -7.3302980e-03, -6.1770584e-03,
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
