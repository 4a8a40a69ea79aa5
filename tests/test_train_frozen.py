"""Training a head on a frozen base from cached features: recipe, cache, validation."""

import argparse
import dataclasses

import keras
import numpy as np
import pandas as pd
import pytest

from microrep.config import (ModelConfig, PRESETS, TrainConfig, add_config_flags,
                             config_from_args)
from microrep.embedding.tiles import embed_images
from microrep.errors import ConfigError, DataError
from microrep.embedding.towers import embed_from_tiles, head_from_tower
from microrep.nn.losses import graded_contrastive_loss
from microrep.pairs import GradedPairSampler
from microrep.training import train
from microrep.pairs.relations import validation_split

from conftest import TINY_INPUT


def recipe_config(out, data_config, cache, **overrides):
    """The default recipe at test size: block2 features of a random VGG16, residual head."""
    model = ModelConfig(input_size=TINY_INPUT, vgg_blocks=2, weights="none",
                        feature_layers="block1_conv2,block2_conv2", head="residual",
                        train_base=False)
    values = dict(data=data_config, model=model, out=str(out), epochs=3, batch_size=16,
                  feature_bank=4, feature_cache=str(cache), seed=1)
    values.update(overrides)
    return dataclasses.replace(TrainConfig(), **values)


def test_graded_loss_matches_hand_computed_values():
    levels = np.array([0, 0, 1, 1, 2, 2], dtype=np.float32)
    distance = np.array([1.0, 2.0, 1.0, 1.5, 0.5, 1.0], dtype=np.float32)
    loss = np.asarray(graded_contrastive_loss(levels, distance, margin=1.8,
                                              same_class_within=1.25, same_sample_within=0.8))
    # different class: (1.8 - d)+^2; same class: (d - 1.25)+^2; same sample: (d - 0.8)+^2
    np.testing.assert_allclose(loss, [0.64, 0.0, 0.0, 0.0625, 0.0, 0.04], atol=1e-6)
    banded = np.asarray(graded_contrastive_loss(levels, distance, margin=1.8, same_class_within=1.25,
                                                same_sample_within=0.8, same_class_beyond=1.1))
    # same class, other sample, also pushed past 1.1: (1.1 - d)+^2 added; other levels unchanged
    np.testing.assert_allclose(banded, [0.64, 0.0, 0.01, 0.0625, 0.0, 0.04], atol=1e-6)


def test_graded_pairs_say_what_the_two_images_share():
    labels = np.array(["a", "a", "a", "b", "b", "b"])
    samples = np.array(["s1", "s1", "s2", "s3", "s3", "s4"])
    sampler = GradedPairSampler(labels, samples, [(8, 8)] * 6, 4, pairs_per_epoch=400, seed=0)
    pairs, levels = sampler.epoch_pairs(0)
    first, second = pairs[:, 0], pairs[:, 1]
    expected = np.where(samples[first] == samples[second], 2,
                        np.where(labels[first] == labels[second], 1, 0))
    np.testing.assert_array_equal(levels, expected)
    assert set(np.unique(levels)) == {0, 1, 2}
    assert np.array_equal(sampler.epoch_pairs(0)[0], pairs), "pairs depend on seed and epoch only"


def test_validation_split_holds_out_whole_samples_and_keeps_every_class():
    labels = np.repeat(["a", "b", "c"], 8)
    groups = np.repeat([f"s{i}" for i in range(12)], 2)
    train_rows, val_rows = validation_split(labels, groups, 0.25, seed=0)
    assert not set(groups[train_rows]) & set(groups[val_rows])
    assert set(labels[train_rows]) == {"a", "b", "c"}
    assert 0.2 <= len(val_rows) / len(labels) <= 0.4
    assert len(validation_split(labels, groups, 0.0)[1]) == 0
    with pytest.raises(DataError, match="val-fraction"):
        validation_split(np.array(["a", "a", "b", "b"]), np.array(["s1", "s1", "s2", "s2"]), 0.5)


