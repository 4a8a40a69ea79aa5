"""Siamese training on a frozen VGG16 base, from features computed once.

Why: with the base frozen (`--no-train-base`, as `reproduce --quick` runs),
only the projection head learns, and the base's pooled features of a crop
never change. So the base runs once per crop, for a bank of augmented crops of
every image (random position, flip and quarter turn, as the pair sampler draws
them) and for every image's embedding tiles; each cross-validation fold then
trains its head under the same contrastive loss on those vectors, drawing
class-balanced pairs with the same `PairSampler`. The tower this gives
(`tower_from_head`) is the Siamese tower trained on crops drawn from the bank,
and the embeddings computed from cached tile features equal the tower's
(tests/test_frozen.py checks both). One pass of the base serves every fold.
"""

import dataclasses

import keras
import numpy as np

from microrep.embed import iter_tile_batches
from microrep.losses import ContrastiveLoss
from microrep.model import L2Normalize, build_siamese, build_tower
from microrep.pairs import PairSampler, crops_from_plan, random_crop_plan


def crop_bank_plan(shapes, size, per_image, seed=0):
    """A pair-sampler plan (PLAN_FIELDS) of `per_image` random, augmented crops per image."""
    shapes = np.asarray(shapes, dtype=np.int64).reshape(-1, 2)
    index = np.repeat(np.arange(len(shapes)), per_image)
    return random_crop_plan(np.random.default_rng([seed, 7]), shapes, index, size)


class FrozenFeatures:
    """Pooled features of a frozen feature tower: a crop bank and the tiles of every image.

    `bank` is (n_images * per_image, d), crops of image i in rows
    i * per_image ... (i + 1) * per_image - 1; `tiles` is (n_images, grid**2, d).
    """

    def __init__(self, feature_tower, images, grid, per_image, seed=0, batch_size=64,
                 progress=False):
        size = int(feature_tower.input_shape[1])
        self.per_image = int(per_image)
        plan = crop_bank_plan([im.shape for im in images], size, self.per_image, seed)
        chunks = range(0, len(plan), batch_size)
        if progress:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc="crop features", unit="batch")
        self.bank = np.concatenate([
            np.asarray(feature_tower.predict_on_batch(crops_from_plan(images, plan[s:s + batch_size], size)),
                       dtype=np.float32) for s in chunks])
        tiles = [np.asarray(feature_tower.predict_on_batch(batch), dtype=np.float32)
                 for _, batch in iter_tile_batches(images, size, grid, batch_size)]
        self.tiles = np.concatenate(tiles).reshape(len(images), grid * grid, -1)

    @property
    def pooled(self):
        """Each image's features averaged over its tiles: the pretrained baseline."""
        return self.tiles.mean(axis=1)

    def bank_rows(self, images):
        """(len(images), per_image) bank rows of the given images."""
        return np.asarray(images)[:, None] * self.per_image + np.arange(self.per_image)[None, :]


def build_head(feature_dim, embedding_dim):
    """The tower's trainable part: projection and L2 normalisation, on pooled features."""
    features = keras.Input((feature_dim,), name="features")
    embedding = keras.layers.Dense(embedding_dim, name="projection")(features)
    embedding = L2Normalize(name="l2_normalize", dtype="float32")(embedding)
    return keras.Model(features, embedding, name="head")


def train_head(features, image_rows, labels, embedding_dim, epochs, pairs_per_epoch,
               batch_size, learning_rate, margin, seed=0):
    """Train a projection head under contrastive loss on bank crops of `image_rows` only.

    Pairs of images are drawn per epoch exactly as in full training
    (`PairSampler.epoch_pairs`); each side then takes one of its image's bank
    crops at random. Returns the trained head.
    """
    keras.utils.set_random_seed(seed)
    head = build_head(features.bank.shape[1], embedding_dim)
    siamese = build_siamese(head)
    siamese.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=ContrastiveLoss(margin))
    sampler = PairSampler(labels, [(1, 1)] * len(labels), 1, pairs_per_epoch, seed=seed)
    bank_rows = features.bank_rows(image_rows)
    for epoch in range(epochs):
        pairs, same = sampler.epoch_pairs(epoch)
        rng = np.random.default_rng([seed, epoch, 2])
        picks = rng.integers(0, features.per_image, pairs.shape)
        side_a = features.bank[bank_rows[pairs[:, 0], picks[:, 0]]]
        side_b = features.bank[bank_rows[pairs[:, 1], picks[:, 1]]]
        siamese.fit([side_a, side_b], same, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    return head


def embed_from_tiles(head, features, image_rows=None):
    """Each image's embedding: the head applied to every tile's features, averaged."""
    tiles = features.tiles if image_rows is None else features.tiles[np.asarray(image_rows)]
    count, per_image, dim = tiles.shape
    flat = tiles.reshape(-1, dim)
    # called directly, not through predict(): one small model per fold would
    # otherwise trace a new predict function each time
    vectors = np.concatenate([keras.ops.convert_to_numpy(head(flat[start:start + 4096]))
                              for start in range(0, len(flat), 4096)])
    return vectors.astype(np.float32).reshape(count, per_image, -1).mean(axis=1)


def tower_from_head(head, feature_tower, model_config):
    """The full embedding tower (uint8 crops in): `feature_tower`'s base, the head's projection.

    `model_config` gives the input size, VGG16 blocks and embedding size; the
    weights come from the two models, so the tower embeds exactly as
    `embed_from_tiles` does.
    """
    tower = build_tower(dataclasses.replace(model_config, weights="none", train_base=False))
    tower.get_layer("vgg16").set_weights(feature_tower.get_layer("vgg16").get_weights())
    tower.get_layer("projection").set_weights(head.get_layer("projection").get_weights())
    return tower
