"""The compiles of `Store.load_zone_file`: a zone file into the node area
not served, then one write transaction switching the zone to it.

Three strategies, fastest first: the bulk compile (`bulkcompile`, sorted in
memory, written in bounded transactions as appends), the streaming compile
into sorted runs in the scratch DB (`SortedRuns`, merged by appends), and
the streaming compile inserting nodes straight into the switching
transaction (`NodeWriter`). The switch ends in `transaction.commit_zone`,
the commit every zone change ends in.
"""

from __future__ import annotations

import dataclasses
import heapq
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ..protocol.codes import RType
from ..protocol.errors import StoreError
from ..protocol.names import Name
from ..protocol.records import SOA, Record
from ..protocol.serial import SerialNotIncreased, next_serial, serial_gt
from ..zonedata.bulkcompile import Repeated, compile_bulk
from ..zonedata.model import RRset
from ..zonedata.nodes import decode_node, encode_node
from ..zonedata.zonefile import CompiledZone, compile_nodes, gc_paused
from .diff import DiffCollector, diff_areas
from .env import (TRANSFER_TXN_NODES, Environment, Txn, ZoneDbs, clear_range, delete_prefix,
                  put_or_append, scan_prefix, suppress_lmdb_errors)
from .keys import NODE_AREAS, area_of, node_prefix, zone_prefix
from .overlay import apply_overlay
from .transaction import CommitHook, commit_zone

#: Bits of the filter that spares a compile an LMDB lookup for each new owner
#: it has not written yet (2 MiB; about 1 % false positives, each costing one
#: lookup, at a million owners).
SEEN_FILTER_BITS = 1 << 24
#: Nodes a compile sorts before putting them (see `NodeWriter`): 16,384
#: (~2.5 MB) gave the whole gain (a 1M-key compile 10.0 -> 8.1 s CPU).
COMPILE_BATCH_NODES = 16384


def apex_soa(txn: Txn, db: Any, origin: Name, area: int) -> SOA | None:
    """The SOA at the apex of the zone's nodes in `area`, if any."""
    apex = txn.get(node_prefix(origin, area), db=db)
    rrset = None if apex is None else decode_node(apex).get(RType.SOA)
    soa = None if rrset is None else rrset.rdatas[0]
    return soa if isinstance(soa, SOA) else None


def set_apex_serial(txn: Txn, db: Any, origin: Name, area: int,
                     serial: int) -> None:
    """Rewrite the serial of the apex SOA of the zone's nodes in `area`."""
    key = node_prefix(origin, area)
    node = decode_node(txn.get(key, db=db))
    rrset = node[RType.SOA]
    node[RType.SOA] = RRset(rrset.ttl, (dataclasses.replace(rrset.rdatas[0], serial=serial),))
    txn.put(key, encode_node(node), db=db)



class NodeWriter:
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

    def __init__(self, txn: Txn, db: Any, prefix: bytes) -> None:
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
        for key, value in scan_prefix(self._txn.cursor(db=self._db), self._prefix + prefix):
            yield key[skip:], value


_SEEN_MASK = SEEN_FILTER_BITS - 1