@pytest.mark.slow
def test_the_recipe_trains_validates_and_its_tower_embeds_as_the_cached_features(
        tmp_path, tiny_data_config, tiny_dataset):
    cache = tmp_path / "cache"
    config = recipe_config(tmp_path / "run", tiny_data_config, cache, val_fraction=0.3)
    keras.utils.set_random_seed(5)  # random VGG16 weights, the same in both builds below
    result = train(config, tiny_dataset, verbose=0)
    log = pd.read_csv(tmp_path / "run" / "training_log.csv")
    assert list(log.columns) == ["epoch", "loss", "val_loss", "val_map_at_r"]
    assert len(log) == 3 and log["val_map_at_r"].between(0, 1).all()
    cached = sorted(cache.glob("*/*.npz"))
    assert len(cached) == len(tiny_dataset)

    from microrep.training.frozen import frozen_features, run_view

    keras.utils.set_random_seed(5)
    features = frozen_features(config, tiny_dataset.images(), lambda *_: None)
    assert sorted(cache.glob("*/*.npz")) == cached, "a second run reads the cache"
    head = head_from_tower(result.tower, features.tiles.shape[-1], config.model)
    # the tower over the run's own view (the whole frame at its scales) = the cached route
    np.testing.assert_allclose(embed_images(result.tower, tiny_dataset.images(), run_view(config)),
                               embed_from_tiles(head, features), rtol=1e-4, atol=1e-5)
    assert result.tower.output_shape == (None, 64 + 128), "block1 and block2 maps, pooled"


def test_an_untrained_residual_head_embeds_the_standardised_pretrained_features(
        tmp_path, tiny_data_config, tiny_dataset):
    from microrep.training.frozen import fit_head, frozen_features

    config = recipe_config(tmp_path / "run", tiny_data_config, tmp_path / "cache", epochs=0)
    features = frozen_features(config, tiny_dataset.images(), lambda *_: None)
    head, history = fit_head(config, features, tiny_dataset.labels, tiny_dataset.groups, print)
    assert history == {}
    tiles = features.tiles.reshape(-1, features.tiles.shape[-1]).astype(np.float64)
    bank = features.bank.astype(np.float64)
    standardised = (tiles - bank.mean(axis=0)) / (bank.std(axis=0) + 1e-6)
    unit = standardised / np.linalg.norm(standardised, axis=1, keepdims=True)
    expected = unit.reshape(features.tiles.shape).mean(axis=1)
    np.testing.assert_allclose(embed_from_tiles(head, features), expected, rtol=1e-3, atol=1e-4)


def test_the_recipe_input_baseline_is_the_head_before_training_standardised_on_the_fit_rows(
        tmp_path, tiny_data_config, tiny_dataset):
    from microrep.training.frozen import frozen_features, start_head

    config = recipe_config(tmp_path / "run", tiny_data_config, tmp_path / "cache")
    features = frozen_features(config, tiny_dataset.images(), lambda *_: None)
    fit_rows = np.arange(0, len(tiny_dataset), 2)
    start = embed_from_tiles(start_head(config, features, fit_rows), features)
    tiles = features.tiles.reshape(-1, features.tiles.shape[-1]).astype(np.float64)
    bank = features.subset(fit_rows).bank.astype(np.float64)  # the fit half's statistics only
    standardised = (tiles - bank.mean(axis=0)) / (bank.std(axis=0) + 1e-6)
    unit = standardised / np.linalg.norm(standardised, axis=1, keepdims=True)
    np.testing.assert_allclose(start, unit.reshape(features.tiles.shape).mean(axis=1), rtol=1e-3, atol=1e-4)


def test_presets_fill_only_what_flags_and_files_leave_open(monkeypatch):
    parser = argparse.ArgumentParser()
    add_config_flags(parser, TrainConfig)
    config = config_from_args(TrainConfig, parser.parse_args(["--data", "synthetic", "--preset", "cpu", "--epochs", "3"]))
    assert config.epochs == 3 and config.similarity == "graded"
    assert config.model.feature_layers == TrainConfig().model.feature_layers == "auto"
    monkeypatch.setattr("microrep.device.cpu_has_native_bfloat16", lambda: False)
    plain = config_from_args(TrainConfig, parser.parse_args(["--data", "synthetic", "--preset", "cpu"]))
    assert plain.model.mixed_precision is False
    chosen = config_from_args(TrainConfig, parser.parse_args(["--data", "synthetic", "--preset", "cpu",
                                                              "--mixed-precision"]))
    assert chosen.model.mixed_precision is True


def test_presets_store_only_differences_and_name_real_settings():
    from microrep.config import QUICK, from_dict, to_dict

    def leaves(node, prefix=()):
        for key, value in node.items():
            yield from leaves(value, prefix + (key,)) if isinstance(value, dict) else [(prefix + (key,), value)]

    for preset in (*PRESETS.values(), QUICK):
        preset.check()
        defaults = to_dict(preset.stage())
        for path, value in leaves(preset.overrides):
            node = defaults
            for key in path:
                node = node[key]
            assert node != value, f"{path} restates the default {value!r}"
    with pytest.raises(ConfigError):
        type(QUICK)(TrainConfig, {"model": {"input_sise": 96}}).check()
    with pytest.raises(ConfigError):
        type(QUICK)(TrainConfig, {"epochs": 0}).check()
    assert from_dict(TrainConfig, PRESETS["gpu"].fill({})).model.train_base is True


