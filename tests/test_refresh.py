"""Secondary zone timers: every state x input, expiry, restart."""

from __future__ import annotations

import pytest

from keyresolve.protocol.errors import KeyresolveError
from keyresolve.protocol.names import Name
from keyresolve.authority.refresh import (MAX_BOOTSTRAP_RETRY, MAX_EXPIRE, MIN_EXPIRE, MIN_REFRESH,
                                MIN_RETRY, FailureReport, RefreshState, State, Timers,
                                transfer_at_once)
from keyresolve.protocol.records import SOA


def soa(serial=1, refresh=60, retry=10, expire=300) -> SOA:
    return SOA(Name.from_text("ns1.example."), Name.from_text("h@example."), serial, refresh,
               retry, expire, 30)


def test_timers_are_clamped():
    assert Timers.from_soa(soa(refresh=0, retry=0, expire=0)) == Timers(
        MIN_REFRESH, MIN_RETRY, max(MIN_EXPIRE, MIN_REFRESH))
    assert Timers.from_soa(soa(expire=2**32 - 1)).expire == MAX_EXPIRE
    assert Timers.from_soa(soa(refresh=600, expire=300)).expire == 600  # expire >= refresh


def test_new_zone_checks_at_once_and_is_expired_until_it_has_data():
    state = RefreshState(None, None, now=100)
    assert state.wait(100) == 0 and state.expired(100)
    state.begin_check()
    state.check_succeeded(soa(), now=101)
    assert not state.expired(101) and state.wait(101) == 60


def test_expiry_after_expire_seconds_without_success():
    state = RefreshState(soa(), last_success=1000, now=1000)
    for t, wait in ((1010, 1), (1020, 2)):
        state.begin_check()
        state.check_failed(t)
        assert state.wait(t) == wait
    assert not state.expired(1299) and state.expired(1300)
    state.begin_check()
    state.check_succeeded(soa(serial=2), 1301)
    assert not state.expired(1301)


def test_restart_checks_at_once_and_resumes_expiry_from_the_persisted_success():
    """Issue #17: a secondary restarted after missing a NOTIFY (or killed
    mid-transfer) waited for its refresh timer; it asks its primaries at once."""
    assert RefreshState(soa(), last_success=1000, now=1030).wait(1030) == 0
    assert RefreshState(soa(), last_success=1000, now=2000).wait(2000) == 0
    assert RefreshState(soa(), last_success=5000, now=1000).wait(1000) == 0
    assert RefreshState(soa(), last_success=1000, now=1299).expired(1299) is False
    assert RefreshState(soa(), last_success=1000, now=1300).expired(1300) is True
    state = RefreshState(soa(), last_success=1000, now=1030)
    state.begin_check()
    state.check_succeeded(soa(), 1031)
    assert state.wait(1031) == 60  # then the refresh timer runs


def test_failed_checks_back_off_up_to_the_soa_retry():
    """Issue #17: a failing transfer was retried every second, forever."""
    state = RefreshState(soa(retry=10), last_success=1000, now=1000)
    now, waits = 1000.0, []
    for _ in range(7):
        state.begin_check()
        state.check_failed(now)
        waits.append(state.wait(now))
        now += waits[-1]  # a fake clock: the next attempt when it is due
    assert waits == [1, 2, 4, 8, 10, 10, 10]
    state.begin_check()
    state.check_succeeded(soa(retry=10), now)
    state.notify(now)
    state.begin_check()
    state.check_failed(now)
    assert state.wait(now) == MIN_RETRY  # a success starts the backoff over


def test_a_zone_without_data_backs_off_to_the_bootstrap_bound():
    state = RefreshState(None, None, now=0)
    now, waits = 0.0, []
    for _ in range(16):
        state.begin_check()
        state.check_failed(now)
        waits.append(state.wait(now))
        now += waits[-1]
    assert waits[:4] == [1, 2, 4, 8] and waits[-1] == MAX_BOOTSTRAP_RETRY
    assert all(a <= b for a, b in zip(waits, waits[1:]))
    for _ in range(100):  # no overflow however long it fails
        state.begin_check()
        state.check_failed(now)
    assert state.wait(now) == MAX_BOOTSTRAP_RETRY


