"""How a micrograph was made, predicted from embeddings of the UHCSDB dev copy.

With --embeddings, for each folder given (e.g. `embed --pretrained`), the mean over seeds
of `evaluate --target`'s sample-grouped 5-fold CV: anneal temperature MAE (°C), log10
anneal time MAE, cooling-method accuracy, and the 90 % intervals' coverage, beside the
no-information predictor.

With --train, the same folds with training inside them: for each seed and fold, the
recipe (`train --preset cpu`, frozen VGG16 features cached once) is trained on the fold's
training samples only, once under the default graded loss on class labels
("label-trained") and once under `--similarity processing` ("processing-aware"), and
every target predictor is fitted on the training samples' embeddings and scored on the
held-out samples; beside the pretrained features (block4, as `embed --pretrained`) and
the no-information predictor.

    python benchmarks/targets_uhcsdb_dev.py --embeddings pretrained=runs/base [--seeds 0 1 2 3 4]
    python benchmarks/targets_uhcsdb_dev.py --train [--seeds 0 1 2 3 4]
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microrep.analysis.targets import score_target  # noqa: E402
from microrep.commands.predict import archive_rows  # noqa: E402
from microrep.data.targets import read_target  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"

TARGETS = ("anneal_temperature", "log_anneal_time", "cool_method")


def trained_rows(args):
    """Rows (method, target, seed, score, no information, coverage) of the --train mode."""
    import dataclasses

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from heldout_uhcsdb_dev import train_config
    from microrep.analysis.targets import fit_target, sample_folds
    from microrep.commands.heldout import first_layer_width
    from microrep.config import DataConfig
    from microrep.data import load_dataset
    from microrep.embedding.towers import embed_from_tiles, head_from_tower
    from microrep.training import train
    from microrep.training.frozen import frozen_features

    dataset = load_dataset(DataConfig(data="uhcsdb", data_dir=args.data_dir))
    config = train_config(args, args.scratch)
    features = frozen_features(config, dataset.images(), print)
    pretrained = features.tiles[..., :first_layer_width(config, features.feature_tower)].mean(axis=1)
    groups = dataset.groups
    targets = [read_target(dataset.table, name) for name in TARGETS]
    rows = []
    for seed in args.seeds:
        collected = {}
        for fold, (train_rows, test_rows) in enumerate(sample_folds(groups, 5, seed)):
            embeddings = {"pretrained": pretrained}
            for method, similarity in (("label-trained", "graded"), ("processing-aware", "processing")):
                run = train(dataclasses.replace(config, seed=seed, similarity=similarity,
                                                out=f"{args.scratch}/{method}"),
                            dataset.subset(train_rows), verbose=0, features=features.subset(train_rows))
                head = head_from_tower(run.tower, features.tiles.shape[-1], config.model)
                embeddings[method] = embed_from_tiles(head, features)
            for method, vectors in embeddings.items():
                for target in targets:
                    fit = train_rows[target.known[train_rows]]
                    test = test_rows[target.known[test_rows]]
                    model = fit_target(vectors[fit], target.values[fit], groups[fit], target.kind,
                                       target.name, target.unit, seed)
                    predicted, lower, upper = model.predict(vectors[test])
                    store = collected.setdefault((method, target.name), [])
                    store.append((target.values[test], predicted, lower, upper, target.values[fit]))
            print(f"seed {seed}, fold {fold + 1}/5 done", flush=True)
        for (method, name), parts in collected.items():
            true = np.concatenate([p[0] for p in parts])
            predicted = np.concatenate([p[1] for p in parts])
            none = np.concatenate([np.full(len(p[0]), p[4].mean()) if p[2] is not None else
                                   np.full(len(p[0]), pd.Series(p[4]).mode()[0], dtype=object)
                                   for p in parts])
            if parts[0][2] is not None:
                lower = np.concatenate([p[2] for p in parts])
                upper = np.concatenate([p[3] for p in parts])
                rows.append({"embedding": method, "target": name, "seed": seed,
                             "score": float(np.mean(np.abs(predicted - true))),
                             "no information": float(np.mean(np.abs(none - true))),
                             "coverage": float(np.mean((true >= lower) & (true <= upper)))})
            else:
                rows.append({"embedding": method, "target": name, "seed": seed,
                             "score": float(np.mean(predicted == true)),
                             "no information": float(np.mean(none == true)), "coverage": np.nan})
    return rows


def run(args):
    if args.train:
        report(pd.DataFrame(trained_rows(args)), args)
        return
    rows = []
    for spec in args.embeddings:
        name, _, folder = spec.partition("=")
        vectors, table = archive_rows(folder)
        for target_name in TARGETS:
            target = read_target(table, target_name)
            for seed in args.seeds:
                summary, _ = score_target(vectors, target, table["group"].to_numpy(), 5, seed)
                score = summary.get("mae", summary.get("accuracy"))
                none = summary.get("no_information_mae", summary.get("no_information_accuracy"))
                rows.append({"embedding": name, "target": target_name, "seed": seed, "score": score,
                             "no information": none, "coverage": summary.get("coverage", np.nan)})
    report(pd.DataFrame(rows), args)


def report(frame, args):
    table = frame.groupby(["target", "embedding"])[["score", "no information", "coverage"]].agg(
        ["mean", "std"])
    print("mean and sd over seeds", args.seeds, "(MAE for numeric targets, accuracy for cool_method)")
    print(table.round(3).to_string())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings", nargs="+", default=[], help="NAME=FOLDER")
    parser.add_argument("--train", action="store_true", help="train inside each fold (see above)")
    parser.add_argument("--scratch", default="/tmp/microrep-targets")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="--train: other training settings (as heldout_uhcsdb_dev.py)")
    parser.add_argument("--data-dir", default=str(SHARED / "data" / "uhcsdb-dev"))
    parser.add_argument("--weights", default=str(SHARED / "weights" / "vgg16_imagenet_notop.weights.h5"))
    parser.add_argument("--feature-cache", default=str(Path("~/.cache/microrep/features").expanduser()))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    run(parser.parse_args())
