"""Redo the paper's experiments and put our numbers beside the published ones.

For every task (3 phases, all primary microconstituents, processing condition)
and three cross-validation flavours (over DeCost et al.'s four 224-px crops per
micrograph (input-size crops), as their code did, so crops of one micrograph sit on both sides; over
micrographs, stratified; grouped by sample, the honest one), on every fold, a
linear SVM on each of:

- pretrained: ImageNet VGG16 block4_conv3 maps, mean-pooled as microrep pools them
  (on a CPU the whole frame at several scales, every pixel at full resolution);
- vlad_block4, vlad_block5: DeCost et al. 2017's own encoding (VLAD of the four
  centre crops' local features, a 32-word dictionary);
- siamese: the Siamese model trained on the training fold only (no test image is
  ever in a training pair), its embeddings. On a CPU (--preset cpu, the default
  there) it is microrep's recipe on a frozen base: every image's features are
  computed once, cached, and each fold trains only the head; with a GPU (--preset
  gpu) the whole base is fine-tuned per fold as the paper did.

The processing-condition task is scored with and without DeCost et al.'s PCA to 64
dimensions inside each fold.

Each fold's result is written as soon as it is done, so an interrupted run
resumes where it stopped. Then results.csv/results.md, confusion matrices and
the PCA interpretation (see `microrep.analysis.interpret`) are written.
"""

import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from microrep._version import __version__
from microrep.analysis.heldout import summarise_splits
from microrep.analysis.interpret import interpret
from microrep.analysis.plots import plot_confusion
from microrep.analysis.report import reproduce_report
from microrep.analysis.svm import (cv_splits, groups_repeat_within_classes, pca_components_for,
                                   score_folds, svm_pipeline)
from microrep.commands.heldout import compare_on_splits, first_layer_width
from microrep.config import QUICK, TrainConfig, apply_preset, from_dict, to_dict
from microrep.data import load_dataset
from microrep.data.dataset import Dataset
from microrep.data.tasks import balanced_rows, task_rows
from microrep.data.uhcsdb import rescale
from microrep.embedding.towers import embed_from_tiles, head_from_tower
from microrep.embedding.tiles import embed_images
from microrep.embedding.vlad import decost_vlad
from microrep.nn.backbone import dtype_policy, policy_for
from microrep.errors import ConfigError, DataError
from microrep.fileio import write_json, write_text
from microrep.nn.tower import build_feature_tower
from microrep.training import train
from microrep.training.frozen import frozen_features, run_view

#: Accuracies reported by Sardeshmukh et al. and (as they cite it) DeCost et al. 2017,
#: one entry per task of config.TASKS.
PAPER = {
    "3phase": {"paper_siamese": 0.9816, "paper_decost": 0.966},
    "constituent": {"paper_siamese": 0.875, "paper_decost": None},
    "processing": {"paper_siamese": 0.9111, "paper_decost": 0.887},
}
FLAVOURS = ("crops", "stratified", "grouped")
METHODS = ("pretrained", "vlad_block4", "vlad_block5", "siamese")
#: The unit a flavour's folds split: crops (four per micrograph) or micrographs.
CROPS_PER_IMAGE = 4
#: The layer of the pretrained column (DeCost et al.'s and `embed --pretrained`'s).
PRETRAINED_LAYER = "block4_conv3"


def effective_config(config):
    """The config with --quick's settings applied (they replace the model and training ones)."""
    return QUICK.replace(config) if config.quick else config


def settings_key(config):
    """A short hash of everything that changes fold results (for safe resuming)."""
    values = to_dict(config)
    values.pop("out", None)
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def expected_cost(config, n_images, units):
    """Images pushed through VGG16 when every fold fine-tunes it (training, embedding tiles)."""
    train = config.train
    train_images = units * train.epochs * train.pairs.pairs_per_epoch * 2
    embed_images_count = (units + 1) * n_images * run_view(config.train).count
    return train_images, embed_images_count


