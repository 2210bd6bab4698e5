"""Check a store for damage: every table's log entries since its last checkpoint, the data files its
snapshot names (there, and of the size its log says) and its columns (store/check.py).

    python -m pipeline.store check STORE      (a local folder or a URI: s3://..., gs://...)
"""
from __future__ import annotations

import sys

from musicnn_beam.pipeline.args import ArgumentParser, UsageError
from musicnn_beam.pipeline.console import exit_after_output
from musicnn_beam.store.check import check_store
from musicnn_beam.store.errors import StoreError
from musicnn_beam.store.location import join

PROG = "musicnn-beam store"
# No repair is safe without the damaged bytes: removing a file from its table's log, or the table,
# loses rows that `current` (or the history) still stands for, and --retag brings back tags, not history.
WHAT_TO_DO = ("what to do: restore what is named above from a backup (or the bucket's earlier object versions) "
              "to the same paths, then check again; no repair is safe without those bytes: deleting the table "
              "or dropping the files from its log loses rows that the other tables still stand for")


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m pipeline.store", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="check")
    check = commands.add_parser("check", help="verify every table of the store and say what is damaged")
    check.add_argument("output", metavar="STORE", help="the store: a local folder or a URI (s3://..., gs://...)")
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        checks = check_store(args.output)
    except (UsageError, StoreError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    damaged = [name for name, found in checks.items() if found.damage]
    for name in damaged:
        for damage in checks[name].damage:
            print(f"{join(args.output, name)}: {damage}")
    files = sum(found.files for found in checks.values())
    verdict = f"damaged: {', '.join(damaged)}" if damaged else "no damage"
    print(f"{args.output}: {len(checks)} tables, {files} files, {verdict}")
    if damaged:
        print(WHAT_TO_DO)
        return 2
    return 0


if __name__ == "__main__":
    exit_after_output(main())
