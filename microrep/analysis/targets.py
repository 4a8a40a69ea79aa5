"""Predicting how a micrograph was made from its embedding, with honest error bars.

Embeddings and a target in (`microrep.data.targets`), numbers out:

- numeric targets (anneal temperature, log anneal time, any numeric column): a
  5-nearest-neighbour regressor on standardised embeddings (on the UHCSDB dev copy it beat
  ridge regression: 56 vs 68-75 °C MAE), with cross-conformal 90 % prediction intervals
  from crepes: the residuals come from inner folds over whole samples (each predicted by a
  regressor that did not see its sample), so every fit image calibrates and none is
  lost to a held-back calibration set (with 30-odd samples, a split set of 7 samples
  gave coverage from 77 % to 94 %);
- categorical targets (cooling method, any text column): the linear SVM of the
  classification tasks.

Scored by cross-validation grouped by sample (a sample is never on both sides: a lab
predicting a new sample's processing has never seen that sample), always beside the
no-information predictor (the training folds' mean, or their most frequent category).
"""

import dataclasses

import numpy as np
from sklearn.metrics import balanced_accuracy_score, r2_score
from sklearn.model_selection import GroupKFold
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from microrep.analysis.svm import svm_pipeline
from microrep.errors import DataError

CONFIDENCE = 0.9
NEIGHBOURS = 5
#: Inner folds (over samples) whose out-of-fold residuals calibrate the intervals.
CALIBRATION_FOLDS = 5


def sample_folds(groups, folds, seed=0):
    """(train rows, test rows) of `folds` folds that never split a sample (GroupKFold: folds
    balanced by sample size; `seed` relabels the samples, which reorders samples of one size)."""
    unique = np.unique(groups)
    if len(unique) < 2:
        raise DataError("predicting a target needs micrographs of at least two samples")
    order = np.random.default_rng(seed).permutation(len(unique))
    shuffled = order[np.searchsorted(unique, groups)]
    return list(GroupKFold(n_splits=min(folds, len(unique))).split(groups, groups=shuffled))


def regressor(rows):
    return make_pipeline(StandardScaler(), KNeighborsRegressor(max(1, min(NEIGHBOURS, rows))))


@dataclasses.dataclass
class ConformalKNN:
    """A kNN regressor on every fit row and a crepes ConformalRegressor on its out-of-fold
    residuals (inner folds over samples): `predict`, `predict_int` as crepes' wrappers."""

    model: object
    conformal: object

    def predict(self, embeddings):
        return self.model.predict(embeddings)

    def predict_int(self, embeddings, confidence=CONFIDENCE):
        return self.conformal.predict_int(y_hat=self.predict(embeddings), confidence=confidence)


def check_samples(groups, name):
    """DataError unless the images name their samples and there are three or more: folds by
    sample need a sample to hold out and two to fit (one of them calibrates the intervals),
    and where every image is its own sample 'grouped' CV would be per-image CV."""
    unique = len(set(groups))
    if unique == len(groups) and len(groups) > 3:
        raise DataError(f"target {name!r}: every image is its own sample (no groups are known), so "
                        "sample-grouped CV is not available; give each image's sample (a group "
                        "column)")
    if unique < 3:
        raise DataError(f"target {name!r} is known for images of {unique} sample(s); "
                        "sample-grouped CV needs at least three")


@dataclasses.dataclass
class FittedTarget:
    """A fitted predictor of one target: `predict(X)` -> (prediction, lower, upper) for
    numeric targets (lower/upper the 90 % interval), (category, None, None) otherwise."""

    name: str
    kind: str
    unit: str
    model: object
    confidence: float = CONFIDENCE

    def predict(self, embeddings):
        embeddings = np.asarray(embeddings, np.float32)
        if self.kind != "numeric":
            return self.model.predict(embeddings), None, None
        intervals = self.model.predict_int(embeddings, confidence=self.confidence)
        return self.model.predict(embeddings), intervals[:, 0], intervals[:, 1]


def fit_target(embeddings, values, groups, kind, name="", unit="", seed=0):
    """A FittedTarget on these rows (numeric: a conformal regressor calibrated on held-back
    whole samples; categorical: a linear SVM)."""
    embeddings = np.asarray(embeddings, np.float32)
    if kind != "numeric":
        if len(set(values)) < 2:
            raise DataError(f"target {name!r} takes one value only in the fit set")
        return FittedTarget(name, kind, unit, svm_pipeline("linear", 1.0).fit(embeddings, values))
    from crepes import ConformalRegressor

    values = np.asarray(values, float)
    residuals = np.empty(len(values))
    for train, held in sample_folds(groups, CALIBRATION_FOLDS, seed + 1):
        residuals[held] = values[held] - regressor(len(train)).fit(
            embeddings[train], values[train]).predict(embeddings[held])
    conformal = ConformalRegressor().fit(residuals=residuals)
    model = ConformalKNN(regressor(len(values)).fit(embeddings, values), conformal)
    return FittedTarget(name, kind, unit, model)


def score_target(embeddings, target, groups, folds=5, seed=0):
    """Sample-grouped CV of one Target: (summary dict, per-row predictions dict).

    Numeric: MAE, R², coverage and mean width of the 90 % intervals, and the
    no-information MAE (predicting the training folds' mean). Categorical: accuracy,
    balanced accuracy and the no-information accuracy (the most frequent category).
    """
    rows = np.flatnonzero(target.known)
    embeddings = np.asarray(embeddings[rows] if hasattr(embeddings, "shape") else embeddings, np.float32)
    values, groups = target.values[rows], np.asarray(groups).astype(str)[rows]
    check_samples(groups, target.name)
    numeric = target.kind == "numeric"
    predicted = np.empty(len(rows), dtype=float if numeric else object)
    lower, upper, baseline = (np.full(len(rows), np.nan) for _ in range(3))
    baseline = baseline.astype(float if numeric else object)
    for train, test in sample_folds(groups, folds, seed):
        fitted = fit_target(embeddings[train], values[train], groups[train], target.kind,
                            target.name, target.unit, seed)
        predicted[test], low, high = fitted.predict(embeddings[test])
        if numeric:
            lower[test], upper[test] = low, high
            baseline[test] = values[train].mean()
        else:
            categories, counts = np.unique(values[train], return_counts=True)
            baseline[test] = categories[counts.argmax()]
    summary = {"target": target.name, "kind": target.kind, "unit": target.unit,
               "images": int(len(rows)), "samples": int(len(np.unique(groups))),
               "folds": int(min(folds, len(np.unique(groups))))}
    if numeric:
        inside = (values >= lower) & (values <= upper)
        summary.update(mae=float(np.mean(np.abs(predicted - values))),
                       r2=float(r2_score(values, predicted)),
                       no_information_mae=float(np.mean(np.abs(baseline - values))),
                       confidence=CONFIDENCE, coverage=float(inside.mean()),
                       mean_interval_width=float(np.mean(upper - lower)))
    else:
        summary.update(accuracy=float(np.mean(predicted == values)),
                       balanced_accuracy=float(balanced_accuracy_score(values, predicted)),
                       no_information_accuracy=float(np.mean(baseline == values)))
    return summary, {"rows": rows, "true": values, "predicted": predicted, "lower": lower,
                     "upper": upper, "group": groups}
