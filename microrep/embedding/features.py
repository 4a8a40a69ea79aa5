"""Frozen-base features: VGG16's pooled features of a crop bank and of every tile, cached.

Why: with the base frozen (`--no-train-base`, as `reproduce --quick` runs),
only the projection head learns, and the base's pooled features of a crop
never change. So the base runs once per crop, for a bank of augmented crops of
every image (random position, flip and quarter turn, as the pair sampler draws
them) and for every image's embedding tiles; training (`microrep.training.frozen`,
for `microrep train` and for each fold of `reproduce`) then fits only the head
on those vectors, under the loss and pair sampling its TrainConfig asks for. The tower this gives
(`tower_from_head`) is the Siamese tower trained on crops drawn from the bank,
and the embeddings computed from cached tile features equal the tower's
(tests/test_frozen.py checks both). One pass of the base serves every fold.
"""

import dataclasses
import hashlib
import time
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm  # text bars: no ipywidgets needed in a notebook

from microrep._version import __version__
from microrep.embedding.pieces import as_view, features_of, piece_features
from microrep.embedding.tiles import duration_words
from microrep.fileio import atomic_path
from microrep.nn.pooling import pooled_layers
from microrep.pairs.samplers import crops_from_plan, random_crop_plan


def image_keys(images):
    """A content hash of each image: what a cached feature belongs to, wherever it sits."""
    return [hashlib.sha256(np.ascontiguousarray(im).tobytes() + str(im.shape).encode()).hexdigest()
            for im in images]


def crop_bank_plan(shapes, size, per_image, seed=0, keys=None):
    """A pair-sampler plan (PLAN_FIELDS) of `per_image` random, augmented crops per image.

    Each image's crops depend on the seed and its key (its content hash, or its
    position when no keys are given) only, so cached crops stay valid whatever
    set or order the image is used in.
    """
    shapes = np.asarray(shapes, dtype=np.int64).reshape(-1, 2)
    keys = range(len(shapes)) if keys is None else [int(k[:15], 16) for k in keys]
    plans = []
    for index, key in enumerate(keys):
        rng = np.random.default_rng([seed, 7, key])
        plans.append(random_crop_plan(rng, shapes, np.full(per_image, index), size))
    return np.concatenate(plans) if plans else np.zeros((0, 5), dtype=np.int64)


def model_key(feature_tower):
    """A hash of a feature tower's weights, pooled layers (and how they pool) and precision
    (keys the feature cache).

    Layer names that Keras numbers per process (inputs) are left out, so the same
    tower built twice gets the same key. The pooling layers' classes are in it, so maps
    pooled one way (mean) are never served where another (max) is asked for.
    """
    pooled = [(name, type(feature_tower.get_layer(name)).__name__)
              for name in pooled_layers(feature_tower)]
    digest = hashlib.sha256(repr((__version__, pooled, feature_tower.input_shape,
                                  feature_tower.output_shape)).encode())
    digest.update(keras.config.dtype_policy().name.encode())
    for weight in feature_tower.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


@dataclasses.dataclass
class FrozenFeatures:
    """Pooled features of a frozen feature tower: a crop bank and the tiles of every image.

    `bank` is (n_images * per_image, d), crops of image i in rows
    i * per_image ... (i + 1) * per_image - 1; `tiles` is (n_images, pieces, d), the
    pieces of each image's view (a grid's tiles, a whole frame's scales);
    `feature_tower` is the model that computed them (its VGG16 weights go into the tower).
    """

    bank: np.ndarray
    tiles: np.ndarray
    per_image: int
    feature_tower: object = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def pooled(self):
        """Each image's features averaged over its tiles: the pretrained baseline."""
        return self.tiles.mean(axis=1)

    def bank_rows(self, images):
        """(len(images), per_image) bank rows of the given images."""
        return np.asarray(images)[:, None] * self.per_image + np.arange(self.per_image)[None, :]

    def subset(self, images):
        """The features of some images only, in the given order."""
        images = np.asarray(images, dtype=np.int64)
        return FrozenFeatures(self.bank[self.bank_rows(images).ravel()], self.tiles[images],
                              self.per_image, self.feature_tower)


