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
from microrep.config.stages import AUTO_VIEW, ViewConfig, is_random_weights, recipe_model_config
from microrep.data.views import View
from microrep.embedding.features import cache_entries, image_keys, is_cached, tile_features
from microrep.embedding.pieces import any_size_tower, mean_head_outputs
from microrep.embedding.pool_fit import load_pooling_state
from microrep.embedding.tiles import iter_embeddings
from microrep.embedding.towers import feature_tower_of, head_from_tower
from microrep.errors import ConfigError
from microrep.nn.backbone import dtype_policy, feature_layer_names, policy_for
from microrep.nn.layers import ResidualProjection
from microrep.nn.tower import build_feature_tower
from microrep.training.frozen import BANK_SEED
from microrep.training.run_dir import load_tower


def embedding_tower(config, archive=None):
    """The tower an EmbedConfig asks for: a trained one, or the untrained VGG16's features
    (with the fitted state of its pooling that `archive`, an embeddings folder, keeps)."""
    if config.pretrained:
        if is_random_weights(config.model.weights):
            import keras

            keras.utils.set_random_seed(0)  # untrained weights: the same in every process
        with dtype_policy(policy_for(config.model.mixed_precision)):
            tower = build_feature_tower(config.model)
        if archive is not None:
            load_pooling_state(tower, archive)
        return tower
    tower = load_tower(config.model_path)
    return without_correction(tower, config.model_path) if config.recipe_input else tower


def run_settings(model_path):
    """The TrainConfig recorded in a run folder, or None (a bare .keras file, no run).
    A run recorded before views existed saw its images as a 3 x 3 tiling."""
    settings = Path(model_path) / "config.json"
    if not settings.is_file():
        return None
    values = json.loads(settings.read_text())
    values.setdefault("image_view", {"view": "tiles"})
    return from_dict(TrainConfig, values, str(settings))


def embedding_view(config, tower):
    """The View an EmbedConfig or ExportConfig embeds with: `--view auto` takes the trained
    run's own (the default view for --pretrained or a bare .keras file); a view given that
    differs from the run's is refused, since the head was trained on what its view shows."""
    size = int(tower.input_shape[1])
    asked = config.image_view
    run = None if getattr(config, "pretrained", False) else run_settings(config.model_path)
    own = View.of(run.image_view, size) if run is not None else None
    if asked.view == AUTO_VIEW:
        return own or View.of(dataclasses.replace(ViewConfig(), window=asked.window), size)
    view = View.of(asked, size)
    if own is not None and view != own:
        raise ConfigError(f"{config.model_path} was trained seeing {own.words()}, not "
                          f"{view.words()}; embed with --view auto (its own view), or train a "
                          "run with that view")
    return view


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


def pretrained_cache_embedder(config, tower, view, log, chunk=256, feature_bank=None):
    """`embed(images)` for embed_part that reads `embed --pretrained`'s features from the
    feature cache `train --preset cpu` filled (its block4+block5 tower at the same input size,
    weights, precision and view: block4 is its first tapped layer), running VGG16 only for
    the chunks whose images are not all there; None where the cache cannot serve (another
    layer or pooling, random weights, or no cache)."""
    model = config.model
    cache = Path(config.feature_cache).expanduser() if config.feature_cache else None
    if (cache is None or not cache.is_dir() or feature_layer_names(model) != ["block4_conv3"]
            or is_random_weights(model.weights)):
        return None  # (the pooling keys the cache: features pooled another way are not found)
    recipe = dataclasses.replace(recipe_model_config(), input_size=model.input_size,
                                 weights=model.weights, mixed_precision=model.mixed_precision,
                                 pooling=model.pooling)
    with dtype_policy(policy_for(model.mixed_precision)):
        recipe_tower = build_feature_tower(recipe, any_size=view.kind == "frame")
    width = int(tower.output_shape[-1])
    bank = (feature_bank or TrainConfig().feature_bank, BANK_SEED)

    def embed(images):
        said = False
        for rows, decoded in decoded_chunks(images, chunk):
            keys = image_keys(decoded)
            with dtype_policy(policy_for(model.mixed_precision)):  # the precision keys the cache
                pieces = tile_features(recipe_tower, keys, lambda i: decoded[i], view, str(cache),
                                       bank=bank) \
                    if cached_everywhere(recipe_tower, keys, view, cache, bank) else None
            if pieces is None:
                for local, vectors in iter_embeddings(tower, decoded, view, progress=True):
                    yield [rows[i] for i in local], vectors
                continue
            if not said:
                log(f"block4 features read from the feature cache {cache}, where training "
                    "computed them for these images (VGG16 runs for the others)")
                said = True
            yield rows, pieces[..., :width].mean(axis=1)

    return embed


def cached_everywhere(feature_tower, keys, view, cache, bank):
    """True when every image (its key) has piece features in the cache for this tower and view."""
    own = cache_entries(feature_tower, keys, view, "tiles")
    trained = cache_entries(feature_tower, keys, view, f"{bank[0]}-{bank[1]}")
    return all(is_cached(cache, a) or is_cached(cache, b) for a, b in zip(own, trained))


def frozen_run(config):
    """The TrainConfig of the run in --model-path when its frozen base's feature cache can
    serve this embedding (a frozen base and a cache), else None."""
    run = None if config.pretrained else run_settings(config.model_path)
    if run is None or run.model.train_base or not run.feature_cache:
        return None
    return run


class CachedHead:
    """A frozen-base run embedding from cached piece features: VGG16 runs only for images the
    run's feature cache lacks (and caches them), then the head; equal to the whole tower."""

    def __init__(self, tower, run, view):
        self.policy, self.view = policy_for(run.model.mixed_precision), view
        with dtype_policy(self.policy):  # as in training: the precision keys the cache
            self.feature_tower = feature_tower_of(tower, run.model)
            if view.kind == "frame":
                self.feature_tower = any_size_tower(self.feature_tower)
        self.head = head_from_tower(tower, int(self.feature_tower.output_shape[-1]), run.model)
        self.cache = str(Path(run.feature_cache).expanduser())
        self.bank = (run.feature_bank, BANK_SEED)

    def embed(self, keys, image_of, progress=False):
        """(len(keys), embedding) of images known by their keys; `tile_features`' arguments."""
        with dtype_policy(self.policy):
            pieces = tile_features(self.feature_tower, keys, image_of, self.view, self.cache,
                                   bank=self.bank, progress=progress)
        return mean_head_outputs(self.head, pieces)


def cached_embedder(tower, run, view, log, chunk=256):
    """`embed(images)` for embed_part: a CachedHead's embeddings, chunk by chunk, so memory
    stays bounded."""
    cached = CachedHead(tower, run, view)
    log(f"frozen-base run: VGG16 features are read from its feature cache {cached.cache} "
        "where present (computed and added there for images it lacks); then only the head runs")

    def embed(images):
        for rows, decoded in decoded_chunks(images, chunk):
            yield rows, cached.embed(image_keys(decoded), lambda index: decoded[index], progress=True)

    return embed


def decoded_chunks(images, chunk):
    """(rows, their decoded images) of `chunk` images at a time: memory stays bounded."""
    for start in range(0, len(images), chunk):
        rows = list(range(start, min(start + chunk, len(images))))
        yield rows, [images[i] for i in rows]
