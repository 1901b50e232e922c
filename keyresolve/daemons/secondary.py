"""Replication shells: a secondary zone's refresh loop, inbound transfers, and
NOTIFY sending. The decisions are sans-IO (`refresh.RefreshState`,
`xfr.Inbound`, `serial`); this module only talks to primaries and secondaries.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import trio

from ..protocol.codes import Rcode, RType
from ..cli.config import ZoneConfig
from ..protocol.transport import Endpoint, format_endpoint
from ..protocol.errors import (FormError, KeyresolveError, NetworkError, PeerError, ProtocolError,
                      QueryTimeout)
from ..protocol.message import make_query
from ..protocol.names import Name
from ..net.client import query
from ..net.transfer import run_transfer
from ..protocol.records import SOA, Record
from ..authority.refresh import FailureReport, RefreshState, transfer_at_once
from ..protocol.serial import serial_gt
from ..store.zones import Snapshot, Store
from ..protocol.tsig import SharedKey
from ..authority.xfr import check_notify_response, make_notify

log = logging.getLogger("keyresolve.xfr")

#: Time allowed for the SOA query to one primary (it is retried once).
SOA_TIMEOUT = 2.0
#: Time allowed between two messages of a transfer before it is abandoned.
XFR_IDLE_TIMEOUT = 10.0
#: A whole transfer is abandoned after this long (a 1M-key zone takes ~30 s).
XFR_TIMEOUT = 600.0
#: NOTIFY attempts per target, and the first wait; it doubles each time
#: (RFC 1996 4.3 leaves the interval to the implementation).
NOTIFY_ATTEMPTS = 5
NOTIFY_TIMEOUT = 0.5


class StoredSecondary:
    """A secondary zone as the store records it: the process refreshing it
    records each success there, and the zone's expiry is computed from that
    record (`RefreshState` on the stored SOA and last success), once per data
    version. What a worker process of `keyresolve serve --workers` serves it by.
    """

    def __init__(self, zone: ZoneConfig, store: Store) -> None:
        self.zone = zone
        self.store = store
        self._version = -1
        self._expires = -math.inf

    def expires_at(self, snapshot: Snapshot | None = None) -> float:
        """When the zone expires unless a success is recorded first (-inf:
        no copy), as of `snapshot` (default: a new one). Changes only with
        the data version: what caches of answers from the zone may be kept until."""
        if snapshot is None:
            with self.store.snapshot() as snap:
                return self.expires_at(snap)
        if snapshot.version != self._version:
            view = snapshot.get_zone(self.zone.name)
            soa = None if view is None else view.soa.rdata
            last = None if view is None else view.info.last_success
            self._expires = RefreshState(soa, last, time.time()).expires_at()
            self._version = snapshot.version
        return self._expires

    def expired(self, now: float, snapshot: Snapshot | None = None) -> bool:
        """True when the zone must be answered SERVFAIL (RFC 1034 4.3.5),
        as of `snapshot` (default: a new one)."""
        return now >= self.expires_at(snapshot)

    def expiry_times(self, snapshot: Snapshot) -> tuple[float, ...]:
        """Every time at which `expired` may turn true without a new data
        version: what cached answers from the zone must not outlive."""
        return (self.expires_at(snapshot),)


class SecondaryZone(StoredSecondary):
    """One secondary zone: its timers, and the task that keeps it fresh."""

    def __init__(self, zone: ZoneConfig, store: Store, keys: dict, write_lock: trio.Lock,
                 on_updated: Callable[[ZoneConfig, Record], None]) -> None:
        super().__init__(zone, store)
        self.key: SharedKey | None = None if zone.tsig_key is None else keys[zone.tsig_key]
        self.write_lock = write_lock
        self.on_updated = on_updated
        soa, last_success = self._stored()
        self.state = RefreshState(None if soa is None else soa.rdata, last_success, time.time())
        self._wakeup = trio.Event()
        self._expired_logged = False
        #: What to log of each primary's failures (`FailureReport`).
        self._reports: dict[Endpoint, FailureReport] = {}
        #: The outcome of the last check, for `keyresolve ctl zone-status`.
        self.last_result: str | None = None
        #: The newest serial NOTIFYs announced since the last check began.
        self._hint: int | None = None
        #: The next check transfers the whole zone whatever the serials say.
        self._full = False

    def retransfer(self) -> None:
        """Transfer the whole zone from a primary now (`keyresolve ctl retransfer`)."""
        self._full = True
        self.notify()

    def _stored(self) -> tuple[Record | None, float | None]:
        info = self.store.get_zone_info(self.zone.name)
        if info is None:
            return None, None
        with self.store.snapshot() as snap:
            view = snap.get_zone(self.zone.name)
            soa = None if view is None else view.soa
        return soa, info.last_success

    def expired(self, now: float, snapshot: Snapshot | None = None) -> bool:
        """True when the zone must be answered SERVFAIL (RFC 1034 4.3.5), by
        the timers (the stored record of a success precedes their update)."""
        return self.state.expired(now)

    def expiry_times(self, snapshot: Snapshot) -> tuple[float, ...]:
        """The stored record's expiry and the timers': they differ by the
        moments between a success's write and the timers' update."""
        return self.expires_at(snapshot), self.state.expires_at()

    def notify(self, serial: int | None = None) -> None:
        """A NOTIFY arrived (announcing `serial`, if it did): check the
        primaries now (or right after this check)."""
        if serial is not None and (self._hint is None or serial_gt(serial, self._hint)):
            self._hint = serial
        self.state.notify(time.time())
        self._wakeup.set()

    async def run(self) -> None:
        """Check the primaries at once (a NOTIFY may have been missed while
        down), then whenever the timers or a NOTIFY say so; forever."""
        soa = self.state.soa
        log.info("zone %s: checking the primaries at start-up (%s)", self.zone.name,
                 "no copy held" if soa is None else f"holding serial {soa.serial}")
        while True:
            wait = self.state.wait(time.time())
            if wait > 0:
                with trio.move_on_after(wait):
                    await self._wakeup.wait()
                self._wakeup = trio.Event()
                continue
            self.state.begin_check()
            try:
                soa = await self.refresh()
            except Exception:
                log.exception("zone %s: refresh failed", self.zone.name)
                soa = None
            now = time.time()
            if soa is None:
                self.state.check_failed(now)
                if self.state.expired(now) and not self._expired_logged:
                    log.error("zone %s expired: answering SERVFAIL until a primary answers",
                              self.zone.name)
                    self._expired_logged = True
            else:
                self.state.check_succeeded(soa.rdata, now)
                self._expired_logged = False

    async def refresh(self) -> Record | None:
        """Ask each primary in turn; transfer if it is newer. The SOA we then
        hold, or None if no primary could be used."""
        origin = self.zone.name
        full, self._full = self._full, False
        hint, self._hint = self._hint, None
        for primary in self.zone.primaries:
            try:
                if full:
                    soa = await self.transfer(primary, None)
                    self.on_updated(self.zone, soa)
                    self._succeeded(primary, f"transferred serial {soa.rdata.serial} in full")
                    return soa
                current = self._stored()[0]
                transferred = None
                if current is not None and transfer_at_once(hint, current.rdata):
                    # IXFR at once: its answer is the primary's SOA (ours, if current)
                    remote = transferred = await self.transfer(primary, current)
                else:
                    remote = await self.query_soa(primary)
                    current = self._stored()[0]
                if current is not None and not serial_gt(remote.rdata.serial,
                                                         current.rdata.serial):
                    async with self.write_lock:
                        await trio.to_thread.run_sync(self.store.mark_checked, origin,
                                                      time.time())
                    log.debug("zone %s: serial %d is current", origin, current.rdata.serial)
                    self._succeeded(primary, f"serial {current.rdata.serial} is current")
                    return current
                soa = transferred or await self.transfer(primary, current)
                self.on_updated(self.zone, soa)
                self._succeeded(primary, f"transferred serial {soa.rdata.serial}")
                return soa
            except (KeyresolveError, PeerError) as exc:
                self.last_result = f"failed: {format_endpoint(primary)}: {exc}"
                line = self._reports.setdefault(primary, FailureReport()).failed(str(exc))
                if line is not None:
                    log.warning("zone %s: primary %s: %s", origin, format_endpoint(primary),
                                line)
        return None

    def _succeeded(self, primary: Endpoint, outcome: str) -> None:
        self.last_result = f"ok: {format_endpoint(primary)}: {outcome}"
        report = self._reports.get(primary)
        line = None if report is None else report.succeeded()
        if line is not None:
            log.info("zone %s: primary %s %s", self.zone.name, format_endpoint(primary), line)

    async def query_soa(self, primary: Endpoint) -> Record:
        """The primary's SOA for the zone, verified when we hold a key."""
        origin = self.zone.name
        exchange = await query(primary, make_query(origin, RType.SOA), timeout=SOA_TIMEOUT,
                               retries=1, key=self.key)
        response = exchange.response
        if self.key is not None and exchange.verified != "ok":
            raise PeerError(response.rcode, f"SOA reply not verified: {exchange.verified}")
        if response.rcode != Rcode.NOERROR:
            raise PeerError(response.rcode)
        for record in response.answer:
            if record.rtype == RType.SOA and record.name == origin and response.aa:
                return record
        raise FormError("the primary is not authoritative for the zone (no SOA)")

    async def transfer(self, primary: Endpoint, current: Record | None) -> Record:
        """Transfer from `primary` (incremental if we hold a copy); commit or
        leave the old zone intact. Falls back to a full transfer once if an
        incremental one does not apply."""
        if current is not None:
            try:
                return await self._transfer(primary, RType.IXFR, current)
            except FormError as exc:
                log.warning("zone %s: incremental transfer failed (%s); trying a full one",
                            self.zone.name, exc)
        return await self._transfer(primary, RType.AXFR, None)

    async def _transfer(self, primary: Endpoint, rtype: int, current: Record | None) -> Record:
        origin = self.zone.name
        async with self.write_lock:
            writer = self.store.zone_writer(origin, primary=format_endpoint(primary))
            result = await run_transfer(primary, origin, rtype, writer, current=current,
                                        key=self.key, idle_timeout=XFR_IDLE_TIMEOUT,
                                        timeout=XFR_TIMEOUT, raw_answer=True)
        inbound = result.inbound
        soa = self._stored()[0]
        assert soa is not None
        log.info("transfer in %s from %s: %s, serial %s -> %d, %d records, %d messages, "
                 "%d bytes, %.3f s", origin, format_endpoint(primary),
                 inbound.kind.name.lower() if inbound.kind else "?",
                 "none" if current is None else current.rdata.serial, inbound.serial,
                 inbound.records, inbound.messages, result.size, result.elapsed)
        return soa


