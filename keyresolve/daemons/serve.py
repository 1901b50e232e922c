"""`keyresolve serve`: the authoritative daemon.

Wiring only: zone files are compiled into the store (off the event loop, so
queries keep flowing during a reload), the sans-IO `authority.answer` makes
every response, and `net.server` moves the bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import trio

from ..authority import answer
from ..codes import Opcode, Rcode
from ..config import ServeConfig, ZoneConfig, format_endpoint
from .. import fastpath, tsig
from ..errors import (BadKey, BadSignature, BadTime, FormError, KeyresolveError,
                      NotImplementedOpcode, ProtocolError, Refused)
from ..message import Message, error_response_wire, make_response, max_response_size
from ..net.server import open_endpoint, serve_tcp, serve_udp
from ..store import Snapshot, Store
from ..tsig import Key
from ..zonefile import load_zone_with_sources

log = logging.getLogger("keyresolve.serve")


class AuthServer:
    """The request handler of an authoritative server: bytes in, bytes out."""

    def __init__(self, store: Store, config: ServeConfig) -> None:
        self.store = store
        self.config = config
        self.keyring = config.keys
        self._snapshot: Snapshot | None = None
        #: Zones the fast path must leave to the full path (by Name.key()):
        #: those requiring signed queries, and expired secondaries.
        self.slow_zones: set[bytes] = {z.name.key() for z in config.zones if z.require_signed}

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Answer a batch of datagrams from one LMDB read snapshot."""
        with self.store.snapshot() as snap:
            self._snapshot = snap
            try:
                yield
            finally:
                self._snapshot = None

    def _fast_lookup(self, zone_key: bytes, local: str) -> bytes | None:
        if zone_key in self.slow_zones or self._snapshot is None:
            return None
        return self._snapshot.mailbox_node(zone_key, local)

    def handle(self, data: bytes, peer: tuple, tcp: bool) -> bytes | None:
        """Answer one message. Never raises: every failure becomes an rcode."""
        if not tcp:
            try:
                fast = fastpath.answer(data, self._fast_lookup)
            except Exception:
                log.exception("fast path failed on a message from %s", peer[0])
                fast = None
            if fast is not None:
                return fast
        try:
            query = Message.from_wire(data)
        except ProtocolError as exc:
            return error_response_wire(data, exc.rcode)
        except Exception:
            log.exception("decoder failed on a message from %s", peer[0])
            return error_response_wire(data, Rcode.FORMERR)
        if query.qr:
            return None  # never answer a response (no loops between servers)
        now = int(time.time())
        key = None
        if query.signature is not None:
            try:
                key = tsig.verify(query, self.keyring, now)
            except (BadKey, BadSignature, BadTime) as exc:
                log.warning("%s from %s: %s", exc.rcode.name, peer[0], exc)
                return tsig.make_error_response(query, exc, self.keyring, now)
        try:
            response = self.respond(query, key)
        except ProtocolError as exc:
            if isinstance(exc, Refused):
                log.info("refused %s from %s: %s", query.question, peer[0], exc)
            response = make_response(query, exc.rcode)
        except Exception:
            log.exception("failed to answer %s from %s", query.question, peer[0])
            response = make_response(query, Rcode.SERVFAIL)
        size = max_response_size(query, tcp)
        if key is None:
            return response.to_wire(size)
        return tsig.sign(response, key, now, request_mac=query.signature.mac, max_size=size)

    def respond(self, query: Message, key: Key | None = None) -> Message:
        """The response to a decoded query from a client holding `key`."""
        if query.opcode == Opcode.QUERY:
            if self._snapshot is not None:
                return self._query(query, key, self._snapshot)
            with self.store.snapshot() as snap:
                return self._query(query, key, snap)
        if query.opcode in (Opcode.TRANSFER, Opcode.NOTIFY):
            self._check_allowed(query, key)
        raise NotImplementedOpcode(f"opcode {query.opcode} is not implemented")

    def _query(self, query: Message, key: Key | None, snap: Snapshot) -> Message:
        if key is None and query.question is not None:
            zone = snap.find_zone(query.question.name)
            policy = None if zone is None else self.config.get_zone(zone.origin)
            if policy is not None and policy.require_signed:
                raise Refused(f"zone {zone.origin} requires signed queries")
        return answer(query, snap.find_zone)

    def _check_allowed(self, query: Message, key: Key | None) -> None:
        """Transfers and NOTIFY need a key the zone lists (REFUSED otherwise)."""
        if query.question is None:
            raise FormError("missing question")
        policy = self.config.get_zone(query.question.name)
        if policy is None:
            raise Refused(f"not a zone of ours: {query.question.name}")
        allowed = policy.allow_transfer if query.opcode == Opcode.TRANSFER else policy.allow_notify
        if key is None or key.name not in allowed:
            who = "unsigned request" if key is None else f"key {key.name}"
            raise Refused(f"{Opcode(query.opcode).name} of {policy.name} refused to {who}")


