"""Run profiles: YAML files of options (configs/*.yaml), turned into command-line arguments.

A profile is a mapping of option names to values, our flags and Beam's alike:

    runner: DataflowRunner
    experiments: [use_runner_v2]      # a list repeats the flag
    batch_size: 512                   # our --batch-size (dashes or underscores, either way)
    use_public_ips: false             # false leaves the flag out; true gives the bare flag

The profile's arguments come first, so flags given on the command line override them.
"""
from __future__ import annotations

import argparse
from typing import Any

import fsspec
import yaml


class ConfigError(ValueError):
    pass


def load_profile(path: str) -> dict[str, Any]:
    try:
        with fsspec.open(path, "r") as f:
            profile = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(profile, dict):
        raise ConfigError(f"config {path} must be a mapping of option names to values")
    return profile


def profile_args(profile: dict[str, Any], own_flags: set[str]) -> list[str]:
    """Profile -> argv. own_flags: our dashed flag names (e.g. "--batch-size"); the rest are Beam's,
    whose names use underscores."""
    args: list[str] = []
    for key, value in profile.items():
        dashed = "--" + str(key).replace("_", "-")
        flag = dashed if dashed in own_flags else "--" + str(key).replace("-", "_")
        for item in value if isinstance(value, list) else [value]:
            if item is True:
                args.append(flag)
            elif item is not False and item is not None:
                args.append(f"{flag}={item}")
    return args


def expand_config(argv: list[str], own_flags: set[str]) -> list[str]:
    """Replace `--config FILE` in argv with the profile's arguments, placed before the rest."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, rest = pre.parse_known_args(argv)
    if not known.config:
        return list(argv)
    return profile_args(load_profile(known.config), own_flags) + rest
