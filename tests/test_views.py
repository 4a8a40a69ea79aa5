"""Views of a micrograph (data.views): which pieces the base sees, and that a whole-frame view
sees every pixel of frames of any shape."""

import keras
import numpy as np
import pytest

from microrep.config import ModelConfig
from microrep.config.fields import parse_scales, scales_text
from microrep.data.views import View, centre_panels, rescaled
from microrep.embedding.features import (compute_frozen_features, crop_bank_plan, image_keys,
                                         piece_features)
from microrep.pairs.samplers import crops_from_plan
from microrep.errors import ConfigError
from microrep.nn.tower import build_feature_tower


def test_scales_are_checked_and_written_one_way():
    assert parse_scales("1, 0.71,0.5") == (1.0, 0.71, 0.5)
    assert scales_text([1, 0.5]) == "1,0.5"
    for bad in ("", "a,b", "0", "1,-1", "5"):
        with pytest.raises(ConfigError):
            parse_scales(bad)
    with pytest.raises(ConfigError, match="view must be one of"):
        View("everything")


def test_centre_panels_are_decost_et_al_s_four_around_the_centre():
    image = np.arange(481 * 645, dtype=np.int64).reshape(481, 645) % 251
    panels = centre_panels(image.astype(np.uint8), 224)
    top, left = 481 // 2 - 224, 645 // 2 - 224
    assert panels.shape == (4, 224, 224)
    np.testing.assert_array_equal(panels[0], image[top:top + 224, left:left + 224])
    np.testing.assert_array_equal(panels[3], image[top + 224:top + 448, left + 224:left + 448])
    small = centre_panels(np.zeros((100, 300), np.uint8), 224)  # reflected out, never fails
    assert small.shape == (4, 224, 224)


def test_frame_pieces_are_the_image_at_each_scale():
    image = np.random.default_rng(0).integers(0, 255, (481, 645), dtype=np.uint8)
    pieces = View("frame", scales=(1.0, 0.5)).pieces(image)
    assert [p.shape for p in pieces] == [(481, 645), (240, 322)]
    assert pieces[0] is image
    assert min(rescaled(np.zeros((40, 400), np.uint8), 0.1).shape) == 32  # never below VGG16's floor
    assert View("tiles", 224, 3).key == "3"  # caches written before views stay valid


#: The frame sizes of the issue: small, one tile, UHCSDB, larger instruments, a long strip.
FRAMES = [(100, 100), (224, 224), (481, 645), (300, 3000),
          pytest.param((700, 1024), marks=pytest.mark.slow),
          pytest.param((1536, 2048), marks=pytest.mark.slow)]


