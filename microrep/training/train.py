"""`train()`: the one entry point of training, for the CLI, notebooks, reproduce and held-out runs.

It checks what can be checked cheaply (images, input size, weights file), takes
the run folder (locked, fresh or resumed), then dispatches: a frozen base
trains its head on cached features (`microrep.training.frozen`), otherwise the
whole tower is fine-tuned on crops (`microrep.training.fine_tune`).
"""

from pathlib import Path

from microrep.data import load_dataset
from microrep.data.loaders import load_unlabelled_dataset
from microrep.fileio import write_json
from microrep.nn.backbone import check_input_size, check_weights_source
from microrep.pairs.relations import pair_view, similarity_relations
from microrep.pairs.samplers import check_images_fit
from microrep.registry import LOSSES
from microrep.training.autobatch import RECORD as AUTO_BATCH_RECORD
from microrep.training.autobatch import resolve_batch_size
from microrep.training.fine_tune import fine_tune
from microrep.training.frozen import train_on_frozen_base
from microrep.training.multihost import join_processes, leave_processes
from microrep.training.run_dir import (RunLock, TrainResult, check_run_dir, load_tower,
                                       prepare_run_dir, removed_if_refused)


def check_before_reading(config):
    """What can be refused without reading an image: input size, weights file, run folder."""
    check_input_size(config.model.input_size)
    check_weights_source(config.model.weights)
    check_run_dir(config)


def training_dataset(config):
    """The images `config` trains on: labelled for its task, or every image, labelled where
    it can be, when its loss takes pairs from the images themselves (`--similarity self`/`semi`)."""
    if LOSSES[config.similarity].pairs_from == "classes":
        return load_dataset(config.data)
    return load_unlabelled_dataset(config.data, validate=True)


def train(config, dataset=None, verbose="auto", features=None):
    """Train under `config` (a TrainConfig); return a TrainResult.

    `dataset` may be passed to skip loading (the demo reuses its own);
    `features`, with a frozen base, are the dataset's FrozenFeatures when the
    caller computed them already (reproduce's folds, held-out splits).
    """
    config = join_processes(config)  # several processes: only process 0 keeps --out
    run_dir = Path(config.out)
    check_before_reading(config)
    dataset = pair_view(dataset if dataset is not None else training_dataset(config),
                        LOSSES[config.similarity].pairs_from)
    check_images_fit(dataset.images(), config.model.input_size, dataset.table["path"])
    entry = LOSSES[config.similarity]
    if entry.coordinates is not None:  # e.g. processing conditions: refused before any feature
        entry.coordinates(similarity_relations(config, dataset))
    log = print if verbose else (lambda *_: None)
    config, auto_batch = resolve_batch_size(config, log=log)
    fresh = not (run_dir / "config.json").is_file() or config.overwrite
    with removed_if_refused(run_dir, fresh), RunLock(run_dir):
        initial_epoch = prepare_run_dir(config)  # only once the data is known to be usable
        if auto_batch is not None and not (run_dir / AUTO_BATCH_RECORD).is_file():
            write_json(run_dir / AUTO_BATCH_RECORD, auto_batch)
        if initial_epoch >= config.epochs:  # resuming a finished run changes nothing
            return TrainResult(run_dir, load_tower(run_dir), {}, initial_epoch,
                               already_complete=True)
        if not config.model.train_base:
            return train_on_frozen_base(config, dataset, run_dir, log, features)
        result = fine_tune(config, dataset, run_dir, initial_epoch, verbose)
    leave_processes()
    return result
