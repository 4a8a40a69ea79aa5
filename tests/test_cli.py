"""End-to-end runs of the `microrep` command, as a user types it."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from microrep.cli import main
from microrep.embedding.archive import read_embeddings

TINY_DEMO = ["--input-size", "32", "--embedding-dim", "8", "--epochs", "1",
             "--pairs-per-epoch", "16", "--batch-size", "8", "--samples-per-class", "2",
             "--images-per-sample", "3", "--image-size", "48", "--folds", "2", "--grid", "1"]


def run_cli(*args, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "microrep", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=900)


@pytest.mark.slow
def test_tiny_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    done = run_cli("demo", "--out", str(out), *TINY_DEMO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "report:" in done.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["methods"]) == {"learned embedding", "untrained tower", "raw pixels"}
    for name in ("report.md", "pca_learned.png", "confusion.png", "training_curves.png",
                 "accuracy.png", "export/tower.keras", "export/savedmodel/saved_model.pb",
                 "embeddings/manifest.json", "embeddings/parts/part-000000.done.json",
                 "run/tower.keras"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert "| learned embedding |" in report and "never seen in training" in report
    verdict = metrics["verdict"]  # computed from the scores, then written in words
    learned = metrics["methods"]["learned embedding"]["heldout"]["accuracy_mean"]
    assert verdict["learned"] == learned and verdict["beats"] == (learned > verdict["best"])
    assert ("**beats**" if verdict["beats"] else "**does NOT beat**") in report
    split = metrics["split"]
    assert split["training_images"] + split["unseen_images"] == metrics["dataset"]["images"]
    assert split["training_samples"] == split["unseen_samples"] == 7  # one of each class's two
    assert metrics["recipe"] == "scratch" and "not the recipe microrep recommends" in report
    assert not (out / "embeddings" / "embeddings.npy").exists()  # one archive format
    trained_on = read_embeddings(out / "embeddings")[1]
    run_images = json.loads((out / "run" / "config.json").read_text())
    assert trained_on["trained_on"].sum() == split["training_images"] and run_images
    for result in metrics["methods"].values():
        assert 0.0 <= result["heldout"]["accuracy_mean"] <= 1.0
        assert "balanced_accuracy" in result["heldout"]

    # a second demo into the same folder is refused with one line, not a traceback
    again = run_cli("demo", "--out", str(out), *TINY_DEMO)
    assert again.returncode == 2
    assert "--overwrite" in again.stderr and "Traceback" not in again.stderr

    # the demo's embeddings are an archive to search and explore, its trained tower the model
    table = read_embeddings(out / "embeddings")[1]
    query = table["path"].iloc[2]
    assert main(["search", "--index", str(out / "embeddings"), "--query", str(query), "--k", "3",
                 "--out", str(tmp_path / "search")]) == 0
    found = pd.read_csv(tmp_path / "search" / "neighbours.csv")
    assert found["row"].iloc[0] == 2 and found["distance"].iloc[0] < 1e-3  # itself, re-embedded
    assert main(["index", str(out / "embeddings"), "--out", str(tmp_path / "index")]) == 0
    assert main(["search", "--index", str(tmp_path / "index"), "--query-rows", "2", "--k", "3",
                 "--out", str(tmp_path / "search-index")]) == 0
    by_index = pd.read_csv(tmp_path / "search-index" / "neighbours.csv")
    assert len(by_index) == 3 and 2 not in by_index["row"].tolist()
    assert main(["explore", str(out / "embeddings"), "--out", str(tmp_path / "explorer.html")]) == 0
    assert (tmp_path / "explorer.html").stat().st_size > 100_000


@pytest.mark.slow
def test_demo_with_pretrained_weights_trains_the_recommended_recipe(tmp_path):
    from microrep.nn.backbone import load_vgg16

    weights = tmp_path / "vgg16.weights.h5"
    load_vgg16(32, "none").save_weights(weights)  # a weights file, as a user's ImageNet copy
    out = tmp_path / "demo"
    done = run_cli("demo", "--out", str(out), *TINY_DEMO, "--weights", str(weights),
                   "--feature-cache", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recipe"] == "recommended"
    trained = metrics["train_settings"]
    assert (trained["model"]["train_base"], trained["model"]["head"], trained["similarity"]) == \
        (False, "residual", "graded")
    assert "recommended recipe" in (out / "report.md").read_text()


@pytest.mark.slow
def test_generate_train_embed_evaluate_export_chain(tmp_path):
    data = tmp_path / "data"
    assert main(["generate", "--out", str(data), "--classes", "spheroidite,pearlite,network",
                 "--samples-per-class", "2", "--images-per-sample", "3",
                 "--image-size", "48"]) == 0
    # the default recipe: a residual head on pooled features of a frozen base
    model = ["--input-size", "32", "--vgg-blocks", "2", "--weights", "none",
             "--feature-cache", str(tmp_path / "cache")]
    dataset = ["--data", "folder", "--data-dir", str(data)]
    assert main(["train", *dataset, *model, "--epochs", "1", "--pairs-per-epoch", "8",
                 "--batch-size", "8", "--out", str(tmp_path / "run")]) == 0
    assert main(["embed", *dataset, "--model-path", str(tmp_path / "run"), "--grid", "2",
                 "--out", str(tmp_path / "emb")]) == 0
    assert main(["evaluate", "--embeddings", str(tmp_path / "emb"), "--folds", "2",
                 "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_images"] == 18 and 0.0 <= metrics["stratified"]["accuracy_mean"] <= 1.0
    assert metrics["retrieval"]["all"]["queries"] == 18
    assert 0.0 <= metrics["retrieval"]["other_samples"]["map_at_r"] <= 1.0
    assert (tmp_path / "eval" / "pca.png").is_file()
    assert main(["evaluate", "--embeddings", str(tmp_path / "emb"), "--folds", "2",
                 "--task", "processing", "--out", str(tmp_path / "eval-processing")]) == 0
    relabelled = json.loads((tmp_path / "eval-processing" / "metrics.json").read_text())
    assert relabelled["task"] == "processing" and all("C-" in c for c in relabelled["classes"])
    assert main(["export", "--model-path", str(tmp_path / "run"),
                 "--out", str(tmp_path / "export")]) == 0
    assert (tmp_path / "export" / "savedmodel" / "saved_model.pb").is_file()


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "folder", "--data-dir", "{tmp}/nowhere", "--weights", "none",
      "--out", "{tmp}/run"],
     "no metadata.csv"),
    (["train", "--config", "{tmp}/missing.yaml"], "cannot read config file"),
    (["train", "--input-size", "16", "--weights", "none", "--data-dir", "{tmp}/syn",
      "--synthetic-samples-per-class", "1", "--synthetic-images-per-sample", "2",
      "--synthetic-image-size", "32", "--out", "{tmp}/run"], "--input-size must be at least 32"),
    (["evaluate", "--embeddings", "{tmp}/none", "--out", "{tmp}/eval"], "holds no embeddings archive; run `microrep embed`"),
    (["export", "--model-path", "{tmp}"], "train first"),
    (["embed", "--pretrained", "--weights", "none", "--images", "{tmp}", "--out", "{tmp}/emb",
      "--num-shards", "2", "--shard-index", "1", "--overwrite"], "remove {tmp}/emb first"),
    (["embed", "--pretrained", "--recipe-input", "--images", "{tmp}", "--out", "{tmp}/emb"],
     "give one of them"),
    (["embed", "--pretrained", "--weights", "none", "--out", "{tmp}/emb"], "which micrographs?"),
    (["train", "--weights", "none", "--out", "{tmp}/run"], "which micrographs?"),
])
def test_bad_input_gives_one_line_error(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)  # nothing may be written outside the test's folder
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message.replace("{tmp}", str(tmp_path)) in err and len(err.strip().splitlines()) == 1


TINY_TRAIN = ["train", "--data-dir", "{tmp}/syn", "--synthetic-samples-per-class", "2",
              "--synthetic-images-per-sample", "2", "--synthetic-image-size", "48",
              "--input-size", "32", "--weights", "none", "--epochs", "1", "--pairs-per-epoch", "8",
              "--batch-size", "4", "--feature-bank", "2", "--out", "{tmp}/run"]


def other_architecture_weights(path):
    """A real Keras weights file, of a model that is not VGG16."""
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.save_weights(path)
    return path


@pytest.mark.parametrize("extra, message", [
    (["--epochs", "-1"], "--epochs must be at least 1, got -1"),
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--learning-rate", "-1"], "--learning-rate must be above 0"),
    (["--positive-fraction", "2"], "--positive-fraction must be at most 1"),
    (["--input-size", "7"], "--input-size must be at least 32"),
    (["--weights", "{tmp}/missing.weights.h5"], "weights file not found"),
    (["--weights", "{tmp}/junk.weights.h5"], "not an HDF5"),
    (["--weights", "{tmp}/dense.weights.h5"], "cannot load VGG16 weights"),
])
def test_refused_setting_writes_nothing_so_the_corrected_command_runs(tmp_path, capsys, monkeypatch,
                                                                     extra, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.weights.h5").write_bytes(b"not weights")
    other_architecture_weights(tmp_path / "dense.weights.h5")
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in TINY_TRAIN + extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_config_file_takes_flag_names_and_print_config_round_trips(tmp_path, capsys):
    assert run_cli("train", "--print-config").stdout == run_cli("train", "--print-config").stdout
    example = run_cli("train", "--print-config").stdout
    assert "# VGG16 blocks to keep" in example and "learning-rate: 0.0001" in example
    from microrep.config import TrainConfig, config_example

    assert example == config_example(TrainConfig)
    settings = tmp_path / "train.yaml"
    settings.write_text(example.replace("epochs: 10", "epochs: 1")
                        .replace('data-dir: ""', f"data-dir: {tmp_path / 'syn'}")
                        .replace("input-size: 224", "input_size: 32")
                        .replace('weights: "imagenet"', "weights: none")
                        .replace("pairs-per-epoch: 2048", "pairs-per-epoch: 8")
                        .replace("batch-size: 64", "batch-size: 4")
                        .replace("feature-bank: 16", "feature-bank: 2")
                        .replace("synthetic-image-size: 160", "synthetic-image-size: 48")
                        .replace('out: "runs/train"', f"out: {tmp_path / 'run'}"))
    assert main(["train", "--config", str(settings), "--feature-cache", ""]) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["input_size"] == 32 and saved["epochs"] == 1 and saved["batch_size"] == 4
    settings.write_text("input-size: 64\nmodel:\n  input_size: 32\n")
    assert main(["train", "--config", str(settings)]) == 2
    assert "input-size is given twice" in capsys.readouterr().err


@pytest.mark.slow
def test_unknown_flag_and_help():
    done = run_cli("train", "--no-such-flag")
    assert done.returncode == 2 and "unrecognized arguments" in done.stderr
    helped = run_cli("train", "--help")
    assert helped.returncode == 0 and "--margin" in helped.stdout and "default: 1.8" in helped.stdout
    assert "(default: )" not in helped.stdout and "default: auto" in helped.stdout


@pytest.mark.slow
def test_tensorflow_start_up_chatter_is_kept_off_the_users_screen(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "microrep", "export", "--model-path",
                           str(tmp_path / "no-run")], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"microrep export: error: model file not found: {tmp_path / 'no-run'}"]


def test_every_command_prints_its_help(capsys):
    """argparse formats each help text with %: a stray percent sign breaks --help."""
    from microrep.cli import COMMANDS

    for command in COMMANDS:
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0, command
        assert "usage: microrep " + command in capsys.readouterr().out