def test_train_defaults_are_the_frozen_recipe_and_other_stages_keep_theirs():
    parser = argparse.ArgumentParser()
    add_config_flags(parser, TrainConfig)
    config = config_from_args(TrainConfig, parser.parse_args(["--data", "synthetic", "--input-size", "96"]))
    assert config.model.input_size == 96
    assert (config.model.head, config.model.train_base) == ("residual", False)
    assert config.hard_pairs == TrainConfig().hard_pairs > 0, "the measured recipe mines"
    assert ModelConfig().head == "projection"
    from microrep.config import paper_train_config

    assert paper_train_config().hard_pairs == 0, "the paper's training draws pairs at random"


def test_the_cache_key_is_stable_across_builds_and_tells_layers_apart():
    from microrep.embedding.features import model_key
    from microrep.nn.tower import build_feature_tower

    first = build_feature_tower(ModelConfig(input_size=TINY_INPUT, weights="none", vgg_blocks=2, feature_layers="block2_conv2"))
    again = build_feature_tower(ModelConfig(input_size=TINY_INPUT, weights="none", vgg_blocks=2, feature_layers="block2_conv2"))
    again.set_weights(first.get_weights())
    pooled_after_max = build_feature_tower(ModelConfig(input_size=TINY_INPUT, weights="none", vgg_blocks=2, feature_layers="block2_pool"))
    pooled_after_max.set_weights(first.get_weights())
    assert model_key(first) == model_key(again)
    assert model_key(first) != model_key(pooled_after_max)
    other = build_feature_tower(ModelConfig(input_size=TINY_INPUT, weights="none", vgg_blocks=2, feature_layers="block2_conv2"))
    assert model_key(first) != model_key(other), "other weights, other features"
    max_pooled = build_feature_tower(ModelConfig(input_size=TINY_INPUT, weights="none", vgg_blocks=2,
                                                 feature_layers="block2_conv2", pooling="max"))
    max_pooled.set_weights(first.get_weights())
    assert model_key(first) != model_key(max_pooled), "the same maps pooled another way"


@pytest.mark.parametrize("mined_crops", [None, 10])
def test_hard_pairs_replace_their_share_of_an_epoch_with_labelled_bank_pairs(
        tmp_path, tiny_data_config, tiny_dataset, monkeypatch, mined_crops):
    """Also when a large bank is searched in a random part only (MINED_CROPS)."""
    from microrep.nn import build_head
    from microrep.training.frozen import bank_pairs, bank_sampler, frozen_features, mix_in_hard_pairs

    config = recipe_config(tmp_path / "run", tiny_data_config, tmp_path / "cache", hard_pairs=0.25)
    features = frozen_features(config, tiny_dataset.images(), lambda *_: None)
    labels, groups = tiny_dataset.labels, tiny_dataset.groups
    train_rows = np.arange(len(labels))[1:]  # one image left out: rows are positions, not indices
    head = build_head(features.bank.shape[1], config.model)
    head.get_layer("standardize").set_statistics(features.bank)
    sampler = bank_sampler(config, labels[train_rows], groups[train_rows])
    sides, target = bank_pairs(features, train_rows, sampler, 1, config.seed)
    if mined_crops:
        assert len(train_rows) * features.per_image > mined_crops
        monkeypatch.setattr("microrep.training.frozen.MINED_CROPS", mined_crops)
    mixed, mixed_target = mix_in_hard_pairs(config, head, features, train_rows, labels[train_rows],
                                            groups[train_rows], sides, target, 1)
    changed = np.flatnonzero(np.any(mixed[0] != sides[0], axis=1) | np.any(mixed[1] != sides[1], axis=1)
                             | (mixed_target != target))
    assert 0.15 * len(target) <= len(changed) <= 0.25 * len(target)
    owner_of_bank_row = np.repeat(np.arange(len(labels)), features.per_image)

    def owner(vector):
        return owner_of_bank_row[np.flatnonzero(np.all(features.bank == vector, axis=1))[0]]

    for place in changed:
        first, second = owner(mixed[0][place]), owner(mixed[1][place])
        assert first in train_rows and second in train_rows
        # with all of the bank searched, every anchor has partners of its kind in other
        # images; a 10-crop search leaves some anchors a random partner
        assert first != second or mined_crops
        level = 2 if groups[first] == groups[second] else 1 if labels[first] == labels[second] else 0
        assert mixed_target[place] == level
    run = train(config, tiny_dataset, verbose=0)
    assert len(pd.read_csv(tmp_path / "run" / "training_log.csv")) == config.epochs
    assert run.tower is not None
