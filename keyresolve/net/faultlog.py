"""Per-packet faults logged at a bounded rate, with counts of the rest.

A flood of bad packets (bad signatures, malformed messages, refused
questions, connections over a limit) must not become a flood of log lines:
each kind is written at most `ratelimit.DEFAULT_LOG_BURST` times a period,
and a count of what was held back follows ("N more ... in the last T s"),
when the next line of any kind is written, when `run` wakes, or at exit.
"""

from __future__ import annotations

import logging
import time

import trio

from ..authority.ratelimit import LogLimiter


class FaultLog:
    """A logger's per-packet fault lines, rate-limited by kind."""

    def __init__(self, log: logging.Logger, limiter: LogLimiter | None = None) -> None:
        self.log = log
        self.limiter = LogLimiter() if limiter is None else limiter
        #: The level of each kind's lines: its count is logged at the same.
        self._levels: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        """Log a WARNING line of `kind` unless too many were logged lately."""
        self._write(logging.WARNING, kind, message, args)

    def info(self, kind: str, message: str, *args: object) -> None:
        """Log an INFO line of `kind` unless too many were logged lately."""
        self._write(logging.INFO, kind, message, args)

    def exception(self, kind: str, message: str, *args: object) -> None:
        """Log an ERROR line with the traceback, at the same bounded rate."""
        self._write(logging.ERROR, kind, message, args, exc_info=True)

    def _write(self, level: int, kind: str, message: str, args: tuple,
               exc_info: bool = False) -> None:
        now = time.monotonic()
        self._levels[kind] = level
        allowed = self.limiter.should_log(kind, now)
        self.flush(now)
        if allowed:
            self.log.log(level, message, *args, exc_info=exc_info)

    def flush(self, now: float | None = None, *, final: bool = False) -> None:
        """Log the counts of lines held back whose period is over (with
        `final`, all of them)."""
        now = time.monotonic() if now is None else now
        for kind, count, seconds in self.limiter.summaries(now, final=final):
            self.log.log(self._levels.get(kind, logging.WARNING),
                         "%d more %s lines in the last %.0f s were not logged", count, kind,
                         seconds)

    async def run(self) -> None:
        """Report held-back counts every period, even when no more faults
        come; at cancellation (exit), report all of them."""
        try:
            while True:
                await trio.sleep(self.limiter.period)
                self.flush()
        finally:
            self.flush(final=True)
