import pytest
import torch

from pixforge.core.runtime import autocast_dtype, resolve_device, seed_everything
from pixforge.export.errors import PixforgeError


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is absent")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_requested_but_absent_is_a_clear_error(spec):
    with pytest.raises(PixforgeError, match="no CUDA GPU is available"):
        resolve_device(spec)


def test_nonsense_device():
    with pytest.raises(PixforgeError, match="not a device"):
        resolve_device("tpu")


def test_autocast_dtype_rules():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, False) is None
    assert autocast_dtype(cpu, True) is None  # AMP on the CPU only when bf16 is named
    assert autocast_dtype(cpu, "bf16") is torch.bfloat16
    with pytest.raises(PixforgeError):
        autocast_dtype(cpu, "fp16")
    with pytest.raises(PixforgeError, match="use --amp alone"):
        autocast_dtype(cpu, "fp8")
    # the words a user types: `--amp true` / `--amp false` (Fire hands them over as strings), any case
    assert autocast_dtype(cpu, "true") is None and autocast_dtype(cpu, "False") is None
    assert autocast_dtype(cpu, "BF16") is torch.bfloat16


@pytest.mark.cuda
def test_autocast_dtype_on_gpu():
    dev = resolve_device("cuda")
    assert autocast_dtype(dev, True) in (torch.bfloat16, torch.float16)
    assert autocast_dtype(dev, "true") is autocast_dtype(dev, True) and autocast_dtype(dev, "false") is None


def test_seed_everything_repeats():
    seed_everything(5)
    a = torch.rand(4)
    seed_everything(5)
    assert torch.equal(a, torch.rand(4))
