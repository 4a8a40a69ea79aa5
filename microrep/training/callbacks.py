"""The callbacks both training loops share: NaN stop, validation, best epoch, log, checkpoints.

Fine-tuning hands them to Keras' `fit`; the frozen-base loop (one `fit` per
epoch, since each epoch's pairs depend on the head as it is) drives the same
callbacks through `keras.callbacks.CallbackList`. So early stopping, keeping
the best epoch and stopping on a diverged loss behave alike in both.
"""

import math

import keras

from microrep.analysis.retrieval import retrieval_metrics
from microrep.errors import TrainingDivergedError
from microrep.fileio import atomic_path, write_json
from microrep._version import __version__
from microrep.training.run_dir import CHECKPOINT, LOG, STATE


class StopOnNaN(keras.callbacks.Callback):
    """Stop training at the first loss that is not finite, after a batch or an epoch."""

    def _check(self, logs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs)


def check_finite(losses, run_dir=None):
    """TrainingDivergedError when the last epoch's loss is not finite."""
    if losses and not math.isfinite(losses[-1]):
        where = f". The last good checkpoint is in {run_dir}" if run_dir else ""
        raise TrainingDivergedError(f"training diverged (loss is NaN); lower --learning-rate{where}")


class ValidationScores(keras.callbacks.Callback):
    """Each epoch: the loss on fixed pairs of held-out samples and their MAP@R, into the logs.

    `pairs` is ([side_a, side_b], targets); `embed()` returns the held-out images'
    embeddings with the model as it is now (from images when fine-tuning, from
    cached tile features on a frozen base). Runs before the callbacks that read
    `val_loss` and `val_map_at_r`.
    """

    def __init__(self, pairs, labels, embed):
        super().__init__()
        self.pairs, self.labels, self.embed = pairs, labels, embed

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        sides, target = self.pairs
        logs["val_loss"] = float(self.model.evaluate(sides, target, verbose=0, batch_size=len(target),
                                                     return_dict=True)["loss"])
        logs["val_map_at_r"] = retrieval_metrics(self.embed(), self.labels)["all"]["map_at_r"]


class BestEpoch(keras.callbacks.Callback):
    """Calls `keep(epoch, value)` whenever `monitor` improves (mode 'max' or 'min').

    `best` is the value to beat (a resumed run's best so far).
    """

    def __init__(self, monitor, mode, keep, best=None):
        super().__init__()
        self.monitor, self.sign, self.keep = monitor, 1.0 if mode == "max" else -1.0, keep
        self.best = -math.inf if best is None else self.sign * best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and self.sign * value > self.best:
            self.best = self.sign * value
            self.keep(epoch, value)


class EpochLog(keras.callbacks.Callback):
    """One line per epoch ('epoch 3/10: loss 0.1234, val_map_at_r 0.5678') through `log`."""

    def __init__(self, epochs, log=print):
        super().__init__()
        self.epochs, self.log = epochs, log

    def on_epoch_end(self, epoch, logs=None):
        self.log(f"epoch {epoch + 1}/{self.epochs}: " +
                 ", ".join(f"{key} {value:.4f}" for key, value in (logs or {}).items()))


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save model + optimizer and the epoch count after every epoch, atomically.

    With `announce`, each saved checkpoint is also said in one line (for people
    watching a long run, and for tests that act when one is written).
    """

    def __init__(self, run_dir, announce=False):
        super().__init__()
        self.run_dir = run_dir
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


def epoch_callbacks(config, run_dir, initial_epoch, validation=None, best=None, own=()):
    """The callbacks of every run, in order: NaN stop, validation and best epoch (when given),
    CSV log (in `run_dir`, when given), the loop's `own` (checkpoints, epoch lines), early stopping (with --patience: on
    validation MAP@R, else on the training loss).
    """
    callbacks = [StopOnNaN()]
    callbacks += [c for c in (validation, best) if c is not None]
    if run_dir is not None:
        callbacks.append(keras.callbacks.CSVLogger(str(run_dir / LOG), append=initial_epoch > 0))
    callbacks += list(own)
    if config.patience > 0:
        monitor = ("val_map_at_r", "max") if validation is not None else ("loss", "min")
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor[0], mode=monitor[1],
                                                       patience=config.patience))
    return callbacks
