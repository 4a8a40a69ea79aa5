"""Feeds of pair batches for Keras: a NumPy PyDataset (any backend) and tf.data (TensorFlow).

Both follow one sampler's NumPy plan, so they give identical pairs and crops;
this module is the only one in microrep.pairs that imports TensorFlow (inside
`make_tf_dataset`).
"""

import numpy as np

from microrep.pairs.samplers import PLAN_FIELDS, crops_from_plan


def pair_batches(sampler, images, batch_size, epoch):
    """Yield ((crops_a, crops_b), labels) NumPy batches of one epoch."""
    plan_a, plan_b, same = sampler.epoch_plan(epoch)
    size = sampler.crop_size
    for start in range(0, len(same), batch_size):
        stop = start + batch_size
        yield ((crops_from_plan(images, plan_a[start:stop], size),
                crops_from_plan(images, plan_b[start:stop], size)), same[start:stop])


def make_pydataset(sampler, images, batch_size, initial_epoch=0, process=(0, 1), **kwargs):
    """A keras.utils.PyDataset of pairs: works on every Keras backend, no TensorFlow.

    `process` (index, count): with several processes training one model, each yields
    its contiguous slice of every batch of the same seeded plan.
    """
    index_of_process, processes = process
    local = batch_size // processes
    import keras

    class PairSequence(keras.utils.PyDataset):
        """Index `i` of epoch `e` is batch `i` of the sampler's plan for `e`."""

        def __init__(self):
            super().__init__(**kwargs)
            self.epoch = initial_epoch
            self._plan = sampler.epoch_plan(self.epoch)

        def __len__(self):
            return int(np.ceil(sampler.pairs_per_epoch / batch_size))

        def __getitem__(self, index):
            plan_a, plan_b, same = self._plan
            start = index * batch_size + index_of_process * local
            part = slice(start, start + local)
            size = sampler.crop_size
            return ((crops_from_plan(images, plan_a[part], size),
                     crops_from_plan(images, plan_b[part], size)), same[part])

        def on_epoch_end(self):
            self.epoch += 1
            self._plan = sampler.epoch_plan(self.epoch)

    return PairSequence()


def make_tf_dataset(sampler, images, batch_size, initial_epoch=0):
    """A tf.data.Dataset of pairs, epoch after epoch without end.

    Images sit in one padded uint8 tensor; crops, flips and rotations run as
    TensorFlow ops in parallel, following the sampler's NumPy plan.
    Pass `steps_per_epoch = ceil(pairs_per_epoch / batch_size)` to `fit`.
    """
    import tensorflow as tf

    size = sampler.crop_size
    height = max(max(im.shape[0] for im in images), size)
    width = max(max(im.shape[1] for im in images), size)
    stack = np.zeros((len(images), height, width), dtype=np.uint8)
    for index, image in enumerate(images):
        if image.shape[0] < size or image.shape[1] < size:
            image = np.pad(image, ((0, max(size - image.shape[0], 0)),
                                   (0, max(size - image.shape[1], 0))), mode="reflect")
        stack[index, :image.shape[0], :image.shape[1]] = image
    stack = tf.constant(stack)

    def plans():
        epoch = initial_epoch
        while True:
            plan_a, plan_b, same = sampler.epoch_plan(epoch)
            for row in range(len(same)):
                yield plan_a[row], plan_b[row], same[row]
            epoch += 1

    def tf_crop(plan):
        patch = stack[plan[0], plan[1]:plan[1] + size, plan[2]:plan[2] + size]
        patch = tf.cond(plan[3] > 0, lambda: tf.reverse(patch, axis=[1]), lambda: patch)
        return tf.image.rot90(patch[..., None], k=tf.cast(plan[4], tf.int32))

    plan_spec = tf.TensorSpec((len(PLAN_FIELDS),), tf.int64)
    dataset = tf.data.Dataset.from_generator(
        plans, output_signature=(plan_spec, plan_spec, tf.TensorSpec((), tf.float32)))
    dataset = dataset.map(lambda a, b, y: ((tf_crop(a), tf_crop(b)), y),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