def test_a_notify_checks_at_once_even_while_backing_off():
    state = RefreshState(soa(retry=300), last_success=1000, now=1000)
    for t in range(1000, 1010):
        state.begin_check()
        state.check_failed(t)
    assert state.wait(1010) > 100
    state.notify(1010)
    assert state.wait(1010) == 0


def test_failure_report_says_a_failure_once_then_how_often_it_repeated():
    report = FailureReport()
    lines = [report.failed("BADSIG") for _ in range(9)]
    assert lines == ["BADSIG", "BADSIG (repeated 1 time)", "BADSIG (repeated 2 times)", None,
                     "BADSIG (repeated 4 times)", None, None, None,
                     "BADSIG (repeated 8 times)"]
    assert report.failed("timed out") == "timed out"  # another failure: said at once
    assert report.failed("timed out") == "timed out (repeated 1 time)"
    assert report.succeeded() == "answers again after 11 failed attempts"
    assert report.succeeded() is None
    assert report.failed("BADSIG") == "BADSIG"  # a new episode


# every state x input: (state, input) -> (next state, wait afterwards) or error
CASES = {
    (State.IDLE, "notify"): (State.IDLE, 0),
    (State.IDLE, "begin_check"): (State.CHECKING, 60),
    (State.IDLE, "check_succeeded"): KeyresolveError,
    (State.IDLE, "check_failed"): KeyresolveError,
    (State.CHECKING, "notify"): (State.CHECKING, 60),
    (State.CHECKING, "begin_check"): KeyresolveError,
    (State.CHECKING, "check_succeeded"): (State.IDLE, 60),
    (State.CHECKING, "check_failed"): (State.IDLE, MIN_RETRY),  # the first retry
}


@pytest.mark.parametrize("start,event", list(CASES))
def test_state_machine(start, event):
    state = RefreshState(soa(), last_success=1000, now=1000)
    state.begin_check()  # the start-up check, done: the refresh timer runs
    state.check_succeeded(soa(), 1000)
    if start is State.CHECKING:
        state.begin_check()
    inputs = {"notify": lambda: state.notify(1000), "begin_check": state.begin_check,
              "check_succeeded": lambda: state.check_succeeded(soa(), 1000),
              "check_failed": lambda: state.check_failed(1000)}
    expected = CASES[(start, event)]
    if expected is KeyresolveError:
        with pytest.raises(KeyresolveError):
            inputs[event]()
        assert state.state is start
        return
    inputs[event]()
    assert (state.state, state.wait(1000)) == expected


@pytest.mark.parametrize("outcome", ["check_succeeded", "check_failed"])
def test_notify_during_a_check_is_not_lost(outcome):
    state = RefreshState(soa(), last_success=1000, now=1000)
    state.begin_check()
    state.notify(1001)
    if outcome == "check_succeeded":
        state.check_succeeded(soa(serial=2), 1002)
    else:
        state.check_failed(1002)
    assert state.wait(1002) == 0  # checks again at once
    state.begin_check()
    state.check_succeeded(soa(serial=3), 1003)
    assert state.wait(1003) == 60  # and the recheck flag is spent


@pytest.mark.parametrize("hint, held, at_once", [
    (None, soa(5), False),              # no NOTIFY serial: ask the SOA first
    (6, None, False),                   # no copy: the SOA query, then a full transfer
    (6, soa(5), True),                  # newer: IXFR at once
    (5, soa(5), False),                 # the same: the SOA query decides
    (4, soa(5), False),                 # older
    (0, soa(0xFFFFFFFF), True),         # newer across the wrap (RFC 1982)
    (5 + 2**31, soa(5), False),         # 2**31 away: undefined, not newer
])
def test_a_notify_serial_newer_than_ours_skips_the_soa_query(hint, held, at_once):
    assert transfer_at_once(hint, held) is at_once

