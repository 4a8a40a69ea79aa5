"""Held-out check on the UHCSDB development copy: does learning beat the pretrained features?

Splits the dev copy in two, trains `microrep train --preset cpu` on one half
only, and scores both embeddings on the other half with SVMs fitted on the
first (the product's `evaluate --test-embeddings`), for every task:

- `within`: every sample on both sides (half of each sample's micrographs each
  way, seeded), as when a new batch of micrographs of known samples arrives; the
  processing-condition task needs it.
- `disjoint`: whole samples on one side (half of each class's samples each way),
  the honest case for the microconstituent tasks.

The baseline is `microrep embed --pretrained` (VGG16 block4_conv3, mean-pooled
over the same 3x3 tiles, ImageNet weights, no training). The VGG16 features of
every image are computed once and cached (`--feature-cache`), so each split only
trains the head; the learned embeddings are the head applied to the cached
tile features, which the tests check equal the assembled tower's.

    python benchmarks/heldout_uhcsdb_dev.py [--data-dir ../shared/data/uhcsdb-dev]
        [--weights ../shared/weights/vgg16_imagenet_notop.weights.h5] [--seeds 0 1 2]
"""

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microrep.analysis.stage import heldout_results  # noqa: E402
from microrep.config import DataConfig, EvalConfig, TrainConfig, apply_preset, from_dict  # noqa: E402
from microrep.data import load_dataset  # noqa: E402
from microrep.data.tasks import task_rows  # noqa: E402
from microrep.frozen import embed_from_tiles, head_from_tower  # noqa: E402
from microrep.train import train  # noqa: E402
from microrep.train_frozen import frozen_features  # noqa: E402

TASKS = ("constituent", "3phase", "processing")
SHARED = Path(__file__).resolve().parents[2] / "shared"


def split_within(groups, seed):
    """Fit mask: half of each sample's images (the odd one to the fit side); singletons fit."""
    rng = np.random.default_rng([seed, 101])
    fit = np.zeros(len(groups), dtype=bool)
    for group in np.unique(groups):
        members = rng.permutation(np.flatnonzero(groups == group))
        fit[members[:(len(members) + 1) // 2]] = True
    return fit


def split_disjoint(groups, labels, seed):
    """Fit mask: half of each class's samples (rounded up), all their images."""
    rng = np.random.default_rng([seed, 102])
    sample_class = pd.Series(labels, index=groups).groupby(level=0).first()
    fit = np.zeros(len(groups), dtype=bool)
    for _, samples in sample_class.groupby(sample_class):
        chosen = rng.permutation(samples.index.to_numpy())[:(len(samples) + 1) // 2]
        fit |= np.isin(groups, chosen)
    return fit


def task_sets(table, embeddings, fit, task):
    """((fit x, labels, groups), (test x, labels, groups)) for one task."""
    rows, labelled, _ = task_rows(table, task)
    labels = labelled["label"].astype(str).to_numpy()
    groups = labelled["group"].astype(str).to_numpy()
    x, mask = embeddings[rows], fit[rows]
    return (x[mask], labels[mask], groups[mask]), (x[~mask], labels[~mask], groups[~mask])


def score(table, embeddings, fit):
    """{(task, metric): value} of one embedding on one split."""
    results = {}
    for task in TASKS:
        fit_set, test_set = task_sets(table, embeddings, fit, task)
        keep = np.isin(test_set[1], np.unique(fit_set[1]))
        test_set = tuple(part[keep] for part in test_set)
        svms, retrieval = heldout_results(fit_set, test_set, EvalConfig())
        results[(task, "linear SVM")] = svms["linear"].mean
        results[(task, "RBF SVM")] = svms["rbf"].mean
        results[(task, "MAP@R")] = retrieval["all"]["map_at_r"]
        results[(task, "MAP@R other samples")] = (retrieval["other_samples"] or {}).get("map_at_r")
    return results


def train_config(args, out):
    """The cpu preset with this machine's weights and cache, and any --set overrides."""
    values = {"preset": "cpu", "model": {"weights": args.weights},
              "feature_cache": args.feature_cache, "out": str(out), "overwrite": True}
    for setting in args.set:
        key, value = setting.split("=", 1)
        node = values
        for part in key.split(".")[:-1]:
            node = node.setdefault(part, {})
        node[key.split(".")[-1]] = value
    return from_dict(TrainConfig, apply_preset(values))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(SHARED / "data" / "uhcsdb-dev"))
    parser.add_argument("--weights", default=str(SHARED / "weights" / "vgg16_imagenet_notop.weights.h5"))
    parser.add_argument("--feature-cache", default=str(Path("~/.cache/microrep/features").expanduser()))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", help="also write the per-split results here")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a training setting, e.g. --set epochs=20 or "
                             "--set model.head=projection (repeatable)")
    args = parser.parse_args()

    dataset = load_dataset(DataConfig(data="uhcsdb", data_dir=args.data_dir, min_class_size=1))
    table, labels, groups = dataset.table, dataset.labels, dataset.groups
    scratch = Path(tempfile.mkdtemp(prefix="microrep-heldout-"))
    config = train_config(args, scratch / "run")
    started = time.time()
    features, _ = frozen_features(config, dataset.images(), print)
    feature_seconds = time.time() - started
    # `embed --pretrained`: block4_conv3 mean-pooled over the tiles, the first layer tapped
    baseline = features.tiles[..., :512].mean(axis=1)
    rows, timings = [], []
    for kind in ("within", "disjoint"):
        for seed in args.seeds:
            fit = split_within(groups, seed) if kind == "within" else split_disjoint(groups, labels, seed)
            started = time.time()
            run = train(dataclasses.replace(config, seed=seed), dataset.subset(np.flatnonzero(fit)),
                        verbose=0)
            timings.append(time.time() - started)
            head = head_from_tower(run.tower, features.tiles.shape[-1], config.model)
            learned = embed_from_tiles(head, features)
            for method, embeddings in (("pretrained", baseline), ("learned", learned)):
                for (task, metric), value in score(table, embeddings, fit).items():
                    rows.append(dict(split=kind, seed=seed, task=task, metric=metric,
                                     method=method, value=value))
            print(f"{kind} split, seed {seed}: head trained in {timings[-1]:.0f} s", flush=True)
    frame = pd.DataFrame(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    table_out = (frame.groupby(["split", "task", "metric", "method"], sort=False)["value"].mean()
                 .unstack("method"))
    table_out["learned - pretrained"] = table_out["learned"] - table_out["pretrained"]
    print(f"\nsettings: {' '.join(args.set) or 'the cpu preset'}")
    print(f"held-out, mean over seeds {args.seeds}; features of {len(dataset)} images computed "
          f"in {feature_seconds:.0f} s (0 when cached); head training {np.mean(timings):.0f} s per split")
    print((table_out * 100).round(1).to_string())


if __name__ == "__main__":
    main()
