"""Train on a frozen VGG16 base: the head learns on features computed once and cached.

Why: with the base frozen (the default, and `--preset cpu`), a crop's pooled
VGG16 features never change, so the expensive part (VGG16 at 224 px, full
resolution micrographs) runs once per crop of a bank of augmented crops and
once per embedding tile, and is cached on disk; the head (standardised
features plus a residual correction, L2-normalised) then trains in seconds
under the graded contrastive loss. Each epoch can be validated on held-out
samples (loss and MAP@R), and the best epoch's head is kept. The tower written
at the end is the whole model (uint8 crops in), so `embed` and `export` use it
like any other.
"""

import dataclasses
import math
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from microrep.analysis.retrieval import retrieval_metrics
from microrep.errors import DataError
from microrep.fileio import atomic_path, write_json, write_text
from microrep.frozen import (bank_pairs, build_head, compute_frozen_features, embed_from_tiles,
                             head_outputs, tower_from_head)
from microrep.losses import ContrastiveLoss, GradedContrastiveLoss
from microrep.mining import hard_pairs
from microrep.model import build_feature_tower, build_siamese, dtype_policy, mixed_policy_name
from microrep.pairs import GradedPairSampler, PairSampler

BANK_SEED = 0
#: Bank crops searched for hard pairs per epoch, at most (see mix_in_hard_pairs).
MINED_CROPS = 20000


def pair_relations(table):
    """What makes two images 'the same sample': their processing condition where known, else sample."""
    from microrep.data.tasks import processing_condition

    needed = ("anneal_temperature", "anneal_time", "cool_method")
    if all(column in table.columns for column in needed) and table[list(needed)].notna().all().all():
        return processing_condition(table).astype(str).to_numpy()
    return table["group"].astype(str).to_numpy()


def similarity_relations(config, dataset):
    """Per image, what counts as 'the same sample' for pairs and validation splits."""
    return pair_relations(dataset.table) if config.similarity == "graded" else dataset.groups


def validation_split(labels, groups, fraction, seed=0):
    """(training positions, validation positions): whole samples held out, every class kept.

    Samples are drawn at random until `fraction` of the images are held out; a
    sample is not taken when its class would be left with fewer than two
    training images.
    """
    labels, groups = np.asarray(labels).astype(str), np.asarray(groups).astype(str)
    everything = np.arange(len(labels))
    if fraction <= 0:
        return everything, everything[:0]
    rng = np.random.default_rng([seed, 11])
    held = np.zeros(len(labels), dtype=bool)
    for group in rng.permutation(np.unique(groups)):
        if held.mean() >= fraction:
            break
        members = groups == group
        left = pd.Series(labels[~held & ~members]).value_counts()
        if all(left.get(label, 0) >= 2 for label in np.unique(labels[members])):
            held |= members
    if not held.any() or len(np.unique(labels[held])) < 2:
        raise DataError(f"--val-fraction {fraction}: no sample-disjoint validation set with two "
                        "classes is possible here; lower or drop --val-fraction")
    return everything[~held], everything[held]


def pair_sampler(config, labels, relations, count):
    """The graded or the classic pair sampler of a TrainConfig, over `count` images."""
    if config.similarity == "graded":
        return GradedPairSampler(labels, relations, [(1, 1)] * count, 1, config.pairs.pairs_per_epoch,
                                 augment=False, seed=config.seed)
    return PairSampler(labels, [(1, 1)] * count, 1, config.pairs.pairs_per_epoch,
                       config.pairs.positive_fraction, augment=False, seed=config.seed)


def pair_loss(config):
    if config.similarity == "graded":
        return GradedContrastiveLoss(config.margin, config.same_class_within,
                                     config.same_sample_within, config.same_class_beyond)
    return ContrastiveLoss(config.margin)


def frozen_features(config, images, log, grid=3):
    """FrozenFeatures of every image (cached), and the feature tower they came from."""
    model = config.model
    policy = mixed_policy_name() if model.mixed_precision else "float32"
    with dtype_policy(policy):
        feature_tower = build_feature_tower(model.input_size, model.weights, model.vgg_blocks,
                                            model.feature_layers)
    cache = str(Path(config.feature_cache).expanduser()) if config.feature_cache else None
    started = time.time()
    with dtype_policy(policy):
        # the bank's crops depend on each image alone (not on --seed), so the cache
        # serves every run on the same images: other seeds, splits, heads
        features = compute_frozen_features(feature_tower, images, grid, config.feature_bank,
                                           BANK_SEED, progress=True, cache_dir=cache)
    log(f"VGG16 features of {len(images)} images ({config.feature_bank} crops and {grid * grid} tiles each, "
        f"{policy}) ready in {time.time() - started:.0f} s" + (f"; cached in {cache}" if cache else ""))
    return features, feature_tower


