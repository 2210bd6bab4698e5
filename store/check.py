"""Damage to a store's tables, found before anything reads them: a `_delta_log` entry that does not
parse or holds what is not a Delta action (delta-rs skips such a line: an `add` garbled to `adx`
would make `current` read as empty and the run re-tag everything), a log entry missing from the
sequence, a data file the table's snapshot names that is missing or not the size its add action
says, a table whose columns are not ours. Each table costs one listing of its folder, a read of each
log entry since its last checkpoint and the open of its snapshot: no request per data file."""
from __future__ import annotations

import json
import re
from typing import NamedTuple, Optional
from urllib.parse import unquote

import pyarrow as pa

from musicnn_beam.store.errors import StoreDamaged, StoreError, StoreUnreadable, unreadable
from musicnn_beam.store.location import delta_table, filesystem, join
from musicnn_beam.store.schema import ADDED_COLUMNS, TABLES

# The actions a Delta log entry's line may hold (the Delta protocol's, as of writer version 7).
DELTA_ACTIONS = {"add", "remove", "metaData", "protocol", "txn", "commitInfo", "cdc", "domainMetadata",
                 "checkpointMetadata", "sidecar"}
_ENTRY = re.compile(r"(\d{20})\.json")
# A file the snapshot names but the listing does not show may be one a commit since replaced and a
# concurrent run's vacuum removed: the table is read again, this many times, before it is damage.
_RECHECKS = 3


class TableCheck(NamedTuple):
    """What checking one table found: its damage (a line each, none when sound) and how many data
    files its snapshot names."""

    damage: list[str]
    files: int


def check_table(output: str, name: str) -> TableCheck:
    """Check one table of the store at OUTPUT (see the module). Raises StoreUnreadable where the
    storage or deltalake fails to read it at all."""
    fs, root = filesystem(output)
    folder = join(root, name)
    listing = fs.find(folder, detail=True)
    if not any(_in_log(folder, path) for path in listing):
        return TableCheck(["the table is missing (no _delta_log)"], 0)
    damage = _log_damage(fs, folder, listing)
    if damage:  # the snapshot is not to be trusted: deltalake may have skipped what it could not read
        return TableCheck(damage, 0)
    uri = join(output, name)
    for _ in range(_RECHECKS):
        try:
            table = delta_table(uri)
            have = pa.schema(table.schema().to_arrow()).names
            added = pa.table(table.get_add_actions(flatten=True)).select(["path", "size_bytes"]).to_pydict()
        except Exception as exc:  # noqa: BLE001 - whatever deltalake or the storage raises: one line
            raise unreadable(uri, exc) from exc
        named = dict(zip(added["path"], added["size_bytes"]))
        wrong = schema_damage(name, have)
        damage = ([wrong] if wrong else []) + _file_damage(folder, named, listing)
        if not damage or delta_table(uri).version() == table.version():
            break
        listing = fs.find(folder, detail=True)  # a commit came in between: check its snapshot instead
    return TableCheck(damage, len(named))


def check_store(output: str) -> dict[str, TableCheck]:
    """Check every table of the store at OUTPUT (a table that cannot be read at all: that is its
    damage). Raises StoreError when OUTPUT holds none of the store's tables."""
    fs, root = filesystem(output)
    if not any(fs.isdir(join(root, name)) for name in TABLES):
        raise StoreError(f"{output} is not a store: it holds none of its tables ({', '.join(TABLES)})")
    checks = {}
    for name in TABLES:
        try:
            checks[name] = check_table(output, name)
        except StoreUnreadable as exc:
            checks[name] = TableCheck([str(exc)], 0)
    return checks


def schema_damage(name: str, have: list[str]) -> Optional[str]:
    """What is wrong with a table's columns (`have`), or None: ours, or an older store's that lacks
    only the columns added since (ADDED_COLUMNS), which a run adds."""
    schema = TABLES[name]
    added = schema.names[len(have):]
    if have != schema.names[:len(have)] or not set(added) <= set(ADDED_COLUMNS.get(name, ())):
        return f"has columns {', '.join(have)}, not this store's {name} table's"
    return None


def refuse_damaged(output: str, name: str) -> None:
    """Raise StoreDamaged, one line naming the table and its first damage, if check_table finds any."""
    damage = check_table(output, name).damage
    if damage:
        more = f" (and {len(damage) - 1} more)" if len(damage) > 1 else ""
        raise StoreDamaged(f"the store is damaged: {join(output, name)}: {damage[0]}{more}; "
                           f"run python -m pipeline.store check {output}")


def _in_log(folder: str, path: str) -> bool:
    return path.startswith(join(folder, "_delta_log") + "/")


def _log_damage(fs, folder: str, listing: dict) -> list[str]:
    """The log entries since the last checkpoint that do not parse or hold what is not a Delta
    action, and the versions missing from their sequence."""
    log = join(folder, "_delta_log")
    entries = {int(m.group(1)): path for path in listing
               if _in_log(folder, path) and (m := _ENTRY.fullmatch(path.rsplit("/", 1)[-1]))}
    checkpoint = join(log, "_last_checkpoint")
    since = json.loads(fs.cat_file(checkpoint))["version"] + 1 if checkpoint in listing else 0
    versions = sorted(v for v in entries if v >= since)
    damage = [f"_delta_log/{v:020d}.json is missing" for v in range(since, versions[-1] if versions else since)
              if v not in entries]
    # Omitted: an entry removed since the listing (a log clean-up after a newer checkpoint).
    texts = fs.cat([entries[v] for v in versions], on_error="omit") if versions else {}
    for version in versions:
        if entries[version] in texts:
            damage += [f"_delta_log/{version:020d}.json {problem}" for problem in _entry_damage(texts[entries[version]])]
    return damage


def _entry_damage(text: bytes) -> list[str]:
    """What is wrong with one log entry's lines: each a JSON object of known Delta actions."""
    damage = []
    for number, line in enumerate(text.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            actions = json.loads(line)
        except ValueError:
            damage.append(f"line {number} does not parse as JSON")
            continue
        unknown = [key for key in actions if key not in DELTA_ACTIONS] if isinstance(actions, dict) else [line[:20]]
        if unknown or not actions:
            damage.append(f"line {number} is not a Delta action ({', '.join(map(json.dumps, unknown))})")
    return damage


def _file_damage(folder: str, named: dict[str, int], listing: dict) -> list[str]:
    """The data files the snapshot names (path -> size) that the listing lacks or shows another size."""
    damage = []
    for path, size in sorted(named.items()):
        info = listing.get(join(folder, unquote(path)))
        if info is None:
            damage.append(f"{path}, which its log names, is missing")
        elif info["size"] != size:
            damage.append(f"{path} is {info['size']} bytes, its log says {size}")
    return damage
