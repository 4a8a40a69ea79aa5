"""The embedding tower and the Siamese model (Keras functional API, keras.ops only).

The tower takes uint8 grayscale crops and does its own preprocessing, so users
and exported models feed raw micrograph pixels: cast to float, copy gray to
three channels, VGG16's "caffe" preprocessing (BGR mean subtraction), the
VGG16 convolutional base, global average pooling, a linear projection to the
embedding size, and optional L2 normalisation. The Siamese model applies the
one tower to both images of a pair, so every weight is shared, and outputs
their Euclidean distance for the contrastive loss.

Two choices make the training step faster on accelerators without changing
what is computed (measured on an H100, Keras on JAX, bf16, 224 px: 3,977 ->
4,603 training images/s; float32 distances identical): VGG16's max-pooling is
a reshape and a max (`ReshapeMaxPool`), whose gradient is a fused elementwise
mask instead of a select-and-scatter, and both images of a pair go through
the tower as one batch of 2B (one kernel launch and one weight gradient per
layer instead of two).
"""

import contextlib
from pathlib import Path

import keras
from keras import ops

from microrep.errors import ConfigError, WeightsError

#: VGG16's ImageNet channel means in BGR order ("caffe" preprocessing).
VGG_MEAN_BGR = (103.939, 116.779, 123.68)
MIN_INPUT_SIZE = 32  # VGG16 halves the side five times

#: feature_layers "auto": blocks 4 and 5 together (on the UHCSDB development copy their
#: pooled maps trained best; block 4 alone beats block 5 as pretrained features), else
#: the last convolution of the last block kept.
AUTO_FEATURE_LAYERS = {1: ("block1_conv2",), 2: ("block2_conv2",), 3: ("block3_conv3",),
                       4: ("block4_conv3",), 5: ("block4_conv3", "block5_conv3")}


@keras.saving.register_keras_serializable(package="microrep")
class GrayToVGGInput(keras.layers.Layer):
    """uint8 gray (..., 1) -> float BGR with ImageNet means subtracted (..., 3)."""

    def call(self, images):
        gray = ops.cast(images, self.compute_dtype)
        bgr = ops.concatenate([gray, gray, gray], axis=-1)
        return bgr - ops.convert_to_tensor(VGG_MEAN_BGR, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)


@keras.saving.register_keras_serializable(package="microrep")
class L2Normalize(keras.layers.Layer):
    """Scale each embedding to unit length (computed in float32)."""

    def call(self, inputs):
        inputs = ops.cast(inputs, "float32")
        return inputs / ops.sqrt(ops.maximum(ops.sum(ops.square(inputs), axis=-1, keepdims=True), 1e-12))


@keras.saving.register_keras_serializable(package="microrep")
class EuclideanDistance(keras.layers.Layer):
    """Distance between two embeddings, safe to differentiate at zero.

    The Siamese models of microrep <= 0.x called the tower twice and joined the
    two embeddings with this layer; it stays so that their checkpoints load.
    """

    def call(self, inputs):
        return euclidean_distance(*inputs)

    def compute_output_shape(self, input_shapes):
        return input_shapes[0][:-1]


@keras.saving.register_keras_serializable(package="microrep")
class Standardize(keras.layers.Layer):
    """(x - mean) / std per feature, with the statistics of the training crops (not trained).

    Pooled VGG16 activations differ in scale by orders of magnitude between
    channels; standardised, every channel counts, which alone helps a linear SVM.
    """

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.mean = self.add_weight(shape=(dim,), initializer="zeros", trainable=False, name="mean")
        self.inverse_std = self.add_weight(shape=(dim,), initializer="ones", trainable=False,
                                           name="inverse_std")

    def call(self, inputs):
        inputs = ops.cast(inputs, "float32")
        return (inputs - self.mean) * self.inverse_std

    def set_statistics(self, features):
        """Take mean and standard deviation from a (n, dim) array of pooled features."""
        import numpy as np

        features = np.asarray(features, dtype=np.float64)
        self.set_weights([features.mean(axis=0).astype("float32"),
                          (1.0 / (features.std(axis=0) + 1e-6)).astype("float32")])


@keras.saving.register_keras_serializable(package="microrep")
class ResidualProjection(keras.layers.Layer):
    """x + W x + b with W and b starting at zero: the embedding starts as the input features.

    Why: training then moves the pretrained representation only as far as the
    pairs ask, instead of replacing it with a random projection that must first
    relearn what the pretrained features knew.
    """

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.kernel = self.add_weight(shape=(dim, dim), initializer="zeros", name="kernel")
        self.bias = self.add_weight(shape=(dim,), initializer="zeros", name="bias")

    def call(self, inputs):
        inputs = ops.cast(inputs, self.compute_dtype)
        return inputs + ops.matmul(inputs, ops.cast(self.kernel, self.compute_dtype)) + \
            ops.cast(self.bias, self.compute_dtype)


