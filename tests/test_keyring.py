"""The key ring (keyresolve.store.keyring) on a real LMDB in a tmp dir:
persistence, the trust-on-first-use policy with pending keys, find by key
id prefix, remove."""

from __future__ import annotations

import stat

import pytest
from hypothesis import given, settings, strategies as st

from keyresolve.protocol.errors import StoreError
from keyresolve.protocol.records import KEY, KeyAlgorithm, KeyFlag, KeyUsage
from keyresolve.store.keyring import KeyRing, RingEntry


def x25519(n: int, flags: int = 0) -> KEY:
    return KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes([n]) * 32, flags)


def ed25519(n: int) -> KEY:
    return KEY(KeyAlgorithm.ED25519, KeyUsage.SIGN, bytes([n]) * 32)


def fetched(address: str, key: KEY, at: float = 1000.0) -> RingEntry:
    return RingEntry(address, key, "fetched", server="127.0.0.1:5353", fetched_at=at, ttl=3600,
                     flags=key.flags)


def test_entries_persist_across_reopen_and_files_are_private(tmp_path):
    path = tmp_path / "ring"
    with KeyRing(path) as ring:
        assert ring.put(RingEntry("Alice@Example.com", x25519(1), "added")) == "new"
        assert ring.put(fetched("alice@example.com", ed25519(2))) == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert {stat.S_IMODE(f.stat().st_mode) for f in path.iterdir()} == {0o600}
    with KeyRing(path) as ring:
        entries = ring.get("ALICE@example.com.")
        assert ring.addresses() == ["alice@example.com"]
    assert [(e.address, e.key, e.source, e.accepted) for e in entries] == [
        ("alice@example.com", x25519(1), "added", True),
        ("alice@example.com", ed25519(2), "fetched", True)]
    assert (entries[1].server, entries[1].fetched_at, entries[1].ttl) == (
        "127.0.0.1:5353", 1000.0, 3600)


def test_a_fetched_key_that_differs_is_pending_until_accepted(tmp_path):
    with KeyRing(tmp_path / "ring") as ring:
        ring.put(fetched("bob@example.com", x25519(1)))
        assert ring.put(fetched("bob@example.com", x25519(1), at=2000.0)) == "same"
        [held] = ring.get("bob@example.com")
        assert held.fetched_at == 2000.0 and held.accepted
        assert ring.put(fetched("bob@example.com", x25519(9), at=3000.0)) == "pending"
        accepted, pending = ring.get("bob@example.com")
        assert (accepted.key, accepted.accepted) == (x25519(1), True)
        assert (pending.key, pending.accepted) == (x25519(9), False)
        # The same changed key fetched again stays pending; the held one still answers.
        assert ring.put(fetched("bob@example.com", x25519(9), at=4000.0)) == "pending"
        assert len(ring.get("bob@example.com")) == 2
        [promoted] = ring.accept("bob@example.com")
        assert promoted.key == x25519(9) and promoted.accepted
        [only] = ring.get("bob@example.com")
        assert (only.key, only.accepted, only.fetched_at) == (x25519(9), True, 4000.0)
        assert ring.accept("bob@example.com") == []
        # The old key is no longer found by its id.
        assert ring.find(x25519(1).key_id) == []


def test_refetching_the_held_key_drops_a_pending_one(tmp_path):
    with KeyRing(tmp_path / "ring") as ring:
        ring.put(fetched("bob@example.com", x25519(1)))
        ring.put(fetched("bob@example.com", x25519(9)))
        assert ring.put(fetched("bob@example.com", x25519(1))) == "same"
        assert [e.key for e in ring.get("bob@example.com")] == [x25519(1)]
        assert ring.find(x25519(9).key_id) == []


def test_an_added_key_replaces_and_clears_pending(tmp_path):
    with KeyRing(tmp_path / "ring") as ring:
        ring.put(fetched("carol@example.com", x25519(1)))
        ring.put(fetched("carol@example.com", x25519(2)))
        assert ring.put(RingEntry("carol@example.com", x25519(3), "added")) == "replaced"
        [entry] = ring.get("carol@example.com")
        assert (entry.key, entry.source, entry.accepted) == (x25519(3), "added", True)


