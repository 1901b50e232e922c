"""The timers of a secondary zone (sans-IO): when to check the primary's SOA,
and when the zone has expired (RFC 1034 4.3.5, RFC 1996).

Times are wall-clock seconds (``time.time()``) so they survive a restart: the
last successful check is persisted with the zone, and a restarted secondary
resumes its timers from it.

States and inputs (`tests/test_refresh.py` runs every pair):

=========  ======================  =====================  ===================
state      notify                  check_succeeded        check_failed
=========  ======================  =====================  ===================
IDLE       check now               (not checking: error)  (not checking: error)
CHECKING   check again afterwards  IDLE, next = +refresh  IDLE, next = +retry
=========  ======================  =====================  ===================

`begin_check` moves IDLE to CHECKING (CHECKING to CHECKING is an error).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from .errors import KeyresolveError
from .records import SOA

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
        if soa is None or last_success is None:
            self.next_check = now
        else:
            self.next_check = min(max(last_success + self.timers.refresh, now),
                                  now + self.timers.refresh)

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

    def check_succeeded(self, soa: SOA, now: float) -> None:
        """The primary answered and we are up to date with `soa`."""
        self._end()
        self.soa = soa
        self.timers = Timers.from_soa(soa)
        self.last_success = now
        self.next_check = now if self.recheck else now + self.timers.refresh

    def check_failed(self, now: float) -> None:
        """No primary answered, or the transfer failed: retry later."""
        self._end()
        self.next_check = now if self.recheck else now + self.timers.retry

    def _end(self) -> None:
        if self.state is not State.CHECKING:
            raise KeyresolveError("no check is running")
        self.state = State.IDLE
