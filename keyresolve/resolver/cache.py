"""The resolver's record cache (sans-IO): RRsets, negative answers, delegations.

Entries are keyed by owner name and type and expire at insert time + TTL
(capped). Time is passed in as a float (seconds, any epoch) on every call, so
the cache is deterministic under a fake clock. Size is bounded by a record
count with least-recently-used eviction.

Credibility (RFC 2181 5.4.1): each positive RRset carries a `Rank`. Data of a
lower rank never replaces unexpired data of a higher rank, and data below
`Rank.NONAUTH_ANSWER` (glue and referral NS) is only used to find servers:
`get` does not return it unless asked to (so glue never reaches a stub).

Negative answers (RFC 2308): NXDOMAIN is cached per name and covers every type
there; NODATA is cached per name and type. Both keep the zone's SOA, and live
for min(SOA TTL, SOA minimum), capped by `max_negative_ttl` (RFC 2308 5).

Delegations are the NS RRsets at zone cuts plus the ADDR RRsets of their
targets; `find_delegation` returns the deepest cut enclosing a name (never
the root: the resolver's pinned, primed root hints stand for it).

Two parts, each with its own bound and LRU order, so that a flood of unique
leaf names cannot push out what every resolution needs (as Unbound keeps its
infra and rrset caches apart from the message cache): the infrastructure
part holds every NS RRset, referral data (`Rank.GLUE`) and what is stored
with ``infra=True`` (the addresses of name servers); the answer part holds
the rest, negative answers included. A key lives in one part at a time.

For what is built from the cache (the resolver's wire answer cache,
keyresolve.resolver.answercache): `recording` notes the entries lookups return, a
`CacheWatcher` hears of every change by owner name, and `touch` refreshes
recency as a lookup would.
"""

from __future__ import annotations

import contextlib
import enum
import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ..protocol.codes import Rcode, RType
from ..protocol.errors import KeyresolveError
from ..protocol.names import Name
from ..protocol.records import ADDR, NS, SOA, Rdata, Record

#: Default bound on cached answer records: about 750 bytes of RSS each
#: (entry, key, record data, name; measured, docs/resolver.md), so the
#: default answer cache stays under 80 MB (Unbound's rrset-cache-size
#: default is 4 MB; key records are small).
DEFAULT_MAX_RECORDS = 100_000
#: Default bound on infrastructure records (delegation NS RRsets and name
#: server addresses): room for the cuts of about 10,000 zones, as Unbound's
#: infra-cache-numhosts (10,000) bounds the servers it remembers.
DEFAULT_MAX_INFRA_RECORDS = 20_000
#: Longest time any positive entry is kept, whatever its TTL says: one day,
#: as Unbound's cache-max-ttl (BIND's max-cache-ttl is a week).
DEFAULT_MAX_TTL = 86_400
#: Longest time a negative entry is kept: three hours, the upper end of the
#: one to three hours RFC 2308 5 recommends (BIND's max-ncache-ttl default).
DEFAULT_MAX_NEGATIVE_TTL = 10_800


class Rank(enum.IntEnum):
    """How far cached data is trusted (RFC 2181 5.4.1, higher is better)."""

    #: Additional-section data (glue) and the authority section of a
    #: non-authoritative answer (referral NS). Never an answer to a stub.
    GLUE = 1
    #: The answer section of a non-authoritative answer.
    NONAUTH_ANSWER = 2
    #: The authority section of an authoritative answer.
    AUTH_AUTHORITY = 3
    #: The answer section of an authoritative answer.
    AUTH_ANSWER = 4


class Delegation(NamedTuple):
    """A cached zone cut: its name, NS targets and their known addresses."""

    cut: Name
    ns: list[Name]
    addrs: dict[Name, list[ADDR]]


@dataclass(frozen=True, slots=True)
class Negative:
    """A cached negative answer: NXDOMAIN or NODATA, and the SOA that proves it.

    The SOA's TTL is the remaining negative-caching time.
    """

    rcode: Rcode
    soa: Record