async def send_notify(origin, soa: Callable[[], Record], target: Endpoint,
                      key: SharedKey | None) -> bool:
    """NOTIFY `target` of the zone's new serial, retrying until acknowledged
    (bounded by NOTIFY_ATTEMPTS); `soa()` gives the SOA each attempt
    announces (the newest). True if acknowledged."""
    timeout = NOTIFY_TIMEOUT
    problem = "no attempt"
    for _ in range(NOTIFY_ATTEMPTS):
        sent = soa()
        message = make_notify(origin, sent)
        try:
            exchange = await query(target, message, timeout=timeout, retries=0, key=key)
            if key is not None and exchange.verified != "ok":
                raise PeerError(exchange.response.rcode,
                                f"acknowledgement not verified: {exchange.verified}")
            check_notify_response(exchange.response, message)
        except (KeyresolveError, ProtocolError, PeerError) as exc:
            problem = str(exc)
            if isinstance(exc, NetworkError) and not isinstance(exc, QueryTimeout):
                await trio.sleep(timeout)  # refused at once: still wait before retrying
            timeout *= 2
            continue
        log.info("NOTIFY %s serial %d acknowledged by %s", origin, sent.rdata.serial,
                 format_endpoint(target))
        return True
    log.warning("NOTIFY %s serial %d to %s gave up after %d attempts: %s", origin,
                sent.rdata.serial, format_endpoint(target), NOTIFY_ATTEMPTS, problem)
    return False


