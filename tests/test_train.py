import json

import keras
import numpy as np
import pandas as pd
import pytest

from microrep.errors import OutputExistsError
from microrep.training import train
from microrep.training.run_dir import load_tower

from conftest import FINE_TUNE_FLAGS, tiny_train_config


@pytest.mark.slow
def test_train_writes_run_folder_and_resume_continues(tmp_path, tiny_data_config, tiny_dataset):
    run = tmp_path / "run"
    result = train(tiny_train_config(run, tiny_data_config), tiny_dataset, verbose=0)
    assert result.epochs_completed == 2
    for name in ("config.json", "checkpoint.keras", "state.json", "training_log.csv", "tower.keras"):
        assert (run / name).is_file(), name
    assert json.loads((run / "state.json").read_text())["epochs_completed"] == 2
    assert not list(run.glob(".*tmp*")), "temporary files left behind"

    # the same run again is refused; --resume with more epochs continues it
    with pytest.raises(OutputExistsError, match="--resume"):
        train(tiny_train_config(run, tiny_data_config), tiny_dataset, verbose=0)
    resumed = train(tiny_train_config(run, tiny_data_config, epochs=3, resume=True),
                    tiny_dataset, verbose=0)
    assert resumed.epochs_completed == 3
    log = pd.read_csv(run / "training_log.csv")
    assert list(log["epoch"]) == [0, 1, 2]

    # a run with other settings is not resumed into this folder
    with pytest.raises(OutputExistsError, match="other settings"):
        train(tiny_train_config(run, tiny_data_config, epochs=4, resume=True, margin=2.0),
              tiny_dataset, verbose=0)


@pytest.mark.slow
@pytest.mark.parametrize("similarity", ["label", "graded"])
def test_resumed_run_matches_uninterrupted_run(tmp_path, tiny_data_config, tiny_dataset, similarity):
    """Fine-tuning (the whole tower) under either loss, checkpointed and resumed."""
    straight = train(tiny_train_config(tmp_path / "a", tiny_data_config, epochs=2,
                                       similarity=similarity), tiny_dataset, verbose=0)
    assert json.loads((tmp_path / "a" / "config.json").read_text())["model"]["train_base"]
    train(tiny_train_config(tmp_path / "b", tiny_data_config, epochs=1, similarity=similarity),
          tiny_dataset, verbose=0)
    assert (tmp_path / "b" / "checkpoint.keras").is_file()
    resumed = train(tiny_train_config(tmp_path / "b", tiny_data_config, epochs=2, resume=True,
                                      similarity=similarity), tiny_dataset, verbose=0)
    for a, b in zip(straight.tower.get_weights(), resumed.tower.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_overwrite_replaces_and_tower_loads(tmp_path, tiny_data_config, tiny_dataset):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("someone else's file")
    with pytest.raises(OutputExistsError, match="not empty"):
        train(tiny_train_config(run, tiny_data_config, epochs=1), tiny_dataset, verbose=0)
    train(tiny_train_config(run, tiny_data_config, epochs=1, overwrite=True), tiny_dataset, verbose=0)
    tower = load_tower(run)
    assert tower.name == "embedding_tower" and tower.output_shape == (None, 8)


def test_a_run_killed_while_writing_its_config_starts_afresh_on_resume(
        tmp_path, tiny_data_config, tiny_dataset):
    """The state a SIGKILL during the first write leaves: the lock and config.json's temporary."""
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text("")
    (run / ".config.k1ll3d.tmp.json").write_text('{"half": ')
    train(tiny_train_config(run, tiny_data_config, epochs=1, resume=True), tiny_dataset, verbose=0)
    assert json.loads((run / "state.json").read_text())["epochs_completed"] == 1
    assert not list(run.glob(".config.*")), "the half-written file is gone"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / ".notes.tmp.json").write_text("a user's file, not ours")
    with pytest.raises(OutputExistsError, match="not empty"):
        train(tiny_train_config(tmp_path / "other", tiny_data_config, epochs=1), tiny_dataset,
              verbose=0)


@pytest.mark.slow
def test_validation_on_held_out_samples_logs_map_at_r_and_keeps_the_best_tower(
        tmp_path, tiny_data_config, tiny_dataset):
    run = tmp_path / "run"
    config = tiny_train_config(run, tiny_data_config, epochs=3, val_fraction=0.3)
    result = train(config, tiny_dataset, verbose=0)
    log = pd.read_csv(run / "training_log.csv")
    assert {"val_loss", "val_map_at_r"} <= set(log.columns) and len(log) == 3
    best = json.loads((run / "best.json").read_text())
    assert best["val_map_at_r"] == pytest.approx(log["val_map_at_r"].max())
    assert best["epoch"] == int(log["val_map_at_r"].idxmax())
    kept = keras.saving.load_model(run / "best_tower.keras")
    for ours, theirs in zip(result.tower.get_weights(), kept.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.slow
def test_resume_needs_only_out_names_what_differs_and_a_copied_run_resumes(tmp_path, capsys):
    """As a user types it: the run's own settings are read back from its folder."""
    import shutil

    from microrep.cli import main

    run, syn = tmp_path / "run", tmp_path / "syn"
    first = ["train", "--data-dir", str(syn), "--synthetic-samples-per-class", "2",
             "--synthetic-images-per-sample", "2", "--synthetic-image-size", "48",
             "--input-size", "32", "--weights", "none", "--epochs", "1", "--pairs-per-epoch", "8",
             "--batch-size", "4", "--feature-bank", "2", "--feature-cache", "", "--out", str(run)]
    assert main(first + FINE_TUNE_FLAGS) == 0
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2"]) == 0
    assert json.loads((run / "state.json").read_text())["epochs_completed"] == 2
    assert json.loads((run / "config.json").read_text())["model"]["input_size"] == 32

    shutil.copytree(run, tmp_path / "copy")
    assert main(["train", "--resume", "--out", str(tmp_path / "copy"), "--epochs", "3"]) == 0
    assert json.loads((tmp_path / "copy" / "state.json").read_text())["epochs_completed"] == 3

    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(run), "--epochs", "3", "--margin", "2",
                 "--seed", "9"]) == 2
    err = capsys.readouterr().err
    assert "--margin: 1.0 in the run, 2.0 now" in err and "--seed: 3" not in err
    assert "--seed: 0 in the run, 9 now" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_second_process_training_into_the_same_folder_is_refused(tmp_path, tiny_data_config,
                                                                   tiny_dataset):
    """Another process holds the run's lock (the real flock); training is refused, then allowed."""
    import subprocess
    import sys

    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from microrep.training import RunLock\n"
         f"with RunLock({str(run)!r}):\n    print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"  # the event, not a sleep
        with pytest.raises(OutputExistsError, match=r"in use: process \d+ is training into it"):
            train(tiny_train_config(run, tiny_data_config, epochs=1), tiny_dataset, verbose=0)
        assert not (run / "config.json").exists()
    finally:
        holder.communicate("", timeout=60)  # closing stdin lets it finish and release the lock
    assert train(tiny_train_config(run, tiny_data_config, epochs=1), tiny_dataset,
                 verbose=0).epochs_completed == 1
