"""Training on a frozen VGG16 base: the head learns on features computed once and cached.

Why: with the base frozen (the default, and `--preset cpu`), a crop's pooled
VGG16 features never change, so the expensive part (VGG16 at 224 px, full
resolution micrographs) runs once per crop of a bank of augmented crops and
once per embedding tile, and is cached on disk; the head then trains in
seconds. Each epoch's pairs are drawn anew (a share of them mined as hard
pairs with the head as it is), so the loop runs one Keras `fit` per epoch and
drives the callbacks every run shares (`microrep.training.callbacks`). The
tower written at the end is the whole model (uint8 crops in), so `embed` and
`export` use it like any other.
"""

import dataclasses
import time
from pathlib import Path

import keras
import numpy as np

from microrep._version import __version__
from microrep.config.stages import AUTO_VIEW
from microrep.data.views import View
from microrep.errors import ConfigError
from microrep.embedding.features import compute_frozen_features
from microrep.embedding.towers import embed_from_tiles, head_outputs, tower_from_head
from microrep.fileio import atomic_path, write_json
from microrep.nn.backbone import dtype_policy, policy_for
from microrep.embedding.pool_fit import fit_poolings
from microrep.nn.tower import build_feature_tower, build_head, build_siamese
from microrep.pairs.mining import hard_pairs
from microrep.pairs.relations import similarity_relations, validation_split
from microrep.pairs.samplers import sampler_for
from microrep.registry import HEADS, LOSSES
from microrep.training.callbacks import (BestEpoch, EpochLog, ValidationScores, check_finite,
                                         epoch_callbacks)
from microrep.training.compile import compile_siamese
from microrep.training.run_dir import STATE, TOWER, TrainResult

BANK_SEED = 0
#: Bank crops searched for hard pairs per epoch, at most (see mix_in_hard_pairs).
MINED_CROPS = 20000


def run_view(config):
    """The View a TrainConfig's run sees its images through (its --view, --scales, --grid)."""
    if config.image_view.view == AUTO_VIEW:
        raise ConfigError("--view auto follows a trained run; training chooses its own view: "
                          "'frame' or 'tiles'")
    return View.of(config.image_view, config.model.input_size)


def frozen_features(config, images, log, view=None):
    """FrozenFeatures of every image (cached), with the feature tower they came from.

    `view` is a View (data.views) of each image (default: the run's own), or the side of a
    tile grid."""
    policy = policy_for(config.model.mixed_precision)
    cache = str(Path(config.feature_cache).expanduser()) if config.feature_cache else None
    view = run_view(config) if view is None else view if isinstance(view, View) else \
        View("tiles", config.model.input_size, view)
    started = time.time()
    with dtype_policy(policy):
        feature_tower = build_feature_tower(config.model, any_size=view.kind == "frame")
        # a pooling with state (VLAD, Gram, NetVLAD) is fitted on these images first: its
        # state is in the tower's weights, so it keys the cache and is saved with the run
        fit_poolings(feature_tower, images, view, seed=BANK_SEED, log=log)
        # the bank's crops depend on each image alone (not on --seed), so the cache
        # serves every run on the same images: other seeds, splits, heads
        features = compute_frozen_features(feature_tower, images, view, config.feature_bank,
                                           BANK_SEED, progress=True, cache_dir=cache, log=log)
    crops = f"{config.feature_bank} crops and " if config.feature_bank else ""
    log(f"VGG16 features of {len(images)} images ({crops}{view.words()} each, "
        f"{policy}) ready in {time.time() - started:.0f} s" + (f"; cached in {cache}" if cache else ""))
    return dataclasses.replace(features, feature_tower=feature_tower)


def bank_sampler(config, labels, relations, reference=None):
    """The run's pair sampler over images whose crops are bank rows (no cropping, no augmenting)."""
    return sampler_for(config, labels, relations, [(1, 1)] * len(labels), 1,
                       config.pairs.pairs_per_epoch, augment=False, reference=reference)


def bank_pairs(features, image_rows, sampler, epoch, seed=0):
    """([side_a, side_b], targets) of one epoch: the sampler's image pairs, a bank crop each.

    The sampler indexes `image_rows` (positions in `features`); each side takes one
    of its image's cached crops at random.
    """
    pairs, target = sampler.epoch_pairs(epoch)
    rng = np.random.default_rng([seed, epoch, 2])
    picks = rng.integers(0, features.per_image, pairs.shape)
    bank_rows = features.bank_rows(np.asarray(image_rows))
    return ([features.bank[bank_rows[pairs[:, 0], picks[:, 0]]],
             features.bank[bank_rows[pairs[:, 1], picks[:, 1]]]], target)


