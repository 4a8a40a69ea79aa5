"""Balanced positive/negative pairs of random crops, drawn afresh every epoch.

Why one sampler with two adapters: the sampling logic (which images pair up,
where each crop sits, how it is flipped and rotated) is plain NumPy, driven by a
seed and the epoch number, so a resumed run draws exactly the pairs it would
have drawn, and TensorFlow's tf.data and backend-agnostic Keras
(`keras.utils.PyDataset`, for JAX and torch without TensorFlow) feed the model
identical batches. Crops stay uint8 grayscale until the model.

A pair's label is 1 for the same class and 0 for different classes, the
convention of `microrep.nn.losses.contrastive_loss`; graded samplers give
levels (0, 1, 2) for losses whose registry entry is `graded`.
"""

import numpy as np

from microrep.errors import DataError
from microrep.registry import LOSSES

#: Columns of a pair plan: image index, crop row, crop column, flip, rotation.
PLAN_FIELDS = ("index", "top", "left", "flip", "rot90")


class PairSampler:
    """Draw class-balanced pairs of crops from images of given labels and shapes.

    Positive pairs take two different images of one class (the same image, at
    two crops, when a class has one image); negative pairs take images of two
    different classes. Classes are drawn uniformly, so rare classes are seen as
    often as common ones.
    """

    def __init__(self, labels, image_shapes, crop_size, pairs_per_epoch=1024,
                 positive_fraction=0.5, augment=True, seed=0):
        labels = np.asarray(labels).astype(str)
        self.classes = sorted(set(labels))
        if len(self.classes) < 2:
            raise DataError("pair training needs at least two classes; "
                            f"found {len(self.classes)}: {', '.join(self.classes)}")
        if not 0.0 <= positive_fraction <= 1.0:
            raise DataError("positive fraction must lie between 0 and 1")
        self.members = [np.flatnonzero(labels == c) for c in self.classes]
        self.shapes = np.asarray(image_shapes, dtype=np.int64).reshape(len(labels), 2)
        self.crop_size = int(crop_size)
        self.pairs_per_epoch = int(pairs_per_epoch)
        self.positive_fraction = positive_fraction
        self.augment = augment
        self.seed = seed

    def _rng(self, epoch):
        return np.random.default_rng([self.seed, epoch])

    def epoch_pairs(self, epoch):
        """Image indices (n, 2) and labels (n,) of one epoch's pairs."""
        rng = self._rng(epoch)
        count = self.pairs_per_epoch
        same = (np.arange(count) < round(count * self.positive_fraction)).astype(np.float32)
        rng.shuffle(same)
        n_classes = len(self.classes)
        first_class = rng.integers(0, n_classes, count)
        other_class = (first_class + rng.integers(1, n_classes, count)) % n_classes
        second_class = np.where(same == 1, first_class, other_class)
        pairs = np.empty((count, 2), dtype=np.int64)
        for row, (ca, cb) in enumerate(zip(first_class, second_class)):
            members_a, members_b = self.members[ca], self.members[cb]
            if ca == cb and len(members_a) > 1:
                pairs[row] = rng.choice(members_a, 2, replace=False)
            else:
                pairs[row] = rng.choice(members_a), rng.choice(members_b)
        return pairs, same

    def epoch_plan(self, epoch):
        """Everything one epoch needs: (plan_a, plan_b, labels).

        Each plan is an int array (n, 5) with columns PLAN_FIELDS: which image,
        where the crop starts, whether to flip it, how many quarter turns.
        """
        pairs, same = self.epoch_pairs(epoch)
        rng = np.random.default_rng([self.seed, epoch, 1])
        plans = []
        for side in range(2):
            plans.append(random_crop_plan(rng, self.shapes, pairs[:, side], self.crop_size,
                                          self.augment))
        return plans[0], plans[1], same


