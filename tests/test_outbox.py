"""The outbox: its pure decisions (keyresolve.registry.outbox) over every
state and input with a fake clock, and its LMDB table
(keyresolve.store.mailqueue) in real environments in tmp dirs."""

from __future__ import annotations

import itertools
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyresolve.protocol.errors import StoreError
from keyresolve.store.mailqueue import MAX_QUEUED_MAIL, MailQueue
from keyresolve.registry import outbox
from keyresolve.registry.outbox import FIRST_RETRY, MAX_QUEUE_LIFETIME, MAX_QUEUED, MAX_QUEUED_BYTES, MAX_QUEUED_PER_ADDRESS, MAX_RETRY, Action, Admission, Decision, Delivery, admit, after_attempt, retry_delay

HOUR = 3600.0
T0 = 1_800_000_000.0

# -- the schedule --------------------------------------------------------------


def test_retry_delays_double_from_a_minute_to_an_hour():
    assert [retry_delay(n) for n in range(1, 10)] == [60, 120, 240, 480, 960, 1920, 3600,
                                                       3600, 3600]
    assert retry_delay(10_000) == MAX_RETRY
    with pytest.raises(ValueError):
        retry_delay(0)


#: Mail ages at the try: new, mid-life, just below and at/after the lifetime,
#: and a clock that went back (negative age).
AGES = [0.0, 2 * 86400.0, MAX_QUEUE_LIFETIME - 1, MAX_QUEUE_LIFETIME, MAX_QUEUE_LIFETIME * 3,
        -HOUR]
FAILURES = [0, 1, 2, 6, 7, 50]


@pytest.mark.parametrize("age, failures, delivery",
                         list(itertools.product(AGES, FAILURES, list(Delivery))))
def test_after_attempt_over_every_state_and_input(age, failures, delivery):
    now = T0 + age
    decision = after_attempt(created_at=T0, failures=failures, now=now, delivery=delivery)
    if delivery is Delivery.SENT:
        assert decision == Decision(Action.DONE)
    elif delivery is Delivery.PERMANENT:
        assert decision == Decision(Action.DROP)
    elif age >= MAX_QUEUE_LIFETIME:
        assert decision == Decision(Action.EXPIRE)
    else:
        expected = min(FIRST_RETRY * 2 ** failures, MAX_RETRY)
        assert decision == Decision(Action.RETRY, now + expected)


def test_a_mail_never_sent_is_tried_until_five_days_then_given_up():
    """Driven by a fake clock: the tries, the backoff and the give-up time."""
    now, failures, tries = T0, 0, [T0]
    while True:
        decision = after_attempt(created_at=T0, failures=failures, now=now,
                                 delivery=Delivery.TEMPORARY)
        if decision.action is Action.EXPIRE:
            break
        assert decision.action is Action.RETRY
        now, failures = decision.next_at, failures + 1
        tries.append(now)
    gaps = [b - a for a, b in zip(tries, tries[1:])]
    assert gaps[:7] == [60, 120, 240, 480, 960, 1920, 3600] and set(gaps[7:]) == {3600}
    assert tries[-1] - T0 >= MAX_QUEUE_LIFETIME > tries[-2] - T0
    assert len(tries) == 7 + (MAX_QUEUE_LIFETIME - 3780) // 3600 + 1


ADMISSION_CASES = [
    # last_mail_at relative to now, queued for address, total, bytes, expected
    (None, 0, 0, 0, Admission.QUEUED),
    (-HOUR, 0, 0, 0, Admission.QUEUED),               # exactly one interval ago
    (-HOUR + 1, 0, 0, 0, Admission.THROTTLED),
    (0.0, 0, 0, 0, Admission.THROTTLED),
    (+10.0, 0, 0, 0, Admission.THROTTLED),            # the clock went back
    (None, MAX_QUEUED_PER_ADDRESS - 1, 0, 0, Admission.QUEUED),
    (None, MAX_QUEUED_PER_ADDRESS, 0, 0, Admission.ADDRESS_FULL),
    (-HOUR, MAX_QUEUED_PER_ADDRESS, MAX_QUEUED, 0, Admission.ADDRESS_FULL),
    (None, 0, MAX_QUEUED - 1, 0, Admission.QUEUED),
    (None, 0, MAX_QUEUED, 0, Admission.QUEUE_FULL),
    (None, 0, 0, MAX_QUEUED_BYTES - 100, Admission.QUEUED),
    (None, 0, 0, MAX_QUEUED_BYTES - 99, Admission.QUEUE_FULL),
    (0.0, MAX_QUEUED_PER_ADDRESS, MAX_QUEUED, MAX_QUEUED_BYTES, Admission.THROTTLED),
]


