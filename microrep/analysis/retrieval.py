"""Retrieval metrics of embeddings: Precision@1, R-Precision and MAP@R.

Why: an embedding is used by looking things up in it ("which micrographs look
like this one?"), and an SVM on top can hide how the space itself is
organised. Musgrave, Belongie and Lim ("A Metric Learning Reality Check",
ECCV 2020) argue for MAP@R: for a query with R relevant items (same label) in
the reference set, the mean over its R nearest neighbours of the precision at
each relevant rank, which rewards both finding the relevant items and ranking
them first.

Queries either search among themselves (each query's own row left out) or a
separate reference set (held-out queries against the fitted set). With groups
(the sample a micrograph comes from), `exclude_same_group` drops the query's
own sample from its candidates: neighbours from the same specimen are easy and
say little about whether the embedding knows the class.
"""

import numpy as np
from sklearn.metrics import pairwise_distances

METRICS = ("precision_at_1", "r_precision", "map_at_r")


def _query_scores(order_labels, label, relevant_count):
    """(P@1, R-precision, AP@R) of one query from its neighbours' labels, nearest first."""
    hits = order_labels[:relevant_count] == label
    precision_at_i = np.cumsum(hits) / np.arange(1, relevant_count + 1)
    return (float(order_labels[0] == label), float(hits.mean()),
            float(np.sum(precision_at_i * hits) / relevant_count))


def retrieval_scores(queries, query_labels, references=None, reference_labels=None,
                     query_groups=None, reference_groups=None, exclude_same_group=False,
                     metric="euclidean", chunk=1024):
    """Per-query metrics as a dict of arrays (METRICS plus `label`, `relevant`).

    Queries with no relevant reference (R = 0) are left out, as Musgrave et al. do.
    """
    queries = np.asarray(queries, dtype=np.float32)
    query_labels = np.asarray(query_labels).astype(str)
    self_search = references is None
    references = queries if self_search else np.asarray(references, dtype=np.float32)
    reference_labels = query_labels if self_search else np.asarray(reference_labels).astype(str)
    if exclude_same_group:
        if query_groups is None:
            raise ValueError("exclude_same_group needs the groups of the embeddings")
        query_groups = np.asarray(query_groups).astype(str)
        reference_groups = query_groups if self_search else np.asarray(reference_groups).astype(str)
    rows = {name: [] for name in (*METRICS, "label", "relevant")}
    for start in range(0, len(queries), chunk):
        distances = pairwise_distances(queries[start:start + chunk], references, metric=metric)
        for offset, row in enumerate(distances):
            query = start + offset
            allowed = np.ones(len(references), dtype=bool)
            if self_search:
                allowed[query] = False
            if exclude_same_group:
                allowed &= reference_groups != query_groups[query]
            candidates = np.flatnonzero(allowed)
            relevant = int(np.sum(reference_labels[candidates] == query_labels[query]))
            if relevant == 0:
                continue
            order = candidates[np.argsort(row[candidates], kind="stable")]
            scores = _query_scores(reference_labels[order], query_labels[query], relevant)
            for name, value in zip(METRICS, scores):
                rows[name].append(value)
            rows["label"].append(query_labels[query])
            rows["relevant"].append(relevant)
    return {name: np.asarray(values) for name, values in rows.items()}


def retrieval_metrics(queries, query_labels, references=None, reference_labels=None,
                      query_groups=None, reference_groups=None, metric="euclidean"):
    """Mean P@1, R-Precision and MAP@R over queries and averaged per class.

    Returns {"all": {...}, "other_samples": {...} or None}: "all" searches every
    candidate, "other_samples" leaves out the query's own sample (only when groups
    are given). Each holds the metrics averaged over queries, the same averaged
    per class (`<metric>_per_class`, each class weighing the same), and `queries`.
    """
    variants = {"all": False, "other_samples": True}
    results = {}
    for name, exclude in variants.items():
        if exclude and query_groups is None:
            results[name] = None
            continue
        scores = retrieval_scores(queries, query_labels, references, reference_labels,
                                  query_groups, reference_groups, exclude, metric)
        results[name] = summarise_scores(scores)
    return results


def summarise_scores(scores):
    """Means over queries and over classes of per-query scores."""
    summary = {"queries": int(len(scores["label"]))}
    for name in METRICS:
        values = scores[name]
        summary[name] = float(values.mean()) if len(values) else float("nan")
        per_class = [values[scores["label"] == label].mean() for label in np.unique(scores["label"])]
        summary[f"{name}_per_class"] = float(np.mean(per_class)) if per_class else float("nan")
    return summary
