"""The evaluate stage: CV accuracy, PCA and figures for one set of embeddings."""

from pathlib import Path

import numpy as np

from microrep.analysis.evaluate import (cross_validate, cv_splits, fit_and_score, pca_components_for,
                                        groups_repeat_within_classes, pca_projection, svm_pipeline)
from microrep.analysis.retrieval import retrieval_metrics
from microrep.errors import DataError
from microrep.analysis.plots import plot_confusion, plot_pca_scatter
from microrep.embed import read_embeddings
from microrep.fileio import write_json


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
    from microrep.data.tasks import task_rows

    if not task:  # the labels they were embedded with; classes too small for the folds go
        counts = table["label"].astype(str).value_counts()
        small = sorted(counts[counts < folds].index)
        rows = np.flatnonzero(~table["label"].astype(str).isin(small).to_numpy())
        if len(set(table["label"].astype(str).iloc[rows])) < 2:
            raise DataError(f"fewer than two classes have {folds} images or more; lower --folds")
        notes = [f"dropped {len(small)} class(es) with fewer than {folds} images: "
                 f"{', '.join(small)}"] if small else []
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


def evaluate_heldout(config):
    """Fit on `config.embeddings`, score `config.test_embeddings`; write metrics and figures."""
    sets, notes = [], []
    for role, folder in (("fit", config.embeddings), ("test", config.test_embeddings)):
        embeddings, table = read_embeddings(folder)
        if config.task:
            embeddings, table, dropped = relabel(embeddings, table, config.task, 1)
            notes += [f"{role} set: {note}" for note in dropped]
        elif "label" not in table or table["label"].isna().all():
            raise DataError(f"the {role} embeddings in {folder} carry no labels; pass --task "
                            "to label them from their metadata")
        sets.append((embeddings, *labels_and_groups(table)))
    fit, test = sets
    unknown = sorted(set(test[1]) - set(fit[1]))
    if unknown:
        keep = ~np.isin(test[1], unknown)
        test = tuple(None if part is None else part[keep] for part in test)
        notes.append(f"left out {int((~keep).sum())} test image(s) of class(es) the fit set "
                     f"lacks: {', '.join(unknown)}")
    if len(set(fit[1])) < 2 or not len(test[1]):
        raise DataError("held-out evaluation needs at least two classes in the fit set and "
                        "test images of those classes")
    svms, retrieval = heldout_results(fit, test, config)
    out = Path(config.out)
    chosen = svms[config.kernel]
    figures = {"confusion": plot_confusion(chosen.confusion, chosen.classes, out / "confusion.png",
                                           f"held-out test set, {config.kernel} SVM").name}
    metrics = {
        "mode": "held-out", "fit_embeddings": str(config.embeddings),
        "test_embeddings": str(config.test_embeddings), "task": config.task or "as embedded",
        "n_fit": int(len(fit[1])), "n_test": int(len(test[1])), "classes": sorted(set(fit[1])),
        "notes": notes, "accuracy": {kernel: result.mean for kernel, result in svms.items()},
        "heldout": {kernel: result.summary() for kernel, result in svms.items()},
        "retrieval": retrieval, "settings": {"kernel": config.kernel, "C": config.C},
        "figures": figures,
    }
    write_json(out / "metrics.json", metrics)
    return metrics


def evaluate_embeddings(config):
    """Run the evaluate stage of an EvalConfig; return the metrics it wrote."""
    from microrep.fileio import refuse_earlier_output

    refuse_earlier_output(Path(config.out) / "metrics.json", "an evaluation", config.overwrite)
    if config.test_embeddings:
        return evaluate_heldout(config)
    embeddings, table = read_embeddings(config.embeddings)
    embeddings, table, notes = relabel(embeddings, table, config.task, config.folds)
    labels, groups = labels_and_groups(table)
    out = Path(config.out)
    results = evaluate_features(embeddings, labels, groups, config)
    scores, explained, _ = pca_projection(embeddings, 2)
    figures = {
        "pca": plot_pca_scatter(scores, labels, explained, out / "pca.png"),
        "confusion": plot_confusion(results["stratified"].confusion,
                                    results["stratified"].classes, out / "confusion.png"),
    }
    metrics = {
        "n_images": int(len(labels)), "classes": sorted(set(labels)), "notes": notes,
        "task": config.task or "as embedded",
        "stratified": results["stratified"].summary(),
        "grouped": results["grouped"].summary() if results["grouped"] else None,
        "grouped_note": results["grouped_note"],
        "retrieval": retrieval_metrics(embeddings, labels, query_groups=groups),
        "pca_explained_variance": [float(v) for v in explained],
        "settings": {"folds": config.folds, "repeats": config.repeats, "kernel": config.kernel,
                     "C": config.C, "seed": config.seed},
        "figures": {k: str(Path(v).name) for k, v in figures.items()},
    }
    write_json(out / "metrics.json", metrics)
    return metrics
