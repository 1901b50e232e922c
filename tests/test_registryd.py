"""The registry's shells in `keyresolve serve`, without sockets: its key
pair on disk, the per-prefix request limiter (a fake clock), the store's
overlay of registrations on a compile, the commit of a change with its
update-log entry, and the mail queue's retry at start."""

from __future__ import annotations

import os
import stat

import pytest

from keyresolve.authority.ratelimit import RequestLimiter
from keyresolve.daemons.registryd import (ENCRYPT_KEY_FILE, SIGN_KEY_FILE, commit_change,
                                          ensure_apex_keys, load_or_make_keys, public_keys)
from keyresolve.protocol.codes import RType
from keyresolve.protocol.errors import KeyresolveError, ZoneErrors
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import KEY, KeyAlgorithm, KeyFlag, KeyUsage, Record
from keyresolve.registry.messages import LogEntry, LogOp
from keyresolve.registry.state import Change
from keyresolve.store.mailqueue import MailQueue
from keyresolve.store.zones import Store

ZONE = Name.from_text("example.com.")
ALICE = Name.from_text("alice@example.com.")
ZONE_TEXT = """$ORIGIN example.com.
$TTL 60
@ SOA ns1 hostmaster@ 7 3600 1 3600 30
@ NS ns1
ns1 ADDR 127.0.0.1:9
carol@ KEY x25519 encrypt AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
"""


def keys(seed: int) -> tuple[KEY, KEY]:
    raw = bytes((seed + i) % 256 for i in range(32))
    flags = int(KeyFlag.REGISTERED)
    return (KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, raw, flags),
            KEY(KeyAlgorithm.ED25519, KeyUsage.SIGN, raw[::-1], flags))


# -- the key pair -----------------------------------------------------------------------
def test_the_key_pair_is_made_once_owner_only_and_read_back(tmp_path):
    key_dir = tmp_path / "registry-keys"
    encrypt, sign = load_or_make_keys(key_dir)
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    for name in (ENCRYPT_KEY_FILE, SIGN_KEY_FILE):
        assert stat.S_IMODE((key_dir / name).stat().st_mode) == 0o600
    again = load_or_make_keys(key_dir)
    assert public_keys(*again) == public_keys(encrypt, sign)


def test_a_half_pair_or_an_open_file_is_refused_naming_it(tmp_path):
    key_dir = tmp_path / "keys"
    load_or_make_keys(key_dir)
    os.chmod(key_dir / SIGN_KEY_FILE, 0o644)
    with pytest.raises(KeyresolveError, match="accessible by group or others"):
        load_or_make_keys(key_dir)
    os.unlink(key_dir / SIGN_KEY_FILE)
    with pytest.raises(KeyresolveError, match=f"{SIGN_KEY_FILE} is missing"):
        load_or_make_keys(key_dir)
    (key_dir / SIGN_KEY_FILE).write_bytes(b"not a key")
    os.chmod(key_dir / SIGN_KEY_FILE, 0o600)
    with pytest.raises(KeyresolveError, match="not a PKCS#8 PEM") as info:
        load_or_make_keys(key_dir)
    assert "PRIVATE" not in str(info.value)


