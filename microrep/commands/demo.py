"""The demo: every stage once, on freshly generated synthetic micrographs.

generate -> train the Siamese model -> embed (trained tower, the same tower
untrained, raw pixels) -> SVM cross-validation on the same folds -> PCA and
figures -> export -> report.md + metrics.json. It is sized to finish in a few
minutes on two CPU cores: small images, 48x48 crops, the first three VGG16 blocks, a short schedule.
"""

import dataclasses
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from microrep._version import __version__
from microrep.analysis.svm import check_cv_possible, pca_projection, raw_pixel_features
from microrep.analysis.plots import (plot_accuracy_bars, plot_confusion, plot_pca_scatter,
                                     plot_training_curves)
from microrep.analysis.scores import evaluate_features
from microrep.config import EvalConfig, to_dict
from microrep.data import load_dataset
from microrep.embedding.archive import write_embeddings
from microrep.embedding.tiles import embed_images
from microrep.errors import OutputExistsError
from microrep.commands.export import export_tower
from microrep.errors import ExportError
from microrep.fileio import write_json, write_text
from microrep.nn.tower import build_tower
from microrep.analysis.report import demo_report
from microrep.training import train
from microrep.training.run_dir import LOG


def stage_configs(config):
    """The TrainConfig and EvalConfig the demo runs with (its data generated under --out)."""
    out = Path(config.out)
    data = config.train.data
    if not data.data_dir and data.data == "synthetic":
        data = dataclasses.replace(data, data_dir=str(out / "data"))
    train_config = dataclasses.replace(config.train, data=data, out=str(out / "run"),
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
    check_cv_possible(labels, config.folds)  # before training, not after it

    size = train_config.model.input_size
    log(f"[2/6] training the Siamese VGG16 ({train_config.epochs} epochs x "
        f"{train_config.pairs.pairs_per_epoch} pairs, {size}x{size} crops)")
    result = train(train_config, dataset)

    log("[3/6] embedding: trained tower, untrained tower, raw pixels")
    trained = embed_images(result.tower, images, config.grid, progress=True)
    write_embeddings(out / "embeddings", trained, dataset.table,
                     {"pretrained": False, "model_path": str(result.run_dir), "grid": config.grid,
                      "data": train_config.data.data, "data_dir": train_config.data.data_dir,
                      "images": len(dataset)})  # as `microrep embed` records it
    keras.utils.set_random_seed(train_config.seed)
    untrained = embed_images(build_tower(train_config.model), images, config.grid, progress=True)
    raw = raw_pixel_features(images)

    log(f"[4/6] SVM {config.folds}-fold cross-validation on the same folds")
    feature_sets = {"learned embedding": (trained, None), "untrained tower": (untrained, None),
                    "raw pixels": (raw, 50)}
    results = {name: evaluate_features(features, labels, groups, eval_config, pca)
               for name, (features, pca) in feature_sets.items()}

    log("[5/6] figures and export")
    figures = draw_demo_figures(out, results, trained, untrained, labels, result.run_dir)
    try:
        export = dict(zip(("savedmodel", "keras"), map(str, export_tower(result.tower, out / "export", config.grid))))
    except ExportError as error:  # no TensorFlow (JAX or torch backend): keep the .keras file
        log(f"      {error}")
        export = {"savedmodel": None, "keras": str(out / "export" / "tower.keras"),
                  "note": str(error)}

    metrics = demo_metrics(config, dataset, results, figures, export, result,
                           time.time() - started)
    write_json(out / "metrics.json", metrics)
    write_text(out / "report.md", demo_report(metrics))
    log(f"[6/6] report written: {out / 'report.md'}")
    return metrics


def draw_demo_figures(out, results, trained, untrained, labels, run_dir):
    scores, explained, _ = pca_projection(trained, 2)
    untrained_scores, untrained_explained, _ = pca_projection(untrained, 2)
    learned = results["learned embedding"]["stratified"]
    return {
        "pca": plot_pca_scatter(scores, labels, explained, out / "pca_learned.png",
                                "Learned embedding on PC1/PC2"),
        "pca_untrained": plot_pca_scatter(untrained_scores, labels, untrained_explained,
                                          out / "pca_untrained.png", "Untrained tower on PC1/PC2"),
        "confusion": plot_confusion(learned.confusion, learned.classes, out / "confusion.png"),
        "training": plot_training_curves(pd.read_csv(run_dir / LOG), out / "training_curves.png"),
        "accuracy": plot_accuracy_bars({name: (r["stratified"].mean, r["stratified"].std)
                                        for name, r in results.items()}, out / "accuracy.png"),
    }


def demo_metrics(config, dataset, results, figures, export, train_result, seconds):
    def summary(result):
        return {"stratified": result["stratified"].summary(),
                "grouped": result["grouped"].summary() if result["grouped"] else None,
                "grouped_note": result["grouped_note"]}

    return {
        "microrep_version": __version__,
        "backend": keras.backend.backend(),
        "settings": to_dict(config),
        "dataset": {"images": len(dataset), "classes": dataset.class_counts().to_dict(),
                    "samples": int(len(np.unique(dataset.groups)))},
        "training": {"epochs_completed": train_result.epochs_completed,
                     "final_loss": float(train_result.history["loss"][-1]),
                     "final_pair_accuracy": float(train_result.history["pair_accuracy"][-1])
                     if "pair_accuracy" in train_result.history else None},
        "methods": {name: summary(result) for name, result in results.items()},
        "figures": {name: Path(path).name for name, path in figures.items()},
        "export": export,
        "seconds": round(seconds, 1),
    }
