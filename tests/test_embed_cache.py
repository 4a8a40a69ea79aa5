"""`embed` of a frozen-base run reads the VGG16 tile features its training cached and runs
only the head; its embeddings equal the assembled tower's."""

import shutil

import numpy as np
import pytest

from microrep.cli import main
from microrep.embedding.archive import read_embeddings
from microrep.training import train

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
            assert stored.files == ["tiles"] and stored["tiles"].shape[0] == 9
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
