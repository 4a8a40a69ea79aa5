import dataclasses
from pathlib import Path

import keras
import numpy as np
import pytest

from microrep.commands.embed import run_embed_stage
from microrep.config.stages import ViewConfig
from microrep.config import EmbedConfig, ModelConfig
from microrep.data import load_dataset
from microrep.embedding.archive import read_embeddings
from microrep.embedding.tiles import embed_images
from microrep.errors import DataError, OutputExistsError
from microrep.nn.tower import build_tower

from conftest import TINY_INPUT


@pytest.fixture(scope="module")
def tower():
    keras.utils.set_random_seed(0)
    return build_tower(ModelConfig(input_size=TINY_INPUT, embedding_dim=8, weights="none", vgg_blocks=2))


def test_embedding_is_the_mean_over_tiles(tower):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    whole = embed_images(tower, [image], view=2)
    tiles = np.stack([image[:32, :32], image[:32, 32:], image[32:, :32], image[32:, 32:]])[..., None]
    expected = tower.predict(tiles, verbose=0).mean(axis=0)
    np.testing.assert_allclose(whole[0], expected, rtol=1e-5, atol=1e-6)


def embed_config(data_config, out, **overrides):
    values = dict(data=data_config, pretrained=True, out=str(out),
                  image_view=ViewConfig(view="tiles", grid=2), batch_size=8,
                  part_size=5, model=ModelConfig(input_size=TINY_INPUT, weights="none",
                                                 vgg_blocks=1, feature_layers=""))
    values.update(overrides)
    return EmbedConfig(**values)


def test_a_data_dir_given_relative_to_the_working_folder_is_embedded(tiny_data_config, tmp_path,
                                                                       monkeypatch):
    monkeypatch.chdir(Path(tiny_data_config.data_dir).parent)  # as a notebook beside its data
    relative = dataclasses.replace(tiny_data_config, data_dir=Path(tiny_data_config.data_dir).name)
    result = run_embed_stage(embed_config(relative, tmp_path / "out"), log=lambda _: None)
    vectors, table = read_embeddings(tmp_path / "out")
    assert result["bad"] == 0 and len(vectors) == len(load_dataset(tiny_data_config))


def test_shards_of_parts_stream_to_disk_and_equal_one_pass(tiny_data_config, tmp_path):
    one = run_embed_stage(embed_config(tiny_data_config, tmp_path / "one"), log=lambda _: None)
    assert one["status"].complete and one["status"].parts > 2
    for shard in range(3):
        result = run_embed_stage(embed_config(tiny_data_config, tmp_path / "sharded", num_shards=3,
                                              shard_index=shard), log=lambda _: None)
        assert result["embedded"] == list(range(shard, one["status"].parts, 3))
    whole, table = read_embeddings(tmp_path / "one")
    joined, joined_table = read_embeddings(tmp_path / "sharded")
    np.testing.assert_array_equal(joined, whole)
    assert list(joined_table["path"]) == list(table["path"])
    dataset = load_dataset(tiny_data_config, validate=False)
    assert sorted(table["path"]) == sorted(str(dataset.image_path(i)) for i in range(len(dataset)))


def test_a_missing_part_is_named_and_the_same_command_finishes_it(tiny_data_config, tmp_path):
    config = embed_config(tiny_data_config, tmp_path, parts="1")
    assert run_embed_stage(config, log=lambda _: None)["embedded"] == [1]
    with pytest.raises(DataError, match="missing: 0,2"):
        read_embeddings(tmp_path)
    again = run_embed_stage(embed_config(tiny_data_config, tmp_path), log=lambda _: None)
    assert again["skipped"] == [1] and again["status"].complete


def test_parts_of_another_model_are_refused(tiny_data_config, tmp_path):
    run_embed_stage(embed_config(tiny_data_config, tmp_path, parts="0"), log=lambda _: None)
    other = embed_config(tiny_data_config, tmp_path)
    other.model.vgg_blocks = 2
    with pytest.raises(OutputExistsError, match="another model and settings"):
        run_embed_stage(other, log=lambda _: None)


def test_threaded_reading_matches_reading_in_order(tower, tiny_data_config):
    dataset = load_dataset(tiny_data_config, validate=False)
    from microrep.embedding.tiles import LazyImages, iter_tile_batches

    images = LazyImages(dataset, range(len(dataset)))
    serial = list(iter_tile_batches(images, TINY_INPUT, 2, batch_size=8, workers=0))
    threaded = list(iter_tile_batches(images, TINY_INPUT, 2, batch_size=8, workers=3, lookahead=1))
    assert [indices for indices, _ in threaded] == [indices for indices, _ in serial]
    for (_, expected), (_, got) in zip(serial, threaded):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(embed_images(tower, images, view=2, batch_size=8, workers=3),
                               embed_images(tower, images, view=2, batch_size=8, workers=0),
                               rtol=1e-5, atol=1e-6)