class GradedPairSampler(PairSampler):
    """Pairs labelled with a level of similarity: 2 same sample, 1 same class, 0 different.

    `relations` names what makes two images "the same sample": the sample itself,
    or the processing condition where the metadata gives one. Each pair's first
    image is drawn uniformly; its partner comes from the same relation with
    probability `same_sample_fraction`, from the same class with
    `same_class_fraction`, else from anywhere. The label is the level the two
    images actually share (see `microrep.losses.graded_contrastive_loss`).
    """

    def __init__(self, labels, relations, image_shapes, crop_size, pairs_per_epoch=1024,
                 same_sample_fraction=0.4, same_class_fraction=0.3, augment=True, seed=0,
                 targets=None):
        super().__init__(labels, image_shapes, crop_size, pairs_per_epoch,
                         same_sample_fraction + same_class_fraction, augment, seed)
        self.labels = np.asarray(labels).astype(str)
        self.relations = np.asarray(relations).astype(str)
        self.same_sample_fraction = same_sample_fraction
        self.by_relation = {r: np.flatnonzero(self.relations == r) for r in set(self.relations)}
        self.by_label = {c: members for c, members in zip(self.classes, self.members)}
        # (levels, relations_a, relations_b) -> the loss's targets; levels by default
        self.targets = targets

    def epoch_pairs(self, epoch):
        """Image indices (n, 2) and levels (n,) of one epoch's pairs."""
        rng = self._rng(epoch)
        count = len(self.labels)
        first = rng.integers(0, count, self.pairs_per_epoch)
        second = rng.integers(0, count, self.pairs_per_epoch)
        draw = rng.random(self.pairs_per_epoch)
        for row, anchor in enumerate(first):
            if draw[row] < self.same_sample_fraction:
                pool = self.by_relation[self.relations[anchor]]
            elif draw[row] < self.positive_fraction:
                pool = self.by_label[self.labels[anchor]]
            else:
                continue
            second[row] = pool[rng.integers(len(pool))]
        levels = pair_levels(self.labels, self.relations, first, second)
        if self.targets is not None:
            levels = self.targets(levels, self.relations[first], self.relations[second])
        return np.stack([first, second], axis=1), levels


def pair_levels(labels, relations, first, second):
    """Level of each pair (microrep.nn.losses' levels): 2 same relation and class, 1 same class, 0 else."""
    same_label = labels[first] == labels[second]
    same_relation = relations[first] == relations[second]
    return np.where(same_label & same_relation, 2, np.where(same_label, 1, 0)).astype(np.float32)


def random_crop_plan(rng, shapes, index, size, augment=True):
    """Plan rows (PLAN_FIELDS) of one random crop of each image in `index`.

    The crop sits anywhere inside the image (shapes are (rows, columns) per
    image) and, with `augment`, is flipped and turned by a random quarter.
    """
    room = np.maximum(shapes[index] - size, 0) + 1
    top = (rng.random(len(index)) * room[:, 0]).astype(np.int64)
    left = (rng.random(len(index)) * room[:, 1]).astype(np.int64)
    flip = rng.integers(0, 2, len(index)) * augment
    rot = rng.integers(0, 4, len(index)) * augment
    return np.stack([index, top, left, flip, rot], axis=1)


def crop(image, top, left, flip, rot90, size):
    """One augmented crop (size, size) of a 2-D image, NumPy version."""
    patch = image[top:top + size, left:left + size]
    if patch.shape != (size, size):  # image smaller than the crop: reflect-pad
        patch = np.pad(patch, ((0, size - patch.shape[0]), (0, size - patch.shape[1])),
                       mode="reflect")
    if flip:
        patch = patch[:, ::-1]
    return np.rot90(patch, rot90)


def crops_from_plan(images, plan, size):
    """A uint8 batch (n, size, size, 1) of the crops a plan describes."""
    batch = np.empty((len(plan), size, size, 1), dtype=np.uint8)
    for row, (index, top, left, flip, rot) in enumerate(plan):
        batch[row, ..., 0] = crop(images[index], top, left, flip, rot, size)
    return batch


def check_images_fit(images, size, names=None):
    """Refuse images smaller than half a crop: reflect padding would dominate them."""
    for index, image in enumerate(images):
        if min(image.shape) < size // 2:
            name = names.iloc[index] if hasattr(names, "iloc") else f"image {index}"
            raise DataError(f"{name} is {image.shape[1]}x{image.shape[0]} pixels, too small for "
                            f"{size}x{size} crops; lower --input-size, or leave it out")


def pair_targets_of(entry, relations, reference=None):
    """The sampler's target function for a loss whose targets are distances between relations
    (placed once, on the scale of the `reference` relations: the training set's, also for
    its validation pairs), or None for level targets."""
    if entry.coordinates is None:
        return None
    places = entry.coordinates(relations, reference)
    return lambda levels, a, b: entry.pair_targets(levels, a, b, places)


def sampler_for(config, labels, relations, shapes, crop_size, pairs_per_epoch, augment,
                reference=None):
    """The pair sampler a TrainConfig's loss needs: graded levels, or same/different class."""
    entry = LOSSES[config.similarity]
    if entry.graded:
        return GradedPairSampler(labels, relations, shapes, crop_size, pairs_per_epoch,
                                 augment=augment, seed=config.seed,
                                 targets=pair_targets_of(entry, relations, reference))
    return PairSampler(labels, shapes, crop_size, pairs_per_epoch, config.pairs.positive_fraction,
                       augment, config.seed)