class Lookup(NamedTuple):
    """One entry a lookup returned, as `Cache.recording` notes it."""

    #: The entry's key, opaque: what `Cache.touch` takes.
    key: EntryKey
    name: Name
    #: The RRset's type; None for a negative entry (its SOA).
    rtype: int | None
    #: When the entry expires (the clock of the `now` passed in).
    expires: float


class CacheWatcher(Protocol):
    """Hears of every change to a `Cache`'s contents."""

    def changed(self, name: Name) -> None:
        """An entry owned by `name` was stored, replaced or removed."""

    def cleared(self) -> None:
        """Every entry was removed."""


# Entry kinds; part of the key so one name can hold all three at once.
_POSITIVE = 0
_NODATA = 1
_NXDOMAIN = 2

#: An entry's key: its kind, owner and type (opaque to other modules:
#: `Lookup.key`, `Cache.touch`).
EntryKey = tuple[int, Name, int]


@dataclass(slots=True)
class _Entry:
    expires: float
    rank: Rank
    rdatas: tuple[Rdata, ...]  # positive entries; empty for negative ones
    soa: Record | None  # negative entries: the SOA (its TTL is the stored one)
    size: int  # records counted against the part's bound


class _Part:
    """One part of the cache: entries in LRU order and their record count."""

    __slots__ = ("entries", "count", "max_records")

    def __init__(self, max_records: int) -> None:
        self.entries: OrderedDict[EntryKey, _Entry] = OrderedDict()
        self.count = 0
        self.max_records = max_records


