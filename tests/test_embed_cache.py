"""`embed` of a frozen-base run reads the VGG16 tile features its training cached and runs
only the head; its embeddings equal the assembled tower's."""

import shutil

import numpy as np
import pytest

from microrep.cli import main
from microrep.embedding.archive import read_embeddings
from microrep.training import train

from microrep.training.frozen import run_view

from test_train_frozen import recipe_config


def test_a_frozen_run_embeds_from_its_feature_cache(tmp_path, tiny_data_config, tiny_dataset, capsys):
    import keras

    cache = tmp_path / "cache"
    config = recipe_config(tmp_path / "run", tiny_data_config, cache, epochs=2)
    keras.utils.set_random_seed(5)
    train(config, tiny_dataset, verbose=0)
    trained_entries = sorted(cache.glob("*/*.npz"))
    source = ["--data", "synthetic", "--data-dir", tiny_data_config.data_dir,
              "--samples-per-class", "2", "--images-per-sample", "3", "--image-size", "64",
              "--synthetic-seed", "1"]
    assert main(["embed", *source, "--model-path", str(tmp_path / "run"),
                 "--out", str(tmp_path / "cached")]) == 0
    assert "feature cache" in capsys.readouterr().out
    assert main(["embed", *source, "--model-path", str(tmp_path / "run" / "tower.keras"),
                 "--out", str(tmp_path / "tower")]) == 0  # a tower file: every tile through VGG16
    cached = read_embeddings(tmp_path / "cached")[0]
    direct = read_embeddings(tmp_path / "tower")[0]
    np.testing.assert_allclose(cached, direct, rtol=1e-4, atol=1e-5)
    new_entries = sorted(set(cache.glob("*/*.npz")) - set(trained_entries))
    assert len(cached) > len(tiny_dataset)  # the whole folder: the training images and others
    assert len(new_entries) == len(cached) - len(tiny_dataset), \
        "only the images training never saw were computed (and cached, tiles only)"
    for entry in new_entries:
        with np.load(entry) as stored:
            assert stored.files == ["tiles"] and stored["tiles"].shape[0] == run_view(config).count
    again = sorted(cache.glob("*/*.npz"))
    assert main(["embed", *source, "--model-path", str(tmp_path / "run"),
                 "--out", str(tmp_path / "again")]) == 0
    assert sorted(cache.glob("*/*.npz")) == again, "a second embedding computes nothing"
    np.testing.assert_array_equal(read_embeddings(tmp_path / "again")[0], cached)


@pytest.mark.slow
def test_ray_embeds_a_frozen_run_from_and_into_its_feature_cache(tmp_path, tiny_data_config,
                                                                 tiny_dataset, capsys):
    import keras

    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'microrep[ray]'")
    cache = tmp_path / "cache"
    keras.utils.set_random_seed(5)
    train(recipe_config(tmp_path / "run", tiny_data_config, cache, epochs=2), tiny_dataset, verbose=0)
    source = ["--images", tiny_data_config.data_dir, "--model-path", str(tmp_path / "run"),
              "--part-size", "7", "--read-workers", "0"]
    assert main(["embed", *source, "--out", str(tmp_path / "local")]) == 0
    shutil.rmtree(cache)  # Ray's actors fill it now, as a local process would
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main(["embed", *source, "--out", str(tmp_path / "ray"), "--launcher", "ray"]) == 0
        assert "from the run's feature cache" in capsys.readouterr().out
        local, table = read_embeddings(tmp_path / "local")
        np.testing.assert_array_equal(read_embeddings(tmp_path / "ray")[0], local)
        entries = sorted(cache.glob("*/*.npz"))
        assert len(entries) == len(table), "one cache entry per image, written by the actors"
        for entry in entries:
            with np.load(entry) as stored:
                assert stored.files == ["tiles"]
        assert main(["embed", *source, "--out", str(tmp_path / "again"), "--launcher", "ray"]) == 0
        assert sorted(cache.glob("*/*.npz")) == entries, "a second embedding computes nothing"
        np.testing.assert_array_equal(read_embeddings(tmp_path / "again")[0], local)
    finally:
        ray.shutdown()


