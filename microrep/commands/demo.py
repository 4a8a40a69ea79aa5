"""The demo: every stage once, on freshly generated synthetic micrographs.

generate -> split the samples in two -> train the Siamese model on one half ->
embed every image (trained tower, the same tower untrained, raw pixels) ->
SVMs fitted on the training half and scored on the other half, whose samples
the training never saw (and cross-validation within that unseen half) -> PCA
and figures -> export -> report.md + metrics.json. It is sized to finish in a
few minutes on two CPU cores: small images, 48x48 crops; from random weights,
the first three VGG16 blocks and a short schedule; with pretrained weights,
microrep's recommended recipe on a frozen base.
"""

import dataclasses
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from microrep._version import __version__
from microrep.analysis.heldout import split_disjoint
from microrep.analysis.plots import (plot_accuracy_bars, plot_confusion, plot_pca_scatter,
                                     plot_training_curves)
from microrep.analysis.report import demo_report, demo_summary
from microrep.analysis.scores import evaluate_features, heldout_results
from microrep.analysis.svm import check_cv_possible, pca_projection, raw_pixel_features
from microrep.commands.export import export_tower
from microrep.config import EvalConfig, TrainConfig, to_dict
from microrep.data import load_dataset
from microrep.embedding.archive import write_embeddings
from microrep.embedding.parts import weights_digest
from microrep.embedding.tiles import embed_images
from microrep.errors import ExportError, OutputExistsError
from microrep.fileio import write_json, write_text
from microrep.config.stages import is_random_weights
from microrep.nn.tower import build_tower
from microrep.training import train
from microrep.training.frozen import run_view
from microrep.training.run_dir import LOG


def uses_recommended_recipe(config):
    """The recommended recipe, asked for or (auto) because pretrained weights are named."""
    return config.recipe == "recommended" or (config.recipe == "auto" and
                                              not is_random_weights(config.train.model.weights))


def recommended_recipe(train):
    """`microrep train`'s defaults (the measured recipe) at the demo's data, crop size and weights."""
    model = dataclasses.replace(TrainConfig().model, input_size=train.model.input_size,
                                weights=train.model.weights,
                                mixed_precision=train.model.mixed_precision)
    return dataclasses.replace(TrainConfig(), data=train.data, model=model, seed=train.seed,
                               feature_cache=train.feature_cache)


def stage_configs(config):
    """The TrainConfig and EvalConfig the demo runs with (its data generated under --out)."""
    out = Path(config.out)
    data = config.train.data
    if not data.data_dir and data.data == "synthetic":
        data = dataclasses.replace(data, data_dir=str(out / "data"))
    train = recommended_recipe(config.train) if uses_recommended_recipe(config) else config.train
    train_config = dataclasses.replace(train, data=data, out=str(out / "run"),
                                       overwrite=True, resume=False)
    eval_config = EvalConfig(embeddings=str(out / "embeddings"), out=str(out), folds=config.folds,
                             seed=config.train.seed)
    return train_config, eval_config


def check_out_dir(config):
    out = Path(config.out)
    if out.exists() and any(out.iterdir()) and not config.overwrite:
        marker = out / "metrics.json"
        what = "an earlier demo" if marker.exists() or (out / "run").exists() else "other files"
        raise OutputExistsError(f"{out} already holds {what}; pass --overwrite or choose another --out")


