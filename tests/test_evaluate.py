import numpy as np
import pytest

from microrep.analysis.svm import (cross_validate, cv_splits, pca_projection, raw_pixel_features, svm_pipeline)
from microrep.errors import DataError


def test_grouped_splits_never_share_a_sample():
    labels = np.repeat(["a", "b"], 12)
    groups = np.repeat([f"s{i}" for i in range(8)], 3)
    splits = cv_splits(labels, folds=4, groups=groups)
    assert len(splits) == 4
    for train_index, test_index in splits:
        assert not set(groups[train_index]) & set(groups[test_index])


def test_too_few_images_for_cv_names_the_class():
    labels = np.array(["a"] * 10 + ["b"] * 2)
    with pytest.raises(DataError, match=r"b \(2\)"):
        cv_splits(labels, folds=5)


def test_separable_features_score_perfectly_and_noise_scores_near_chance():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 20)
    centers = {"a": 0.0, "b": 5.0, "c": 10.0}
    separable = np.stack([rng.normal(centers[l], 0.3, 4) for l in labels])
    splits = cv_splits(labels, folds=5, seed=1)
    result = cross_validate(separable, labels, splits)
    assert result.mean == 1.0 and result.confusion.sum() == len(labels)
    noise = cross_validate(rng.normal(size=(60, 4)), labels, splits)
    assert noise.mean < 0.6


def test_raw_pixels_and_pca():
    images = [np.full((40, 50), v, dtype=np.uint8) for v in (0, 128, 255)]
    features = raw_pixel_features(images, size=8)
    assert features.shape == (3, 64) and features.max() == pytest.approx(1.0)
    scores, explained, _ = pca_projection(np.random.default_rng(0).normal(size=(20, 5)), 2)
    assert scores.shape == (20, 2) and explained[0] >= explained[1]
    assert svm_pipeline(pca_components=3).steps[1][0] == "pca"


def test_one_scoring_engine_for_every_report():
    """Accuracy, spread (ddof=0) and confusion from test folds, as evaluate and reproduce report."""
    from microrep.analysis.svm import score_folds

    folds = [(["a", "a", "b"], ["a", "b", "b"]), (["a", "b", "b"], ["a", "b", "b"])]
    result = score_folds(folds)
    assert result.fold_accuracies == [2 / 3, 1.0]
    assert result.std == pytest.approx(np.std([2 / 3, 1.0]))  # not pandas' ddof=1
    assert result.classes == ["a", "b"] and result.confusion.tolist() == [[2, 1], [0, 3]]


def test_reproduce_summary_uses_the_same_engine():
    from microrep.commands.reproduce import summarise_folds

    records = [{"task": "3phase", "flavour": "stratified", "fold": i, "true": truth,
                "predictions": {"pretrained@0": predicted, "siamese@0": truth}}
               for i, (truth, predicted) in
               enumerate([(["a", "a", "b"], ["a", "b", "b"]), (["a", "b", "b"], ["a", "b", "b"])])]
    row = summarise_folds(records).set_index("method").loc["pretrained"]
    assert row["mean"] == pytest.approx(5 / 6) and row["std"] == pytest.approx(np.std([2 / 3, 1.0]))


def test_balanced_accuracy_and_recall_show_what_plain_accuracy_hides():
    from microrep.analysis.svm import score_folds

    truth = ["big"] * 8 + ["small"] * 2
    predicted = ["big"] * 10  # a classifier that always answers the large class
    result = score_folds([(truth, predicted)])
    assert result.mean == 0.8
    assert result.recall == {"big": 1.0, "small": 0.0}
    assert result.balanced == 0.5
    assert result.summary()["balanced_accuracy"] == 0.5


def test_class_folders_without_samples_get_no_grouped_cv(tmp_path, capsys):
    """Each image of a class folder is its own sample: 'grouped' CV would be per-image CV,
    so evaluate says grouped CV is not available instead of reporting it as grouped."""
    import json

    import pandas as pd

    from microrep.cli import main
    from microrep.embedding.archive import write_embeddings

    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 8)
    vectors = rng.normal(size=(24, 6)).astype(np.float32) + (labels == "a")[:, None] * 3
    table = pd.DataFrame({"path": [f"/img/{l}/{i}.png" for i, l in enumerate(labels)],
                          "label": labels, "group": [f"{l}/{i}.png" for i, l in enumerate(labels)]})
    write_embeddings(tmp_path / "emb", vectors, table)
    assert main(["evaluate", "--embeddings", str(tmp_path / "emb"), "--folds", "3",
                 "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["grouped"] is None and "every image is its own sample" in metrics["grouped_note"]
    assert "every image is its own sample" in capsys.readouterr().out
    samples = table.assign(group=[f"s{i // 2}" for i in range(24)])  # two images a sample
    write_embeddings(tmp_path / "emb2", vectors, samples)
    assert main(["evaluate", "--embeddings", str(tmp_path / "emb2"), "--folds", "3",
                 "--out", str(tmp_path / "eval2")]) == 0
    assert json.loads((tmp_path / "eval2" / "metrics.json").read_text())["grouped"] is not None


def test_the_linear_svm_with_its_kernel_precomputed_is_scikit_learn_s_linear_svc():
    """LinearKernelSVC hands libsvm X Xᵀ instead of letting it compute each pair: the same
    dual problem, so the same predictions and decision values as SVC(kernel="linear")
    with balanced class weights, also past the size where it falls back to that SVC."""
    from sklearn.base import clone
    from sklearn.svm import SVC

    from microrep.analysis.svm import LinearKernelSVC

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 120)
    features = rng.normal(size=(120, 40)) + 0.6 * labels[:, None] * (np.arange(40) < 5)
    plain = SVC(kernel="linear", C=0.5, class_weight="balanced").fit(features[:90], labels[:90])
    for limit in (8000, 10):  # precomputed, then the fallback
        ours = clone(LinearKernelSVC(C=0.5, max_precomputed=limit)).fit(features[:90], labels[:90])
        np.testing.assert_array_equal(ours.predict(features[90:]), plain.predict(features[90:]))
        np.testing.assert_allclose(ours.decision_function(features[90:]),
                                   plain.decision_function(features[90:]), rtol=1e-6, atol=1e-6)
    assert (ours.train_ is None) and list(ours.classes_) == [0, 1, 2]
