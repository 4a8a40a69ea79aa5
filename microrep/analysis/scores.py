"""Scoring embeddings: SVM cross-validation (stratified and by sample), held-out SVMs and
retrieval, and relabelling embeddings for a task from their metadata.

Embeddings and labels in, numbers out: the `evaluate` command, the demo,
reproduce and the held-out comparison all score through these functions.
"""

import numpy as np
import pandas as pd

from microrep.analysis.retrieval import retrieval_metrics
from microrep.analysis.svm import (cross_validate, cv_splits, fit_and_score, groups_repeat_within_classes,
                                   pca_components_for, svm_pipeline)
from microrep.data.tasks import task_rows
from microrep.errors import DataError


def classifier_factory(config, pca_components=None):
    return lambda: svm_pipeline(config.kernel, config.C, pca_components)


def evaluate_features(features, labels, groups, config, pca_components=None):
    """CV results of one feature set: stratified, and grouped by sample where possible.

    Returns {"stratified": CVResult, "grouped": CVResult or None, "grouped_note": str}.
    """
    stratified = cv_splits(labels, config.folds, config.repeats, config.seed)
    dim = np.asarray(features).shape[1]
    pca_components = pca_components_for(pca_components, min(len(t) for t, _ in stratified), dim)
    make = classifier_factory(config, pca_components)
    results = {"stratified": cross_validate(features, labels, stratified, make)}
    try:
        if groups is not None and len(set(groups)) == len(groups):
            raise DataError("grouped CV not run: every image is its own sample (no groups are "
                            "known, e.g. class folders), so it would be the per-image CV above; "
                            "give each image's sample (--csv with a group column) to measure on "
                            "unseen samples")
        if groups is not None and not groups_repeat_within_classes(labels, groups):
            raise DataError("grouped CV not run: most classes come from a single sample, so "
                            "a sample-grouped split would test classes never trained on")
        grouped = cv_splits(labels, config.folds, config.repeats, config.seed, groups)
        if pca_components:
            make = classifier_factory(config, pca_components_for(
                pca_components, min(len(t) for t, _ in grouped), dim))
        results["grouped"] = cross_validate(features, labels, grouped, make)
        results["grouped_note"] = ""
    except DataError as error:  # too few samples for grouped folds is common, not fatal
        results["grouped"] = None
        results["grouped_note"] = str(error)
    return results


def relabel(embeddings, table, task, folds):
    """Label embeddings for `task` from their metadata; drop classes below `folds` images."""
    if not task:  # the labels they were embedded with; unlabelled images and classes too
        # small for the folds go (only the rows kept are read from an archive's parts)
        labels = table["label"].fillna("").astype(str) if "label" in table else \
            pd.Series("", index=table.index)
        counts = labels[labels != ""].value_counts()
        small = sorted(counts[counts < folds].index)
        rows = np.flatnonzero(((labels != "") & ~labels.isin(small)).to_numpy())
        if len(set(labels.iloc[rows])) < 2:
            raise DataError(f"fewer than two classes have {folds} images or more; lower --folds")
        notes = [f"dropped {len(small)} class(es) with fewer than {folds} images: "
                 f"{', '.join(small)}"] if small else []
        unlabelled = int((labels == "").sum())
        notes += [f"left out {unlabelled} unlabelled image(s)"] if unlabelled else []
        return embeddings[rows], table.iloc[rows].reset_index(drop=True), notes
    try:
        rows, table, dropped = task_rows(table, task, min_per_class=folds)
    except DataError as error:
        raise DataError(f"cannot relabel these embeddings for task {task!r}: {error}") from None
    notes = [f"dropped {len(dropped)} class(es) with fewer than {folds} images: "
             f"{', '.join(dropped)}"] if dropped else []
    return embeddings[rows], table, notes


def labels_and_groups(table):
    labels = table["label"].astype(str).to_numpy()
    groups = table["group"].astype(str).to_numpy() if "group" in table else None
    return labels, groups


def heldout_results(fit, test, config):
    """SVMs (linear and RBF) fitted on `fit`, scored on `test`; retrieval of test in fit.

    `fit` and `test` are (embeddings, labels, groups). Test images of classes the
    fit set lacks cannot be classified and are left out (the caller says so).
    """
    (fit_x, fit_labels, fit_groups), (test_x, test_labels, test_groups) = fit, test
    svms = {kernel: fit_and_score(fit_x, fit_labels, test_x, test_labels,
                                  lambda kernel=kernel: svm_pipeline(kernel, config.C))
            for kernel in ("linear", "rbf")}
    with_groups = fit_groups is not None and test_groups is not None
    retrieval = retrieval_metrics(test_x, test_labels, fit_x, fit_labels,
                                  test_groups if with_groups else None,
                                  fit_groups if with_groups else None)
    return svms, retrieval
