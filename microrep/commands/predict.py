"""`microrep evaluate --target` and `microrep predict`: how was this micrograph made?

`evaluate --target NAME[,NAME]` scores predicting metadata targets (anneal temperature,
log anneal time, cooling method, any CSV column) from an embeddings folder by
sample-grouped CV, beside the no-information predictor and, with
`--baseline-embeddings`, another embedding of the same images (the pretrained one);
numeric targets get 90 % conformal intervals and their measured coverage, and a parity
plot each.

`predict` fits a predictor on embeddings that carry the targets (saved in
OUT/predictor) or loads one saved earlier, and writes predictions.csv for an archive
or for image files embedded with the fit archive's model: one row per image with the
prediction and its interval.
"""

from pathlib import Path

import joblib
import pandas as pd

from microrep.analysis.plots import plot_parity
from microrep.analysis.targets import check_samples, fit_target, score_target
from microrep.config import SearchConfig
from microrep.data.targets import NUMERIC, parse_targets, read_target
from microrep.embedding.archive import archive_info, open_archive, refuse_other_model
from microrep.errors import DataError
from microrep.fileio import (atomic_path, read_checked, read_json, refuse_earlier_output,
                             write_json, write_text)

PREDICTOR = "predictor"


def archive_rows(folder):
    """(vectors, table) of an archive's usable rows, the table with groups as strings."""
    archive = open_archive(folder)
    table = archive.table.reset_index(drop=True)
    groups = table["group"].astype(str) if "group" in table else table["path"].astype(str)
    return archive.vectors(), table.assign(group=groups.to_numpy())


def aligned_baseline(folder, table):
    """The baseline folder's vectors in the row order of `table` (matched by path)."""
    vectors, other = archive_rows(folder)
    where = {path: row for row, path in enumerate(other["path"].astype(str))}
    missing = [p for p in table["path"].astype(str) if p not in where]
    if missing:
        raise DataError(f"--baseline-embeddings {folder} lacks {len(missing)} of the images "
                        f"(e.g. {missing[0]}); embed the same images with it")
    return vectors[[where[p] for p in table["path"].astype(str)]]


def evaluate_targets(config, log=print):
    """metrics.json, predictions_<target>.csv and parity_<target>.png for each --target."""
    out = Path(config.out)
    refuse_earlier_output(out / "metrics.json", "an evaluation", config.overwrite)
    vectors, table = archive_rows(config.embeddings)
    sets = {"embeddings": vectors}
    if config.baseline_embeddings:
        sets["baseline"] = aligned_baseline(config.baseline_embeddings, table)
    results = {}
    for name in parse_targets(config.target):
        target = read_target(table, name)
        results[name] = {}
        for role, features in sets.items():
            summary, rows = score_target(features, target, table["group"].to_numpy(),
                                         config.folds, config.seed)
            results[name][role] = summary
            if role == "embeddings":
                write_predictions(out / f"predictions_{name}.csv", table, rows, target.kind)
                if target.kind == NUMERIC:
                    summary["figure"] = plot_parity(rows, summary, out / f"parity_{name}.png").name
        log(target_line(name, results[name]))
    metrics = {"mode": "targets", "embeddings": str(config.embeddings),
               "baseline_embeddings": config.baseline_embeddings or None,
               "cv": f"{config.folds}-fold, grouped by sample", "targets": results}
    write_json(out / "metrics.json", metrics)
    return metrics


def target_line(name, by_role):
    """One line per target: ours, the baseline embedding, the no-information predictor."""
    ours = by_role["embeddings"]
    if ours["kind"] == NUMERIC:
        words = [f"MAE {ours['mae']:.3g} {ours['unit']}".strip() + f" (R² {ours['r2']:.2f})"]
        if "baseline" in by_role:
            words.append(f"baseline embedding {by_role['baseline']['mae']:.3g}")
        words.append(f"no information {ours['no_information_mae']:.3g}")
        words.append(f"{ours['confidence']:.0%} intervals cover {ours['coverage']:.0%} "
                     f"(mean width {ours['mean_interval_width']:.3g})")
    else:
        words = [f"accuracy {ours['accuracy']:.1%} (balanced {ours['balanced_accuracy']:.1%})"]
        if "baseline" in by_role:
            words.append(f"baseline embedding {by_role['baseline']['accuracy']:.1%}")
        words.append(f"no information {ours['no_information_accuracy']:.1%}")
    return (f"{name}, {ours['images']} images of {ours['samples']} samples, sample-grouped "
            f"{ours['folds']}-fold CV: " + "; ".join(words))


