"""The paper's classification tasks: which label each micrograph gets.

- `constituent`: the primary microconstituent, every class present (7 in UHCSDB).
- `3phase`: DeCost et al.'s three phases: the first word of the label split on
  "+", martensite dropped (network, pearlite, spheroidite).
- `processing`: the processing condition, anneal temperature + time + cooling.
"""

import re

import numpy as np
import pandas as pd

from microrep.config import TASKS  # noqa: F401 (declared with the settings that choose one)
from microrep.data.targets import HOURS_PER, celsius, log10_hours
from microrep.errors import DataError


def processing_condition(table):
    """A readable processing-condition label, e.g. `800C-90M-AR`."""
    def fmt(value):
        return "" if pd.isna(value) else f"{value:g}" if isinstance(value, float) else str(value)

    parts = [table["anneal_temperature"].map(fmt) + table["anneal_temp_unit"].map(fmt),
             table["anneal_time"].map(fmt) + table["anneal_time_unit"].map(fmt),
             table["cool_method"].map(fmt)]
    return parts[0] + "-" + parts[1] + "-" + parts[2]


PROCESSING_COLUMNS = ("anneal_temperature", "anneal_time", "cool_method")


def with_processing(table):
    """`table` with a `processing` column (e.g. `800C-90M-AR`) where it records how each
    sample was made (UHCSDB, a lab's CSV with those columns); unchanged otherwise."""
    if not set(PROCESSING_COLUMNS) <= set(table.columns) or "processing" in table:
        return table
    units = {"anneal_temp_unit": "", "anneal_time_unit": ""}
    filled = table.assign(**{k: "" for k in units if k not in table})
    known = table[list(PROCESSING_COLUMNS)].notna().all(axis=1)
    return table.assign(processing=processing_condition(filled).where(known, ""))


#: `processing_condition`'s own format, read back: temperature+unit, time+unit, cooling.
CONDITION = re.compile(r"^(-?[\d.]+)([CK]?)-([\d.]+)([SMHD]?)-(.+)$", re.IGNORECASE)


def condition_coordinates(conditions, reference=None):
    """{condition: coordinates} of processing conditions (`processing_condition`'s strings) in
    processing space: standardised anneal temperature (°C), standardised log10 anneal time
    (hours) and the cooling method one-hot (scaled so two methods differ by 1), so a
    distance between conditions weighs the three alike; standardised on the `reference`
    conditions (a training set's, so its validation pairs are measured on the same scale),
    by default on `conditions` themselves. DataError for a string that is not a processing
    condition (a sample name where the metadata gives none)."""
    unique = sorted(set(map(str, conditions)) | set(map(str, [] if reference is None else reference)))
    parsed = []
    for text in unique:
        found = CONDITION.match(text)
        if found is None:
            raise DataError(f"{text!r} is not a processing condition (temperature-time-cooling); "
                            "a processing-aware loss needs anneal_temperature, anneal_time and "
                            "cool_method for every image")
        hours = max(float(found[3]) * HOURS_PER[found[4].upper()], 1e-6)
        parsed.append((celsius(float(found[1]), found[2]), log10_hours(hours, "H"), found[5]))
    numbers = np.array([(t, h) for t, h, _ in parsed], float)
    basis = numbers if reference is None else numbers[np.isin(unique, list(map(str, reference)))]
    spread = basis.std(axis=0)
    scaled = (numbers - basis.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    methods = sorted({c for _, _, c in parsed})
    onehot = np.array([[c == m for m in methods] for _, _, c in parsed], float) / np.sqrt(2)
    return {text: np.r_[row, code] for text, row, code in zip(unique, scaled, onehot)}


def task_labels(table, task):
    """Return (labels Series, keep mask) of `task` for a metadata table."""
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if task == "processing":
        needed = ["anneal_temperature", "anneal_time", "cool_method"]
        missing = [c for c in needed if c not in table.columns]
        if missing:
            raise DataError(f"task 'processing' needs metadata columns {', '.join(missing)}")
        labels = processing_condition(table)
        return labels, table[needed].notna().all(axis=1)
    if "primary_microconstituent" not in table.columns:
        raise DataError("task needs a 'primary_microconstituent' column")
    constituent = table["primary_microconstituent"].astype(str)
    if task == "constituent":
        return constituent, table["primary_microconstituent"].notna()
    phase = constituent.str.split("+").str[0]
    return phase, table["primary_microconstituent"].notna() & (phase != "martensite")


def apply_task(table, task, min_per_class=1):
    """Add a `label` column for `task`, dropping rows without one and rare classes.

    Returns (table, dropped classes) so callers can tell the user what went.
    """
    labels, keep = task_labels(table, task)
    return drop_rare_classes(table.loc[keep].assign(label=labels[keep]), min_per_class)


def drop_rare_classes(table, min_per_class):
    """(table without the classes of fewer than `min_per_class` rows, those classes)."""
    counts = table["label"].astype(str).value_counts()
    rare = sorted(counts[counts < min_per_class].index)
    kept = table[~table["label"].astype(str).isin(rare)]
    return kept.reset_index(drop=True), rare


def task_rows(table, task, min_per_class=1):
    """(row positions kept, the labelled table of those rows, dropped classes).

    For tables that already carry a `label` (embeddings, a loaded dataset): the
    old label is replaced by the task's, and the positions say which rows of
    the original table (and of arrays aligned with it) remain.
    """
    indexed = table.assign(_row=np.arange(len(table))).drop(columns=["label"], errors="ignore")
    labelled, dropped = apply_task(indexed, task, min_per_class)
    return labelled["_row"].to_numpy(), labelled.drop(columns=["_row"]), dropped


def balanced_rows(labels, per_class, seed=0):
    """(positions, dropped classes): `per_class` rows drawn from every class that has them.

    DeCost et al.'s processing-condition protocol: only conditions with at
    least `per_class` micrographs take part, each with exactly that many (drawn
    with `seed`), so every class weighs the same and a stratified k-fold with
    k = `per_class` leaves one image per class out.
    """
    labels = np.asarray(labels).astype(str)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    dropped = sorted(classes[counts < per_class])
    kept = [np.sort(rng.choice(np.flatnonzero(labels == c), per_class, replace=False))
            for c in classes[counts >= per_class]]
    positions = np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)
    return positions, dropped
