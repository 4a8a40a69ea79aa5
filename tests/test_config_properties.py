"""Property-based: every setting of every stage refuses every wrong value with one ConfigError.

Hypothesis draws a stage, one of its settings (nested or not) and a value that
setting must refuse (wrong type, out of its range, not among its choices, not
finite), and also values it must accept; both through `from_dict` (config
files) and through the command line's own flags.
"""

import argparse
import dataclasses
import math
import os
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microrep.config import (DemoConfig, EmbedConfig, EvalConfig, ExportConfig, FetchConfig,
                             ReproduceConfig, TrainConfig, add_config_flags, config_from_args,
                             from_dict)
from microrep.config.fields import flag_fields, scales_text
from microrep.data.synthetic import SyntheticConfig
from microrep.errors import ConfigError

STAGES = (TrainConfig, EmbedConfig, EvalConfig, ExportConfig, DemoConfig, FetchConfig,
          ReproduceConfig, SyntheticConfig)
SETTINGS = [(stage, path, field, field_type)
            for stage in STAGES for path, field, field_type in flag_fields(stage)]
NOT_SCALARS = st.one_of(st.none(), st.lists(st.integers(), max_size=3),
                        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def not_a_number(text):
    try:
        return not math.isfinite(float(text))
    except ValueError:
        return True


def not_an_integer(text):
    try:
        int(text)
        return False
    except ValueError:
        return True


def bounds_broken(field, field_type):
    """Numbers just outside and far outside the setting's declared bounds."""
    bounds = field.metadata.get("bounds") or {}
    cases = []
    step = 1 if field_type is int else 1e-9
    if bounds.get("at_least") is not None:
        cases += [bounds["at_least"] - step, bounds["at_least"] - 1000]
    if bounds.get("above") is not None:
        cases += [bounds["above"], bounds["above"] - 5]
    if bounds.get("at_most") is not None:
        cases += [bounds["at_most"] + step, bounds["at_most"] + 1000]
    if bounds.get("below") is not None:
        cases += [bounds["below"], bounds["below"] + 3]
    return [field_type(c) for c in cases]


def wrong_values(field, field_type):
    choices = tuple(field.metadata.get("choices") or ())  # a registry lists its names
    options = [NOT_SCALARS]
    if field.metadata.get("nargs"):  # one or more paths: text or a list of text
        return st.one_of(st.none(), st.integers(), st.booleans(), st.floats(),
                         st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
    if field.metadata.get("parse") is scales_text:  # scales: numbers in (0, 4], comma-separated
        return st.one_of(st.booleans(), st.sampled_from(["", "0", "1,-1", "5", "a,b", "1,,x"]))
    if field.metadata.get("parse"):  # the batch size: a positive integer or 'auto'
        options += [st.text(max_size=6).filter(lambda t: not_an_integer(t) and t.strip().lower() != "auto"),
                    st.integers(max_value=0), st.booleans()]
    elif field_type is bool:
        options += [st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=6).filter(lambda t: t.strip().lower() not in
                                               ("true", "yes", "1", "false", "no", "0"))]
    elif field_type is int:
        options += [st.booleans(), st.text(max_size=6).filter(not_an_integer),
                    st.floats(allow_nan=True).filter(lambda x: not (math.isfinite(x) and x.is_integer()))]
    elif field_type is float:
        options += [st.booleans(), st.text(max_size=6).filter(not_a_number),
                    st.sampled_from([math.nan, math.inf, -math.inf])]
    elif field_type is str:
        options += [st.booleans()]
    if choices:
        options.append(st.one_of(st.text(max_size=8), st.integers()).filter(
            lambda v: v not in choices and str(v) not in map(str, choices)))
    broken = bounds_broken(field, field_type) if field_type in (int, float) else []
    if broken:
        options.append(st.sampled_from(broken))
    return st.one_of(options)


def right_values(field, field_type):
    choices = tuple(field.metadata.get("choices") or ())  # a registry lists its names
    if choices:
        return st.sampled_from(choices)
    bounds = field.metadata.get("bounds") or {}
    if field_type is bool:
        return st.booleans()
    if field.metadata.get("parse") is scales_text:
        return st.lists(st.floats(min_value=0.05, max_value=4.0), min_size=1, max_size=4).map(
            lambda scales: scales_text(scales))
    if field_type is str:
        return st.text(alphabet="abcxyz/._-", max_size=10)
    low = bounds["at_least"] if bounds.get("at_least") is not None else bounds.get("above")
    high = bounds["at_most"] if bounds.get("at_most") is not None else bounds.get("below")
    if field_type is int:
        return st.integers(min_value=low if low is not None else -5,
                           max_value=high if high is not None else (low or 0) + 500)
    return st.floats(min_value=low if low is not None else -5.0,
                     max_value=high if high is not None else (low or 0) + 50.0,
                     exclude_min=bounds.get("above") is not None,
                     exclude_max=bounds.get("below") is not None)


def nested(path, value):
    settings_dict = value
    for name in reversed(path):
        settings_dict = {name: settings_dict}
    return settings_dict


SETTING = st.sampled_from(SETTINGS)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_every_wrong_value_of_every_setting_is_refused_by_a_config_error(data):
    stage, path, field, field_type = data.draw(SETTING)
    value = data.draw(wrong_values(field, field_type), label=f"{stage.__name__}.{'.'.join(path)}")
    with pytest.raises(ConfigError):
        from_dict(stage, nested(path, value))
    if not isinstance(value, (list, dict)) and value is not None:  # as a file's flat key, too
        with pytest.raises(ConfigError):
            from_dict(stage, {path[-1].replace("_", "-"): value})


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_every_right_value_of_every_setting_is_kept(data):
    stage, path, field, field_type = data.draw(SETTING)
    value = data.draw(right_values(field, field_type), label=f"{stage.__name__}.{'.'.join(path)}")
    config = from_dict(stage, nested(path, value))
    for name in path[:-1]:
        config = getattr(config, name)
    if path[-1] in ("images", "csv") and value:  # shortcuts: kept as the source they name
        assert (config.data, config.data_dir) == (path[-1], os.path.abspath(value))
    else:
        assert getattr(config, path[-1]) == value


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_wrong_flag_values_are_refused_in_one_line(data):
    """From the command line: argparse's usage error or a ConfigError, never anything else."""
    stage, path, field, field_type = data.draw(
        SETTING.filter(lambda s: s[3] in (int, float) or s[2].metadata.get("choices")))
    value = data.draw(wrong_values(field, field_type).filter(
        lambda v: isinstance(v, (str, int, float)) and not isinstance(v, bool)))
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_config_flags(parser, stage)
    flag = "--" + path[-1].replace("_", "-")
    try:
        args = parser.parse_args([f"{flag}={value}"])
    except (argparse.ArgumentError, SystemExit):
        return  # refused by the flag's type or choices, as one usage line
    with pytest.raises(ConfigError):
        config_from_args(stage, args)


def test_every_setting_is_covered():
    """Every leaf of every stage config is drawn from: a new setting cannot escape the test."""
    counted = {(stage, path) for stage, path, _, _ in SETTINGS}
    for stage in STAGES:
        hints = typing.get_type_hints(stage)
        for field in dataclasses.fields(stage):
            if not dataclasses.is_dataclass(hints[field.name]):
                assert (stage, (field.name,)) in counted
    assert len(SETTINGS) > 100
