"""Training on a frozen base from cached features gives the tower it claims to."""

import keras
import numpy as np
import pytest

from microrep.config import ModelConfig, PairConfig, TrainConfig
from microrep.embedding.tiles import embed_images
from microrep.embedding.features import (FrozenFeatures, compute_frozen_features, crop_bank_plan,
                                         image_keys)
from microrep.embedding.towers import embed_from_tiles, tower_from_head
from microrep.nn.tower import build_feature_tower
from microrep.pairs import crops_from_plan
from microrep.training.frozen import fit_head

from conftest import TINY_INPUT


@pytest.fixture(scope="module")
def setting(tiny_dataset):
    keras.utils.set_random_seed(0)
    feature_tower = build_feature_tower(ModelConfig(input_size=TINY_INPUT, weights="none", vgg_blocks=2))
    images = tiny_dataset.images()
    frozen = compute_frozen_features(feature_tower, images, grid=2, per_image=4, seed=0)
    return feature_tower, images, frozen, tiny_dataset.labels


def test_bank_rows_are_the_features_of_their_crops(setting):
    feature_tower, images, frozen, _ = setting
    plan = crop_bank_plan([im.shape for im in images], TINY_INPUT, 4, seed=0,
                          keys=image_keys(images))
    assert frozen.bank.shape[0] == 4 * len(images)
    assert list(plan[frozen.bank_rows([3])[0], 0]) == [3, 3, 3, 3]
    rows = frozen.bank_rows([3, 5]).ravel()
    expected = feature_tower.predict(crops_from_plan(images, plan[rows], TINY_INPUT), verbose=0)
    np.testing.assert_allclose(frozen.bank[rows], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(frozen.pooled, embed_images(feature_tower, images, view=2),
                               rtol=1e-4, atol=1e-5)


def train_head(features, labels, pairs_per_epoch):
    """A projection head under the paper's loss, as `reproduce` trains one per fold."""
    config = TrainConfig(model=ModelConfig(input_size=TINY_INPUT, embedding_dim=8, vgg_blocks=2,
                                           weights="none", head="projection", feature_layers=""),
                         pairs=PairConfig(pairs_per_epoch=pairs_per_epoch), epochs=2, batch_size=8,
                         learning_rate=1e-3, margin=1.0, similarity="label")
    relations = np.arange(len(labels)).astype(str)
    return fit_head(config, features, np.asarray(labels), relations, log=lambda *_: None)[0]


def test_the_assembled_tower_embeds_as_the_cached_features_do(setting):
    feature_tower, images, frozen, labels = setting
    head = train_head(frozen, labels, pairs_per_epoch=32)
    tower = tower_from_head(head, feature_tower, ModelConfig(input_size=TINY_INPUT,
                                                             embedding_dim=8, vgg_blocks=2))
    np.testing.assert_allclose(embed_images(tower, images, view=2), embed_from_tiles(head, frozen),
                               rtol=1e-4, atol=1e-5)


def test_the_head_never_sees_images_outside_its_rows(setting):
    _, images, frozen, labels = setting
    held_out = np.arange(0, len(images), 3)
    training = np.setdiff1d(np.arange(len(images)), held_out)
    poisoned = FrozenFeatures(frozen.bank.copy(), frozen.tiles, frozen.per_image)
    poisoned.bank[frozen.bank_rows(held_out).ravel()] = np.nan
    head = train_head(poisoned.subset(training), labels[training], pairs_per_epoch=64)
    assert all(np.isfinite(w).all() for w in head.get_weights())


def test_a_pooling_s_weights_survive_every_rebuild_of_the_tower(tmp_path):
    """GeM's exponent is a weight of the pooling, not of the base: the feature tower taken out
    of a tower, the tower assembled again from a head, the any-size tower, its split into
    features and head, and a saved and reloaded tower all keep it, and embed the same."""
    from microrep.embedding.pieces import any_size_tower, split_tower
    from microrep.embedding.towers import feature_tower_of, head_from_tower
    from microrep.nn.pooling import pooled_layers
    from microrep.nn.tower import build_tower

    keras.utils.set_random_seed(0)
    config = ModelConfig(input_size=TINY_INPUT, weights="none", vgg_blocks=2, feature_layers="",
                         pooling="gem", mixed_precision=False, head="projection")
    tower = build_tower(config)
    pool = pooled_layers(tower)[0]
    tower.get_layer(pool).set_weights([np.float32(1.7)])
    images = np.random.default_rng(0).integers(0, 255, (3, TINY_INPUT, TINY_INPUT, 1), np.uint8)
    expected = tower.predict(images, verbose=0)

    features = feature_tower_of(tower, config)
    head = head_from_tower(tower, int(features.output_shape[-1]), config)
    rebuilt = tower_from_head(head, features, config)
    tower.save(tmp_path / "tower.keras")
    reloaded = keras.saving.load_model(tmp_path / "tower.keras")
    split_features, split_head = split_tower(any_size_tower(tower))
    for model in (features, rebuilt, reloaded, split_features):
        assert float(model.get_layer(pool).get_weights()[0]) == pytest.approx(1.7), model.name
    for model in (rebuilt, reloaded):
        np.testing.assert_allclose(model.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(split_head(split_features(images)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(head(features(images)), expected, rtol=1e-5, atol=1e-6)
