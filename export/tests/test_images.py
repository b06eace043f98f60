"""pixforge.export.images: read/write round trips, folder listing, grids and clear errors. No torch."""

import numpy as np
import pytest

from pixforge.export.errors import PixforgeError
from pixforge.export.images import list_images, make_grid, read_image, write_image


def noise(h=12, w=16, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def test_png_round_trip_is_exact(tmp_path):
    image = noise()
    path = write_image(tmp_path / "sub" / "a.png", image)
    np.testing.assert_array_equal(read_image(path), image)
    assert [p.name for p in path.parent.iterdir()] == ["a.png"]  # atomic: no temporary file left


def test_modes_and_jpeg(tmp_path):
    gray = noise(c=1)
    write_image(tmp_path / "g.png", gray)
    np.testing.assert_array_equal(read_image(tmp_path / "g.png", mode="GRAY"), gray)
    assert read_image(tmp_path / "g.png").shape == (12, 16, 3)
    rgba = noise(c=4)
    write_image(tmp_path / "a.png", rgba)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png", mode="RGBA"), rgba)
    smooth = np.broadcast_to(np.linspace(0, 255, 16, dtype=np.uint8)[None, :, None], (12, 16, 3)).copy()
    write_image(tmp_path / "s.jpg", smooth, quality=95)
    assert np.abs(read_image(tmp_path / "s.jpg").astype(int) - smooth).max() <= 8


def test_read_errors_name_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    truncated = tmp_path / "truncated.png"
    write_image(truncated, noise(64, 64))
    truncated.write_bytes(truncated.read_bytes()[:200])
    for path in (corrupt, truncated, tmp_path / "missing.png"):
        with pytest.raises(PixforgeError) as err:
            read_image(path)
        assert str(path) in str(err.value)
    with pytest.raises(ValueError, match="mode"):
        read_image(corrupt, mode="CMYK")


def test_a_float_image_with_nan_is_refused(tmp_path):
    from PIL import Image

    values = np.full((8, 8), 100.0, np.float32)
    Image.fromarray(values, mode="F").save(tmp_path / "ok.tif")
    assert read_image(tmp_path / "ok.tif").shape == (8, 8, 3)
    values[3, 4] = np.nan
    Image.fromarray(values, mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(PixforgeError, match="nan.tif holds NaN or infinite pixel values"):
        read_image(tmp_path / "nan.tif")


def test_write_errors(tmp_path):
    with pytest.raises(PixforgeError, match="unsupported image format"):
        write_image(tmp_path / "a.txt", noise())
    with pytest.raises(ValueError, match="uint8"):
        write_image(tmp_path / "a.png", noise().astype(np.float32))
    assert list(tmp_path.iterdir()) == []


def test_list_images(tmp_path):
    for rel in ("b.png", "a.jpg", "sub/c.PNG", "sub/deep/d.webp", ".hidden.png", ".cache/e.png", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    names = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert names == ["a.jpg", "b.png", "sub/c.PNG", "sub/deep/d.webp"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.jpg", "b.png"]
    assert list_images(tmp_path / "b.png") == [tmp_path / "b.png"]


def test_list_images_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    cases = {tmp_path / "empty": "holds no image files", tmp_path / "missing": "does not exist",
             tmp_path / "empty" / "readme.txt": "not an image file"}
    for path, reason in cases.items():
        with pytest.raises(PixforgeError, match=reason) as err:
            list_images(path)
        assert str(path) in str(err.value)


def test_make_grid_layout():
    images = np.stack([np.full((4, 3, 3), i * 10, np.uint8) for i in range(5)])
    grid = make_grid(images, nrow=3, pad=2, pad_value=255)
    assert grid.shape == (2 + 2 * (4 + 2), 2 + 3 * (3 + 2), 3)
    for i in range(5):
        r, c = divmod(i, 3)
        y, x = 2 + r * 6, 2 + c * 5
        assert (grid[y:y + 4, x:x + 3] == i * 10).all()
    assert (grid[:2] == 255).all() and (grid[8:, 12:] == 255).all()  # padding and the empty sixth cell
    assert make_grid(list(images[:4]), pad=0).shape == (8, 6, 3)  # default: square-ish, 2 x 2
    with pytest.raises(ValueError, match="N x H x W x C"):
        make_grid(images[0])
