"""Held-out scoring: seeded splits of a labelled set, and both embeddings scored on them.

`within`: every sample on both sides (half of each sample's micrographs each
way), as when a new batch of micrographs of known samples arrives; the
processing-condition task needs it, its conditions mostly being one sample each.
`disjoint`: whole samples on one side (half of each class's samples each way),
the honest case for the microconstituent tasks. Training happens before this:
`microrep.commands.heldout` trains on each split's fit half and hands the
embeddings here.
"""

import numpy as np
import pandas as pd

from microrep.analysis.scores import heldout_results
from microrep.config import TASKS, EvalConfig
from microrep.data.tasks import task_rows
from microrep.errors import DataError

SPLITS = ("within", "disjoint")


def split_within(groups, seed):
    """Fit mask: half of each sample's images (the odd one to the fit side); singletons fit."""
    groups = np.asarray(groups).astype(str)
    rng = np.random.default_rng([seed, 101])
    fit = np.zeros(len(groups), dtype=bool)
    for group in np.unique(groups):
        members = rng.permutation(np.flatnonzero(groups == group))
        fit[members[:(len(members) + 1) // 2]] = True
    return fit


def split_disjoint(groups, labels, seed):
    """Fit mask: half of each class's samples (rounded up), all their images."""
    groups = np.asarray(groups).astype(str)
    rng = np.random.default_rng([seed, 102])
    sample_class = pd.Series(np.asarray(labels).astype(str), index=groups).groupby(level=0).first()
    fit = np.zeros(len(groups), dtype=bool)
    for _, samples in sample_class.groupby(sample_class):
        chosen = rng.permutation(samples.index.to_numpy())[:(len(samples) + 1) // 2]
        fit |= np.isin(groups, chosen)
    return fit


def split_mask(kind, dataset, seed):
    if kind == "within":
        return split_within(dataset.groups, seed)
    return split_disjoint(dataset.groups, dataset.labels, seed)


def task_sets(table, embeddings, fit, task):
    """((fit x, labels, groups), (test x, labels, groups)) for one task.

    Test images of classes the fit half lacks cannot be classified and are left out.
    """
    if task == "constituent" and "primary_microconstituent" not in table.columns:
        rows = np.flatnonzero(table["label"].fillna("").astype(str).to_numpy() != "")
        labelled = table.iloc[rows]  # a user's own labels (class folders, a CSV)
    else:
        rows, labelled, _ = task_rows(table, task)
    labels = labelled["label"].astype(str).to_numpy()
    groups = labelled["group"].astype(str).to_numpy()
    x, mask = embeddings[rows], fit[rows]
    test = ~mask & np.isin(labels, np.unique(labels[mask]))
    return (x[mask], labels[mask], groups[mask]), (x[test], labels[test], groups[test])


def score_embedding(table, embeddings, fit, tasks=TASKS):
    """{(task, metric): value} of one embedding on one split (tasks that cannot run are left out)."""
    results = {}
    for task in tasks:
        try:
            fit_set, test_set = task_sets(table, embeddings, fit, task)
        except DataError:  # the metadata lacks what the task needs
            continue
        if len(np.unique(fit_set[1])) < 2 or not len(test_set[1]):
            continue
        svms, retrieval = heldout_results(fit_set, test_set, EvalConfig())
        results[(task, "linear SVM")] = svms["linear"].mean
        results[(task, "RBF SVM")] = svms["rbf"].mean
        results[(task, "MAP@R")] = retrieval["all"]["map_at_r"]
        other = retrieval["other_samples"]
        results[(task, "MAP@R other samples")] = other["map_at_r"] if other else float("nan")
    return results


#: the held-out methods, baselines first
METHODS = ("pretrained", "recipe input", "learned")


def summarise_splits(rows):
    """Mean over seeds per (split, task, metric): both baselines, learned, and the gains over
    each (rows saved before the recipe-input baseline existed leave its columns empty)."""
    table = (rows.groupby(["split", "task", "metric", "method"], sort=False)["value"].mean()
             .unstack("method").reindex(columns=list(METHODS)))
    table["difference"] = table["learned"] - table["pretrained"]
    table["over input"] = table["learned"] - table["recipe input"]
    return table[[*METHODS, "difference", "over input"]]