def run_demo(config, log=print):
    """Run the demo; return its metrics dict (also written to out/metrics.json)."""
    check_out_dir(config)
    started = time.time()
    out = Path(config.out)
    train_config, eval_config = stage_configs(config)

    log(f"[1/6] {config.train.data.data} micrographs from {train_config.data.data_dir}")
    dataset = load_dataset(train_config.data)
    images, labels, groups = dataset.images(), dataset.labels, dataset.groups
    fit = split_disjoint(groups, labels, train_config.seed)
    check_cv_possible(labels[~fit], config.folds)  # before training, not after it

    size = train_config.model.input_size
    how = ("the recommended recipe: a head on frozen pretrained VGG16" if uses_recommended_recipe(config)
           else "the paper's loss, VGG16 from random weights")
    log(f"[2/6] training the Siamese VGG16 ({how}; {train_config.epochs} epochs x "
        f"{train_config.pairs.pairs_per_epoch} pairs, {size}x{size} crops) on {fit.sum()} images "
        f"of half the samples; the other {(~fit).sum()} images (samples it never sees) test it")
    result = train(train_config, dataset.subset(np.flatnonzero(fit)))

    log("[3/6] embedding: trained tower, untrained tower, raw pixels")
    view = run_view(train_config)
    trained = embed_images(result.tower, images, view, progress=True)
    write_embeddings(out / "embeddings", trained, dataset.table.assign(trained_on=fit),
                     {"pretrained": False, "model_path": str(result.run_dir), "view": view.settings(),
                      "data": train_config.data.data, "data_dir": train_config.data.data_dir,
                      "model": weights_digest(result.tower)},  # as `microrep embed` records it
                     written_by="demo", root=dataset.root)
    keras.utils.set_random_seed(train_config.seed)
    untrained = embed_images(build_tower(train_config.model), images, view, progress=True)
    raw = raw_pixel_features(images)

    log(f"[4/6] SVMs fitted on the training half, scored on the unseen half; {config.folds}-fold "
        "cross-validation within the unseen half")
    feature_sets = {"learned embedding": (trained, None), "untrained tower": (untrained, None),
                    "raw pixels": (raw, 50)}
    results = {name: score_unseen(features, labels, groups, fit, eval_config, pca)
               for name, (features, pca) in feature_sets.items()}

    log("[5/6] figures and export")
    figures = draw_demo_figures(out, results, trained, untrained, labels, result.run_dir)
    try:
        export = dict(zip(("savedmodel", "keras"), map(str, export_tower(result.tower, out / "export", view))))
    except ExportError as error:  # no TensorFlow (JAX or torch backend): keep the .keras file
        log(f"      {error}")
        export = {"savedmodel": None, "keras": str(out / "export" / "tower.keras"),
                  "note": str(error)}

    metrics = demo_metrics(config, train_config, dataset, fit, results, figures, export, result,
                           time.time() - started)
    metrics["verdict"] = demo_summary(metrics)
    write_json(out / "metrics.json", metrics)
    write_text(out / "report.md", demo_report(metrics))
    log(f"[6/6] report written: {out / 'report.md'}")
    return metrics


def score_unseen(features, labels, groups, fit, eval_config, pca=None):
    """One feature set on images of samples the training never saw.

    {"heldout": linear SVM fitted on the training half, scored on the unseen half,
    "stratified"/"grouped"/"grouped_note": cross-validation within the unseen half}.
    """
    test = ~fit
    svms, _ = heldout_results((features[fit], labels[fit], groups[fit]),
                              (features[test], labels[test], groups[test]), eval_config)
    return {"heldout": svms["linear"],
            **evaluate_features(features[test], labels[test], groups[test], eval_config, pca)}


def draw_demo_figures(out, results, trained, untrained, labels, run_dir):
    scores, explained, _ = pca_projection(trained, 2)
    untrained_scores, untrained_explained, _ = pca_projection(untrained, 2)
    learned = results["learned embedding"]["heldout"]
    return {
        "pca": plot_pca_scatter(scores, labels, explained, out / "pca_learned.png",
                                "Learned embedding on PC1/PC2"),
        "pca_untrained": plot_pca_scatter(untrained_scores, labels, untrained_explained,
                                          out / "pca_untrained.png", "Untrained tower on PC1/PC2"),
        "confusion": plot_confusion(learned.confusion, learned.classes, out / "confusion.png"),
        "training": plot_training_curves(pd.read_csv(run_dir / LOG), out / "training_curves.png"),
        "accuracy": plot_accuracy_bars({name: (r["heldout"].mean, 0.0)
                                        for name, r in results.items()}, out / "accuracy.png"),
    }


def demo_metrics(config, train_config, dataset, fit, results, figures, export, train_result, seconds):
    def summary(result):
        return {"heldout": result["heldout"].summary(),
                "stratified": result["stratified"].summary(),
                "grouped": result["grouped"].summary() if result["grouped"] else None,
                "grouped_note": result["grouped_note"]}

    return {
        "microrep_version": __version__,
        "backend": keras.backend.backend(),
        "settings": to_dict(config),
        "train_settings": to_dict(train_config),  # what trained (the recipe, when chosen)
        "dataset": {"images": len(dataset), "classes": dataset.class_counts().to_dict(),
                    "samples": int(len(np.unique(dataset.groups)))},
        "split": {"training_images": int(fit.sum()), "unseen_images": int((~fit).sum()),
                  "training_samples": int(len(np.unique(dataset.groups[fit]))),
                  "unseen_samples": int(len(np.unique(dataset.groups[~fit])))},
        "recipe": "recommended" if uses_recommended_recipe(config) else "scratch",
        "training": {"epochs_completed": train_result.epochs_completed,
                     "final_loss": float(train_result.history["loss"][-1]),
                     "final_pair_accuracy": float(train_result.history["pair_accuracy"][-1])
                     if "pair_accuracy" in train_result.history else None},
        "methods": {name: summary(result) for name, result in results.items()},
        "figures": {name: Path(path).name for name, path in figures.items()},
        "export": export,
        "seconds": round(seconds, 1),
    }