def test_a_corrupt_image_is_recorded_bad_and_the_rest_embedded(tiny_data_config, tmp_path):
    import threading

    good = run_embed_stage(embed_config(tiny_data_config, tmp_path / "good", read_workers=3),
                           log=lambda _: None)
    dataset = load_dataset(tiny_data_config, validate=False)
    broken = dataset.image_path(len(dataset) - 2)
    original = broken.read_bytes()
    broken.write_bytes(original[:40])
    try:
        result = run_embed_stage(embed_config(tiny_data_config, tmp_path / "bad", read_workers=3),
                                 log=lambda _: None)
    finally:
        broken.write_bytes(original)
    assert result["bad"] == 1 and result["status"].complete and good["bad"] == 0
    embeddings, table = read_embeddings(tmp_path / "bad")
    whole, whole_table = read_embeddings(tmp_path / "good")
    kept = whole_table["path"] != str(broken)
    np.testing.assert_array_equal(embeddings, whole[kept.to_numpy()])
    from microrep.embedding.parts import PartsArchive

    bad = PartsArchive(tmp_path / "bad").bad
    assert list(bad["path"]) == [str(broken)] and bad["reason"].iloc[0]
    assert not [t for t in threading.enumerate() if t.name.startswith("microrep-read")]


def test_status_names_missing_and_altered_parts(tiny_data_config, tmp_path, capsys):
    from microrep.cli import main
    from microrep.embedding.parts import part_files

    run_embed_stage(embed_config(tiny_data_config, tmp_path), log=lambda _: None)
    assert main(["status", str(tmp_path), "--verify"]) == 0
    npy, _, done = part_files(tmp_path, 1)
    data = bytearray(npy.read_bytes())
    data[-1] ^= 0xFF  # one bit of one embedding changed on disk
    npy.write_bytes(bytes(data))
    part_files(tmp_path, 2)[2].unlink()
    capsys.readouterr()
    assert main(["status", str(tmp_path)]) == 3  # without --verify: only the missing part
    out = capsys.readouterr().out
    assert "missing: 2" in out and "part 1" not in out
    assert main(["status", str(tmp_path), "--verify"]) == 3
    assert "part 1: damaged: part-000001.npy differs from the checksum" in capsys.readouterr().out


@pytest.mark.slow
def test_max_pooling_end_to_end(tiny_data_config, tmp_path):
    """--pooling max through embed --pretrained (each vector the tile mean of the maps' channel
    maxima), then trained, embedded and evaluated from the command line."""
    from microrep.cli import main
    from microrep.data.images import grid_tiles
    from microrep.training.embedder import embedding_tower

    source = ["--data", "synthetic", "--data-dir", tiny_data_config.data_dir,
              "--synthetic-samples-per-class", "2", "--synthetic-images-per-sample", "3",
              "--synthetic-image-size", "64", "--synthetic-seed", "1"]
    model = ["--weights", "none", "--input-size", str(TINY_INPUT), "--vgg-blocks", "1",
             "--feature-layers", "", "--pooling", "max", "--no-mixed-precision"]
    assert main(["embed", "--pretrained", *source, *model, "--view", "tiles", "--grid", "2",
                 "--out", str(tmp_path / "emb")]) == 0
    vectors, table = read_embeddings(tmp_path / "emb")
    config = embed_config(tiny_data_config, tmp_path, model=ModelConfig(
        input_size=TINY_INPUT, weights="none", vgg_blocks=1, feature_layers="", pooling="max"))
    tower = embedding_tower(config)
    maps = keras.Model(tower.input, tower.get_layer("pool").input)
    dataset = load_dataset(tiny_data_config)
    for row in (0, len(table) - 1):
        tiles = grid_tiles(dataset.read(row), TINY_INPUT, 2)[..., None]
        expected = np.asarray(maps.predict(tiles, verbose=0)).max(axis=(1, 2)).mean(axis=0)
        np.testing.assert_allclose(vectors[row], expected, rtol=1e-5, atol=1e-6)
    assert main(["train", *source, *model, "--embedding-dim", "8", "--epochs", "1",
                 "--pairs-per-epoch", "8", "--batch-size", "4", "--feature-bank", "2",
                 "--out", str(tmp_path / "run")]) == 0
    assert main(["embed", *source, "--model-path", str(tmp_path / "run"), "--grid", "2",
                 "--out", str(tmp_path / "learned")]) == 0
    assert main(["evaluate", "--embeddings", str(tmp_path / "learned"), "--folds", "2",
                 "--out", str(tmp_path / "eval")]) == 0
