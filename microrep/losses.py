"""Contrastive loss (Hadsell, Chopra & LeCun 2006), written with keras.ops.

Label convention: y = 1 for a similar (same-class) pair, y = 0 for a
dissimilar one, and d the Euclidean distance between the two embeddings:

    L = y * d**2 + (1 - y) * max(margin - d, 0)**2

Similar pairs are pulled together; dissimilar pairs are pushed apart until
they are `margin` away, after which they cost nothing. This is the convention
of tensorflow-addons' `contrastive_loss` (end-of-life, no Keras 3 build).
"""

import keras
from keras import ops


def contrastive_loss(y_true, distance, margin=1.0):
    """Per-pair contrastive loss; `y_true` is 1 for same-class pairs, 0 otherwise."""
    distance = ops.cast(distance, "float32")
    y_true = ops.cast(ops.reshape(y_true, ops.shape(distance)), "float32")
    push = ops.maximum(margin - distance, 0.0)
    return y_true * ops.square(distance) + (1.0 - y_true) * ops.square(push)


@keras.saving.register_keras_serializable(package="microrep")
class ContrastiveLoss(keras.losses.Loss):
    """Keras Loss wrapper of `contrastive_loss`, serialisable with its margin."""

    def __init__(self, margin=1.0, name="contrastive_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        return contrastive_loss(y_true, y_pred, self.margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="microrep")
class PairAccuracy(keras.metrics.MeanMetricWrapper):
    """Share of pairs on the right side of margin / 2 (closer means same class)."""

    def __init__(self, margin=1.0, name="pair_accuracy", **kwargs):
        self.margin = float(margin)
        super().__init__(fn=self._accuracy, name=name, **kwargs)

    def _accuracy(self, y_true, distance):
        distance = ops.cast(distance, "float32")
        y_true = ops.cast(ops.reshape(y_true, ops.shape(distance)), "float32")
        predicted_same = ops.cast(distance < self.margin / 2, "float32")
        return ops.cast(ops.equal(predicted_same, y_true), "float32")

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "margin": self.margin}
