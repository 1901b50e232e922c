"""The LMDB environment of the zone store: the only module of the zone store
that imports lmdb.

It opens the environment and its named sub-DBs (`ZoneDbs`), sets the map
size and the reader slots, translates lmdb's errors into StoreError
(`translate`), and holds the cursor primitives the other modules run on the
transactions and cursors it hands out (`delete_prefix`, `merge_nodes`,
`scan_prefix`, `put_or_append`). The other modules of the store take
transaction and cursor objects from here and never import lmdb.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import functools
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb

from ..protocol.errors import StoreError

#: Sub-DB of zone metadata.
ZONES_DB = b"zones"
#: Sub-DB of zone nodes.
NODES_DB = b"nodes"
#: Sub-DB of the change journal incremental transfers read.
JOURNAL_DB = b"journal"
#: Journal entries kept per zone: bounds a chain lookup (one get per entry);
#: 100 reloads cover days of hourly changes, older secondaries get an AXFR.
MAX_JOURNAL_ENTRIES = 100
#: Encoded journal bytes kept per zone: bounds the disk a busy zone's history
#: takes. (Entries are also evicted once the journal holds more records than
#: the zone: an IXFR that long is answered with AXFR anyway.)
MAX_JOURNAL_BYTES = 64 << 20
#: Sub-DB where a compile sorts a zone's nodes before appending them (see
#: `Store.load_zone_file`); empty between compiles.
SCRATCH_DB = b"scratch"
#: Sub-DB of the update log (registrations' changes, see `keyresolve.store.journal`).
UPDATE_LOG_DB = b"updatelog"
#: Named sub-DBs the environment may hold: the five above plus room for one more.
MAX_DBS = 6
#: Concurrent read transactions over all processes sharing the environment
#: (LMDB's default 126 is tight with several `--workers` each holding snapshots).
MAX_READERS = 1024
#: Default map size: 16 GiB of address space (the file grows only as written;
#: 1,000,000-key zones take well under 1 GiB).
DEFAULT_MAP_SIZE = 1 << 34
#: Nodes a bulk write (a full transfer, a compile) puts per write
#: transaction. LMDB keeps a write transaction's dirty pages in memory until
#: it ends, so this bounds the writer's memory (~100 bytes a node) whatever
#: the zone's size.
TRANSFER_TXN_NODES = 20_000
#: Keys read at a time by `delete_prefix` before deleting them.
DELETE_BATCH = 4096

#: The types of what this module hands out, for the other modules' annotations.
Txn = lmdb.Transaction
Cursor = lmdb.Cursor
Environment = lmdb.Environment
#: What lmdb raises (`translate` turns it into StoreError).
LmdbError = lmdb.Error


def translate(func):
    """Turn lmdb.Error raised by `func` into StoreError (the module's edge)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except lmdb.Error as exc:
            raise StoreError(f"LMDB: {exc}") from exc

    return wrapper



def suppress_lmdb_errors() -> contextlib.AbstractContextManager:
    """A context that drops lmdb's errors (for aborting what may be gone)."""
    return contextlib.suppress(lmdb.Error)


@dataclass(slots=True)
class ZoneDbs:
    """An open zone-store environment and its named sub-DBs (`open_zone_env`).

    `journal` is None in a read-only store written before journals existed,
    `updates` likewise before the update log; `scratch` is None read-only."""

    env: lmdb.Environment
    zones: Any
    nodes: Any
    journal: Any
    scratch: Any
    updates: Any

    def begin_write(self) -> lmdb.Transaction:
        """A write transaction (one at a time per environment; bound to this thread)."""
        return self.env.begin(write=True)

    def begin_read(self) -> lmdb.Transaction:
        """A read transaction."""
        return self.env.begin()


def open_zone_env(path: Path, *, map_size: int, readonly: bool) -> ZoneDbs:
    """Open (and, unless `readonly`, create) the zone store at directory
    `path`; StoreError if a read-only one was never written."""
    env = lmdb.open(str(path), subdir=True, max_dbs=MAX_DBS, map_size=map_size,
                    max_readers=MAX_READERS, readonly=readonly, create=not readonly)
    try:
        try:
            zones = env.open_db(ZONES_DB, create=not readonly)
            nodes = env.open_db(NODES_DB, create=not readonly)
        except lmdb.NotFoundError:
            raise StoreError(f"{path} holds no zone store (never written)") from None
        journal = _optional_db(env, JOURNAL_DB, readonly)
        updates = _optional_db(env, UPDATE_LOG_DB, readonly)
        scratch = None if readonly else env.open_db(SCRATCH_DB)
        if not readonly:
            # Free the reader slots of processes that died in a read
            # transaction (a killed compile child, a crashed worker): they
            # pin the pages they saw, and the file would grow meanwhile.
            env.reader_check()
    except BaseException:
        env.close()
        raise
    return ZoneDbs(env, zones, nodes, journal, scratch, updates)


def _optional_db(env: lmdb.Environment, name: bytes, readonly: bool) -> Any:
    try:
        return env.open_db(name, create=not readonly)
    except lmdb.NotFoundError:  # read-only, written before this sub-DB existed
        return None


def delete_prefix(cursor: lmdb.Cursor, prefix: bytes, limit: int | None = None) -> int:
    """Delete every key starting with `prefix` (the first `limit` of them, if
    given); returns how many. Reads the keys `DELETE_BATCH` at a time, then
    deletes those under `prefix` in a loop that runs in C (`delete()` moves
    to the next key)."""
    count = 0
    delete = cursor.delete
    while cursor.set_range(prefix):
        size = DELETE_BATCH if limit is None else min(DELETE_BATCH, limit - count)
        keys = list(itertools.islice(cursor.iternext(values=False), size))
        under = count_under(keys, prefix)
        cursor.set_range(prefix)
        collections.deque(itertools.starmap(delete, itertools.repeat((), under)), maxlen=0)
        count += under
        if under < DELETE_BATCH or count == limit:
            break
    return count


def count_under(keys: list[bytes], prefix: bytes) -> int:
    """How many of `keys` (ascending, none below `prefix`) start with it."""
    return bisect.bisect_left(keys, True, key=lambda key: not key.startswith(prefix))


def merge_nodes(cursor: lmdb.Cursor, prefix: bytes, items: Iterable[tuple[bytes, bytes]],
                 changed: Callable[[bytes, bytes | None, bytes | None], None]) -> None:
    """Make the keys under `prefix` exactly `items` (ascending), writing only
    what differs; `changed(key, old, new)` sees each difference (None: absent)."""
    def valid() -> bool:
        return cursor.key().startswith(prefix)  # b"" once past the last key

    have = cursor.set_range(prefix) and valid()
    last = b""
    for key, value in items:
        if key <= last:
            raise StoreError("zone nodes are not in key order")
        last = key
        while have and cursor.key() < key:  # old node gone
            changed(cursor.key(), cursor.value(), None)
            cursor.delete()  # moves to the next key
            have = valid()
        if have and cursor.key() == key:
            old = cursor.value()
            if old != value:
                changed(key, old, value)
                cursor.put(key, value)
        else:
            changed(key, None, value)
            cursor.put(key, value)  # positions the cursor on the new key
        have = cursor.next() and valid()
    while have:
        changed(cursor.key(), cursor.value(), None)
        cursor.delete()
        have = valid()


def put_or_append(put: Callable[..., bool], key: bytes, value: bytes, append: bool, **kwargs: Any
         ) -> bool:
    """Put with `put` (a transaction's or cursor's, given `kwargs`), as an
    append while `append`: an append fills pages where an insert splits them
    in half, but works only for a key greater than every key of the DB.
    Returns whether the next key, if greater, may still be appended."""
    if append and put(key, value, append=True, **kwargs):
        return True
    put(key, value, **kwargs)
    return False



def scan_prefix(cursor: lmdb.Cursor, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    if not cursor.set_range(prefix):
        return
    for key, value in cursor:
        if not key.startswith(prefix):
            return
        yield key, value




def clear_range(dbs: ZoneDbs, prefix: bytes, per_txn: int = TRANSFER_TXN_NODES) -> None:
    """Delete every node under `prefix`, `per_txn` per write transaction."""
    while True:
        with dbs.begin_write() as txn:
            if delete_prefix(txn.cursor(db=dbs.nodes), prefix, per_txn) < per_txn:
                return
