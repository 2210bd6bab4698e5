"""The Flex Template's entry point: what Google's template launcher runs in our worker image
(FLEX_TEMPLATE_PYTHON_PY_FILE in the Dockerfile), at each launch.

The launcher runs `python launch.py --NAME=VALUE ...`: each template parameter given at launch
(deploy/dataflow/metadata.json, one per flag of `musicnn-beam`) as `--NAME=VALUE`, then the launch's
pipeline options (--runner, --project, --region, --job_name, --temp_location, --template_location, ...).
Our switches (--retag, --dry-run, --verbose) take no value, so a parameter `retag=true` arrives as
`--retag=true`, which argparse refuses: here it becomes `--retag`, and `--retag=false` (or an empty
value) is left out. Everything else reaches the CLI unchanged. The CLI checks the store, reads the
version of its `current`, and writes the job where the launcher asked (--template_location); Dataflow runs it.
"""
from __future__ import annotations

import argparse
import sys

TRUE = {"true", "yes", "1"}
FALSE = {"false", "no", "0", ""}


def switches() -> set[str]:
    """The CLI's flags that take no value (store_true), from its own parser."""
    from musicnn_beam.pipeline.cli import build_parser

    return {flag for action in build_parser()._actions  # noqa: SLF001 - argparse's list of actions
            if action.nargs == 0 and not isinstance(action, argparse._HelpAction)  # noqa: SLF001
            for flag in action.option_strings}


def translate(argv: list[str], flags: set[str] | None = None) -> list[str]:
    """`--retag=true` -> `--retag`; `--retag=false` or `--retag=` -> nothing; the rest as it is (a value
    that is neither true nor false is kept, and the CLI reports it in one line)."""
    flags = switches() if flags is None else flags
    translated = []
    for arg in argv:
        name, equals, value = arg.partition("=")
        if equals and name in flags and value.strip().lower() in TRUE | FALSE:
            if value.strip().lower() in TRUE:
                translated.append(name)
            continue
        translated.append(arg)
    return translated


if __name__ == "__main__":
    sys.argv[1:] = translate(sys.argv[1:])
    from musicnn_beam.pipeline.cli import console_main

    console_main()
