"""The LMDB zone store: `Store`, its readers (`Snapshot`, `LmdbZoneView`).

One LMDB environment (`keyresolve.store.env`, the only module of the zone
store importing lmdb) holds every zone a server serves, in named sub-DBs:

- ``zones``: zone prefix of the origin -> msgpack map
  ``{serial, records, loaded_at, sources: [[path, sha256], ...]}``, plus
  ``primary`` and ``transferred_at`` for a zone written by a transfer;
- ``nodes``: node prefix + owner key relative to the origin -> the stored
  node (`keyresolve.zonedata.nodes`). The node prefix is the origin key +
  an area byte (1 or 2, ``area`` in the zone's metadata, 1 when absent): a
  full transfer or a compile writes the area not served, in bounded
  transactions, and its last transaction switches the zone to it;
- ``journal``: the changes incremental transfers (IXFR) send, per zone, and
  ``updatelog``: the update log of registrations (`keyresolve.store.journal`).

The zone prefix is ``origin.store_key() + b"\\x01"`` (`keyresolve.store.keys`).
The bytes 0x01 and 0x02 never occur in a name key (labels are
``[a-z0-9_-]``, local parts printable ASCII), so one zone's nodes are
exactly the keys that start with its prefix, even when a child zone
(``eng.example.com``) lives in the same environment as its parent
(``example.com``): their prefixes diverge at the area byte. The ``zones``
DB uses the same prefix rather than the bare ``origin.store_key()`` because
LMDB rejects empty keys, and the root's key is empty.

The modules of the package, by concern: `env` (the environment), `keys`
(keys and zone metadata), `journal` (the transfer journal and the update
log), `diff` (record diffing for the journal), `transaction` (the one
commit of every zone change, and `ZoneTransaction`), `compile` (the
compiles of `Store.load_zone_file`), `writer` (`ZoneWriter`, transfers).

Every zone change ends in `transaction.commit_zone`, in one write
transaction (a full transfer or a compile writes its nodes in bounded ones
first and switches the zone's area in its last); readers take a `Snapshot`
bound to one read transaction and, by LMDB's MVCC, see one complete version
of every zone for as long as they hold it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgpack

from ..protocol.codes import RType
from ..protocol.errors import StoreError
from ..protocol.names import Name, store_key_ancestors
from ..protocol.records import Record
from ..zonedata.model import Node, Zone
from ..zonedata.nodes import decode_node, encode_node, node_tuples
from ..zonedata.zonefile import CompiledZone
from .compile import compile_meta, load_zone_file
from .diff import DiffCollector
from .env import (DEFAULT_MAP_SIZE, TRANSFER_TXN_NODES, LmdbError, Txn, delete_prefix,
                  merge_nodes, open_zone_env, scan_prefix, translate)
from .journal import (JournalEntry, JournalInfo, decode_journal_info, journal_clear,
                      journal_walk, update_log_read)
from .keys import (NODE_AREAS, ZONE_SEP, ZoneInfo, area_of, decode_info, node_prefix,
                   origin_from_prefix, zone_prefix)
from .transaction import CommitHook, ZoneTransaction, commit_zone
from .writer import ZoneWriter

#: Entries of the read cache a store keeps for one version of its data (mailbox
#: routes, closest zones, SOAs): bounds what queries for made-up names fill.
MAX_CACHED = 4096
_UNKNOWN = object()  # not in the read cache (None is a cached answer)


class Store:
    """An LMDB environment holding zones (see the module docstring for the layout)."""

    @translate
    def __init__(self, path: str | Path, *, map_size: int = DEFAULT_MAP_SIZE,
                 readonly: bool = False) -> None:
        """Open (and, unless `readonly`, create) the environment directory `path`."""
        self.path = Path(path)
        self.readonly = readonly
        self._compile_lock = threading.Lock()  # compiles share the scratch DB
        if not readonly:
            self.path.mkdir(parents=True, exist_ok=True)
        #: The environment and its sub-DBs (for the store's other modules).
        self.dbs = open_zone_env(self.path, map_size=map_size, readonly=readonly)
        self._env = self.dbs.env
        self._zones = self.dbs.zones
        self._nodes = self.dbs.nodes
        self._journal = self.dbs.journal
        self._scratch = self.dbs.scratch
        #: Called with the `ChangeSet` of every commit of a zone through this
        #: store (compiles, transfers, transactions), last in its write
        #: transaction: what one raises aborts the commit.
        self.commit_hooks: list[CommitHook] = []

    # -- lifecycle -----------------------------------------------------------
    def close(self) -> None:
        """Close the environment; open snapshots become unusable."""
        self._env.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @translate
    def env_size(self) -> int:
        """Bytes of the environment actually in use (pages written)."""
        info = self._env.info()
        return (info["last_pgno"] + 1) * self._env.stat()["psize"]

    # -- writing -------------------------------------------------------------
    def _check_writable(self) -> None:
        if self.readonly:
            raise StoreError("the store is open read-only")

    @translate
    def replace_zone_reference(self, zone: Zone, sources: Iterable[tuple[str, bytes]] = (), *,
                     loaded_at: float | None = None, journal: bool = True) -> None:
        """Replace the zone at `zone.origin` by `zone`, atomically: the
        reference (the whole zone in memory) that the tests hold the compiles
        (`load_zone_file`), transfers and transactions to.

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
            diff: DiffCollector | None = None
            old = txn.get(prefix, db=self._zones)
            area = NODE_AREAS[0] if old is None else area_of(old)
            nodes = node_prefix(origin, area)
            if journal and old is not None:
                diff = DiffCollector(origin, len(zone))
                merge_nodes(cursor, nodes, items(), diff.node)
            else:
                for other in NODE_AREAS:  # the other may hold a cut transfer's leftovers
                    delete_prefix(cursor, node_prefix(origin, other))
                # MDB_APPEND is much faster for bulk loads but requires every key
                # to sort after the last one in the DB: true when nothing follows
                # this zone's (now empty) range.
                append = not cursor.set_range(nodes)
                cursor.putmulti(items(), append=append)
            commit_zone(txn, self.dbs, origin, area, len(zone), compile_meta(sources, loaded_at),
                        diff, hooks=self.commit_hooks)

    @translate
    def delete_zone(self, origin: Name) -> bool:
        """Delete a zone and all its nodes; False if it was not stored."""
        self._check_writable()
        prefix = zone_prefix(origin)
        with self._env.begin(write=True) as txn:
            existed = txn.delete(prefix, db=self._zones)
            for area in NODE_AREAS:
                delete_prefix(txn.cursor(db=self._nodes), node_prefix(origin, area))
            if self._journal is not None:
                journal_clear(txn, self._journal, origin)
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
        return ZoneWriter(self, origin, journal=journal, primary=primary, txn_nodes=txn_nodes,
                          hooks=self.commit_hooks)

    def begin(self, origin: Name, *, hooks: Iterable[CommitHook] = ()) -> ZoneTransaction:
        """A `ZoneTransaction` changing the stored zone at `origin` (StoreError
        if it is not stored); `hooks` are called at its commit after the
        store's `commit_hooks`."""
        self._check_writable()
        return ZoneTransaction(self.dbs, origin, hooks=[*self.commit_hooks, *hooks])

    @translate
    def load_zone_file(self, path: str, origin: Name, *, text: str | None = None,
                       loaded_at: float | None = None, journal: bool = True,
                       include_dirs: Iterable[str] = (),
                       before_commit: Callable[[], None] | None = None,
                       serial_policy: str | None = None, now: float | None = None,
                       overlay: Sequence[Record] = ()) -> CompiledZone:
        """Compile a zone file straight into the store, with the `overlay`
        records added: see `keyresolve.store.compile.load_zone_file` (one
        compile at a time per store; the store's `commit_hooks` are called)."""
        self._check_writable()
        with self._compile_lock:
            return load_zone_file(self.dbs, path, origin, text=text, loaded_at=loaded_at,
                                  journal=journal, include_dirs=include_dirs,
                                  before_commit=before_commit, serial_policy=serial_policy,
                                  now=now, hooks=self.commit_hooks, overlay=overlay)

    # -- the update log --------------------------------------------------------
    @translate
    def update_log(self, origin: Name, start: int = 0) -> list[bytes]:
        """The entries of the zone's update log (`ZoneTransaction.log_update`)
        from the `start`-th, in the order written. Never trimmed: it
        survives reloads, transfers and the transfer journal's eviction."""
        if self.dbs.updates is None:
            return []
        with self.dbs.begin_read() as txn:
            return list(update_log_read(txn, self.dbs.updates, origin, start))

    # -- journal ---------------------------------------------------------------
    @translate
    def journal_info(self, origin: Name) -> JournalInfo | None:
        """The zone's journal chain, or None if it has none."""
        if self._journal is None:
            return None
        with self._env.begin() as txn:
            value = txn.get(zone_prefix(origin), db=self._journal)
        return None if value is None else decode_journal_info(value)

    @translate
    def journal_steps(self, origin: Name, from_serial: int) -> list[JournalEntry] | None:
        """The journal entries leading from `from_serial` to the zone's current
        serial (oldest first; empty if it is current), or None when the
        journal does not reach back to `from_serial`. The entries keep their
        data, so they stay usable after this call (see `Snapshot.journal_steps`
        for the lazy form)."""
        with self.snapshot() as snap:
            return snap._journal_steps(origin, from_serial, keep=True)

    @translate
    def clear_journal(self, origin: Name) -> None:
        """Forget the zone's journal (secondaries then get full transfers)."""
        self._check_writable()
        with self._env.begin(write=True) as txn:
            journal_clear(txn, self._journal, origin)

    # -- metadata ------------------------------------------------------------
    @translate
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
        return None if value is None else decode_info(origin, value)

    @translate
    def zone_names(self) -> list[Name]:
        """Origins of every stored zone, in key order."""
        with self._env.begin() as txn:
            return [origin_from_prefix(key)
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
        except LmdbError as exc:
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

    def __init__(self, txn: Txn, zones_db: Any, nodes_db: Any,
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

    @translate
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
        prefix = zone_key + bytes((area_of(meta),))
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
            view = views[origin] = LmdbZoneView(self, decode_info(origin, value))
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

    @translate
    def zone_names(self) -> list[Name]:
        """Origins of every zone in this snapshot."""
        return [origin_from_prefix(key)
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

    @translate
    def _journal_steps(self, origin: Name, from_serial: int,
                       keep: bool) -> list[JournalEntry] | None:
        view = self.get_zone(origin)
        if view is None or self._journal is None:
            return None
        return journal_walk(self._journal_get, origin, view.serial, from_serial, keep)

    @translate
    def _journal_get(self, key: bytes) -> bytes | None:
        return self._txn.get(key, db=self._journal)

    # -- used by LmdbZoneView ------------------------------------------------
    @translate
    def _get(self, key: bytes) -> bytes | None:
        return self._txn.get(key, db=self._nodes)

    @translate
    def _first_with_prefix(self, prefix: bytes) -> bool:
        cursor = self._txn.cursor(db=self._nodes)
        # prefix + b"\x00" is the smallest key strictly longer than prefix
        # that starts with it, so the prefix's own key is skipped.
        return cursor.set_range(prefix + b"\x00") and cursor.key().startswith(prefix)

    def _scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        try:
            yield from scan_prefix(self._txn.cursor(db=self._nodes), prefix)
        except LmdbError as exc:
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
            except (UnicodeDecodeError, ValueError) as exc:
                raise StoreError(f"corrupt node {key!r}: {exc}") from exc
            items = node_tuples(value)
            name = f"{local}@{text}" if at else text
            apex = len(key) == skip
            for rtype, ttl, rdatas in items:
                if apex and rtype == RType.SOA:
                    continue
                for rdata in rdatas:
                    yield pack([name, rtype, ttl, rdata])


