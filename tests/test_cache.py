"""The resolver cache: TTL countdown, ranks, negative entries, delegations, LRU."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyresolve.resolver.cache import DEFAULT_MAX_NEGATIVE_TTL, Cache, Negative, Rank
from keyresolve.protocol.codes import Rcode, RType
from keyresolve.protocol.errors import KeyresolveError
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import ADDR, NS, SOA, Record

T0 = 1_000_000.0


def n(text: str) -> Name:
    return Name.from_text(text)


def addr(owner: str, text: str, ttl: int = 300) -> Record:
    return Record(n(owner), RType.ADDR, ttl, ADDR.parse(text))


def ns(owner: str, target: str, ttl: int = 3600) -> Record:
    return Record(n(owner), RType.NS, ttl, NS(n(target)))


def soa(zone: str, ttl: int = 3600, minimum: int = 300) -> Record:
    return Record(n(zone), RType.SOA, ttl,
                  SOA(n("ns1." + zone), n("hostmaster@" + zone), 1, 7200, 900, 1209600, minimum))


# -- TTLs ----------------------------------------------------------------------
def test_ttl_counts_down_in_whole_seconds_and_expires():
    cache = Cache()
    assert cache.put([addr("www.example.com.", "192.0.2.1:53", ttl=300)], Rank.AUTH_ANSWER, T0)
    assert [r.ttl for r in cache.get(n("www.example.com."), RType.ADDR, T0)] == [300]
    assert cache.get(n("www.example.com."), RType.ADDR, T0 + 0.4)[0].ttl == 299
    assert cache.get(n("www.example.com."), RType.ADDR, T0 + 100)[0].ttl == 200
    assert cache.get(n("www.example.com."), RType.ADDR, T0 + 299.5)[0].ttl == 0
    assert cache.get(n("www.example.com."), RType.ADDR, T0 + 300) is None
    assert len(cache) == 0  # the expired entry was dropped when looked at


def test_rrset_ttl_is_the_lowest_and_duplicates_collapse():
    cache = Cache()
    records = [addr("a.example.", "192.0.2.1:53", 600), addr("a.example.", "192.0.2.2:53", 60),
               addr("a.example.", "192.0.2.1:53", 600)]
    cache.put(records, Rank.AUTH_ANSWER, T0)
    got = cache.get(n("a.example."), RType.ADDR, T0)
    assert [r.ttl for r in got] == [60, 60]
    assert [r.rdata.to_text() for r in got] == ["192.0.2.1:53", "192.0.2.2:53"]
    assert len(cache) == 2


def test_max_and_min_ttl_clamp():
    cache = Cache(max_ttl=1000, min_ttl=30)
    cache.put([addr("long.example.", "192.0.2.1:53", 10**6)], Rank.AUTH_ANSWER, T0)
    cache.put([addr("short.example.", "192.0.2.1:53", 5)], Rank.AUTH_ANSWER, T0)
    assert cache.get(n("long.example."), RType.ADDR, T0)[0].ttl == 1000
    assert cache.get(n("long.example."), RType.ADDR, T0 + 1000) is None
    assert cache.get(n("short.example."), RType.ADDR, T0 + 20)[0].ttl == 10


def test_zero_ttl_is_not_cached():
    cache = Cache()
    assert not cache.put([addr("z.example.", "192.0.2.1:53", 0)], Rank.AUTH_ANSWER, T0)
    assert cache.get(n("z.example."), RType.ADDR, T0) is None
    assert len(cache) == 0


def test_invalid_rrsets_and_limits_raise():
    cache = Cache()
    with pytest.raises(KeyresolveError):
        cache.put([], Rank.AUTH_ANSWER, T0)
    with pytest.raises(KeyresolveError):
        cache.put([addr("a.example.", "192.0.2.1:53"), addr("b.example.", "192.0.2.1:53")],
                  Rank.AUTH_ANSWER, T0)
    with pytest.raises(KeyresolveError):
        Cache(max_records=0)
    with pytest.raises(KeyresolveError):
        Cache(max_ttl=10, min_ttl=20)


# -- credibility -----------------------------------------------------------------
def test_glue_never_replaces_authoritative_data_and_is_hidden_from_answers():
    cache = Cache()
    name = n("ns1.example.com.")
    assert cache.put([addr("ns1.example.com.", "192.0.2.1:53")], Rank.AUTH_ANSWER, T0)
    assert not cache.put([addr("ns1.example.com.", "203.0.113.9:53")], Rank.GLUE, T0 + 1)
    assert cache.get(name, RType.ADDR, T0 + 2)[0].rdata.to_text() == "192.0.2.1:53"
    assert cache.rank(name, RType.ADDR, T0 + 2) == Rank.AUTH_ANSWER

    glue_only = n("ns2.example.com.")
    cache.put([addr("ns2.example.com.", "192.0.2.2:53")], Rank.GLUE, T0)
    assert cache.get(glue_only, RType.ADDR, T0) is None  # never an answer to a stub
    assert cache.get(glue_only, RType.ADDR, T0, min_rank=Rank.GLUE)[0].ttl == 300


def test_higher_or_equal_rank_replaces_and_expired_data_gives_way():
    cache = Cache()
    name = n("x.example.")
    cache.put([addr("x.example.", "192.0.2.1:53")], Rank.GLUE, T0)
    assert cache.put([addr("x.example.", "192.0.2.2:53")], Rank.NONAUTH_ANSWER, T0)
    assert cache.put([addr("x.example.", "192.0.2.3:53")], Rank.NONAUTH_ANSWER, T0)
    assert cache.get(name, RType.ADDR, T0)[0].rdata.to_text() == "192.0.2.3:53"
    cache.put([addr("x.example.", "192.0.2.4:53", ttl=10)], Rank.AUTH_ANSWER, T0)
    assert cache.put([addr("x.example.", "192.0.2.5:53")], Rank.GLUE, T0 + 10)
    assert cache.get(name, RType.ADDR, T0 + 10, min_rank=Rank.GLUE)[0].rdata.to_text() \
        == "192.0.2.5:53"


# -- negative entries ---------------------------------------------------------------
def test_nxdomain_covers_every_type_with_rfc2308_ttl():
    cache = Cache()
    name = n("nope.example.com.")
    assert cache.put_nxdomain(name, soa("example.com.", ttl=3600, minimum=300), T0)
    for rtype in (RType.ADDR, RType.KEY, RType.NS):
        neg = cache.get_negative(name, rtype, T0 + 100)
        assert neg == Negative(Rcode.NXDOMAIN, neg.soa)
        assert neg.soa.ttl == 200 and neg.soa.name == n("example.com.")
    assert cache.get_negative(name, RType.ADDR, T0 + 300) is None


def test_nodata_is_per_type_and_ttl_is_min_of_soa_ttl_and_minimum():
    cache = Cache()
    name = n("www.example.com.")
    cache.put_nodata(name, RType.KEY, soa("example.com.", ttl=60, minimum=300), T0)
    neg = cache.get_negative(name, RType.KEY, T0)
    assert neg.rcode == Rcode.NOERROR and neg.soa.ttl == 60
    assert cache.get_negative(name, RType.ADDR, T0) is None


def test_negative_ttl_is_capped_and_zero_is_not_cached():
    cache = Cache(max_negative_ttl=100)
    assert cache.negative_ttl(soa("example.", ttl=3600, minimum=3600)) == 100
    assert Cache().negative_ttl(soa("example.", 10**6, 10**6)) == DEFAULT_MAX_NEGATIVE_TTL
    assert not cache.put_nxdomain(n("a.example."), soa("example.", ttl=0), T0)
    with pytest.raises(KeyresolveError):
        cache.put_nxdomain(n("a.example."), addr("example.", "192.0.2.1:53"), T0)


def test_answer_data_clears_a_contradicting_negative_entry():
    cache = Cache()
    name = n("new.example.com.")
    cache.put_nxdomain(name, soa("example.com."), T0)
    cache.put([addr("new.example.com.", "192.0.2.1:53")], Rank.GLUE, T0)
    assert cache.get_negative(name, RType.ADDR, T0) is not None  # glue proves nothing
    cache.put([addr("new.example.com.", "192.0.2.1:53")], Rank.AUTH_ANSWER, T0)
    assert cache.get_negative(name, RType.ADDR, T0) is None


# -- delegations -----------------------------------------------------------------
def test_find_delegation_returns_the_deepest_live_cut():
    cache = Cache()
    assert cache.find_delegation(n("www.example.com."), T0) is None
    cache.put([ns("com.", "ns1.com.", ttl=1000)], Rank.GLUE, T0)
    cache.put([addr("ns1.com.", "10.1.0.1:53", ttl=1000)], Rank.GLUE, T0)
    cache.put([ns("example.com.", "ns1.example.com.", 100),
               ns("example.com.", "ns.other.org.", 100)], Rank.GLUE, T0)
    cache.put([addr("ns1.example.com.", "10.2.0.1:53", 100)], Rank.GLUE, T0)

    cut, names, addrs = cache.find_delegation(n("alice@www.example.com."), T0 + 1)
    assert cut == n("example.com.")
    assert names == [n("ns1.example.com."), n("ns.other.org.")]
    assert addrs == {n("ns1.example.com."): [ADDR.parse("10.2.0.1:53")]}

    # The example.com cut expires first: the search falls back to com.
    cut, names, addrs = cache.find_delegation(n("www.example.com."), T0 + 100)
    assert (cut, names) == (n("com."), [n("ns1.com.")])
    assert addrs == {n("ns1.com."): [ADDR.parse("10.1.0.1:53")]}
    assert cache.find_delegation(n("example.org."), T0) is None


# -- flushing --------------------------------------------------------------------
def test_flush_name_removes_only_that_name_all_types_and_negatives():
    cache = Cache()
    cache.put([addr("example.com.", "192.0.2.1:53")], Rank.AUTH_ANSWER, T0)
    cache.put([ns("example.com.", "ns1.example.com.")], Rank.GLUE, T0)
    cache.put_nodata(n("example.com."), RType.KEY, soa("example.com."), T0)
    cache.put([addr("www.example.com.", "192.0.2.2:53")], Rank.AUTH_ANSWER, T0)
    cache.put_nxdomain(n("alice@example.com."), soa("example.com."), T0)

    assert cache.flush_name(n("example.com.")) == 3
    assert cache.get(n("example.com."), RType.ADDR, T0) is None
    assert cache.find_delegation(n("www.example.com."), T0) is None
    assert cache.get_negative(n("example.com."), RType.KEY, T0) is None
    # Names below stay, mailboxes included (as rndc flushname).
    assert cache.get(n("www.example.com."), RType.ADDR, T0) is not None
    assert cache.get_negative(n("alice@example.com."), RType.KEY, T0) is not None
    assert cache.flush_name(n("alice@example.com.")) == 1
    assert len(cache) == 1 and cache.entries == 1

    cache.flush()
    assert len(cache) == 0 and cache.get(n("www.example.com."), RType.ADDR, T0) is None


def test_purge_expired():
    cache = Cache()
    cache.put([addr("a.example.", "192.0.2.1:53", ttl=10)], Rank.AUTH_ANSWER, T0)
    cache.put([addr("b.example.", "192.0.2.1:53", ttl=100)], Rank.AUTH_ANSWER, T0)
    assert cache.purge_expired(T0 + 50) == 1
    assert len(cache) == 1


# -- for derived caches --------------------------------------------------------------
class Watcher:
    def __init__(self) -> None:
        self.heard: list[str] = []

    def changed(self, name: Name) -> None:
        self.heard.append(str(name))

    def cleared(self) -> None:
        self.heard.append("*")


def test_recording_notes_the_entries_lookups_return():
    cache = Cache()
    cache.put([addr("a.example.", "192.0.2.1:53", ttl=10)], Rank.AUTH_ANSWER, T0)
    cache.put([ns("b.example.", "ns.b.example.")], Rank.GLUE, T0)
    cache.put_nodata(n("c.example."), RType.KEY, soa("example.", minimum=20), T0 + 0.5)
    with cache.recording() as lookups:
        assert cache.get(n("a.example."), RType.ADDR, T0)
        assert cache.get(n("b.example."), RType.NS, T0) is None  # glue: not returned
        assert cache.get(n("z.example."), RType.ADDR, T0) is None
        assert cache.get_negative(n("c.example."), RType.KEY, T0)
    assert cache.get(n("a.example."), RType.ADDR, T0)  # outside the block: not noted
    assert [(str(x.name), x.rtype, x.expires) for x in lookups] == [
        ("a.example.", RType.ADDR, T0 + 10), ("c.example.", None, T0 + 20.5)]


def test_touch_refreshes_recency_as_a_lookup_does():
    cache = Cache(max_records=2)
    cache.put([addr("a.example.", "192.0.2.1:53")], Rank.AUTH_ANSWER, T0)
    with cache.recording() as lookups:
        cache.get(n("a.example."), RType.ADDR, T0)
    cache.put([addr("b.example.", "192.0.2.1:53")], Rank.AUTH_ANSWER, T0)
    cache.touch(lookups[0].key)  # a is the most recent again
    cache.put([addr("c.example.", "192.0.2.1:53")], Rank.AUTH_ANSWER, T0)
    assert cache.get(n("a.example."), RType.ADDR, T0)
    assert cache.get(n("b.example."), RType.ADDR, T0) is None


def test_the_watcher_hears_every_change_by_name():
    cache = Cache(max_records=2)
    cache.watcher = watcher = Watcher()
    cache.put([addr("a.example.", "192.0.2.1:53", ttl=10)], Rank.AUTH_ANSWER, T0)
    cache.put([addr("a.example.", "192.0.2.2:53", ttl=10)], Rank.AUTH_ANSWER, T0)  # replaced
    cache.put_nxdomain(n("b.example."), soa("example."), T0)
    cache.put([addr("c.example.", "192.0.2.1:53")], Rank.AUTH_ANSWER, T0)  # evicts a
    # (a replacement may be told twice: once removed, once stored)
    assert [name for name, _ in itertools.groupby(watcher.heard)] == [
        "a.example.", "b.example.", "c.example.", "a.example."]
    del watcher.heard[:]
    assert cache.get(n("a.example."), RType.ADDR, T0) is None  # nothing changed
    assert cache.get_negative(n("b.example."), RType.ADDR, T0 + 10_000) is None  # expired
    cache.flush_name(n("c.example."))
    cache.flush()
    assert watcher.heard == ["b.example.", "c.example.", "*"]


# -- size bound --------------------------------------------------------------------
def test_lru_eviction_by_record_count():
    cache = Cache(max_records=4)
    cache.put([addr("a.example.", "192.0.2.1:53")], Rank.AUTH_ANSWER, T0)
    cache.put([addr("b.example.", "192.0.2.1:53")], Rank.AUTH_ANSWER, T0)
    cache.put_nxdomain(n("c.example."), soa("example."), T0)
    assert cache.get(n("a.example."), RType.ADDR, T0)  # a is now the most recent
    # A two-record RRset makes five: the least recently used (b) goes.
    cache.put([addr("d.example.", "192.0.2.1:53"), addr("d.example.", "192.0.2.2:53")],
              Rank.AUTH_ANSWER, T0)
    assert len(cache) == 4
    assert cache.get(n("b.example."), RType.ADDR, T0) is None
    assert cache.get(n("a.example."), RType.ADDR, T0) is not None
    assert cache.get_negative(n("c.example."), RType.ADDR, T0) is not None
    # An RRset larger than the whole cache is refused, evicting nothing.
    big = [addr("e.example.", f"192.0.2.{i}:53") for i in range(1, 6)]
    assert not cache.put(big, Rank.AUTH_ANSWER, T0)
    assert len(cache) == 4


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(1, 3), st.integers(0, 50),
                          st.booleans()), max_size=60),
       st.integers(1, 6))
def test_size_bound_and_count_hold_under_any_sequence(ops, max_records):
    cache = Cache(max_records=max_records)
    now = T0
    for label, size, ttl, negative in ops:
        now += 1
        name = n(f"{label}.example.")
        if negative:
            cache.put_nxdomain(name, soa("example.", ttl=ttl, minimum=ttl), now)
        else:
            rrset = [addr(f"{label}.example.", f"192.0.2.{i}:53", ttl) for i in range(1, size + 1)]
            cache.put(rrset, Rank.AUTH_ANSWER, now)
        assert len(cache) <= max_records
    live = 0
    for label in "abcdefgh":
        live += len(cache.get(n(f"{label}.example."), RType.ADDR, now) or [])
        live += cache.get_negative(n(f"{label}.example."), RType.ADDR, now) is not None
    assert len(cache) == live  # after the lookups dropped the expired, counts agree


# -- infrastructure apart from answers -----------------------------------------------
def delegations(cache: Cache) -> None:
    cache.put([ns("com.", "ns1.com.")], Rank.GLUE, T0)
    cache.put([addr("ns1.com.", "10.1.0.1:53", 3600)], Rank.GLUE, T0)
    cache.put([ns("example.com.", "ns1.example.com.")], Rank.GLUE, T0)
    cache.put([addr("ns1.example.com.", "10.2.0.1:53", 3600)], Rank.GLUE, T0)


def test_a_flood_of_leaf_answers_never_evicts_delegations():
    cache = Cache(max_records=10, max_infra_records=10)
    delegations(cache)
    # A name server's address answered to a stub stays infrastructure.
    assert cache.put([addr("ns1.example.com.", "10.2.0.1:53", 3600)], Rank.AUTH_ANSWER, T0)
    now = T0
    for i in range(5000):
        now += 0.1
        cache.put_nxdomain(n(f"x{i}.example.com."), soa("example.com."), now)
        cache.put([addr(f"y{i}.example.com.", "192.0.2.1:53", 3600)], Rank.AUTH_ANSWER, now)
        assert len(cache) <= 10 + 10
    cut, names, addrs = cache.find_delegation(n("alice@example.com."), now)
    assert (cut, names) == (n("example.com."), [n("ns1.example.com.")])
    assert addrs == {n("ns1.example.com."): [ADDR.parse("10.2.0.1:53")]}
    assert cache.find_delegation(n("www.com."), now).addrs == {
        n("ns1.com."): [ADDR.parse("10.1.0.1:53")]}
    assert cache.infra_records == 4 and len(cache) == 14
    # The leaf answers themselves are evicted, least recently used first.
    assert cache.get(n("y4999.example.com."), RType.ADDR, now) is not None
    assert cache.get(n("y0.example.com."), RType.ADDR, now) is None


def test_the_infrastructure_part_has_its_own_lru_bound():
    cache = Cache(max_records=100, max_infra_records=3)
    cache.put([addr("www.example.", "192.0.2.1:53")], Rank.AUTH_ANSWER, T0)
    for label in "abcd":
        cache.put([ns(f"{label}.example.", f"ns.{label}.example.")], Rank.GLUE, T0)
        if label == "b":
            assert cache.find_delegation(n("x.a.example."), T0)  # a is the most recent
    assert cache.infra_records == 3
    assert cache.find_delegation(n("x.b.example."), T0) is None  # least recently used
    assert [cache.find_delegation(n(f"x.{label}.example."), T0).cut for label in "acd"] == [
        n("a.example."), n("c.example."), n("d.example.")]
    # A flood of delegations never evicts answers either.
    assert cache.get(n("www.example."), RType.ADDR, T0) is not None
    # An NS set larger than the whole part is refused.
    big = [ns("e.example.", f"ns{i}.e.example.") for i in range(4)]
    assert not cache.put(big, Rank.GLUE, T0)
    with pytest.raises(KeyresolveError):
        Cache(max_infra_records=0)


def test_the_root_cut_never_comes_from_the_cache():
    cache = Cache()
    cache.put([ns(".", "a.root-servers.")], Rank.AUTH_ANSWER, T0)  # a stub asked ". NS"
    assert cache.get(n("."), RType.NS, T0) is not None
    assert cache.find_delegation(n("alice@example.com."), T0) is None
    assert cache.find_delegation(n("."), T0) is None


def test_flushes_and_purges_cover_both_parts():
    cache = Cache()
    cache.watcher = watcher = Watcher()
    delegations(cache)
    cache.put([addr("www.example.com.", "192.0.2.1:53", 10)], Rank.AUTH_ANSWER, T0)
    assert cache.flush_name(n("example.com.")) == 1  # the delegation NS
    assert cache.find_delegation(n("www.example.com."), T0).cut == n("com.")
    assert "example.com." in watcher.heard
    with cache.recording() as lookups:
        cache.get(n("ns1.com."), RType.ADDR, T0, min_rank=Rank.GLUE)
    cache.touch(lookups[0].key)  # an infrastructure entry
    assert cache.purge_expired(T0 + 10) == 1 and cache.entries == 3
    cache.flush()
    assert len(cache) == 0 and cache.infra_records == 0
    with pytest.raises(KeyError):
        cache.touch(lookups[0].key)
