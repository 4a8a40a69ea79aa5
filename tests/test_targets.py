"""Targets: how a micrograph was made, read from metadata, predicted from embeddings with
conformal intervals, scored by sample-grouped CV; `evaluate --target` and `predict`."""

import json

import numpy as np
import pandas as pd
import pytest

from microrep.analysis.targets import sample_folds, score_target
from microrep.cli import main
from microrep.data.targets import read_target
from microrep.embedding.archive import write_embeddings
from microrep.errors import DataError


def processing_table(samples=24, per_sample=5, seed=0):
    """Micrographs of samples with known processing; embeddings that encode it, noisily."""
    rng = np.random.default_rng(seed)
    temperature = rng.uniform(700, 1100, samples)
    hours = 10 ** rng.uniform(-1, 2, samples)
    cooling = rng.choice(["AR", "FC", "Q"], samples)
    rows, vectors = [], []
    for s in range(samples):
        for i in range(per_sample):
            rows.append({"path": f"/img/s{s}_{i}.png", "label": cooling[s], "group": f"s{s}",
                         "anneal_temperature": temperature[s], "anneal_temp_unit": "C",
                         "anneal_time": hours[s] * 60, "anneal_time_unit": "M",
                         "cool_method": cooling[s]})
            code = {"AR": 0, "FC": 1, "Q": 2}[cooling[s]]
            vectors.append(np.r_[(temperature[s] - 900) / 100, np.log10(hours[s]), np.eye(3)[code],
                                 0.0] + rng.normal(scale=0.2, size=6))
    return pd.DataFrame(rows), np.asarray(vectors, np.float32)


def test_targets_are_read_in_their_units_and_refused_in_one_line():
    table = pd.DataFrame({"anneal_temperature": [1073.15, 800, None], "anneal_temp_unit": ["K", "C", "C"],
                          "anneal_time": [90, 2, 5], "anneal_time_unit": ["M", "H", "H"],
                          "hardness": ["310", "290", ""], "etchant": ["nital", "picral", "nital"]})
    temperature = read_target(table, "anneal_temperature")
    np.testing.assert_allclose(temperature.values[:2], [800, 800])
    assert temperature.known.tolist() == [True, True, False] and temperature.unit == "°C"
    np.testing.assert_allclose(read_target(table, "log_anneal_time").values, np.log10([1.5, 2, 5]))
    assert read_target(table, "hardness").kind == "numeric"
    assert read_target(table, "etchant").kind == "categorical"
    with pytest.raises(DataError, match="needs metadata column"):
        read_target(table, "cool_method")


def test_folds_never_split_a_sample():
    groups = np.repeat([f"s{i}" for i in range(7)], 3)
    for train, test in sample_folds(groups, 5, seed=1):
        assert not set(groups[train]) & set(groups[test])


def test_a_numeric_target_beats_no_information_and_its_intervals_cover():
    table, vectors = processing_table()
    summary, rows = score_target(vectors, read_target(table, "anneal_temperature"),
                                 table["group"].to_numpy(), folds=5)
    assert summary["mae"] < 0.6 * summary["no_information_mae"] and summary["r2"] > 0.5
    assert 0.75 <= summary["coverage"] <= 1.0
    spread = rows["true"].max() - rows["true"].min()
    assert np.isfinite(rows["upper"] - rows["lower"]).all() and 0 < summary["mean_interval_width"] < spread
    assert (rows["lower"] <= rows["predicted"]).all() and (rows["predicted"] <= rows["upper"]).all()
    noise = np.random.default_rng(1).normal(size=vectors.shape).astype(np.float32)
    blind, _ = score_target(noise, read_target(table, "anneal_temperature"),
                            table["group"].to_numpy(), folds=5)
    assert blind["mae"] > summary["mae"] * 1.5  # the score reads the embedding, not the labels


def test_without_samples_there_is_no_sample_grouped_score():
    table, vectors = processing_table(samples=6)
    target = read_target(table, "anneal_temperature")
    with pytest.raises(DataError, match="every image is its own sample"):
        score_target(vectors, target, table["path"].to_numpy())
    two = table["group"].isin(["s0", "s1"]).to_numpy()
    with pytest.raises(DataError, match="2 sample.*at least three"):
        score_target(vectors[two], read_target(table[two], "anneal_temperature"),
                     table["group"].to_numpy()[two])


