"""Train the Siamese model: pairs in, checkpoints, log and final tower out.

A run folder holds everything a run needs to be understood and continued:

    config.json        the TrainConfig used
    checkpoint.keras   the Siamese model and optimizer state after the last epoch
    state.json         epochs completed, best loss, package version
    training_log.csv   loss and pair accuracy per epoch
    tower.keras        the embedding tower, written when training ends
    auto_batch.json    with --batch-size auto on an accelerator: the batch and learning
                       rate chosen, and why (config.json holds the values used)

Checkpoints are written under a temporary name and renamed, so an interrupted
run leaves the last complete epoch behind, and `resume` continues from it
with the same pair schedule (pairs depend only on seed and epoch).
"""

import contextlib
import dataclasses
import json
import math
import shutil
import sys
from pathlib import Path

import keras

from microrep import __version__
from microrep.autobatch import RECORD as AUTO_BATCH_RECORD
from microrep.autobatch import resolve_batch_size
from microrep.config import save_config, to_dict
from microrep.data import load_dataset
from microrep.errors import (ConfigError, MicrorepError, ModelFileError, OutputExistsError,
                             TrainingDivergedError)
from microrep.fileio import atomic_path, stale_temporaries, write_json, write_text
from microrep.losses import PairAccuracy
from microrep.model import build_siamese, build_tower, check_input_size, check_weights_source
from microrep.pairs import (GradedPairSampler, PairSampler, check_images_fit, make_pydataset,
                            make_tf_dataset)

CHECKPOINT = "checkpoint.keras"
STATE = "state.json"
TOWER = "tower.keras"
LOG = "training_log.csv"
BEST_TOWER = "best_tower.keras"
BEST = "best.json"

#: Settings that may change when a run is resumed (`out`: a copied run folder resumes too).
RESUMABLE_CHANGES = {"epochs", "resume", "overwrite", "patience", "learning_rate", "out"}
LOCK = ".lock"


@dataclasses.dataclass
class TrainResult:
    run_dir: Path
    tower: keras.Model
    history: dict
    epochs_completed: int
    devices: int = 1
    already_complete: bool = False


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save model + optimizer and the epoch count after every epoch, atomically.

    With `announce`, each saved checkpoint is also said in one line (for people
    watching a long run, and for tests that act when one is written).
    """

    def __init__(self, run_dir, announce=False):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.announce = announce

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or not math.isfinite(loss):
            return  # never replace the last good checkpoint with a diverged one
        with atomic_path(self.run_dir / CHECKPOINT) as tmp:
            self.model.save(tmp)
        write_json(self.run_dir / STATE, {"epochs_completed": epoch + 1, "loss": loss,
                                          "microrep_version": __version__})
        if self.announce:
            print(f"checkpoint: {epoch + 1} epochs saved in {self.run_dir}", flush=True)


class ValidationScores(keras.callbacks.Callback):
    """Each epoch: loss on fixed pairs of held-out samples and their MAP@R; the best tower kept.

    Runs before the CSV logger, so the log gains `val_loss` and `val_map_at_r`;
    the best epoch's tower is written to best_tower.keras (and its score to
    best.json, so a resumed run keeps comparing against it).
    """

    def __init__(self, run_dir, images, labels, pairs, grid):
        super().__init__()
        self.run_dir, self.images, self.labels = Path(run_dir), images, labels
        self.pairs, self.grid = pairs, grid
        best = self.run_dir / BEST
        self.best = json.loads(best.read_text())["val_map_at_r"] if best.is_file() else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        from microrep.analysis.retrieval import retrieval_metrics
        from microrep.embed import embed_images

        logs = logs if logs is not None else {}
        (side_a, side_b), target = self.pairs
        logs["val_loss"] = float(self.model.evaluate([side_a, side_b], target, verbose=0,
                                                     batch_size=len(target), return_dict=True)["loss"])
        tower = self.model.get_layer("embedding_tower")
        embeddings = embed_images(tower, self.images, self.grid, workers=0)
        logs["val_map_at_r"] = retrieval_metrics(embeddings, self.labels)["all"]["map_at_r"]
        if logs["val_map_at_r"] > self.best:
            self.best = logs["val_map_at_r"]
            with atomic_path(self.run_dir / BEST_TOWER) as tmp:
                tower.save(tmp)
            write_json(self.run_dir / BEST, {"epoch": epoch, "val_map_at_r": self.best})


def _flatten(settings, prefix=""):
    """{'model.input_size': 224, ...}: nested settings as dotted names."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differing_settings(previous, current):
    """'--margin: 1.8 in the run, 1.6 now; ...' for the settings a resume may not change."""
    before, now = _flatten(previous), _flatten(current)
    names = sorted(name for name in set(before) | set(now)
                   if name.split(".")[-1] not in RESUMABLE_CHANGES
                   and before.get(name, "(absent)") != now.get(name, "(absent)"))
    return "; ".join(f"--{name.split('.')[-1].replace('_', '-')}: {before.get(name, '(absent)')!r} "
                     f"in the run, {now.get(name, '(absent)')!r} now" for name in names)


