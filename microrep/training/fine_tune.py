"""Fine-tuning: the whole tower trains on pairs of crops of the images (Keras `fit`).

Pairs come from the NumPy sampler through tf.data (TensorFlow) or a PyDataset
(any backend); every epoch is checkpointed, so `--resume` continues with the
same pair schedule (pairs depend only on seed and epoch).
"""

import contextlib
import dataclasses
import json
import math
import sys

import keras

from microrep.embedding.pool_fit import fit_poolings
from microrep.embedding.tiles import embed_images
from microrep.errors import ConfigError, ModelFileError
from microrep.fileio import atomic_path, write_json
from microrep.nn.tower import build_siamese, build_tower
from microrep.pairs.feeds import make_pydataset, make_tf_dataset
from microrep.pairs.relations import similarity_relations, validation_split
from microrep.pairs.samplers import crops_from_plan, sampler_for
from microrep.training.callbacks import (AtomicCheckpoint, BestEpoch, ValidationScores,
                                         check_finite, epoch_callbacks)
from microrep.training.compile import compile_siamese
from microrep.training.multihost import peer_lost, process_slice
from microrep.training.frozen import run_view
from microrep.training.run_dir import BEST, BEST_TOWER, CHECKPOINT, TOWER, TrainResult, load_tower

#: Tiles per side of the held-out images' embeddings during validation.


def make_pair_source(config, sampler, images, initial_epoch):
    """tf.data under TensorFlow, a NumPy PyDataset under any other backend (this process's
    slice of each batch when several processes train together)."""
    if keras.backend.backend() == "tensorflow":
        return make_tf_dataset(sampler, images, config.batch_size, initial_epoch)
    return make_pydataset(sampler, images, config.batch_size, initial_epoch, process_slice())


def distribution_scope(config):
    """(context manager, device count) for the configured data parallelism."""
    if config.distribute == "none":
        return contextlib.nullcontext(), 1
    backend = keras.backend.backend()
    if config.distribute == "multihost":  # processes joined by join_processes
        devices = keras.distribution.list_devices()  # every process's devices
        distribution = keras.distribution.DataParallel(devices=devices)
        distribution.auto_shard_dataset = False  # each process feeds its own slice
        return distribution.scope(), len(devices)
    if backend == "jax":
        devices = keras.distribution.list_devices()
        return keras.distribution.DataParallel(devices=devices).scope(), len(devices)
    if backend == "tensorflow":
        import tensorflow as tf

        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
        return strategy.scope(), strategy.num_replicas_in_sync
    raise ConfigError(f"--distribute data is available on the jax and tensorflow backends, "
                      f"not {backend}")


def build_or_resume_model(config, run_dir, initial_epoch, images=()):
    """A compiled Siamese model: fresh (a pooling with state fitted on `images` first), or
    loaded with its optimizer state."""
    keras.utils.set_random_seed(config.seed)  # fresh weights, or the placeholders a checkpoint
    # fills: the same in every process of a multi-host run, which JAX requires
    if initial_epoch > 0:
        try:
            siamese = keras.saving.load_model(run_dir / CHECKPOINT)
        except Exception as error:
            raise ModelFileError(f"cannot load checkpoint {run_dir / CHECKPOINT}: {error}") from None
        siamese.optimizer.learning_rate.assign(config.learning_rate)  # may be lowered on resume
        return siamese
    tower = build_tower(config.model)
    if len(images):
        fit_poolings(tower, images, run_view(config), seed=config.seed)
    return compile_siamese(build_siamese(tower), config)


def image_pair_sampler(config, dataset, images, pairs_per_epoch, reference=None):
    """Pairs of augmented crops of the images, as the run's loss needs them (`reference`:
    the training set's relations, for a validation set's pairs)."""
    return sampler_for(config, dataset.labels, similarity_relations(config, dataset),
                       [im.shape for im in images], config.model.input_size, pairs_per_epoch,
                       config.pairs.augment, reference)


def validation_setup(config, dataset, run_dir):
    """(training dataset, validation callbacks): whole samples held out by --val-fraction.

    The callbacks score each epoch on the held-out samples and keep the best
    epoch's tower (best_tower.keras, its score in best.json, so a resumed run
    keeps comparing against it).
    """
    if config.val_fraction <= 0:
        return dataset, None, None
    relations = similarity_relations(config, dataset)
    train_rows, val_rows = validation_split(dataset.labels, relations, config.val_fraction, config.seed)
    held = dataset.subset(val_rows)
    images = held.images()
    sampler = image_pair_sampler(dataclasses.replace(config, seed=config.seed + 1), held, images,
                                 min(config.pairs.pairs_per_epoch, 256), relations[train_rows])
    plan_a, plan_b, target = sampler.epoch_plan(0)
    size = config.model.input_size
    pairs = ([crops_from_plan(images, plan_a, size), crops_from_plan(images, plan_b, size)], target)
    validation = ValidationScores(pairs, held.labels, lambda: embed_images(
        validation.model.get_layer("embedding_tower"), images, run_view(config), workers=0))

    def keep(epoch, value):
        with atomic_path(run_dir / BEST_TOWER) as tmp:
            validation.model.get_layer("embedding_tower").save(tmp)
        write_json(run_dir / BEST, {"epoch": epoch, "val_map_at_r": value})

    best_file = run_dir / BEST
    best = json.loads(best_file.read_text())["val_map_at_r"] if best_file.is_file() else None
    return dataset.subset(train_rows), validation, BestEpoch("val_map_at_r", "max", keep, best)


def fine_tune(config, dataset, run_dir, initial_epoch, verbose):
    """Train the whole tower in a prepared run folder from `initial_epoch`; return a TrainResult."""
    pairs_per_epoch = math.ceil(config.pairs.pairs_per_epoch / config.batch_size) * config.batch_size
    dataset, validation, best = validation_setup(config, dataset, run_dir)
    images = dataset.images()
    sampler = image_pair_sampler(config, dataset, images, pairs_per_epoch)
    scope, devices = distribution_scope(config)
    if devices > 1 and config.batch_size % devices:
        raise ConfigError(f"--batch-size {config.batch_size} must be a multiple of the "
                          f"{devices} devices it is split over")
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    callbacks = epoch_callbacks(config, run_dir, initial_epoch, validation, best,
                                own=[AtomicCheckpoint(run_dir, announce=bool(verbose))])
    with scope:
        siamese = build_or_resume_model(config, run_dir, initial_epoch, images)
        source = make_pair_source(config, sampler, images, initial_epoch)
        if verbose and devices > 1:
            print(f"data-parallel training over {devices} devices")
        try:
            history = siamese.fit(source, epochs=config.epochs, initial_epoch=initial_epoch,
                                  steps_per_epoch=pairs_per_epoch // config.batch_size,
                                  callbacks=callbacks, shuffle=False, verbose=verbose)
        except Exception as error:  # a lost peer of multi-host training: one line, not a bug
            lost = peer_lost(error) if config.distribute == "multihost" else None
            if lost is None:
                raise
            raise lost from None
    losses = history.history.get("loss", [])
    check_finite(losses, run_dir)
    tower = siamese.get_layer("embedding_tower")
    if validation is not None and (run_dir / BEST_TOWER).is_file():
        tower = load_tower(run_dir / BEST_TOWER)  # the best epoch on held-out samples
    with atomic_path(run_dir / TOWER) as tmp:
        tower.save(tmp)
    return TrainResult(run_dir, tower, history.history, initial_epoch + len(losses), devices)