def test_a_fetch_confirming_an_added_key_keeps_its_source(tmp_path):
    with KeyRing(tmp_path / "ring") as ring:
        ring.put(RingEntry("dave@example.com", x25519(1), "own"))
        registered = x25519(1, KeyFlag.REGISTERED)
        assert ring.put(fetched("dave@example.com", registered)) == "same"
        [entry] = ring.get("dave@example.com")
        assert (entry.source, entry.flags, entry.key.flags, entry.server) == (
            "own", KeyFlag.REGISTERED, KeyFlag.REGISTERED, "127.0.0.1:5353")


def test_interim_keys_are_never_stored(tmp_path):
    with KeyRing(tmp_path / "ring") as ring:
        with pytest.raises(ValueError, match="interim"):
            ring.put(fetched("erin@example.com", x25519(1, KeyFlag.INTERIM)))
        assert ring.get("erin@example.com") == []


def test_find_by_key_id_prefix(tmp_path):
    keys = [x25519(n) for n in range(40)]
    with KeyRing(tmp_path / "ring") as ring:
        for n, key in enumerate(keys):
            ring.put(RingEntry(f"u{n}@example.com", key, "added"))
        ring.put(RingEntry("twin@example.com", keys[0], "added"))  # one key, two addresses
        for key in keys:
            for length in (1, 4, 16):
                prefix = key.key_id[:length]
                found = ring.find(prefix.upper())
                assert {e.key_id for e in found} == {
                    k.key_id for k in keys if k.key_id.startswith(prefix)}
        assert {e.address for e in ring.find(keys[0].key_id)} == {"u0@example.com",
                                                                  "twin@example.com"}
        for bad in ("", "xyz", "0" * 17):
            with pytest.raises(ValueError):
                ring.find(bad)


def test_remove(tmp_path):
    with KeyRing(tmp_path / "ring") as ring:
        ring.put(RingEntry("a@example.com", x25519(1), "added"))
        ring.put(fetched("a@example.com", x25519(2)))
        ring.put(RingEntry("a@example.com", ed25519(3), "added"))
        ring.put(RingEntry("ab@example.com", x25519(4), "added"))
        assert ring.remove("A@example.com") is True
        assert ring.remove("a@example.com") is False
        assert ring.get("a@example.com") == [] and ring.addresses() == ["ab@example.com"]
        assert ring.find(x25519(2).key_id) == [] and ring.find(ed25519(3).key_id) == []


def test_a_ring_of_another_layout_is_refused(tmp_path):
    import lmdb

    with KeyRing(tmp_path / "ring"):
        pass
    env = lmdb.open(str(tmp_path / "ring"), max_dbs=3)
    with env.begin(write=True) as txn:
        txn.put(b"version", b"\x63", db=env.open_db(b"meta", txn=txn))
    env.close()
    with pytest.raises(StoreError, match="layout version 99"):
        KeyRing(tmp_path / "ring")


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["fetched", "added", "accept", "remove"]),
                          st.integers(0, 3)), max_size=25))
def test_at_most_one_accepted_and_one_pending_per_usage(tmp_path_factory, steps):
    with KeyRing(tmp_path_factory.mktemp("ring")) as ring:
        for action, n in steps:
            if action == "fetched":
                ring.put(fetched("f@example.com", x25519(n)))
            elif action == "added":
                ring.put(RingEntry("f@example.com", x25519(n), "added"))
            elif action == "accept":
                ring.accept("f@example.com")
            else:
                ring.remove("f@example.com")
            entries = ring.get("f@example.com")
            assert [e.accepted for e in entries] in ([], [True], [True, False])
            if len(entries) == 2:
                assert entries[0].key != entries[1].key
            indexed = {e.key_id for n in range(4) for e in ring.find(x25519(n).key_id)}
            assert indexed == {e.key_id for e in entries}