def compute_frozen_features(feature_tower, images, grid, per_image, seed=0, progress=False,
                            cache_dir=None, log=None, on_image=None):
    """FrozenFeatures of `images`: the base runs once per crop, or not at all for cached images.

    With `per_image` 0 the bank is the view's own pieces (a frame view's scales, a
    tiling's tiles): the head then trains on exactly what it embeds, and the base runs
    only over the view.
    `grid` is a View (data.views: which pieces of each image become its `tiles` rows)
    or, as before views existed, the side of a tile grid. With a `frame` view the
    bank's crops are drawn from the image at each of the view's scales in turn, so the
    head trains on the pixel sizes it will embed.

    Image by image: an image's crops are one batch and its tiles another, so its
    features never depend on which images are computed with it. With `cache_dir`,
    each image's features are stored (written whole, then renamed) as soon as they
    are computed, under a key made of the tower's weights and precision, the
    image's bytes and the crop plan: an interrupted pass loses at most the image in
    hand, and a rerun (another split, a resumed run, another head) computes only the
    images not yet cached. `log` gets one line with the time the pass will take on
    this machine, measured on its second image; `on_image(done, total)` follows each.
    """
    keys = image_keys(images)
    grid = as_view(grid, feature_tower)
    # per_image 0: the view's own pieces are the bank (stored once, as embedding stores them)
    entries = cache_entries(feature_tower, keys, grid, f"{per_image}-{seed}" if per_image else "tiles")
    cache = Path(cache_dir) if cache_dir else None
    found = {i: _load(_find(cache, e)) for i, e in enumerate(entries) if _find(cache, e) is not None}
    todo = [i for i in range(len(images)) if i not in found]
    bar = tqdm(total=len(images), initial=len(found), desc="VGG16 features", unit="image",
               disable=not progress or not todo)
    try:
        for count, index in enumerate(todo):
            started = time.perf_counter()
            found[index] = stored_or_computed(cache, entries[index], lambda: _compute_one(
                feature_tower, images[index], keys[index], grid, per_image, seed) if per_image else
                {"tiles": piece_features(feature_tower, images[index], grid)})
            if count == 1 and log is not None:  # the first image also builds the model's graph
                log(estimate_line(len(todo), len(images) - len(todo),
                                  time.perf_counter() - started, cache))
            bar.update(1)
            if on_image is not None:
                on_image(len(found), len(images))
    finally:
        bar.close()
    tiles = np.stack([found[i]["tiles"] for i in range(len(images))])
    if not per_image:
        return FrozenFeatures(tiles.reshape(-1, tiles.shape[-1]), tiles, grid.count)
    return FrozenFeatures(np.concatenate([found[i]["bank"] for i in range(len(images))]), tiles,
                          int(per_image))


def cache_entries(feature_tower, keys, grid, what):
    """Cache entry names of images (their keys) for a feature tower, tiling and `what` is stored."""
    view = as_view(grid, feature_tower)
    setting = f"{model_key(feature_tower)}-{view.size}-{view.key}-{what}"
    return [hashlib.sha256(f"{setting}-{k}".encode()).hexdigest()[:32] for k in keys]


def is_cached(cache, entry):
    """True when `cache` holds an entry (nested, or flat as earlier versions wrote it)."""
    return _find(Path(cache), entry) is not None


def _nested(cache, entry):
    """Where an entry is written: a sub-folder per first two hex digits (256 folders, so an
    archive of millions never puts millions of files in one folder)."""
    return cache / entry[:2] / f"{entry}.npz"


