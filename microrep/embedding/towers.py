"""Towers rebuilt from their parts: a frozen-base run's head applied to cached features,
and the assembled tower (uint8 crops in) made from a feature tower and a head.

Why its own module: the feature cache (`features.py`) stores what the base computed; this
module says how a head and a base make one tower again, and how a tower's head is taken
out to embed from that cache, so both embed the same vectors (tests/test_frozen.py).
"""

import dataclasses

import numpy as np

from microrep.embedding.pieces import head_outputs, mean_head_outputs
from microrep.nn.tower import build_feature_tower, build_head, build_tower

__all__ = ["embed_from_tiles", "embed_tile_features", "head_outputs", "tower_from_head",
           "head_from_tower", "feature_tower_of", "copy_weights"]


def embed_from_tiles(head, features, image_rows=None):
    """Each image's embedding: the head applied to every tile's features, averaged."""
    tiles = features.tiles if image_rows is None else features.tiles[np.asarray(image_rows)]
    return embed_tile_features(head, tiles)


def embed_tile_features(head, tiles):
    """(n, pieces, d) piece features -> (n, embedding) means of the head's piece embeddings."""
    return mean_head_outputs(head, tiles)


def tower_from_head(head, feature_tower, model_config):
    """The full embedding tower (uint8 crops in): `feature_tower`'s base, the head's layers.

    `model_config` gives the input size, VGG16 blocks, tapped layers and head; the
    weights come from the two models, so the tower embeds exactly as
    `embed_from_tiles` does.
    """
    tower = build_tower(dataclasses.replace(model_config, weights="none", train_base=False))
    copy_weights(feature_tower, tower)
    copy_weights(head, tower)
    return tower


def copy_weights(source, target):
    """Every weighted layer of `source` into the same-named layer of `target`: the base, and
    a pooling with weights or fitted state (GeM's exponent, VLAD's centres), which copying
    the base alone would silently reset."""
    names = {layer.name for layer in target.layers}
    for layer in source.layers:
        if layer.weights and layer.name in names:
            target.get_layer(layer.name).set_weights(layer.get_weights())


def head_from_tower(tower, feature_dim, model_config):
    """The head of an assembled tower, to embed cached features as the tower embeds images."""
    head = build_head(feature_dim, model_config)
    for layer in head.layers:
        if layer.weights:
            layer.set_weights(tower.get_layer(layer.name).get_weights())
    return head


def feature_tower_of(tower, model_config):
    """The frozen base of an assembled tower as a feature tower (pooled maps out), same weights.

    Built under Keras' current dtype policy (callers choose the one the run used, which
    keys the feature cache).
    """
    feature_tower = build_feature_tower(dataclasses.replace(model_config, weights="none"))
    copy_weights(tower, feature_tower)
    return feature_tower
