"""The key ring: the public keys a user holds, in LMDB (docs/client.md).

One LMDB environment (a directory, 0700; files 0600: it says whom the user
writes to) with two sub-DBs:

- ``entry``: address (lower-case UTF-8) || 0x00 || usage (u8) || state (u8:
  0 accepted, 1 pending) -> msgpack ``[algorithm, usage, key flags, key,
  source, server, fetched_at, ttl, flags]``;
- ``id``: key id (8 bytes) || the entry's key -> empty: `find` by key id prefix.

At most one accepted key per (address, usage), and at most one pending one.
The policy of `put` (trust on first use, as ssh's known_hosts):

- a key the user adds (source "added" or "own") is accepted, replacing the
  one held, and drops a pending one;
- a fetched key is accepted when none is held; when it is the one held, the
  held entry's server, time, TTL and flags are refreshed; when it differs,
  it is kept as pending beside the accepted one, which stays in use until
  `accept` promotes the pending one;
- a fetched key flagged INTERIM is never stored (issue #21).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import lmdb
import msgpack

from ..protocol.errors import InvalidRecord, StoreError
from ..protocol.records import KEY, KEY_ID_SIZE, KeyFlag, KeyUsage, make_key_id

#: Map size of the ring's environment: an entry is ~100 bytes (1.3 KB for a
#: hybrid key), so 1 GiB holds hundreds of thousands; the file grows only as
#: far as it is written.
DEFAULT_MAP_SIZE = 1 << 30
#: Where an entry came from.
SOURCES = ("added", "fetched", "own")
Source = Literal["added", "fetched", "own"]
#: Longest address: a name's maximum (RFC 1035 2.3.4), as seal.MAX_SENDER.
MAX_ADDRESS = 255
#: What `put` did.
PutResult = Literal["new", "same", "replaced", "pending"]
_ENTRY_DB = b"entry"
_ID_DB = b"id"
_META_DB = b"meta"
_VERSION_KEY = b"version"
#: The layout version of the ring; a ring of another version is refused.
LAYOUT_VERSION = 1
_ACCEPTED = 0
_PENDING = 1


@dataclass(frozen=True)
class RingEntry:
    """A key the ring holds for `address`. `source` is "added" (by the user),
    "fetched" (from `server`, at `fetched_at` epoch seconds, with `ttl`) or
    "own" (the user's own key); `flags` the KEY flags as last seen; an entry
    not `accepted` is pending (a fetched key differing from the accepted one)."""

    address: str
    key: KEY
    source: Source
    server: str | None = None
    fetched_at: float | None = None
    ttl: int | None = None
    flags: int = 0
    accepted: bool = True

    @property
    def usage(self) -> KeyUsage:
        """The key's usage (one entry per usage and state)."""
        return self.key.usage

    @property
    def key_id(self) -> str:
        """The key id, hex (docs/protocol.md 6.4)."""
        return self.key.key_id


def normalize_address(address: str) -> str:
    """The form the ring files an address under: lower-case, no final dot."""
    return address.strip().rstrip(".").lower()


def _entry_key(address: str, usage: int, state: int) -> bytes:
    return _address_prefix(address) + bytes([usage, state])


def _address_prefix(address: str) -> bytes:
    return normalize_address(address).encode("utf-8", "surrogateescape") + b"\x00"


def _encode(entry: RingEntry) -> bytes:
    k = entry.key
    return msgpack.packb([int(k.algorithm), int(k.usage), k.flags, k.key, entry.source,
                          entry.server, entry.fetched_at, entry.ttl, entry.flags])


def _decode(db_key: bytes, value: bytes) -> RingEntry:
    address = db_key[:-3].decode("utf-8", "surrogateescape")
    try:
        (algorithm, usage, key_flags, key, source, server, fetched_at, ttl,
         flags) = msgpack.unpackb(value)
        return RingEntry(address, KEY(algorithm, usage, key, key_flags), source, server,
                         fetched_at, ttl, flags, db_key[-1] == _ACCEPTED)
    except (ValueError, TypeError, InvalidRecord, msgpack.UnpackException):
        raise StoreError(f"key ring entry for {address} is damaged") from None


def _translate(method: Callable) -> Callable:
    """LMDB's errors as StoreError (one line, the ring's path)."""
    @functools.wraps(method)
    def wrapper(self: KeyRing, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except lmdb.Error as exc:
            raise StoreError(f"key ring {self.path}: {exc}") from None
    return wrapper


class KeyRing:
    """The key ring in the directory `path` (created 0700); a context manager."""

    @_translate
    def __init__(self, path: str | Path, *, map_size: int = DEFAULT_MAP_SIZE) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"key ring {self.path}: {exc.strerror}") from None
        self._env = lmdb.open(str(self.path), subdir=True, max_dbs=3, map_size=map_size,
                              mode=0o600)
        self._entry = self._env.open_db(_ENTRY_DB)
        self._id = self._env.open_db(_ID_DB)
        self._meta = self._env.open_db(_META_DB)
        with self._env.begin(write=True) as txn:
            version = txn.get(_VERSION_KEY, db=self._meta)
            if version is None:
                txn.put(_VERSION_KEY, bytes([LAYOUT_VERSION]), db=self._meta)
            elif version != bytes([LAYOUT_VERSION]):
                self._env.close()
                raise StoreError(f"key ring {self.path} has layout version {version[0]}, "
                                 f"this keyresolve reads {LAYOUT_VERSION}")

    def close(self) -> None:
        """Close the environment."""
        self._env.close()

    def __enter__(self) -> KeyRing:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------
    @_translate
    def get(self, address: str) -> list[RingEntry]:
        """Every entry of `address`: by usage, the accepted one before a pending one."""
        prefix = _address_prefix(address)
        with self._env.begin() as txn:
            return [_decode(k, v) for k, v in _scan(txn.cursor(db=self._entry), prefix)]

    @_translate
    def addresses(self) -> list[str]:
        """Every address the ring holds a key for, sorted."""
        found: list[str] = []
        with self._env.begin() as txn:
            for db_key in txn.cursor(db=self._entry).iternext(values=False):
                address = db_key[:-3].decode("utf-8", "surrogateescape")
                if not found or found[-1] != address:
                    found.append(address)
        return found

    @_translate
    def find(self, key_id_prefix: str) -> list[RingEntry]:
        """The entries whose key id starts with the hex digits `key_id_prefix`
        (1 to 16, any case); ValueError for anything else."""
        text = key_id_prefix.strip().lower()
        if not 1 <= len(text) <= 2 * KEY_ID_SIZE or any(c not in "0123456789abcdef"
                                                         for c in text):
            raise ValueError(f"a key id is 1..{2 * KEY_ID_SIZE} hex digits")
        low = bytes.fromhex(text.ljust(2 * KEY_ID_SIZE, "0"))
        high = bytes.fromhex(text.ljust(2 * KEY_ID_SIZE, "f"))
        found = []
        with self._env.begin() as txn:
            cursor = txn.cursor(db=self._id)
            if cursor.set_range(low):
                for db_key in cursor.iternext(values=False):
                    if db_key[:KEY_ID_SIZE] > high:
                        break
                    value = txn.get(db_key[KEY_ID_SIZE:], db=self._entry)
                    if value is not None:
                        found.append(_decode(db_key[KEY_ID_SIZE:], value))
        return found

    # -- writing ----------------------------------------------------------------------
    @_translate
    def put(self, entry: RingEntry) -> PutResult:
        """Store `entry` by the policy of the module docstring (its `accepted`
        is decided here, not taken): "new" (nothing was held for its address
        and usage), "same" (the key held: metadata refreshed), "replaced" (an
        added or own key over another), "pending" (a fetched key differing
        from the accepted one, kept beside it)."""
        if entry.source not in SOURCES:
            raise ValueError(f"a key ring source is one of {', '.join(SOURCES)}")
        if entry.source == "fetched" and entry.key.flags & KeyFlag.INTERIM:
            raise ValueError("an interim key is used, never stored")
        entry = replace(entry, address=normalize_address(entry.address))
        if not entry.address or "\x00" in entry.address or len(entry.address) > MAX_ADDRESS:
            raise ValueError(f"a key ring address is 1..{MAX_ADDRESS} characters without NUL")
        usage = int(entry.key.usage)
        with self._env.begin(write=True) as txn:
            held_key = _entry_key(entry.address, usage, _ACCEPTED)
            held_raw = txn.get(held_key, db=self._entry)
            held = None if held_raw is None else _decode(held_key, held_raw)
            pending_key = _entry_key(entry.address, usage, _PENDING)
            if held is None:
                self._write(txn, replace(entry, accepted=True))
                self._delete(txn, pending_key)
                return "new"
            same = (held.key.algorithm, held.key.key) == (entry.key.algorithm, entry.key.key)
            if entry.source != "fetched":
                self._delete(txn, held_key)
                self._delete(txn, pending_key)
                self._write(txn, replace(entry, accepted=True))
                return "same" if same else "replaced"
            if same:
                # A fetch confirms the key held: its record now, its origin unchanged
                # unless it was itself fetched.
                if held.source == "fetched":
                    self._write(txn, replace(entry, accepted=True))
                else:
                    self._write(txn, replace(held, key=entry.key, flags=entry.flags,
                                             server=entry.server, fetched_at=entry.fetched_at,
                                             ttl=entry.ttl))
                self._delete(txn, pending_key)
                return "same"
            self._delete(txn, pending_key)
            self._write(txn, replace(entry, accepted=False))
            return "pending"

    @_translate
    def accept(self, address: str) -> list[RingEntry]:
        """Promote the pending entries of `address` to accepted, replacing
        the accepted ones; the entries promoted (empty when none was pending)."""
        promoted = []
        with self._env.begin(write=True) as txn:
            for usage in KeyUsage:
                pending_key = _entry_key(address, usage, _PENDING)
                raw = txn.get(pending_key, db=self._entry)
                if raw is None:
                    continue
                entry = replace(_decode(pending_key, raw), accepted=True)
                self._delete(txn, pending_key)
                self._delete(txn, _entry_key(address, usage, _ACCEPTED))
                self._write(txn, entry)
                promoted.append(entry)
        return promoted

    @_translate
    def remove(self, address: str) -> bool:
        """Drop every entry of `address`; whether there was any."""
        with self._env.begin(write=True) as txn:
            keys = [k for k, _ in _scan(txn.cursor(db=self._entry), _address_prefix(address))]
            for db_key in keys:
                self._delete(txn, db_key)
        return bool(keys)

    def _write(self, txn: lmdb.Transaction, entry: RingEntry) -> None:
        state = _ACCEPTED if entry.accepted else _PENDING
        db_key = _entry_key(entry.address, int(entry.key.usage), state)
        self._delete(txn, db_key)
        txn.put(db_key, _encode(entry), db=self._entry)
        txn.put(make_key_id(entry.key.algorithm, entry.key.key) + db_key, b"", db=self._id)

    def _delete(self, txn: lmdb.Transaction, db_key: bytes) -> None:
        raw = txn.get(db_key, db=self._entry)
        if raw is None:
            return
        entry = _decode(db_key, raw)
        txn.delete(make_key_id(entry.key.algorithm, entry.key.key) + db_key, db=self._id)
        txn.delete(db_key, db=self._entry)


def _scan(cursor: lmdb.Cursor, prefix: bytes):
    if not cursor.set_range(prefix):
        return
    for db_key, value in cursor.iternext():
        if not db_key.startswith(prefix):
            return
        yield db_key, value


__all__ = ["DEFAULT_MAP_SIZE", "KeyRing", "LAYOUT_VERSION", "PutResult", "RingEntry", "SOURCES",
           "Source", "normalize_address"]