def mix_in_hard_pairs(config, head, features, train_rows, labels, relations, sides, target, epoch):
    """The epoch's pairs with a share (`config.hard_pairs`) replaced by hard ones.

    Hard partners are found among the training images' bank crops with the head
    as it is now (`microrep.mining.hard_pairs`), at random places in the epoch.
    """
    rng = np.random.default_rng([config.seed, epoch, 3])
    count = int(round(config.hard_pairs * len(target)))
    rows = features.bank_rows(np.asarray(train_rows)).ravel()
    # a large archive is mined in a random part of its bank each epoch, which bounds the
    # head passes and the distance blocks of microrep.mining
    searched = np.sort(rng.choice(len(rows), MINED_CROPS, replace=False)) if len(rows) > MINED_CROPS \
        else np.arange(len(rows))
    bank = features.bank[rows[searched]]
    embeddings = head_outputs(head, bank)
    per_crop = lambda values: np.repeat(np.asarray(values), features.per_image)[searched]  # noqa: E731
    pairs, levels = hard_pairs(embeddings, per_crop(labels), per_crop(relations),
                               per_crop(np.arange(len(train_rows))), count, rng)
    if config.similarity != "graded":
        levels = (levels > 0).astype(np.float32)
    places = rng.choice(len(target), count, replace=False)
    sides = [side.copy() for side in sides]
    target = np.array(target, dtype=np.float32)
    sides[0][places], sides[1][places], target[places] = bank[pairs[:, 0]], bank[pairs[:, 1]], levels
    return sides, target


def validation_scores(head, siamese, features, val_rows, val_labels, val_pairs):
    """(validation loss, validation MAP@R) of the current head."""
    loss = float(siamese.evaluate(val_pairs[0], val_pairs[1], verbose=0,
                                  batch_size=len(val_pairs[1])))
    embeddings = embed_from_tiles(head, features, val_rows)
    return loss, retrieval_metrics(embeddings, val_labels)["all"]["map_at_r"]


def fit_head(config, features, labels, relations, log):
    """Train the head on the training samples; returns (best head weights, log rows, head)."""
    train_rows, val_rows = validation_split(labels, relations, config.val_fraction, config.seed)
    keras.utils.set_random_seed(config.seed)
    head = build_head(features.bank.shape[1], config.model)
    if config.model.head == "residual":
        head.get_layer("standardize").set_statistics(features.subset(train_rows).bank)
    siamese = build_siamese(head)
    siamese.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=pair_loss(config))
    sampler = pair_sampler(config, labels[train_rows], relations[train_rows], len(train_rows))
    val_pairs = None
    if len(val_rows):
        val_sampler = pair_sampler(dataclasses.replace(config, seed=config.seed + 1),
                                   labels[val_rows], relations[val_rows], len(val_rows))
        val_pairs = bank_pairs(features, val_rows, val_sampler, 0, config.seed + 1)
    rows, best, best_weights, waited = [], -math.inf, head.get_weights(), 0
    for epoch in range(config.epochs):
        sides, target = bank_pairs(features, train_rows, sampler, epoch, config.seed)
        if config.hard_pairs and epoch > 0:
            sides, target = mix_in_hard_pairs(config, head, features, train_rows, labels[train_rows],
                                              relations[train_rows], sides, target, epoch)
        history = siamese.fit(sides, target, batch_size=config.batch_size, epochs=1,
                              shuffle=False, verbose=0)
        row = {"epoch": epoch, "loss": float(history.history["loss"][-1])}
        if not math.isfinite(row["loss"]):
            from microrep.train import TrainingDivergedError

            raise TrainingDivergedError("training diverged (loss is NaN); lower --learning-rate")
        if val_pairs is not None:
            row["val_loss"], row["val_map_at_r"] = validation_scores(
                head, siamese, features, val_rows, labels[val_rows], val_pairs)
        score = row.get("val_map_at_r", -row["loss"])
        if score > best:
            best, best_weights, waited = score, head.get_weights(), 0
        else:
            waited += 1
        rows.append(row)
        log("epoch {}/{}: ".format(epoch + 1, config.epochs) +
            ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch"))
        if config.patience and waited >= config.patience:
            log(f"stopped: no improvement for {config.patience} epochs")
            break
    head.set_weights(best_weights)
    return head, rows


def train_on_frozen_base(config, dataset, log=print):
    """Train a TrainConfig with a frozen base on `dataset`; return a TrainResult.

    Writes the run folder's config.json (already there), training_log.csv,
    state.json and tower.keras.
    """
    from microrep.train import STATE, TOWER, LOG, TrainResult
    from microrep import __version__

    run_dir = Path(config.out)
    images = dataset.images()
    features, feature_tower = frozen_features(config, images, log)
    labels = dataset.labels
    relations = similarity_relations(config, dataset)
    head, rows = fit_head(config, features, labels, relations, log)
    tower = tower_from_head(head, feature_tower, config.model)
    write_text(run_dir / LOG, pd.DataFrame(rows).to_csv(index=False))
    with atomic_path(run_dir / TOWER) as tmp:
        tower.save(tmp)
    write_json(run_dir / STATE, {"epochs_completed": config.epochs, "epochs_run": len(rows),
                                 "loss": rows[-1]["loss"] if rows else None,
                                 "frozen_base": True, "microrep_version": __version__})
    history = {key: [row.get(key) for row in rows] for key in (rows[0] if rows else {})}
    return TrainResult(run_dir, tower, history, config.epochs)
