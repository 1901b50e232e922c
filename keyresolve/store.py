"""The LMDB zone store: the only module that imports lmdb.

One LMDB environment holds every zone a server serves, in named sub-DBs:

- ``zones``: zone prefix of the origin -> msgpack map
  ``{serial, records, loaded_at, sources: [[path, sha256], ...]}``;
- ``nodes``: zone prefix + owner key relative to the origin -> msgpack array
  ``[[rtype, ttl, [rdata wire, ...]], ...]``, types ascending.

The zone prefix is ``origin.key() + b"\\x01"``. The byte 0x01 never occurs in
a name key (labels are ``[a-z0-9_-]``, local parts printable ASCII), so one
zone's nodes are exactly the keys that start with its prefix, even when a
child zone (``eng.example.com``) lives in the same environment as its parent
(``example.com``): their prefixes diverge at the 0x01 byte. The ``zones`` DB
uses the same prefix rather than the bare ``origin.key()`` because LMDB
rejects empty keys, and the root's key is empty.

Writers replace a zone in one write transaction; readers take a `Snapshot`
bound to one read transaction and, by LMDB's MVCC, see one complete version
of every zone for as long as they hold it.
"""

from __future__ import annotations

import os
import contextlib
import functools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb
import msgpack

from .codes import RType
from .errors import KeyresolveError, StoreError
from .names import Name
from .records import SOA, Record, rdata_from_wire
from .zone import Node, RRset, Zone

#: Sub-DB of zone metadata.
ZONES_DB = b"zones"
#: Sub-DB of zone nodes.
NODES_DB = b"nodes"
#: Reserved: the change journal incremental transfers will read. Not used yet.
JOURNAL_DB = b"journal"
#: Named sub-DBs the environment may hold: the three above plus room for one more.
MAX_DBS = 4
#: Concurrent read transactions over all processes sharing the environment
#: (LMDB's default 126 is tight with several `--workers` each holding snapshots).
MAX_READERS = 1024
#: Default map size: 16 GiB of address space (the file grows only as written;
#: 1,000,000-key zones take well under 1 GiB).
DEFAULT_MAP_SIZE = 1 << 34
#: Separates the zone's origin key from the owner key in `nodes` keys.
ZONE_SEP = b"\x01"


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
    return origin.key() + ZONE_SEP


def node_key(origin: Name, name: Name) -> bytes:
    """The `nodes` key of owner `name` in the zone at `origin`."""
    origin_key = origin.key()
    return origin_key + ZONE_SEP + name.key()[len(origin_key):]


def encode_node(node: Node, pack: Callable[[Any], bytes] = msgpack.packb) -> bytes:
    """The stored form of a node: ``[[rtype, ttl, [rdata wire, ...]], ...]``.

    `pack` may be a bulk loader's own ``msgpack.Packer().pack`` (a Packer is
    faster but not thread-safe, so none is shared at module level).
    """
    return pack([[int(rtype), node[rtype].ttl, [rd.to_wire() for rd in node[rtype].rdatas]]
                 for rtype in sorted(node)])