class SortedRuns(NodeWriter):
    """The `zonefile.NodeSink` of a compile that sorts before it stores: an
    external merge sort in the scratch DB.

    Each batch of `COMPILE_BATCH_NODES` pending nodes becomes one run: its
    nodes sorted, under a 4-byte run number (so every run is appended, and
    committed in a transaction of its own; nobody else reads the DB). A node
    written again (its owner came back) is in a later run; lookups and the
    merge take the latest.
    """

    _RUN = 4  # bytes of a run number

    def __init__(self, env: Environment, db: Any) -> None:
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
        with suppress_lmdb_errors():
            self._txn.abort()

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        self.flush()
        return self._merge(self._txn, prefix)

    def merged(self) -> Iterator[tuple[bytes, bytes]]:
        """Every node, by key (after `finish`), from a read transaction."""
        with self._env.begin() as txn:
            yield from self._merge(txn, b"")

    def _run_stream(self, txn: Txn, run: int,
                    prefix: bytes) -> Iterator[tuple[bytes, int, bytes]]:
        skip = self._RUN
        for key, value in scan_prefix(txn.cursor(db=self._db),
                                       run.to_bytes(skip, "big") + prefix):
            yield key[skip:], -run, value

    def _merge(self, txn: Txn, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        streams = [self._run_stream(txn, run, prefix) for run in range(self._runs)]
        last = None
        for key, _, value in heapq.merge(*streams):  # equal keys: the latest run first
            if key != last:
                last = key
                yield key, value



def load_zone_file(dbs: ZoneDbs, path: str, origin: Name, *, text: str | None = None,
                   loaded_at: float | None = None, journal: bool = True,
                   include_dirs: Iterable[str] = (),
                   before_commit: Callable[[], None] | None = None,
                   serial_policy: str | None = None, now: float | None = None,
                   hooks: Iterable[CommitHook] = (), overlay: Sequence[Record] = ()
                   ) -> CompiledZone:
    """Compile a zone file (`zonefile.compile_nodes`) straight into the
    store: `Store.replace_zone_reference` without the zone in memory, same result, same
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
    it sorts the nodes first (`SortedRuns`: sorted runs in the scratch
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

    `overlay` records are added to the compiled zone in the switching
    transaction (`overlay.apply_overlay`: a registration zone's
    registrations); a file with a KEY at a mailbox the overlay holds a KEY
    at is ZoneErrors.
    """
    if origin.is_mailbox:
        raise StoreError(f"zone origin {origin} is a mailbox")
    prefix = zone_prefix(origin)
    with dbs.begin_read() as txn:
        old = txn.get(prefix, db=dbs.zones)
        served = None if old is None else area_of(old)
        area = NODE_AREAS[1] if served == NODE_AREAS[0] else NODE_AREAS[0]
        tail = not txn.cursor(db=dbs.nodes).set_range(node_prefix(origin, area + 1))
    target = node_prefix(origin, area)
    compiled = _compile_unserved(dbs, path, origin, text, target, tail, include_dirs)
    try:
        with dbs.begin_write() as txn:
            old = txn.get(prefix, db=dbs.zones)
            if (None if old is None else area_of(old)) != served:
                raise StoreError(f"zone {origin} changed during the compile")
            cursor = txn.cursor(db=dbs.nodes)
            if compiled is None:
                delete_prefix(cursor, target)  # a cut transfer's leftovers
                sink = NodeWriter(txn, dbs.nodes, target)
                compiled = compile_nodes(sink, path, origin, text=text,
                                        include_dirs=include_dirs)
                sink.flush()
            if overlay:
                added = apply_overlay(txn, dbs.nodes, origin, target, overlay, path, text,
                                      include_dirs)
                compiled = dataclasses.replace(compiled, records=compiled.records + added)
            if serial_policy is not None and served is not None:
                compiled = _serial_by_policy(dbs, txn, origin, served, area, compiled,
                                                  serial_policy, now)
            diff: DiffCollector | None = None
            if served is not None:
                if journal:
                    diff = diff_areas(txn, dbs.nodes, origin, served, area,
                                       compiled.records)
                delete_prefix(cursor, node_prefix(origin, served))
            commit_zone(txn, dbs, origin, area, compiled.records,
                        compile_meta(compiled.sources, loaded_at), diff, hooks=hooks)
            if before_commit is not None:
                before_commit()
    except SerialNotIncreased:
        clear_range(dbs, target)  # what the bulk compile wrote beside the zone
        raise
    return compiled


def _serial_by_policy(dbs: ZoneDbs, txn: Txn, origin: Name, served: int, area: int,
                      compiled: CompiledZone, policy: str, now: float | None
                      ) -> CompiledZone:
    """Give the zone compiled into `area` the serial `serial.next_serial`
    chooses against the zone served from `served`, rewriting its apex
    SOA (in `txn`); SerialNotIncreased where the policy refuses it."""
    old = apex_soa(txn, dbs.nodes, origin, served)
    new = apex_soa(txn, dbs.nodes, origin, area)
    if old is None or new is None or serial_gt(new.serial, old.serial):
        return compiled  # (a zone without SOA is refused by commit_zone)
    # whether anything but the serial changed: compare with the old serial
    set_apex_serial(txn, dbs.nodes, origin, area, old.serial)
    diff = diff_areas(txn, dbs.nodes, origin, served, area, compiled.records)
    changed = diff.overflow or bool(diff.removed or diff.added)
    serial = next_serial(policy, old.serial, new.serial, changed,
                         time.time() if now is None else now)
    set_apex_serial(txn, dbs.nodes, origin, area, serial)
    return dataclasses.replace(compiled, serial=serial)

def _compile_unserved(dbs: ZoneDbs, path: str, origin: Name, text: str | None, target: bytes,
                      tail: bool, include_dirs: Iterable[str] = ()) -> CompiledZone | None:
    """Compile into the node area `target` (not served) in bounded
    transactions: in bulk, or (where `tail`: nothing follows it) into
    sorted runs merged by appends; None where neither applies (the
    caller compiles in the switching transaction)."""
    clear_range(dbs, target)  # a cut transfer's or compile's leftovers
    bulk = compile_bulk(path, origin, target) if text is None else None
    if bulk is not None:
        try:
            with gc_paused():  # the batches are many tuples and no cycles
                _write_sorted(dbs, bulk.batches(TRANSFER_TXN_NODES), append=tail)
            return bulk.compiled
        except Repeated:
            clear_range(dbs, target)  # and compile it again, streaming
        except BaseException:
            clear_range(dbs, target)
            raise
    if not tail:
        return None
    with dbs.begin_write() as txn:
        txn.drop(dbs.scratch, delete=False)  # a crashed compile's leftovers
    runs = SortedRuns(dbs.env, dbs.scratch)
    try:
        compiled = compile_nodes(runs, path, origin, text=text, include_dirs=include_dirs)
        runs.finish()
        _append_nodes(dbs, target, runs.merged())
    except BaseException:
        runs.abort()
        clear_range(dbs, target)
        raise
    finally:
        with dbs.begin_write() as txn:
            txn.drop(dbs.scratch, delete=False)
    return compiled

def _append_nodes(dbs: ZoneDbs, prefix: bytes, items: Iterable[tuple[bytes, bytes]],
                  per_txn: int = TRANSFER_TXN_NODES) -> None:
    """Put `items` (relative keys, ascending) under `prefix`, `per_txn` per
    write transaction: as appends while the DB ends there (pages filled,
    not split in half), ordinary puts from the first key that is not."""
    items = iter(items)
    append = True
    while True:
        with dbs.begin_write() as txn:
            cursor = txn.cursor(db=dbs.nodes)
            for count, (key, value) in enumerate(items, 1):
                append = put_or_append(cursor.put, prefix + key, value, append)
                if count == per_txn:
                    break
            else:
                return

def _write_sorted(dbs: ZoneDbs, batches: Iterable[list[tuple[bytes, bytes]]], *,
                  append: bool) -> None:
    """Put each of `batches` (keys ascending) in a write transaction of
    its own; with `append`, as appends (the keys follow every key of the
    DB)."""
    for batch in batches:
        with dbs.begin_write() as txn:
            if txn.cursor(db=dbs.nodes).putmulti(batch, append=append)[1] != len(batch):
                raise StoreError("nodes to append are not in key order, or not last")


def compile_meta(sources: Iterable[tuple[str, bytes]], loaded_at: float | None
                 ) -> dict[str, Any]:
    """The metadata of a zone compiled from `sources` (for `commit_zone`)."""
    return {"serial": None, "records": None,
            "loaded_at": time.time() if loaded_at is None else loaded_at,
            "sources": [[os.fspath(path), digest] for path, digest in sources], "area": None}
