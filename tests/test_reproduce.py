"""`microrep reproduce` end to end on a tiny synthetic set, including resuming."""

import dataclasses
import json
import os

import pandas as pd
import pytest

from microrep.config import (DataConfig, ReproduceConfig, TrainConfig, from_dict,
                             paper_train_config)
from microrep.commands.reproduce import reproduce


def tiny_config(tmp_path):
    data = DataConfig(data="synthetic", data_dir=str(tmp_path / "data"),
                      synthetic_samples_per_class=2, synthetic_images_per_sample=3,
                      synthetic_image_size=64, synthetic_seed=2)
    train = from_dict(TrainConfig, {"data": dataclasses.asdict(data), "weights": "none",
                                    "input_size": 32, "vgg_blocks": 2, "embedding_dim": 8,
                                    "epochs": 1, "pairs_per_epoch": 16, "batch_size": 8,
                                    "image_view": {"view": "tiles", "grid": 1}},
                      base=paper_train_config())
    return ReproduceConfig(train=train, out=str(tmp_path / "out"), tasks="3phase,processing",
                           folds=2, processing_folds=2, processing_images=3,
                           processing_pca=4, heldout_splits=1)


@pytest.mark.slow
def test_reproduce_writes_the_side_by_side_table_and_resumes(tmp_path):
    messages = []
    table = reproduce(tiny_config(tmp_path), log=messages.append)
    out = tmp_path / "out"
    results = pd.read_csv(out / "results.csv")
    # DeCost et al.'s crop-level folds, micrograph folds and sample folds; processing with
    # their PCA and without
    assert list(zip(results["task"], results["cv"], results["pca"])) == [
        ("3phase", "crops", 0), ("3phase", "stratified", 0), ("3phase", "grouped", 0),
        ("processing", "crops", 4), ("processing", "crops", 0), ("processing", "stratified", 4),
        ("processing", "stratified", 0)]
    assert results.loc[0, "paper_siamese"] == 0.9816 and results.loc[0, "paper_decost"] == 0.966
    fixed = ["pretrained_mean", "vlad_block4_mean", "vlad_block5_mean"]
    assert results[fixed].notna().all().all()
    crops = results["cv"] == "crops"  # the Siamese model is scored per micrograph only
    assert results.loc[~crops, "siamese_mean"].notna().all() and results.loc[crops, "siamese_mean"].isna().all()
    assert len(table) == len(results)
    report = (out / "results.md").read_text()
    assert "| 3 phases (3 classes) | micrographs | — | 98.2% | 96.6% |" in report
    assert "random-feature baseline" in report  # weights none is said plainly
    assert "processing / grouped: not run" in report  # one sample per condition
    assert "DeCost et al.'s protocol" in report and "3 drawn from each" in report
    assert "## On images the training never saw" in report
    heldout = pd.read_csv(out / "heldout.csv")
    assert set(heldout["split"]) == {"within", "disjoint"} and set(heldout["seed"]) == {0}
    assert set(heldout["method"]) == {"pretrained", "recipe input", "learned"}
    assert {"linear SVM", "MAP@R"} <= set(heldout["metric"])
    accuracy = heldout.loc[heldout["metric"] == "linear SVM", "value"]
    # within: both tasks; disjoint: 3 phases only (held-out conditions were never trained on);
    # each for pretrained, recipe input and learned
    assert accuracy.between(0, 1).all() and len(accuracy) == (2 + 1) * 3
    # MAP@R among other samples is undefined where a condition has one sample
    assert heldout["value"].dropna().between(0, 1).all()
    for name in ("pc_descriptors.png", "pc_extremes.png", "pca_classes.png",
                 "confusion_3phase.png", "pc_correlations.csv"):
        assert (out / name).is_file(), name
    correlations = pd.read_csv(out / "pc_correlations.csv")
    assert {"measured", "ground truth"} <= set(correlations["source"])

    # no test image ever sits in a fold's training set
    fold_files = sorted((out / "folds").glob("*.json"))
    assert len(fold_files) == 10
    for path in fold_files:
        record = json.loads(path.read_text())
        if record["flavour"] != "crops":  # DeCost et al.'s crop folds split micrographs by design
            assert not set(record["train_rows"]) & set(record["test_rows"])
        if record["task"] == "processing" and record["flavour"] == "stratified":
            test_counts = pd.Series(record["true"]).value_counts()
            assert set(test_counts) <= {1, 2}
            assert len(record["train_rows"]) + len(record["test_rows"]) == 3 * len(test_counts)

    # a second run finds every fold done and trains no fold again
    before = {p.name: p.stat().st_mtime_ns for p in fold_files}
    messages.clear()
    reproduce(tiny_config(tmp_path), log=messages.append)
    assert not [m for m in messages if "to train on" in m]
    assert before == {p.name: p.stat().st_mtime_ns for p in fold_files}


