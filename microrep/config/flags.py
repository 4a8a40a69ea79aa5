"""Command-line flags generated from the settings dataclasses, and settings from flags.

Every leaf setting gets one flag (nested groups flattened), whose help shows the
stage's own default; `--config FILE` and `--print-config` come with every command.
"""

import argparse
import json
import sys
import textwrap
from pathlib import Path

from microrep.config.fields import (flag_fields, stage_default, from_dict, nest_flat_keys,
                                    read_config_file)
from microrep.config.presets import EMBED_DEFAULTS, apply_preset, reproduce_preset
from microrep.config.stages import EmbedConfig, ReproduceConfig, TrainConfig
from microrep.errors import ConfigError


def config_example(cls):
    """A complete YAML settings file for `cls`: every setting, its help and the stage's default.

    Flat keys named as the flags, so a user can copy a line from `--help` into a
    file; `microrep <command> --config FILE` reads it back unchanged.
    """
    lines = [f"# microrep settings: {cls.__doc__.strip().splitlines()[0]}",
             "# Keys are the flag names (dashes or underscores); delete the lines you do not need.",
             "# Flags given on the command line override this file."]
    defaults, group = cls(), None
    for path, field, _ in flag_fields(cls):
        if path[:-1] != group:
            group = path[:-1]
            lines += ["", f"# --- {group[0]} settings"] if group else []
        help_text = field.metadata.get("help", "")
        choices = field.metadata.get("choices")
        if choices is not None:
            help_text += f" (one of: {', '.join(map(str, choices))})"
        lines += [f"# {line}" for line in textwrap.wrap(help_text, 88)]
        lines.append(f"{path[-1].replace('_', '-')}: {json.dumps(stage_default(defaults, path))}")
    return "\n".join(lines) + "\n"


class PrintConfig(argparse.Action):
    """--print-config: print the stage's complete, commented example settings file and exit."""

    def __init__(self, option_strings, dest, config_class=None, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)
        self.config_class = config_class

    def __call__(self, parser, namespace, values, option_string=None):
        sys.stdout.write(config_example(self.config_class))
        parser.exit()


def add_config_flags(parser, cls):
    """Add one flag per leaf field of `cls` (defaults None: only given flags override).

    The help shows the stage's own default (from `cls()`, nested groups included).
    """
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON file of settings, keys "
                        "named as the flags (see --print-config); flags given on the command "
                        "line override it")
    parser.add_argument("--print-config", action=PrintConfig, config_class=cls,
                        help="print a complete, commented settings file with this command's "
                             "defaults, for --config, and exit")
    defaults = cls()
    for path, field, field_type in flag_fields(cls):
        flags = ["--" + name.replace("_", "-") for name in (path[-1], *field.metadata.get("aliases", ()))]
        default = stage_default(defaults, path)
        help_text = field.metadata.get("help", "")
        if default != "" and "(default:" not in help_text:  # empty defaults say so in their help
            help_text += f" (default: {default})"
        if field_type is bool:
            parser.add_argument(*flags, dest="_".join(path), default=None, help=help_text,
                                action=argparse.BooleanOptionalAction)
        else:
            nargs = {"nargs": field.metadata["nargs"]} if field.metadata.get("nargs") else {}
            parser.add_argument(*flags, dest="_".join(path), default=None, **nargs,
                                type=(None if nargs else _flag_type(field.metadata.get("parse")))
                                or field_type,
                                choices=field.metadata.get("choices"), help=help_text,
                                metavar=_metavar(field, path))


def _metavar(field, path):
    """{a,b} for fixed choices; NAME for a registry's, whose names are known once it loads
    (argparse would otherwise load Keras to print any help)."""
    choices = field.metadata.get("choices")
    return None if isinstance(choices, (tuple, list)) else path[-1].upper()


def _flag_type(parse):
    """A field's `parse` as an argparse type: its ConfigError becomes argparse's one-line error."""
    if parse is None:
        return None

    def flag_type(text):
        try:
            return parse(text)
        except ConfigError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    flag_type.__name__ = parse.__name__.strip("_")
    return flag_type


def config_from_args(cls, args):
    """Build `cls` from --config FILE, then the flags given on the command line."""
    where = getattr(args, "config", None) or "settings"
    values = nest_flat_keys(cls, read_config_file(args.config), where) if getattr(args, "config", None) else {}
    for path, _, _ in flag_fields(cls):
        given = getattr(args, "_".join(path), None)
        if given is None:
            continue
        node = values
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = given
    if cls is TrainConfig:
        stored = stored_run(values)
        if stored is not None:  # --resume: the run's own settings, then those given now
            return from_dict(cls, values, where, base=stored)
        values = apply_preset(values)
    if cls is ReproduceConfig:
        from microrep.device import accelerator

        values, base = reproduce_preset(values, accelerator())
        return from_dict(cls, values, where, base=base)
    if cls in (TrainConfig, EmbedConfig):
        require_data_source(values)
    if cls is EmbedConfig:
        values = EMBED_DEFAULTS.fill(values)
    return from_dict(cls, values, where)


def require_data_source(values):
    """ConfigError unless the micrographs are named: a user who forgets --images must not
    get a model or an archive of generated images (only demo and generate default to them)."""
    data = values.get("data") or {}
    if not any(data.get(key) for key in ("data", "data_dir", "images", "csv")):
        raise ConfigError("which micrographs? give --images FOLDER, --csv FILE (columns "
                          "path,label[,group]) or --data uhcsdb --data-dir DIR (--data synthetic "
                          "for generated ones)")


def stored_run(values):
    """With --resume, the TrainConfig recorded in the --out folder (None if there is none)."""
    if not values.get("resume"):
        return None
    path = Path(values.get("out") or TrainConfig().out) / "config.json"
    if not path.is_file():
        return None
    try:
        return from_dict(TrainConfig, json.loads(path.read_text()), str(path))
    except (ValueError, ConfigError) as error:
        raise ConfigError(f"cannot resume from {path}: {error}") from None