def _find(cache, entry):
    """The stored file of an entry (nested, or flat as earlier versions wrote it), or None."""
    if cache is None or entry is None:
        return None
    for path in (_nested(cache, entry), cache / f"{entry}.npz"):
        if path.is_file():
            return path
    return None


def tile_features(feature_tower, keys, image_of, view, cache_dir, bank=None, progress=False):
    """(len(keys), pieces, d) piece features of a frozen base under `view`, as embedding
    needs them.

    Images are known by their keys (`image_keys`) and `image_of(i)`, image i's uint8
    pixels, asked for only when the cache lacks its features. They are read from the
    cache where training's feature pass left them (`bank`: its (per_image, seed), whose
    entries hold the pieces too) or an earlier embedding did; computed otherwise (pieces
    only, no crop bank) and cached, one entry per image.
    """
    cache = Path(cache_dir)
    view = as_view(view, feature_tower)
    own = cache_entries(feature_tower, keys, view, "tiles")
    trained = cache_entries(feature_tower, keys, view, f"{bank[0]}-{bank[1]}") if bank else [None] * len(keys)
    pieces = []
    for index, (entry, bank_entry) in enumerate(tqdm(list(zip(own, trained)), desc="VGG16 features",
                                                     unit="image", disable=not progress)):
        pieces.append(stored_or_computed(cache, entry, lambda: {"tiles": piece_features(
            feature_tower, image_of(index), view)}, also=bank_entry)["tiles"])
    return np.stack(pieces) if pieces else np.zeros((0, view.count, int(feature_tower.output_shape[-1])),
                                                    np.float32)


def stored_or_computed(cache, entry, compute, also=None):
    """The arrays of one cache entry: read from `cache` (its own entry, or `also`, an entry
    that holds them too), else `compute()`d and stored under `entry` (none without a cache).
    The one lookup-compute-store step of every feature pass."""
    stored = _find(cache, entry) or _find(cache, also)
    if stored is not None:
        return _load(stored)
    arrays = compute()
    if cache is not None:
        _store(_nested(cache, entry), arrays)
    return arrays


def estimate_line(todo, cached, seconds_each, cache):
    """'VGG16 features: 206 image(s) to compute (12 cached), about 31 min on this machine ...'."""
    kept = (f"; each image is cached in {cache} as soon as it is done, so an interrupted pass "
            "resumes where it stopped") if cache is not None else ""
    return (f"VGG16 features: {todo} image(s) to compute ({cached} cached), "
            f"{duration_words(todo * seconds_each)} on this machine (measured on the second){kept}")


def _load(path):
    """One cached entry, read whole and closed (an open NpzFile per image would hold a file
    descriptor each, and archives of thousands of images would run out of them)."""
    with np.load(path) as stored:
        return {name: stored[name] for name in stored.files}


def _store(path, arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def _compute_one(feature_tower, image, key, view, per_image, seed):
    """{'bank': (per_image, d), 'tiles': (pieces, d)} of one image: its crops, then its view."""
    return {"bank": _bank_features(feature_tower, image, key, view, per_image, seed),
            "tiles": piece_features(feature_tower, image, view)}


def _bank_features(feature_tower, image, key, view, per_image, seed):
    """(per_image, d): the bank's crops, at native resolution or spread over a frame view's
    scales (crop j from scale j mod scales; a scale that leaves the image smaller than a
    crop is skipped)."""
    size = view.size
    scaled = [image] if view.kind != "frame" else \
        [im for im in view.pieces(image) if min(im.shape) >= size] or [image]
    counts = [len(range(j, per_image, len(scaled))) for j in range(len(scaled))]
    crops = [crops_from_plan([im], crop_bank_plan([im.shape], size, count, seed + j, [key]), size)
             for j, (im, count) in enumerate(zip(scaled, counts)) if count]
    order = np.argsort(np.concatenate([np.arange(j, per_image, len(scaled))
                                       for j, count in enumerate(counts) if count]), kind="stable")
    return features_of(feature_tower, np.concatenate(crops))[order]
