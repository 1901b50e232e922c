"""`keyresolve serve`: the authoritative daemon.

Wiring only: zone files are compiled into the store (off the event loop, so
queries keep flowing during a reload), the sans-IO `authority.answer` makes
every response, and `net.server` moves the bytes.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import trio

from ..authority.answer import answer
from ..protocol.codes import Rcode
from ..cli.config import (ServeConfig, ZoneConfig, fingerprint, load_serve_config, unsigned_notify_zones)
from ..protocol.transport import Endpoint, format_endpoint
from ..authority import fastpath
from ..authority import ratelimit
from ..protocol import tsig
from ..authority.policy import (AUTHORITATIVE_OPCODES, Action, allowed, dispatch_table, not_implemented,
                      serving, transport)
from ..protocol.errors import (ConfigError, KeyresolveError, ProtocolError, Refused,
                               StreamAborted)
from ..protocol.message import Message, make_response, max_response_size, peek_opcode
from ..net.faultlog import FaultLog
from ..net.server import open_endpoint, serve_tcp, serve_udp
from ..store.zones import Snapshot, Store
from ..protocol.records import ADDR, Record
from ..protocol.tsig import SharedKey
from .compiler import compile_in_child
from ..protocol.names import Name
from ..authority.xfr import OutboundTransfer, notify_response, parse_request, validate_notify
from ..zonedata.zonefile import inside
from .common import accept_request, our_failure, pidfile
from .secondary import Notifier, SecondaryZone, StoredSecondary
from .servecontrol import ServerControl

if TYPE_CHECKING:
    from .registryd import RegistryService
from .workers import FORWARDED_OPCODES, Forwarder, WorkerPool, open_worker_channel

log = logging.getLogger("keyresolve.serve")

#: The interpreter's thread switch interval in a server (Python's default is
#: 5 ms). The store's writes run in threads (a commit and its fsync); one
#: that returns from LMDB waits for the GIL up to this long while the main
#: thread answers, and a registry's group commit, its NOTIFY and its answers
#: wait with it. In two pairs of runs, 1 ms took 10% off a confirmation's
#: CPU and put 40% more confirmations into each commit (benchmarks/RESULTS.md).
SWITCH_INTERVAL = 0.001

#: Rate limiting's decision and classes, as plain globals for the fast path.
_SEND, _POSITIVE, _NXDOMAIN = ratelimit.SEND, ratelimit.POSITIVE, ratelimit.NXDOMAIN
#: The action of a query, as a plain global for the full path (`policy.allowed`).
_QUERY = Action.QUERY

#: forward(data, peer, tcp): the main process's reply to a message a worker
#: received (None: no reply).
Forward = Callable[[bytes, tuple, bool], Awaitable[bytes | None]]


class AuthServer:
    """The request handler of an authoritative server: bytes in, bytes out."""

    def __init__(self, store: Store, config: ServeConfig, *,
                 forward: Forward | None = None) -> None:
        """`forward`, in a worker process: where NOTIFY messages go (the main
        process, which runs the secondaries' refreshes); None: answer them here."""
        self.store = store
        self.config = config
        self.forward = forward
        #: control(query, peer): runs a CONTROL command (`ServerControl.run`,
        #: in the main process; None in a worker, which forwards them).
        self.control: Callable[[Message, tuple], Awaitable[Message]] | None = None
        #: registry(query, peer): answers an UPDATE (`RegistryService.handle`,
        #: in the main process of a server with a `[registry]`; None elsewhere).
        self.registry: Callable[[Message, tuple], Awaitable[Message]] | None = None
        self.keyring = config.keys
        #: Signed NOTIFYs accepted, so each is accepted once (in the main
        #: process, where workers forward theirs).
        self.replay = tsig.ReplayGuard(config.max_fudge)
        self._snapshot: Snapshot | None = None
        #: Zones the fast path must leave to the full path (by Name.store_key()):
        #: those requiring signed queries.
        self.slow_zones: set[bytes] = {z.name.store_key() for z in config.zones if z.require_signed}
        self.zones: dict[Name, ZoneConfig] = {z.name: z for z in config.zones}
        #: Secondary zones by origin, and by Name.store_key() for the fast path (in
        #: a worker process: as the store records them).
        self.secondaries: dict[Name, StoredSecondary] = {}
        self._secondary_keys: dict[bytes, StoredSecondary] = {}
        #: The fast path, with its cached answers and routes: one for a data
        #: version (`Snapshot.version`), until a secondary zone may expire.
        self._responder = fastpath.Responder(self._fast_route)
        self._responder_version = -1
        self._responder_until = -math.inf
        #: `fastpath.Negative` by zone key, for the same data version.
        self._negatives: dict[bytes, fastpath.Negative] = {}
        #: Messages handled (UDP and TCP): logged at exit, per process.
        self.messages = 0
        #: Per-packet faults (bad signatures, refusals...), logged at a bounded rate.
        self.faults = FaultLog(log)
        #: Response rate limiting of UDP answers (None: off), and the batch's clock.
        self.rrl = (ratelimit.ResponseRateLimiter(config.rate_limit, config.slip)
                    if config.rate_limit else None)
        self._now = 0.0
        #: One store writer at a time: reloads (in worker threads) and inbound
        #: transfers (in this thread) never wait on LMDB's lock in the loop.
        self.write_lock = trio.Lock()
        #: The handler of each opcode served (`policy.AUTHORITATIVE_OPCODES`;
        #: the others are NOTIMP): the response to encode, or the reply itself.
        self._dispatch = dispatch_table(AUTHORITATIVE_OPCODES, {
            Action.QUERY: self._op_query, Action.NOTIFY: self._notify,
            Action.TRANSFER: self._transfer, Action.CONTROL: self._control,
            Action.UPDATE: self._update})

    def add_secondary(self, secondary: StoredSecondary) -> None:
        """Serve a secondary zone, answering SERVFAIL while it is expired."""
        self.secondaries[secondary.zone.name] = secondary
        self._secondary_keys[secondary.zone.name.store_key()] = secondary

    def batch(self) -> AuthServer:
        """Answer a batch of datagrams from one LMDB read snapshot (a context
        manager: the handler itself, without a generator's cost)."""
        return self

    def __enter__(self) -> None:
        snapshot = self._snapshot = self.store.snapshot()
        if snapshot.version != self._responder_version or time.time() >= self._responder_until:
            self._responder = fastpath.Responder(self._fast_route)
            self._negatives.clear()
            self._responder_version = snapshot.version
            self._responder_until = min(time.time() + fastpath.MAX_RESPONSE_AGE,
                                        self._secondaries_valid_until())
        self._responder.read = snapshot.node_reader()
        if self.rrl is not None:
            self._now = time.monotonic()

    def __exit__(self, *exc_info: object) -> None:
        self._snapshot.close()
        self._snapshot = self._responder.read = None

    def _secondaries_valid_until(self) -> float:
        """When the next secondary zone served now may expire (cached
        responses from it must go then); infinity if none will. From the
        store's record of each zone's last success, so a zone coming back to
        life always changes the data version first (the cache starts over
        then), and from the refresh timers, which the main process answers
        by and which follow that record a moment later."""
        now = time.time()
        expiries = (at for s in self.secondaries.values() for at in s.expiry_times(self._snapshot))
        return min((at for at in expiries if at > now), default=math.inf)

    def _fast_route(self, domain_key: bytes) -> fastpath.Route | None:
        """The fast path's route to the mailboxes of D (`fastpath.FindRoute`),
        which the responder keeps until it is replaced (a new data version,
        or a secondary zone's expiry); None for the full path.

        Policy is checked on the zone found, never on D itself, so a
        signed-only zone is not answered unsigned for names below its apex.
        An expired secondary zone gets None, which is not remembered: its
        timers revive it without a new data version.
        """
        snapshot = self._snapshot
        found = snapshot.mailbox_route(domain_key)
        if found is None or found[0] in self.slow_zones:
            return None
        zone_key, prefix = found
        secondary = self._secondary_keys.get(zone_key)
        if secondary is not None and secondary.expired(time.time(), snapshot):
            return None
        return prefix, self._negative(zone_key)

    def _negative(self, zone_key: bytes) -> fastpath.Negative | None:
        """The NXDOMAIN authority of the zone (None: leave it to the full path)."""
        negative = self._negatives.get(zone_key)
        if negative is None:
            view = self._snapshot.get_zone(Name.from_store_key(zone_key))
            if view is None:
                return None
            negative = self._negatives[zone_key] = fastpath.negative(view)
        return negative

    def handle(self, data: bytes, peer: tuple, tcp: bool
               ) -> bytes | Iterator[bytes] | Awaitable[bytes | None] | None:
        """Answer one message (a transfer: a stream of them; a forwarded
        NOTIFY: an awaitable). Never raises: every failure becomes an rcode."""
        self.messages += 1
        if not tcp and self._snapshot is not None:
            try:
                fast = self._responder.answer(data)
            except Exception:
                self.faults.exception("fast path failure", "fast path failed on a message "
                                      "from %s", peer[0])
                fast = None
            if fast is not None:
                if self.rrl is None:
                    return fast
                # the fast path's answers are positive (rcode 0) or NXDOMAIN
                answer_class = _NXDOMAIN if fast[3] else _POSITIVE
                decision = self.rrl.decide(peer[0], answer_class, self._now)
                if decision == _SEND:
                    return fast
                return self._limited(fast, decision, peer, answer_class)
        if self.forward is not None:
            timeout = FORWARDED_OPCODES.get(peek_opcode(data))
            if timeout is not None:
                return self.forward(data, peer, tcp, timeout)
        accepted = accept_request(data, peer, self.keyring, self.faults,
                                  max_fudge=self.config.max_fudge, replay=self.replay)
        if not isinstance(accepted, tuple):
            if accepted is not None and not tcp and self.rrl is not None:
                return self._limit(accepted, ratelimit.ERROR, peer)
            return accepted
        query, key, now = accepted
        try:
            handler = self._dispatch.get(query.opcode)
            if handler is None:
                raise not_implemented(query.opcode)
            response = handler(query, key, peer, tcp)
            if response.__class__ is not Message:
                return response  # the reply itself: bytes, a transfer's stream, an awaitable
        except Exception as exc:
            if isinstance(exc, ProtocolError) and not our_failure(exc):  # the peer's: its rcode
                if isinstance(exc, Refused):
                    self.faults.info("refused", "refused %s from %s: %s", query.question,
                                     peer[0], exc)
                response = make_response(query, exc.rcode)
            else:  # ours, or a bug: SERVFAIL, logged
                self.faults.exception("failure to answer", "failed to answer %s from %s",
                                      query.question, peer[0])
                response = make_response(query, Rcode.SERVFAIL)
        size = max_response_size(query, tcp)
        if key is None:
            if not tcp and self.rrl is not None:
                return self._limit(response.to_wire(size), ratelimit.classify(
                    response.rcode, response.aa, response.answer_count, len(response.authority)),
                    peer)
            return response.to_wire(size)
        return tsig.sign(response, key, now, request_mac=query.signature.mac, max_size=size,
                         fudge=self._fudge(query))

    def reconfigure(self, config: ServeConfig) -> None:
        """Answer by `config` from the next batch on (zones' policies, keys,
        rate limiting); the fast path's cached answers start over."""
        self.config = config
        self.keyring = config.keys
        self.slow_zones = {z.name.store_key() for z in config.zones if z.require_signed}
        self.zones = {z.name: z for z in config.zones}
        if self.rrl is None or (config.rate_limit, config.slip) != (self.rrl.rate,
                                                                     self.rrl.slip):
            self.rrl = (ratelimit.ResponseRateLimiter(config.rate_limit, config.slip)
                        if config.rate_limit else None)
        self._responder_version = -1

    def remove_secondary(self, origin: Name) -> None:
        """Stop serving `origin` as a secondary zone."""
        secondary = self.secondaries.pop(origin, None)
        if secondary is not None:
            self._secondary_keys.pop(origin.store_key(), None)

    def _control(self, query: Message, key: SharedKey | None, peer: tuple,
                 tcp: bool) -> bytes | Awaitable[bytes]:
        """A CONTROL message (`keyresolve ctl`): REFUSED unless `policy.allowed`
        (a control key, or unsigned from loopback); run by `self.control` (the
        main process's `ServerControl`); the response signed as the request."""
        decision = allowed(None, Action.CONTROL, None if key is None else key.name, peer,
                           control_keys=self.config.control_keys,
                           control_loopback=self.config.control_loopback)
        if not decision.ok:
            self.faults.warning("refused", "refused a control message from %s: %s", peer[0],
                                decision.reason)
            return self._encode_control(query, make_response(query, Rcode.REFUSED), key, tcp)
        if self.control is None:
            return self._encode_control(query, make_response(query, Rcode.NOTIMP), key, tcp)
        return self._control_later(query, key, peer, tcp)

    async def _control_later(self, query: Message, key: SharedKey | None, peer: tuple,
                             tcp: bool) -> bytes:
        response = await self.control(query, peer)
        return self._encode_control(query, response, key, tcp)

    def _update(self, query: Message, key: SharedKey | None, peer: tuple,
                tcp: bool) -> Awaitable[bytes]:
        """An UPDATE (docs/protocol.md 8E): the registry's (`self.registry`);
        without one, the checks of 8E.7 steps 1 and 2 (FORMERR, NOTAUTH),
        then NOTIMP. The response signed as the request."""
        if self.registry is None:
            from ..registry.messages import update_payload  # the registry's code, on demand

            zone, _ = update_payload(query)
            decision = allowed(self.zones.get(zone), Action.UPDATE, None, peer)
            if not decision.ok:
                raise decision.error()
            raise not_implemented(query.opcode)
        return self._update_later(query, key, peer, tcp)

    async def _update_later(self, query: Message, key: SharedKey | None, peer: tuple,
                            tcp: bool) -> bytes:
        response = await self.registry(query, peer)
        return self._encode_control(query, response, key, tcp)

    def _encode_control(self, query: Message, response: Message, key: SharedKey | None,
                        tcp: bool) -> bytes:
        size = max_response_size(query, tcp)
        if key is None:
            return response.to_wire(size)
        return tsig.sign(response, key, int(time.time()), request_mac=query.signature.mac,
                         max_size=size, fudge=self._fudge(query))

    def _fudge(self, query: Message) -> int:
        """The fudge a response to the signed `query` states: the window it got."""
        return tsig.window(query.signature.fudge, self.config.max_fudge)

    def _limit(self, reply: bytes, answer_class: int, peer: tuple) -> bytes | None:
        """`reply`, its truncated stand-in, or nothing, as the rate limiter
        decides for an unsigned UDP answer of `answer_class` to `peer`."""
        now = self._now if self._snapshot is not None else time.monotonic()
        decision = self.rrl.decide(peer[0], answer_class, now)
        if decision == ratelimit.SEND:
            return reply
        return self._limited(reply, decision, peer, answer_class)

    def _limited(self, reply: bytes, decision: int, peer: tuple,
                 answer_class: int) -> bytes | None:
        """What goes out instead of a rate-limited `reply`: its truncated
        stand-in (SLIP) or nothing (DROP)."""
        self.faults.info("rate limit", "rate-limiting %s answers to %s's prefix",
                         ratelimit.CLASS_NAMES[answer_class], peer[0])
        return ratelimit.slipped(reply) if decision == ratelimit.SLIP else None

    def _op_query(self, query: Message, key: SharedKey | None, peer: tuple, tcp: bool) -> Message:
        """The response to a QUERY from a client holding `key`."""
        if self._snapshot is not None:
            return self._query(query, key, peer, self._snapshot)
        with self.store.snapshot() as snap:
            return self._query(query, key, peer, snap)

    def _configured_zone(self, name: Name) -> ZoneConfig | None:
        for ancestor in name.ancestors():
            zone = self.zones.get(ancestor)
            if zone is not None:
                return zone
        return None

    def _query(self, query: Message, key: SharedKey | None, peer: tuple, snap: Snapshot) -> Message:
        if query.question is not None:
            policy = self._configured_zone(query.question.name)
            if policy is not None:
                decision = allowed(policy, _QUERY, None if key is None else key.name, peer)
                if not decision.ok:
                    raise decision.error()
                secondary = self.secondaries.get(policy.name)
                if secondary is not None:
                    decision = serving(policy.name, _QUERY, secondary.expired(time.time()))
                    if not decision.ok:
                        raise decision.error()
        return answer(query, snap.find_zone)

    def _transfer(self, query: Message, key: SharedKey | None, peer: tuple,
                  tcp: bool) -> bytes | Iterator[bytes]:
        """A zone transfer: TCP only, for a key the zone lists (REFUSED otherwise)."""
        decision = transport(Action.TRANSFER, tcp)
        if not decision.ok:
            raise decision.error()
        request = parse_request(query)
        decision = allowed(self.zones.get(request.origin), Action.TRANSFER,
                           None if key is None else key.name, peer)
        if not decision.ok:
            raise decision.error()
        return self._transfer_stream(query, key, peer)

    def _transfer_stream(self, query: Message, key: SharedKey, peer: tuple) -> Iterator[bytes]:
        """The signed messages of a transfer, read from one LMDB snapshot held
        until the generator ends. When the TCP loop cuts it short (the peer
        too slow: `StreamAborted` thrown in), the snapshot is released and
        one warning names the zone, the peer and why."""
        origin = query.question.name
        start = time.perf_counter()
        sent = records = messages = 0
        with self.store.snapshot() as snap:
            view = snap.get_zone(origin)
            secondary = self.secondaries.get(origin)
            if view is None or (secondary is not None and not serving(
                    origin, Action.TRANSFER, secondary.expired(time.time())).ok):
                response = make_response(query, Rcode.SERVFAIL)
                yield tsig.sign(response, key, int(time.time()),
                                request_mac=query.signature.mac, fudge=self._fudge(query))
                return
            outbound = OutboundTransfer(query, view)
            signer = tsig.StreamSigner(key, query.signature.mac, fudge=self._fudge(query))
            try:
                for message in outbound:
                    wire = signer.sign(message, int(time.time()))
                    yield wire
                    records += message.answer_count  # taken: the next one is asked for
                    messages += 1
                    sent += len(wire)
            except StreamAborted as exc:
                aborted = exc
            else:
                aborted = None
        if aborted is not None:  # logged once the snapshot is released
            log.warning("transfer out %s to %s port %d cut short: %s; %d messages "
                        "(%d bytes) sent in %.3f s", origin, peer[0], peer[1], aborted,
                        messages, sent, time.perf_counter() - start)
            return
        log.info("transfer out %s to %s: %s, serial %s -> %d, %d records, %d messages, "
                 "%d bytes, %.3f s", origin, peer[0], outbound.kind.name.lower(),
                 "none" if outbound.request.serial is None else outbound.request.serial,
                 outbound.serial, records, messages, sent, time.perf_counter() - start)

    def _notify(self, query: Message, key: SharedKey | None, peer: tuple, tcp: bool) -> Message:
        """NOTIFY for a secondary zone: acknowledge, then check the primaries."""
        notify = validate_notify(query)
        secondary = self.secondaries.get(notify.origin)
        decision = allowed(None if secondary is None else secondary.zone, Action.NOTIFY,
                           None if key is None else key.name, peer)
        if not decision.ok:
            raise decision.error()
        zone = secondary.zone
        log.info("NOTIFY for %s (serial %s) from %s", zone.name,
                 "?" if notify.serial is None else notify.serial, peer[0])
        secondary.notify(notify.serial)
        return notify_response(query)


class LoadStatus(StrEnum):
    """What a (re)load did with one zone (its value is what `ctl reload` reports)."""

    LOADED = "loaded"  # compiled and now served
    UNCHANGED = "unchanged"  # its files are as when last compiled: not compiled again
    FAILED = "failed"  # errors: the zone it served before (if any) is still served


@dataclass
class LoadResult:
    """What happened to one zone on a (re)load."""

    zone: ZoneConfig
    status: LoadStatus
    serial: int | None = None
    records: int = 0
    seconds: float = 0.0
    error: str = ""
    previous_serial: int | None = None

    @property
    def serial_changed(self) -> bool:
        """True when secondaries should hear of it (NOTIFY)."""
        return self.status is LoadStatus.LOADED and self.serial != self.previous_serial


def _sources_unchanged(store: Store, zone: ZoneConfig) -> bool:
    """True if the zone was compiled from the configured file (its path
    first among the sources) and no source changed since."""
    info = store.get_zone_info(zone.name)
    if info is None or not info.sources:
        return False
    if info.sources[0][0] != os.fspath(zone.file):
        return False  # the config points the zone at another file
    for path, digest in info.sources:
        try:
            with open(path, "rb") as f:
                if hashlib.file_digest(f, "sha256").digest() != digest:
                    return False
        except OSError:
            return False
    return True


def _includes_allowed(store: Store, zone: ZoneConfig) -> bool:
    """Whether every file the stored version of `zone` included lies where
    its config allows now (else it is compiled again, and fails, rather than
    kept as unchanged after include_dirs were narrowed)."""
    info = store.get_zone_info(zone.name)
    if info is None or zone.file is None:
        return True
    roots = [os.path.realpath(d) for d in (os.path.dirname(zone.file), *zone.include_dirs)]
    return all(inside(os.path.realpath(path), roots) for path, _ in info.sources[1:])


async def load_primary_zone(store: Store, zone: ZoneConfig,
                            overlay: Sequence[Record] = ()) -> LoadResult:
    """Compile one zone file into the store unless its files are unchanged,
    in a child process (`compiler.compile_in_child`: answers do not wait,
    and cancelling stops it).

    A file with errors leaves the served zone untouched. `overlay` records
    (a registration zone's registrations) are added to the zone file's.
    """
    start = time.perf_counter()
    info = store.get_zone_info(zone.name)
    previous = None if info is None else info.serial
    allowed = await trio.to_thread.run_sync(_includes_allowed, store, zone)
    if allowed and await trio.to_thread.run_sync(_sources_unchanged, store, zone):  # hashes
        return LoadResult(zone, LoadStatus.UNCHANGED, info.serial, info.records,
                          previous_serial=previous)
    try:
        serial, records = await compile_in_child(store.path, zone.file, zone.name,
                                                 zone.include_dirs,
                                                 serial_policy=compile_serial_policy(zone),
                                                 overlay=overlay)
    except KeyresolveError as exc:
        return LoadResult(zone, LoadStatus.FAILED, error=str(exc), previous_serial=previous)
    return LoadResult(zone, LoadStatus.LOADED, serial, records, time.perf_counter() - start,
                      previous_serial=previous)


def compile_serial_policy(zone: ZoneConfig) -> str:
    """The serial policy a compile of `zone`'s file uses: its own, but
    "increment" for a registration zone set to "keep": the registry's
    changes raise the served serial past the file's, which the file need
    not follow (as BIND's dynamic zones take the higher of the two)."""
    if zone.registration and zone.serial_policy == "keep":
        return "increment"
    return zone.serial_policy


async def load_zones(store: Store, config: ServeConfig,
                     overlay: Callable[[Name], Sequence[Record]] = lambda origin: ()
                     ) -> list[LoadResult]:
    """Compile every primary zone, each with its `overlay(origin)`; drop
    zones no longer configured."""
    results = [await load_primary_zone(store, zone, overlay(zone.name))
               for zone in config.zones if not zone.is_secondary]
    await trio.to_thread.run_sync(_drop_unconfigured, store, config)
    return results


def _drop_unconfigured(store: Store, config: ServeConfig) -> None:
    wanted = {zone.name for zone in config.zones}
    for origin in store.zone_names():
        if origin not in wanted:
            store.delete_zone(origin)
            log.info("zone %s removed (no longer configured)", origin)


def log_results(results: list[LoadResult]) -> None:
    """One log line per zone, with its serial."""
    for r in results:
        if r.status is LoadStatus.LOADED:
            log.info("zone %s loaded: serial %d, %d records in %.3f s",
                     r.zone.name, r.serial, r.records, r.seconds)
        elif r.status is LoadStatus.UNCHANGED:
            log.info("zone %s unchanged: serial %d, %d records", r.zone.name, r.serial,
                     r.records)
        else:
            for line in r.error.splitlines():
                log.error("zone %s not loaded: %s", r.zone.name, line)


@dataclass
class ConfigChange:
    """What a re-read config file changes for a running server."""

    changed: bool = False
    added: list[Name] = field(default_factory=list)
    removed: list[Name] = field(default_factory=list)
    modified: list[Name] = field(default_factory=list)
    secondaries_stopped: list[Name] = field(default_factory=list)
    secondaries_started: list[Name] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the log."""
        parts = [f"{len(names)} zone(s) {what}" + (f" ({', '.join(map(str, names))})"
                                                   if names else "")
                 for what, names in (("added", self.added), ("removed", self.removed),
                                     ("changed", self.modified))]
        return ", ".join(parts)


def diff_configs(old: ServeConfig, new: ServeConfig) -> ConfigChange:
    """What applying `new` in place of the running `old` changes. Settings
    a running server cannot change (listen, data_dir, workers, pidfile) keep
    their old values in `new`, with a warning."""
    for setting in ("listen", "data_dir", "workers", "pidfile"):
        if setting == "workers" and getattr(new, setting) != getattr(old, setting):
            new.workers = old.workers  # as --workers or the file set it at start
        elif getattr(new, setting) != getattr(old, setting):
            log.warning("%s: %s changed: a restart applies it", new.path, setting)
            setattr(new, setting, getattr(old, setting))
    change = ConfigChange(changed=fingerprint(new) != fingerprint(old))
    if not change.changed:
        return change
    before = {z.name: z for z in old.zones}
    after = {z.name: z for z in new.zones}
    change.added = [name for name in after if name not in before]
    change.removed = [name for name in before if name not in after]
    for name, zone in after.items():
        previous = before.get(name)
        key_changed = zone.tsig_key is not None and old.keys.get(zone.tsig_key) != new.keys.get(zone.tsig_key)
        if previous is not None and (previous != zone or key_changed):
            change.modified.append(name)
    for name, zone in before.items():
        if zone.is_secondary and (name in change.removed or name in change.modified):
            change.secondaries_stopped.append(name)
    for name, zone in after.items():
        if zone.is_secondary and (name in change.added or name in change.modified):
            change.secondaries_started.append(name)
    return change


class AuthDaemon:
    """One authoritative server: handler, zone loading, replication tasks."""

    def __init__(self, config: ServeConfig, store: Store, nursery: trio.Nursery) -> None:
        self.config = config
        self.store = store
        self.nursery = nursery
        self.handler = AuthServer(store, config)
        #: The workers (`keyresolve serve --workers`), restarted on a config change.
        self.pool: WorkerPool | None = None
        #: The cancel scope of each secondary zone's refresh task.
        self._secondary_scopes: dict[Name, trio.CancelScope] = {}
        #: One reload (config and zones) at a time, from SIGHUP or `ctl reload`.
        self.reload_lock = trio.Lock()
        #: The registry (a `[registry]` section), or None.
        self.registry: RegistryService | None = None
        #: Each zone's NOTIFY sender per target (coalescing its NOTIFYs).
        self._notifiers: dict[tuple[Name, Endpoint], Notifier] = {}

    def overlay(self, origin: Name) -> list[Record]:
        """What the zone `origin` serves beyond its zone file: its registrations."""
        return [] if self.registry is None else self.registry.overlay(origin)

    async def reload(self) -> list[LoadResult]:
        """Recompile changed zone files in child processes (queries are
        answered meanwhile; a shutdown kills them), then NOTIFY the
        secondaries of zones whose serial changed."""
        async with self.handler.write_lock:
            results = await load_zones(self.store, self.config, self.overlay)
        log_results(results)
        for result in results:
            if result.serial_changed:
                with self.store.snapshot() as snap:
                    view = snap.get_zone(result.zone.name)
                    soa = None if view is None else view.soa
                if soa is not None:
                    self.zone_changed(result.zone, soa)
        return results

    def zone_changed(self, zone: ZoneConfig, soa: Record) -> None:
        """Tell the zone's `notify` targets about its new serial (in the background)."""
        key = None if zone.tsig_key is None else self.config.keys[zone.tsig_key]
        for target in zone.notify:
            notifier = self._notifiers.get((zone.name, target))
            if notifier is None:
                notifier = self._notifiers[zone.name, target] = Notifier(zone.name, target)
            notifier.changed(soa, key, self.nursery)

    def start_secondaries(self) -> None:
        """Start the refresh loop of every secondary zone."""
        for zone in self.config.zones:
            if zone.is_secondary:
                self.start_secondary(zone)

    def start_secondary(self, zone: ZoneConfig) -> None:
        """Serve the secondary `zone` and start its refresh loop."""
        secondary = SecondaryZone(zone, self.store, self.config.keys,
                                  self.handler.write_lock, self.zone_changed)
        self.handler.add_secondary(secondary)
        scope = self._secondary_scopes[zone.name] = trio.CancelScope()

        async def run() -> None:
            with scope:
                await secondary.run()
        self.nursery.start_soon(run)

    def stop_secondary(self, origin: Name) -> None:
        """Stop the refresh loop of the secondary zone `origin` (a transfer in
        progress is abandoned, leaving the stored copy as it was)."""
        scope = self._secondary_scopes.pop(origin, None)
        if scope is not None:
            scope.cancel()
        self.handler.remove_secondary(origin)

    async def reconfigure(self) -> ConfigChange:
        """Read the config file again and apply it: the handler's policies
        and keys, secondaries started and stopped, the registry's
        `mailboxes` file, read again every time (the zone files are the
        next `reload`'s). ConfigError leaves everything as it was."""
        old = self.config
        new = await trio.to_thread.run_sync(load_serve_config, old.path)
        change = diff_configs(old, new)
        if self.registry is not None:  # the mailboxes file may change alone
            self.registry.set_mailboxes(new)
        if not change.changed:
            return change
        for origin in change.secondaries_stopped:
            self.stop_secondary(origin)
        self.config = new
        self.handler.reconfigure(new)
        if self.registry is not None:
            self.registry.reconfigure(new)
        for origin in change.secondaries_started:
            self.start_secondary(new.get_zone(origin))
        log.info("configuration re-read from %s: %s", old.path, change.summary())
        return change

    async def reload_all(self, *, restart_workers: bool = True
                         ) -> tuple[ConfigChange, list[LoadResult]]:
        """What SIGHUP and `ctl reload` do: re-read the config file, reload
        the zone files, then restart the workers if the config changed
        (unless not `restart_workers`: the caller does, `restart_workers`).
        ConfigError (the config file is invalid) changes nothing."""
        async with self.reload_lock:
            change = await self.reconfigure()
            results = await self.reload()
            if change.changed and restart_workers:
                await self.restart_workers()
            return change, results

    async def restart_workers(self) -> None:
        """Restart the workers, if any, so they answer by the current config."""
        if self.pool is not None:
            await self.pool.restart(self.config)


def _start_serving(nursery: trio.Nursery, udp: socket.socket, tcp: trio.SocketListener,
                   handler: AuthServer, config: ServeConfig) -> None:
    """Answer on one endpoint's UDP socket and TCP listener."""
    nursery.start_soon(serve_udp, udp, handler)
    nursery.start_soon(functools.partial(
        serve_tcp, tcp, handler, idle_timeout=config.tcp_idle_timeout,
        max_connections=config.max_tcp_connections,
        send_timeout=config.tcp_send_timeout,
        stream_timeout=config.max_transfer_time_out,
        max_per_address=config.max_tcp_per_address, faults=handler.faults))


async def serve(config: ServeConfig, store: Store, *,
                reloads: trio.MemoryReceiveChannel | None = None,
                stop: Callable[[], None] | None = None,
                task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
                ) -> None:
    """Listen on every configured address and answer from `store` until cancelled.

    Starts answering from what the store already holds, then loads the zone
    files and starts the secondaries; `task_status.started` reports the bound
    addresses once loaded. Each item received on `reloads` triggers a reload
    of the config file and the zone files; `stop` is what `ctl stop` calls
    (None: the control command is not offered).
    """
    sys.setswitchinterval(SWITCH_INTERVAL)
    endpoints = []
    try:
        for host, port in config.listen:
            endpoints.append(await open_endpoint(host, port, reuse_port=config.workers > 1))
    except OSError as exc:
        for udp, tcp in endpoints:
            udp.close()
            await tcp.aclose()
        raise KeyresolveError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = []
    _warn_unsigned_notify(config)
    async with trio.open_nursery() as nursery:
        daemon = AuthDaemon(config, store, nursery)
        if stop is not None:
            daemon.handler.control = ServerControl(daemon, stop).run
        for udp, tcp in endpoints:
            address = udp.getsockname()[:2]
            bound.append(address)
            log.info("listening on %s (udp, tcp)", format_endpoint(address))
            _start_serving(nursery, udp, tcp, daemon.handler, config)
        daemon.start_secondaries()
        nursery.start_soon(daemon.handler.faults.run)
        if config.registry is not None:
            # Imported here: a server without [registry] never loads the registry,
            # mail and SMTP code (a restart's time, benchmarks/RESULTS.md).
            from .registryd import RegistryService

            answer_at = _answer_address(bound, config.registry.public_address)
            registry = daemon.registry = await trio.to_thread.run_sync(
                functools.partial(RegistryService, config, store, answer_at,
                                  daemon.handler.write_lock, daemon.zone_changed,
                                  faults=daemon.handler.faults))
            await trio.to_thread.run_sync(registry.rebuild)
            daemon.handler.registry = registry.handle
        try:
            if config.workers > 1:
                pool = daemon.pool = WorkerPool(config, bound, daemon.handler)
                await nursery.start(pool.run)
            await daemon.reload()
            if daemon.registry is not None:
                await daemon.registry.publish_apex_keys()
                await nursery.start(daemon.registry.run)
            task_status.started(bound)
            if reloads is not None:
                async for _ in reloads:
                    try:
                        _, results = await daemon.reload_all()
                    except ConfigError as exc:
                        log.error("reload: %s; the running configuration is kept", exc)
                        continue
                    log_reload_done(results)
            else:
                await trio.sleep_forever()  # serving until cancelled; then the count
        finally:
            log.info("%d messages handled", daemon.handler.messages)
            _log_rate_limited(daemon.handler)
            if daemon.registry is not None:
                daemon.registry.close()


def _answer_address(bound: list[tuple[str, int]], public: Endpoint | None) -> ADDR:
    """Where owners answer challenges: the registry's `public_address`, or
    the first address listened on (not a wildcard: the config refuses it)."""
    host, port = public or bound[0]
    return ADDR(ipaddress.ip_address(host), port)


def log_reload_done(results: list[LoadResult]) -> None:
    """The line that ends a reload: INFO when every zone loaded (or was
    unchanged), WARNING with the count when some failed (their errors are
    the ERROR lines before it)."""
    failed = sum(r.status is LoadStatus.FAILED for r in results)
    if failed:
        log.warning("reload done: %d of %d zones failed (they keep serving their previous "
                    "data, if any)", failed, len(results))
    else:
        log.info("reload done: %d zones, none failed", len(results))


def _warn_unsigned_notify(config: ServeConfig) -> None:
    """At start-up: a primary zone whose NOTIFYs go unsigned (no key to sign
    them with) reaches only secondaries that hold no key for it."""
    for zone in unsigned_notify_zones(config):
        log.warning("zone %s: NOTIFY to %s goes unsigned (no key, no allow_transfer key); "
                    "a secondary holding a key for the zone refuses it and waits for its "
                    "refresh timer", zone.name, ", ".join(map(format_endpoint, zone.notify)))


def _log_rate_limited(handler: AuthServer) -> None:
    """At exit: how many answers rate limiting held back, by class."""
    if handler.rrl is not None and any(handler.rrl.limited):
        log.info("rate limiting dropped or slipped %s answers", ", ".join(
            f"{count} {name}" for name, count in zip(ratelimit.CLASS_NAMES, handler.rrl.limited)
            if count))


async def main(config: ServeConfig) -> None:
    """The daemon: serve, reload on SIGHUP, exit cleanly on SIGTERM/SIGINT."""
    send, receive = trio.open_memory_channel(1)
    with (trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals,
          pidfile(config.pidfile)):
        with Store(config.data_dir) as store:
            async with trio.open_nursery() as nursery:
                await nursery.start(functools.partial(serve, config, store, reloads=receive,
                                                      stop=nursery.cancel_scope.cancel))
                log.info("ready")
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        log.info("SIGHUP: reloading the configuration and zone files")
                        try:
                            send.send_nowait(None)
                        except trio.WouldBlock:
                            log.info("a reload is already pending")
                    else:
                        log.info("%s: shutting down", signal.Signals(signum).name)
                        nursery.cancel_scope.cancel()
                        break


async def worker_main(config: ServeConfig, index: int, channel_fd: int,
                      bound: list[tuple[str, int]]) -> None:
    """A worker process of `keyresolve serve --workers`: answer on the main
    process's `bound` addresses (SO_REUSEPORT) from the shared store, which
    it only reads. NOTIFY goes to the main process over the channel (an
    AF_UNIX socket it passed as `channel_fd`); zone loading, reloads,
    refreshes and NOTIFY sending are the main process's. Exits on SIGTERM,
    SIGINT, or when the main process goes away (the channel closes)."""
    channel = open_worker_channel(channel_fd)
    with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
        with Store(config.data_dir, readonly=True) as store:
            forwarder = Forwarder(channel)
            handler = AuthServer(store, config, forward=forwarder.forward)
            for zone in config.zones:
                if zone.is_secondary:
                    handler.add_secondary(StoredSecondary(zone, store))
            try:
                async with trio.open_nursery() as nursery:
                    for host, port in bound:
                        udp, tcp = await open_endpoint(host, port, reuse_port=True)
                        _start_serving(nursery, udp, tcp, handler, config)
                    await nursery.start(forwarder.run, nursery.cancel_scope)
                    nursery.start_soon(handler.faults.run)
                    log.info("worker %d (pid %d) answering", index, os.getpid())
                    async for signum in signals:
                        if signum == signal.SIGHUP:
                            log.info("SIGHUP: worker %d ignores it (send it to the main "
                                     "process)", index)
                        else:
                            nursery.cancel_scope.cancel()
                            break
            finally:
                log.info("worker %d: %d messages handled", index, handler.messages)
                _log_rate_limited(handler)
