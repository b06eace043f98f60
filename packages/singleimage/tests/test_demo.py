"""The demo end to end at its smallest settings, and its registration for `pixforge demo`."""

import json
from importlib.metadata import entry_points

from PIL import Image

from pixforge.singleimage.cli import SingleImage


def test_registered_for_the_umbrella():
    (ep,) = [ep for ep in entry_points(group="pixforge.tools") if ep.name == "singleimage"]
    assert ep.load() is SingleImage and callable(SingleImage().demo)


def test_demo_runs(tmp_path):
    report = SingleImage().demo(out=str(tmp_path / "demo"), steps=1, n=2)
    root = tmp_path / "demo"
    assert "PetsGAN / SinGAN training wall time" in report
    compared = json.loads((root / "compare" / "compare.json").read_text())
    assert set(compared["methods"]) == {"singan", "petsgan"} and compared["device"] == "cpu"
    for folder in ("wide-singan", "wide-petsgan", "onnx-run"):
        files = sorted(p for p in (root / folder).glob("*.png") if p.name != "grid.png")
        assert len(files) == 2 and all(Image.open(f).size == (120, 40) for f in files), folder
    assert (root / "model.onnx").is_file() and (root / "compare" / "compare.png").is_file()