def cost_line(config, images, view, units):
    """What the run will compute, said before it starts."""
    model = config.train.model
    pixels = sum(im.size for im in images)
    if model.train_base:
        train_count, embed_count = expected_cost(config, len(images), units)
        petaflop = (train_count * 3 + embed_count) * 31e9 * (model.input_size / 224) ** 2 / 1e15
        return (f"expected cost: up to {units} Siamese trainings (fine-tuning VGG16 in each fold, "
                f"a GPU job), {train_count:,} training images and {embed_count:,} embedded tiles at "
                f"{model.input_size}x{model.input_size} (about {petaflop:.1f} PFLOP for the full VGG16)")
    seen = (f"{sum(view.pixels(im.shape) for im in images) / 1e6:,.0f} megapixels"
            if view.kind == "frame" else f"{len(images) * view.count:,} tiles")
    return (f"expected cost: one pass of the frozen VGG16 base over {len(images)} micrographs "
            f"({pixels / 1e6:,.0f} megapixels at full resolution): {view.words()} "
            f"({seen}){bank_words(config.train.feature_bank)} and DeCost et al.'s 4 centre "
            f"crops per image, cached; then up to "
            f"{units} head trainings on those features (seconds each), no fine-tuning")


def bank_words(feature_bank):
    """What else the base sees for the heads to train on, in words."""
    return f", {feature_bank} training crops" if feature_bank else \
        " (the heads train on those pieces)"


def check_folds(config):
    """ConfigError before any work when the processing protocol cannot be folded as asked."""
    if config.processing_images and config.processing_folds > config.processing_images:
        raise ConfigError(f"--processing-folds ({config.processing_folds}) cannot exceed "
                          f"--processing-images ({config.processing_images})")


def task_folds(task, config):
    """Folds of a task: --processing-folds for processing conditions (DeCost et al.'s 10)."""
    return config.processing_folds if task == "processing" else config.folds


def task_pcas(task, config):
    """PCA settings a task is scored under: processing with DeCost et al.'s PCA and without."""
    if task == "processing" and config.processing_pca:
        return (config.processing_pca, 0)
    return (0,)


def scale_factor(image, config):
    """The configured scale, or with 0 the shrink that leaves 4 crops across the shorter side."""
    if config.image_scale > 0:
        return config.image_scale
    return min(1.0, 4 * config.train.model.input_size / min(image.shape))


def load_images(config):
    """The dataset (constituent labels) with every image read and scaled once."""
    data_config = dataclasses.replace(config.train.data, task="constituent", min_class_size=1)
    dataset = load_dataset(data_config, min_per_class=1)
    images = [rescale(image, scale_factor(image, config)) for image in dataset.images()]
    size = config.train.model.input_size
    small = [i for i, im in enumerate(images) if min(im.shape) < size]
    if small:
        raise DataError(f"{len(small)} image(s) are smaller than {size} px after "
                        f"scaling by {config.image_scale}; raise --image-scale or lower --input-size")
    return dataset, images


def fold_labels(table, task, config):
    """(row indices, labels, groups, notes) of the images the task uses.

    Classes with fewer images than folds are dropped. The processing-condition
    task follows DeCost et al.: `processing_images` micrographs drawn from each
    condition that has that many, the others left out.
    """
    folds = task_folds(task, config)
    rows, labelled, dropped = task_rows(table, task, min_per_class=folds)
    labels = labelled["label"].astype(str).to_numpy()
    groups = labelled["group"].astype(str).to_numpy()
    notes = []
    if dropped and not (task == "processing" and config.processing_images):
        notes.append(f"{task}: dropped {len(dropped)} class(es) with fewer than "
                     f"{folds} images ({', '.join(dropped)})")
    if task == "processing" and config.processing_images:
        check_folds(config)
        positions, fewer = balanced_rows(labels, config.processing_images, config.train.seed)
        rows, labels, groups = rows[positions], labels[positions], groups[positions]
        notes.append(f"processing: DeCost et al.'s protocol: {len(set(labels))} conditions with at "
                     f"least {config.processing_images} micrographs, {config.processing_images} "
                     f"drawn from each (seed {config.train.seed}); "
                     f"{len(fewer) + len(dropped)} condition(s) with fewer left out; {folds}-fold" + (f"; scored with PCA to {config.processing_pca} "
                                                  "dimensions inside each fold (DeCost et al.'s "
                                                  "step) and without" if config.processing_pca else ""))
    return rows, labels, groups, notes


def fit_predict(features, labels, train_index, test_index, pca=0):
    """Linear SVM (after PCA to `pca` dimensions, fitted on the training part, if asked)."""
    components = pca_components_for(pca, len(train_index), features.shape[1])
    classifier = svm_pipeline("linear", 1.0, components or None)
    classifier.fit(features[train_index], labels[train_index])
    return classifier.predict(features[test_index])


@dataclasses.dataclass
class MethodFeatures:
    """What each fixed method classifies: {method: (n_images, d)} per micrograph and
    {method: (n_images, CROPS_PER_IMAGE, d)} per DeCost et al. crop (the Siamese model is
    trained per fold, so it is not here)."""

    images: dict
    crops: dict


