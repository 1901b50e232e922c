"""The timers of a secondary zone (sans-IO): when to check the primary's SOA,
and when the zone has expired (RFC 1034 4.3.5, RFC 1996).

Times are wall-clock seconds (``time.time()``) so they survive a restart: the
last successful check is persisted with the zone, and a restarted secondary
resumes its expiry from it. A (re)started secondary checks its primaries at
once, as BIND and Knot do on load: a NOTIFY it missed while down (or a
transfer cut by its death) must not wait for the refresh timer.

Failed checks are retried after `MIN_RETRY` seconds, doubling with each
failure in a row, up to the SOA's retry (`MAX_BOOTSTRAP_RETRY` for a zone
holding no data yet); `FailureReport` says a repeated failure once, then
how often it repeated.

States and inputs (`tests/test_refresh.py` runs every pair):

=========  ======================  =====================  ===================
state      notify                  check_succeeded        check_failed
=========  ======================  =====================  ===================
IDLE       check now               (not checking: error)  (not checking: error)
CHECKING   check again afterwards  IDLE, next = +refresh  IDLE, next = +backoff
=========  ======================  =====================  ===================

`begin_check` moves IDLE to CHECKING (CHECKING to CHECKING is an error).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from ..protocol.errors import KeyresolveError
from ..protocol.records import SOA
from ..protocol.serial import serial_gt

#: Floors on the SOA timers, so a hostile or careless primary cannot make its
#: secondaries poll it in a tight loop. One second keeps loopback tests fast;
#: BIND's defaults (min-refresh-time 300) suit the wide Internet better.
MIN_REFRESH = 1
MIN_RETRY = 1
MIN_EXPIRE = 2
#: Ceilings (BIND's max-refresh-time/max-retry-time; RFC 1912 suggests an
#: expire of 2-4 weeks).
MAX_REFRESH = 24 * 3600
MAX_RETRY = 24 * 3600
MAX_EXPIRE = 8 * 7 * 24 * 3600
#: Longest wait between failed checks of a zone holding no data (no SOA
#: retry to bound it): Knot also grows a zone's bootstrap retries
#: exponentially (to a day); an hour keeps a zone that never loaded from
#: waiting long once its primary is fixed (a NOTIFY or a restart checks at once).
MAX_BOOTSTRAP_RETRY = 3600


@dataclass(frozen=True)
class Timers:
    """Refresh, retry and expire of a zone, clamped to sane bounds."""

    refresh: float
    retry: float
    expire: float

    @classmethod
    def from_soa(cls, soa: SOA) -> Timers:
        refresh = min(max(soa.refresh, MIN_REFRESH), MAX_REFRESH)
        retry = min(max(soa.retry, MIN_RETRY), MAX_RETRY)
        expire = min(max(soa.expire, MIN_EXPIRE, refresh), MAX_EXPIRE)
        return cls(refresh, retry, expire)


#: Timers of a zone never transferred: retry soon, and it is expired already.
INITIAL = Timers(refresh=MIN_REFRESH, retry=MIN_RETRY, expire=0)


class State(enum.Enum):
    IDLE = "idle"
    CHECKING = "checking"


class RefreshState:
    """When a secondary zone next checks its primaries, and whether it expired."""

    def __init__(self, soa: SOA | None, last_success: float | None, now: float) -> None:
        """`soa` and `last_success` are what the store holds (None: no data yet)."""
        self.soa = soa
        self.timers = INITIAL if soa is None else Timers.from_soa(soa)
        self.last_success = last_success
        self.state = State.IDLE
        self.recheck = False
        #: Failed checks in a row (the retry interval doubles with each).
        self.failures = 0
        self.next_check = now  # a (re)started secondary asks its primaries at once

    def expired(self, now: float) -> bool:
        """True when the zone must not be served (RFC 1034 4.3.5: SERVFAIL)."""
        return now >= self.expires_at()

    def expires_at(self) -> float:
        """When the zone expires unless a check succeeds first (-inf: no data)."""
        if self.soa is None or self.last_success is None:
            return -math.inf
        return self.last_success + self.timers.expire

    def wait(self, now: float) -> float:
        """Seconds until the next check is due (0 if due now)."""
        return max(0.0, self.next_check - now)

    def notify(self, now: float) -> None:
        """A NOTIFY arrived: check now, or once more after the check running."""
        if self.state is State.CHECKING:
            self.recheck = True
        else:
            self.next_check = now

    def begin_check(self) -> None:
        """A check of the primaries starts."""
        if self.state is State.CHECKING:
            raise KeyresolveError("a check is already running")
        self.state = State.CHECKING
        self.recheck = False

    def retry_delay(self) -> float:
        """Seconds from a failed check to the next, after `failures` failures
        in a row: `MIN_RETRY`, doubling, up to the zone's retry (or
        `MAX_BOOTSTRAP_RETRY` while it holds no data)."""
        bound = self.timers.retry if self.soa is not None else MAX_BOOTSTRAP_RETRY
        doublings = min(max(self.failures - 1, 0), 32)  # 2**32 s exceeds every bound
        delay: float = min(MIN_RETRY * 2 ** doublings, bound)
        return delay

    def check_succeeded(self, soa: SOA, now: float) -> None:
        """The primary answered and we are up to date with `soa`."""
        self._end()
        self.failures = 0
        self.soa = soa
        self.timers = Timers.from_soa(soa)
        self.last_success = now
        self.next_check = now if self.recheck else now + self.timers.refresh

    def check_failed(self, now: float) -> None:
        """No primary answered, or the transfer failed: retry later, backing off."""
        self._end()
        self.failures += 1
        self.next_check = now if self.recheck else now + self.retry_delay()

    def _end(self) -> None:
        if self.state is not State.CHECKING:
            raise KeyresolveError("no check is running")
        self.state = State.IDLE


class FailureReport:
    """What to log of one primary's failures: a failure once, then, while the
    same failure repeats, a line at its 2nd, 3rd, 5th, 9th... occurrence
    (repeated 1, 2, 4, 8... times), and one line when it recovers."""

    def __init__(self) -> None:
        self.message: str | None = None
        #: Occurrences of `message` after its first.
        self.repeats = 0
        #: Failures in a row, whatever their messages.
        self.failures = 0

    def failed(self, message: str) -> str | None:
        """A check failed with `message`: the line to log, or None."""
        self.failures += 1
        if message != self.message:
            self.message, self.repeats = message, 0
            return message
        self.repeats += 1
        if self.repeats & (self.repeats - 1) == 0:  # a power of two
            return f"{message} (repeated {self.repeats} time{'s' if self.repeats > 1 else ''})"
        return None

    def succeeded(self) -> str | None:
        """A check succeeded: the line to log (after failures), or None."""
        failures, self.failures = self.failures, 0
        self.message, self.repeats = None, 0
        if not failures:
            return None
        return f"answers again after {failures} failed attempt{'s' if failures > 1 else ''}"


def transfer_at_once(hint: int | None, held: SOA | None) -> bool:
    """Whether a check may ask for IXFR without the SOA query first: a
    NOTIFY's serial (its hint, RFC 1996 3.7) is newer than the copy held.
    The IXFR still asks the primary itself: one already current answers it
    with its one SOA (RFC 1995 2), so a wrong hint costs one query, as the
    SOA query would have; a right one saves a round trip per change."""
    return hint is not None and held is not None and serial_gt(hint, held.serial)