@pytest.mark.parametrize("shape", FRAMES)
def test_the_whole_frame_view_sees_every_pixel(shape):
    """Changing any one region (a 16 x 16 block in each corner, edge and the middle) changes
    the frame view's features, at every frame size, also where a scaled frame is larger than
    the window and is seen as several windows (a 256-px window here, 1024 by default)."""
    keras.utils.set_random_seed(0)
    config = ModelConfig(input_size=32, vgg_blocks=2, weights="none", feature_layers="",
                         mixed_precision=False)
    tower = build_feature_tower(config, any_size=True)
    view = View("frame", 32, scales=(1.0, 0.5), window=256)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, shape, dtype=np.uint8)
    before = piece_features(tower, image, view).mean(axis=0)
    height, width = shape
    for y in (0, (height - 16) // 2, height - 16):
        for x in (0, (width - 16) // 2, width - 16):
            changed = image.copy()
            changed[y:y + 16, x:x + 16] = 255 - changed[y:y + 16, x:x + 16]
            after = piece_features(tower, changed, view).mean(axis=0)
            assert not np.allclose(after, before, rtol=0, atol=1e-7), (shape, y, x)


@pytest.mark.parametrize("shape", [(100, 100), (481, 645), (700, 1024), (1536, 2048),
                                   (300, 3000), (8192, 8192)])
def test_windows_cover_every_pixel_and_bound_what_the_base_is_shown(shape):
    """Memory stays bounded: no window is larger than the view's window, whatever the frame,
    the windows of each scale cover every pixel, and the pixels shown grow linearly with
    the frame's (so does the time; benchmarks/large_image_memory.py measures both)."""
    view = View("frame", 224, scales=(1.0, 0.71, 0.5), window=1024)
    image = np.zeros(shape, np.uint8)
    shown = 0
    for piece in view.pieces(image):
        seen = np.zeros(piece.shape, bool)
        windows = view.windows(piece)
        for window in windows:
            assert max(window.shape) <= view.window
            # a window is a view of the piece: mark the pixels it holds
            top = (window.__array_interface__["data"][0] - piece.__array_interface__["data"][0])
            y, x = divmod(top, piece.strides[0])
            seen[y:y + window.shape[0], x:x + window.shape[1]] = True
            shown += window.size
        assert seen.all(), (shape, piece.shape)
    assert shown <= 4 * view.pixels(shape)  # overlaps add at most a constant factor
    assert view.pixels(shape) <= 2 * image.size


def test_a_tiles_view_of_a_large_frame_misses_pixels():
    """Why the frame view exists: a 3 x 3 grid of 32-px tiles leaves most of a 300-px frame
    unseen (the same check the frame view passes)."""
    keras.utils.set_random_seed(0)
    config = ModelConfig(input_size=32, vgg_blocks=2, weights="none", feature_layers="",
                         mixed_precision=False)
    tower = build_feature_tower(config)
    image = np.random.default_rng(1).integers(0, 255, (300, 300), dtype=np.uint8)
    view = View("tiles", 32, 3)
    before = piece_features(tower, image, view)
    changed = image.copy()
    changed[60:80, 60:80] = 0  # between the grid's tiles
    np.testing.assert_array_equal(piece_features(tower, changed, view), before)


def test_a_frame_view_bank_draws_crops_at_each_scale(tmp_path):
    """With a frame view, bank crop j comes from scale j mod scales (the head learns the pixel
    sizes it will embed); its rows still equal the features of those crops, cached or not."""
    keras.utils.set_random_seed(0)
    config = ModelConfig(input_size=32, vgg_blocks=2, weights="none", feature_layers="",
                         mixed_precision=False)
    tower = build_feature_tower(config, any_size=True)
    images = [np.random.default_rng(i).integers(0, 255, (80, 96), dtype=np.uint8) for i in range(2)]
    view = View("frame", 32, scales=(1.0, 0.5))
    first = compute_frozen_features(tower, images, view, 4, cache_dir=tmp_path)
    assert first.tiles.shape == (2, 2, 128) and first.bank.shape == (8, 128)
    np.testing.assert_allclose(first.tiles[1], piece_features(tower, images[1], view), atol=1e-6)
    again = compute_frozen_features(tower, images, view, 4, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.bank, first.bank)
    key = image_keys(images[:1])
    for scale, rows in ((1.0, [0, 2]), (0.5, [1, 3])):
        scaled = rescaled(images[0], scale)
        plan = crop_bank_plan([scaled.shape], 32, 2, seed=rows[0], keys=key)
        crops = crops_from_plan([scaled], plan, 32)
        np.testing.assert_allclose(first.bank[rows], tower.predict_on_batch(crops), atol=1e-5)


def test_a_bank_of_zero_crops_trains_on_the_view_s_own_pieces(tmp_path):
    """feature_bank 0: the bank is each image's view pieces (here its scales), computed once and
    stored where embedding looks for them (one cache entry per image)."""
    keras.utils.set_random_seed(0)
    config = ModelConfig(input_size=32, vgg_blocks=2, weights="none", feature_layers="",
                         mixed_precision=False)
    tower = build_feature_tower(config, any_size=True)
    images = [np.random.default_rng(i).integers(0, 255, (80, 96), dtype=np.uint8) for i in range(3)]
    view = View("frame", 32, scales=(1.0, 0.71, 0.5))
    features = compute_frozen_features(tower, images, view, 0, cache_dir=tmp_path)
    assert features.per_image == 3 and features.bank.shape == (9, 128)
    np.testing.assert_array_equal(features.bank[features.bank_rows([2]).ravel()], features.tiles[2])
    assert len(list(tmp_path.rglob("*.npz"))) == 3
    from microrep.embedding.features import tile_features

    again = tile_features(tower, image_keys(images), lambda i: None, view, tmp_path)
    np.testing.assert_array_equal(again, features.tiles)  # read, never recomputed


def test_the_cost_line_counts_the_pixels_of_frames_of_different_sizes(tmp_path):
    """Before long work, embedding says how many megapixels the base will be shown (from the
    files' headers, nothing decoded ahead), and its estimate goes by pixels, not images."""
    from PIL import Image

    from microrep.config import DataConfig
    from microrep.data import load_dataset
    from microrep.embedding.tiles import LazyImages, iter_embeddings

    rng = np.random.default_rng(0)
    for name, shape in (("small", (64, 80)), ("large", (400, 600)), ("wide", (100, 900))):
        path = tmp_path / name[0] / f"{name}.png"
        path.parent.mkdir()
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(path)
    dataset = load_dataset(DataConfig(images=str(tmp_path)), min_per_class=1)
    images = LazyImages(dataset, range(len(dataset)))
    keras.utils.set_random_seed(0)
    config = ModelConfig(input_size=32, vgg_blocks=1, weights="none", feature_layers="",
                         mixed_precision=False)
    tower = build_feature_tower(config, any_size=True)
    view = View("frame", 32, scales=(1.0, 0.5))
    lines = []
    vectors = [v for _, v in iter_embeddings(tower, images, view, log=lines.append, workers=0)]
    expected = sum(view.pixels(shape) for shape in ((64, 80), (400, 600), (100, 900)))
    assert len(vectors) == 3 and len(lines) == 1
    assert f"{expected / 1e6:,.1f} megapixels shown to the network" in lines[0], lines[0]
    assert "on this machine" in lines[0]
