"""Settings as dataclass fields, and reading them from dicts, files and values.

Why dataclasses: the CLI, the notebooks and the reports all need the same
settings with the same defaults, and a run must record exactly what it used.
Every field carries its help text and bounds, so flags and config files are
checked by one code path and never drift from the fields.
"""

import dataclasses
import json
import math
import typing
from pathlib import Path

from microrep.errors import ConfigError
from microrep.fileio import write_json

def option(default, help, choices=None, at_least=None, above=None, at_most=None, below=None,
           parse=None, aliases=(), nargs=None):
    """A dataclass field with the help text (and choices) its CLI flag shows.

    The bounds (`at_least`, `above`, `at_most`, `below`) are checked by `validate`
    whenever a config is built, so a bad setting is refused before a stage writes
    anything; `parse` reads values the field's type cannot (e.g. 'auto'); `aliases` are
    older names of the setting (flags and file keys) that keep working.
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "choices": choices, "parse": parse, "aliases": tuple(aliases), "nargs": nargs,
        "bounds": {"at_least": at_least, "above": above, "at_most": at_most, "below": below}})


def group(factory, hidden=()):
    """A nested settings group (a dataclass made by `factory`, the stage's own defaults).

    `hidden`: settings of the group the stage sets itself (a run folder per fold, say);
    they get no flag, and a config file may still set them.
    """
    return dataclasses.field(default_factory=factory, metadata={"hidden": tuple(hidden)})


def count_option(default, help, minimum=1, **kwargs):
    """An integer setting that counts something: at least `minimum` (1 unless said)."""
    return option(default, help, at_least=minimum, **kwargs)



AUTO = "auto"


def parse_batch_size(value):
    """A positive integer or 'auto' (the CLI type and the config-file check)."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    if isinstance(value, bool):
        raise ConfigError(f"batch size must be a positive integer or 'auto', got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"batch size must be a positive integer or 'auto', got {value!r}") from None
    if isinstance(value, float) and not value.is_integer():
        raise ConfigError(f"batch size must be a positive integer or 'auto', got {value!r}")
    return number


def parse_scales(text):
    """'1,0.71,0.5' -> (1.0, 0.71, 0.5): scales of an image, each above 0 and at most 4."""
    try:
        scales = tuple(float(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"scales must be numbers separated by commas, got {text!r}") from None
    if not scales or any(not 0 < s <= 4 for s in scales):
        raise ConfigError(f"scales must be above 0 and at most 4, got {text!r}")
    return scales


def scales_text(value):
    """A scales setting checked and written canonically ('1,0.71,0.5')."""
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return ",".join(f"{scale:g}" for scale in parse_scales(value))


def parse_paths(value):
    """One or more paths: a list (from the flag) or a string (a settings file), ', '-separated."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if not isinstance(value, str):
        raise ConfigError(f"expected one or more paths, got {value!r}")
    return value


def _is_dataclass_type(tp):
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value, field_type, name, parse=None):
    """`value` as the field's type, or ConfigError: lists, mappings and empty values never pass.

    Numbers written as text ("1e-4") are read; bools are not numbers; floats must be finite.
    """
    def refuse():
        kind = "true or false" if field_type is bool else f"a{'n' if field_type is int else ''} " \
            f"{ {int: 'integer', float: 'number', str: 'text'}.get(field_type, field_type.__name__)}"
        return ConfigError(f"{setting_name(name)} must be {kind}, got {value!r}")

    if parse is not None and isinstance(value, (list, tuple)):
        return parse(value)  # a flag that takes several values
    if value is None or isinstance(value, (list, tuple, dict, set)):
        raise refuse()
    if parse is not None:
        return parse(value)
    if field_type is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.strip().lower() in ("true", "yes", "1")
        raise refuse()
    if isinstance(value, bool):
        raise refuse()
    if field_type is str:
        if isinstance(value, (str, int, float)):  # YAML reads `data-dir: 2024` as a number
            return str(value)
        raise refuse()
    try:
        if field_type is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if field_type is float:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
    except (TypeError, ValueError, OverflowError):
        raise refuse() from None
    return value


def from_dict(cls, values, where="config", base=None):
    """Build `cls` from a (possibly nested) dict; unknown keys are an error.

    Settings not given keep the stage's own defaults (`base`, by default `cls()`),
    nested groups included: `microrep train` and the demo default differently.
    """
    base = cls() if base is None else base
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping of settings")
    values = nest_flat_keys(cls, values, where)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    mistakes = [f"unknown setting(s) in {where}: {', '.join(unknown)}"] if unknown else []
    kwargs = {}
    for name, value in values.items():
        if name in unknown:
            continue
        try:
            if _is_dataclass_type(hints[name]):
                kwargs[name] = from_dict(hints[name], value, f"{where}.{name}", getattr(base, name))
            else:
                parse = next(f for f in dataclasses.fields(cls) if f.name == name).metadata.get("parse")
                kwargs[name] = _coerce(value, hints[name], name, parse)
        except ConfigError as error:  # every mistake is named, not only the first
            mistakes.append(str(error))
    try:
        config = validate(dataclasses.replace(base, **kwargs))
    except ConfigError as error:
        mistakes.append(str(error))
    if mistakes:
        raise ConfigError("; ".join(dict.fromkeys(mistakes)))
    return config


def nest_flat_keys(cls, values, where="config"):
    """Settings named as their flags (`input-size`, `input_size`) moved to their nested group.

    Config files may use the flag names, flat, or the nested form that config.json
    records (`model: {input_size: ...}`); both may be mixed, but not for one setting.
    """
    paths = {}
    for path, field, _ in flag_fields(cls):
        for name in (path[-1], *field.metadata.get("aliases", ())):
            paths.setdefault(name, path)
    hints = typing.get_type_hints(cls)
    groups = {name for name, tp in hints.items() if _is_dataclass_type(tp)}
    names = {key: str(key).lstrip("-").replace("-", "_") for key in values}
    inner = _inner_groups(cls)
    moved = {key: value for key, value in values.items()  # `data: {...}` of a group now nested
             if isinstance(value, dict) and names[key] not in hints and names[key] in inner}
    if moved:
        values = {key: value for key, value in values.items() if key not in moved}
        for key, value in moved.items():
            node = values
            for part in inner[names[key]][:-1]:
                node = node.setdefault(part, {})
            node.setdefault(inner[names[key]][-1], {}).update(value)
        return nest_flat_keys(cls, values, where)

    def as_given(key):  # a top-level setting, a group given nested, or unknown (refused later)
        name = names[key]
        return name not in paths or (name in hints and (name not in groups or
                                                        isinstance(values[key], dict)))

    nested = {names[key]: (dict(value) if isinstance(value, dict) else value)
              for key, value in values.items() if as_given(key)}
    for key, value in values.items():
        name = names[key]
        if as_given(key):
            continue
        node = nested
        for group in paths[name][:-1]:
            node = node.setdefault(group, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: {group} must be a mapping of settings")
        leaf = paths[name][-1]  # an alias names its setting
        if leaf in node:
            raise ConfigError(f"{where}: {key} is given twice (flat and under {paths[name][0]})")
        node[leaf] = value
    return nested


def _inner_groups(cls, prefix=()):
    """{group name: its path} of the groups nested below the top level (e.g. train.data)."""
    found = {}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if _is_dataclass_type(hints[field.name]):
            if prefix:
                found.setdefault(field.name, prefix + (field.name,))
            found.update({k: v for k, v in _inner_groups(hints[field.name],
                                                         prefix + (field.name,)).items()
                          if k not in found})
    return found


def validate(config):
    """Check choices and bounds of every field (recursively); return the config.

    ConfigError names every setting that is out of place, not only the first.
    """
    mistakes = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        try:
            if dataclasses.is_dataclass(value):
                validate(value)
            choices = field.metadata.get("choices")
            if choices is not None and value not in choices:
                raise ConfigError(f"{setting_name(field.name)} must be one of "
                                  f"{', '.join(map(str, choices))}, got {value!r}")
            check_bounds(field, value)
        except ConfigError as error:
            mistakes.append(str(error))
    if mistakes:
        raise ConfigError("; ".join(mistakes))
    return config


def setting_name(name):
    """How a setting is named in messages: its flag, which a config file may also use."""
    return "--" + name.replace("_", "-")


#: (metadata key, test that fails on a bad value, words of the message)
_BOUNDS = (("at_least", lambda v, b: v < b, "at least"), ("above", lambda v, b: v <= b, "above"),
           ("at_most", lambda v, b: v > b, "at most"), ("below", lambda v, b: v >= b, "below"))


def check_bounds(field, value):
    """ConfigError when a numeric setting lies outside the bounds its option declares."""
    bounds = field.metadata.get("bounds") or {}
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    for key, fails, words in _BOUNDS:
        bound = bounds.get(key)
        if bound is not None and (fails(value, bound) or value != value):  # NaN fails every bound
            raise ConfigError(f"{setting_name(field.name)} must be {words} {bound}, got {value!r}")


def read_config_file(path):
    """Read a YAML or JSON settings file into a dict."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        if path.suffix.lower() == ".json":
            values = json.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text)
    except Exception as error:  # yaml and json raise many kinds
        raise ConfigError(f"config file {path} is not valid YAML/JSON{_where_in_file(error)}: "
                          f"{_first_line(error)}") from None
    return values or {}


def _where_in_file(error):
    """' (line 3, column 7)' of a YAML or JSON parse error, where the parser says."""
    mark = getattr(error, "problem_mark", None)  # yaml's MarkedYAMLError
    if mark is not None:
        return f" (line {mark.line + 1}, column {mark.column + 1})"
    if isinstance(error, json.JSONDecodeError):
        return f" (line {error.lineno}, column {error.colno})"
    return ""


def _first_line(error):
    text = getattr(error, "problem", None) or getattr(error, "msg", None) or str(error)
    return text.splitlines()[0] if text else type(error).__name__


def to_dict(config):
    return dataclasses.asdict(config)


def save_config(config, path):
    write_json(path, to_dict(config))


def flag_fields(cls, prefix=(), hidden=()):
    """(path of names, field, type) of every leaf field with a flag, nested ones flattened."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in hidden:
            continue
        if _is_dataclass_type(hints[field.name]):
            yield from flag_fields(hints[field.name], prefix + (field.name,),
                                    field.metadata.get("hidden", ()))
        else:
            yield prefix + (field.name,), field, hints[field.name]


def stage_default(instance, path):
    for name in path:
        instance = getattr(instance, name)
    return instance


def parse_parts(text, count):
    """Part numbers named by '3', '0-4', '1,5-7' (all of them for ''), checked against `count`."""
    if not str(text).strip():
        return list(range(count))
    chosen = set()
    for piece in str(text).split(","):
        first, _, last = piece.strip().partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise ConfigError(f"--parts {text!r}: expected numbers and ranges like 0-3,7") from None
        if not 0 <= low <= high < count:
            raise ConfigError(f"--parts {text!r}: the archive has parts 0..{count - 1}")
        chosen.update(range(low, high + 1))
    return sorted(chosen)


def ranges_text(numbers):
    """[0, 1, 2, 5, 7, 8] -> '0-2,5,7-8': part lists short enough for a command line."""
    pieces, numbers = [], sorted(numbers)
    start = previous = None
    for number in numbers + [None]:
        if start is not None and number == previous + 1:
            previous = number
            continue
        if start is not None:
            pieces.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = number
    return ",".join(pieces)