class RunLock:
    """An exclusive lock on a run folder, held while training: a second process is refused.

    flock(2) on `.lock` in the folder; the kernel releases it when the process
    ends, however it ends, so a killed run never leaves a stale lock behind.
    """

    def __init__(self, run_dir):
        self.path = Path(run_dir) / LOCK
        self.handle = None

    def __enter__(self):
        import fcntl
        import os

        self.created_dir = not self.path.parent.exists()
        self.created_file = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "another process"
            self.handle.close()
            raise OutputExistsError(f"{self.path.parent} is in use: {holder} is training into "
                                    "it; wait for it to finish or choose another --out") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"process {os.getpid()}")
        self.handle.flush()
        return self

    def __exit__(self, error_type, *exc):
        """Release; a lock file (and folder) this call made for a refused run is taken away."""
        if error_type is not None and self.created_file and \
                not (self.path.parent / "config.json").is_file():
            self.path.unlink(missing_ok=True)
            if self.created_dir and not any(self.path.parent.iterdir()):
                self.path.parent.rmdir()
        self.handle.close()  # releases the lock
        return False


def stored_settings(out):
    """The settings a run folder recorded (config.json), or None."""
    path = Path(out) / "config.json"
    return json.loads(path.read_text()) if path.is_file() else None


def remove_stale_temporaries(run_dir, final_name=None):
    """Delete half-written files a killed run left under temporary names (of one file only)."""
    for stale in stale_temporaries(run_dir, final_name):
        stale.unlink()


def truncate_log(run_dir, epochs_completed):
    """Keep only the log rows of checkpointed epochs (a kill can leave one more)."""
    import pandas as pd

    log_path = Path(run_dir) / LOG
    if log_path.is_file() and log_path.stat().st_size:
        log = pd.read_csv(log_path)
        if "epoch" in log and (log["epoch"] >= epochs_completed).any():
            write_text(log_path, log[log["epoch"] < epochs_completed].to_csv(index=False))


def prepare_run_dir(config):
    """Create or check the run folder; return the number of epochs already done."""
    run_dir = Path(config.out)
    saved_config = run_dir / "config.json"
    if config.overwrite and run_dir.exists():
        for entry in run_dir.iterdir():  # everything but the lock this process holds
            if entry.name != LOCK:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    if saved_config.is_file():
        previous = json.loads(saved_config.read_text())
        if config.resume:
            differences = differing_settings(previous, to_dict(config))
            if differences:
                raise OutputExistsError(
                    f"{run_dir} holds a run with other settings ({differences}); resume with "
                    "only --resume --out (the run's own settings), or choose another --out")
            state_path = run_dir / STATE
            done = json.loads(state_path.read_text())["epochs_completed"] if state_path.is_file() else 0
            remove_stale_temporaries(run_dir)
            truncate_log(run_dir, done)
            return done
        raise OutputExistsError(
            f"{run_dir} already holds a training run; pass --resume to continue it, "
            "--overwrite to replace it, or choose another --out")
    if run_dir.is_dir():
        # a run killed while writing its first file, config.json, leaves only that
        # file's temporary: the folder holds no run and no user file, so start afresh
        remove_stale_temporaries(run_dir, saved_config.name)
    if run_dir.exists() and any(entry.name != LOCK for entry in run_dir.iterdir()):
        if not config.overwrite:
            raise OutputExistsError(f"{run_dir} is not empty; choose another --out or pass --overwrite")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, saved_config)
    return 0


