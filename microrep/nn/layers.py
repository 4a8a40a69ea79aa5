"""The Keras layers of microrep's models (keras.ops only), registered for saving.

Registered as `microrep>Name`, so saved towers and checkpoints of every earlier
version load wherever this module is imported (microrep.nn imports it).

Two of them make the training step faster on accelerators without changing
what is computed (measured on an H100, Keras on JAX, bf16, 224 px: 3,977 ->
4,603 training images/s; float32 distances identical): VGG16's max-pooling is
a reshape and a max (`ReshapeMaxPool`), whose gradient is a fused elementwise
mask instead of a select-and-scatter, and both images of a pair go through
the tower as one batch of 2B (`StackPair`, `HalvesDistance`).
"""

import keras
import numpy as np
from keras import ops

#: VGG16's ImageNet channel means in BGR order ("caffe" preprocessing).
VGG_MEAN_BGR = (103.939, 116.779, 123.68)


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
        return (batch, None if height is None else height // 2,
                None if width is None else width // 2, channels)


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