class Notifier:
    """The NOTIFYs of one zone to one target, coalesced: at most one NOTIFY
    (with its retries) in flight; serials that change meanwhile are
    announced by its next attempt, or by one more NOTIFY when it ends, the
    newest only. A burst of changes (a registry's commits, IXFRs arriving
    back to back) thus costs the target one NOTIFY per round trip, not one
    per change, and the tasks stay one per zone and target, however long
    the target is unreachable. As Knot, whose zone events coalesce;
    RFC 1996 4.7 allows a delay before NOTIFY."""

    def __init__(self, origin: Name, target: Endpoint) -> None:
        self.origin = origin
        self.target = target
        self._key: SharedKey | None = None
        #: The newest SOA no attempt has announced yet, and the last announced.
        self._pending: Record | None = None
        self._sent: Record | None = None
        self._running = False

    @property
    def running(self) -> bool:
        """Whether a NOTIFY of this zone to this target is in flight."""
        return self._running

    def changed(self, soa: Record, key: SharedKey | None, nursery: trio.Nursery) -> None:
        """The zone's serial is now `soa`'s: announce it (in `nursery`)."""
        self._pending = soa
        self._key = key
        if not self._running:
            self._running = True
            nursery.start_soon(self._run)

    def _take(self) -> Record:
        """The SOA an attempt announces: the newest."""
        if self._pending is not None:
            self._sent, self._pending = self._pending, None
        assert self._sent is not None
        return self._sent

    async def _run(self) -> None:
        try:
            while self._pending is not None:  # changed after the last attempt
                await send_notify(self.origin, self._take, self.target, self._key)
        finally:
            self._running = False


def soa_of(record: Record) -> SOA:
    """The SOA rdata of an SOA record."""
    assert isinstance(record.rdata, SOA)
    return record.rdata
