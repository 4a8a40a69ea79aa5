"""Learned vs pretrained on micrographs the training never saw, over seeded splits.

Why: cross-validation of a fixed embedding says how separable the classes are;
whether *learning* helps needs the training itself kept away from the test
images. Each split trains the frozen-base recipe on one half only and scores
both embeddings on the other half with SVMs fitted on the first
(`microrep.analysis.stage.heldout_results`), for every task:

- `within`: every sample on both sides (half of each sample's micrographs each
  way), as when a new batch of micrographs of known samples arrives; the
  processing-condition task needs it, its conditions mostly being one sample each.
- `disjoint`: whole samples on one side (half of each class's samples each way),
  the honest case for the microconstituent tasks.

The baseline is `microrep embed --pretrained`: the first tapped layer's maps
(block4_conv3 in the recipe), mean-pooled over the same tiles, no training. The
VGG16 features are computed once for all splits (and cached); the learned
embeddings are the trained head on the cached tile features, which the tests
show equal the assembled tower's.
"""

import dataclasses
import time

import numpy as np
import pandas as pd

from microrep.data.tasks import TASKS, task_rows
from microrep.frozen import embed_from_tiles, head_from_tower

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
    rows, labelled, _ = task_rows(table, task)
    labels = labelled["label"].astype(str).to_numpy()
    groups = labelled["group"].astype(str).to_numpy()
    x, mask = embeddings[rows], fit[rows]
    test = ~mask & np.isin(labels, np.unique(labels[mask]))
    return (x[mask], labels[mask], groups[mask]), (x[test], labels[test], groups[test])


def score_embedding(table, embeddings, fit, tasks=TASKS):
    """{(task, metric): value} of one embedding on one split (tasks that cannot run are left out)."""
    from microrep.analysis.stage import heldout_results
    from microrep.config import EvalConfig
    from microrep.errors import DataError

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


def compare_on_splits(train_config, dataset, seeds, kinds=SPLITS, tasks=TASKS, log=print):
    """Rows (split, seed, task, metric, method, value) of pretrained vs learned, and timings.

    `train_config` is a TrainConfig with a frozen base (the recipe); it is trained
    once per split on the fit half only, with the split's seed.
    """
    from microrep.train import train
    from microrep.train_frozen import frozen_features

    started = time.time()
    features, feature_tower = frozen_features(train_config, dataset.images(), log)
    timings = {"features_s": time.time() - started, "head_s": []}
    baseline = features.tiles[..., :first_layer_width(train_config, feature_tower)].mean(axis=1)
    rows = []
    for kind in kinds:
        for seed in seeds:
            fit = split_mask(kind, dataset, seed)
            started = time.time()
            run = train(dataclasses.replace(train_config, seed=seed),
                        dataset.subset(np.flatnonzero(fit)), verbose=0)
            timings["head_s"].append(time.time() - started)
            head = head_from_tower(run.tower, features.tiles.shape[-1], train_config.model)
            learned = embed_from_tiles(head, features)
            for method, embeddings in (("pretrained", baseline), ("learned", learned)):
                for (task, metric), value in score_embedding(dataset.table, embeddings, fit,
                                                             tasks).items():
                    rows.append(dict(split=kind, seed=seed, task=task, metric=metric,
                                     method=method, value=value))
            log(f"held-out {kind} split, seed {seed}: head trained in {timings['head_s'][-1]:.0f} s")
    return pd.DataFrame(rows), timings


def first_layer_width(train_config, feature_tower):
    """Channels of the first tapped layer: the part of the features `embed --pretrained` pools."""
    from microrep.model import feature_layer_names

    layers = feature_layer_names(train_config.model)
    if len(layers) < 2:
        return int(feature_tower.output_shape[-1])
    return int(feature_tower.get_layer(f"pool_{layers[0]}").output.shape[-1])


def summarise(rows):
    """Mean over seeds per (split, task, metric): pretrained, learned and their difference."""
    table = (rows.groupby(["split", "task", "metric", "method"], sort=False)["value"].mean()
             .unstack("method"))
    table["difference"] = table["learned"] - table["pretrained"]
    return table[["pretrained", "learned", "difference"]]
