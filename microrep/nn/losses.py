"""Contrastive loss (Hadsell, Chopra & LeCun 2006), written with keras.ops.

Label convention: y = 1 for a similar (same-class) pair, y = 0 for a
dissimilar one, and d the Euclidean distance between the two embeddings:

    L = y * d**2 + (1 - y) * max(margin - d, 0)**2

Similar pairs are pulled together; dissimilar pairs are pushed apart until
they are `margin` away, after which they cost nothing. This is the convention
of tensorflow-addons' `contrastive_loss` (end-of-life, no Keras 3 build).

The losses a run can train under are entries of the `LOSSES` registry
(`--similarity NAME`): a new loss is one `LOSSES.register` call, and the pair
sampling, hard-pair labels and metrics follow from its entry.
"""

import dataclasses
from typing import Callable

import keras
import numpy as np
from keras import ops

from microrep.registry import LOSSES


def contrastive_loss(y_true, distance, margin=1.0):
    """Per-pair contrastive loss; `y_true` is 1 for same-class pairs, 0 otherwise: the graded
    loss with two levels and same-class pairs pulled all the way to zero."""
    return graded_contrastive_loss(y_true, distance, margin, same_class_within=0.0,
                                   same_sample_within=0.0)


class MarginLoss(keras.losses.Loss):
    """A Keras Loss of (target, distance) with one setting, its margin: `pair_loss` is the
    per-pair function a subclass names; serialisable with its margin."""

    pair_loss = None

    def __init__(self, margin=1.0, name=None, **kwargs):
        super().__init__(name=name or self.default_name, **kwargs)
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        return type(self).pair_loss(y_true, y_pred, self.margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="microrep")
class ContrastiveLoss(MarginLoss):
    """Keras Loss wrapper of `contrastive_loss`, serialisable with its margin."""

    default_name = "contrastive_loss"
    pair_loss = contrastive_loss


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
        config = super().get_config()
        config.pop("fn", None)  # rebuilt from the margin by __init__
        return {**config, "margin": self.margin}


#: Pair levels of graded similarity, from least to most alike.
DIFFERENT_CLASS, SAME_CLASS, SAME_SAMPLE = 0, 1, 2


def graded_contrastive_loss(level, distance, margin=1.8, same_class_within=1.25,
                            same_sample_within=0.8, same_class_beyond=0.0):
    """Per-pair loss of graded similarity: same sample > same class > different class.

    Different-class pairs are pushed past `margin` (as in the contrastive loss);
    same-class pairs from other samples are pulled within `same_class_within`,
    and pairs from one sample (or processing condition) within
    `same_sample_within`. Classic contrastive training pulls every same-class
    pair to zero, which erases what tells samples and processing conditions apart;
    the bands keep that structure inside each class. With `same_class_beyond`
    above zero, same-class pairs from other samples are also pushed at least that
    far apart, so that samples (processing conditions) of one class stay
    separable instead of merely not being pulled together.
    """
    distance = ops.cast(distance, "float32")
    level = ops.cast(ops.reshape(level, ops.shape(distance)), "int32")
    within = ops.where(level == SAME_SAMPLE, same_sample_within, same_class_within)
    pull = ops.square(ops.maximum(distance - within, 0.0))
    push = ops.square(ops.maximum(margin - distance, 0.0))
    band = ops.where(level == SAME_CLASS, ops.square(ops.maximum(same_class_beyond - distance, 0.0)), 0.0)
    return ops.where(level == DIFFERENT_CLASS, push, pull + band)


@keras.saving.register_keras_serializable(package="microrep")
class GradedContrastiveLoss(keras.losses.Loss):
    """Keras Loss wrapper of `graded_contrastive_loss`; y_true holds pair levels 0, 1, 2."""

    def __init__(self, margin=1.8, same_class_within=1.25, same_sample_within=0.8,
                 same_class_beyond=0.0, name="graded_contrastive_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)
        self.same_class_within = float(same_class_within)
        self.same_sample_within = float(same_sample_within)
        self.same_class_beyond = float(same_class_beyond)

    def call(self, y_true, y_pred):
        return graded_contrastive_loss(y_true, y_pred, self.margin, self.same_class_within,
                                       self.same_sample_within, self.same_class_beyond)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin,
                "same_class_within": self.same_class_within,
                "same_sample_within": self.same_sample_within,
                "same_class_beyond": self.same_class_beyond}