class Cache:
    """A bounded, LRU-evicted cache of RRsets, negative answers and delegations."""

    def __init__(self, max_records: int = DEFAULT_MAX_RECORDS, max_ttl: int = DEFAULT_MAX_TTL,
                 min_ttl: int = 0, max_negative_ttl: int = DEFAULT_MAX_NEGATIVE_TTL, *,
                 max_infra_records: int = DEFAULT_MAX_INFRA_RECORDS) -> None:
        """`max_records` bounds the answer part, `max_infra_records` the
        infrastructure part; `min_ttl` raises short TTLs (0 keeps them, and
        TTL 0 is then not cached)."""
        if (max_records < 1 or max_infra_records < 1 or min_ttl < 0 or max_ttl < min_ttl
                or max_negative_ttl < 0):
            raise KeyresolveError("invalid cache limits")
        self.max_records = max_records
        self.max_infra_records = max_infra_records
        self.max_ttl = max_ttl
        self.min_ttl = min_ttl
        self.max_negative_ttl = max_negative_ttl
        self._answers = _Part(max_records)
        self._infra = _Part(max_infra_records)
        self._lookups: list[Lookup] | None = None
        #: Told of every change (one at most; None: nobody listens).
        self.watcher: CacheWatcher | None = None

    # -- sizes -----------------------------------------------------------------
    def __len__(self) -> int:
        """Records held in both parts (a negative entry counts as one),
        expired ones included until they are looked at or evicted."""
        return self._answers.count + self._infra.count

    @property
    def entries(self) -> int:
        """Number of RRsets and negative entries held in both parts."""
        return len(self._answers.entries) + len(self._infra.entries)

    @property
    def infra_records(self) -> int:
        """Records held in the infrastructure part (at most `max_infra_records`)."""
        return self._infra.count

    def touch(self, key: EntryKey) -> None:
        """Mark the entry of `key` (a `Lookup.key`) as just used, as a lookup
        does; KeyError if it is gone (a `watcher` hears that). A wire answer
        cache hit calls it."""
        try:
            self._answers.entries.move_to_end(key)
        except KeyError:
            self._infra.entries.move_to_end(key)

    def effective_ttl(self, ttl: int) -> int:
        """The TTL an RRset with `ttl` is cached for: clamped to [min_ttl, max_ttl]."""
        return min(max(ttl, self.min_ttl), self.max_ttl)

    def negative_ttl(self, soa: Record) -> int:
        """How long a negative answer proven by `soa` is cached: min(SOA TTL,
        SOA minimum) (RFC 2308 5), capped by `max_negative_ttl`."""
        rdata = soa.rdata
        if not isinstance(rdata, SOA):
            raise KeyresolveError("a negative answer needs an SOA record")
        return min(soa.ttl, rdata.minimum, self.max_negative_ttl)

    # -- positive data ---------------------------------------------------------
    def put(self, records: Sequence[Record], rank: Rank, now: float, *,
            infra: bool = False) -> bool:
        """Cache one RRset (records of one owner and type); True if stored.

        The RRset's TTL is the lowest of its records' (RFC 2181 5.2). Not stored
        when that is 0 after clamping, or when an unexpired entry of higher
        rank is there (RFC 2181 5.4.1). Storing replaces the old RRset whole.
        NS RRsets, glue, what replaces infrastructure data and, with `infra`,
        any RRset (a name server's addresses) go to the infrastructure part;
        the rest to the answer part.
        """
        if not records:
            raise KeyresolveError("cannot cache an empty RRset")
        name, rtype = records[0].name, records[0].rtype
        if any(r.name != name or r.rtype != rtype for r in records):
            raise KeyresolveError("records of one RRset must share owner and type")
        ttl = self.effective_ttl(min(r.ttl for r in records))
        if ttl <= 0:
            return False
        key = (_POSITIVE, name, rtype)
        old = self._live(key, now)
        if old is not None and old[1].rank > rank:
            return False
        rdatas = tuple(dict.fromkeys(r.rdata for r in records))
        if rank >= Rank.NONAUTH_ANSWER:
            # Answer data proves the name exists and has this type.
            self._remove((_NXDOMAIN, name, 0))
            self._remove((_NODATA, name, rtype))
        # A name server's address stays infrastructure when answer data replaces it.
        infra = (infra or rank == Rank.GLUE or rtype == RType.NS
                 or old is not None and old[0] is self._infra.entries)
        part = self._infra if infra else self._answers
        return self._store(part, key, _Entry(now + ttl, rank, rdatas, None, len(rdatas)))

    def get(self, name: Name, rtype: int, now: float,
            min_rank: Rank = Rank.NONAUTH_ANSWER) -> list[Record] | None:
        """The cached RRset of `name`/`rtype` with TTLs counted down, or None.

        By default glue and referral data are left out: they may only be used
        to reach servers (pass ``min_rank=Rank.GLUE`` for that).
        """
        key = (_POSITIVE, name, rtype)
        found = self._live(key, now)
        if found is None or found[1].rank < min_rank:
            return None
        entries, entry = found
        entries.move_to_end(key)
        if self._lookups is not None:
            self._lookups.append(Lookup(key, name, rtype, entry.expires))
        ttl = _remaining(entry, now)
        return [Record(name, rtype, ttl, rd) for rd in entry.rdatas]

    def rank(self, name: Name, rtype: int, now: float) -> Rank | None:
        """The rank of the live RRset at `name`/`rtype`, or None."""
        found = self._live((_POSITIVE, name, rtype), now)
        return None if found is None else found[1].rank

    # -- negative data ---------------------------------------------------------
    def put_nxdomain(self, name: Name, soa: Record, now: float) -> bool:
        """Cache that `name` does not exist (for every type); True if stored."""
        return self._put_negative((_NXDOMAIN, name, 0), soa, now)

    def put_nodata(self, name: Name, rtype: int, soa: Record, now: float) -> bool:
        """Cache that `name` exists but has no `rtype` records; True if stored."""
        return self._put_negative((_NODATA, name, rtype), soa, now)

    def _put_negative(self, key: EntryKey, soa: Record, now: float) -> bool:
        ttl = self.negative_ttl(soa)
        if ttl <= 0:
            return False  # RFC 2308 5: a zero TTL means do not cache
        stored = Record(soa.name, RType.SOA, ttl, soa.rdata)
        return self._store(self._answers, key,
                           _Entry(now + ttl, Rank.AUTH_AUTHORITY, (), stored, 1))

    def get_negative(self, name: Name, rtype: int, now: float) -> Negative | None:
        """A cached NXDOMAIN for `name` or NODATA for `name`/`rtype`, or None."""
        for key, rcode in (((_NXDOMAIN, name, 0), Rcode.NXDOMAIN),
                           ((_NODATA, name, rtype), Rcode.NOERROR)):
            found = self._live(key, now)
            if found is not None:
                entries, entry = found
                assert entry.soa is not None
                entries.move_to_end(key)
                if self._lookups is not None:
                    self._lookups.append(Lookup(key, name, None, entry.expires))
                soa = entry.soa
                return Negative(rcode, Record(soa.name, soa.rtype, _remaining(entry, now),
                                              soa.rdata))
        return None

    # -- delegations -----------------------------------------------------------
    def find_delegation(self, name: Name, now: float) -> Delegation | None:
        """The deepest cached zone cut at or above `name`'s domain, below the
        root, with the addresses known (of any rank) for its NS targets; None
        if none. The root cut is the resolver's hints, kept apart."""
        for cut in name.ancestors():
            if not cut.labels:
                break  # the root
            ns_records = self.get(cut, RType.NS, now, min_rank=Rank.GLUE)
            if not ns_records:
                continue
            targets = [r.rdata.target for r in ns_records if isinstance(r.rdata, NS)]
            addrs: dict[Name, list[ADDR]] = {}
            for target in targets:
                found = self.get(target, RType.ADDR, now, min_rank=Rank.GLUE)
                if found:
                    addrs[target] = [r.rdata for r in found if isinstance(r.rdata, ADDR)]
            return Delegation(cut, targets, addrs)
        return None

    # -- for derived caches ----------------------------------------------------
    @contextlib.contextmanager
    def recording(self) -> Iterator[list[Lookup]]:
        """Within the block, note in the list yielded every entry that `get`
        and `get_negative` return, in order (not nested)."""
        lookups: list[Lookup] = []
        self._lookups = lookups
        try:
            yield lookups
        finally:
            self._lookups = None

    # -- removal ---------------------------------------------------------------
    def flush(self) -> None:
        """Forget everything."""
        for part in (self._answers, self._infra):
            part.entries.clear()
            part.count = 0
        if self.watcher is not None:
            self.watcher.cleared()

    def flush_name(self, name: Name) -> int:
        """Forget every entry owned by exactly `name`: all types, positive and
        negative, delegation NS included. Names below it stay (as BIND's
        ``rndc flushname``; a subtree flush is ``rndc flushtree``). Returns the
        number of entries removed. Linear in the cache size: an operator action.
        """
        doomed = [key for part in (self._answers, self._infra)
                  for key in part.entries if key[1] == name]
        for key in doomed:
            self._remove(key)
        return len(doomed)

    def purge_expired(self, now: float) -> int:
        """Drop every expired entry; returns how many. Optional housekeeping:
        expired entries are otherwise dropped when looked at or evicted."""
        doomed = [key for part in (self._answers, self._infra)
                  for key, entry in part.entries.items() if entry.expires <= now]
        for key in doomed:
            self._remove(key)
        return len(doomed)

    # -- internals -------------------------------------------------------------
    def _live(self, key: EntryKey, now: float
              ) -> tuple[OrderedDict[EntryKey, _Entry], _Entry] | None:
        """The unexpired entry of `key` and the entries of its part, or None."""
        entries = self._answers.entries
        entry = entries.get(key)
        if entry is None:
            entries = self._infra.entries
            entry = entries.get(key)
            if entry is None:
                return None
        if entry.expires <= now:
            self._remove(key)
            return None
        return entries, entry

    def _store(self, part: _Part, key: EntryKey, entry: _Entry) -> bool:
        if entry.size > part.max_records:
            return False
        self._remove(key)
        part.entries[key] = entry
        part.count += entry.size
        watcher = self.watcher
        if watcher is not None:
            watcher.changed(key[1])
        # Eviction stays within the part: answers never push out delegations.
        while part.count > part.max_records:
            evicted_key, evicted = part.entries.popitem(last=False)
            part.count -= evicted.size
            if watcher is not None:
                watcher.changed(evicted_key[1])
        return True

    def _remove(self, key: EntryKey) -> None:
        for part in (self._answers, self._infra):
            entry = part.entries.pop(key, None)
            if entry is not None:
                part.count -= entry.size
                if self.watcher is not None:
                    self.watcher.changed(key[1])
                return


def _remaining(entry: _Entry, now: float) -> int:
    """Whole seconds left (rounded down), as a TTL handed onward."""
    return max(0, math.floor(entry.expires - now))
