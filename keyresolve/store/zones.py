"""The LMDB zone store: the only module that imports lmdb.

One LMDB environment holds every zone a server serves, in named sub-DBs:

- ``zones``: zone prefix of the origin -> msgpack map
  ``{serial, records, loaded_at, sources: [[path, sha256], ...]}``, plus
  ``primary`` and ``transferred_at`` for a zone written by a transfer;
- ``nodes``: node prefix + owner key relative to the origin -> msgpack array
  ``[[rtype, ttl, [rdata wire, ...]], ...]``, types ascending. The node
  prefix is the origin key + an area byte (1 or 2, ``area`` in the zone's
  metadata, 1 when absent): a full transfer writes the area not served, in
  bounded transactions, and its last transaction switches the zone to it
  (see `ZoneWriter`);
- ``journal``: the changes incremental transfers (IXFR) send, per zone: the
  zone prefix -> msgpack ``[first_serial, last_serial, entries, bytes,
  records]``, and zone prefix + serial_from (4 bytes, big-endian) -> msgpack
  ``[serial_to, old_soa, new_soa, [removed...], [added...]]`` (record wire
  forms, SOAs not repeated in the lists). The entries form one chain
  first_serial -> ... -> last_serial, the zone's current serial (see
  `Store.replace_zone` for when it is extended or cleared).

The zone prefix is ``origin.store_key() + b"\\x01"``. The bytes 0x01 and 0x02 never
occur in a name key (labels are ``[a-z0-9_-]``, local parts printable ASCII), so one
zone's nodes are exactly the keys that start with its prefix, even when a
child zone (``eng.example.com``) lives in the same environment as its parent
(``example.com``): their prefixes diverge at the area byte. The ``zones`` DB
uses the same prefix rather than the bare ``origin.store_key()`` because LMDB
rejects empty keys, and the root's key is empty.

Writers replace a zone in one write transaction (a full transfer writes in
bounded ones and switches the zone's area in its last); readers take a `Snapshot`
bound to one read transaction and, by LMDB's MVCC, see one complete version
of every zone for as long as they hold it.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import dataclasses
import heapq
import itertools
import operator
import os
import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb
import msgpack

from ..files.local import LOCAL_FILES, gc_paused
from ..zonedata.bulkcompile import Repeated, compile_bulk
from ..protocol.codes import RType
from ..protocol.errors import FormError, KeyresolveError, StoreError
from ..protocol.names import Name, store_key_ancestors
from ..zonedata.nodes import KEY_NODE_HEAD, decode_node, encode_node
from ..protocol.message import array_header
from ..protocol.records import SOA, Record, rdata_from_wire, soa_serial
from ..protocol.serial import SerialNotIncreased, next_serial, serial_gt
from ..authority.xfr import STEP_SOA_RECORDS, diff_records, node_add, node_delete
from ..zonedata.model import Node, RRset, Zone
from ..zonedata.zonefile import CompiledZone, compile_nodes

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
#: Named sub-DBs the environment may hold: the four above plus room for two more.
MAX_DBS = 6
#: Concurrent read transactions over all processes sharing the environment
#: (LMDB's default 126 is tight with several `--workers` each holding snapshots).
MAX_READERS = 1024
#: Default map size: 16 GiB of address space (the file grows only as written;
#: 1,000,000-key zones take well under 1 GiB).
DEFAULT_MAP_SIZE = 1 << 34
#: Ends a zone's key in `zones` and `journal` (and is area 1's byte in `nodes`).
ZONE_SEP = b"\x01"
#: The two node areas of a zone (see the module docstring).
NODE_AREAS = (1, 2)
#: Nodes a full transfer writes per write transaction. LMDB keeps a write
#: transaction's dirty pages in memory until it ends, so this bounds the
#: secondary's memory (~100 bytes a node) whatever the zone's size.
TRANSFER_TXN_NODES = 20_000
#: Nodes read at a time when diffing two versions of a zone for its journal:
#: runs of equal nodes are compared a batch at a time; small enough that a
#: batch with one difference costs little more than the difference.
DIFF_BATCH = 256
#: Keys read at a time by `_delete_prefix` before deleting them.
DELETE_BATCH = 4096
#: A cursor item's key and value.
_KEY_OF = operator.itemgetter(0)
_VALUE_OF = operator.itemgetter(1)
#: Records a full transfer collects for the journal entry of its change; past
#: it the journal is cleared (bounds memory; such a change is as big as most
#: zones, and secondaries behind us would be sent a full transfer anyway).
MAX_TRANSFER_DIFF_RECORDS = 100_000
#: Bits of the filter that spares a compile an LMDB lookup for each new owner
#: it has not written yet (2 MiB; about 1 % false positives, each costing one
#: lookup, at a million owners).
SEEN_FILTER_BITS = 1 << 24
#: Nodes a compile sorts before putting them (see `_NodeWriter`): 16,384
#: (~2.5 MB) gave the whole gain (a 1M-key compile 10.0 -> 8.1 s CPU).
COMPILE_BATCH_NODES = 16384
#: Entries of the read cache a store keeps for one version of its data (mailbox
#: routes, closest zones, SOAs): bounds what queries for made-up names fill.
MAX_CACHED = 4096
_UNKNOWN = object()  # not in the read cache (None is a cached answer)


def _translate(func):
    """Turn lmdb.Error raised by `func` into StoreError (the module's edge)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except lmdb.Error as exc:
            raise StoreError(f"LMDB: {exc}") from exc

    return wrapper


def zone_prefix(origin: Name) -> bytes:
    """The key prefix of every node of the zone at `origin` (and its `zones` key)."""
    return origin.store_key() + ZONE_SEP


def node_prefix(origin: Name, area: int = NODE_AREAS[0]) -> bytes:
    """The key prefix of the zone's nodes stored in `area`."""
    return origin.store_key() + bytes((area,))


def node_key(origin: Name, name: Name, area: int = NODE_AREAS[0]) -> bytes:
    """The `nodes` key of owner `name` in the zone at `origin`, in `area`."""
    origin_key = origin.store_key()
    return origin_key + bytes((area,)) + name.store_key()[len(origin_key):]


@dataclass(frozen=True, slots=True)
class ZoneInfo:
    """Metadata of one stored zone."""

    origin: Name
    serial: int
    records: int
    loaded_at: float
    sources: tuple[tuple[str, bytes], ...]
    #: The primary a secondary copy was transferred from (None: compiled here).
    primary: str | None = None
    #: When that transfer was committed (seconds since the epoch).
    transferred_at: float | None = None
    #: When a secondary last found its primary's serial no newer than ours.
    checked_at: float | None = None
    #: Which node area holds the zone's nodes (see the module docstring).
    area: int = NODE_AREAS[0]

    @property
    def node_prefix(self) -> bytes:
        """The key prefix of the zone's nodes."""
        return node_prefix(self.origin, self.area)

    @property
    def last_success(self) -> float | None:
        """The last successful refresh of a secondary copy (transfer or check)."""
        times = [t for t in (self.transferred_at, self.checked_at) if t is not None]
        return max(times) if times else None


def _decode_info(origin: Name, value: bytes) -> ZoneInfo:
    try:
        meta = msgpack.unpackb(value, raw=False)
        sources = tuple((str(path), bytes(digest)) for path, digest in meta["sources"])
        primary = meta.get("primary")
        transferred_at = meta.get("transferred_at")
        checked_at = meta.get("checked_at")
        return ZoneInfo(origin, int(meta["serial"]), int(meta["records"]),
                        float(meta["loaded_at"]), sources,
                        None if primary is None else str(primary),
                        None if transferred_at is None else float(transferred_at),
                        None if checked_at is None else float(checked_at),
                        _meta_area(meta))
    except (KeyError, ValueError, TypeError, msgpack.UnpackException) as exc:
        raise StoreError(f"corrupt metadata of zone {origin}: {exc}") from exc


def _meta_area(meta: dict) -> int:
    area = meta.get("area", NODE_AREAS[0])
    if area not in NODE_AREAS:
        raise ValueError(f"node area {area!r}")
    return area


def _area_of(value: bytes) -> int:
    """The node area recorded in a zone's stored metadata."""
    try:
        return _meta_area(msgpack.unpackb(value, raw=False))
    except (ValueError, TypeError, AttributeError, msgpack.UnpackException) as exc:
        raise StoreError(f"corrupt zone metadata: {exc}") from exc


def _origin_from_prefix(key: bytes) -> Name:
    try:
        return Name.from_store_key(key[:-len(ZONE_SEP)])
    except (UnicodeDecodeError, ValueError) as exc:
        raise StoreError(f"corrupt zone key {key!r}") from exc


def _delete_prefix(cursor: lmdb.Cursor, prefix: bytes, limit: int | None = None) -> int:
    """Delete every key starting with `prefix` (the first `limit` of them, if
    given); returns how many. Reads the keys `DELETE_BATCH` at a time, then
    deletes those under `prefix` in a loop that runs in C (`delete()` moves
    to the next key)."""
    count = 0
    delete = cursor.delete
    while cursor.set_range(prefix):
        size = DELETE_BATCH if limit is None else min(DELETE_BATCH, limit - count)
        keys = list(itertools.islice(cursor.iternext(values=False), size))
        under = _count_under(keys, prefix)
        cursor.set_range(prefix)
        collections.deque(itertools.starmap(delete, itertools.repeat((), under)), maxlen=0)
        count += under
        if under < DELETE_BATCH or count == limit:
            break
    return count


def _count_under(keys: list[bytes], prefix: bytes) -> int:
    """How many of `keys` (ascending, none below `prefix`) start with it."""
    return bisect.bisect_left(keys, True, key=lambda key: not key.startswith(prefix))


def _merge_nodes(cursor: lmdb.Cursor, prefix: bytes, items: Iterable[tuple[bytes, bytes]],
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


# -- journal ----------------------------------------------------------------------
_SERIAL = 4  # bytes of a serial in a journal key


def journal_key(origin: Name, serial_from: int) -> bytes:
    """The `journal` key of the entry leading away from `serial_from`."""
    return zone_prefix(origin) + serial_from.to_bytes(_SERIAL, "big")


@dataclass(frozen=True, slots=True)
class JournalInfo:
    """The journal of one zone: a chain of `entries` changes from serial
    `first` to `last` (the zone's current serial)."""

    first: int
    last: int
    entries: int
    bytes: int
    #: Records an IXFR of the whole chain sends (both SOAs of each step included).
    records: int


def _decode_journal_info(value: bytes) -> JournalInfo:
    try:
        first, last, entries, size, records = msgpack.unpackb(value)
        return JournalInfo(int(first), int(last), int(entries), int(size), int(records))
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise StoreError(f"corrupt journal metadata: {exc}") from exc


def _entry_unpacker(value: bytes) -> msgpack.Unpacker:
    """A streaming reader positioned inside a journal entry's outer array."""
    unpacker = msgpack.Unpacker(raw=False, use_list=False, max_buffer_size=max(len(value), 1))
    unpacker.feed(value)
    if unpacker.read_array_header() != 5:
        raise StoreError("corrupt journal entry: not an array of 5")
    return unpacker


class JournalEntry:
    """One stored change (implements `keyresolve.authority.xfr.JournalStep`).

    The header is decoded at once; the record lists only when iterated,
    from `fetch` (which re-reads the entry from its snapshot), so a chain of
    steps costs memory for one entry at a time.
    """

    def __init__(self, serial_from: int, value: bytes, fetch: Callable[[], bytes]) -> None:
        """Decode the header of the stored `value` (use `Snapshot.journal_steps`)."""
        self.serial_from = serial_from
        self._fetch = fetch
        try:
            unpacker = _entry_unpacker(value)
            serial_to = unpacker.unpack()
            self.old_soa = Record.from_wire(unpacker.unpack())
            self.new_soa = Record.from_wire(unpacker.unpack())
            self.removed_count = unpacker.read_array_header()
            for _ in range(self.removed_count):
                unpacker.skip()
            self.added_count = unpacker.read_array_header()
        except StoreError:
            raise
        except (KeyresolveError, ValueError, TypeError, msgpack.UnpackException) as exc:
            raise StoreError(f"corrupt journal entry: {exc}") from exc
        if (type(serial_to) is not int or self.old_soa.rtype != RType.SOA
                or self.new_soa.rtype != RType.SOA or soa_serial(self.old_soa) != serial_from
                or soa_serial(self.new_soa) != serial_to):
            raise StoreError("corrupt journal entry: serials do not match its SOAs")
        self.serial_to: int = serial_to

    def _records(self, added: bool) -> Iterator[Record]:
        try:
            unpacker = _entry_unpacker(self._fetch())
            for _ in range(3):
                unpacker.skip()
            count = unpacker.read_array_header()
            if added:
                for _ in range(count):
                    unpacker.skip()
                count = unpacker.read_array_header()
            for _ in range(count):
                yield Record.from_wire(unpacker.unpack())
        except StoreError:
            raise
        except (KeyresolveError, ValueError, TypeError, msgpack.UnpackException) as exc:
            raise StoreError(f"corrupt journal entry: {exc}") from exc

    def iter_removed(self) -> Iterator[Record]:
        """The records removed, in store order (the SOA is `old_soa`)."""
        return self._records(False)

    def iter_added(self) -> Iterator[Record]:
        """The records added, in store order (the SOA is `new_soa`)."""
        return self._records(True)

    def __repr__(self) -> str:
        return (f"JournalEntry({self.serial_from}->{self.serial_to}, "
                f"-{self.removed_count} +{self.added_count})")


def _journal_walk(get: Callable[[bytes], bytes | None], origin: Name, zone_serial: int,
                  from_serial: int, keep: bool) -> list[JournalEntry] | None:
    """The entries from `from_serial` to the zone's current serial, or None."""
    if from_serial == zone_serial:
        return []
    prefix = zone_prefix(origin)
    meta = get(prefix)
    if meta is None:
        return None
    info = _decode_journal_info(meta)
    if info.last != zone_serial:
        return None  # stale (never written that way; defensive)
    steps: list[JournalEntry] = []
    serial = from_serial
    while serial != info.last:
        if len(steps) >= info.entries:
            raise StoreError(f"journal of {origin} loops")
        key = prefix + serial.to_bytes(_SERIAL, "big")
        value = get(key)
        if value is None:
            return None
        fetch = (lambda v=value: v) if keep else functools.partial(_must_get, get, key)
        entry = JournalEntry(serial, value, fetch)
        steps.append(entry)
        serial = entry.serial_to
    return steps


def _must_get(get: Callable[[bytes], bytes | None], key: bytes) -> bytes:
    value = get(key)
    if value is None:
        raise StoreError("journal entry vanished")
    return value


def _journal_clear(txn: lmdb.Transaction, db: Any, origin: Name) -> None:
    _delete_prefix(txn.cursor(db=db), zone_prefix(origin))


#: Suffix of the journal key holding a zone's *barrier*: the serial whose
#: contents changed without the serial increasing. A step from it would
#: only hold the difference from its last version, and a secondary holding
#: an earlier version of that serial would miss the rest: none is journaled.
_BARRIER = b"B"


def _journal_barrier(txn: lmdb.Transaction, db: Any, origin: Name, serial: int) -> None:
    """Clear the zone's journal; no step may start at `serial` (see `_BARRIER`)."""
    _journal_clear(txn, db, origin)
    txn.put(zone_prefix(origin) + _BARRIER, serial.to_bytes(_SERIAL, "big"), db=db)


def _journal_append(txn: lmdb.Transaction, db: Any, origin: Name, old_soa: Record,
                    new_soa: Record, removed: list[Record], added: list[Record],
                    zone_records: int) -> bool:
    """Append one change to the zone's journal and evict the oldest entries
    beyond the bounds; False (journal cleared) if the change cannot be kept."""
    prefix = zone_prefix(origin)
    serial_from, serial_to = soa_serial(old_soa), soa_serial(new_soa)
    barrier = txn.pop(prefix + _BARRIER, db=db)
    if barrier is not None and int.from_bytes(barrier, "big") == serial_from:
        _journal_clear(txn, db, origin)
        return False
    meta = txn.get(prefix, db=db)
    info = None if meta is None else _decode_journal_info(meta)
    key = prefix + serial_from.to_bytes(_SERIAL, "big")
    # A chain that does not end where this change starts, or serials that
    # came round the circle (RFC 1982) to one already journaled: start over.
    if info is not None and (info.last != serial_from or txn.get(key, db=db) is not None):
        _journal_clear(txn, db, origin)
        info = None
    records = STEP_SOA_RECORDS + len(removed) + len(added)
    value = msgpack.packb([serial_to, old_soa.to_wire(), new_soa.to_wire(),
                           [r.to_wire() for r in removed], [r.to_wire() for r in added]])
    if records > zone_records or len(value) > MAX_JOURNAL_BYTES:
        _journal_clear(txn, db, origin)
        return False
    txn.put(key, value, db=db)
    if info is None:
        first, entries, size, total = serial_from, 1, len(value), records
    else:
        first, entries = info.first, info.entries + 1
        size, total = info.bytes + len(value), info.records + records
    while (entries > MAX_JOURNAL_ENTRIES or size > MAX_JOURNAL_BYTES
           or total > zone_records):
        old_key = prefix + first.to_bytes(_SERIAL, "big")
        old_value = txn.get(old_key, db=db)
        if old_value is None:
            raise StoreError(f"journal of {origin} lost its entry for serial {first}")
        oldest = JournalEntry(first, old_value, lambda v=old_value: v)
        txn.delete(old_key, db=db)
        first, entries = oldest.serial_to, entries - 1
        size -= len(old_value)
        total -= STEP_SOA_RECORDS + oldest.removed_count + oldest.added_count
    txn.put(prefix, msgpack.packb([first, serial_to, entries, size, total]), db=db)
    return True


class _DiffCollector:
    """Record-level changes of the nodes that differ between two versions of
    a zone; gives up (overflow) past `cap` records, where the change would not
    be journaled anyway."""

    def __init__(self, origin: Name, cap: int) -> None:
        self.origin_key = origin.store_key()
        self.skip = len(zone_prefix(origin))
        self.cap = cap
        self.removed: list[Record] = []
        self.added: list[Record] = []
        self.overflow = False

    def node(self, key: bytes, old: bytes | None, new: bytes | None) -> None:
        """Account for the node at `key` going from `old` to `new` (stored forms)."""
        if self.overflow:
            return
        try:
            name = Name.from_store_key(self.origin_key + key[self.skip:])
        except (UnicodeDecodeError, ValueError) as exc:
            raise StoreError(f"corrupt node key {key!r}") from exc
        removed, added = diff_records(_node_records(name, old), _node_records(name, new))
        self.removed += removed
        self.added += added
        # Both SOAs are in these lists: their length is the step's size.
        if len(self.removed) + len(self.added) > self.cap:
            self.overflow = True
            self.removed, self.added = [], []

    def split_soa(self) -> tuple[Record | None, Record | None]:
        """Take the SOA records out of the change: (old SOA, new SOA)."""
        old = _pop_soa(self.removed)
        new = _pop_soa(self.added)
        return old, new


def _diff_areas(txn: lmdb.Transaction, db: Any, origin: Name, old_area: int, new_area: int,
                cap: int) -> _DiffCollector:
    """The record-level change from the zone's nodes in `old_area` to those in
    `new_area` (a `_DiffCollector` giving up past `cap` records)."""
    diff = _DiffCollector(origin, cap)
    before, after = node_prefix(origin, old_area), node_prefix(origin, new_area)
    old = _suffix_batches(txn.cursor(db=db), before)
    new = _suffix_batches(txn.cursor(db=db), after)
    for key, was, now in _diff_sorted(old, new):
        diff.node(after + key, was, now)
        if diff.overflow:
            break  # not journaled: the rest changes nothing
    return diff


def _put(put: Callable[..., bool], key: bytes, value: bytes, append: bool, **kwargs: Any
         ) -> bool:
    """Put with `put` (a transaction's or cursor's, given `kwargs`), as an
    append while `append`: an append fills pages where an insert splits them
    in half, but works only for a key greater than every key of the DB.
    Returns whether the next key, if greater, may still be appended."""
    if append and put(key, value, append=True, **kwargs):
        return True
    put(key, value, **kwargs)
    return False


def _pop_soa(records: list[Record]) -> Record | None:
    for index, record in enumerate(records):
        if record.rtype == RType.SOA:
            return records.pop(index)
    return None


def _node_records(name: Name, value: bytes | None) -> list[Record]:
    if value is None:
        return []
    node = decode_node(value)
    return [rec for rtype in sorted(node) for rec in node[rtype].records(name, rtype)]


def _journal_update(txn: lmdb.Transaction, db: Any, origin: Name,
                    diff: _DiffCollector | None, zone_records: int,
                    serial: int | None = None) -> None:
    """Record a zone's change in its journal, or clear the journal when the
    change cannot be expressed as a step (see `Store.replace_zone`); a
    change without a higher serial also bars steps from the new serial
    (`_BARRIER`). `serial`: the zone's new serial, if known."""
    if diff is None or diff.overflow:
        _journal_clear(txn, db, origin)
        return
    if not diff.removed and not diff.added:
        return  # unchanged: the journal still ends at the current serial
    old_soa, new_soa = diff.split_soa()
    if new_soa is None:  # the contents changed, not the SOA
        if serial is None:
            _journal_clear(txn, db, origin)
        else:
            _journal_barrier(txn, db, origin, serial)
        return
    if old_soa is None or not serial_gt(soa_serial(new_soa), soa_serial(old_soa)):
        _journal_barrier(txn, db, origin, soa_serial(new_soa))
        return
    _journal_append(txn, db, origin, old_soa, new_soa, diff.removed, diff.added, zone_records)


def _apex_soa(txn: lmdb.Transaction, db: Any, origin: Name, area: int) -> SOA | None:
    """The SOA at the apex of the zone's nodes in `area`, if any."""
    apex = txn.get(node_prefix(origin, area), db=db)
    rrset = None if apex is None else decode_node(apex).get(RType.SOA)
    soa = None if rrset is None else rrset.rdatas[0]
    return soa if isinstance(soa, SOA) else None


def _set_apex_serial(txn: lmdb.Transaction, db: Any, origin: Name, area: int,
                     serial: int) -> None:
    """Rewrite the serial of the apex SOA of the zone's nodes in `area`."""
    key = node_prefix(origin, area)
    node = decode_node(txn.get(key, db=db))
    rrset = node[RType.SOA]
    node[RType.SOA] = RRset(rrset.ttl, (dataclasses.replace(rrset.rdatas[0], serial=serial),))
    txn.put(key, encode_node(node), db=db)


class _NodeWriter:
    """The `zonefile.NodeSink` of `Store.load_zone_file`: nodes under `prefix`
    in a write transaction.

    Nodes are put in sorted batches of `COMPILE_BATCH_NODES`: LMDB inserts
    neighbouring keys much faster than keys spread over the whole tree (zone
    files are grouped by owner, not sorted). A compile asks, for every new
    owner, whether it was written already (owners may come back later in a
    file); a bit filter of the keys put answers most of those questions
    without a lookup. `flush` must be called before the transaction is read
    by anything else.
    """

    def __init__(self, txn: lmdb.Transaction, db: Any, prefix: bytes) -> None:
        self._txn = txn
        self._db = db
        self._prefix = prefix
        self._cursor = txn.cursor(db=db)
        self._seen = bytearray(SEEN_FILTER_BITS // 8)
        self._pending: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        h = hash(key)
        a = h & _SEEN_MASK
        b = (h >> 32) & _SEEN_MASK
        seen = self._seen
        if seen[a >> 3] >> (a & 7) & 1 and seen[b >> 3] >> (b & 7) & 1:
            value = self._pending.get(key)
            return self._lookup(key) if value is None else value
        return None

    def _lookup(self, key: bytes) -> bytes | None:
        return self._cursor.get(self._prefix + key)

    def put(self, key: bytes, value: bytes) -> None:
        h = hash(key)
        a = h & _SEEN_MASK
        b = (h >> 32) & _SEEN_MASK
        seen = self._seen
        seen[a >> 3] |= 1 << (a & 7)
        seen[b >> 3] |= 1 << (b & 7)
        pending = self._pending
        pending[key] = value
        if len(pending) >= COMPILE_BATCH_NODES:
            self.flush()

    def flush(self) -> None:
        """Write the pending nodes."""
        prefix = self._prefix
        self._cursor.putmulti([(prefix + key, self._pending[key])
                               for key in sorted(self._pending)])
        self._pending.clear()

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        self.flush()
        skip = len(self._prefix)
        for key, value in _scan_prefix(self._txn.cursor(db=self._db), self._prefix + prefix):
            yield key[skip:], value


_SEEN_MASK = SEEN_FILTER_BITS - 1


class _SortedRuns(_NodeWriter):
    """The `zonefile.NodeSink` of a compile that sorts before it stores: an
    external merge sort in the scratch DB.

    Each batch of `COMPILE_BATCH_NODES` pending nodes becomes one run: its
    nodes sorted, under a 4-byte run number (so every run is appended, and
    committed in a transaction of its own; nobody else reads the DB). A node
    written again (its owner came back) is in a later run; lookups and the
    merge take the latest.
    """

    _RUN = 4  # bytes of a run number

    def __init__(self, env: lmdb.Environment, db: Any) -> None:
        super().__init__(env.begin(write=True), db, b"")
        self._env = env
        self._runs = 0

    def _lookup(self, key: bytes) -> bytes | None:
        get = self._cursor.get
        for run in range(self._runs - 1, -1, -1):
            value = get(run.to_bytes(self._RUN, "big") + key)
            if value is not None:
                return value
        return None

    def flush(self, *, renew: bool = True) -> None:
        """Store the pending nodes as the next run and commit it."""
        pending = self._pending
        if pending:
            run = self._runs.to_bytes(self._RUN, "big")
            items = [(run + key, pending[key]) for key in sorted(pending)]
            if self._cursor.putmulti(items, append=True)[1] != len(items):
                raise StoreError("scratch DB not empty: runs cannot be appended")
            self._runs += 1
            pending.clear()
        self._txn.commit()
        if renew:
            self._txn = self._env.begin(write=True)
            self._cursor = self._txn.cursor(db=self._db)

    def finish(self) -> None:
        """Store what is pending and end the writing (`merged` reads)."""
        self.flush(renew=False)

    def abort(self) -> None:
        """Drop what is pending (after `finish`, nothing)."""
        with contextlib.suppress(lmdb.Error):
            self._txn.abort()

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        self.flush()
        return self._merge(self._txn, prefix)

    def merged(self) -> Iterator[tuple[bytes, bytes]]:
        """Every node, by key (after `finish`), from a read transaction."""
        with self._env.begin() as txn:
            yield from self._merge(txn, b"")

    def _run_stream(self, txn: lmdb.Transaction, run: int,
                    prefix: bytes) -> Iterator[tuple[bytes, int, bytes]]:
        skip = self._RUN
        for key, value in _scan_prefix(txn.cursor(db=self._db),
                                       run.to_bytes(skip, "big") + prefix):
            yield key[skip:], -run, value

    def _merge(self, txn: lmdb.Transaction, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        streams = [self._run_stream(txn, run, prefix) for run in range(self._runs)]
        last = None
        for key, _, value in heapq.merge(*streams):  # equal keys: the latest run first
            if key != last:
                last = key
                yield key, value


class Store:
    """An LMDB environment holding zones (see the module docstring for the layout)."""

    @_translate
    def __init__(self, path: str | Path, *, map_size: int = DEFAULT_MAP_SIZE,
                 readonly: bool = False) -> None:
        """Open (and, unless `readonly`, create) the environment directory `path`."""
        self.path = Path(path)
        self.readonly = readonly
        self._compile_lock = threading.Lock()  # compiles share the scratch DB
        if not readonly:
            self.path.mkdir(parents=True, exist_ok=True)
        self._env = lmdb.open(str(self.path), subdir=True, max_dbs=MAX_DBS, map_size=map_size,
                              max_readers=MAX_READERS, readonly=readonly, create=not readonly)
        try:
            try:
                self._zones = self._env.open_db(ZONES_DB, create=not readonly)
                self._nodes = self._env.open_db(NODES_DB, create=not readonly)
            except lmdb.NotFoundError:
                raise StoreError(f"{self.path} holds no zone store (never written)") from None
            try:
                self._journal: Any = self._env.open_db(JOURNAL_DB, create=not readonly)
            except lmdb.NotFoundError:  # read-only, written before journals existed
                self._journal = None
            self._scratch = None if readonly else self._env.open_db(SCRATCH_DB)
            if not readonly:
                # Free the reader slots of processes that died in a read
                # transaction (a killed compile child, a crashed worker): they
                # pin the pages they saw, and the file would grow meanwhile.
                self._env.reader_check()
        except BaseException:
            self._env.close()
            raise

    # -- lifecycle -----------------------------------------------------------
    def close(self) -> None:
        """Close the environment; open snapshots become unusable."""
        self._env.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @_translate
    def env_size(self) -> int:
        """Bytes of the environment actually in use (pages written)."""
        info = self._env.info()
        return (info["last_pgno"] + 1) * self._env.stat()["psize"]

    # -- writing -------------------------------------------------------------
    def _check_writable(self) -> None:
        if self.readonly:
            raise StoreError("the store is open read-only")

    @_translate
    def replace_zone(self, zone: Zone, sources: Iterable[tuple[str, bytes]] = (), *,
                     loaded_at: float | None = None, journal: bool = True) -> None:
        """Replace the zone at `zone.origin` by `zone`, atomically.

        One write transaction writes the new nodes, removes the old ones and
        writes the metadata; readers see either the whole old or the whole new
        zone. If anything raises midway (including while iterating `zone`),
        the transaction aborts and the old zone stays.
        `sources` are (path, sha256 digest) pairs of the files compiled.

        With `journal` (the default) and an old version stored, the new nodes
        are merged into the old ones (unchanged nodes are not rewritten) and
        the difference goes to the zone's journal in the same transaction:
        - serial increased (RFC 1982): one entry is appended (oldest entries
          evicted past `MAX_JOURNAL_ENTRIES`, `MAX_JOURNAL_BYTES`, or more
          journaled records than the zone holds);
        - nothing changed: the journal is kept;
        - anything else (serial unchanged, decreased or 2**31 away while the
          contents changed; a change larger than the zone): the journal is
          cleared, since no chain of steps leads to the new contents; where
          the serial did not increase, no step is journaled from the new
          serial either (secondaries may hold another version of it).
        Without `journal`, or for a first load, the journal is cleared.
        """
        self._check_writable()
        origin = zone.origin
        if origin.is_mailbox:
            raise StoreError(f"zone origin {origin} is a mailbox")
        prefix = zone_prefix(origin)
        origin_key = origin.store_key()
        skip = len(origin_key)
        pack = msgpack.Packer().pack
        nodes = prefix  # the served area's prefix, set below

        def items() -> Iterator[tuple[bytes, bytes]]:
            for name, node in zone.iter_nodes():
                key = name.store_key()
                if not key.startswith(origin_key):  # keys end labels with \0: exact test
                    raise StoreError(f"{name} is outside zone {origin}")
                yield nodes + key[skip:], encode_node(node, pack)

        with self._env.begin(write=True) as txn:
            cursor = txn.cursor(db=self._nodes)
            diff: _DiffCollector | None = None
            old = txn.get(prefix, db=self._zones)
            area = NODE_AREAS[0] if old is None else _area_of(old)
            nodes = node_prefix(origin, area)
            if journal and old is not None:
                diff = _DiffCollector(origin, len(zone))
                _merge_nodes(cursor, nodes, items(), diff.node)
            else:
                for other in NODE_AREAS:  # the other may hold a cut transfer's leftovers
                    _delete_prefix(cursor, node_prefix(origin, other))
                # MDB_APPEND is much faster for bulk loads but requires every key
                # to sort after the last one in the DB: true when nothing follows
                # this zone's (now empty) range.
                append = not cursor.set_range(nodes)
                cursor.putmulti(items(), append=append)
            self._write_meta(txn, origin, area, len(zone), sources, loaded_at, diff)

    @_translate
    def load_zone_file(self, path: str, origin: Name, *, text: str | None = None,
                     loaded_at: float | None = None, journal: bool = True,
                     include_dirs: Iterable[str] = (),
                     before_commit: Callable[[], None] | None = None,
                     serial_policy: str | None = None, now: float | None = None
                     ) -> CompiledZone:
        """Compile a zone file (`zonefile.compile_nodes`) straight into the
        store: `replace_zone` without the zone in memory, same result, same
        journal. With `text`, the zone is `text` (shown as `path`). Its
        includes may lie in its directory or in `include_dirs`.

        The zone goes into the node area it is not served from (area 1 for a
        first load); one write transaction then diffs it against the served
        one for the journal (with `journal`), switches the zone to it and
        empties the old one. Any error leaves the old zone served.

        A zone file is first compiled by `bulkcompile.compile_bulk`, which
        sorts the nodes in memory (about 2.5 times faster); they are written
        to the new area in bounded transactions, as appends where nothing
        follows the area in the DB (appends fill LMDB's pages; inserting
        keys where they belong leaves pages a third empty). Where it gives
        up (errors, includes, an owner whose lines are not adjacent, a file
        over `bulkcompile.MAX_BULK_FILE`), the streaming compile runs, whose
        memory does not grow with the zone: where nothing follows the area,
        it sorts the nodes first (`_SortedRuns`: sorted runs in the scratch
        DB, in bounded transactions) and appends them; elsewhere it inserts
        them directly, in the switching transaction.

        `before_commit` is called last in the switching transaction: what
        it raises (or a process exit) aborts the switch.

        With a `serial_policy` (`serial.SERIAL_POLICIES`) and a zone served,
        a file whose serial is not higher than the served one (RFC 1982) is
        judged by `serial.next_serial` at `now` (default: the clock): the
        zone is stored with the serial it gives, or, where it raises
        SerialNotIncreased, the compile is refused and the old zone stays.
        So the served contents never change without the serial increasing,
        and each journal entry holds every difference between two serials.
        """
        self._check_writable()
        if origin.is_mailbox:
            raise StoreError(f"zone origin {origin} is a mailbox")
        prefix = zone_prefix(origin)
        with self._compile_lock:
            with self._env.begin() as txn:
                old = txn.get(prefix, db=self._zones)
                served = None if old is None else _area_of(old)
                area = NODE_AREAS[1] if served == NODE_AREAS[0] else NODE_AREAS[0]
                tail = not txn.cursor(db=self._nodes).set_range(node_prefix(origin, area + 1))
            target = node_prefix(origin, area)
            compiled = self._compile_unserved(path, origin, text, target, tail, include_dirs)
            try:
                with self._env.begin(write=True) as txn:
                    old = txn.get(prefix, db=self._zones)
                    if (None if old is None else _area_of(old)) != served:
                        raise StoreError(f"zone {origin} changed during the compile")
                    cursor = txn.cursor(db=self._nodes)
                    if compiled is None:
                        _delete_prefix(cursor, target)  # a cut transfer's leftovers
                        sink = _NodeWriter(txn, self._nodes, target)
                        compiled = compile_nodes(sink, path, origin, files=LOCAL_FILES,
                                                 text=text, include_dirs=include_dirs)
                        sink.flush()
                    if serial_policy is not None and served is not None:
                        compiled = self._serial_by_policy(txn, origin, served, area, compiled,
                                                          serial_policy, now)
                    diff: _DiffCollector | None = None
                    if served is not None:
                        if journal:
                            diff = _diff_areas(txn, self._nodes, origin, served, area,
                                               compiled.records)
                        _delete_prefix(cursor, node_prefix(origin, served))
                    self._write_meta(txn, origin, area, compiled.records, compiled.sources,
                                     loaded_at, diff)
                    if before_commit is not None:
                        before_commit()
            except SerialNotIncreased:
                self._clear_range(target)  # what the bulk compile wrote beside the zone
                raise
        return compiled

    def _serial_by_policy(self, txn: lmdb.Transaction, origin: Name, served: int, area: int,
                          compiled: CompiledZone, policy: str, now: float | None
                          ) -> CompiledZone:
        """Give the zone compiled into `area` the serial `serial.next_serial`
        chooses against the zone served from `served`, rewriting its apex
        SOA (in `txn`); SerialNotIncreased where the policy refuses it."""
        old = _apex_soa(txn, self._nodes, origin, served)
        new = _apex_soa(txn, self._nodes, origin, area)
        if old is None or new is None or serial_gt(new.serial, old.serial):
            return compiled  # (a zone without SOA is refused by _write_meta)
        # whether anything but the serial changed: compare with the old serial
        _set_apex_serial(txn, self._nodes, origin, area, old.serial)
        diff = _diff_areas(txn, self._nodes, origin, served, area, compiled.records)
        changed = diff.overflow or bool(diff.removed or diff.added)
        serial = next_serial(policy, old.serial, new.serial, changed,
                             time.time() if now is None else now)
        _set_apex_serial(txn, self._nodes, origin, area, serial)
        return dataclasses.replace(compiled, serial=serial)

    def _compile_unserved(self, path: str, origin: Name, text: str | None, target: bytes,
                          tail: bool, include_dirs: Iterable[str] = ()) -> CompiledZone | None:
        """Compile into the node area `target` (not served) in bounded
        transactions: in bulk, or (where `tail`: nothing follows it) into
        sorted runs merged by appends; None where neither applies (the
        caller compiles in the switching transaction)."""
        self._clear_range(target)  # a cut transfer's or compile's leftovers
        bulk = None
        if text is None:
            with gc_paused():  # the nodes are many objects and no cycles
                bulk = compile_bulk(path, origin, target, files=LOCAL_FILES)
        if bulk is not None:
            try:
                with gc_paused():  # the batches are many tuples and no cycles
                    self._write_sorted(bulk.batches(TRANSFER_TXN_NODES), append=tail)
                return bulk.compiled
            except Repeated:
                self._clear_range(target)  # and compile it again, streaming
            except BaseException:
                self._clear_range(target)
                raise
        if not tail:
            return None
        with self._env.begin(write=True) as txn:
            txn.drop(self._scratch, delete=False)  # a crashed compile's leftovers
        runs = _SortedRuns(self._env, self._scratch)
        try:
            compiled = compile_nodes(runs, path, origin, files=LOCAL_FILES, text=text,
                                     include_dirs=include_dirs)
            runs.finish()
            self._append_nodes(target, runs.merged())
        except BaseException:
            runs.abort()
            self._clear_range(target)
            raise
        finally:
            with self._env.begin(write=True) as txn:
                txn.drop(self._scratch, delete=False)
        return compiled

    def _append_nodes(self, prefix: bytes, items: Iterable[tuple[bytes, bytes]],
                      per_txn: int = TRANSFER_TXN_NODES) -> None:
        """Put `items` (relative keys, ascending) under `prefix`, `per_txn` per
        write transaction: as appends while the DB ends there (pages filled,
        not split in half), ordinary puts from the first key that is not."""
        items = iter(items)
        append = True
        while True:
            with self._env.begin(write=True) as txn:
                cursor = txn.cursor(db=self._nodes)
                for count, (key, value) in enumerate(items, 1):
                    append = _put(cursor.put, prefix + key, value, append)
                    if count == per_txn:
                        break
                else:
                    return

    def _write_sorted(self, batches: Iterable[list[tuple[bytes, bytes]]], *,
                      append: bool) -> None:
        """Put each of `batches` (keys ascending) in a write transaction of
        its own; with `append`, as appends (the keys follow every key of the
        DB)."""
        for batch in batches:
            with self._env.begin(write=True) as txn:
                if txn.cursor(db=self._nodes).putmulti(batch, append=append)[1] != len(batch):
                    raise StoreError("nodes to append are not in key order, or not last")

    def _clear_range(self, prefix: bytes, per_txn: int = TRANSFER_TXN_NODES) -> None:
        """Delete every node under `prefix`, `per_txn` per write transaction."""
        while True:
            with self._env.begin(write=True) as txn:
                if _delete_prefix(txn.cursor(db=self._nodes), prefix, per_txn) < per_txn:
                    return

    def _write_meta(self, txn: lmdb.Transaction, origin: Name, area: int, records: int,
                    sources: Iterable[tuple[str, bytes]], loaded_at: float | None,
                    diff: _DiffCollector | None) -> None:
        """Finish replacing a zone whose nodes are written in `area`: check its
        apex SOA, write its metadata, update its journal."""
        apex = txn.get(node_prefix(origin, area), db=self._nodes)
        soa_rrset = None if apex is None else decode_node(apex).get(RType.SOA)
        if soa_rrset is None:
            raise StoreError(f"zone {origin} has no SOA at its apex")
        soa = soa_rrset.rdatas[0]
        assert isinstance(soa, SOA)
        meta = {"serial": soa.serial, "records": records,
                "loaded_at": time.time() if loaded_at is None else loaded_at,
                "sources": [[os.fspath(path), digest] for path, digest in sources],
                "area": area}
        txn.put(zone_prefix(origin), msgpack.packb(meta), db=self._zones)
        if self._journal is not None:
            _journal_update(txn, self._journal, origin, diff, records, soa.serial)

    @_translate
    def delete_zone(self, origin: Name) -> bool:
        """Delete a zone and all its nodes; False if it was not stored."""
        self._check_writable()
        prefix = zone_prefix(origin)
        with self._env.begin(write=True) as txn:
            existed = txn.delete(prefix, db=self._zones)
            for area in NODE_AREAS:
                _delete_prefix(txn.cursor(db=self._nodes), node_prefix(origin, area))
            if self._journal is not None:
                _journal_clear(txn, self._journal, origin)
        return existed

    def zone_writer(self, origin: Name, *, journal: bool = True, primary: str | None = None,
                    txn_nodes: int = TRANSFER_TXN_NODES) -> ZoneWriter:
        """A `ZoneWriter` applying a transfer of the zone at `origin`
        (`primary` names where it came from, for `ZoneInfo.primary`; a full
        transfer commits every `txn_nodes` nodes)."""
        self._check_writable()
        if origin.is_mailbox:
            raise StoreError(f"zone origin {origin} is a mailbox")
        if txn_nodes < 1:
            raise StoreError("txn_nodes must be at least 1")
        return ZoneWriter(self, origin, journal=journal, primary=primary, txn_nodes=txn_nodes)

    # -- journal ---------------------------------------------------------------
    @_translate
    def journal_info(self, origin: Name) -> JournalInfo | None:
        """The zone's journal chain, or None if it has none."""
        if self._journal is None:
            return None
        with self._env.begin() as txn:
            value = txn.get(zone_prefix(origin), db=self._journal)
        return None if value is None else _decode_journal_info(value)

    @_translate
    def journal_steps(self, origin: Name, from_serial: int) -> list[JournalEntry] | None:
        """The journal entries leading from `from_serial` to the zone's current
        serial (oldest first; empty if it is current), or None when the
        journal does not reach back to `from_serial`. The entries keep their
        data, so they stay usable after this call (see `Snapshot.journal_steps`
        for the lazy form)."""
        with self.snapshot() as snap:
            return snap._journal_steps(origin, from_serial, keep=True)

    @_translate
    def clear_journal(self, origin: Name) -> None:
        """Forget the zone's journal (secondaries then get full transfers)."""
        self._check_writable()
        with self._env.begin(write=True) as txn:
            _journal_clear(txn, self._journal, origin)

    # -- metadata ------------------------------------------------------------
    @_translate
    def mark_checked(self, origin: Name, when: float) -> None:
        """Record a successful SOA check of a secondary zone (its timers resume
        from it after a restart)."""
        self._check_writable()
        prefix = zone_prefix(origin)
        with self._env.begin(write=True) as txn:
            value = txn.get(prefix, db=self._zones)
            if value is None:
                return
            meta = msgpack.unpackb(value, raw=False)
            meta["checked_at"] = when
            txn.put(prefix, msgpack.packb(meta), db=self._zones)

    def get_zone_info(self, origin: Name) -> ZoneInfo | None:
        """Metadata of the zone at `origin`, or None if not stored."""
        with self._env.begin() as txn:
            value = txn.get(zone_prefix(origin), db=self._zones)
        return None if value is None else _decode_info(origin, value)

    @_translate
    def zone_names(self) -> list[Name]:
        """Origins of every stored zone, in key order."""
        with self._env.begin() as txn:
            return [_origin_from_prefix(key)
                    for key in txn.cursor(db=self._zones).iternext(keys=True, values=False)]

    def sources_unchanged(self, origin: Name, sources: Iterable[tuple[str, bytes]]) -> bool:
        """True if the zone is stored from exactly these (path, sha256) sources,
        in this order: then recompiling it is unnecessary. An empty `sources`
        (a zone not compiled from files) never counts as unchanged."""
        info = self.get_zone_info(origin)
        wanted = tuple((os.fspath(path), bytes(digest)) for path, digest in sources)
        return info is not None and bool(wanted) and info.sources == wanted

    # -- reading -------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """A `Snapshot` bound to a new read transaction: use it as a context
        manager, or `close` it (the UDP loop does, once per batch, without
        the context manager's cost)."""
        try:
            # Read-only (the default); the nodes db is the default db, for
            # `Snapshot.node_reader`. Positional: faster without keywords.
            txn = self._env.begin(self._nodes)
        except lmdb.Error as exc:
            raise StoreError(f"LMDB: {exc}") from exc
        version = txn.id()
        return Snapshot(txn, self._zones, self._nodes, self._journal,
                        cache=self._cache_for(version), version=version)

    #: (LMDB transaction id, read cache): see `_cache_for`.
    _cache: tuple[int, dict] = (-1, {})

    def _cache_for(self, txn_id: int) -> dict:
        """The read cache of the data version `txn_id` (a read transaction's id).

        Read transactions with the same id see the same data (the id is the
        last committed write's), so their snapshots share one cache; a write
        makes the next snapshot start a new one. Snapshots of different
        versions (in other threads) never share a dict, so none sees what
        another version held.
        """
        current = self._cache
        if current[0] != txn_id:
            current = self._cache = (txn_id, {})
        return current[1]


class Snapshot:
    """A consistent view of every stored zone (one LMDB read transaction).

    Nodes are decoded on every `get_node`; a per-snapshot cache would help
    only if one snapshot answered many queries for the same names.
    """

    __slots__ = ("_txn", "_zones", "_nodes", "_journal", "_views", "_cache", "version")

    def __init__(self, txn: lmdb.Transaction, zones_db: Any, nodes_db: Any,
                 journal_db: Any = None, *, cache: dict | None = None,
                 version: int | None = None) -> None:
        """Wrap an open read transaction whose default database is the nodes
        db (use `Store.snapshot`). `cache` is
        shared by snapshots of the same data version (see `Store._cache_for`);
        by default, this snapshot has its own. `version` is `txn.id()`, if
        the caller has it."""
        self._txn = txn
        self._zones = zones_db
        self._nodes = nodes_db
        self._journal = journal_db
        self._views: dict[Name, LmdbZoneView] | None = None  # made by the first get_zone
        #: Derived facts of this data version (never Snapshot-bound objects):
        #: domain key -> mailbox route, ("zone", labels) -> closest zone's
        #: origin, ("soa", origin) -> SOA record.
        self._cache: dict[Any, Any] = {} if cache is None else cache
        #: The data version seen: the id of the last write committed before
        #: this snapshot began (the same in every process sharing the store).
        self.version: int = txn.id() if version is None else version

    def close(self) -> None:
        """End the read transaction (idempotent); the snapshot is then unusable."""
        self._txn.abort()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._txn.abort()

    def node_reader(self) -> Callable[[bytes], bytes | None]:
        """A function from a node key (such as a `mailbox_route` prefix and
        a local part) to its raw node bytes in this snapshot, None if absent:
        the read transaction's own get, for hot loops. It does not translate
        LMDB's errors; its callers fall back to methods that do."""
        return self._txn.get  # the transaction's default db is the nodes db

    def mailbox_route(self, domain_key: bytes) -> tuple[bytes, bytes] | None:
        """Where the mailboxes of the domain D (`domain_key` = D.store_key()) are
        found, as the full path (`keyresolve.authority.answer`) finds them: (origin
        key of the closest enclosing zone, the node key prefix to which a
        local part's bytes are appended, for `node_reader`); None if no zone
        encloses D or D is at or below a zone cut (the answer is a
        referral). Computed once per data version."""
        route = self._cache.get(domain_key, _UNKNOWN)
        if route is _UNKNOWN:
            route = self._compute_route(domain_key)
            self._remember(domain_key, route)
        return route  # type: ignore[return-value]

    def _remember(self, key: Any, value: Any) -> None:
        cache = self._cache
        if len(cache) >= MAX_CACHED:
            cache.clear()
        cache[key] = value

    @_translate
    def _compute_route(self, domain_key: bytes) -> tuple[bytes, bytes] | None:
        domains = store_key_ancestors(domain_key)  # D and its ancestors, root first
        txn = self._txn
        for depth in range(len(domains) - 1, -1, -1):  # closest enclosing zone first
            zone_key = domains[depth]
            meta = txn.get(zone_key + ZONE_SEP, None, self._zones)
            if meta is not None:
                break
        else:
            return None
        prefix = zone_key + bytes((_area_of(meta),))
        # A name below the apex, down to D itself, that owns NS is a zone cut
        # (RFC 1034 4.3.2 step 3b; authority._find_cut).
        for below in domains[depth + 1:]:
            value = txn.get(prefix + below[len(zone_key):], None, self._nodes)
            if value is not None and RType.NS in decode_node(value):
                return None
        return zone_key, prefix + domain_key[len(zone_key):] + b"@"

    def get_zone(self, origin: Name) -> LmdbZoneView | None:
        """The zone whose origin is exactly `origin`, or None."""
        views = self._views
        if views is None:
            views = self._views = {}
        view = views.get(origin)
        if view is None:
            value = self._txn.get(zone_prefix(origin), db=self._zones)
            if value is None:
                return None
            view = views[origin] = LmdbZoneView(self, _decode_info(origin, value))
        return view

    def find_zone(self, name: Name) -> LmdbZoneView | None:
        """The closest enclosing stored zone of `name`, or None.

        (Named as the `find_zone` callback of keyresolve.authority.answer, which
        expects None for "not ours".)
        """
        key = ("zone", name.labels)
        origin = self._cache.get(key, _UNKNOWN)
        if origin is _UNKNOWN:
            origin = None
            for domain in name.ancestors():
                if self.get_zone(domain) is not None:
                    origin = domain
                    break
            self._remember(key, origin)
        return None if origin is None else self.get_zone(origin)

    @_translate
    def zone_names(self) -> list[Name]:
        """Origins of every zone in this snapshot."""
        return [_origin_from_prefix(key)
                for key in self._txn.cursor(db=self._zones).iternext(keys=True, values=False)]

    def iter_records(self, origin: Name) -> Iterator[Record]:
        """Every record of the zone at `origin` in key order (types ascending
        within a node), streamed from a cursor; raises StoreError if absent."""
        view = self.get_zone(origin)
        if view is None:
            raise StoreError(f"no zone {origin} in the store")
        return view.records()

    def journal_steps(self, origin: Name, from_serial: int) -> list[JournalEntry] | None:
        """Journal entries from `from_serial` to the zone's serial in this
        snapshot (oldest first), or None if the journal does not reach back.
        Their records are read from the snapshot when iterated: use them
        while it is open."""
        return self._journal_steps(origin, from_serial, keep=False)

    @_translate
    def _journal_steps(self, origin: Name, from_serial: int,
                       keep: bool) -> list[JournalEntry] | None:
        view = self.get_zone(origin)
        if view is None or self._journal is None:
            return None
        return _journal_walk(self._journal_get, origin, view.serial, from_serial, keep)

    @_translate
    def _journal_get(self, key: bytes) -> bytes | None:
        return self._txn.get(key, db=self._journal)

    # -- used by LmdbZoneView ------------------------------------------------
    @_translate
    def _get(self, key: bytes) -> bytes | None:
        return self._txn.get(key, db=self._nodes)

    @_translate
    def _first_with_prefix(self, prefix: bytes) -> bool:
        cursor = self._txn.cursor(db=self._nodes)
        # prefix + b"\x00" is the smallest key strictly longer than prefix
        # that starts with it, so the prefix's own key is skipped.
        return cursor.set_range(prefix + b"\x00") and cursor.key().startswith(prefix)

    def _scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        try:
            yield from _scan_prefix(self._txn.cursor(db=self._nodes), prefix)
        except lmdb.Error as exc:
            raise StoreError(f"LMDB: {exc}") from exc


class LmdbZoneView:
    """One stored zone, read through a `Snapshot` (implements `ZoneView`)."""

    def __init__(self, snapshot: Snapshot, info: ZoneInfo) -> None:
        """A view of the zone described by `info` (use `Snapshot.get_zone`)."""
        self._snapshot = snapshot
        self.info = info
        self.origin = info.origin
        self._origin_key = info.origin.store_key()
        self._prefix = info.node_prefix

    @property
    def serial(self) -> int:
        """The serial recorded when the zone was stored."""
        return self.info.serial

    @property
    def record_count(self) -> int:
        """Records in the zone, SOA included (from the metadata)."""
        return self.info.records

    def journal_steps(self, from_serial: int) -> list[JournalEntry] | None:
        """See `Snapshot.journal_steps` (with `records()` and `soa`, this makes
        the view a `keyresolve.authority.xfr.TransferSource`)."""
        return self._snapshot.journal_steps(self.origin, from_serial)

    def _key(self, name: Name) -> bytes | None:
        key = name.store_key()
        if not key.startswith(self._origin_key):  # exact: labels end with \0 in keys
            return None
        return self._prefix + key[len(self._origin_key):]

    def get_node(self, name: Name) -> Node | None:
        """The records owned by `name`, or None."""
        key = self._key(name)
        if key is None:
            return None
        value = self._snapshot._get(key)
        return None if value is None else decode_node(value)

    def has_descendants(self, name: Name) -> bool:
        """True if a name strictly below `name` owns records.

        A mailbox has nothing below it (its key is a prefix of longer local
        parts, ``alice`` of ``alice.b``, which are siblings, not children).
        """
        if name.is_mailbox:
            return False
        if name != self.origin and self.origin.is_subdomain(name):
            return True  # above the apex: the apex itself is below it
        key = self._key(name)
        return key is not None and self._snapshot._first_with_prefix(key)

    @property
    def soa(self) -> Record:
        """The apex SOA record; StoreError if the stored zone lacks one.
        (Decoded once per data version: every negative answer carries it.)"""
        cache = self._snapshot._cache
        key = ("soa", self._prefix)
        soa = cache.get(key)
        if soa is None:
            node = self.get_node(self.origin)
            if node is None or RType.SOA not in node:
                raise StoreError(f"stored zone {self.origin} has no SOA")
            rrset = node[RType.SOA]
            soa = Record(self.origin, RType.SOA, rrset.ttl, rrset.rdatas[0])
            self._snapshot._remember(key, soa)
        return soa

    def records(self) -> Iterator[Record]:
        """Every record in key order, streamed from a cursor."""
        skip = len(self._prefix)
        for key, value in self._snapshot._scan(self._prefix):
            try:
                name = Name.from_store_key(self._origin_key + key[skip:])
            except (UnicodeDecodeError, ValueError) as exc:
                raise StoreError(f"corrupt node key {key!r}") from exc
            node = decode_node(value)
            for rtype in sorted(node):
                yield from node[rtype].records(name, rtype)

    def packed_records(self) -> Iterator[bytes]:
        """Every record but the apex SOA in key order, each packed as
        ``[name, type, ttl, rdata]`` from the stored bytes without decoding
        the rdata (what a full transfer sends; the receiver validates it)."""
        skip = len(self._prefix)
        pack = msgpack.Packer().pack
        domains: dict[str, str] = {}  # domain part of a key -> its text form
        for key, value in self._snapshot._scan(self._prefix):
            try:
                domain, at, local = (self._origin_key + key[skip:]).decode("ascii").partition("@")
                text = domains.get(domain)
                if text is None:
                    text = domains[domain] = Name.from_store_key(domain.encode("ascii")).to_text()
                items = msgpack.unpackb(value, use_list=False)
            except (UnicodeDecodeError, ValueError, msgpack.UnpackException) as exc:
                raise StoreError(f"corrupt node {key!r}: {exc}") from exc
            name = f"{local}@{text}" if at else text
            apex = len(key) == skip
            if type(items) is not tuple or not items:
                raise StoreError(f"corrupt node {key!r}")
            for item in items:
                if (type(item) is not tuple or len(item) != 3 or type(item[0]) is not int
                        or type(item[1]) is not int or type(item[2]) is not tuple):
                    raise StoreError(f"corrupt node {key!r}")
                rtype, ttl, rdatas = item
                if apex and rtype == RType.SOA:
                    continue
                for rdata in rdatas:
                    yield pack([name, rtype, ttl, rdata])


class ZoneWriter:
    """Applies one transfer to the store (a `keyresolve.authority.xfr.TransferWriter`).

    Readers keep seeing the old zone until commit; abort (or an error) leaves
    it intact.
    - A delta (IXFR) is applied in one write transaction, from the first
      `begin_delta` to `commit`.
    - A full transfer (AXFR) writes the zone's node area that is not served
      (see the module docstring), committing every `txn_nodes` nodes so
      LMDB's dirty pages, which it holds in memory until a transaction ends,
      stay bounded whatever the zone's size; `commit`'s transaction switches
      the zone to that area, then the old area is deleted in bounded steps.
      What an abort, an error or a crash leaves in the unserved area is never
      read, and the next full transfer clears it first.

    LMDB binds a write transaction to the thread that began it and allows one
    at a time per environment: every call must come from that thread
    (StoreError otherwise), and the caller must not begin another write there
    (a second writer, `replace_zone`, `delete_zone`) before this one ends: it
    would wait for this transaction forever. Writers in other threads or
    processes wait until it ends (between a full transfer's transactions they
    may run; one zone must not have two transfers at a time).

    Records of one owner usually arrive together (ours send store order), and
    the writer keeps the current node in memory until the owner changes; an
    owner seen again is read back and merged, so any order is applied right.
    A delta's changes are kept for the journal (bounded by the zone size,
    past which they are not journaled).
    """

    def __init__(self, store: Store, origin: Name, *, journal: bool = True,
                 primary: str | None = None, txn_nodes: int = TRANSFER_TXN_NODES) -> None:
        """Use `Store.zone_writer`."""
        self._store = store
        self.origin = origin
        self.journal = journal
        self.primary = primary
        self.txn_nodes = txn_nodes
        self._prefix = zone_prefix(origin)  # of the zone's metadata and journal
        self._nodes = self._prefix  # of the area written, set when begun
        self._served: int | None = None  # the area served when begun (None: no zone)
        self._area = NODE_AREAS[0]
        self._origin_key = origin.store_key()
        self._txn: lmdb.Transaction | None = None
        self._thread: int | None = None
        self._full = False
        self._puts = 0  # nodes written in this transaction of a full transfer
        self._last = b""  # a full transfer's greatest key written: greater ones are new
        self._append = False  # a full transfer's puts may still be appends
        self._records = 0
        self._key: bytes | None = None
        self._node: Node = {}
        # The current node when it came from `add_packed_key` only: its KEY
        # rdatas, packed (then `_node` is empty), and their TTL.
        self._packed: list[bytes] | None = None
        self._packed_ttl = 0
        self._packed_heads: dict[int, bytes] = {}  # TTL -> start of a KEY-only node
        self._steps: list[list] = []  # [old_soa, new_soa, removed, added]
        self._step_records = 0
        self._pack = msgpack.Packer().pack

    # -- transactions ----------------------------------------------------------
    def _check_thread(self) -> None:
        if self._thread is not None and self._thread != threading.get_ident():
            raise StoreError("a zone writer must be used from the thread that began it")

    def _write_txn(self) -> lmdb.Transaction:
        return self._store._env.begin(write=True)

    def _live(self) -> lmdb.Transaction:
        self._check_thread()
        if self._txn is None:
            raise StoreError("no transfer begun")
        return self._txn

    def _served_area(self, txn: lmdb.Transaction) -> int | None:
        value = txn.get(self._prefix, db=self._store._zones)
        return None if value is None else _area_of(value)

    def _clear_area(self, area: int) -> None:
        """Delete the zone's nodes in `area`, `txn_nodes` per transaction."""
        self._store._clear_range(node_prefix(self.origin, area), self.txn_nodes)

    # -- TransferWriter ------------------------------------------------------------
    @_translate
    def begin_full(self) -> None:
        """Start a full transfer into the unserved node area (cleared first)."""
        self._check_thread()
        if self._txn is not None or self._thread is not None:
            raise StoreError("transfer already begun")
        self._thread = threading.get_ident()
        self._full = True
        with self._store._env.begin() as txn:
            self._served = self._served_area(txn)
        self._area = NODE_AREAS[1] if self._served == NODE_AREAS[0] else NODE_AREAS[0]
        self._nodes = node_prefix(self.origin, self._area)
        self._clear_area(self._area)
        self._txn = self._write_txn()
        self._append = True
        self._records = 0

    @_translate
    def begin_delta(self, old_soa: Record) -> None:
        """Start an IXFR step; the first must start at the stored serial."""
        if self._txn is None:
            self._check_thread()
            if self._thread is not None:
                raise StoreError("transfer already begun")
            self._thread = threading.get_ident()
            txn = self._txn = self._write_txn()
            try:
                value = txn.get(self._prefix, db=self._store._zones)
                if value is None:
                    raise StoreError(f"no zone {self.origin} to apply a delta to")
                info = _decode_info(self.origin, value)
                if info.serial != soa_serial(old_soa):
                    raise FormError(f"delta starts at serial {soa_serial(old_soa)}, "
                                    f"zone {self.origin} is at {info.serial}")
            except BaseException:
                self._end()  # nothing begun: release the write lock
                raise
            self._served = self._area = info.area
            self._nodes = info.node_prefix
            self._records = info.records
        else:
            self._live()
            if self._full:
                raise StoreError("delta step inside a full transfer")
        self._steps.append([old_soa, None, [], []])

    def begin_additions(self, new_soa: Record) -> None:
        """The current step's additions lead to `new_soa`."""
        self._live()
        if not self._steps:
            raise StoreError("no delta step begun")
        self._steps[-1][1] = new_soa

    def _load(self, record: Record) -> Node:
        if record.rtype == RType.SOA:
            raise FormError("SOA records are set by commit, not added or removed")
        txn = self._live()
        name_key = record.name.store_key()
        if not name_key.startswith(self._origin_key):
            raise FormError(f"{record.name} is outside zone {self.origin}")
        key = self._nodes + name_key[len(self._origin_key):]
        if key == self._key and self._packed is not None:
            self._node = decode_node(self._packed_value())  # other records join it
            self._packed = None
        if key != self._key:
            txn = self._flush(txn)
            # A full transfer starts from an empty area; ours sends owners in
            # key order, so only a key not above the last written needs a read.
            value = None if self._full and key > self._last else txn.get(key, db=self._store._nodes)
            self._key = key
            self._node = {} if value is None else decode_node(value)
        return self._node

    def _flush(self, txn: lmdb.Transaction) -> lmdb.Transaction:
        """Write the current node; returns the transaction to go on with."""
        key = self._key
        if key is None:
            return txn
        nodes = self._store._nodes
        if self._packed is None and not self._node:
            txn.delete(key, db=nodes)
        else:
            value = (encode_node(self._node, self._pack) if self._packed is None
                     else self._packed_value())
            # Ours arrive in key order: appends while they work (see `_put`).
            self._append = _put(txn.put, key, value, self._append and key > self._last, db=nodes)
        self._key, self._node, self._packed = None, {}, None
        return self._counted(txn, key) if self._full else txn

    def _counted(self, txn: lmdb.Transaction, key: bytes) -> lmdb.Transaction:
        """A full transfer wrote `key`: commits every `txn_nodes` nodes;
        returns the transaction to go on with."""
        if key > self._last:
            self._last = key
        self._puts += 1
        if self._puts >= self.txn_nodes:
            self._txn = None
            txn.commit()  # the unserved area: readers never look at it
            txn = self._txn = self._write_txn()
            self._puts = 0
        return txn

    def _journal_change(self, index: int, record: Record) -> None:
        if self.journal and self._steps:
            self._steps[-1][index].append(record)
            self._step_records += 1

    @_translate
    def delete(self, record: Record) -> None:
        """Remove one record (FormError if the zone does not hold it)."""
        if self._full:
            raise StoreError("delete inside a full transfer")
        node_delete(self._load(record), record)
        self._records -= 1
        self._journal_change(2, record)

    @_translate
    def add(self, record: Record) -> None:
        """Add one record (in a delta, FormError if the zone already holds it)."""
        if node_add(self._load(record), record, strict=not self._full):
            self._records += 1
        if not self._full:
            self._journal_change(3, record)

    @_translate
    def add_packed_keys(self, items: Iterable[tuple[bytes, int, bytes]]) -> None:
        """`add` of mailbox KEY records, each given as (owner key relative to
        the origin, TTL, packed rdata) (see `xfr.TransferWriter`). The owners
        of a full transfer from us come in key order, each new: their nodes
        are built as bytes; anything else goes through `add`."""
        txn = self._live()
        prefix = self._nodes
        for key, ttl, rdata in items:
            full_key = prefix + key
            if full_key == self._key and self._packed is not None:
                self._packed_ttl = ttl  # the RRset takes the latest TTL (`xfr.node_add`)
                if rdata not in self._packed:
                    self._packed.append(rdata)
                    self._records += 1
            elif self._full and full_key > self._last and full_key != self._key:
                txn = self._flush(txn)
                self._key = full_key
                self._packed = [rdata]
                self._packed_ttl = ttl
                self._records += 1
            else:  # a delta, or an owner written or begun before: merged by `add`
                name = Name.from_store_key(self._origin_key + key)
                self.add(Record(name, RType.KEY, ttl, rdata_from_wire(
                    RType.KEY, msgpack.unpackb(rdata, use_list=False))))
                txn = self._live()

    def _packed_value(self) -> bytes:
        """The stored form of the packed current node (as `encode_node`)."""
        packed = self._packed
        assert packed is not None
        head = self._packed_heads.get(self._packed_ttl)
        if head is None:
            head = self._packed_heads[self._packed_ttl] = (
                KEY_NODE_HEAD + msgpack.packb(self._packed_ttl))
        if len(packed) == 1:
            return head + b"\x91" + packed[0]
        return b"".join((head, array_header(len(packed)), *packed))

    @_translate
    def commit(self, soa: Record) -> None:
        """Set the apex SOA, the metadata and the journal; commit (a full
        transfer's last transaction switches the zone to the new area, then
        the old one is deleted)."""
        if soa.rtype != RType.SOA or soa.name != self.origin:
            self._live()
            raise FormError("commit needs the zone's SOA")
        txn = self._flush(self._live())
        store = self._store
        if self._full and self._served_area(txn) != self._served:
            raise StoreError(f"zone {self.origin} changed during the transfer")
        apex = txn.get(self._nodes, db=store._nodes)
        node = {} if apex is None else decode_node(apex)
        if RType.SOA not in node:
            self._records += 1
        node[RType.SOA] = RRset(soa.ttl, (soa.rdata,))
        txn.put(self._nodes, encode_node(node, self._pack), db=store._nodes)
        now = time.time()
        meta = {"serial": soa_serial(soa), "records": self._records, "loaded_at": now,
                "sources": [], "primary": self.primary, "transferred_at": now,
                "area": self._area}
        txn.put(self._prefix, msgpack.packb(meta), db=store._zones)
        if store._journal is not None:
            self._update_journal(txn)
        self._txn = None
        txn.commit()
        old = self._served if self._full and self._served != self._area else None
        self._end()
        if old is not None:
            self._clear_area(old)

    def _update_journal(self, txn: lmdb.Transaction) -> None:
        store = self._store
        journal = store._journal
        if not self.journal:
            _journal_clear(txn, journal, self.origin)
        elif self._full:
            # The old version is still in the served area: diff it against
            # the new one node by node, as replace_zone does.
            diff = None
            if self._served is not None:
                diff = _diff_areas(txn, store._nodes, self.origin, self._served, self._area,
                                   min(self._records, MAX_TRANSFER_DIFF_RECORDS))
            _journal_update(txn, journal, self.origin, diff, self._records)
        elif self._step_records + STEP_SOA_RECORDS * len(self._steps) > self._records:
            _journal_clear(txn, journal, self.origin)
        else:
            for old_soa, new_soa, removed, added in self._steps:
                if not _journal_append(txn, journal, self.origin, old_soa, new_soa,
                                       _store_order(removed), _store_order(added),
                                       self._records):
                    break

    def _end(self) -> None:
        txn, self._txn = self._txn, None
        self._key, self._node, self._steps, self._packed = None, {}, [], None
        if txn is not None:
            txn.abort()

    def abort(self) -> None:
        """Drop everything written; the old zone stays. Idempotent."""
        self._check_thread()
        try:
            begun_full = self._full and self._txn is not None
            self._end()
            if begun_full:  # what the transfer wrote so far
                self._clear_area(self._area)
        except lmdb.Error as exc:
            raise StoreError(f"LMDB: {exc}") from exc


def _store_order(records: list[Record]) -> list[Record]:
    """`records` sorted by owner key then type (stable: RRset order kept)."""
    return sorted(records, key=lambda r: (r.name.store_key(), r.rtype))


def _scan_prefix(cursor: lmdb.Cursor, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    if not cursor.set_range(prefix):
        return
    for key, value in cursor:
        if not key.startswith(prefix):
            return
        yield key, value


def _suffix_batches(cursor: lmdb.Cursor, prefix: bytes, size: int = DIFF_BATCH
                    ) -> Iterator[tuple[list[bytes], list[bytes]]]:
    """The keys under `prefix` (without it) and their values, ascending, as
    lists of up to `size` (never empty)."""
    if not cursor.set_range(prefix):
        return
    items = cursor.iternext()
    strip = operator.itemgetter(slice(len(prefix), None))
    while True:
        batch = list(itertools.islice(items, size))
        last = len(batch) < size
        if batch and not batch[-1][0].startswith(prefix):  # the prefix ends in this batch
            del batch[_count_under(list(map(_KEY_OF, batch)), prefix):]
            last = True
        if batch:
            yield list(map(strip, map(_KEY_OF, batch))), list(map(_VALUE_OF, batch))
        if last:
            return


def _diff_sorted(old: Iterator[tuple[list[bytes], list[bytes]]],
                 new: Iterator[tuple[list[bytes], list[bytes]]]
                 ) -> Iterator[tuple[bytes, bytes | None, bytes | None]]:
    """(key, old value, new value) for every key whose value differs (None:
    absent) between two ascending streams of (keys, values) batches (as
    `_suffix_batches`). Runs of equal items are compared a slice at a time,
    in C; only differences cost Python per item."""
    ka: list[bytes] = []
    va: list[bytes] = []
    kb: list[bytes] = []
    vb: list[bytes] = []
    i = j = 0
    while True:
        if i == len(ka):
            ka, va = next(old, ([], []))
            i = 0
        if j == len(kb):
            kb, vb = next(new, ([], []))
            j = 0
        if not ka or not kb:
            if ka:
                yield from zip(ka[i:], va[i:], itertools.repeat(None))
            elif kb:
                yield from zip(kb[j:], itertools.repeat(None), vb[j:])
            else:
                return
            i, j = len(ka), len(kb)
            continue
        x, y = ka[i], kb[j]
        if x == y and va[i] == vb[j]:
            m = min(len(ka) - i, len(kb) - j)
            if ka[i:i + m] == kb[j:j + m] and va[i:i + m] == vb[j:j + m]:
                i += m
                j += m
                continue
            lo, hi = 1, m  # the first lo items are equal, the first hi are not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if ka[i:i + mid] == kb[j:j + mid] and va[i:i + mid] == vb[j:j + mid]:
                    lo = mid
                else:
                    hi = mid
            i += lo
            j += lo
        elif x < y:
            yield x, va[i], None
            i += 1
        elif y < x:
            yield y, None, vb[j]
            j += 1
        else:
            yield x, va[i], vb[j]
            i += 1
            j += 1