def make_pair_source(config, sampler, images, initial_epoch):
    """tf.data under TensorFlow, a NumPy PyDataset under any other backend."""
    if keras.backend.backend() == "tensorflow":
        return make_tf_dataset(sampler, images, config.batch_size, initial_epoch)
    return make_pydataset(sampler, images, config.batch_size, initial_epoch)


def distribution_scope(config):
    """(context manager, device count) for the configured data parallelism."""
    if config.distribute == "none":
        return contextlib.nullcontext(), 1
    backend = keras.backend.backend()
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


def build_or_resume_model(config, run_dir, initial_epoch):
    """A compiled Siamese model: fresh, or loaded with its optimizer state."""
    if initial_epoch > 0:
        try:
            siamese = keras.saving.load_model(run_dir / CHECKPOINT)
        except Exception as error:
            raise ModelFileError(f"cannot load checkpoint {run_dir / CHECKPOINT}: {error}") from None
        siamese.optimizer.learning_rate.assign(config.learning_rate)  # may be lowered on resume
        return siamese
    keras.utils.set_random_seed(config.seed)
    siamese = build_siamese(build_tower(config.model))
    from microrep.train_frozen import pair_loss

    metrics = [PairAccuracy(config.margin)] if config.similarity == "label" else []
    siamese.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                    loss=pair_loss(config), metrics=metrics)
    return siamese


def training_callbacks(config, run_dir, initial_epoch, validation=None, verbose=0):
    """NaN stop, validation (when given), CSV log, checkpoints, early stopping."""
    callbacks = [keras.callbacks.TerminateOnNaN()]
    if validation is not None:
        callbacks.append(validation)
    callbacks += [keras.callbacks.CSVLogger(str(run_dir / LOG), append=initial_epoch > 0),
                  AtomicCheckpoint(run_dir, announce=bool(verbose))]
    if config.patience > 0:
        monitor = ("val_map_at_r", "max") if validation is not None else ("loss", "min")
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor[0], mode=monitor[1],
                                                       patience=config.patience))
    return callbacks


def validation_setup(config, dataset, run_dir):
    """(training dataset, ValidationScores or None): whole samples held out by --val-fraction."""
    if config.val_fraction <= 0:
        return dataset, None
    from microrep.pairs import crops_from_plan
    from microrep.train_frozen import similarity_relations, validation_split

    relations = similarity_relations(config, dataset)
    train_rows, val_rows = validation_split(dataset.labels, relations, config.val_fraction, config.seed)
    held = dataset.subset(val_rows)
    images = held.images()
    sampler = image_pair_sampler(dataclasses.replace(config, seed=config.seed + 1), held, images,
                                 min(config.pairs.pairs_per_epoch, 256))
    plan_a, plan_b, target = sampler.epoch_plan(0)
    size = config.model.input_size
    pairs = ((crops_from_plan(images, plan_a, size), crops_from_plan(images, plan_b, size)), target)
    return dataset.subset(train_rows), ValidationScores(run_dir, images, held.labels, pairs, 3)


def image_pair_sampler(config, dataset, images, pairs_per_epoch):
    """Pairs of augmented crops of the images: graded or by label, as configured."""
    shapes = [im.shape for im in images]
    if config.similarity == "graded":
        from microrep.train_frozen import pair_relations

        return GradedPairSampler(dataset.labels, pair_relations(dataset.table), shapes,
                                 config.model.input_size, pairs_per_epoch,
                                 augment=config.pairs.augment, seed=config.seed)
    return PairSampler(dataset.labels, shapes, config.model.input_size, pairs_per_epoch,
                       config.pairs.positive_fraction, config.pairs.augment, config.seed)