def mix_in_hard_pairs(config, head, features, train_rows, labels, relations, sides, target, epoch):
    """The epoch's pairs with a share (`config.hard_pairs`) replaced by hard ones.

    Hard partners are found among the training images' bank crops with the head
    as it is now (`microrep.pairs.mining.hard_pairs`), at random places in the epoch.
    """
    rng = np.random.default_rng([config.seed, epoch, 3])
    count = int(round(config.hard_pairs * len(target)))
    rows = features.bank_rows(np.asarray(train_rows)).ravel()
    # a large archive is mined in a random part of its bank each epoch, which bounds the
    # head passes and the distance blocks of microrep.pairs.mining
    searched = np.sort(rng.choice(len(rows), MINED_CROPS, replace=False)) if len(rows) > MINED_CROPS \
        else np.arange(len(rows))
    bank = features.bank[rows[searched]]
    embeddings = head_outputs(head, bank)
    per_crop = lambda values: np.repeat(np.asarray(values), features.per_image)[searched]  # noqa: E731
    pairs, levels = hard_pairs(embeddings, per_crop(labels), per_crop(relations),
                               per_crop(np.arange(len(train_rows))), count, rng)
    places = rng.choice(len(target), count, replace=False)
    sides = [side.copy() for side in sides]
    target = np.array(target, dtype=np.float32)
    sides[0][places], sides[1][places] = bank[pairs[:, 0]], bank[pairs[:, 1]]
    entry = LOSSES[config.similarity]
    crop_relations = per_crop(relations)
    target[places] = entry.pair_targets(levels, crop_relations[pairs[:, 0]], crop_relations[pairs[:, 1]],
                                        entry.coordinates(relations) if entry.coordinates else None)
    return sides, target


def run_epochs(siamese, callbacks, config, epoch_pairs, log):
    """One `fit` per epoch on `epoch_pairs(epoch)`, the shared callbacks around each; the history."""
    history = keras.callbacks.History()
    callbacks = keras.callbacks.CallbackList([*callbacks, history], model=siamese)
    callbacks.on_train_begin()
    for epoch in range(config.epochs):
        callbacks.on_epoch_begin(epoch)
        sides, target = epoch_pairs(epoch)
        fitted = siamese.fit(sides, target, batch_size=config.batch_size, epochs=1, shuffle=False,
                             verbose=0)
        callbacks.on_epoch_end(epoch, {"loss": float(fitted.history["loss"][-1])})
        if siamese.stop_training:
            if config.patience and np.isfinite(history.history["loss"][-1]):
                log(f"stopped: no improvement for {config.patience} epochs")
            break
    callbacks.on_train_end()
    check_finite(history.history.get("loss", []))
    return history.history


def start_head(config, features, train_rows):
    """The head as training finds it: built with the run's seed and prepared on the training
    crops' features. For the residual head that is the standardised pretrained features with
    a zero correction: the recipe's own input, so scoring it untrained is the like-for-like
    baseline that separates what training adds from what the input already holds."""
    keras.utils.set_random_seed(config.seed)
    head = build_head(features.bank.shape[1], config.model)
    HEADS[config.model.head].prepare(head, features.subset(train_rows).bank)
    return head


def fit_head(config, features, labels, relations, log, run_dir=None):
    """Train the head on the training samples; returns (head at its best epoch, history).

    With `run_dir`, each epoch is logged to its training_log.csv.
    The best epoch is the one of the highest validation MAP@R (with --val-fraction),
    else of the lowest training loss.
    """
    train_rows, val_rows = validation_split(labels, relations, config.val_fraction, config.seed)
    head = start_head(config, features, train_rows)
    siamese = compile_siamese(build_siamese(head), config)
    sampler = bank_sampler(config, labels[train_rows], relations[train_rows])
    validation = None
    if len(val_rows):
        val_sampler = bank_sampler(dataclasses.replace(config, seed=config.seed + 1),
                                   labels[val_rows], relations[val_rows], relations[train_rows])
        validation = ValidationScores(bank_pairs(features, val_rows, val_sampler, 0, config.seed + 1),
                                      labels[val_rows], lambda: embed_from_tiles(head, features, val_rows))
    kept = {"weights": head.get_weights()}
    best = BestEpoch(*(("val_map_at_r", "max") if validation else ("loss", "min")),
                     keep=lambda epoch, value: kept.update(weights=head.get_weights()))
    callbacks = epoch_callbacks(config, run_dir and Path(run_dir), 0, validation, best,
                                own=[EpochLog(config.epochs, log)])

    def epoch_pairs(epoch):
        sides, target = bank_pairs(features, train_rows, sampler, epoch, config.seed)
        if config.hard_pairs and epoch > 0:
            sides, target = mix_in_hard_pairs(config, head, features, train_rows, labels[train_rows],
                                              relations[train_rows], sides, target, epoch)
        return sides, target

    history = run_epochs(siamese, callbacks, config, epoch_pairs, log)
    head.set_weights(kept["weights"])
    return head, history


def train_on_frozen_base(config, dataset, run_dir, log=print, features=None):
    """Train a TrainConfig with a frozen base on `dataset`; return a TrainResult.

    `features`: the dataset's FrozenFeatures when the caller has them (a fold or
    split of a set whose features were computed once), else computed (cached).
    Writes the run folder's training_log.csv, state.json and tower.keras.
    """
    features = features if features is not None else frozen_features(config, dataset.images(), log)
    relations = similarity_relations(config, dataset)
    head, history = fit_head(config, features, dataset.labels, relations, log, run_dir)
    tower = tower_from_head(head, features.feature_tower, config.model)
    with atomic_path(run_dir / TOWER) as tmp:
        tower.save(tmp)
    losses = history.get("loss", [])
    write_json(run_dir / STATE, {"epochs_completed": config.epochs, "epochs_run": len(losses),
                                 "loss": losses[-1] if losses else None,
                                 "frozen_base": True, "microrep_version": __version__})
    return TrainResult(run_dir, tower, history, config.epochs)
