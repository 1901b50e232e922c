"""One write path for every zone change: `ZoneTransaction` and `commit_zone`.

As Knot's ``zone_update`` and dnspython's ``Transaction``: a change of a
stored zone is begun (`Store.begin`), made record by record (`add`,
`delete`, `replace_node`; `get_node` reads the transaction's own writes),
then committed with its new SOA or aborted. Its commit writes, in the same
LMDB write transaction, the changed nodes, the new SOA, the transfer-journal
entry (old SOA, removed, added), the update-log entries (`log_update`) and
the zone's metadata, and calls the commit hooks with the `ChangeSet`; what
raises before the end (a hook included) leaves none of it.

`commit_zone` is that commit, the one every zone change ends in: the
transaction's `commit`, the secondary's transfers (`ZoneWriter`: a delta is
applied through a `ZoneTransaction`; a full transfer writes its nodes in
bounded batches into the area not served) and the compiles
(`Store.load_zone_file`, which writes nodes in bulk, and
`Store.replace_zone_reference`). The bulk writers keep their batched node
writes (millions of nodes: record by record would cost several times the
time), then call `commit_zone` with the record-level difference of the two
areas for the journal.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from ..authority.xfr import node_add, node_delete
from ..protocol.codes import RType
from ..protocol.errors import StoreError
from ..protocol.names import Name
from ..protocol.records import SOA, Record
from ..protocol.serial import SERIAL_POLICIES, next_serial, serial_gt
from ..zonedata.model import Node, RRset
from ..zonedata.nodes import decode_node, encode_node
from .diff import DiffCollector, pop_soa
from .env import Txn, ZoneDbs, translate
from .journal import (ChangeStep, journal_clear, journal_steps_append, journal_update,
                      update_log_append)
from .keys import decode_info, node_prefix, zone_prefix


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """What one commit did to a zone (given to the commit hooks)."""

    origin: Name
    #: The serial before (None: the zone was new) and after the commit.
    old_serial: int | None
    serial: int
    #: The change as journal steps (empty: nothing changed; None: not known
    #: record by record, as for a first load or a change larger than the zone).
    steps: tuple[ChangeStep, ...] | None
    #: The update-log entries written with it (`ZoneTransaction.log_update`).
    update_log: tuple[bytes, ...] = ()


#: A commit hook: called with the change, last in the write transaction (what
#: it raises aborts the commit).
CommitHook = Callable[[ChangeSet], None]


def commit_zone(txn: Txn, dbs: ZoneDbs, origin: Name, area: int, records: int,
                meta: dict[str, Any], journal: DiffCollector | list[ChangeStep] | None, *,
                journaled: bool = True, update_log: Sequence[bytes] = (),
                hooks: Iterable[CommitHook] = ()) -> ChangeSet:
    """Finish a change of the zone whose nodes are written in `area` (in
    `txn`, which the caller commits): check its apex SOA, write its
    metadata (`meta` with "serial", "records" and "area" set), update its
    transfer journal, append `update_log` to its update log, call `hooks`.

    `journal`: the change, as the difference of two versions' nodes
    (`journal.journal_update` decides: an entry, a barrier or a clear), as
    a chain of steps, or None (not known: the journal is cleared, as
    without `journaled`)."""
    apex = txn.get(node_prefix(origin, area), db=dbs.nodes)
    soa_rrset = None if apex is None else decode_node(apex).get(RType.SOA)
    if soa_rrset is None:
        raise StoreError(f"zone {origin} has no SOA at its apex")
    soa = soa_rrset.rdatas[0]
    assert isinstance(soa, SOA)
    prefix = zone_prefix(origin)
    old = txn.get(prefix, db=dbs.zones)
    old_serial = None if old is None else decode_info(origin, old).serial
    meta["serial"] = soa.serial
    meta["records"] = records
    meta["area"] = area
    txn.put(prefix, msgpack.packb(meta), db=dbs.zones)
    steps: tuple[ChangeStep, ...] | None = None
    if dbs.journal is not None:
        if not journaled or journal is None:
            journal_clear(txn, dbs.journal, origin)
        elif isinstance(journal, DiffCollector):
            steps = journal_update(txn, dbs.journal, origin, journal, records, soa.serial)
        else:
            journal_steps_append(txn, dbs.journal, origin, journal, records)
            steps = tuple(journal)
    if update_log:
        if dbs.updates is None:
            raise StoreError("the store has no update log (opened read-only)")
        update_log_append(txn, dbs.updates, origin, update_log)
    change = ChangeSet(origin, old_serial, soa.serial, steps, tuple(update_log))
    for hook in hooks:
        hook(change)
    return change


def _count(node: Node) -> int:
    return sum(len(rrset.rdatas) for rrset in node.values())


class ZoneTransaction:
    """A change of one stored zone, committed whole or not at all.

    Obtained from `Store.begin(origin)`; a context manager that aborts on
    leaving unless committed (commit is explicit: it needs the new SOA).
    The zone must be stored. Changes go to an LMDB write transaction at
    once, so `get_node` sees them and readers do not until `commit`.

    LMDB binds a write transaction to the thread that began it and allows
    one per environment at a time: use the transaction from that thread only
    (StoreError otherwise), and begin no other write there (a compile, a
    transfer, another transaction) before it ends: it would wait forever.

    A registration's write, for instance::

        with store.begin(origin) as txn:
            txn.replace_node(owner, key_records)
            txn.log_update(entry.to_wire())
            txn.commit(serial_policy="unixtime")
    """

    def __init__(self, dbs: ZoneDbs, origin: Name, *, hooks: Iterable[CommitHook] = (),
                 journaled: bool = True) -> None:
        """Begin the write transaction (use `Store.begin`)."""
        if origin.is_mailbox:
            raise StoreError(f"zone origin {origin} is a mailbox")
        self.origin = origin
        self._dbs = dbs
        self._hooks = list(hooks)
        self._journaled = journaled
        self._thread = threading.get_ident()
        self._pack = msgpack.Packer().pack
        txn = dbs.begin_write()
        try:
            value = txn.get(zone_prefix(origin), db=dbs.zones)
            if value is None:
                raise StoreError(f"no zone {origin} in the store")
            #: The zone as stored when the transaction began.
            self.info = decode_info(origin, value)
            #: The metadata `commit` writes ("serial", "records" and "area"
            #: are set there); a caller may change the rest before it.
            self.meta: dict[str, Any] = msgpack.unpackb(value, raw=False)
            apex = txn.get(self.info.node_prefix, db=dbs.nodes)
            soa_rrset = None if apex is None else decode_node(apex).get(RType.SOA)
            if soa_rrset is None:
                raise StoreError(f"stored zone {origin} has no SOA")
        except BaseException:
            txn.abort()
            raise
        self._txn: Txn | None = txn
        self._soa = Record(origin, RType.SOA, soa_rrset.ttl, soa_rrset.rdatas[0])
        self._step_soa = self._soa  # where the open step starts
        self._area = self.info.area
        self._prefix = self.info.node_prefix
        self._origin_key = origin.store_key()
        self._records = self.info.records
        # The open step: the stored value of each node it touched, as it was
        # when the step began (None: absent).
        self._base: dict[bytes, bytes | None] = {}
        self._steps: list[ChangeStep] = []
        self._overflow = False  # a step larger than the zone: not journaled
        self._log: list[bytes] = []
        self._key: bytes | None = None  # the node being changed, kept decoded
        self._node: Node = {}

    # -- the context manager -------------------------------------------------
    def __enter__(self) -> ZoneTransaction:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()

    # -- internals -------------------------------------------------------------
    def _live(self) -> Txn:
        if self._thread != threading.get_ident():
            raise StoreError("a zone transaction must be used from the thread that began it")
        if self._txn is None:
            raise StoreError("the zone transaction has ended")
        return self._txn

    def _node_key(self, name: Name) -> bytes:
        key = name.store_key()
        if not key.startswith(self._origin_key):  # keys end labels with \0: exact test
            raise StoreError(f"{name} is outside zone {self.origin}")
        return self._prefix + key[len(self._origin_key):]

    def _load(self, name: Name) -> Node:
        """The node of `name`, made the one being changed."""
        key = self._node_key(name)
        if key != self._key:
            txn = self._live()
            self._flush(txn)
            value = txn.get(key, db=self._dbs.nodes)
            if key not in self._base:
                self._base[key] = value
            self._key = key
            self._node = {} if value is None else decode_node(value)
        return self._node

    def _flush(self, txn: Txn) -> None:
        key = self._key
        if key is None:
            return
        if self._node:
            txn.put(key, encode_node(self._node, self._pack), db=self._dbs.nodes)
        else:
            txn.delete(key, db=self._dbs.nodes)
        self._key, self._node = None, {}

    @staticmethod
    def _no_soa(record: Record) -> None:
        if record.rtype == RType.SOA:
            raise StoreError("SOA records are set by commit, not added or removed")

    # -- changes ---------------------------------------------------------------
    @translate
    def get_node(self, owner: Name) -> Node | None:
        """The records `owner` holds in the transaction (its own writes
        included), or None (also for a name outside the zone)."""
        if not owner.store_key().startswith(self._origin_key):
            self._live()
            return None
        key = self._node_key(owner)
        if key == self._key:
            return dict(self._node) or None
        value = self._live().get(key, db=self._dbs.nodes)
        return None if value is None else decode_node(value)

    @translate
    def add(self, record: Record) -> None:
        """Add one record (FormError if the zone holds it already: a delta
        made against other data than ours, `xfr.node_add`; the RRset takes its
        TTL, RFC 2181 5.2). StoreError for an SOA or a name outside the zone."""
        self._no_soa(record)
        node_add(self._load(record.name), record, strict=True)
        self._records += 1

    @translate
    def delete(self, record: Record) -> None:
        """Remove one record (FormError if the zone does not hold it: a delta
        made against other data than ours, `xfr.node_delete`). StoreError for
        an SOA or a name outside the zone."""
        self._no_soa(record)
        node_delete(self._load(record.name), record)
        self._records -= 1

    @translate
    def replace_node(self, owner: Name, records: Iterable[Record]) -> None:
        """Make `records` (none: the node goes) everything `owner` holds,
        but for the apex SOA, which stays."""
        new: Node = {}
        for record in records:
            self._no_soa(record)
            if record.name != owner:
                raise StoreError(f"{record.name} is not the owner {owner}")
            node_add(new, record, strict=False)
        node = self._load(owner)
        if RType.SOA in node:
            new[RType.SOA] = node[RType.SOA]
        self._records += _count(new) - _count(node)
        self._node = new

    def log_update(self, entry: bytes) -> None:
        """Append `entry` (opaque bytes, the registry's format) to the zone's
        update log at commit, with the change it causes."""
        self._live()
        if not isinstance(entry, bytes):
            raise StoreError("an update-log entry is bytes")
        self._log.append(entry)

    @translate
    def mark_step(self, old_soa: Record, new_soa: Record) -> None:
        """End the open step: the changes since the last step are one journal
        entry from `old_soa` to `new_soa` (an incremental transfer applies
        several steps in one transaction). The apex SOA is set by `commit`."""
        txn = self._live()
        self._flush(txn)
        if not self._close_step(txn, old_soa, new_soa):  # only the SOA changes
            self._steps.append(ChangeStep(old_soa, new_soa, (), ()))
        self._step_soa = new_soa

    def _close_step(self, txn: Txn, old_soa: Record, new_soa: Record) -> bool:
        """Journal the open step; False if it changed nothing but the SOA."""
        diff = DiffCollector(self.origin, max(self._records, 0))
        nodes = self._dbs.nodes
        for key in sorted(self._base):
            was, now = self._base[key], txn.get(key, db=nodes)
            if was != now:  # (a node read, or changed and changed back)
                diff.node(key, was, now)
        self._base = {}
        if diff.overflow:
            self._overflow = True
            return True
        pop_soa(diff.removed)
        pop_soa(diff.added)
        if not diff.removed and not diff.added:
            return False
        self._steps.append(ChangeStep(old_soa, new_soa, tuple(diff.removed), tuple(diff.added)))
        return True

    # -- the end ---------------------------------------------------------------
    @translate
    def commit(self, new_soa: Record | None = None, *, serial_policy: str = "increment",
               now: float | None = None) -> ChangeSet:
        """Write the change, with the apex SOA `new_soa` or (None) the stored
        SOA with the serial `serial.next_serial` gives by `serial_policy`
        at `now` (default: the clock); commit; returns what changed.

        The serial must increase (RFC 1982) over the open step's (StoreError).
        The change goes to the transfer journal as one entry per step (the
        journal is cleared where it is larger than the zone), the update-log
        entries to the update log, then the hooks are called; all in the one
        LMDB write transaction, so anything raising leaves none of it."""
        txn = self._live()
        try:
            old = self._step_soa
            if new_soa is None:
                if serial_policy not in SERIAL_POLICIES:
                    raise StoreError(f"serial policy {serial_policy!r} is not one of "
                                     f"{', '.join(SERIAL_POLICIES)}")
                assert isinstance(self._soa.rdata, SOA)
                serial = next_serial(serial_policy, self._soa.rdata.serial,
                                     self._soa.rdata.serial, True,
                                     time.time() if now is None else now)
                new_soa = dataclasses.replace(
                    self._soa, rdata=dataclasses.replace(self._soa.rdata, serial=serial))
            elif new_soa.rtype != RType.SOA or new_soa.name != self.origin:
                raise StoreError("commit needs the zone's SOA")
            apex = self._load(self.origin)
            if RType.SOA not in apex:
                self._records += 1
            apex[RType.SOA] = RRset(new_soa.ttl, (new_soa.rdata,))
            self._flush(txn)
            stepped = self._close_step(txn, old, new_soa)
            if not self._steps and not self._overflow or stepped:
                assert isinstance(old.rdata, SOA) and isinstance(new_soa.rdata, SOA)
                if not serial_gt(new_soa.rdata.serial, old.rdata.serial):
                    raise StoreError(f"zone {self.origin}: serial {new_soa.rdata.serial} is "
                                     f"not higher than {old.rdata.serial}")
                if not stepped:  # only the SOA changed: an empty step
                    self._steps.append(ChangeStep(old, new_soa, (), ()))
            change = commit_zone(txn, self._dbs, self.origin, self._area, self._records,
                                 self.meta, None if self._overflow else self._steps,
                                 journaled=self._journaled, update_log=self._log,
                                 hooks=self._hooks)
            self._txn = None
            txn.commit()
        except BaseException:
            self.abort()
            raise
        return change

    def abort(self) -> None:
        """Drop every change; the zone stays as it was. Idempotent."""
        if self._thread != threading.get_ident():
            raise StoreError("a zone transaction must be used from the thread that began it")
        txn, self._txn = self._txn, None
        self._key, self._node, self._base = None, {}, {}
        if txn is not None:
            txn.abort()


__all__ = ["ChangeSet", "CommitHook", "ZoneTransaction", "commit_zone"]