def run_fold(config, unit, flavour, images, rows, labels, features, split, out, pcas, frozen=None):
    """Every method on one fold of a flavour; returns the unit's JSON record.

    For the crops flavour `labels` and `split` are per crop (image rows[i // 4]) and only
    the fixed methods run; otherwise per micrograph, and the Siamese model is trained on
    the training micrographs only.
    """
    train_index, test_index = split
    crops = flavour == "crops"
    per_unit = CROPS_PER_IMAGE if crops else 1
    record = {"unit": unit, "train_rows": rows[train_index // per_unit].tolist(),
              "test_rows": rows[test_index // per_unit].tolist(),
              "true": labels[test_index].tolist(), "predictions": {}}
    for method, table in (features.crops if crops else features.images).items():
        table = table[rows].reshape(len(labels), -1)
        for pca in pcas:
            record["predictions"][f"{method}@{pca}"] = fit_predict(table, labels, train_index,
                                                                   test_index, pca).tolist()
    if not crops:
        embeddings = train_and_embed(config, images, rows[train_index], labels[train_index], rows,
                                     out / "runs" / unit, frozen)
        for pca in pcas:
            record["predictions"][f"siamese@{pca}"] = fit_predict(embeddings, labels, train_index,
                                                                  test_index, pca).tolist()
        keras.backend.clear_session()
    return record


def train_and_embed(config, images, train_rows, train_labels, embed_rows, run_dir, frozen=None):
    """Train a Siamese model (through `train()`) on the images of `train_rows` only; embed `embed_rows`.

    Each training image counts as its own sample. With `frozen` (FrozenFeatures
    of every image on a frozen base) only the head is trained, on the cached
    features of the training images' crops, and the embeddings come from the
    cached tile features; otherwise the whole tower trains on crops of the images.
    """
    train_rows = np.asarray(train_rows)
    names = [f"image{r}" for r in train_rows]
    fold_data = Dataset(pd.DataFrame({"path": names, "label": train_labels, "group": names})
                        ).with_images([images[r] for r in train_rows])
    fold_config = dataclasses.replace(config.train, out=str(run_dir), overwrite=True, resume=False)
    run = train(fold_config, fold_data, verbose=0,
                features=None if frozen is None else frozen.subset(train_rows))
    if frozen is not None:
        head = head_from_tower(run.tower, frozen.tiles.shape[-1], config.train.model)
        return embed_from_tiles(head, frozen, embed_rows)
    return embed_images(run.tower, [images[r] for r in embed_rows], run_view(config.train))


def run_units(config, dataset, images, features, out, log, frozen=None):
    """Every (task, flavour, fold); skips units already on disk with the same settings."""
    key = settings_key(config)
    records, notes = [], []
    for task in [t.strip() for t in config.tasks.split(",") if t.strip()]:
        if task not in PAPER:
            raise ConfigError(f"unknown task {task!r}; choose from {', '.join(PAPER)}")
        try:
            rows, labels, groups, task_notes = fold_labels(dataset.table, task, config)
        except DataError as error:
            notes.append(f"{task}: skipped ({error})")
            continue
        notes.extend(task_notes)
        for flavour in FLAVOURS:
            if flavour == "grouped" and not groups_repeat_within_classes(labels, groups):
                notes.append(f"{task} / grouped: not run: most classes come from a single sample, "
                             "so a sample-grouped split would test on classes never trained on")
                continue
            unit_labels = np.repeat(labels, CROPS_PER_IMAGE) if flavour == "crops" else labels
            try:
                splits = cv_splits(unit_labels, task_folds(task, config), 1, config.train.seed,
                                   groups if flavour == "grouped" else None)
            except DataError as error:
                notes.append(f"{task} / {flavour}: not run ({error})")
                continue
            for fold, split in enumerate(splits):
                unit = f"{task}-{flavour}-{fold}"
                path = out / "folds" / f"{unit}.json"
                if path.is_file() and json.loads(path.read_text()).get("settings") == key:
                    records.append(json.loads(path.read_text()))
                    continue
                log(f"  {unit}: {len(split[0])} {'crops' if flavour == 'crops' else 'images'} "
                    f"to train on, {len(split[1])} to test")
                record = run_fold(config, unit, flavour, images, rows, unit_labels, features, split,
                                  out, task_pcas(task, config), frozen)
                record.update(task=task, flavour=flavour, fold=fold, settings=key)
                write_json(path, record)
                shutil.rmtree(out / "runs" / unit, ignore_errors=True)  # the JSON is the result
                records.append(record)
        if "crops" in FLAVOURS:
            notes.append(f"{task} / crops: DeCost et al.'s folds, over their four centre crops per "
                         "micrograph (crops of one micrograph on both sides); the Siamese model is "
                         "not scored this way")
    return records, notes


def summarise_folds(records):
    """One row per (task, flavour, PCA, method): mean and std of fold accuracies (`score_folds`)."""
    rows = []
    for (task, flavour), chosen in group_records(records).items():
        classes = len({label for record in chosen for label in record["true"]})
        for key in dict.fromkeys(k for record in chosen for k in record["predictions"]):
            method, pca = key.split("@")
            result = score_folds([(r["true"], r["predictions"][key]) for r in chosen])
            rows.append({"task": task, "flavour": flavour, "pca": int(pca), "method": method,
                         "mean": result.mean, "std": result.std, "classes": classes,
                         "count": len(result.fold_accuracies)})
    return pd.DataFrame(rows)


def group_records(records):
    """{(task, flavour): fold records}, in the order they were run."""
    groups = {}
    for record in records:
        groups.setdefault((record["task"], record["flavour"]), []).append(record)
    return groups


#: results.csv's columns: per (task, CV flavour, PCA) the papers' figures and each method's.
RESULT_COLUMNS = (["task", "cv", "pca", "classes", "paper_siamese", "paper_decost"]
                  + [f"{method}_{stat}" for method in METHODS for stat in ("mean", "std")] + ["folds"])


def results_table(summary):
    """results.csv: per task, flavour and PCA setting, the papers' numbers and each method's."""
    rows = []
    if summary.empty:  # every task was skipped (the notes say why)
        return pd.DataFrame(columns=RESULT_COLUMNS)
    for (task, flavour, pca), part in summary.groupby(["task", "flavour", "pca"], sort=False):
        by_method = part.set_index("method")
        row = {"task": task, "cv": flavour, "pca": pca, "classes": int(part["classes"].iloc[0]),
               **PAPER[task], "folds": int(part["count"].max())}
        for method in METHODS:
            found = method in by_method.index
            row[f"{method}_mean"] = by_method.at[method, "mean"] if found else float("nan")
            row[f"{method}_std"] = by_method.at[method, "std"] if found else float("nan")
        rows.append(row)
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def reproduce(config, log=print):
    """Run the reproduction of a ReproduceConfig; return the results table."""
    config = effective_config(config)
    out = Path(config.out)
    started = time.time()
    log(f"loading {config.train.data.data} data")
    dataset, images = load_images(config)
    trained = [f for f in FLAVOURS if f != "crops"]  # crop folds score the fixed methods only
    units = sum(task_folds(t.strip(), config) * len(trained)
                for t in config.tasks.split(",") if t.strip() in PAPER)
    view = run_view(config.train)
    check_folds(config)
    log(cost_line(config, images, view, units))
    keras.utils.set_random_seed(config.train.seed)
    features, frozen = method_features(config, images, view, log)
    log("cross-validation (each fold's Siamese model sees its training images only)")
    records, notes = run_units(config, dataset, images, features, out, log, frozen)
    table = results_table(summarise_folds(records))
    write_text(out / "results.csv", table.to_csv(index=False))
    confusions = confusion_figures(records, out)
    heldout = heldout_table(config, dataset, images, out, log)
    log("PCA interpretation: Siamese model on all images, descriptors measured from the images")
    every = np.arange(len(images))
    embeddings = train_and_embed(config, images, every, dataset.labels, every,
                                 out / "runs" / "interpretation", frozen)
    interpretation = interpret(embeddings, dataset.table, images, out)
    meta = {"microrep_version": __version__, "backend": keras.backend.backend(),
            "settings": to_dict(config), "images": len(images), "notes": notes,
            "view": view.words(), "seconds": round(time.time() - started, 1),
            "dataset_notes": dataset.notes, "heldout": heldout}
    write_json(out / "reproduce.json", meta)
    write_text(out / "results.md", reproduce_report(table, confusions, interpretation, meta, out))
    log(f"results: {out / 'results.md'}")
    return table


def method_features(config, images, view, log):
    """(MethodFeatures, FrozenFeatures or None): the fixed methods' features of every image.

    A frozen base computes every image's features once (its `view`, and a bank of crops
    for the heads) and the pretrained column is their block4_conv3 part; a fine-tuned run
    computes the pretrained column over tiles. DeCost et al.'s VLAD comes from the local
    features of their four centre crops, whose block4_conv3 means are the pretrained
    column of the crops flavour.
    """
    model = config.train.model
    frozen = None
    if model.train_base:
        log(f"pretrained features: ImageNet VGG16 block4_conv3, mean-pooled, {view.words()}")
        with dtype_policy(policy_for(model.mixed_precision)):
            tower = build_feature_tower(dataclasses.replace(model, vgg_blocks=4,
                                                            feature_layers=PRETRAINED_LAYER))
        pretrained = embed_images(tower, images, view, progress=True)
    else:
        log(f"frozen VGG16 base: {view.words()}{bank_words(config.train.feature_bank)}, "
            "computed once for every fold")
        frozen = frozen_features(config.train, images, log, view=view)
        pretrained = frozen.pooled[:, :first_layer_width(config.train, frozen.feature_tower)]
    cache = str(Path(config.train.feature_cache).expanduser()) if config.train.feature_cache else None
    log(f"DeCost et al.'s VLAD: local features of four {model.input_size}-px centre crops per image")
    vlad = decost_vlad(model, images, cache, config.train.seed, progress=True, log=log)
    images_by_method = {"pretrained": pretrained}
    crops_by_method = {"pretrained": vlad.means[PRETRAINED_LAYER]}
    for layer in vlad.sums:
        images_by_method[f"vlad_{layer.split('_')[0]}"] = vlad.images(layer)
        crops_by_method[f"vlad_{layer.split('_')[0]}"] = vlad.panels(layer).reshape(
            len(images), CROPS_PER_IMAGE, -1)
    return MethodFeatures(images_by_method, crops_by_method), frozen


def heldout_recipe(config, out):
    """The TrainConfig of microrep's recipe at this run's input size, blocks and weights: the
    run's own training under --preset cpu, which is the recipe (its features are then the
    ones already computed)."""
    model = config.train.model
    if config.train.preset == "cpu" and not model.train_base:
        return dataclasses.replace(config.train, out=str(out / "heldout-run"), overwrite=True,
                                   resume=False)
    return from_dict(TrainConfig, apply_preset({
        "preset": "cpu", "model": {"input_size": model.input_size, "vgg_blocks": model.vgg_blocks,
                                   "weights": model.weights},
        "data": dataclasses.asdict(config.train.data), "feature_cache": config.train.feature_cache,
        "out": str(out / "heldout-run"), "overwrite": True, "seed": config.train.seed}))


def heldout_table(config, dataset, images, out, log):
    """Pretrained vs learned on held-out halves (microrep.heldout); rows for results.md.

    Written to heldout.csv (every split) and returned as a list of mean rows; resumed
    runs reuse heldout.csv when the settings match.
    """
    if config.heldout_splits <= 0:
        return []
    path, key = out / "heldout.csv", settings_key(config)
    if path.is_file() and (out / "heldout.key").is_file() and (out / "heldout.key").read_text() == key:
        rows = pd.read_csv(path)
    else:
        log(f"held-out: microrep's recipe vs the pretrained features over {config.heldout_splits} "
            "seeded splits (training on one half, scoring the other)")
        scaled = dataset.with_images(images)
        seeds = range(config.train.seed, config.train.seed + config.heldout_splits)
        tasks = [t.strip() for t in config.tasks.split(",") if t.strip()]
        rows, _ = compare_on_splits(heldout_recipe(config, out), scaled, seeds, tasks=tasks, log=log,
                                    view=run_view(config.train))
        write_text(path, rows.to_csv(index=False))
        write_text(out / "heldout.key", key)
        shutil.rmtree(out / "heldout-run", ignore_errors=True)
    if rows.empty:
        return []
    summary = summarise_splits(rows).reset_index()
    return summary.to_dict(orient="records")


def confusion_figures(records, out):
    """One confusion-matrix PNG per task (Siamese, stratified CV); {name: file name}."""
    figures = {}
    for task in dict.fromkeys(r["task"] for r in records if r["flavour"] == "stratified"):
        matrix, classes = confusion_for(records, task, "stratified", "siamese@0")
        path = plot_confusion(matrix, classes, out / f"confusion_{task}.png",
                              f"{task}: Siamese, stratified CV")
        figures[task] = path.name
    return figures


def confusion_for(records, task, flavour, method):
    """Summed confusion matrix over the folds of one task, flavour and method."""
    result = score_folds([(r["true"], r["predictions"][method])
                          for r in group_records(records)[(task, flavour)]])
    return result.confusion, result.classes

