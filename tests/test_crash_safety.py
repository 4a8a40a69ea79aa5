"""Training survives SIGKILL at random moments, Ctrl-C and a diverging loss."""

import json
import os
import signal
import subprocess
import sys

import keras
import pandas as pd
import pytest

from microrep.errors import ModelFileError
from microrep.errors import TrainingDivergedError
from microrep.training import train
from microrep.training.run_dir import load_tower

from conftest import FINE_TUNE_FLAGS, tiny_train_config

EPOCHS = 6


def train_command(tmp_path, *extra):
    return [sys.executable, "-m", "microrep", "train", "--data-dir", str(tmp_path / "data"),
            "--synthetic-samples-per-class", "1", "--synthetic-images-per-sample", "3",
            "--synthetic-image-size", "48", "--input-size", "32", "--vgg-blocks", "2",
            "--embedding-dim", "8", "--weights", "none", "--epochs", str(EPOCHS),
            "--pairs-per-epoch", "64", "--batch-size", "8", "--out", str(tmp_path / "run"),
            *FINE_TUNE_FLAGS, *extra]


ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def epochs_checkpointed(run):
    state = run / "state.json"
    return json.loads(state.read_text())["epochs_completed"] if state.is_file() else 0


def read_until(process, marker):
    """Read the run's output line by line until one holds `marker`; False if it ended first.

    The kill points are lines the run prints at events (it starts training, a
    checkpoint is saved), never moments on the clock, so a faster or slower
    machine kills at the same places in the run.
    """
    for line in process.stdout:
        if marker in line:
            return True
    return False


def start_training(tmp_path, attempt):
    command = train_command(tmp_path, *([] if attempt == 0 else ["--resume"]))
    errors = open(tmp_path / f"stderr-{attempt}.log", "w")
    return subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=errors, text=True)


@pytest.mark.slow
def test_sigkill_at_checkpoint_events_then_resume(tmp_path):
    run = tmp_path / "run"
    # kill as training starts (before any checkpoint), then right after the checkpoints
    # of epochs 1, 3 and 4: each time in the middle of whatever came next
    kill_points = ["training on", "checkpoint: 1 epochs", "checkpoint: 3 epochs",
                   "checkpoint: 4 epochs"]
    for attempt, marker in enumerate(kill_points):
        process = start_training(tmp_path, attempt)
        assert read_until(process, marker), (tmp_path / f"stderr-{attempt}.log").read_text()[-2000:]
        process.send_signal(signal.SIGKILL)
        process.wait()
    process = start_training(tmp_path, len(kill_points))
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, (tmp_path / f"stderr-{len(kill_points)}.log").read_text()[-2000:]
    assert "checkpoint: 5 epochs" in out and "checkpoint: 6 epochs" in out
    assert epochs_checkpointed(run) == EPOCHS
    log = pd.read_csv(run / "training_log.csv")
    assert list(log["epoch"]) == list(range(EPOCHS)), "each epoch logged exactly once"
    assert not list(run.glob(".*tmp*")), "no half-written files left behind"
    assert load_tower(run).output_shape == (None, 8)
    finished = subprocess.run(train_command(tmp_path, "--resume"), env=ENV, capture_output=True,
                              text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "already complete" in finished.stdout
    assert epochs_checkpointed(run) == EPOCHS


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path):
    process = subprocess.Popen(train_command(tmp_path), env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert read_until(process, "checkpoint: 1 epochs")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "--resume" in err and "Traceback" not in err
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert 1 <= state["epochs_completed"] <= EPOCHS


@pytest.mark.slow
def test_diverging_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(
        tmp_path, tiny_data_config, tiny_dataset):
    run = tmp_path / "run"
    train(tiny_train_config(run, tiny_data_config, epochs=1), tiny_dataset, verbose=0)
    good_state = json.loads((run / "state.json").read_text())
    with pytest.raises(TrainingDivergedError, match="learning-rate"):
        train(tiny_train_config(run, tiny_data_config, epochs=3, resume=True, learning_rate=1e30),
              tiny_dataset, verbose=0)
    assert json.loads((run / "state.json").read_text()) == good_state
    keras.saving.load_model(run / "checkpoint.keras")


def test_corrupt_and_foreign_model_files_are_clear_errors(tmp_path):
    corrupt = tmp_path / "tower.keras"
    corrupt.write_bytes(b"PK\x03\x04 not really a keras file")
    with pytest.raises(ModelFileError, match="cannot load model"):
        load_tower(corrupt)
    import zipfile

    foreign = tmp_path / "foreign.keras"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "2.4.0"}))
        archive.writestr("config.json", json.dumps({"class_name": "MysteryModel", "config": {},
                                                    "module": "someone.elses.package"}))
        archive.writestr("model.weights.h5", b"")
    with pytest.raises(ModelFileError, match="foreign.keras"):
        load_tower(foreign)


FULL_DISK = (
    "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000)); "
    "from microrep.cli import main; sys.exit(main(sys.argv[1:]))")


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_leaves_no_half_file(tmp_path):
    # files may not grow past 1 MB in this process: the first checkpoint cannot be written
    argv = train_command(tmp_path)[3:]
    done = subprocess.run([sys.executable, "-c", FULL_DISK, *argv], env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2
    assert "no space left to write" in done.stderr and "Traceback" not in done.stderr
    run = tmp_path / "run"
    # no epoch was saved, so the folder this command made is gone: the same command runs again
    assert not run.exists()