@pytest.mark.parametrize("last, for_address, total, size_queued, expected", ADMISSION_CASES)
def test_admit_over_every_state(last, for_address, total, size_queued, expected):
    assert admit(now=T0, last_mail_at=None if last is None else T0 + last, interval=HOUR,
                 queued_for_address=for_address, queued_total=total,
                 queued_bytes=size_queued, size=100) is expected


def test_forgettable():
    assert not outbox.forgettable(now=T0, last_mail_at=T0 - HOUR + 1, interval=HOUR)
    assert outbox.forgettable(now=T0, last_mail_at=T0 - HOUR, interval=HOUR)


# -- the LMDB table --------------------------------------------------------------


@pytest.fixture
def queue_dir(tmp_path):
    return tmp_path / "mailqueue"


def open_queue(path, interval=HOUR) -> MailQueue:
    return MailQueue(path, mail_interval=interval)


def test_enqueue_due_and_mark_sent(queue_dir):
    with open_queue(queue_dir) as queue:
        assert queue.enqueue("a@example.com", "keys@example.com", b"mail a", T0) \
            is Admission.QUEUED
        assert queue.enqueue("b@example.com", "keys@example.com", b"mail b", T0 + 1) \
            is Admission.QUEUED
        assert queue.next_due() == T0
        assert [m.data for m in queue.due(T0, 10)] == [b"mail a"]
        due = queue.due(T0 + 1, 10)
        assert [(m.recipient, m.sender, m.created_at, m.failures) for m in due] == [
            ("a@example.com", "keys@example.com", T0, 0),
            ("b@example.com", "keys@example.com", T0 + 1, 0)]
        assert queue.due(T0 + 1, 1) == due[:1]
        assert (queue.total(), queue.count("A@example.com"), queue.total_bytes()) == (2, 1, 12)
        queue.mark_sent(due[0].id)
        assert (queue.total(), queue.count("a@example.com"), queue.total_bytes()) == (1, 0, 6)
        assert queue.get(due[0].id) is None
        queue.mark_sent(due[0].id)  # twice: nothing left to do
        assert queue.total() == 1


def test_mark_failed_reschedules(queue_dir):
    with open_queue(queue_dir) as queue:
        queue.enqueue("a@example.com", "keys@example.com", b"mail", T0)
        [mail] = queue.due(T0, 10)
        queue.mark_failed(mail.id, T0 + 60)
        assert queue.due(T0 + 59.999, 10) == []
        assert queue.next_due() == T0 + 60
        [again] = queue.due(T0 + 60, 10)
        assert (again.id, again.failures, again.next_at, again.created_at) == (
            mail.id, 1, T0 + 60, T0)
        queue.drop(again.id)
        assert queue.next_due() is None and queue.total() == 0 and queue.total_bytes() == 0


def test_queued_mail_survives_reopening(queue_dir):
    queue = open_queue(queue_dir)
    queue.enqueue("a@example.com", "keys@example.com", b"mail a", T0)
    queue.enqueue("b@example.com", "keys@example.com", b"mail b", T0)
    [first, _] = queue.due(T0, 10)
    queue.mark_failed(first.id, T0 + 60)
    queue.close()
    with open_queue(queue_dir) as queue:
        assert queue.total() == 2
        assert [(m.recipient, m.failures) for m in queue.due(T0 + 60, 10)] == [
            ("b@example.com", 0), ("a@example.com", 1)]
        # the interval is remembered too, and ids are never reused
        assert queue.enqueue("a@example.com", "k@example.com", b"x", T0 + 1) \
            is Admission.THROTTLED
        queue.enqueue("c@example.com", "k@example.com", b"x", T0 + 1)
        assert max(m.id for m in queue.due(T0 + 60, 10)) == 2


def test_mail_interval_honoured(queue_dir):
    with open_queue(queue_dir) as queue:
        assert queue.enqueue("a@example.com", "k@example.com", b"1", T0) is Admission.QUEUED
        [mail] = queue.due(T0, 10)
        queue.mark_sent(mail.id)
        assert queue.enqueue("A@EXAMPLE.com", "k@example.com", b"2", T0 + HOUR - 1) \
            is Admission.THROTTLED
        assert queue.enqueue("b@example.com", "k@example.com", b"3", T0 + 1) \
            is Admission.QUEUED
        assert queue.enqueue("a@example.com", "k@example.com", b"4", T0 + HOUR) \
            is Admission.QUEUED
        assert queue.total() == 2