@dataclass
class LoadResult:
    """What happened to one zone on a (re)load."""

    zone: ZoneConfig
    status: str  # "loaded", "unchanged" or "failed"
    serial: int | None = None
    records: int = 0
    seconds: float = 0.0
    error: str = ""


def _sources_unchanged(store: Store, zone: ZoneConfig) -> bool:
    info = store.get_zone_info(zone.name)
    if info is None or not info.sources:
        return False
    for path, digest in info.sources:
        try:
            with open(path, "rb") as f:
                if hashlib.file_digest(f, "sha256").digest() != digest:
                    return False
        except OSError:
            return False
    return True


def compile_zone(store: Store, zone: ZoneConfig) -> LoadResult:
    """Compile one zone file into the store unless its files are unchanged.

    A file with errors leaves the served zone untouched.
    """
    start = time.perf_counter()
    if _sources_unchanged(store, zone):
        info = store.get_zone_info(zone.name)
        return LoadResult(zone, "unchanged", info.serial, info.records)
    try:
        parsed, sources = load_zone_with_sources(zone.file, zone.name)
        store.replace_zone(parsed, sources)
    except KeyresolveError as exc:
        return LoadResult(zone, "failed", error=str(exc))
    return LoadResult(zone, "loaded", parsed.serial, len(parsed),
                      time.perf_counter() - start)


def load_zones(store: Store, config: ServeConfig) -> list[LoadResult]:
    """Compile every configured zone; drop zones no longer configured."""
    results = [compile_zone(store, zone) for zone in config.zones if not zone.is_secondary]
    wanted = {zone.name for zone in config.zones}
    for origin in store.zone_names():
        if origin not in wanted:
            store.delete_zone(origin)
            log.info("zone %s removed (no longer configured)", origin)
    return results


def log_results(results: list[LoadResult]) -> None:
    """One log line per zone, with its serial."""
    for r in results:
        if r.status == "loaded":
            log.info("zone %s loaded: serial %d, %d records in %.3f s",
                     r.zone.name, r.serial, r.records, r.seconds)
        elif r.status == "unchanged":
            log.info("zone %s unchanged: serial %d, %d records", r.zone.name, r.serial,
                     r.records)
        else:
            for line in r.error.splitlines():
                log.error("zone %s not loaded: %s", r.zone.name, line)


async def reload(store: Store, config: ServeConfig) -> list[LoadResult]:
    """Recompile zones in a worker thread; queries are answered meanwhile."""
    results = await trio.to_thread.run_sync(load_zones, store, config)
    log_results(results)
    return results


async def serve(config: ServeConfig, store: Store, *,
                task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
                ) -> None:
    """Listen on every configured address and answer from `store` until cancelled.

    Starts answering from what the store already holds, then loads the zone
    files; `task_status.started` reports the bound addresses once loaded.
    """
    handler = AuthServer(store, config)
    endpoints = []
    try:
        for host, port in config.listen:
            endpoints.append(await open_endpoint(host, port))
    except OSError as exc:
        for udp, tcp in endpoints:
            udp.close()
            await tcp.aclose()
        raise KeyresolveError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = []
    async with trio.open_nursery() as nursery:
        for udp, tcp in endpoints:
            address = udp.getsockname()[:2]
            bound.append(address)
            log.info("listening on %s (udp, tcp)", format_endpoint(address))
            nursery.start_soon(serve_udp, udp, handler)
            nursery.start_soon(lambda t=tcp: serve_tcp(
                t, handler, idle_timeout=config.tcp_idle_timeout,
                max_connections=config.max_tcp_connections))
        await reload(store, config)
        task_status.started(bound)


async def main(config: ServeConfig) -> None:
    """The daemon: serve, reload on SIGHUP, exit cleanly on SIGTERM/SIGINT."""
    with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
        with Store(config.data_dir) as store:
            async with trio.open_nursery() as nursery:
                await nursery.start(serve, config, store)
                log.info("ready")
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        log.info("SIGHUP: reloading zone files")
                        await reload(store, config)
                        log.info("reload done")
                    else:
                        log.info("%s: shutting down", signal.Signals(signum).name)
                        nursery.cancel_scope.cancel()
                        break
