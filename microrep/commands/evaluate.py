"""`microrep evaluate`: PCA, SVM cross-validation and retrieval of one embeddings folder,
or SVMs fitted on one folder and scored on another (held-out)."""

from pathlib import Path

import numpy as np

from microrep.analysis.plots import plot_confusion, plot_pca_scatter
from microrep.analysis.retrieval import retrieval_metrics
from microrep.analysis.scores import evaluate_features, heldout_results, labels_and_groups, relabel
from microrep.analysis.svm import pca_projection
from microrep.embedding.archive import (archive_info, open_archive, read_embeddings,
                                        refuse_other_model)
from microrep.errors import DataError
from microrep.fileio import refuse_earlier_output, write_json


def evaluate_heldout(config):
    """Fit on `config.embeddings`, score `config.test_embeddings`; write metrics and figures."""
    sets, notes = [], []
    folders = (config.embeddings, config.test_embeddings)
    archives = [open_archive(folder) for folder in folders]  # only the rows used are read
    refuse_other_model((folders[0], archive_info(folders[0]), archives[0].dim),
                       (folders[1], archive_info(folders[1]), archives[1].dim),
                       "fitting on one and scoring on the other")
    for role, folder, archive in zip(("fit", "test"), folders, archives):
        embeddings, table = archive, archive.table
        if config.task:
            embeddings, table, dropped = relabel(embeddings, table, config.task, 1)
            notes += [f"{role} set: {note}" for note in dropped]
        elif "label" not in table or table["label"].fillna("").astype(str).eq("").all():
            raise DataError(f"the {role} embeddings in {folder} carry no labels; pass --task "
                            "to label them from their metadata")
        else:
            embeddings = np.asarray(embeddings[np.arange(len(table))], np.float32)
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
    if config.target:  # how the micrographs were made, not their classes
        from microrep.commands.predict import evaluate_targets

        return evaluate_targets(config, log=lambda *_: None)
    refuse_earlier_output(Path(config.out) / "metrics.json", "an evaluation", config.overwrite)
    if config.test_embeddings:
        return evaluate_heldout(config)
    embeddings, table = read_embeddings(config.embeddings, mmap=True)  # only the rows used are read
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