def test_balanced_rows_draws_per_class_and_drops_rare_classes():
    import numpy as np

    from microrep.data.tasks import balanced_rows

    labels = np.array(["a"] * 12 + ["b"] * 10 + ["c"] * 4)
    positions, dropped = balanced_rows(labels, 10, seed=0)
    assert dropped == ["c"]
    assert list(pd.Series(labels[positions]).value_counts().sort_index()) == [10, 10]
    assert len(set(positions)) == 20
    again, _ = balanced_rows(labels, 10, seed=0)
    other, _ = balanced_rows(labels, 10, seed=1)
    assert list(again) == list(positions) and list(other) != list(positions)


@pytest.mark.slow
def test_reproduce_with_a_frozen_base_computes_vgg16_features_once(tmp_path):
    config = tiny_config(tmp_path)
    # the CPU path: frozen base, whole frames, heads trained on the frame pieces, and the
    # held-out part training the run's own recipe on the same features
    train = from_dict(TrainConfig, {"train_base": False, "feature_bank": 0, "epochs": 3,
                                    "preset": "cpu", "learning_rate": 1e-3, "feature_cache": "",
                                    "image_view": {"view": "frame", "scales": "1,0.5"}},
                      base=config.train)
    config = dataclasses.replace(config, tasks="3phase", train=train)
    messages = []
    table = reproduce(config, log=messages.append)
    assert any("computed once for every fold" in m for m in messages)
    assert any("the whole frame at scales 1, 0.5" in m and "megapixels" in m and "no fine-tuning" in m
               for m in messages)  # the cost line names the CPU path before the work
    assert list(table["cv"]) == ["crops", "stratified", "grouped"]
    assert table.loc[1:, ["pretrained_mean", "vlad_block4_mean", "siamese_mean"]].notna().all().all()
    for path in (tmp_path / "out" / "folds").glob("*-stratified-*.json"):
        record = json.loads(path.read_text())
        assert not set(record["train_rows"]) & set(record["test_rows"])
    report = (tmp_path / "out" / "results.md").read_text()
    assert "frozen; only the head trained" in report and "the whole frame at scales 1, 0.5" in report
    assert "## On images the training never saw" in report
    assert any("(the heads train on those pieces)" in m for m in messages)


def test_every_training_setting_can_be_set_through_reproduce():
    """Each leaf of TrainConfig that has a flag in `microrep train` has one in `reproduce` too,
    and a value given there reaches the TrainConfig each fold trains under."""
    import argparse

    from microrep.config import add_config_flags, config_from_args
    from microrep.config.fields import flag_fields

    train_flags = {path[-1] for path, _, _ in flag_fields(TrainConfig)}
    owned = {"out", "resume", "overwrite"}  # reproduce keeps its own report folder and resumes itself
    reproduce_paths = {path[-1]: path for path, _, _ in flag_fields(ReproduceConfig)}
    assert train_flags - owned <= set(reproduce_paths)
    parser = argparse.ArgumentParser()
    add_config_flags(parser, ReproduceConfig)
    for name in sorted(train_flags - owned):
        path, field, field_type = next(f for f in flag_fields(ReproduceConfig) if f[0][-1] == name)
        assert path[0] == "train", name
        value = {bool: "--no-" if field.default else "--", int: "7", float: "0.25"}.get(field_type)
        choices = field.metadata.get("choices")
        flag = "--" + name.replace("_", "-")
        if field_type is bool:
            argv, expected = [value + name.replace("_", "-")], not field.default
        elif choices:
            expected = [c for c in choices if c != field.default][0]
            argv = [flag, str(expected)]
        elif field_type is str:
            argv, expected = [flag, "set-by-test"], "set-by-test"
        else:
            argv, expected = [flag, value], field_type(value)
        if name in ("input_size", "synthetic_image_size", "window"):  # at least 32 pixels
            argv, expected = [flag, "64"], 64
        if name == "um_per_px_limit":  # a factor of at least 1
            argv, expected = [flag, "2.5"], 2.5
        if name == "scales":
            argv, expected = [flag, "1,0.5"], "1,0.5"
        config = config_from_args(ReproduceConfig, parser.parse_args(argv))
        node = config
        for part in path[:-1]:
            node = getattr(node, part)
        if name in ("images", "csv"):  # shortcuts: kept as the source they name
            assert (node.data, node.data_dir) == (name, os.path.abspath(expected)), name
        else:
            assert getattr(node, name) == expected, name