def write_predictions(path, table, rows, kind):
    frame = pd.DataFrame({"path": table["path"].to_numpy()[rows["rows"]],
                          "group": rows["group"], "true": rows["true"],
                          "predicted": rows["predicted"]})
    if kind == NUMERIC:
        frame = frame.assign(lower=rows["lower"], upper=rows["upper"])
    write_text(path, frame.to_csv(index=False))


def fit_predictors(config):
    """{target: FittedTarget} fitted on --fit-embeddings, saved with the archive's embed.json."""
    vectors, table = archive_rows(config.fit_embeddings)
    fitted = {}
    for name in parse_targets(config.target):
        target = read_target(table, name)
        known = target.known
        check_samples(table["group"].to_numpy()[known], name)
        fitted[name] = fit_target(vectors[known], target.values[known],
                                  table["group"].to_numpy()[known], target.kind, name,
                                  target.unit, config.seed)
    folder = Path(config.out) / PREDICTOR
    with atomic_path(folder / "predictor.joblib") as tmp:
        joblib.dump(fitted, tmp)
    write_json(folder / "predictor.json", {"fit_embeddings": str(Path(config.fit_embeddings).resolve()),
                                           "targets": list(fitted), "dim": int(vectors.shape[1]),
                                           "embed": archive_info(config.fit_embeddings)})
    return fitted, read_json(folder / "predictor.json")


def load_predictors(folder):
    info = read_checked(Path(folder) / "predictor.json", read_json,
                        "save the predictor again (`microrep predict --fit-embeddings ...`)",
                        ("targets", "dim", "embed"))
    fitted = read_checked(Path(folder) / "predictor.joblib", joblib.load,
                          "save the predictor again (`microrep predict --fit-embeddings ...`)")
    return fitted, info


def vectors_to_predict(config, info, log):
    """(vectors, paths) of --embeddings (an archive of the same model) or --images."""
    if config.embeddings:
        vectors, table = archive_rows(config.embeddings)
        refuse_other_model(("the predictor's embeddings", info["embed"], info["dim"]),
                           (config.embeddings, archive_info(config.embeddings), vectors.shape[1]),
                           "prediction")
        return vectors, table["path"].astype(str).to_numpy()
    from microrep.commands.search import embed_queries

    search = SearchConfig(index=info["fit_embeddings"], query=config.images)  # its query rules
    vectors, queries = embed_queries(search, info["embed"], info["dim"], log)
    return vectors, queries["query"].to_numpy()


def run_predict(config, log=print):
    """The predict command: fit (or load) the predictors, then predict; returns the table."""
    if bool(config.fit_embeddings) == bool(config.predictor):
        raise DataError("give either --fit-embeddings with --target (fit a predictor) or "
                        "--predictor (one saved earlier)")
    if not config.embeddings and not config.images:
        raise DataError("give the micrographs to predict: --embeddings FOLDER or --images FILES")
    refuse_earlier_output(Path(config.out) / "predictions.csv", "predictions", config.overwrite)
    fitted, info = fit_predictors(config) if config.fit_embeddings else load_predictors(config.predictor)
    vectors, paths = vectors_to_predict(config, info, log)
    table = pd.DataFrame({"path": paths})
    for name, predictor in fitted.items():
        predicted, lower, upper = predictor.predict(vectors)
        table[name] = predicted
        if lower is not None:
            table[f"{name}_lower"], table[f"{name}_upper"] = lower, upper
    write_text(Path(config.out) / "predictions.csv", table.to_csv(index=False))
    log(f"predicted {', '.join(fitted)} for {len(table)} micrographs "
        f"({fitted[next(iter(fitted))].confidence:.0%} intervals for numeric targets): "
        f"{Path(config.out) / 'predictions.csv'}")
    return table

