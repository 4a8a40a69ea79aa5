import numpy as np
import pytest
import tifffile
from PIL import Image

from microrep.data.images import grid_tiles, read_image, tile_origins, to_uint8_gray
from microrep.errors import DataError


def test_reads_16bit_tiff_and_stretches_to_uint8(tmp_path):
    array = np.linspace(1000, 40000, 64 * 48).reshape(48, 64).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", array)
    image = read_image(tmp_path / "a.tif")
    assert image.dtype == np.uint8 and image.shape == (48, 64)
    assert image.min() <= 1 and image.max() >= 254


def test_reads_rgb_and_palette_png_as_gray(tmp_path):
    rgb = np.zeros((20, 24, 3), dtype=np.uint8)
    rgb[..., 0] = 90
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    assert read_image(tmp_path / "rgb.png").shape == (20, 24)
    assert read_image(tmp_path / "rgb.png")[0, 0] == 30
    assert read_image(tmp_path / "pal.png").shape == (20, 24)


def test_corrupt_and_missing_images_name_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="broken.png"):
        read_image(bad)
    with pytest.raises(DataError, match="not found"):
        read_image(tmp_path / "missing.tif")


def test_constant_float_image_does_not_divide_by_zero():
    assert (to_uint8_gray(np.full((4, 4), 3.5)) == 0).all()


def test_grid_tiles_cover_the_image_evenly():
    image = np.arange(100 * 80, dtype=np.int64).reshape(80, 100).astype(np.uint8)
    tiles = grid_tiles(image, 32, 3)
    assert tiles.shape == (9, 32, 32)
    assert tile_origins(100, 32, 3) == [0, 34, 68]
    np.testing.assert_array_equal(tiles[-1], image[48:80, 68:100])
    assert grid_tiles(np.zeros((20, 20), np.uint8), 32, 2).shape == (4, 32, 32)
