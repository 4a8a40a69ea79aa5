import json

import keras
import numpy as np
import pandas as pd
import pytest

from microrep.errors import OutputExistsError
from microrep.train import load_tower, train

from conftest import tiny_train_config


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


def test_resumed_run_matches_uninterrupted_run(tmp_path, tiny_data_config, tiny_dataset):
    straight = train(tiny_train_config(tmp_path / "a", tiny_data_config, epochs=2),
                     tiny_dataset, verbose=0)
    train(tiny_train_config(tmp_path / "b", tiny_data_config, epochs=1), tiny_dataset, verbose=0)
    resumed = train(tiny_train_config(tmp_path / "b", tiny_data_config, epochs=2, resume=True),
                    tiny_dataset, verbose=0)
    for a, b in zip(straight.tower.get_weights(), resumed.tower.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_overwrite_replaces_and_tower_loads(tmp_path, tiny_data_config, tiny_dataset):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("someone else's file")
    with pytest.raises(OutputExistsError, match="not empty"):
        train(tiny_train_config(run, tiny_data_config, epochs=1), tiny_dataset, verbose=0)
    train(tiny_train_config(run, tiny_data_config, epochs=1, overwrite=True), tiny_dataset, verbose=0)
    tower = load_tower(run)
    assert tower.name == "embedding_tower" and tower.output_shape == (None, 8)


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
    for ours, theirs in zip(result.tower.get_weights(), kept.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
