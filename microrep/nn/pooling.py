"""Poolings of VGG16 feature maps into vectors: a registry (name -> layer builder).

Each pooled layer is named `pool_<tapped layer>` (or `pool` for the base's own
output), and several tapped layers are concatenated into `pool`; other code
finds the pooled parts through `pooled_layers` and `pooled_widths`, never by
those names.
"""

import keras
from keras import ops

from microrep.registry import POOLINGS

PREFIX = "pool"


@POOLINGS.register("mean")
def mean_pooling(name):
    """The mean of each channel over the map (DeCost et al.'s choice, and the paper's)."""
    return keras.layers.GlobalAveragePooling2D(name=name)


@POOLINGS.register("max")
def max_pooling(name):
    """The largest response of each channel: a feature present anywhere in the crop counts fully."""
    return keras.layers.GlobalMaxPooling2D(name=name)


@keras.saving.register_keras_serializable(package="microrep")
class MeanStdPooling(keras.layers.Layer):
    """Each channel's mean and standard deviation over the map: (b, h, w, c) -> (b, 2c).

    A micrograph is a texture: the spread of a filter's response (how patchy a phase
    is) says what its mean cannot. Computed in float32.
    """

    def call(self, maps):
        maps = ops.cast(maps, "float32")
        mean = ops.mean(maps, axis=(1, 2))
        # floored above zero: a constant channel (an all-zero ReLU map) has no finite sqrt slope
        spread = ops.sqrt(ops.maximum(ops.mean(ops.square(maps), axis=(1, 2)) - ops.square(mean), 1e-12))
        return ops.concatenate([mean, spread], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * int(input_shape[-1]))


@keras.saving.register_keras_serializable(package="microrep")
class GemPooling(keras.layers.Layer):
    """Generalised mean (Radenović et al. 2018): (mean of x^p)^(1/p) per channel, p learnable.

    p = 1 is the mean, large p tends to the max; p starts at `power` and is a weight, so
    a trained base learns it and a saved model keeps it. Computed in float32.
    """

    def __init__(self, power=3.0, **kwargs):
        super().__init__(**kwargs)
        self.power = float(power)

    def build(self, input_shape):
        self.exponent = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.power),
                                        name="exponent")

    def call(self, maps):
        exponent = ops.cast(self.exponent, "float32")
        maps = ops.maximum(ops.cast(maps, "float32"), 1e-6)
        return ops.power(ops.mean(ops.power(maps, exponent), axis=(1, 2)), 1.0 / exponent)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], int(input_shape[-1]))

    def get_config(self):
        return {**super().get_config(), "power": self.power}


@POOLINGS.register("meanstd")
def mean_std_pooling(name):
    """Mean and standard deviation of each channel (first and second moments of the texture)."""
    return MeanStdPooling(name=name)


@POOLINGS.register("gem")
def gem_pooling(name):
    """Generalised mean, p = 3 to start (learned where the base trains)."""
    return GemPooling(3.0, name=name)


def pool_maps(maps, taps, pooling="mean"):
    """Pooled vectors of the feature maps of `taps` (or of the base's output when none)."""
    build = POOLINGS[pooling]
    if not taps:
        return build(PREFIX)(maps)
    maps = maps if isinstance(maps, (list, tuple)) else [maps]
    pooled = [build(f"{PREFIX}_{name}")(m) for name, m in zip(taps, maps)]
    return pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name=PREFIX)(pooled)


def pooled_layers(model):
    """Names of a model's pooling layers, sorted (they key the feature cache)."""
    return sorted(layer.name for layer in model.layers if layer.name.startswith(PREFIX))


def pooled_widths(model, taps):
    """{tapped layer: its pooled width} of a tower built with `taps`, in order."""
    if len(taps) < 2:
        return {taps[0] if taps else PREFIX: int(model.output_shape[-1])}
    return {name: int(model.get_layer(f"{PREFIX}_{name}").output.shape[-1]) for name in taps}


@keras.saving.register_keras_serializable(package="microrep")
class VladPooling(keras.layers.Layer):
    """VLAD of a map's local features (Jégou et al. 2010, as DeCost et al. 2017 used it):
    each feature is assigned to its nearest centre and the residuals (feature - centre)
    are summed per centre: (..., h, w, d) -> (clusters * d).

    The centres are state fitted on data (a k-means dictionary), not trained: set them
    with `set_weights([centres])`; they are saved and reloaded with the layer. With
    `normalize`, each centre's sum is L2-normalised and then the whole vector
    (DeCost et al.'s intra- and global normalisation, no power normalisation); without,
    the raw sums are returned, which add up over pieces of one image before
    `normalise_vlad`.
    """

    def __init__(self, clusters=32, normalize=True, **kwargs):
        super().__init__(**kwargs)
        self.clusters, self.normalize = int(clusters), bool(normalize)

    def build(self, input_shape):
        self.centres = self.add_weight(shape=(self.clusters, int(input_shape[-1])),
                                       initializer="zeros", trainable=False, name="centres")

    def call(self, maps):
        depth = ops.shape(maps)[-1]
        local = ops.reshape(ops.cast(maps, "float32"), (ops.shape(maps)[0], -1, depth))
        centres = ops.cast(self.centres, "float32")
        distances = (ops.sum(ops.square(local), axis=-1, keepdims=True)
                     - 2.0 * ops.einsum("bnd,kd->bnk", local, centres)
                     + ops.sum(ops.square(centres), axis=-1))
        assigned = ops.one_hot(ops.argmin(distances, axis=-1), self.clusters, dtype="float32")
        sums = (ops.einsum("bnk,bnd->bkd", assigned, local)
                - ops.sum(assigned, axis=1)[..., None] * centres)
        sums = ops.reshape(sums, (ops.shape(maps)[0], -1))
        return normalise_vlad(sums, self.clusters) if self.normalize else sums

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.clusters * int(input_shape[-1]))

    def get_config(self):
        return {**super().get_config(), "clusters": self.clusters, "normalize": self.normalize}


def normalise_vlad(sums, clusters):
    """(n, clusters * d) residual sums -> each centre's part L2-normalised, then the whole."""
    parts = ops.reshape(sums, (ops.shape(sums)[0], clusters, -1))
    parts = parts / ops.maximum(ops.norm(parts, axis=-1, keepdims=True), 1e-12)
    flat = ops.reshape(parts, (ops.shape(sums)[0], -1))
    return flat / ops.maximum(ops.norm(flat, axis=-1, keepdims=True), 1e-12)
