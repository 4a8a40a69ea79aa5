"""Decode micrographs into 2-D uint8 grayscale arrays, and cut them into tiles.

Why one reader: SEM micrographs arrive as 8- or 16-bit TIFF, PNG or JPEG, gray
or RGB(A). Everything downstream (pairs, embedding, baselines) works on one
representation, uint8 gray, so the conversion and its error messages live here.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from microrep.errors import DataError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
#: Refuse images above this many pixels before decoding them (decompression bombs).
MAX_PIXELS = 150_000_000
#: Images smaller than this on either side carry no usable microstructure.
MIN_SIDE = 16


def to_uint8_gray(array):
    """Convert a decoded array (gray, RGB, RGBA; any numeric dtype) to uint8 gray."""
    array = np.asarray(array)
    if array.ndim == 3:
        channels = array.shape[-1]
        if channels not in (1, 3, 4):
            raise ValueError(f"unsupported channel count {channels}")
        if channels == 1:
            array = array[..., 0]
        elif array.dtype == np.uint8:
            array = (array[..., :3].astype(np.float32).mean(-1) + 0.5).astype(np.uint8)
        else:
            array = array[..., :3].astype(np.float64).mean(-1)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    array = array.astype(np.float64)
    finite = np.isfinite(array)
    if not finite.any():
        raise ValueError("image has no finite pixel values")
    low, high = np.percentile(array[finite], [0.1, 99.9])
    if high <= low:
        high = low + 1.0
    scaled = (np.where(finite, array, low) - low) / (high - low)
    return (np.clip(scaled, 0, 1) * 255 + 0.5).astype(np.uint8)


def read_image(path):
    """Read one micrograph as a 2-D uint8 array; DataError names the file if it fails."""
    path = _existing_file(path)
    try:
        _refuse_empty(path)
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tiff:  # a multi-page TIFF: its first page
                page = tiff.pages[0]
                _check_pixels(_tiff_shape(page))
                array = page.asarray()
                if page.samplesperpixel > 1 and page.planarconfig == 2:  # planar RGB: (3, H, W)
                    array = np.moveaxis(array, 0, -1)
        else:
            with Image.open(path) as image:
                _check_pixels((image.height, image.width))
                image = ImageOps.exif_transpose(image)  # as viewers show it (camera JPEGs)
                if image.mode in ("P", "PA", "LA", "CMYK", "YCbCr"):
                    image = image.convert("RGB")
                array = np.asarray(image)
        gray = to_uint8_gray(array)
    except (OSError, ValueError, IndexError, UnidentifiedImageError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as error:
        raise DataError(f"cannot read image {path}: {error or type(error).__name__}") from None
    except Exception as error:  # decoders raise many kinds on hostile files
        raise DataError(f"cannot read image {path}: {type(error).__name__}: {error}") from None
    if min(gray.shape) < MIN_SIDE:
        raise DataError(f"image {path} is only {gray.shape[1]}x{gray.shape[0]} pixels "
                        f"(at least {MIN_SIDE} on each side are needed)")
    return gray


def check_header(path):
    """DataError now for a file that cannot be a usable image, from its header alone.

    Cheap (no pixel is decoded), so a command can check every image of an archive
    before its long work: missing files, folders, empty files, unknown formats,
    decompression bombs and images too small to use. A file whose pixels are
    damaged past its header is still only found when it is decoded.
    """
    path = _existing_file(path)
    try:
        _refuse_empty(path)
        shape = header_shape(path)
        _check_pixels(shape)
    except Exception as error:  # readers raise many kinds on hostile files
        raise DataError(f"cannot read image {path}: {error or type(error).__name__}") from None
    if min(shape[:2]) < MIN_SIDE:
        raise DataError(f"image {path} is only {shape[1]}x{shape[0]} pixels "
                        f"(at least {MIN_SIDE} on each side are needed)")


def header_shape(path):
    """(height, width) of an image file from its header, no pixel decoded: what a cost line
    counts before the work. Raises whatever the reader raises on a file it cannot read."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tiff:
            return tuple(_tiff_shape(tiff.pages[0])[:2])
    with Image.open(path) as image:
        return image.height, image.width


def _existing_file(path):
    """`path` as a Path, or DataError saying it is a folder or missing."""
    path = Path(path)
    if not path.is_file():
        kind = "a folder, not an image" if path.is_dir() else "not found (or a broken link)"
        raise DataError(f"image {path} is {kind}")
    return path


def _refuse_empty(path):
    if path.stat().st_size == 0:
        raise ValueError("the file is empty")


def _tiff_shape(page):
    """(rows, columns) of a TIFF page, whether its samples are interleaved or planar."""
    return page.shape[-3:-1] if page.samplesperpixel > 1 and page.planarconfig == 1 else page.shape[-2:]


def _check_pixels(shape):
    pixels = int(np.prod(shape[:2]))
    if pixels > MAX_PIXELS:
        raise ValueError(f"{shape[1]}x{shape[0]} pixels exceeds the {MAX_PIXELS:,}-pixel limit "
                         "(a decompression bomb, or a mosaic to split first)")


def tile_origins(length, tile, count):
    """`count` evenly spaced start offsets of tiles of size `tile` along `length`."""
    if count <= 1 or length <= tile:
        return [max((length - tile) // 2, 0)] * max(count, 1)
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def grid_tiles(image, tile, grid):
    """A `grid` x `grid` array of tiles (tile x tile) covering the image evenly.

    Images smaller than a tile are padded by reflection, so every image gives the
    same number of tiles.
    """
    height, width = image.shape
    if height < tile or width < tile:
        pad_y, pad_x = max(tile - height, 0), max(tile - width, 0)
        image = np.pad(image, ((0, pad_y), (0, pad_x)), mode="reflect")
        height, width = image.shape
    tiles = [image[y:y + tile, x:x + tile]
             for y in tile_origins(height, tile, grid)
             for x in tile_origins(width, tile, grid)]
    return np.stack(tiles)
