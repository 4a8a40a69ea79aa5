import keras
import numpy as np
import pytest

from microrep.config import ModelConfig
from microrep.data import load_dataset
from microrep.embed import embed_images, embed_to_disk, read_embeddings
from microrep.errors import DataError
from microrep.model import build_tower

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
