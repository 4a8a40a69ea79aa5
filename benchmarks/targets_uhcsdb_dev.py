"""How a micrograph was made, predicted from embeddings of the UHCSDB dev copy.

For each embeddings folder given (e.g. `embed --pretrained`, a trained run's `embed`), the
mean over seeds of `evaluate --target`'s sample-grouped 5-fold CV: anneal temperature MAE
(°C), log10 anneal time MAE, cooling-method accuracy, and the 90 % intervals' coverage,
beside the no-information predictor.

    python benchmarks/targets_uhcsdb_dev.py --embeddings pretrained=runs/base learned=runs/emb \
        [--seeds 0 1 2 3 4]
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

TARGETS = ("anneal_temperature", "log_anneal_time", "cool_method")


def run(args):
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
    frame = pd.DataFrame(rows)
    table = frame.groupby(["target", "embedding"])[["score", "no information", "coverage"]].mean()
    print("mean over seeds", args.seeds, "(MAE for numeric targets, accuracy for cool_method)")
    print(table.round(3).to_string())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings", nargs="+", required=True, help="NAME=FOLDER")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    run(parser.parse_args())
