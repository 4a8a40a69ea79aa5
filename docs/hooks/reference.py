"""MkDocs hook: the CLI and API reference pages, written at build time from microrep's own
argparse parsers and its public names (`microrep.PUBLIC`), so neither can drift from the
code: a new flag or a new public function appears on the site without anyone editing it."""

import json
import os
import re
from pathlib import Path

from mkdocs.structure.files import File

INTRO = """# CLI reference

Every command of `microrep`, with every flag and its default, exactly as `--help` prints
it (this page is generated from the parsers when the site is built). Every command also
takes `--config FILE` (YAML or JSON, the flag names as keys; flags override the file)
and `--print-config`, which prints a complete, commented settings file.
"""


def cli_reference():
    """Markdown: the top-level help, then one section per command."""
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; the page has one width
    import microrep
    from microrep.cli import build_parser

    microrep.quiet_start()  # TensorFlow's start-up lines stay out of the build's log

    parser = build_parser()
    parts = [INTRO, "```text", parser.format_help().rstrip(), "```", ""]
    for name, command in parser.commands.items():
        parts += [f"## microrep {name}", "", command.description or "", "",
                  "```text", command.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


API_INTRO = """# API reference

Everything `import microrep` offers, grouped by the module that defines it (names load on
first use, so `import microrep` stays quick). Docstrings say why a function exists as well
as what it does. The course shows these in use.
"""


def api_reference():
    """Markdown: one mkdocstrings block per public name, grouped by module."""
    from microrep import PUBLIC

    by_module = {}
    for name, module in PUBLIC.items():
        by_module.setdefault(module, []).append(name)
    parts = [API_INTRO]
    for module, names in by_module.items():
        parts += [f"## `{module}`", ""]
        for name in names:
            parts += [f"::: {module}.{name}", "    options:", "      heading_level: 3", ""]
    return "\n".join(parts)


def on_files(files, config):
    files.append(File.generated(config, "cli.md", content=cli_reference()))
    files.append(File.generated(config, "api.md", content=api_reference()))
    return files


def on_page_markdown(markdown, page, config, files):
    """The course page's TIME_NN cells: each chapter's measured run time (docs/course/timings.json)."""
    if page.file.src_uri != "course/index.md":
        return markdown
    timings = json.loads((Path(config["docs_dir"]) / "course" / "timings.json").read_text())

    def minutes(match):
        chapter = next(name for name in timings if name.startswith(match.group(1) + "_"))
        return f"{timings[chapter]['seconds'] / 60:.1f} min"

    return re.sub(r"TIME_(\d\d)", minutes, markdown)
