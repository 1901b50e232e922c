"""The resolver's wire answer cache (sans-IO): encoded answers by query bytes.

A query the resolver answered straight from its record cache is remembered by
its bytes after the id (flags, question, sections, UDP size: everything the
answer depends on besides the id), with the encoded response split at each
TTL field and the record-cache entries the answer came from. The same bytes
again are answered by copying their id in front of the stored response: no
decoding, no `Resolution`, no encoding.

The answer stays exactly what the full path would give at the same moment:

- TTLs count down as the record cache's do (whole seconds left, rounded
  down, per entry); the stored bytes are rebuilt when one of them changes.
- An answer goes when the first entry it used expires, and whenever an entry
  owned by a name it used is stored, replaced or removed (eviction and flushes
  included): the `Cache` tells its `CacheWatcher`, which this is. A name's
  entries are all a cache answer can depend on, the ones that missed included.
- A hit refreshes the recency of those entries in the record cache, as the
  lookups of the full path would.

Only bytes the strict decoder already accepted once are ever stored, so a
malformed query never matches. What to store is the caller's decision
(`keyresolve.daemons.resolver`: unsigned UDP queries answered from the cache).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import msgpack

from .cache import Cache, EntryKey, Lookup
from ..protocol.codes import Rcode, RType
from ..protocol.message import HEADER_SIZE, Message
from ..protocol.names import Name
from ..protocol.records import Record

#: Answers held at most, least recently used dropped first: the hot set of
#: query variants. About 1.3 KB each (key, response, its parts, the entry and
#: the index by name): ~26 MB at the bound.
DEFAULT_MAX_ANSWERS = 20_000

#: Response codes of answers the record cache gives (SERVFAIL and the rest
#: are never stored).
_CACHEABLE_RCODES = frozenset({Rcode.NOERROR, Rcode.NXDOMAIN})

_packer = msgpack.Packer()


@dataclass(slots=True)
class _Answer:
    """One stored answer: the response after the id and how to renew it."""

    #: The response after the id, split at each TTL field (one more part
    #: than fields).
    parts: tuple[bytes, ...]
    #: For each TTL field, its index in `expiries`.
    fields: tuple[int, ...]
    #: When each record-cache entry used expires.
    expiries: tuple[float, ...]
    #: Those entries' keys, for `Cache.touch`.
    keys: tuple[EntryKey, ...]
    #: The names owning them, once each.
    names: tuple[Name, ...]
    #: The earliest of `expiries`: the answer's end.
    expires: float
    #: `wire` is exact from `built` until just before `renew`.
    built: float = 0.0
    renew: float = 0.0
    wire: bytes = b""

    def build(self, now: float) -> None:
        """Encode `wire` with the TTLs at `now` (before `expires`)."""
        parts, fields = self.parts, self.fields
        # As Cache._remaining: floor(expires - now), here > 0 so int() is floor.
        ttls = [int(expires - now) for expires in self.expiries]
        out = [parts[0]]
        for i, index in enumerate(fields):
            out += (_packer.pack(ttls[index]), parts[i + 1])
        self.wire = b"".join(out)
        self.built = now
        self.renew = min([_last_second(expires, ttl) for expires, ttl in zip(self.expiries, ttls)])


def _last_second(expires: float, ttl: int) -> float:
    """A time up to which (excluded) int(expires - t) is still `ttl` for every t
    from when it was `ttl`: expires - ttl, stepped down until float subtraction
    agrees (int(expires - t) only falls as t grows, so it holds before too).
    At most `expires`, so nothing past the expiry is served."""
    renew = expires - ttl
    while int(expires - renew) != ttl or renew > expires:
        renew = math.nextafter(renew, -math.inf)
    return renew


class AnswerCache:
    """Encoded answers to exact query bytes, kept true to a record `Cache`.

    Registers itself as the cache's `watcher`.
    """

    def __init__(self, cache: Cache, max_answers: int = DEFAULT_MAX_ANSWERS) -> None:
        self.cache = cache
        self.max_answers = max_answers
        self._answers: OrderedDict[bytes, _Answer] = OrderedDict()
        self._by_name: dict[Name, set[bytes]] = {}
        self._touch = cache.touch
        cache.watcher = self

    def __len__(self) -> int:
        """Answers held."""
        return len(self._answers)

    def answer(self, query: bytes, now: float) -> bytes | None:
        """The response to `query` (raw bytes) at time `now`, or None."""
        key = query[2:]
        entry = self._answers.get(key)
        if entry is None:
            return None
        if not entry.built <= now < entry.renew:
            if now >= entry.expires:
                self._drop(key)
                return None
            entry.build(now)  # a TTL has counted down
        self._answers.move_to_end(key)
        touch = self._touch
        for used in entry.keys:
            touch(used)
        return query[:2] + entry.wire

    def add(self, query: bytes, response: Message, wire: bytes, lookups: list[Lookup],
            now: float) -> bool:
        """Remember `wire`, the encoded `response` to `query`, built at `now`
        from the record-cache entries of `lookups`. Declined (False) unless it
        is an unsigned, untruncated NOERROR or NXDOMAIN whose every TTL field
        comes from one of those entries and carries its time left."""
        if (response.rcode not in _CACHEABLE_RCODES or response.tc or response.additional
                or response.signature is not None or not lookups
                or len(query) < HEADER_SIZE or wire[:2] != query[:2]):
            return False
        # Answer records come from the RRset of their owner and type; the
        # authority SOA from the negative entry (keyed by the name asked).
        index: dict[tuple[Name, int] | None, int] = {}
        for position, lookup in enumerate(lookups):
            index[None if lookup.rtype is None else (lookup.name, lookup.rtype)] = position
        expiries = tuple([lookup.expires for lookup in lookups])
        fields = []
        for section, negative in ((response.answer, False), (response.authority, True)):
            for record in section:
                i = index.get(None if negative else (record.name, record.rtype))
                if (i is None or record.ttl != int(expiries[i] - now)
                        or negative and record.rtype != RType.SOA):
                    return False
                fields.append(i)
        names = tuple(dict.fromkeys([lookup.name for lookup in lookups]))
        entry = _Answer(_split(response, wire), tuple(fields), expiries,
                        tuple([lookup.key for lookup in lookups]), names, min(expiries))
        entry.build(now)
        if entry.wire != wire[2:]:
            return False  # truncated (TC), or not the encoding _split knows
        key = query[2:]
        self._drop(key)
        self._answers[key] = entry
        for name in names:
            self._by_name.setdefault(name, set()).add(key)
        while len(self._answers) > self.max_answers:
            self._drop(next(iter(self._answers)))
        return True

    # -- CacheWatcher ------------------------------------------------------------
    def changed(self, name: Name) -> None:
        """Forget every answer that used an entry owned by `name`."""
        keys = self._by_name.pop(name, None)
        if keys:
            for key in keys:
                self._drop(key)

    def cleared(self) -> None:
        """Forget everything."""
        self._answers.clear()
        self._by_name.clear()

    # -- internals ---------------------------------------------------------------
    def _drop(self, key: bytes) -> None:
        entry = self._answers.pop(key, None)
        if entry is None:
            return
        for name in entry.names:
            keys = self._by_name.get(name)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_name[name]


def _split(response: Message, wire: bytes) -> tuple[bytes, ...]:
    """`wire` after the id, cut around the TTL of every record (answer, then
    authority): encoded again piece by piece, as Message.encode_unsigned does.
    The caller checks that the pieces put together give `wire` back."""
    pack, array = _packer.pack, _packer.pack_array_header
    parts: list[bytes] = []
    head = [wire[2:HEADER_SIZE], array(5),
            pack(None if response.question is None else response.question.to_wire())]
    sections: tuple[list[Record], ...] = (response.answer, response.authority, [])
    for section in sections:
        head.append(array(len(section)))
        for record in section:
            head += (array(4), pack(record.name.to_wire()), pack(int(record.rtype)))
            parts.append(b"".join(head))
            head = [pack(record.rdata.to_wire())]
    head.append(pack(response.udp_size))
    parts.append(b"".join(head))
    return tuple(parts)