def decode_node(value: bytes) -> Node:
    """Inverse of `encode_node`; raises StoreError on anything malformed."""
    try:
        items = msgpack.unpackb(value, raw=False, use_list=False)
        if type(items) is not tuple or not items:
            raise StoreError("node is not a non-empty array")
        node: Node = {}
        for item in items:
            if type(item) is not tuple or len(item) != 3:
                raise StoreError("node entry is not [rtype, ttl, rdatas]")
            rtype, ttl, rdatas = item
            if type(rtype) is not int or type(ttl) is not int or type(rdatas) is not tuple:
                raise StoreError("node entry has wrong field types")
            node[rtype] = RRset(ttl, tuple(rdata_from_wire(rtype, fields) for fields in rdatas))
        return node
    except StoreError:
        raise
    except (KeyresolveError, ValueError, TypeError, msgpack.UnpackException) as exc:
        raise StoreError(f"corrupt node in store: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ZoneInfo:
    """Metadata of one stored zone."""

    origin: Name
    serial: int
    records: int
    loaded_at: float
    sources: tuple[tuple[str, bytes], ...]


def _decode_info(origin: Name, value: bytes) -> ZoneInfo:
    try:
        meta = msgpack.unpackb(value, raw=False)
        sources = tuple((str(path), bytes(digest)) for path, digest in meta["sources"])
        return ZoneInfo(origin, int(meta["serial"]), int(meta["records"]),
                        float(meta["loaded_at"]), sources)
    except (KeyError, ValueError, TypeError, msgpack.UnpackException) as exc:
        raise StoreError(f"corrupt metadata of zone {origin}: {exc}") from exc


def _origin_from_prefix(key: bytes) -> Name:
    try:
        return Name.from_key(key[:-len(ZONE_SEP)])
    except (UnicodeDecodeError, ValueError) as exc:
        raise StoreError(f"corrupt zone key {key!r}") from exc


def _delete_prefix(cursor: lmdb.Cursor, prefix: bytes) -> int:
    """Delete every key starting with `prefix`; returns how many."""
    count = 0
    if not cursor.set_range(prefix):
        return 0
    while cursor.key().startswith(prefix):
        count += 1
        if not cursor.delete():  # delete() moves to the next key
            break
    return count


class Store:
    """An LMDB environment holding zones (see the module docstring for the layout)."""

    @_translate
    def __init__(self, path: str | Path, *, map_size: int = DEFAULT_MAP_SIZE,
                 readonly: bool = False) -> None:
        """Open (and, unless `readonly`, create) the environment directory `path`."""
        self.path = Path(path)
        self.readonly = readonly
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
                     loaded_at: float | None = None) -> None:
        """Replace the zone at `zone.origin` by `zone`, atomically.

        One write transaction deletes every old node, writes the new ones and
        the metadata; readers see either the whole old or the whole new zone.
        If anything raises midway (including while iterating `zone`), the
        transaction aborts and the old zone stays.
        `sources` are (path, sha256 digest) pairs of the files compiled.
        """
        self._check_writable()
        origin = zone.origin
        if origin.is_mailbox:
            raise StoreError(f"zone origin {origin} is a mailbox")
        prefix = zone_prefix(origin)
        origin_key = origin.key()
        skip = len(origin_key)
        counter = [0]
        apex: list[Node] = []
        pack = msgpack.Packer().pack

        def items() -> Iterator[tuple[bytes, bytes]]:
            for name, node in zone.iter_nodes():
                key = name.key()
                if not key.startswith(origin_key):  # keys end labels with \0: exact test
                    raise StoreError(f"{name} is outside zone {origin}")
                if name == origin:
                    apex.append(node)
                counter[0] += sum(len(rrset.rdatas) for rrset in node.values())
                yield prefix + key[skip:], encode_node(node, pack)

        with self._env.begin(write=True) as txn:
            cursor = txn.cursor(db=self._nodes)
            _delete_prefix(cursor, prefix)
            # MDB_APPEND is much faster for bulk loads but requires every key
            # to sort after the last one in the DB: true when nothing follows
            # this zone's (now empty) range.
            append = not cursor.set_range(prefix)
            cursor.putmulti(items(), append=append)
            if not apex or RType.SOA not in apex[0]:
                raise StoreError(f"zone {origin} has no SOA at its apex")
            soa = apex[0][RType.SOA].rdatas[0]
            assert isinstance(soa, SOA)
            meta = {"serial": soa.serial, "records": counter[0],
                    "loaded_at": time.time() if loaded_at is None else loaded_at,
                    "sources": [[os.fspath(path), digest] for path, digest in sources]}
            txn.put(prefix, msgpack.packb(meta), db=self._zones)

    @_translate
    def delete_zone(self, origin: Name) -> bool:
        """Delete a zone and all its nodes; False if it was not stored."""
        self._check_writable()
        prefix = zone_prefix(origin)
        with self._env.begin(write=True) as txn:
            existed = txn.delete(prefix, db=self._zones)
            _delete_prefix(txn.cursor(db=self._nodes), prefix)
        return existed

    # -- metadata ------------------------------------------------------------
    @_translate
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
    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """A `Snapshot` bound to one read transaction, for the `with` block."""
        try:
            txn = self._env.begin(write=False)
        except lmdb.Error as exc:
            raise StoreError(f"LMDB: {exc}") from exc
        try:
            yield Snapshot(txn, self._zones, self._nodes)
        finally:
            txn.abort()


class Snapshot:
    """A consistent view of every stored zone (one LMDB read transaction).

    Nodes are decoded on every `get_node`; a per-snapshot cache would help
    only if one snapshot answered many queries for the same names.
    """

    def __init__(self, txn: lmdb.Transaction, zones_db: Any, nodes_db: Any) -> None:
        """Wrap an open read transaction (use `Store.snapshot`)."""
        self._txn = txn
        self._zones = zones_db
        self._nodes = nodes_db
        self._views: dict[Name, LmdbZoneView] = {}

    @_translate
    def get_zone(self, origin: Name) -> LmdbZoneView | None:
        """The zone whose origin is exactly `origin`, or None."""
        view = self._views.get(origin)
        if view is None:
            value = self._txn.get(zone_prefix(origin), db=self._zones)
            if value is None:
                return None
            view = LmdbZoneView(self, _decode_info(origin, value))
            self._views[origin] = view
        return view

    def find_zone(self, name: Name) -> LmdbZoneView | None:
        """The closest enclosing stored zone of `name`, or None.

        (Named as the `find_zone` callback of keyresolve.authority, which
        expects None for "not ours".)
        """
        for domain in name.ancestors():
            view = self.get_zone(domain)
            if view is not None:
                return view
        return None

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
            cursor = self._txn.cursor(db=self._nodes)
            if not cursor.set_range(prefix):
                return
            for key, value in cursor:
                if not key.startswith(prefix):
                    return
                yield key, value
        except lmdb.Error as exc:
            raise StoreError(f"LMDB: {exc}") from exc


class LmdbZoneView:
    """One stored zone, read through a `Snapshot` (implements `ZoneView`)."""

    def __init__(self, snapshot: Snapshot, info: ZoneInfo) -> None:
        """A view of the zone described by `info` (use `Snapshot.get_zone`)."""
        self._snapshot = snapshot
        self.info = info
        self.origin = info.origin
        self._origin_key = info.origin.key()
        self._prefix = zone_prefix(info.origin)

    @property
    def serial(self) -> int:
        """The serial recorded when the zone was stored."""
        return self.info.serial

    def _key(self, name: Name) -> bytes | None:
        key = name.key()
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
        """The apex SOA record; StoreError if the stored zone lacks one."""
        node = self.get_node(self.origin)
        if node is None or RType.SOA not in node:
            raise StoreError(f"stored zone {self.origin} has no SOA")
        rrset = node[RType.SOA]
        return Record(self.origin, RType.SOA, rrset.ttl, rrset.rdatas[0])

    def records(self) -> Iterator[Record]:
        """Every record in key order, streamed from a cursor."""
        skip = len(self._prefix)
        for key, value in self._snapshot._scan(self._prefix):
            try:
                name = Name.from_key(self._origin_key + key[skip:])
            except (UnicodeDecodeError, ValueError) as exc:
                raise StoreError(f"corrupt node key {key!r}") from exc
            node = decode_node(value)
            for rtype in sorted(node):
                yield from node[rtype].records(name, rtype)
