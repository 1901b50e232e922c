"""The outbox's decisions: which mail may be queued, and what to do after
each try to send one. Pure: the time is passed in (seconds, any epoch, as
long as one queue uses one clock); the LMDB table (`mailqueue_store`) and
the SMTP shell (`net.smtp`) apply them.

A queued mail is tried at once, then after a failure that may pass
(`Delivery.TEMPORARY`: an SMTP 4xx reply, a refused or broken connection)
again after `FIRST_RETRY`, doubling each time up to `MAX_RETRY`, until it
is `MAX_QUEUE_LIFETIME` old: then it is given up. A permanent failure (an
SMTP 5xx reply) drops it at once. So Postfix treats its queue (qmgr:
minimal_backoff_time, maximal_backoff_time, maximal_queue_lifetime).

An address gets at most one mail per `mail_interval` (the registry's
setting): a request that would mail it sooner is not mailed, so a flood of
registrations for one address cannot flood its mailbox.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: Seconds before the first retry. Postfix waits 300 s (minimal_backoff_time)
#: between its queue runs; a registration's owner is waiting at the
#: terminal, so one minute.
FIRST_RETRY = 60.0
#: Longest wait between two tries, one hour (Postfix's maximal_backoff_time
#: is 4000 s).
MAX_RETRY = 3600.0
#: Age at which a mail still not sent is given up: 5 days, Postfix's
#: maximal_queue_lifetime (and RFC 5321 4.5.4.1: "at least 4-5 days").
MAX_QUEUE_LIFETIME = 5 * 86400.0
#: Mails queued for one address at once. With `mail_interval` an address has
#: at most one queued mail per interval; this bounds it also when the
#: interval is short and the SMTP server down for long.
MAX_QUEUED_PER_ADDRESS = 4
#: Mails queued in total: a flood of registrations for random addresses
#: fills the queue up to here, then is not mailed (Postfix bounds its
#: active queue the same way, qmgr_message_active_limit = 20000).
MAX_QUEUED = 10_000
#: Bytes of mail queued in total (a registry mail is a few KiB: 10,000 of
#: them take ~40 MiB): bounds the LMDB file a flood can grow.
MAX_QUEUED_BYTES = 256 << 20


class Admission(enum.StrEnum):
    """Whether a mail was queued, or why not."""

    QUEUED = "queued"
    #: The address got a mail less than `mail_interval` ago.
    THROTTLED = "throttled"
    #: `MAX_QUEUED_PER_ADDRESS` mails already wait for the address.
    ADDRESS_FULL = "address full"
    #: The queue holds `MAX_QUEUED` mails or `MAX_QUEUED_BYTES` bytes.
    QUEUE_FULL = "queue full"


class Delivery(enum.StrEnum):
    """The outcome of one try to send a mail."""

    SENT = "sent"
    #: May pass: an SMTP 4xx reply, a refused, timed out or broken connection.
    TEMPORARY = "temporary"
    #: Will not pass: an SMTP 5xx reply.
    PERMANENT = "permanent"


class Action(enum.StrEnum):
    """What the queue does with a mail after a try."""

    #: Sent: remove it.
    DONE = "done"
    #: Failed permanently: remove it and log one line.
    DROP = "drop"
    #: Failed temporarily, and older than `MAX_QUEUE_LIFETIME`: remove it
    #: and log one line.
    EXPIRE = "expire"
    #: Failed temporarily: try again at `Decision.next_at`.
    RETRY = "retry"


@dataclass(frozen=True)
class Decision:
    """What to do with a mail after a try (`after_attempt`)."""

    action: Action
    #: When to try again (RETRY only, else None).
    next_at: float | None = None


def admit(*, now: float, last_mail_at: float | None, interval: float, queued_for_address: int,
          queued_total: int, queued_bytes: int, size: int) -> Admission:
    """Whether a mail of `size` bytes to an address may be queued at `now`.

    `last_mail_at` is when the address's last mail was queued (None: never,
    or longer ago than anyone remembers), `interval` the `mail_interval`;
    `queued_*` what the queue holds now. A clock that went back is taken at
    its word: the address waits until `last_mail_at + interval`."""
    if last_mail_at is not None and now < last_mail_at + interval:
        return Admission.THROTTLED
    if queued_for_address >= MAX_QUEUED_PER_ADDRESS:
        return Admission.ADDRESS_FULL
    if queued_total >= MAX_QUEUED or queued_bytes + size > MAX_QUEUED_BYTES:
        return Admission.QUEUE_FULL
    return Admission.QUEUED


def forgettable(*, now: float, last_mail_at: float, interval: float) -> bool:
    """True once an address's last mail is `interval` old: remembering it no
    longer throttles anything."""
    return now >= last_mail_at + interval


def retry_delay(failures: int) -> float:
    """Seconds to wait after the `failures`-th failed try (1, 2, ...):
    `FIRST_RETRY` doubled for each earlier failure, at most `MAX_RETRY`."""
    if failures < 1:
        raise ValueError("failures counts from 1")
    if failures > 32:  # 2**32 minutes is far past the cap; no huge powers
        return MAX_RETRY
    delay: float = min(FIRST_RETRY * 2 ** (failures - 1), MAX_RETRY)
    return delay


def after_attempt(*, created_at: float, failures: int, now: float,
                  delivery: Delivery) -> Decision:
    """What to do with a mail queued at `created_at` that had failed
    `failures` times before the try that just ended at `now` with
    `delivery`. A clock that went back (now before created_at) counts the
    mail's age as 0."""
    delivery = Delivery(delivery)
    if delivery is Delivery.SENT:
        return Decision(Action.DONE)
    if delivery is Delivery.PERMANENT:
        return Decision(Action.DROP)
    if max(0.0, now - created_at) >= MAX_QUEUE_LIFETIME:
        return Decision(Action.EXPIRE)
    return Decision(Action.RETRY, now + retry_delay(failures + 1))
