"""Which tower embeds: a trained run, its head as training found it (--recipe-input), or
the pretrained VGG16's pooled features; and a frozen-base run's head on its feature cache.

Why here: every path that embeds (`embed`'s launchers, `search`'s queries, benchmarks)
chooses its model through these functions, so they agree on the vectors; a launcher only
runs the loop. It sits in `training/` because it loads run folders (`run_dir`).
"""

import dataclasses
import json
from pathlib import Path

import numpy as np

from microrep.config import TrainConfig, from_dict
from microrep.config.stages import is_random_weights, recipe_model_config
from microrep.data.images import grid_tiles
from microrep.embedding.features import image_keys, tile_features
from microrep.embedding.tiles import iter_embeddings
from microrep.embedding.towers import embed_tile_features, feature_tower_of, head_from_tower
from microrep.errors import ConfigError
from microrep.nn.backbone import dtype_policy, feature_layer_names, policy_for
from microrep.nn.layers import ResidualProjection
from microrep.nn.tower import build_feature_tower
from microrep.training.frozen import BANK_SEED, GRID
from microrep.training.run_dir import load_tower


def embedding_tower(config):
    """The tower an EmbedConfig asks for: a trained one, or the untrained VGG16's features."""
    if config.pretrained:
        if is_random_weights(config.model.weights):
            import keras

            keras.utils.set_random_seed(0)  # untrained weights: the same in every process
        with dtype_policy(policy_for(config.model.mixed_precision)):
            return build_feature_tower(config.model)
    tower = load_tower(config.model_path)
    return without_correction(tower, config.model_path) if config.recipe_input else tower


def without_correction(tower, model_path):
    """--recipe-input: the tower with its residual head's learned correction set to zero, so it
    embeds the standardised features the head started from (its statistics are the run's)."""
    corrections = [layer for layer in tower.layers if isinstance(layer, ResidualProjection)]
    if not corrections:
        raise ConfigError(f"--recipe-input needs a run with a residual head; {model_path} has "
                          "another head, whose start is random, not the recipe's input")
    for layer in corrections:
        layer.set_weights([np.zeros_like(weight) for weight in layer.get_weights()])
    return tower


def pretrained_cache_embedder(config, tower, log, chunk=256, feature_bank=None):
    """`embed(images)` for embed_part that reads `embed --pretrained`'s features from the
    feature cache `train --preset cpu` filled (its block4+block5 tower at the same input size,
    weights and precision: block4 is its first tapped layer), running VGG16 only for the
    chunks whose images are not all there; None where the cache cannot serve (another
    layer, pooling or tiling, random weights, or no cache)."""
    model = config.model
    cache = Path(config.feature_cache).expanduser() if config.feature_cache else None
    if (cache is None or not cache.is_dir() or feature_layer_names(model) != ["block4_conv3"]
            or config.grid != GRID or is_random_weights(model.weights)):
        return None  # (the pooling keys the cache: features pooled another way are not found)
    recipe = dataclasses.replace(recipe_model_config(), input_size=model.input_size,
                                 weights=model.weights, mixed_precision=model.mixed_precision,
                                 pooling=model.pooling)
    with dtype_policy(policy_for(model.mixed_precision)):
        recipe_tower = build_feature_tower(recipe)
    width, size = int(tower.output_shape[-1]), int(tower.input_shape[1])
    bank = (feature_bank or TrainConfig().feature_bank, BANK_SEED)

    def embed(images):
        said = False
        for rows, decoded in decoded_chunks(images, chunk):
            keys = image_keys(decoded)
            with dtype_policy(policy_for(model.mixed_precision)):  # the precision keys the cache
                tiles = tile_features(recipe_tower, keys, lambda i: grid_tiles(decoded[i], size, GRID),
                                      GRID, str(cache), bank=bank) \
                    if cached_everywhere(recipe_tower, keys, cache, bank) else None
            if tiles is None:
                for local, vectors in iter_embeddings(tower, decoded, GRID, progress=True):
                    yield [rows[i] for i in local], vectors
                continue
            if not said:
                log(f"block4 tile features read from the feature cache {cache}, where training "
                    "computed them for these images (VGG16 runs for the others)")
                said = True
            yield rows, tiles[..., :width].mean(axis=1)

    return embed


def cached_everywhere(feature_tower, keys, cache, bank):
    """True when every image (its key) has tile features in the cache for this tower."""
    from microrep.embedding.features import cache_entries, is_cached

    own = cache_entries(feature_tower, keys, GRID, "tiles")
    trained = cache_entries(feature_tower, keys, GRID, f"{bank[0]}-{bank[1]}")
    return all(is_cached(cache, a) or is_cached(cache, b) for a, b in zip(own, trained))


def frozen_run(config):
    """The TrainConfig of the run in --model-path when its frozen base's feature cache can
    serve this embedding (a frozen base, a cache, the tiling of its feature pass), else None."""
    settings = Path(config.model_path) / "config.json"
    if config.pretrained or not settings.is_file():
        return None
    run = from_dict(TrainConfig, json.loads(settings.read_text()), str(settings))
    if run.model.train_base or not run.feature_cache or config.grid != GRID:
        return None
    return run


class CachedHead:
    """A frozen-base run embedding from cached tile features: VGG16 runs only for images the
    run's feature cache lacks (and caches them), then the head; equal to the whole tower."""

    def __init__(self, tower, run):
        self.policy = policy_for(run.model.mixed_precision)
        with dtype_policy(self.policy):  # as in training: the precision keys the cache
            self.feature_tower = feature_tower_of(tower, run.model)
        self.head = head_from_tower(tower, int(self.feature_tower.output_shape[-1]), run.model)
        self.cache = str(Path(run.feature_cache).expanduser())
        self.bank = (run.feature_bank, BANK_SEED)

    def embed(self, keys, tiles_of, progress=False):
        """(len(keys), embedding) of images known by their keys; `tile_features`' arguments."""
        with dtype_policy(self.policy):
            tiles = tile_features(self.feature_tower, keys, tiles_of, GRID, self.cache,
                                  bank=self.bank, progress=progress)
        return embed_tile_features(self.head, tiles)


def cached_embedder(tower, run, log, chunk=256):
    """`embed(images)` for embed_part: a CachedHead's embeddings, chunk by chunk, so memory
    stays bounded."""
    cached = CachedHead(tower, run)
    size = int(cached.feature_tower.input_shape[1])
    log(f"frozen-base run: VGG16 tile features are read from its feature cache {cached.cache} "
        "where present (computed and added there for images it lacks); then only the head runs")

    def embed(images):
        for rows, decoded in decoded_chunks(images, chunk):
            yield rows, cached.embed(image_keys(decoded),
                                     lambda index: grid_tiles(decoded[index], size, GRID), progress=True)

    return embed


def decoded_chunks(images, chunk):
    """(rows, their decoded images) of `chunk` images at a time: memory stays bounded."""
    for start in range(0, len(images), chunk):
        rows = list(range(start, min(start + chunk, len(images))))
        yield rows, [images[i] for i in rows]
