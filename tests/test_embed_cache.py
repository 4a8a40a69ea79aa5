"""`embed` of a frozen-base run reads the VGG16 tile features its training cached and runs
only the head; its embeddings equal the assembled tower's."""

import numpy as np

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
