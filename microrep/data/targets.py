"""Targets: what a micrograph's metadata says of how it was made, as numbers or categories.

Why: a lab asks *at what temperature and for how long was this annealed?* as often as
*which class is it?* UHCSDB records anneal temperature, anneal time and cooling method per
sample; a lab's CSV may carry any column. A target is read from the table the embeddings
carry (an archive's manifest keeps every metadata column):

- `anneal_temperature`: degrees Celsius (Kelvin converted);
- `log_anneal_time`: log10 of the anneal time in hours (UHCSDB gives minutes or hours);
- `cool_method`: categorical;
- any other column: numeric where every value given parses as a number, else categorical.
"""

import dataclasses

import numpy as np
import pandas as pd

from microrep.errors import DataError

NUMERIC, CATEGORICAL = "numeric", "categorical"
#: anneal_time_unit -> hours per unit (UHCSDB writes M and H; none given means hours)
HOURS_PER = {"H": 1.0, "M": 1 / 60, "S": 1 / 3600, "D": 24.0, "": 1.0}


def celsius(temperature, unit):
    """A temperature in °C from its value and unit (K converted; C or none kept)."""
    return temperature - 273.15 if str(unit).upper() == "K" else temperature


def log10_hours(time, unit):
    """log10 of an anneal time in hours from its value and unit (NaN for an unknown unit)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(time * HOURS_PER.get(str(unit).upper(), np.nan))


@dataclasses.dataclass
class Target:
    """One target's values for the rows of a table: `values` (float or str), `known` (a mask of
    rows that have one), `kind` (numeric or categorical) and its unit in words."""

    name: str
    values: np.ndarray
    known: np.ndarray
    kind: str
    unit: str = ""


def _require(table, columns, name):
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"target {name!r} needs metadata column(s) {', '.join(missing)}, which "
                        f"these embeddings lack (they have: {', '.join(map(str, table.columns))})")


def anneal_temperature(table):
    _require(table, ["anneal_temperature"], "anneal_temperature")
    values = pd.to_numeric(table["anneal_temperature"], errors="coerce").to_numpy(float)
    if "anneal_temp_unit" in table:
        values = np.array([celsius(v, u) for v, u in zip(values, table["anneal_temp_unit"])], float)
    return Target("anneal_temperature", values, np.isfinite(values), NUMERIC, "°C")


def log_anneal_time(table):
    _require(table, ["anneal_time", "anneal_time_unit"], "log_anneal_time")
    time = pd.to_numeric(table["anneal_time"], errors="coerce").to_numpy(float)
    values = np.array([log10_hours(t, u) for t, u in zip(time, table["anneal_time_unit"])], float)
    return Target("log_anneal_time", values, np.isfinite(values), NUMERIC, "log10 h")


def column_target(table, name):
    """A plain column: numeric where every value given parses as a number, else categorical."""
    _require(table, [name], name)
    column = table[name]
    given = column.notna() & column.astype(str).str.strip().ne("")
    numbers = pd.to_numeric(column.where(given), errors="coerce")
    if given.any() and numbers[given].notna().all():
        values = numbers.to_numpy(float)
        return Target(name, values, np.isfinite(values), NUMERIC)
    return Target(name, column.astype(str).to_numpy(object), given.to_numpy(), CATEGORICAL)


NAMED = {"anneal_temperature": anneal_temperature, "log_anneal_time": log_anneal_time}


def read_target(table, name):
    """The Target `name` of a metadata table (a named one, or any column)."""
    name = name.strip()
    target = NAMED[name](table) if name in NAMED else column_target(table, name)
    if target.known.sum() < 2:
        raise DataError(f"target {name!r} is known for {int(target.known.sum())} image(s) "
                        "of these embeddings; it needs at least two")
    return target


def parse_targets(text):
    """'a,b' -> ['a', 'b'] (the --target setting)."""
    names = [name.strip() for name in str(text).split(",") if name.strip()]
    if not names:
        raise DataError("--target names no target (e.g. anneal_temperature,log_anneal_time)")
    return names