@keras.saving.register_keras_serializable(package="microrep")
class ReshapeMaxPool(keras.layers.Layer):
    """2x2 max-pooling, stride 2, 'valid' padding, as a reshape and a max over the windows.

    Same values as MaxPooling2D((2, 2)); its gradient is an elementwise mask that
    XLA fuses, where MaxPooling2D's is a select-and-scatter (atomics on GPUs).
    """

    def call(self, inputs):
        # static sides where known (JAX, functional graphs); tf.data may leave them dynamic
        _, height, width, channels = ops.shape(inputs)
        inputs = inputs[:, :height // 2 * 2, :width // 2 * 2, :]
        windows = ops.reshape(inputs, (-1, height // 2, 2, width // 2, 2, channels))
        return ops.max(windows, axis=(2, 4))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, height // 2, width // 2, channels)


@keras.saving.register_keras_serializable(package="microrep")
class StackPair(keras.layers.Layer):
    """Both sides of a pair batch as one batch of 2B: the tower then runs once per step."""

    def call(self, inputs):
        return ops.concatenate(inputs, axis=0)

    def compute_output_shape(self, input_shapes):
        first = input_shapes[0]
        return (None if first[0] is None else 2 * first[0], *first[1:])


@keras.saving.register_keras_serializable(package="microrep")
class HalvesDistance(keras.layers.Layer):
    """Euclidean distance between the first and the second half of a batch of 2B embeddings."""

    def call(self, embeddings):
        half = ops.shape(embeddings)[0] // 2
        return euclidean_distance(embeddings[:half], embeddings[half:])

    def compute_output_shape(self, input_shape):
        return (None if input_shape[0] is None else input_shape[0] // 2,)


def euclidean_distance(first, second):
    """Row-wise distance in float32, safe to differentiate at zero."""
    first, second = ops.cast(first, "float32"), ops.cast(second, "float32")
    return ops.sqrt(ops.maximum(ops.sum(ops.square(first - second), axis=-1), 1e-12))


def with_reshape_pooling(model):
    """`model` with every MaxPooling2D((2, 2)) replaced by ReshapeMaxPool, same weights."""

    def swap(layer):
        if isinstance(layer, keras.layers.MaxPooling2D) and tuple(layer.pool_size) == (2, 2) \
                and tuple(layer.strides) == (2, 2) and layer.padding == "valid":
            return ReshapeMaxPool(name=layer.name, dtype=layer.dtype_policy.name)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=swap)
    copy.set_weights(model.get_weights())
    return copy


@contextlib.contextmanager
def dtype_policy(name):
    """Build layers under a dtype policy, restoring the previous one afterwards.

    keras.applications models take their policy from Keras' global setting; this
    keeps the change local to model building instead of leaking into the process.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def mixed_policy_name():
    """bfloat16 on CPU/TPU/JAX GPUs; float16 only for TensorFlow/torch on GPU."""
    return "mixed_bfloat16"


def build_vgg16_base(input_size, weights, blocks=5):
    """VGG16's convolutional base, cut after `blocks` blocks.

    Weights are 'imagenet', 'none' or a local file of the full base; cutting
    after loading keeps the pretrained values of the blocks that remain.
    """
    if blocks not in (1, 2, 3, 4, 5):
        raise ConfigError(f"vgg_blocks must be 1 to 5, got {blocks}")
    base = load_vgg16(input_size, weights)
    if blocks < 5:
        base = keras.Model(base.input, base.get_layer(f"block{blocks}_pool").output, name="vgg16")
    return with_reshape_pooling(base)


def load_vgg16(input_size, weights):
    """The full VGG16 convolutional base with weights 'imagenet', 'none' or a local file."""
    shape = (input_size, input_size, 3)
    if weights in (None, "none", "None", ""):
        return keras.applications.VGG16(include_top=False, weights=None, input_shape=shape)
    if weights == "imagenet":
        try:
            return keras.applications.VGG16(include_top=False, weights="imagenet", input_shape=shape)
        except Exception as error:  # urllib/http/ssl errors vary by platform
            raise WeightsError(
                "could not download the ImageNet VGG16 weights "
                f"({type(error).__name__}); when offline pass --weights FILE with a local "
                "vgg16 *_notop.weights.h5 (or .h5) file, or --weights none") from None
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=shape)
    try:
        base.load_weights(path)
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(f"cannot load VGG16 weights from {path}: {first_line} (is it a "
                           "VGG16 notop weights file?)") from None
    return base


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def check_weights_source(weights):
    """WeightsError now, before a stage writes anything, for a weights file that cannot load.

    Cheap: the file exists and is HDF5 (Keras' .weights.h5 and .h5); whether it
    holds VGG16's layers is known only when it is loaded.
    """
    if weights in (None, "none", "None", "", "imagenet"):
        return
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    with open(path, "rb") as handle:
        if handle.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
            raise WeightsError(f"cannot load VGG16 weights from {path}: not an HDF5 "
                               "(.weights.h5 or .h5) file")


def check_input_size(size):
    """ConfigError for crops VGG16 cannot take (it halves the side five times)."""
    if int(size) < MIN_INPUT_SIZE:
        raise ConfigError(f"input size {size} is below VGG16's minimum of {MIN_INPUT_SIZE} pixels")


def feature_layer_names(config):
    """The VGG16 layers whose maps are pooled: `feature_layers`, or the base's last block."""
    layers = getattr(config, "feature_layers", "")
    if layers == "auto":
        return list(AUTO_FEATURE_LAYERS[config.vgg_blocks])
    return [name.strip() for name in layers.split(",") if name.strip()]


def pooled_features(images, config):
    """uint8 crops -> VGG16 maps, mean-pooled (and concatenated when several layers are tapped)."""
    size = int(config.input_size)
    check_input_size(size)
    features = GrayToVGGInput(name="to_vgg_input")(images)
    taps = feature_layer_names(config)
    base = build_vgg16_base(size, config.weights, config.vgg_blocks)
    if taps:
        known = [layer.name for layer in base.layers]
        unknown = [name for name in taps if name not in known]
        if unknown:
            raise ConfigError(f"feature layer(s) {', '.join(unknown)} are not among the "
                              f"{config.vgg_blocks} VGG16 blocks kept; choose from "
                              f"{', '.join(n for n in known if 'conv' in n or 'pool' in n)}")
        base = keras.Model(base.input, [base.get_layer(n).output for n in taps], name="vgg16")
    base.trainable = config.train_base
    maps = base(features)
    if not taps:
        return keras.layers.GlobalAveragePooling2D(name="pool")(maps)
    maps = maps if isinstance(maps, (list, tuple)) else [maps]
    pooled = [keras.layers.GlobalAveragePooling2D(name=f"pool_{name}")(m) for name, m in zip(taps, maps)]
    return pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="pool")(pooled)


def head_layers(features, config):
    """Projection (and L2 normalisation) of pooled features: the part a frozen base trains."""
    if config.head == "residual":
        features = Standardize(name="standardize", dtype="float32")(features)
        embedding = ResidualProjection(name="projection")(features)
    else:
        embedding = keras.layers.Dense(config.embedding_dim, name="projection")(features)
    if config.l2_normalize:
        return L2Normalize(name="l2_normalize", dtype="float32")(embedding)
    return keras.layers.Activation("linear", dtype="float32", name="embedding")(embedding)


def build_tower(config):
    """The embedding tower of a ModelConfig: uint8 (S, S, 1) -> embedding."""
    size = int(config.input_size)
    check_input_size(size)
    policy = mixed_policy_name() if config.mixed_precision else keras.config.dtype_policy().name
    with dtype_policy(policy):
        images = keras.Input((size, size, 1), dtype="uint8", name="image")
        embedding = head_layers(pooled_features(images, config), config)
    return keras.Model(images, embedding, name="embedding_tower")


def build_siamese(tower):
    """Two inputs shaped like the tower's, one shared tower, their Euclidean distance.

    The tower is the image tower (uint8 crops in, inputs `image_a`/`image_b`)
    or, for a frozen base, the projection head on cached features. Both sides
    go through the tower as one stacked batch (see the module docstring).
    """
    shape, dtype, name = tower.input_shape[1:], tower.inputs[0].dtype, tower.inputs[0].name
    first = keras.Input(shape, dtype=dtype, name=f"{name}_a")
    second = keras.Input(shape, dtype=dtype, name=f"{name}_b")
    both = StackPair(name="stack_pair", dtype=dtype)([first, second])
    distance = HalvesDistance(name="distance", dtype="float32")(tower(both))
    return keras.Model([first, second], distance, name="siamese")


def build_feature_tower(input_size, weights, blocks=5, feature_layers=""):
    """uint8 gray crops -> mean-pooled VGG16 feature maps: the pretrained baseline.

    As in DeCost et al. 2017, the features are ImageNet VGG16 activations
    without any training on micrographs (mean pooling rather than VLAD); with
    `feature_layers`, the maps of those layers, pooled and concatenated.
    """
    from microrep.config import ModelConfig

    config = ModelConfig(input_size=input_size, weights=weights, vgg_blocks=blocks,
                         feature_layers=feature_layers, train_base=False)
    images = keras.Input((input_size, input_size, 1), dtype="uint8", name="image")
    return keras.Model(images, pooled_features(images, config), name="vgg16_features")