def test_reproduce_trains_the_frozen_recipe_on_a_cpu_and_fine_tunes_on_a_gpu():
    """Without a GPU the default is the frozen-base recipe at full resolution (each fold trains
    a head on cached features); with one, the paper's fine-tuning; flags given still win."""
    from microrep.config.presets import reproduce_preset

    def built(values, accelerator):
        values, base = reproduce_preset(values, accelerator)
        return from_dict(ReproduceConfig, values, base=base)

    data = {"train": {"data": {"data": "uhcsdb", "data_dir": "somewhere"}}}
    cpu = built(json.loads(json.dumps(data)), None)
    assert cpu.train.preset == "cpu" and not cpu.train.model.train_base
    assert cpu.train.image_view.view == "frame" and cpu.image_scale == 1.0 and cpu.train.feature_cache
    gpu = built(json.loads(json.dumps(data)), "gpu:H100")
    assert gpu.train.preset == "gpu" and gpu.train.model.train_base
    assert gpu.train.model.head == "projection" and gpu.train.similarity == "label"
    chosen = built({"train": {"preset": "gpu", "epochs": 3, **data["train"]}}, None)
    assert chosen.train.model.train_base and chosen.train.epochs == 3
    quick = built({"quick": True, **json.loads(json.dumps(data))}, None)
    assert quick.train.preset == "none"  # --quick replaces the training settings itself


def test_the_processing_protocol_selects_conditions_draws_and_folds():
    """DeCost et al.'s selection on a small table: conditions with at least 10 micrographs,
    10 drawn from each, 10 folds that each leave one micrograph per condition out; crops
    folds split four crops per micrograph."""
    import numpy as np

    from microrep.analysis.svm import cv_splits
    from microrep.commands.reproduce import CROPS_PER_IMAGE, fold_labels, task_folds

    counts = {800: 14, 900: 10, 1000: 9}  # the last condition has too few
    table = pd.DataFrame([{"anneal_temperature": float(t), "anneal_temp_unit": "C",
                           "anneal_time": 90.0, "anneal_time_unit": "M", "cool_method": "Q",
                           "primary_microconstituent": "spheroidite", "group": f"s{t}"}
                          for t, n in counts.items() for _ in range(n)])
    config = ReproduceConfig()
    rows, labels, groups, notes = fold_labels(table, "processing", config)
    assert sorted(set(labels)) == ["800C-90M-Q", "900C-90M-Q"]
    assert list(pd.Series(labels).value_counts()) == [10, 10] and len(set(rows)) == 20
    assert all(table.loc[r, "anneal_temperature"] in (800, 900) for r in rows)
    assert task_folds("processing", config) == 10 and task_folds("3phase", config) == 5
    assert "10 drawn from each" in notes[-1] and "10-fold" in notes[-1] and "and without" in notes[-1]
    for train, test in cv_splits(labels, 10, 1, 0):
        assert sorted(pd.Series(labels[test]).value_counts()) == [1, 1]
    crops = np.repeat(labels, CROPS_PER_IMAGE)
    assert sum(len(test) for _, test in cv_splits(crops, 10, 1, 0)) == 80
    again = fold_labels(table, "processing", config)[0]
    assert list(again) == list(rows)  # the draw is seeded
