"""The key lookup's decisions (keyresolve.client.lookup), with an in-memory
ring, scripted sources and a fake clock; no sockets."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyresolve.client.lookup import (FETCHED, KeyChanged, KeyLookup, NoKeyPublished,
                                      NoSuchAddress, Outcome, ServersUnreachable,
                                      SourceAnswer, key_ids, pick)
from keyresolve.protocol.records import KEY, KeyAlgorithm, KeyFlag, KeyUsage

ADDRESS = "alice@example.com"


def enc(seed: int, flags: int = 0) -> KEY:
    return KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes([seed]) * 32, flags)


def sig(seed: int) -> KEY:
    return KEY(KeyAlgorithm.ED25519, KeyUsage.SIGN, bytes([seed]) * 32)


@dataclass
class Held:
    key: KEY
    source: str
    fetched_at: float | None
    ttl: int | None
    accepted: bool


class MemoryRing:
    """The store's rule: the first keys of an address are accepted, the same
    key again is refreshed, another one is kept pending."""

    def __init__(self) -> None:
        self.entries: dict[str, list[Held]] = {}
        self.stores = 0

    def held(self, address):
        return list(self.entries.get(address, []))

    def store_fetched(self, address, keys, server, fetched_at, ttl):
        self.stores += 1
        entries = self.entries.setdefault(address, [])
        for key in keys:
            same = [h for h in entries if h.key == key]
            if same:
                same[0].fetched_at, same[0].ttl = fetched_at, ttl
                continue
            first = not any(h.key.usage == key.usage for h in entries)
            if not first:  # one pending key per usage, the last seen
                entries[:] = [h for h in entries if h.key.usage != key.usage or h.accepted]
            entries.append(Held(key, FETCHED, fetched_at, ttl, first))

    def accept(self, address):
        entries = self.entries[address]
        for usage in KeyUsage:
            pending = [h for h in entries if h.key.usage == usage and not h.accepted]
            if pending:
                entries[:] = [h for h in entries if h.key.usage != usage or not h.accepted]
                for h in pending:
                    h.accepted = True


class Scripted:
    def __init__(self, *answers: SourceAnswer, name: str = "resolver 127.0.0.1:5353"):
        self.answers = list(answers)
        self.name = name
        self.asked = 0

    def ask(self, address):
        self.asked += 1
        return self.answers[min(self.asked, len(self.answers)) - 1]


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def found(*keys, ttl=3600, at=1_000_000.0):
    return SourceAnswer(Outcome.FOUND, tuple(keys), "127.0.0.1:5353", ttl, at)


def test_a_miss_asks_the_resolver_and_stores_what_it_fetched_then_the_ring_answers():
    ring, clock = MemoryRing(), Clock()
    source = Scripted(found(enc(1), sig(2)))
    lookup = KeyLookup(ring, [source], now=clock)
    first = lookup.find(ADDRESS)
    assert first.keys == (enc(1),) and first.source == source.name and first.notes == ()
    assert {h.key for h in ring.held(ADDRESS)} == {enc(1), sig(2)}
    assert all(h.accepted and h.source == FETCHED and h.ttl == 3600 for h in ring.held(ADDRESS))
    again = lookup.find(ADDRESS)
    assert again.keys == (enc(1),) and again.source == "ring" and source.asked == 1
    assert lookup.find(ADDRESS, KeyUsage.SIGN).keys == (sig(2),) and source.asked == 1


def test_a_fetched_key_older_than_its_ttl_is_asked_again():
    ring, clock = MemoryRing(), Clock()
    source = Scripted(found(enc(1), ttl=60), found(enc(1), ttl=60, at=clock.t + 61))
    lookup = KeyLookup(ring, [source], now=clock)
    lookup.find(ADDRESS)
    clock.t += 59
    assert lookup.find(ADDRESS).source == "ring"
    clock.t += 2
    assert lookup.find(ADDRESS).source == source.name and source.asked == 2


def test_interim_keys_are_used_and_never_stored():
    ring = MemoryRing()
    lookup = KeyLookup(ring, [Scripted(found(enc(7, KeyFlag.INTERIM)))], now=Clock())
    got = lookup.find(ADDRESS)
    assert got.interim and got.keys == (enc(7, KeyFlag.INTERIM),)
    assert "interim" in got.notes[0] and "not kept" in got.notes[0]
    assert ring.held(ADDRESS) == [] and ring.stores == 0


def test_a_changed_key_is_told_with_both_ids_used_without_strict_refused_with_it():
    ring, clock = MemoryRing(), Clock()
    KeyLookup(ring, [Scripted(found(enc(1), ttl=10))], now=clock).find(ADDRESS)
    clock.t += 11
    source = Scripted(found(enc(2), at=clock.t))
    loose = KeyLookup(ring, [source], now=clock).find(ADDRESS)
    assert loose.keys == (enc(2),)
    assert loose.change.old_ids == (enc(1).key_id,) and loose.change.new_ids == (enc(2).key_id,)
    assert enc(1).key_id in loose.notes[0] and enc(2).key_id in loose.notes[0]
    # the new key is pending: the ring answers with it, warning each time
    again = KeyLookup(ring, [source], now=clock).find(ADDRESS)
    assert again.source == "ring" and again.change is not None and source.asked == 1
    with pytest.raises(KeyChanged) as refused:
        KeyLookup(ring, [source], now=clock, strict=True).find(ADDRESS)
    text = str(refused.value)
    assert enc(1).key_id in text and enc(2).key_id in text and "keyring accept" in text
    ring.accept(ADDRESS)
    accepted = KeyLookup(ring, [source], now=clock, strict=True).find(ADDRESS)
    assert accepted.keys == (enc(2),) and accepted.change is None and accepted.notes == ()


def test_strict_refuses_a_change_seen_on_fetch_and_keeps_it_pending():
    ring, clock = MemoryRing(), Clock()
    KeyLookup(ring, [Scripted(found(enc(1), ttl=10))], now=clock).find(ADDRESS)
    clock.t += 11
    with pytest.raises(KeyChanged):
        KeyLookup(ring, [Scripted(found(enc(2)))], now=clock, strict=True).find(ADDRESS)
    assert {(h.key, h.accepted) for h in ring.held(ADDRESS)} == {(enc(1), True),
                                                                 (enc(2), False)}


@pytest.mark.parametrize("outcome, error, words", [
    (Outcome.NO_SUCH_ADDRESS, NoSuchAddress, "no such address"),
    (Outcome.NO_KEY, NoKeyPublished, "no key"),
    (Outcome.UNREACHABLE, ServersUnreachable, "unreachable"),
])
def test_each_failure_is_its_own_error_naming_the_address(outcome, error, words):
    lookup = KeyLookup(MemoryRing(), [Scripted(SourceAnswer(outcome, detail="no reply"))],
                       now=Clock())
    with pytest.raises(error) as failed:
        lookup.find(ADDRESS)
    assert str(failed.value).startswith(ADDRESS + ": ") and words in str(failed.value)
    assert "\n" not in str(failed.value) and failed.value.address == ADDRESS


def test_an_address_with_only_a_signing_key_has_no_encryption_key():
    lookup = KeyLookup(MemoryRing(), [Scripted(found(sig(3)))], now=Clock())
    with pytest.raises(NoKeyPublished, match="no encryption key"):
        lookup.find(ADDRESS)


def test_unreachable_servers_fall_back_to_a_stale_ring_key_with_a_note():
    ring, clock = MemoryRing(), Clock()
    KeyLookup(ring, [Scripted(found(enc(1), ttl=10))], now=clock).find(ADDRESS)
    clock.t += 100
    down = Scripted(SourceAnswer(Outcome.UNREACHABLE, detail="no reply within 2 s"))
    got = KeyLookup(ring, [down], now=clock).find(ADDRESS)
    assert got.keys == (enc(1),) and got.source == "ring" and "no reply within 2 s" in got.notes[0]


def test_a_later_source_slots_in_after_one_that_is_down_or_has_nothing():
    down = Scripted(SourceAnswer(Outcome.UNREACHABLE), name="resolver")
    empty = Scripted(SourceAnswer(Outcome.NO_KEY), name="directory one")
    other = Scripted(found(enc(5)), name="directory two")
    got = KeyLookup(MemoryRing(), [down, empty, other], now=Clock()).find(ADDRESS)
    assert got.keys == (enc(5),) and got.source == "directory two"


def test_a_negative_answer_wins_over_an_unreachable_source():
    down = Scripted(SourceAnswer(Outcome.UNREACHABLE))
    gone = Scripted(SourceAnswer(Outcome.NO_SUCH_ADDRESS), name="resolver two")
    with pytest.raises(NoSuchAddress, match="resolver two"):
        KeyLookup(MemoryRing(), [down, gone], now=Clock()).find(ADDRESS)


def test_keys_added_by_hand_never_expire_and_are_not_fetched():
    ring, clock = MemoryRing(), Clock()
    ring.entries[ADDRESS] = [Held(enc(9), "added", None, None, True)]
    source = Scripted(found(enc(1)))
    clock.t += 10**9
    assert KeyLookup(ring, [source], now=clock).find(ADDRESS).keys == (enc(9),)
    assert source.asked == 0


def test_a_signature_naming_a_key_the_ring_lacks_asks_the_servers():
    ring, clock = MemoryRing(), Clock()
    source = Scripted(found(sig(2)), found(sig(2), sig(4)))
    lookup = KeyLookup(ring, [source], now=clock)
    assert lookup.find(ADDRESS, KeyUsage.SIGN, sig(2).key_id).source == source.name
    assert lookup.find(ADDRESS, KeyUsage.SIGN, sig(2).key_id).source == "ring"
    got = lookup.find(ADDRESS, KeyUsage.SIGN, sig(4).key_id)
    assert source.asked == 2 and sig(4) in got.keys


def test_refresh_reports_a_change_and_stores_it_pending():
    ring, clock = MemoryRing(), Clock()
    KeyLookup(ring, [Scripted(found(enc(1)))], now=clock).find(ADDRESS)
    answer, change = KeyLookup(ring, [Scripted(found(enc(2)))], now=clock).refresh(ADDRESS)
    assert answer.outcome == Outcome.FOUND
    assert change.old_ids == (enc(1).key_id,) and change.new_ids == (enc(2).key_id,)
    assert {(h.key, h.accepted) for h in ring.held(ADDRESS)} == {(enc(1), True),
                                                                 (enc(2), False)}
    same, none = KeyLookup(ring, [Scripted(found(enc(1)))], now=clock).refresh(ADDRESS)
    assert same.outcome == Outcome.FOUND and none is None


def hybrid(seed: int) -> KEY:
    return KEY(KeyAlgorithm.MLKEM768X25519, KeyUsage.ENCRYPT, bytes([seed]) * 1216)


def test_one_key_per_usage_is_picked_and_stored_the_hybrid_first_registered_before_it():
    ring = MemoryRing()
    got = KeyLookup(ring, [Scripted(found(enc(1), hybrid(2), sig(3)))], now=Clock()).find(ADDRESS)
    assert got.keys == (hybrid(2),)
    assert sorted(h.key.algorithm for h in ring.held(ADDRESS)) == [KeyAlgorithm.ED25519,
                                                                   KeyAlgorithm.MLKEM768X25519]
    registered = enc(4, KeyFlag.REGISTERED)
    assert pick([hybrid(2), registered], KeyUsage.ENCRYPT) == registered
    assert pick([enc(6), enc(5)], KeyUsage.ENCRYPT) == pick([enc(5), enc(6)], KeyUsage.ENCRYPT)


def test_an_address_with_only_keys_seal_cannot_use_has_no_key():
    x448 = KEY(KeyAlgorithm.X448, KeyUsage.ENCRYPT, bytes(56))
    with pytest.raises(NoKeyPublished, match="no encryption key"):
        KeyLookup(MemoryRing(), [Scripted(found(x448))], now=Clock()).find(ADDRESS)


def test_a_signature_by_the_accepted_key_verifies_while_a_new_one_is_pending():
    ring, clock = MemoryRing(), Clock()
    KeyLookup(ring, [Scripted(found(sig(2)))], now=clock).find(ADDRESS, KeyUsage.SIGN)
    KeyLookup(ring, [Scripted(found(sig(4)))], now=clock).refresh(ADDRESS)
    source = Scripted(found(sig(4)))
    old = KeyLookup(ring, [source], now=clock).find(ADDRESS, KeyUsage.SIGN, sig(2).key_id)
    assert old.keys == (sig(2),) and old.change is None and source.asked == 0
    new = KeyLookup(ring, [source], now=clock).find(ADDRESS, KeyUsage.SIGN, sig(4).key_id)
    assert new.keys == (sig(4),) and new.change.new_ids == (sig(4).key_id,)
    assert source.asked == 0


_ANSWERS = st.one_of(
    st.builds(lambda seeds, interim, ttl: found(*[enc(s, KeyFlag.INTERIM if interim else 0)
                                                  for s in seeds], ttl=ttl),
              st.lists(st.integers(1, 4), min_size=1, max_size=2), st.booleans(),
              st.integers(1, 100)),
    st.sampled_from([SourceAnswer(Outcome.NO_KEY), SourceAnswer(Outcome.NO_SUCH_ADDRESS),
                     SourceAnswer(Outcome.UNREACHABLE)]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_ANSWERS, st.integers(0, 150), st.booleans(), st.booleans()),
                max_size=12))
def test_a_walk_keeps_the_policy(steps):
    """Whatever the servers say and whenever: interim keys never reach the
    ring, strict never hands out a key other than the accepted one, a key
    handed out came from the ring or from that answer, and a changed key is
    always reported with both ids."""
    ring, clock = MemoryRing(), Clock()
    for answer, wait, strict, accept in steps:
        clock.t += wait
        answer = SourceAnswer(answer.outcome, answer.keys, answer.server, answer.ttl, clock.t)
        before = {h.key for h in ring.held(ADDRESS)}
        accepted = [h.key for h in ring.held(ADDRESS) if h.accepted]
        try:
            got = KeyLookup(ring, [Scripted(answer)], now=clock, strict=strict).find(ADDRESS)
        except KeyChanged as exc:
            assert strict and exc.change.old_ids == key_ids(accepted)
        except (NoKeyPublished, NoSuchAddress, ServersUnreachable):
            pass
        else:
            assert len(got.keys) == 1
            assert set(got.keys) <= before | set(answer.keys)
            if strict and accepted:
                assert key_ids(got.keys) == key_ids(accepted)
            if accepted and key_ids(got.keys) != key_ids(accepted):
                assert got.change.old_ids == key_ids(accepted)
                assert any(accepted[0].key_id in n and got.keys[0].key_id in n
                           for n in got.notes)
        assert not any(h.key.flags & KeyFlag.INTERIM for h in ring.held(ADDRESS))
        if accept and ring.held(ADDRESS):
            ring.accept(ADDRESS)