def test_prune_forgets_only_idle_addresses(queue_dir):
    with open_queue(queue_dir) as queue:
        queue.enqueue("sent@example.com", "k@example.com", b"1", T0)
        queue.enqueue("waiting@example.com", "k@example.com", b"2", T0)
        [sent, _] = queue.due(T0, 10)
        queue.mark_sent(sent.id)
        assert queue.prune(T0 + HOUR - 1) == 0
        assert queue.prune(T0 + HOUR) == 1  # "waiting" still has its mail queued
        assert queue.prune(T0 + 10 * HOUR) == 0
        assert queue.count("waiting@example.com") == 1
        assert queue.enqueue("sent@example.com", "k@example.com", b"3", T0 + HOUR) \
            is Admission.QUEUED


def test_bounds_per_address_and_total(queue_dir, monkeypatch):
    with MailQueue(queue_dir, mail_interval=0.001) as queue:
        results = [queue.enqueue("a@example.com", "k@example.com", b"x", T0 + i)
                   for i in range(MAX_QUEUED_PER_ADDRESS + 2)]
        assert results == [Admission.QUEUED] * MAX_QUEUED_PER_ADDRESS + [
            Admission.ADDRESS_FULL] * 2
        assert queue.count("a@example.com") == MAX_QUEUED_PER_ADDRESS
        monkeypatch.setattr(outbox, "MAX_QUEUED", MAX_QUEUED_PER_ADDRESS + 3)
        for i in range(3):
            assert queue.enqueue(f"b{i}@example.com", "k@example.com", b"x", T0) \
                is Admission.QUEUED
        assert queue.enqueue("c@example.com", "k@example.com", b"x", T0) \
            is Admission.QUEUE_FULL
        assert queue.total() == MAX_QUEUED_PER_ADDRESS + 3
        monkeypatch.setattr(outbox, "MAX_QUEUED_BYTES", queue.total_bytes() + 5)
        monkeypatch.setattr(outbox, "MAX_QUEUED", 10 ** 6)
        assert queue.enqueue("d@example.com", "k@example.com", b"x" * 6, T0) \
            is Admission.QUEUE_FULL
        assert queue.enqueue("d@example.com", "k@example.com", b"x" * 5, T0) \
            is Admission.QUEUED
        with pytest.raises(StoreError, match=f"1 to {MAX_QUEUED_MAIL} bytes"):
            queue.enqueue("e@example.com", "k@example.com", b"x" * (MAX_QUEUED_MAIL + 1), T0)
        with pytest.raises(StoreError):
            queue.enqueue("e@example.com", "k@example.com", b"", T0)


def test_the_queue_is_private(queue_dir):
    open_queue(queue_dir).close()
    assert stat.S_IMODE(queue_dir.stat().st_mode) == 0o700
    for path in queue_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_a_broken_environment_is_a_store_error(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreError, match="mail queue"):
        open_queue(tmp_path / "file" / "q")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["enqueue", "sent", "failed", "drop", "prune"]),
                          st.integers(0, 3), st.integers(0, 7200)), max_size=30))
def test_counts_stay_true_under_any_sequence(tmp_path_factory, steps):
    """The per-address counts, the total and the bytes always equal what the
    mails queued add up to, whatever the order of operations."""
    with open_queue(tmp_path_factory.mktemp("q"), interval=600) as queue:
        now = T0
        for op, who, dt in steps:
            now += dt
            address = f"user{who}@example.com"
            if op == "enqueue":
                queue.enqueue(address, "k@example.com", b"m" * (who + 1), now)
            elif op == "prune":
                queue.prune(now)
            else:
                mails = queue.due(now + 10 ** 9, 100)
                if mails:
                    target = mails[who % len(mails)]
                    {"sent": queue.mark_sent, "drop": queue.drop,
                     "failed": lambda i: queue.mark_failed(i, now + 60)}[op](target.id)
        mails = queue.due(now + 10 ** 9, 10 ** 6)
        assert queue.total() == len(mails)
        assert queue.total_bytes() == sum(len(m.data) for m in mails)
        for who in range(4):
            address = f"user{who}@example.com"
            assert queue.count(address) == sum(m.recipient == address for m in mails)
