"""Poolings of VGG16 feature maps into vectors: a registry (name -> layer builder).

Each pooled layer is named `pool_<tapped layer>` (or `pool` for the base's own
output), and several tapped layers are concatenated into `pool`; other code
finds the pooled parts through `pooled_layers` and `pooled_widths`, never by
those names.
"""

import keras
import numpy as np
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


@keras.saving.register_keras_serializable(package="microrep")
class GramPooling(keras.layers.Layer):
    """Second-order (bilinear) pooling: the Gram matrix of the map's channels, reduced to
    `rank` channels first: (b, h, w, c) -> (b, rank (rank + 1) / 2).

    Texture is in which filters fire together, not only how much each fires (Gatys et al.
    2015; Lin et al. 2015's bilinear CNNs). The reduction (a PCA basis and mean of the
    local features) is fitted state: `fit_weights` computes it from an archive's local
    features and it is saved with the layer. The upper triangle of the Gram matrix is
    kept, then signed square root and L2 normalisation (as bilinear CNNs do).
    """

    def __init__(self, rank=64, **kwargs):
        super().__init__(**kwargs)
        self.rank = int(rank)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        basis = np.eye(channels, self.rank, dtype="float32")  # unfitted: the first channels
        self.mean = self.add_weight(shape=(channels,), initializer="zeros", trainable=False,
                                    name="mean")
        self.basis = self.add_weight(shape=(channels, self.rank), trainable=False, name="basis",
                                     initializer=keras.initializers.Constant(basis))
        rows, cols = np.triu_indices(self.rank)
        self.upper = (rows * self.rank + cols).astype("int32")

    def call(self, maps):
        local = ops.reshape(ops.cast(maps, "float32"), (ops.shape(maps)[0], -1, ops.shape(maps)[-1]))
        reduced = ops.matmul(local - ops.cast(self.mean, "float32"), ops.cast(self.basis, "float32"))
        gram = ops.einsum("bnr,bns->brs", reduced, reduced) / ops.cast(ops.shape(local)[1], "float32")
        upper = ops.take(ops.reshape(gram, (ops.shape(gram)[0], -1)), self.upper, axis=1)
        rooted = ops.sign(upper) * ops.sqrt(ops.abs(upper) + 1e-12)
        return rooted / ops.maximum(ops.norm(rooted, axis=-1, keepdims=True), 1e-12)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.rank * (self.rank + 1) // 2)

    def get_config(self):
        return {**super().get_config(), "rank": self.rank}

    def fit_weights(self, local, seed=0):
        """[mean, basis] of local features (n, c): their PCA to `rank` components."""
        from sklearn.decomposition import PCA

        pca = PCA(self.rank, random_state=seed).fit(np.asarray(local, np.float32))
        return [pca.mean_.astype("float32"), pca.components_.T.astype("float32")]


@POOLINGS.register("gram")
def gram_pooling(name):
    """Gram matrix of the channels reduced to 64 by a PCA fitted on the archive, signed
    square root, L2 (second-order texture statistics)."""
    return GramPooling(64, name=name)


@POOLINGS.register("vlad")
def vlad_pooling(name):
    """DeCost et al. 2017's VLAD: a 32-word k-means dictionary fitted on the archive's local
    features, residuals summed per word, per-word and global L2."""
    return VladPooling(32, name=name)


@POOLINGS.register("netvlad")
def netvlad_pooling(name):
    """NetVLAD (Arandjelovic et al. 2016): VLAD with a soft, trainable assignment to 32
    centres, started from a k-means dictionary fitted on the archive."""
    return NetVladPooling(32, name=name)


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

    def fit_weights(self, local, seed=0):
        """[centres] of local features (n, d): a k-means dictionary (DeCost et al.'s)."""
        return [kmeans_centres(local, self.clusters, seed)]


def kmeans_centres(local, clusters, seed):
    """(clusters, d) k-means centres of local features (MiniBatchKMeans, as DeCost et al.)."""
    from sklearn.cluster import MiniBatchKMeans

    local = np.asarray(local, np.float32)
    kmeans = MiniBatchKMeans(clusters, n_init=3, random_state=seed, batch_size=4096)
    return kmeans.fit(local).cluster_centers_.astype("float32")


@keras.saving.register_keras_serializable(package="microrep")
class NetVladPooling(keras.layers.Layer):
    """NetVLAD (Arandjelovic et al. 2016): each local feature is softly assigned to every
    centre (softmax of a learned linear map), the weighted residuals are summed per centre,
    then per-centre and global L2: (b, h, w, d) -> (b, clusters * d).

    Centres, assignment weights and biases are trainable; `fit_weights` starts them from a
    k-means dictionary of the archive's local features with the paper's initialisation
    (w_k = 2 alpha c_k, b_k = -alpha |c_k|^2, alpha chosen so the nearest centre takes
    most of the weight), so an untrained NetVLAD is close to VLAD.
    """

    def __init__(self, clusters=32, **kwargs):
        super().__init__(**kwargs)
        self.clusters = int(clusters)

    def build(self, input_shape):
        depth = int(input_shape[-1])
        self.centres = self.add_weight(shape=(self.clusters, depth), name="centres",
                                       initializer=keras.initializers.RandomNormal(stddev=0.1))
        self.assign_kernel = self.add_weight(shape=(depth, self.clusters), name="assign_kernel",
                                             initializer="glorot_uniform")
        self.assign_bias = self.add_weight(shape=(self.clusters,), name="assign_bias",
                                           initializer="zeros")

    def call(self, maps):
        local = ops.reshape(ops.cast(maps, "float32"), (ops.shape(maps)[0], -1, ops.shape(maps)[-1]))
        logits = ops.matmul(local, ops.cast(self.assign_kernel, "float32")) + ops.cast(self.assign_bias, "float32")
        weights = ops.softmax(logits, axis=-1)
        sums = (ops.einsum("bnk,bnd->bkd", weights, local)
                - ops.sum(weights, axis=1)[..., None] * ops.cast(self.centres, "float32"))
        return normalise_vlad(ops.reshape(sums, (ops.shape(maps)[0], -1)), self.clusters)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.clusters * int(input_shape[-1]))

    def get_config(self):
        return {**super().get_config(), "clusters": self.clusters}

    def fit_weights(self, local, seed=0):
        """[centres, kernel, bias] started from k-means of local features (n, d)."""
        local = np.asarray(local, np.float32)
        centres = kmeans_centres(local, self.clusters, seed)
        distances = ((local[:2048, None, :] - centres[None]) ** 2).sum(-1)
        nearest = np.sort(distances, axis=1)[:, :2]
        alpha = float(np.log(100.0) / max(np.median(nearest[:, 1] - nearest[:, 0]), 1e-12))
        return [centres, (2 * alpha * centres.T).astype("float32"),
                (-alpha * (centres ** 2).sum(axis=1)).astype("float32")]


def normalise_vlad(sums, clusters):
    """(n, clusters * d) residual sums -> each centre's part L2-normalised, then the whole."""
    parts = ops.reshape(sums, (ops.shape(sums)[0], clusters, -1))
    parts = parts / ops.maximum(ops.norm(parts, axis=-1, keepdims=True), 1e-12)
    flat = ops.reshape(parts, (ops.shape(sums)[0], -1))
    return flat / ops.maximum(ops.norm(flat, axis=-1, keepdims=True), 1e-12)
