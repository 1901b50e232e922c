"""`ZoneWriter`: a transfer (AXFR, IXFR) applied to the store."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import msgpack

from ..authority.xfr import node_add
from ..protocol.codes import RType
from ..protocol.errors import FormError, StoreError
from ..protocol.names import Name
from ..protocol.records import Record, rdata_from_wire, soa_serial
from ..zonedata.model import Node, RRset
from ..zonedata.nodes import decode_node, encode_node, key_node, key_node_head
from .diff import diff_areas
from .env import TRANSFER_TXN_NODES, LmdbError, Txn, ZoneDbs, clear_range, put_or_append, translate
from .keys import NODE_AREAS, area_of, node_prefix, zone_prefix
from .transaction import CommitHook, ZoneTransaction, commit_zone

if TYPE_CHECKING:
    from .zones import Store

#: Records a full transfer collects for the journal entry of its change; past
#: it the journal is cleared (bounds memory; such a change is as big as most
#: zones, and secondaries behind us would be sent a full transfer anyway).
MAX_TRANSFER_DIFF_RECORDS = 100_000


class ZoneWriter:
    """Applies one transfer to the store (a `keyresolve.authority.xfr.TransferWriter`).

    Readers keep seeing the old zone until commit; abort (or an error) leaves
    it intact.
    - A delta (IXFR) is a `ZoneTransaction`, from the first `begin_delta` to
      `commit`: each step is one journal entry (`ZoneTransaction.mark_step`).
    - A full transfer (AXFR) writes the zone's node area that is not served
      (see `keyresolve.store.zones`), committing every `txn_nodes` nodes so
      LMDB's dirty pages, which it holds in memory until a transaction ends,
      stay bounded whatever the zone's size (record by record through a
      `ZoneTransaction` would hold them all); `commit`'s transaction
      switches the zone to that area through `transaction.commit_zone` (the
      commit of every zone change), then the old area is deleted in bounded
      steps. What an abort, an error or a crash leaves in the unserved area
      is never read, and the next full transfer clears it first.

    LMDB binds a write transaction to the thread that began it and allows one
    at a time per environment: every call must come from that thread
    (StoreError otherwise), and the caller must not begin another write there
    (a second writer, a compile, `delete_zone`) before this one ends: it
    would wait for this transaction forever. Writers in other threads or
    processes wait until it ends (between a full transfer's transactions they
    may run; one zone must not have two transfers at a time).

    Records of one owner usually arrive together (ours send store order), and
    the writer keeps the current node in memory until the owner changes; an
    owner seen again is read back and merged, so any order is applied right.
    """

    def __init__(self, store: Store, origin: Name, *, journal: bool = True,
                 primary: str | None = None, txn_nodes: int = TRANSFER_TXN_NODES,
                 hooks: Iterable[CommitHook] = ()) -> None:
        """Use `Store.zone_writer`."""
        self._store = store
        self._dbs: ZoneDbs = store.dbs
        self.origin = origin
        self.journal = journal
        self.primary = primary
        self.txn_nodes = txn_nodes
        self._hooks = list(hooks)
        self._prefix = zone_prefix(origin)  # of the zone's metadata and journal
        self._nodes = self._prefix  # of the area written, set when begun
        self._served: int | None = None  # the area served when begun (None: no zone)
        self._area = NODE_AREAS[0]
        self._origin_key = origin.store_key()
        self._txn: Txn | None = None  # a full transfer's current transaction
        self._delta: ZoneTransaction | None = None
        self._thread: int | None = None
        self._full = False
        self._puts = 0  # nodes written in this transaction of a full transfer
        self._last = b""  # a full transfer's greatest key written: greater ones are new
        self._append = False  # a full transfer's puts may still be appends
        self._records = 0
        self._key: bytes | None = None
        self._node: Node = {}
        # The current node when it came from `add_packed_keys` only: its KEY
        # rdatas, packed (then `_node` is empty), and their TTL.
        self._packed: list[bytes] | None = None
        self._packed_ttl = 0
        self._packed_heads: dict[int, bytes] = {}  # TTL -> start of a KEY-only node
        self._steps: list[list] = []  # a delta's [old_soa, new_soa] per step
        self._pack = msgpack.Packer().pack

    # -- transactions ----------------------------------------------------------
    def _check_thread(self) -> None:
        if self._thread is not None and self._thread != threading.get_ident():
            raise StoreError("a zone writer must be used from the thread that began it")

    def _live(self) -> Txn:
        self._check_thread()
        if self._txn is None:
            raise StoreError("no transfer begun")
        return self._txn

    def _live_delta(self) -> ZoneTransaction:
        self._check_thread()
        if self._delta is None:
            raise StoreError("no transfer begun")
        return self._delta

    def _served_area(self, txn: Txn) -> int | None:
        value = txn.get(self._prefix, db=self._dbs.zones)
        return None if value is None else area_of(value)

    def _clear_area(self, area: int) -> None:
        """Delete the zone's nodes in `area`, `txn_nodes` per transaction."""
        clear_range(self._dbs, node_prefix(self.origin, area), self.txn_nodes)

    # -- TransferWriter ------------------------------------------------------------
    @translate
    def begin_full(self) -> None:
        """Start a full transfer into the unserved node area (cleared first)."""
        self._check_thread()
        if self._txn is not None or self._delta is not None or self._thread is not None:
            raise StoreError("transfer already begun")
        self._thread = threading.get_ident()
        self._full = True
        with self._dbs.begin_read() as txn:
            self._served = self._served_area(txn)
        self._area = NODE_AREAS[1] if self._served == NODE_AREAS[0] else NODE_AREAS[0]
        self._nodes = node_prefix(self.origin, self._area)
        self._clear_area(self._area)
        self._txn = self._dbs.begin_write()
        self._append = True
        self._records = 0

    @translate
    def begin_delta(self, old_soa: Record) -> None:
        """Start an IXFR step; the first must start at the stored serial."""
        if self._full:
            self._live()
            raise StoreError("delta step inside a full transfer")
        if self._delta is None:
            self._check_thread()
            if self._thread is not None:
                raise StoreError("transfer already begun")
            self._thread = threading.get_ident()
            try:
                delta = ZoneTransaction(self._dbs, self.origin, hooks=self._hooks,
                                        journaled=self.journal)
            except StoreError as exc:
                if "no zone" in str(exc):
                    raise StoreError(f"no zone {self.origin} to apply a delta to") from None
                raise
            if delta.info.serial != soa_serial(old_soa):
                delta.abort()  # nothing begun: release the write lock
                # The peer's delta, made against other data than ours (the
                # zone changed since the IXFR was asked): the secondary then
                # transfers the zone in full.
                raise FormError(f"delta starts at serial {soa_serial(old_soa)}, "
                                f"zone {self.origin} is at {delta.info.serial}")
            self._delta = delta
        else:
            delta = self._live_delta()
            old, new = self._steps[-1]
            if new is None:
                raise StoreError("a delta step without additions' SOA")
            delta.mark_step(old, new)
        self._steps.append([old_soa, None])

    def begin_additions(self, new_soa: Record) -> None:
        """The current step's additions lead to `new_soa`."""
        if self._full:
            self._live()
            raise StoreError("no delta step begun")
        self._live_delta()
        self._steps[-1][1] = new_soa

    def _load(self, record: Record) -> Node:
        if record.rtype == RType.SOA:
            raise StoreError("SOA records are set by commit, not added or removed")
        txn = self._live()
        name_key = record.name.store_key()
        if not name_key.startswith(self._origin_key):
            raise StoreError(f"{record.name} is outside zone {self.origin}")
        key = self._nodes + name_key[len(self._origin_key):]
        if key == self._key and self._packed is not None:
            # other records join it
            self._node = decode_node(key_node(self._packed_head(), self._packed))
            self._packed = None
        if key != self._key:
            txn = self._flush(txn)
            # A full transfer starts from an empty area; ours sends owners in
            # key order, so only a key not above the last written needs a read.
            value = None if key > self._last else txn.get(key, db=self._dbs.nodes)
            self._key = key
            self._node = {} if value is None else decode_node(value)
        return self._node

    def _flush(self, txn: Txn) -> Txn:
        """Write the current node; returns the transaction to go on with."""
        key = self._key
        if key is None:
            return txn
        nodes = self._dbs.nodes
        packed = self._packed
        if packed is None and not self._node:
            txn.delete(key, db=nodes)
        else:
            # A packed node costs one call (a full transfer's every owner):
            # the head comes from the cache here, `_packed_head` on a miss.
            value = (encode_node(self._node, self._pack) if packed is None
                     else key_node(self._packed_heads.get(self._packed_ttl)
                                   or self._packed_head(), packed))
            # Ours arrive in key order: appends while they work (see `put_or_append`).
            self._append = put_or_append(txn.put, key, value, self._append and key > self._last,
                                         db=nodes)
        self._key, self._node, self._packed = None, {}, None
        return self._counted(txn, key)

    def _counted(self, txn: Txn, key: bytes) -> Txn:
        """A full transfer wrote `key`: commits every `txn_nodes` nodes;
        returns the transaction to go on with."""
        if key > self._last:
            self._last = key
        self._puts += 1
        if self._puts >= self.txn_nodes:
            self._txn = None
            txn.commit()  # the unserved area: readers never look at it
            txn = self._txn = self._dbs.begin_write()
            self._puts = 0
        return txn

    @translate
    def delete(self, record: Record) -> None:
        """Remove one record (FormError if the zone does not hold it)."""
        if self._full:
            raise StoreError("delete inside a full transfer")
        self._live_delta().delete(record)

    @translate
    def add(self, record: Record) -> None:
        """Add one record (in a delta, FormError if the zone already holds it)."""
        if not self._full:
            self._live_delta().add(record)
        elif node_add(self._load(record), record, strict=False):
            self._records += 1

    @translate
    def add_packed_keys(self, items: Iterable[tuple[bytes, int, bytes]]) -> None:
        """`add` of mailbox KEY records, each given as (owner key relative to
        the origin, TTL, packed rdata) (see `xfr.TransferWriter`). The owners
        of a full transfer from us come in key order, each new: their nodes
        are built as bytes; anything else goes through `add`."""
        if not self._full:
            self._live_delta()
            for key, ttl, rdata in items:
                self.add(self._packed_record(key, ttl, rdata))
            return
        txn = self._live()
        prefix = self._nodes
        for key, ttl, rdata in items:
            full_key = prefix + key
            if full_key == self._key and self._packed is not None:
                self._packed_ttl = ttl  # the RRset takes the latest TTL (`xfr.node_add`)
                if rdata not in self._packed:
                    self._packed.append(rdata)
                    self._records += 1
            elif full_key > self._last and full_key != self._key:
                txn = self._flush(txn)
                self._key = full_key
                self._packed = [rdata]
                self._packed_ttl = ttl
                self._records += 1
            else:  # an owner written or begun before: merged by `add`
                self.add(self._packed_record(key, ttl, rdata))
                txn = self._live()

    def _packed_record(self, key: bytes, ttl: int, rdata: bytes) -> Record:
        name = Name.from_store_key(self._origin_key + key)
        return Record(name, RType.KEY, ttl,
                      rdata_from_wire(RType.KEY, msgpack.unpackb(rdata, use_list=False)))

    def _packed_head(self) -> bytes:
        """`key_node_head` of the packed current node's TTL, cached by TTL."""
        head = self._packed_heads.get(self._packed_ttl)
        if head is None:
            head = self._packed_heads[self._packed_ttl] = key_node_head(self._packed_ttl)
        return head

    @translate
    def commit(self, soa: Record) -> None:
        """Set the apex SOA, the metadata and the journal; commit (a full
        transfer's last transaction switches the zone to the new area, then
        the old one is deleted)."""
        if soa.rtype != RType.SOA or soa.name != self.origin:
            if self._full:
                self._live()
            else:
                self._live_delta()
            raise StoreError("commit needs the zone's SOA")
        if not self._full:
            self._commit_delta(soa)
            return
        txn = self._flush(self._live())
        dbs = self._dbs
        if self._served_area(txn) != self._served:
            raise StoreError(f"zone {self.origin} changed during the transfer")
        apex = txn.get(self._nodes, db=dbs.nodes)
        node = {} if apex is None else decode_node(apex)
        if RType.SOA not in node:
            self._records += 1
        node[RType.SOA] = RRset(soa.ttl, (soa.rdata,))
        txn.put(self._nodes, encode_node(node, self._pack), db=dbs.nodes)
        # The old version is still in the served area: diff it against the
        # new one node by node, as a compile does.
        diff = None
        if self.journal and self._served is not None and dbs.journal is not None:
            diff = diff_areas(txn, dbs.nodes, self.origin, self._served, self._area,
                              min(self._records, MAX_TRANSFER_DIFF_RECORDS))
        commit_zone(txn, dbs, self.origin, self._area, self._records,
                    self._transfer_meta(), diff, hooks=self._hooks)
        self._txn = None
        txn.commit()
        old = self._served if self._served != self._area else None
        self._end()
        if old is not None:
            self._clear_area(old)

    def _transfer_meta(self) -> dict:
        now = time.time()
        return {"serial": None, "records": None, "loaded_at": now, "sources": [],
                "primary": self.primary, "transferred_at": now, "area": None}

    def _commit_delta(self, soa: Record) -> None:
        delta = self._live_delta()
        old, new = self._steps[-1]
        if new is None:
            raise StoreError("a delta step without additions' SOA")
        delta.mark_step(old, new)
        delta.meta = self._transfer_meta()
        self._delta = None
        delta.commit(soa)
        self._end()

    def _end(self) -> None:
        txn, self._txn = self._txn, None
        delta, self._delta = self._delta, None
        self._key, self._node, self._steps, self._packed = None, {}, [], None
        if txn is not None:
            txn.abort()
        if delta is not None:
            delta.abort()

    def abort(self) -> None:
        """Drop everything written; the old zone stays. Idempotent."""
        self._check_thread()
        try:
            begun_full = self._full and self._txn is not None
            self._end()
            if begun_full:  # what the transfer wrote so far
                self._clear_area(self._area)
        except LmdbError as exc:
            raise StoreError(f"LMDB: {exc}") from exc
