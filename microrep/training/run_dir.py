"""The run folder: its files, its lock, starting, resuming or refusing a run, loading its tower.

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
import fcntl
import json
import os
import shutil
from pathlib import Path

import keras

import microrep.nn  # noqa: F401  (registers the layers and losses saved towers name)
from microrep.config import TrainConfig, from_dict, save_config, to_dict
from microrep.errors import MicrorepError, ModelFileError, OutputExistsError
from microrep.fileio import stale_temporaries, write_text

CHECKPOINT = "checkpoint.keras"
STATE = "state.json"
TOWER = "tower.keras"
LOG = "training_log.csv"
BEST_TOWER = "best_tower.keras"
BEST = "best.json"

#: Settings that may change when a run is resumed (`out`: a copied run folder resumes too;
#: the multi-host process settings: the processes restarted elsewhere train the same run).
RESUMABLE_CHANGES = {"epochs", "resume", "overwrite", "patience", "learning_rate", "out",
                     "coordinator", "num_processes", "process_id"}
LOCK = ".lock"


@dataclasses.dataclass
class TrainResult:
    run_dir: Path
    tower: keras.Model
    history: dict
    epochs_completed: int
    devices: int = 1
    already_complete: bool = False


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

    @staticmethod
    def free(run_dir):
        """True when no process holds the lock of `run_dir` (tested by taking and releasing it)."""
        with open(Path(run_dir) / LOCK, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False
            fcntl.flock(handle, fcntl.LOCK_UN)
            return True

    def __enter__(self):
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


def run_dir_refusal(config, check_lock=True):
    """The OutputExistsError `train()` would meet in `config.out`, or None; writes nothing.

    A run already there (without --resume or --overwrite), a resume with other
    settings, a folder of other files, or (with `check_lock`) another process
    training into it.
    """
    run_dir = Path(config.out)
    saved_config = run_dir / "config.json"
    if check_lock and (run_dir / LOCK).is_file() and not RunLock.free(run_dir):
        holder = (run_dir / LOCK).read_text().strip() or "another process"
        return OutputExistsError(f"{run_dir} is in use: {holder} is training into it; wait for "
                                 "it to finish or choose another --out")
    if config.overwrite:
        return None
    if saved_config.is_file():
        if not config.resume:
            return OutputExistsError(f"{run_dir} already holds a training run; pass --resume to "
                                     "continue it, --overwrite to replace it, or choose another --out")
        # through the settings reader: settings added since the run began take their defaults
        previous = to_dict(from_dict(TrainConfig, json.loads(saved_config.read_text()), str(saved_config)))
        differences = differing_settings(previous, to_dict(config))
        if differences:
            return OutputExistsError(
                f"{run_dir} holds a run with other settings ({differences}); resume with "
                "only --resume --out (the run's own settings), or choose another --out")
        return None
    # a run killed while writing its first file, config.json, leaves only that file's
    # temporary: the folder holds no run and no user file, and starts afresh
    ignored = {LOCK, *(path.name for path in stale_temporaries(run_dir, saved_config.name))} \
        if run_dir.is_dir() else set()
    if run_dir.is_dir() and any(entry.name not in ignored for entry in run_dir.iterdir()):
        return OutputExistsError(f"{run_dir} is not empty; choose another --out or pass --overwrite")
    return None


def check_run_dir(config):
    """Refuse now, before any image is decoded, a run folder that train() would refuse."""
    refusal = run_dir_refusal(config)
    if refusal is not None:
        raise refusal


def prepare_run_dir(config):
    """Create or check the run folder; return the number of epochs already done."""
    run_dir = Path(config.out)
    saved_config = run_dir / "config.json"
    refusal = run_dir_refusal(config, check_lock=False)  # this process holds the lock
    if refusal is not None:
        raise refusal
    if config.overwrite and run_dir.exists():
        for entry in run_dir.iterdir():  # everything but the lock this process holds
            if entry.name != LOCK:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    if saved_config.is_file():  # resuming (any refusal was raised above)
        state_path = run_dir / STATE
        done = json.loads(state_path.read_text())["epochs_completed"] if state_path.is_file() else 0
        remove_stale_temporaries(run_dir)
        truncate_log(run_dir, done)
        return done
    if run_dir.is_dir():
        remove_stale_temporaries(run_dir, saved_config.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, saved_config)
    return 0


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
