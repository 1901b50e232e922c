"""`keyresolve resolver`: the iterative caching resolver daemon.

The sans-IO `Resolver` decides; `net.upstream` carries out its sends; this
module answers stubs, coalesces identical questions, bounds the work in
progress and handles control messages (cache flush).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import logging
import signal
import time
from collections.abc import Awaitable, Callable

import trio

from ..protocol import tsig
from .. import __version__
from ..protocol.control import make_result
from ..resolver.answercache import AnswerCache
from ..resolver.cache import Cache
from ..protocol.codes import ControlCommand, Opcode, Rcode
from ..cli.config import ResolverConfig
from ..protocol.transport import format_endpoint
from ..protocol.errors import FormError, KeyresolveError, NotImplementedOpcode, ProtocolError, Refused
from ..protocol.message import Message, Question, make_response, max_response_size
from ..net.faultlog import FaultLog
from ..net.server import open_endpoint, serve_tcp, serve_udp
from ..net.upstream import run_resolution
from ..resolver.resolution import Done, Resolution, Resolver, Send
from ..protocol.tsig import SharedKey
from ..files.local import LOCAL_FILES
from ..zonedata.zonefile import load_hints
from ..authority.policy import RESOLVER_OPCODES, Action, allowed, not_implemented
from .common import accept_request, our_failure, pidfile

log = logging.getLogger("keyresolve.resolver")

#: The context `batch` returns: reusable, and cheaper than a generator's.
_NO_BATCH = contextlib.nullcontext()


class _Pending:
    """A resolution in progress that identical questions wait on."""

    def __init__(self) -> None:
        self.event = trio.Event()
        self.done: Done | None = None


class ResolverServer:
    """The request handler of the resolver: cache hits at once, the rest later."""

    def __init__(self, config: ResolverConfig, resolver: Resolver, *,
                 clock: Callable[[], float] = trio.current_time) -> None:
        """`clock` is trio's (the daemon passes its clock's own method,
        which skips a lookup per datagram)."""
        self.config = config
        self.resolver = resolver
        self._now = clock
        #: Encoded answers to exact query bytes, kept in step with the cache.
        self.answers = AnswerCache(resolver.cache)
        self._inflight: dict[Question, _Pending] = {}
        self.active = 0
        #: Upstream queries sent, for operators and tests.
        self.upstream_queries = 0
        #: Signed CONTROL messages accepted, so each is accepted once.
        self.replay = tsig.ReplayGuard(config.max_fudge)

        #: Per-packet faults (bad signatures, refusals...), logged at a bounded rate.
        self.faults = FaultLog(log)
        #: When the resolver started, and what `ctl stop` calls (None: not offered).
        self.started = time.time()
        self.stop: Callable[[], None] | None = None

    def batch(self) -> contextlib.nullcontext[None]:
        """No per-batch state: the cache lives in memory."""
        return _NO_BATCH

    def handle(self, data: bytes, peer: tuple, tcp: bool) -> bytes | None | Awaitable[bytes]:
        """Answer one message; never raises.

        An unsigned UDP query answered from the cache is remembered by its
        bytes (`AnswerCache`): the same bytes again are answered from there.
        """
        if not tcp:
            hit = self.answers.answer(data, self._now())
            if hit is not None:
                return hit
        accepted = accept_request(data, peer, self.config.keys, self.faults,
                                  max_fudge=self.config.max_fudge, replay=self.replay)
        if not isinstance(accepted, tuple):
            return accepted
        query, key, _ = accepted
        remember = False
        try:
            action = RESOLVER_OPCODES[query.opcode]
            if action is Action.CONTROL:
                response = self.control(query, peer, key)
            elif action is not Action.QUERY:
                raise not_implemented(query.opcode)
            elif query.question is None:
                raise FormError("query without a question")
            else:
                question = query.question
                pending = self._inflight.get(question)
                if pending is not None:
                    return self._answer_later(query, tcp, key, self._join(pending))
                now = self._now()
                with self.resolver.cache.recording() as lookups:
                    res = self.resolver.start(question, now)
                    first = res.next_action(now)
                if isinstance(first, Done):  # from the cache: no resolution in progress
                    response = self._finish(query, first)
                    remember = not tcp and key is None
                elif not query.rd:
                    # RD clear: the cache only, no recursion (RFC 1034 4.3.1, as Unbound)
                    response = make_response(query, Rcode.REFUSED)
                else:
                    if self.active >= self.config.max_clients:
                        raise Refused("too many resolutions in progress")  # logged below
                    # Registered now, not when the task starts, so identical
                    # questions in the same batch of datagrams join this one.
                    pending = self._inflight[question] = _Pending()
                    self.active += 1
                    return self._answer_later(query, tcp, key,
                                              self._resolve(res, first, pending))
        except Refused as exc:
            self.faults.warning("refused", "refused %s from %s: %s", query.question, peer[0],
                                exc)
            response = make_response(query, exc.rcode)
        except ProtocolError as exc:
            if our_failure(exc):
                self.faults.exception("failure to answer", "failed to answer %s from %s",
                                      query.question, peer[0])
                response = make_response(query, Rcode.SERVFAIL)
            else:
                response = make_response(query, exc.rcode)
        except Exception:
            log.exception("failed to answer %s from %s", query.question, peer[0])
            response = make_response(query, Rcode.SERVFAIL)
        wire = self._encode(query, response, tcp, key)
        if remember:
            self.answers.add(data, response, wire, lookups, now)
        return wire

    async def _answer_later(self, query: Message, tcp: bool, key: SharedKey | None,
                            pending: Awaitable[Done]) -> bytes:
        try:
            done = await pending
            response = self._finish(query, done)
        except Exception:
            log.exception("resolution of %s failed", query.question)
            response = make_response(query, Rcode.SERVFAIL)
        return self._encode(query, response, tcp, key)

    async def _resolve(self, res: Resolution, first: Send, pending: _Pending) -> Done:
        """Run one resolution; identical questions meanwhile wait for it."""
        question = res.question
        try:
            # The Resolution bounds itself; this is the edge's backstop.
            with trio.fail_after(self.resolver.resolution_timeout + 1):
                pending.done = await run_resolution(res, first, key_for=self._upstream_key)
        except trio.TooSlowError:
            pending.done = _servfail(question, "resolution took too long")
        finally:
            self.active -= 1
            self.upstream_queries += res.queries
            del self._inflight[question]
            pending.event.set()
        return pending.done

    @staticmethod
    async def _join(pending: _Pending) -> Done:
        await pending.event.wait()
        return pending.done or _servfail(None, "the shared resolution was cancelled")

    def _upstream_key(self, server: tuple[str, int]) -> SharedKey | None:
        return self.config.get_upstream_key(server)

    def _finish(self, query: Message, done: Done) -> Message:
        if done.rcode == Rcode.SERVFAIL and done.reason:
            self.faults.info("servfail", "SERVFAIL for %s: %s", query.question,
                             _without_question(done.reason, query.question))
        return dataclasses.replace(done.response, id=query.id, rd=query.rd, ra=True, qr=True,
                                   aa=False, opcode=query.opcode, signature=None,
                                   signed_bytes=None, answer=list(done.response.answer),
                                   authority=list(done.response.authority),
                                   additional=list(done.response.additional))

    def _encode(self, query: Message, response: Message, tcp: bool, key: SharedKey | None) -> bytes:
        size = max_response_size(query, tcp)
        if query.opcode == Opcode.QUERY:
            response.ra = True  # recursion is available here, whatever the answer
        if key is None:
            return response.to_wire(size)
        return tsig.sign(response, key, int(time.time()), request_mac=query.signature.mac,
                         max_size=size,
                         fudge=tsig.window(query.signature.fudge, self.config.max_fudge))

    def control(self, query: Message, peer: tuple, key: SharedKey | None) -> Message:
        """Cache flush, for a control key or from loopback."""
        if not allowed(None, Action.CONTROL, None if key is None else key.name, peer,
                       control_keys=self.config.control_keys,
                       control_loopback=self.config.control_loopback).ok:
            raise Refused(f"control message from {peer[0]} without an allowed key")
        if query.question is None:
            raise FormError("control message without a question")
        command = query.question.rtype
        if command == ControlCommand.FLUSH_ALL:
            self.resolver.cache.flush()
            log.info("cache flushed by %s", peer[0])
        elif command == ControlCommand.FLUSH_NAME:
            count = self.resolver.cache.flush_name(query.question.name)
            log.info("cache flushed for %s (%d entries) by %s", query.question.name, count,
                     peer[0])
        elif command == ControlCommand.STATUS:
            return self._status(query)
        elif command == ControlCommand.STOP and self.stop is not None:
            log.info("stop requested by %s: shutting down", peer[0])
            self.stop()
            return make_result(query, {"result": "stopping"})
        else:
            raise NotImplementedOpcode(f"unknown control command {command}")
        return make_response(query)

    def _status(self, query: Message) -> Message:
        """`keyresolve ctl status` of a resolver (docs/protocol.md 8A)."""
        now = time.time()
        return make_result(query, {
            "version": __version__, "pid": os.getpid(), "started": int(self.started),
            "uptime": int(now - self.started), "cached_records": len(self.resolver.cache),
            "resolutions_in_progress": self.active, "upstream_queries": self.upstream_queries})


#: Time between the reply to `ctl stop` and the shutdown, so the reply leaves first.
STOP_GRACE = 0.5


async def _stop_soon(scope: trio.CancelScope) -> None:
    await trio.sleep(STOP_GRACE)
    scope.cancel()


def _without_question(reason: str, question: Question | None) -> str:
    """A SERVFAIL reason without the question it starts with (the log line
    names it first); a reason about another question (a name server's
    address) is kept whole."""
    prefix = f"{question}: "
    return reason[len(prefix):] if reason.startswith(prefix) else reason


def _servfail(question: Question | None, reason: str) -> Done:
    return Done(make_response(Message(question=question), Rcode.SERVFAIL), reason)


def make_resolver(config: ResolverConfig) -> Resolver:
    """A Resolver with the configured hints and cache bounds."""
    hints = load_hints(str(config.root_hints), files=LOCAL_FILES)
    return Resolver(hints, Cache(max_records=config.cache_size, max_ttl=config.max_ttl,
                                 max_infra_records=config.infra_cache_size))


async def keep_primed(handler: ResolverServer) -> None:
    """Prime the root hints at start and again whenever they expire (RFC 8109);
    a failed priming keeps the hints there were."""
    resolver = handler.resolver
    while True:
        await trio.sleep(resolver.priming_wait(trio.current_time()))
        now = trio.current_time()
        res = resolver.start_priming(now)
        try:
            with trio.fail_after(resolver.resolution_timeout + 1):
                done = await run_resolution(res, key_for=handler._upstream_key)
        except trio.TooSlowError:
            done = _servfail(res.question, "priming took too long")
        except Exception:  # a failed priming must not end the daemon
            log.exception("priming failed")
            done = _servfail(res.question, "priming failed")
        handler.upstream_queries += res.queries
        if resolver.finish_priming(done, trio.current_time()):
            log.info("root hints primed: %s", ", ".join(
                sorted({str(name) for name, _ in resolver.root_hints})))
        else:
            log.warning("priming failed, the root hints stay as they were: %s",
                        done.reason or "no root server address in the answer")


async def serve(config: ResolverConfig, *, stop: Callable[[], None] | None = None,
                task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
                ) -> None:
    """Answer stub queries on every configured address until cancelled."""
    handler = ResolverServer(config, make_resolver(config),
                             clock=trio.lowlevel.current_clock().current_time)
    if stop is not None:
        handler.stop = stop
    bound = []
    async with trio.open_nursery() as nursery:
        for host, port in config.listen:
            try:
                udp, tcp = await open_endpoint(host, port)
            except OSError as exc:
                raise KeyresolveError(
                    f"cannot listen on {format_endpoint((host, port))}: {exc.strerror or exc}"
                ) from None
            address = udp.getsockname()[:2]
            bound.append(address)
            log.info("listening on %s (udp, tcp)", format_endpoint(address))
            nursery.start_soon(serve_udp, udp, handler)
            nursery.start_soon(lambda t=tcp: serve_tcp(
                t, handler, idle_timeout=config.tcp_idle_timeout,
                max_connections=config.max_tcp_connections,
                send_timeout=config.tcp_send_timeout,
                max_per_address=config.max_tcp_per_address, faults=handler.faults))
        nursery.start_soon(handler.faults.run)
        nursery.start_soon(keep_primed, handler)
        task_status.started(bound)


async def main(config: ResolverConfig) -> None:
    """The daemon: serve until SIGTERM/SIGINT."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals, \
            pidfile(config.pidfile):
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(serve, config, stop=functools.partial(
                nursery.start_soon, _stop_soon, nursery.cancel_scope)))
            log.info("ready")
            async for signum in signals:
                log.info("%s: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