def test_a_categorical_target_beats_its_most_frequent_class():
    table, vectors = processing_table()
    summary, _ = score_target(vectors, read_target(table, "cool_method"),
                              table["group"].to_numpy(), folds=4)
    assert summary["accuracy"] > summary["no_information_accuracy"] + 0.3


def test_evaluate_target_and_predict_from_the_command_line(tmp_path, capsys):
    table, vectors = processing_table()
    write_embeddings(tmp_path / "emb", vectors, table, {"pretrained": False, "grid": 3})
    noise = np.random.default_rng(2).normal(size=vectors.shape).astype(np.float32)
    write_embeddings(tmp_path / "base", noise, table, {"pretrained": True, "grid": 3})
    assert main(["evaluate", "--embeddings", str(tmp_path / "emb"), "--target",
                 "anneal_temperature,log_anneal_time,cool_method", "--baseline-embeddings",
                 str(tmp_path / "base"), "--out", str(tmp_path / "eval")]) == 0
    printed = capsys.readouterr().out
    assert "anneal_temperature, 120 images of 24 samples" in printed and "cover" in printed
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    temperature = metrics["targets"]["anneal_temperature"]
    assert temperature["embeddings"]["mae"] < temperature["baseline"]["mae"]
    assert (tmp_path / "eval" / "parity_anneal_temperature.png").stat().st_size > 5000
    assert len(pd.read_csv(tmp_path / "eval" / "predictions_log_anneal_time.csv")) == 120

    fit = table["group"].isin([f"s{i}" for i in range(18)])
    write_embeddings(tmp_path / "fit", vectors[fit], table[fit], {"pretrained": False, "grid": 3})
    write_embeddings(tmp_path / "new", vectors[~fit], table[~fit].drop(
        columns=["anneal_temperature", "cool_method"]), {"pretrained": False, "grid": 3})
    assert main(["predict", "--fit-embeddings", str(tmp_path / "fit"), "--target",
                 "anneal_temperature,cool_method", "--embeddings", str(tmp_path / "new"),
                 "--out", str(tmp_path / "pred")]) == 0
    predicted = pd.read_csv(tmp_path / "pred" / "predictions.csv")
    assert len(predicted) == (~fit).sum() and {"anneal_temperature_lower", "cool_method"} <= set(predicted)
    truth = table[~fit].set_index("path")["anneal_temperature"]
    error = np.abs(predicted["anneal_temperature"] - truth[predicted["path"]].to_numpy())
    assert error.mean() < np.abs(truth - table[fit]["anneal_temperature"].mean()).mean()
    assert main(["predict", "--predictor", str(tmp_path / "pred" / "predictor"), "--embeddings",
                 str(tmp_path / "new"), "--out", str(tmp_path / "again")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "again" / "predictions.csv"), predicted)

    for argv, message in (
            (["--target", "hardness"], "needs metadata column(s) hardness"),
            (["--target", "anneal_temp_unit,anneal_temperature"], None)):
        capsys.readouterr()
        code = main(["predict", "--fit-embeddings", str(tmp_path / "fit"), *argv, "--embeddings",
                     str(tmp_path / "new"), "--out", str(tmp_path / f"bad{len(argv[1])}")])
        err = capsys.readouterr().err
        if message:
            assert code == 2 and message in err and len(err.strip().splitlines()) == 1
        else:  # a text column is a categorical target with one value: said in one line
            assert code == 2 and "one value only" in err and len(err.strip().splitlines()) == 1
    write_embeddings(tmp_path / "other", vectors[~fit][:, :4], table[~fit], {"pretrained": True})
    capsys.readouterr()
    assert main(["predict", "--predictor", str(tmp_path / "pred" / "predictor"), "--embeddings",
                 str(tmp_path / "other"), "--out", str(tmp_path / "other-pred")]) == 2
    assert "another model" in capsys.readouterr().err


