"""Candidate speed-ups of the Siamese training step, kept beside the benchmarks until measured.

Each variant computes the same function as the product's model (checked by
`check_variants` on random inputs) and changes only how the step runs, so that
one benchmark run can say whether it is worth moving into `microrep.model`:

- `pool=reshape`: VGG16's 2x2/2 max-pooling as a reshape and a max over the
  two window axes. Its gradient is an elementwise mask that XLA fuses, where
  the gradient of `MaxPooling2D` under JAX is a `select-and-scatter` op
  (scatter with atomics on GPUs).
- `tower=merged`: both images of a pair go through the tower as one batch of
  2B, instead of two calls of B: one kernel launch per layer instead of two
  and one weight gradient per layer instead of two summed.
"""

import keras
from keras import ops

from microrep.model import EuclideanDistance


class ReshapeMaxPool(keras.layers.Layer):
    """2x2 max-pooling with stride 2 and 'valid' padding, as reshape + max."""

    def call(self, inputs):
        height, width, channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        inputs = inputs[:, :height // 2 * 2, :width // 2 * 2, :]
        windows = ops.reshape(inputs, (-1, height // 2, 2, width // 2, 2, channels))
        return ops.max(windows, axis=(2, 4))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, height // 2, width // 2, channels)


class HalvesDistance(keras.layers.Layer):
    """Distance between the first and second half of a batch of 2B embeddings."""

    def call(self, embeddings):
        half = ops.shape(embeddings)[0] // 2
        return EuclideanDistance(dtype="float32")([embeddings[:half], embeddings[half:]])

    def compute_output_shape(self, input_shape):
        return (None,)


class Concatenate0(keras.layers.Layer):
    def call(self, inputs):
        return ops.concatenate(inputs, axis=0)

    def compute_output_shape(self, input_shapes):
        return (None, *input_shapes[0][1:])


def with_reshape_pooling(tower):
    """A copy of `tower` (same weights) whose MaxPooling2D layers are ReshapeMaxPool."""

    def swap(layer):
        if isinstance(layer, keras.layers.MaxPooling2D):
            return ReshapeMaxPool(name=layer.name, dtype=layer.dtype_policy)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(tower, clone_function=swap, recursive=True)
    copy.set_weights(tower.get_weights())
    return copy


def build_merged_siamese(tower):
    """Two uint8 inputs concatenated into one batch, one tower call, their distance."""
    size = tower.input_shape[1]
    first = keras.Input((size, size, 1), dtype="uint8", name="image_a")
    second = keras.Input((size, size, 1), dtype="uint8", name="image_b")
    both = Concatenate0(dtype="uint8")([first, second])
    distance = HalvesDistance(dtype="float32", name="distance")(tower(both))
    return keras.Model([first, second], distance, name="siamese_merged")


def build_variant(tower, pool="max", tower_call="twice"):
    """The Siamese model of a variant, sharing nothing with `tower` but its weights."""
    from microrep.model import build_siamese

    if pool == "reshape":
        tower = with_reshape_pooling(tower)
    elif pool != "max":
        raise ValueError(f"pool must be max or reshape, got {pool}")
    if tower_call == "merged":
        return tower, build_merged_siamese(tower)
    if tower_call != "twice":
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