def processing_distance_loss(target, distance, margin=1.8):
    """Per-pair loss of a processing-aware embedding: the distance between two micrographs
    should follow the distance between their processing conditions (`target`, in
    standardised processing space), mapped into [0, margin) by tanh so that far-apart
    processings do not ask for unbounded distances: (d - margin * tanh(target))**2."""
    distance = ops.cast(distance, "float32")
    target = ops.cast(ops.reshape(target, ops.shape(distance)), "float32")
    return ops.square(distance - margin * ops.tanh(target))


@keras.saving.register_keras_serializable(package="microrep")
class ProcessingDistanceLoss(MarginLoss):
    """Keras Loss wrapper of `processing_distance_loss`; y_true holds processing distances."""

    default_name = "processing_distance_loss"
    pair_loss = processing_distance_loss


@dataclasses.dataclass(frozen=True)
class LossEntry:
    """A pair loss and what its targets are.

    `build(train_config)` -> a Keras loss of (target, distance); `graded`: the
    targets are pair levels (DIFFERENT_CLASS, SAME_CLASS, SAME_SAMPLE) drawn from
    what makes two images "the same sample", else 1 for one class and 0 for two;
    `metrics(train_config)` -> the Keras metrics to watch while training.
    `pairs_from`: what makes two images "the same": "classes" (the labels), "images"
    (self-supervised: two crops of one micrograph, or micrographs of one sample; the
    labels are not used) or "classes+images" (labels where an image has one, the image
    itself where not: a few labels plus an unlabelled archive).
    `coordinates(relations, reference)`, where given, places every relation (the processing-aware
    loss: processing conditions) in a space, once for a training set, and each pair's
    target is the distance between its two images' places instead of its level.
    """

    build: Callable
    graded: bool = False
    metrics: Callable = lambda config: []
    pairs_from: str = "classes"
    coordinates: Callable = None

    @property
    def levels(self):
        """How many target values pairs take (3 graded, 2 otherwise)."""
        return 3 if self.graded else 2

    def targets(self, levels):
        """Pair levels (0, 1, 2) as this loss's targets (float32)."""
        levels = np.asarray(levels, dtype=np.float32)
        return levels if self.graded else (levels > 0).astype(np.float32)

    def pair_targets(self, levels, relations_a, relations_b, places=None):
        """Targets of pairs whose levels and members' relations are known: with `places`
        (`coordinates` of the training set's relations), the distances between the two
        relations' places; else `targets(levels)`."""
        if self.coordinates is None or places is None:
            return self.targets(levels)
        return np.array([np.linalg.norm(places[a] - places[b])
                         for a, b in zip(map(str, relations_a), map(str, relations_b))], np.float32)


LOSSES.register("label", LossEntry(lambda config: ContrastiveLoss(config.margin),
                                   metrics=lambda config: [PairAccuracy(config.margin)]))
def graded_loss(config):
    """The graded loss at a TrainConfig's margin and bands (every graded entry's builder)."""
    return GradedContrastiveLoss(config.margin, config.same_class_within, config.same_sample_within,
                                 config.same_class_beyond)


LOSSES.register("graded", LossEntry(graded_loss, graded=True))


def condition_places(relations, reference=None):
    """Processing conditions placed in processing space (`condition_coordinates`)."""
    from microrep.data.tasks import condition_coordinates

    return condition_coordinates(relations, reference)


#: Processing-aware: pairs drawn as the graded loss draws them (same condition, same class,
#: any), each pulled or pushed to a distance that follows how far apart their processing
#: conditions are (standardised temperature, log time, cooling method).
LOSSES.register("processing", LossEntry(lambda config: ProcessingDistanceLoss(config.margin),
                                        graded=True, coordinates=condition_places))

#: Self-supervised: pairs the micrographs themselves provide (graded: two crops of one image
#: within --same-sample-within, two images of one sample within --same-class-within).
LOSSES.register("self", LossEntry(graded_loss, graded=True, pairs_from="images"))
#: Semi-supervised: classes where labelled, the self-supervised pairs where not.
LOSSES.register("semi", LossEntry(graded_loss, graded=True, pairs_from="classes+images"))


def pair_loss(config):
    """The Keras loss a TrainConfig trains under (its `similarity`, from `LOSSES`)."""
    return LOSSES[config.similarity].build(config)
