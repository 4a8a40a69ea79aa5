"""The Siamese training step as it was, kept beside the benchmarks as the baseline to beat.

The product's step (`microrep.nn`) pools with `ReshapeMaxPool` and runs
both sides of a pair through the tower as one batch. The variants rebuild the
earlier step around the same weights, so one run can time each change:

- `pool=max`: VGG16's `MaxPooling2D` (gradient: a select-and-scatter under JAX);
  `pool=reshape`: the product's reshape + max.
- `tower=twice`: two tower calls of B images each, joined by `EuclideanDistance`;
  `tower=merged`: the product's one call on 2B images.

`reshape/merged` is the product; `max/twice` is the step before it. Every variant
is checked against the product's model (`check_variant`) before it is timed.
"""

import keras
from keras import ops

from microrep.nn.backbone import with_reshape_pooling
from microrep.nn.layers import EuclideanDistance
from microrep.nn.tower import build_siamese

PRODUCT = "reshape/merged"


def with_max_pooling(tower):
    """A copy of `tower` (same weights) whose ReshapeMaxPool layers are MaxPooling2D again."""
    from microrep.nn.layers import ReshapeMaxPool

    def swap(layer):
        if isinstance(layer, ReshapeMaxPool):
            return keras.layers.MaxPooling2D((2, 2), name=layer.name, dtype=layer.dtype_policy.name)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(tower, clone_function=swap, recursive=True)
    copy.set_weights(tower.get_weights())
    return copy


def build_twice_siamese(tower):
    """The earlier Siamese model: the tower called on each side, then EuclideanDistance."""
    shape, dtype, name = tower.input_shape[1:], tower.inputs[0].dtype, tower.inputs[0].name
    first = keras.Input(shape, dtype=dtype, name=f"{name}_a")
    second = keras.Input(shape, dtype=dtype, name=f"{name}_b")
    distance = EuclideanDistance(name="distance", dtype="float32")([tower(first), tower(second)])
    return keras.Model([first, second], distance, name="siamese")


def build_variant(tower, pool="reshape", tower_call="merged"):
    """(tower, Siamese model) of a variant, sharing nothing with `tower` but its weights."""
    if pool == "max":
        tower = with_max_pooling(tower)
    elif pool == "reshape":
        tower = with_reshape_pooling(tower)
    else:
        raise ValueError(f"pool must be max or reshape, got {pool}")
    if tower_call == "twice":
        return tower, build_twice_siamese(tower)
    if tower_call != "merged":
        raise ValueError(f"tower_call must be twice or merged, got {tower_call}")
    return tower, build_siamese(tower)


def check_variant(reference_siamese, variant_siamese, size, batch=4, seed=0):
    """Largest relative difference of the two models' distances on random uint8 pairs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pair = [rng.integers(0, 256, (batch, size, size, 1), dtype=np.uint8) for _ in range(2)]
    expected = ops.convert_to_numpy(reference_siamese(pair)).astype("float64")
    got = ops.convert_to_numpy(variant_siamese(pair)).astype("float64")
    return float(np.max(np.abs(got - expected)) / max(np.max(np.abs(expected)), 1e-12))
