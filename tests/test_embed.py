import keras
import numpy as np
import pytest

from microrep.config import ModelConfig
from microrep.data import load_dataset
from microrep.embedding.archive import embed_to_disk, read_embeddings
from microrep.embedding.tiles import embed_images
from microrep.errors import DataError
from microrep.nn.tower import build_tower

from conftest import TINY_INPUT


@pytest.fixture(scope="module")
def tower():
    keras.utils.set_random_seed(0)
    return build_tower(ModelConfig(input_size=TINY_INPUT, embedding_dim=8, weights="none", vgg_blocks=2))


def test_embedding_is_the_mean_over_tiles(tower):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    whole = embed_images(tower, [image], grid=2)
    tiles = np.stack([image[:32, :32], image[:32, 32:], image[32:, :32], image[32:, 32:]])[..., None]
    expected = tower.predict(tiles, verbose=0).mean(axis=0)
    np.testing.assert_allclose(whole[0], expected, rtol=1e-5, atol=1e-6)


def test_shards_stream_to_disk_and_join_to_the_whole(tower, tiny_data_config, tmp_path):
    dataset = load_dataset(tiny_data_config)
    expected = embed_images(tower, dataset.images(), grid=2, batch_size=8)
    fresh = load_dataset(tiny_data_config, validate=False)
    for shard in range(3):
        embed_to_disk(tower, fresh, tmp_path, grid=2, batch_size=8, shard_index=shard,
                      num_shards=3, progress=False)
    assert fresh._cache == {}, "streaming embedding must not keep images in memory"
    embeddings, table = read_embeddings(tmp_path)
    order = np.concatenate([np.arange(s, len(dataset), 3) for s in range(3)])
    np.testing.assert_allclose(embeddings, expected[order], rtol=1e-5, atol=1e-6)
    assert list(table["path"]) == list(dataset.table["path"].iloc[order])


def test_a_missing_shard_is_named(tower, tiny_data_config, tmp_path):
    dataset = load_dataset(tiny_data_config)
    embed_to_disk(tower, dataset, tmp_path, grid=1, shard_index=1, num_shards=2, progress=False)
    with pytest.raises(DataError, match="shard\\(s\\) 0 of 2"):
        read_embeddings(tmp_path)


def test_threaded_reading_matches_reading_in_order(tower, tiny_data_config):
    dataset = load_dataset(tiny_data_config, validate=False)
    from microrep.embedding.tiles import LazyImages, iter_tile_batches

    images = LazyImages(dataset, range(len(dataset)))
    serial = list(iter_tile_batches(images, TINY_INPUT, 2, batch_size=8, workers=0))
    threaded = list(iter_tile_batches(images, TINY_INPUT, 2, batch_size=8, workers=3, lookahead=1))
    assert [indices for indices, _ in threaded] == [indices for indices, _ in serial]
    for (_, expected), (_, got) in zip(serial, threaded):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(embed_images(tower, images, grid=2, batch_size=8, workers=3),
                               embed_images(tower, images, grid=2, batch_size=8, workers=0),
                               rtol=1e-5, atol=1e-6)


def test_a_corrupt_image_read_by_a_thread_stops_embedding_with_its_name(tower, tiny_data_config, tmp_path):
    import threading

    dataset = load_dataset(tiny_data_config, validate=False)
    broken = dataset.image_path(len(dataset) - 2)
    original = broken.read_bytes()
    broken.write_bytes(original[:40])
    try:
        with pytest.raises(DataError, match=broken.name):
            embed_to_disk(tower, dataset, tmp_path, grid=2, batch_size=8, progress=False, workers=3)
    finally:
        broken.write_bytes(original)
    assert list(tmp_path.iterdir()) == [], "no embeddings file, whole or partial, may be left"
    assert not [t for t in threading.enumerate() if t.name.startswith("microrep-read")]