@pytest.mark.slow
def test_predict_embeds_image_files_with_the_fit_archives_model(tiny_data_config, tmp_path):
    """--images: new micrographs embedded with the model recorded in the fit archive, so their
    predictions equal those of the same images read from the archive."""
    source = ["--data", "synthetic", "--data-dir", tiny_data_config.data_dir,
              "--synthetic-samples-per-class", "2", "--synthetic-images-per-sample", "3",
              "--synthetic-image-size", "64", "--synthetic-seed", "1"]
    assert main(["train", *source, "--weights", "none", "--input-size", "32", "--vgg-blocks", "1",
                 "--feature-layers", "", "--embedding-dim", "8", "--epochs", "1",
                 "--pairs-per-epoch", "8", "--batch-size", "4", "--feature-bank", "2",
                 "--out", str(tmp_path / "run")]) == 0
    assert main(["embed", *source, "--model-path", str(tmp_path / "run"),
                 "--out", str(tmp_path / "emb")]) == 0
    assert main(["predict", "--fit-embeddings", str(tmp_path / "emb"), "--target",
                 "anneal_temperature", "--embeddings", str(tmp_path / "emb"),
                 "--out", str(tmp_path / "by-archive")]) == 0
    paths = pd.read_csv(tmp_path / "by-archive" / "predictions.csv")["path"].tolist()[:4]
    (tmp_path / "list.txt").write_text("\n".join(paths) + "\n")
    assert main(["predict", "--predictor", str(tmp_path / "by-archive" / "predictor"),
                 "--images", str(tmp_path / "list.txt"), "--out", str(tmp_path / "by-file")]) == 0
    by_archive = pd.read_csv(tmp_path / "by-archive" / "predictions.csv").set_index("path")
    by_file = pd.read_csv(tmp_path / "by-file" / "predictions.csv").set_index("path")
    np.testing.assert_allclose(by_file["anneal_temperature"], by_archive.loc[paths, "anneal_temperature"],
                               rtol=1e-4)


def test_search_conditions_ranks_the_processing_of_the_neighbours(tmp_path, capsys):
    """The inverse question: neighbours from other samples, grouped by processing condition,
    ranked by how many of the k have it; the nearest samples' processing comes first."""
    table, vectors = processing_table()
    write_embeddings(tmp_path / "emb", vectors, table, {"pretrained": False, "grid": 3})
    capsys.readouterr()
    assert main(["search", "--index", str(tmp_path / "emb"), "--query-rows", "0,50",
                 "--exclude-same-group", "--k", "10", "--conditions",
                 "--out", str(tmp_path / "search")]) == 0
    printed = capsys.readouterr().out
    ranked = pd.read_csv(tmp_path / "search" / "conditions.csv")
    neighbours = pd.read_csv(tmp_path / "search" / "neighbours.csv")
    for query, found in ranked.groupby("query"):
        hits = neighbours[neighbours["query"] == query]
        assert found["neighbours"].sum() == len(hits) == 10
        top = found.iloc[0]
        assert top["neighbours"] == hits["processing"].value_counts().max()
        assert f"1. {top['processing']}: {top['neighbours']} of them" in printed
        assert not (hits["group"] == table.set_index("path").loc[query, "group"]).any()
    write_embeddings(tmp_path / "bare", vectors, table[["path", "label", "group"]])
    assert main(["search", "--index", str(tmp_path / "bare"), "--query-rows", "0",
                 "--conditions"]) == 2
    assert "carry no processing" in capsys.readouterr().err


@pytest.mark.slow
def test_training_ordered_by_processing(tiny_data_config, tmp_path, capsys):
    """--similarity processing trains on micrographs whose processing is known, and is
    refused in one line for images without it (class folders)."""
    from conftest import write_class_folders

    common = ["--weights", "none", "--input-size", "32", "--vgg-blocks", "1", "--feature-layers",
              "", "--epochs", "2", "--pairs-per-epoch", "32", "--batch-size", "8",
              "--feature-bank", "2", "--similarity", "processing"]
    source = ["--data", "synthetic", "--data-dir", tiny_data_config.data_dir,
              "--synthetic-samples-per-class", "2", "--synthetic-images-per-sample", "3",
              "--synthetic-image-size", "64", "--synthetic-seed", "1"]
    assert main(["train", *source, *common, "--out", str(tmp_path / "run")]) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["similarity"] == "processing"
    write_class_folders(tmp_path / "imgs", per_class=3, size=64)
    capsys.readouterr()
    assert main(["train", "--images", str(tmp_path / "imgs"), *common,
                 "--out", str(tmp_path / "run2")]) == 2
    err = capsys.readouterr().err
    assert "not a processing condition" in err and len(err.strip().splitlines()) == 1
