"""Poolings with fitted state (VLAD, Gram, NetVLAD) through the product: `embed --pretrained`
fits once and keeps the state beside the archive, a search query re-embeds an image to its
archived vector, and `train` saves the state with the run."""

import numpy as np
import pandas as pd
import pytest

from microrep.cli import main
from microrep.embedding.archive import read_embeddings
from microrep.embedding.pool_fit import STATE_FILE

from conftest import write_class_folders

PRETRAINED = ["--pretrained", "--input-size", "32", "--vgg-blocks", "2",
              "--feature-layers", "block2_conv2", "--view", "frame", "--scales", "1,0.5"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Class folders of random 48-px micrographs and fixed VGG16 weights (queries must embed
    as the archive did, so not `--weights none`)."""
    from microrep.nn.backbone import load_vgg16

    root = tmp_path_factory.mktemp("fitted")
    write_class_folders(root / "data", ("spheroidite", "pearlite", "network"), per_class=4, size=48)
    load_vgg16(32, "none").save_weights(root / "vgg16_notop.weights.h5")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["vlad", "gram"])
def test_embed_pretrained_fits_once_and_search_embeds_queries_with_the_same_state(
        pooling, folder, tmp_path, capsys):
    out = tmp_path / "archive"
    args = ["embed", *PRETRAINED, "--pooling", pooling, "--weights",
            str(folder / "vgg16_notop.weights.h5"), "--images", str(folder / "data"),
            "--out", str(out), "--part-size", "5"]
    assert main(args) == 0
    assert "pooling fitted (pool_block2_conv2)" in capsys.readouterr().out
    state = (out / STATE_FILE).read_bytes()
    vectors, table = read_embeddings(out)
    assert vectors.shape[1] == {"vlad": 32 * 128, "gram": 64 * 65 // 2}[pooling]
    assert main(args[:-2] + ["--overwrite", "--out", str(out)]) == 0  # again: fitted again, same
    assert (out / STATE_FILE).read_bytes() == state
    query = table["path"].iloc[6]
    assert main(["search", "--index", str(out), "--query", query, "--k", "1",
                 "--out", str(tmp_path / "found")]) == 0
    found = pd.read_csv(tmp_path / "found" / "neighbours.csv")
    assert found["row"].iloc[0] == 6 and found["distance"].iloc[0] < 1e-4


@pytest.mark.slow
def test_train_fits_a_pooling_and_saves_its_state_with_the_run(folder, tmp_path):
    """A frozen-base run with --pooling vlad: the dictionary is fitted on its images and
    comes back with the saved tower, which `embed` then uses."""
    import keras

    run = tmp_path / "run"
    assert main(["train", "--images", str(folder / "data"), "--out", str(run), "--input-size", "32",
                 "--vgg-blocks", "2", "--feature-layers", "block2_conv2", "--pooling", "vlad",
                 "--weights", "none", "--epochs", "1", "--pairs-per-epoch", "16",
                 "--batch-size", "8", "--feature-bank", "0", "--view", "frame", "--scales", "1",
                 "--embedding-dim", "8", "--no-train-base", "--feature-cache", str(tmp_path / "cache"),
                 "--val-fraction", "0"]) == 0
    tower = keras.saving.load_model(run / "tower.keras")
    centres = tower.get_layer("pool_block2_conv2").get_weights()[0]
    assert centres.shape == (32, 128) and np.abs(centres).sum() > 0
    assert main(["embed", "--model-path", str(run), "--images", str(folder / "data"),
                 "--out", str(tmp_path / "embedded")]) == 0
    embedded = read_embeddings(tmp_path / "embedded")[0]  # the residual head keeps the width
    assert embedded.shape == (12, 32 * 128) and np.isfinite(embedded).all()


def test_a_residual_head_on_vlad_features_is_refused_in_one_line(tmp_path, capsys):
    """The residual head's correction is width x width: on 32,768-d VLAD features of the
    recipe's two layers, 4 GB. Refused before any work, naming the head to use instead."""
    from microrep.config import ModelConfig
    from microrep.errors import ConfigError
    from microrep.nn.tower import build_tower

    with pytest.raises(ConfigError, match="use --head projection"):
        build_tower(ModelConfig(input_size=32, weights="none", pooling="vlad", head="residual",
                                mixed_precision=False))
    build_tower(ModelConfig(input_size=32, weights="none", pooling="vlad", head="projection",
                            mixed_precision=False))