def train(config, dataset=None, verbose="auto"):
    """Train under `config` (a TrainConfig); return a TrainResult.

    `dataset` may be passed to skip loading (the demo reuses its own).
    """
    run_dir = Path(config.out)
    dataset = dataset if dataset is not None else load_dataset(config.data)
    images = dataset.images()
    check_images_fit(images, config.model.input_size, dataset.table["path"])
    check_input_size(config.model.input_size)
    check_weights_source(config.model.weights)
    config, auto_batch = resolve_batch_size(config, log=print if verbose else (lambda *_: None))
    fresh = not (run_dir / "config.json").is_file() or config.overwrite
    with removed_if_refused(run_dir, fresh), RunLock(run_dir):
        initial_epoch = prepare_run_dir(config)  # only once the data is known to be usable
        if auto_batch is not None and not (run_dir / AUTO_BATCH_RECORD).is_file():
            write_json(run_dir / AUTO_BATCH_RECORD, auto_batch)
        if initial_epoch >= config.epochs:  # resuming a finished run changes nothing
            return TrainResult(run_dir, load_tower(run_dir), {}, initial_epoch,
                               already_complete=True)
        return train_in_run_dir(config, dataset, run_dir, initial_epoch, verbose)


@contextlib.contextmanager
def removed_if_refused(run_dir, fresh):
    """A run folder this call created is removed again if its setup is refused (bad weights...).

    Why: the corrected command must not meet "already holds a training run".
    Once an epoch is checkpointed the folder is kept, whatever happens.
    """
    try:
        yield
    except MicrorepError as error:
        kept = [STATE, TOWER]
        if fresh and not isinstance(error, OutputExistsError) and \
                not any((Path(run_dir) / name).is_file() for name in kept):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def train_in_run_dir(config, dataset, run_dir, initial_epoch, verbose):
    """Train in a prepared run folder from `initial_epoch`; return a TrainResult."""
    if not config.model.train_base:
        from microrep.train_frozen import train_on_frozen_base

        return train_on_frozen_base(config, dataset, log=print if verbose else (lambda *_: None))
    pairs_per_epoch = math.ceil(config.pairs.pairs_per_epoch / config.batch_size) * config.batch_size
    dataset, validation = validation_setup(config, dataset, run_dir)
    images = dataset.images()
    sampler = image_pair_sampler(config, dataset, images, pairs_per_epoch)
    scope, devices = distribution_scope(config)
    if devices > 1 and config.batch_size % devices:
        raise ConfigError(f"--batch-size {config.batch_size} must be a multiple of the "
                          f"{devices} devices it is split over")
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    with scope:
        siamese = build_or_resume_model(config, run_dir, initial_epoch)
        source = make_pair_source(config, sampler, images, initial_epoch)
        if verbose and devices > 1:
            print(f"data-parallel training over {devices} devices")
        history = siamese.fit(source, epochs=config.epochs, initial_epoch=initial_epoch,
                              steps_per_epoch=pairs_per_epoch // config.batch_size,
                              callbacks=training_callbacks(config, run_dir, initial_epoch,
                                                           validation, verbose),
                              shuffle=False, verbose=verbose)
    losses = history.history.get("loss", [])
    if losses and not math.isfinite(losses[-1]):
        raise TrainingDivergedError(
            "training diverged (loss is NaN); lower --learning-rate. The last good "
            f"checkpoint is in {run_dir}")
    tower = siamese.get_layer("embedding_tower")
    if validation is not None and (run_dir / BEST_TOWER).is_file():
        tower = load_tower(run_dir / BEST_TOWER)  # the best epoch on held-out samples
    with atomic_path(run_dir / TOWER) as tmp:
        tower.save(tmp)
    completed = initial_epoch + len(losses)
    return TrainResult(run_dir, tower, history.history, completed, devices)


def load_tower(model_path):
    """Load an embedding tower from a run folder or a .keras file (safe mode)."""
    path = Path(model_path)
    if path.is_dir():
        if (path / TOWER).is_file():
            path = path / TOWER
        elif (path / CHECKPOINT).is_file():
            path = path / CHECKPOINT  # training did not finish: use its last epoch
        else:
            raise ModelFileError(f"{model_path} holds no {TOWER} or {CHECKPOINT}; train first")
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        model = keras.saving.load_model(path)
    except Exception as error:
        raise ModelFileError(f"cannot load model {path}: {type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else ''}") from None
    if model.name == "siamese":
        model = model.get_layer("embedding_tower")
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else ()
    if len(shape) != 4 or shape[-1] != 1 or shape[1] != shape[2]:
        raise ModelFileError(f"{path} is a Keras model but not a microrep embedding tower (its "
                             f"input is {model.input_shape}, a tower takes gray S x S crops "
                             "(None, S, S, 1)); pass a run folder or its tower.keras")
    return model