# -- the limiter ------------------------------------------------------------------------
def test_the_limiter_allows_a_burst_then_the_rate_per_prefix():
    limiter = RequestLimiter(rate=2.0, burst=3)
    assert [limiter.allow("192.0.2.1", 100.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("192.0.2.77", 100.0) is False  # the same /24
    assert limiter.allow("198.51.100.1", 100.0) is True  # another prefix
    assert limiter.allow("192.0.2.1", 100.5) is True  # one token back after 0.5 s
    assert limiter.allow("192.0.2.1", 100.5) is False
    assert limiter.allow("2001:db8:0:1::1", 0.0) and limiter.allow("2001:db8:0:2::1", 0.0)
    assert limiter.refused == 3


def test_the_limiter_table_is_bounded():
    limiter = RequestLimiter(rate=1.0, burst=2, max_prefixes=100)
    for i in range(10_000):
        limiter.allow(f"10.{i // 256 % 256}.{i % 256}.1", float(i))
    assert len(limiter) <= 100


# -- the overlay ------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "db", map_size=1 << 26) as s:
        yield s


def test_a_compile_adds_the_overlay_and_refuses_a_key_at_a_registered_address(store,
                                                                              tmp_path):
    path = tmp_path / "example.com.zone"
    path.write_text(ZONE_TEXT)
    registered = [Record(ALICE, RType.KEY, 3600, key) for key in keys(1)]
    compiled = store.load_zone_file(str(path), ZONE, overlay=registered)
    assert compiled.records == 6
    with store.snapshot() as snap:
        node = snap.get_zone(ZONE).get_node(ALICE)
        assert set(node[RType.KEY].rdatas) == set(keys(1))
    path.write_text(ZONE_TEXT.replace(" 7 3600", " 8 3600")
                    + "alice@ KEY x25519 encrypt AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\n")
    with pytest.raises(ZoneErrors) as info:
        store.load_zone_file(str(path), ZONE, overlay=registered)
    assert str(info.value) == (f"{path}:7: KEY at alice@example.com., a registered address: "
                               "its keys are the registry's (unregister them, or remove "
                               "this line)")
    assert store.get_zone_info(ZONE).serial == 7  # the served zone stays


# -- a change and its update-log entry --------------------------------------------------
def test_a_change_is_one_commit_with_its_update_log_entry(store, tmp_path):
    path = tmp_path / "example.com.zone"
    path.write_text(ZONE_TEXT)
    store.load_zone_file(str(path), ZONE)
    old, new = keys(1), keys(2)
    entry, soa = commit_change(store, Change(LogOp.PUBLISH, ZONE, ALICE, old, 1000), "keep", 0)
    assert entry.serial == soa.rdata.serial == 8
    entry, soa = commit_change(store, Change(LogOp.PUBLISH, ZONE, ALICE, new, 1001, old),
                               "keep", 0)
    with store.snapshot() as snap:
        assert set(snap.get_zone(ZONE).get_node(ALICE)[RType.KEY].rdatas) == set(new)
    entry, soa = commit_change(store, Change(LogOp.WITHDRAW, ZONE, ALICE, new, 1002,
                                             reason="unregistered"), "keep", 0)
    with store.snapshot() as snap:
        assert snap.get_zone(ZONE).get_node(ALICE) is None
        assert snap.get_zone(ZONE).serial == 10
    log = [LogEntry.from_wire(raw) for raw in store.update_log(ZONE)]
    assert [(e.op, e.serial, e.keys) for e in log] == [
        (LogOp.PUBLISH, 8, old), (LogOp.PUBLISH, 9, new), (LogOp.WITHDRAW, 10, new)]
    assert len(store.journal_steps(ZONE, 9)) == 1  # (older ones evicted: a tiny zone)


def test_the_apex_keys_are_published_once(store, tmp_path):
    path = tmp_path / "example.com.zone"
    path.write_text(ZONE_TEXT)
    store.load_zone_file(str(path), ZONE)
    apex = keys(9)
    assert ensure_apex_keys(store, ZONE, apex, "keep", 0).rdata.serial == 8
    assert ensure_apex_keys(store, ZONE, apex, "keep", 0) is None
    with store.snapshot() as snap:
        assert set(snap.get_zone(ZONE).get_node(ZONE)[RType.KEY].rdatas) == set(apex)


# -- the mail queue at start ------------------------------------------------------------
def test_retry_all_makes_every_mail_due_keeping_its_failures(tmp_path):
    with MailQueue(tmp_path / "q", mail_interval=0) as queue:
        queue.enqueue("a@example.com", "keys@example.com", b"one", 100.0)
        queue.enqueue("b@example.com", "keys@example.com", b"two", 100.0)
        for mail in queue.due(100.0, 10):
            queue.mark_failed(mail.id, 400.0)
        assert queue.due(200.0, 10) == []
        assert queue.retry_all(200.0) == 2
        due = queue.due(200.0, 10)
        assert [m.failures for m in due] == [1, 1] and queue.total() == 2


def test_a_group_of_changes_is_one_commit_in_order(store, tmp_path):
    from keyresolve.daemons.registryd import commit_changes

    path = tmp_path / "example.com.zone"
    path.write_text(ZONE_TEXT)
    store.load_zone_file(str(path), ZONE)
    bob = Name.from_text("bob@example.com.")
    old, new, bobs = keys(1), keys(2), keys(3)
    changes = [Change(LogOp.PUBLISH, ZONE, ALICE, old, 1000),
               Change(LogOp.PUBLISH, ZONE, bob, bobs, 1000),
               Change(LogOp.PUBLISH, ZONE, ALICE, new, 1001, old),
               Change(LogOp.RENEW, ZONE, bob, bobs, 1002)]
    entries, soa = commit_changes(store, ZONE, changes, "keep", 0)
    assert soa.rdata.serial == 8 and [e.serial for e in entries] == [8] * 4
    with store.snapshot() as snap:
        view = snap.get_zone(ZONE)
        assert set(view.get_node(ALICE)[RType.KEY].rdatas) == set(new)
        assert set(view.get_node(bob)[RType.KEY].rdatas) == set(bobs)
    assert [LogEntry.from_wire(raw).op for raw in store.update_log(ZONE)] == [
        LogOp.PUBLISH, LogOp.PUBLISH, LogOp.PUBLISH, LogOp.RENEW]
    (step,) = store.journal_steps(ZONE, 7)
    assert len(list(step.iter_added())) == 4  # the 4 keys now served, nothing removed


# -- the group commit's gathering --------------------------------------------------------
def _gathering(deciding: int):
    """A RegistryService reduced to what `_gather` reads: `deciding`
    requests admitted and not yet decided, none submitted."""
    import trio

    from keyresolve.daemons.registryd import RegistryService

    service = object.__new__(RegistryService)
    service._deciding, service._submitted, service._decided = deciding, [], trio.Event()
    return service


def test_a_commit_waits_for_the_requests_being_decided_then_goes():
    import trio
    import trio.testing

    from keyresolve.daemons.registryd import GROUP_COMMIT_WINDOW

    service = _gathering(2)
    order = []

    async def decide() -> None:  # as RegistryService._handle ends each decision
        for _ in range(2):
            await trio.sleep(GROUP_COMMIT_WINDOW / 10)
            order.append("decided")
            service._deciding -= 1
            if not service._deciding:
                service._decided.set()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(decide)
            await service._gather()
            order.append("commit")

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert order == ["decided", "decided", "commit"]


def test_a_commit_waits_no_longer_than_the_window_nor_at_all_with_nothing_to_decide():
    import trio
    import trio.testing

    from keyresolve.daemons.registryd import GROUP_COMMIT_WINDOW

    async def waited(service) -> float:
        start = trio.current_time()
        await service._gather()
        return trio.current_time() - start

    clock = trio.testing.MockClock(autojump_threshold=0)
    assert trio.run(waited, _gathering(3), clock=clock) == GROUP_COMMIT_WINDOW  # never decided
    assert trio.run(waited, _gathering(0), clock=clock) == 0
