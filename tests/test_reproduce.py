"""`microrep reproduce` end to end on a tiny synthetic set, including resuming."""

import json

import pandas as pd

from microrep.config import DataConfig, ReproduceConfig
from microrep.reproduce import reproduce


def tiny_config(tmp_path):
    data = DataConfig(data="synthetic", data_dir=str(tmp_path / "data"),
                      synthetic_samples_per_class=2, synthetic_images_per_sample=3,
                      synthetic_image_size=64, synthetic_seed=2)
    return ReproduceConfig(data=data, out=str(tmp_path / "out"), tasks="3phase,processing",
                           weights="none", input_size=32, vgg_blocks=2, embedding_dim=8,
                           epochs=1, pairs_per_epoch=16, batch_size=8, grid=1, folds=2)


def test_reproduce_writes_the_side_by_side_table_and_resumes(tmp_path):
    messages = []
    table = reproduce(tiny_config(tmp_path), log=messages.append)
    out = tmp_path / "out"
    results = pd.read_csv(out / "results.csv")
    assert list(results["task"]) == ["3phase", "3phase", "processing"]
    assert set(results["cv"]) == {"stratified", "grouped"}
    assert results.loc[0, "paper_siamese"] == 0.9816 and results.loc[0, "paper_decost"] == 0.966
    assert results[["baseline_mean", "ours_mean"]].notna().all().all()
    assert len(table) == len(results)
    report = (out / "results.md").read_text()
    assert "| 3 phases | stratified | 98.2% | 96.6% |" in report
    assert "random-feature baseline" in report  # weights none is said plainly
    assert "processing / grouped: not run" in report  # one sample per condition
    for name in ("pc_descriptors.png", "pc_extremes.png", "pca_classes.png",
                 "confusion_3phase.png", "pc_correlations.csv"):
        assert (out / name).is_file(), name
    correlations = pd.read_csv(out / "pc_correlations.csv")
    assert {"measured", "ground truth"} <= set(correlations["source"])

    # no test image ever sits in a fold's training set
    fold_files = sorted((out / "folds").glob("*.json"))
    assert len(fold_files) == 6
    for path in fold_files:
        record = json.loads(path.read_text())
        assert not set(record["train_rows"]) & set(record["test_rows"])

    # a second run finds every fold done and trains no fold again
    before = {p.name: p.stat().st_mtime_ns for p in fold_files}
    messages.clear()
    reproduce(tiny_config(tmp_path), log=messages.append)
    assert not [m for m in messages if "training on" in m]
    assert before == {p.name: p.stat().st_mtime_ns for p in fold_files}
