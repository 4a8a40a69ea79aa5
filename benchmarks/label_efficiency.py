"""The label-efficiency curve: held-out accuracy against labelled images per class.

What a lab with a large unlabelled archive needs to decide: how many micrographs must
be labelled, and does learning from the unlabelled ones pay? On each seeded `within`
split of the UHCSDB development copy (every sample on both sides), k micrographs per
class of the fit half keep their labels (k = 1, 2, 5, 10, all) and the rest lose
them. Five embeddings, each scored by a linear SVM fitted on the k labelled images
and tested on the other half (all classes, and 3 phases):

- `pretrained`: VGG16 block4_conv3 mean-pooled (`embed --pretrained`), no training;
- `recipe input`: block4+block5 standardised on the fit half, the recipe's start;
- `supervised`: the recipe (`train --preset cpu`) trained on the k labelled images only;
- `self-supervised`: the recipe trained on every fit image without labels
  (`--similarity self`), the same for every k;
- `semi-supervised`: the k labels plus every unlabelled fit image (`--similarity semi`).

VGG16 features are computed once and cached (`--feature-cache`); every training is
a head on them (seconds). Prints the table (mean over seeds, %) and writes the figure.

    python benchmarks/label_efficiency.py --seeds 0 1 2 3 4 --figure docs/label_efficiency.png
"""

import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microrep.analysis.heldout import split_within, task_sets  # noqa: E402
from microrep.analysis.svm import fit_and_score  # noqa: E402
from microrep.commands.heldout import first_layer_width  # noqa: E402
from microrep.config import DataConfig  # noqa: E402
from microrep.data import load_dataset  # noqa: E402
from microrep.embedding.features import head_from_tower  # noqa: E402
from microrep.embedding.towers import embed_from_tiles
from microrep.training import train  # noqa: E402
from microrep.training.frozen import frozen_features, start_head  # noqa: E402
from heldout_uhcsdb_dev import dev_arguments, train_config  # noqa: E402  (beside this script)
COUNTS = ("1", "2", "5", "10", "all")
TASKS = {"constituent": "all classes", "3phase": "3 phases"}


def labelled_rows(labels, fit_rows, count, seed):
    """`count` fit rows per class (all of a smaller class), seeded."""
    rng = np.random.default_rng([seed, 303])
    chosen = []
    for label in np.unique(labels[fit_rows]):
        members = rng.permutation(fit_rows[labels[fit_rows] == label])
        chosen.extend(members if count == "all" else members[:int(count)])
    return np.sort(np.asarray(chosen))


def trained_embedding(config, dataset, rows, features, labels=None):
    """The head trained on `rows` (with `labels` there, "" = unlabelled), applied to every image."""
    subset = dataset.subset(rows)
    if labels is not None:
        subset = dataclasses.replace(subset, table=subset.table.assign(label=labels))
    run = train(config, subset, verbose=0, features=features.subset(rows))
    return embed_from_tiles(head_from_tower(run.tower, features.tiles.shape[-1], config.model), features)


def scores(dataset, embedding, fit_mask):
    """{task: linear-SVM accuracy} fitted on `fit_mask`, tested on the rest."""
    result = {}
    for task, name in TASKS.items():
        (fit_x, fit_y, _), (test_x, test_y, _) = task_sets(dataset.table, embedding, fit_mask, task)
        result[name] = fit_and_score(fit_x, fit_y, test_x, test_y).mean if len(set(fit_y)) > 1 else np.nan
    return result


def one_seed(config, dataset, features, seed, log):
    config = dataclasses.replace(config, seed=seed)
    fit_rows = np.flatnonzero(split_within(dataset.groups, seed))
    labels = dataset.labels
    pretrained = features.tiles[..., :first_layer_width(config, features.feature_tower)].mean(axis=1)
    recipe_input = embed_from_tiles(start_head(config, features, fit_rows), features)
    self_supervised = trained_embedding(dataclasses.replace(config, similarity="self"), dataset,
                                        fit_rows, features)
    test_mask = np.ones(len(dataset), bool)
    test_mask[fit_rows] = False
    rows = []
    for count in COUNTS:
        labelled = labelled_rows(labels, fit_rows, count, seed)
        mask = np.zeros(len(dataset), bool)
        mask[labelled] = True
        embeddings = {"pretrained": pretrained, "recipe input": recipe_input,
                      "self-supervised": self_supervised}
        try:
            embeddings["supervised"] = trained_embedding(config, dataset, labelled, features)
        except Exception as error:  # too few labelled images for the pair sampler
            log(f"seed {seed}, {count} per class: supervised recipe not trainable ({error})")
        semi_labels = np.where(np.isin(fit_rows, labelled), labels[fit_rows], "")
        embeddings["semi-supervised"] = trained_embedding(dataclasses.replace(config, similarity="semi"),
                                                          dataset, fit_rows, features, semi_labels)
        for method, embedding in embeddings.items():
            # fit on the labelled images only; score the unseen half
            scoring_mask = mask | test_mask
            for task, value in scores(dataset.subset(np.flatnonzero(scoring_mask)),
                                      embedding[scoring_mask], mask[scoring_mask]).items():
                rows.append(dict(seed=seed, per_class=count, method=method, task=task, value=value))
        log(f"seed {seed}, {count} labelled per class: done")
    return rows


def draw(table, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TASKS), figsize=(11, 3.8))
    for axis, task in zip(np.atleast_1d(axes), TASKS.values()):
        for method in table.columns:
            axis.plot(range(len(COUNTS)), 100 * table.loc[task][method].reindex(COUNTS), "o-", label=method)
        axis.set_xticks(range(len(COUNTS)), COUNTS)
        axis.set_xlabel("labelled micrographs per class"); axis.set_ylabel("held-out accuracy (%)")
        axis.set_title(f"{task}, linear SVM")
    axes[0].legend(fontsize=8)
    fig.tight_layout(); fig.savefig(path, dpi=100); plt.close(fig)


def main():
    parser = dev_arguments(__doc__.splitlines()[0])
    parser.add_argument("--figure", default="", help="write the curve here (PNG)")
    args = parser.parse_args()
    dataset = load_dataset(DataConfig(data="uhcsdb", data_dir=args.data_dir, min_class_size=1))
    with tempfile.TemporaryDirectory() as scratch:
        config = train_config(args, Path(scratch) / "run")
        features = frozen_features(config, dataset.images(), print)
        rows = [row for seed in args.seeds for row in one_seed(config, dataset, features, seed, print)]
    frame = pd.DataFrame(rows)
    table = frame.groupby(["task", "per_class", "method"])["value"].mean().unstack("method")
    table = table[[m for m in ("pretrained", "recipe input", "supervised", "self-supervised",
                               "semi-supervised") if m in table.columns]]
    print(f"\nheld-out linear-SVM accuracy (%), mean of {len(args.seeds)} within split(s):")
    for task in TASKS.values():
        print(f"\n{task}\n" + (100 * table.loc[task].reindex(COUNTS)).round(1).to_string())
    if args.figure:
        draw(table, args.figure)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