def test_recipe_input_embeds_the_runs_head_as_training_found_it(tmp_path, tiny_data_config,
                                                                 tiny_dataset, capsys):
    """`embed --model-path RUN --recipe-input`: the run's standardised features without the
    learned correction, i.e. `start_head` on the run's training images, applied to any image."""
    import dataclasses

    import keras

    from microrep.data.images import read_image
    from microrep.embedding.features import compute_frozen_features
    from microrep.embedding.towers import embed_tile_features, feature_tower_of
    from microrep.embedding.pieces import any_size_tower
    from microrep.training.frozen import BANK_SEED, start_head
    from microrep.training.run_dir import load_tower

    config = recipe_config(tmp_path / "run", tiny_data_config, tmp_path / "cache", epochs=2)
    keras.utils.set_random_seed(5)
    train(config, tiny_dataset, verbose=0)
    source = ["--images", tiny_data_config.data_dir, "--model-path", str(tmp_path / "run")]
    assert main(["embed", *source, "--recipe-input", "--out", str(tmp_path / "input")]) == 0
    assert main(["embed", *source, "--out", str(tmp_path / "learned")]) == 0
    embedded, table = read_embeddings(tmp_path / "input")
    # the run's random VGG16, over whole frames (the run's view)
    base = any_size_tower(feature_tower_of(load_tower(tmp_path / "run"), config.model))
    view = run_view(config)
    trained_on = compute_frozen_features(base, tiny_dataset.images(), view, config.feature_bank,
                                         BANK_SEED)
    head = start_head(config, trained_on, np.arange(len(tiny_dataset)))
    images = [read_image(path) for path in table["path"]]
    expected = embed_tile_features(head, compute_frozen_features(base, images, view, 1).tiles)
    np.testing.assert_allclose(embedded, expected, rtol=1e-4, atol=1e-5)
    assert np.abs(read_embeddings(tmp_path / "learned")[0] - embedded).max() > 1e-3, \
        "the learned correction is gone, not the whole head"

    projection = dataclasses.replace(config, out=str(tmp_path / "projection"),
                                     model=dataclasses.replace(config.model, head="projection"))
    train(projection, tiny_dataset, verbose=0)
    capsys.readouterr()
    assert main(["embed", "--images", tiny_data_config.data_dir, "--model-path",
                 str(tmp_path / "projection"), "--recipe-input", "--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert "--recipe-input needs a run with a residual head" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_embed_pretrained_reads_block4_from_the_cache_training_filled(tiny_data_config, tmp_path, capsys):
    """`train` caches block4+block5 tile features; `embed --pretrained` (block4) of the same
    images reads them instead of running VGG16, and its vectors equal the computed ones."""
    import keras

    weights = tmp_path / "vgg16.weights.h5"  # one set of weights both commands load
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(weights)
    source = ["--data", "synthetic", "--data-dir", tiny_data_config.data_dir,
              "--synthetic-samples-per-class", "2", "--synthetic-images-per-sample", "3",
              "--synthetic-image-size", "64", "--synthetic-seed", "1"]
    common = ["--weights", str(weights), "--input-size", "32", "--no-mixed-precision"]
    assert main(["train", *source, *common, "--epochs", "1", "--pairs-per-epoch", "8",
                 "--batch-size", "4", "--feature-cache", str(tmp_path / "cache"),
                 "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["embed", "--pretrained", *source, *common, "--feature-cache",
                 str(tmp_path / "cache"), "--out", str(tmp_path / "cached")]) == 0
    assert "read from the feature cache" in capsys.readouterr().out
    assert main(["embed", "--pretrained", *source, *common, "--feature-cache", "",
                 "--out", str(tmp_path / "computed")]) == 0
    cached, table = read_embeddings(tmp_path / "cached")
    computed, _ = read_embeddings(tmp_path / "computed")
    np.testing.assert_allclose(cached, computed, rtol=1e-4, atol=1e-5)
    assert cached.shape[1] == 512  # block4_conv3's channels
