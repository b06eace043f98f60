"""The scores of `metrics` against their formulas: pixel diversity and SIFID as SinGAN's official
SIFID/sifid_score.py computes it (dims 192; numpy covariance and scipy's sqrtm)."""

import numpy as np
import pytest
import torch
from scipy import linalg

from pixforge.core.nets.inception import InceptionV3
from pixforge.export.errors import PixforgeError
from pixforge.singleimage.metrics import check_sifid_size, diversity, sifid, sifid_network


def test_diversity_against_its_formula():
    levels = torch.tensor([0.0, 0.25, 1.0])  # three flat images in [0, 1]
    samples = (levels * 2 - 1).view(3, 1, 1, 1).expand(3, 3, 8, 8)
    real = -torch.ones(1, 3, 8, 8)
    real[..., :4] = 1.0  # half black, half white: std 0.5 in [0, 1]
    scores = diversity(samples, real)
    assert scores["diversity_pixel_std"] == pytest.approx(float(np.std([0, 0.25, 1.0])) / 0.5, rel=1e-6)
    assert scores["diversity_pairwise_l1"] == pytest.approx((0.25 + 1.0 + 0.75) / 3, rel=1e-6)


def _official_sifid(net: InceptionV3, real: torch.Tensor, fake: torch.Tensor) -> float:
    """SinGAN's SIFID/inception.py blocks 0-1 (no max-pool after Conv2d_4a) and sifid_score.py's statistics."""
    block = torch.nn.Sequential(net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3,
                                torch.nn.MaxPool2d(kernel_size=3, stride=2), net.Conv2d_3b_1x1, net.Conv2d_4a_3x3)

    def stats(image):
        with torch.no_grad():
            pred = block(image[None]).numpy()
        act = pred.transpose(0, 2, 3, 1).reshape(pred.shape[2] * pred.shape[3], -1).astype(np.float64)
        return act.mean(axis=0), np.cov(act, rowvar=False)

    (mu1, s1), (mu2, s2) = stats(real), stats(fake)
    covmean = linalg.sqrtm(s1.dot(s2)).real
    return float((mu1 - mu2).dot(mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # channels that ReLU zeroes: singular, as official
def test_sifid_is_the_official_definition():
    torch.manual_seed(0)
    net = InceptionV3("torchvision").eval()
    for m in net.modules():  # BatchNorm statistics other than 0 / 1, as trained weights have
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    real = torch.rand(1, 3, 80, 96) * 2 - 1  # 16 x 20 positions: more than the 192 channels, so sqrtm is well posed
    fakes = torch.stack([real[0].flip(-1), torch.rand(3, 80, 96) * 2 - 1])
    expected = np.mean([_official_sifid(net, real[0], f) for f in fakes])
    assert sifid(fakes, real, net) == pytest.approx(expected, rel=1e-4)
    assert sifid(real, real, net) == pytest.approx(0.0, abs=1e-4)


def test_sifid_network_reads_both_weight_files(tmp_path):
    for variant in ("torchvision", "fid"):
        path = tmp_path / f"{variant}.pth"
        torch.save(InceptionV3(variant).state_dict(), path)
        assert sifid_network(str(path)).variant == variant
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(PixforgeError, match="other.pth do not fit InceptionV3"):
        sifid_network(str(tmp_path / "other.pth"))


@pytest.mark.parametrize("size, ok", [((19, 23), True), ((23, 19), True), ((18, 40), False), ((22, 22), False)])
def test_sifid_size_minimum(size, ok):
    net = InceptionV3("torchvision").eval()
    if ok:
        check_sifid_size(size)
        assert sifid(torch.zeros(2, 3, *size), torch.rand(1, 3, *size), net) >= -1e-6
    else:
        with pytest.raises(PixforgeError, match="too small for SIFID"):
            check_sifid_size(size)
