"""UDP and TCP server loops: short trio loops around a synchronous handler.

The handler is sans-IO from the loop's point of view: bytes in, bytes out.
It never raises (the daemon's handler turns every error into an rcode), but the
loops still guard against it so one bad packet can never stop a server.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import inspect
from collections.abc import Awaitable, Iterable, Iterator
from typing import ContextManager, NoReturn, Protocol

import trio

from ..protocol.errors import StreamAborted
from ..protocol.message import MAX_MESSAGE, FrameReader, frame
from ..protocol.transport import (DEFAULT_MAX_TCP, DEFAULT_MAX_TCP_PER_ADDRESS,
                                  DEFAULT_MAX_TRANSFER_TIME_OUT, DEFAULT_TCP_IDLE,
                                  DEFAULT_TCP_SEND_TIMEOUT)
from .batchio import BatchUnavailable, DatagramBatch
from .faultlog import FaultLog

log = logging.getLogger("keyresolve.net")

#: Datagrams answered per wake-up before yielding to other tasks: bounds how
#: long a UDP flood can starve TCP clients, timers and signal handling (256
#: answers take ~3 ms). Each yield costs a trio scheduling round: under load,
#: 64 per round cost ~0.7 us more per answer than 256 (benchmarks/RESULTS.md).
MAX_BATCH = 256
#: Largest datagram we read; anything longer is truncated by the kernel and
#: then fails to decode (FORMERR), so no larger buffer is ever useful.
MAX_DATAGRAM = MAX_MESSAGE
#: Bytes read from a TCP stream per receive call.
TCP_READ_SIZE = 65536


Reply = bytes | Iterable[bytes] | None


class Handler(Protocol):
    """The request handler a server loop calls, synchronously.

    It returns the reply at once, or an awaitable of it when answering needs
    I/O (a resolver going upstream); the loop then awaits it in a task of its
    own so other clients are not held up. Bounding such work is the
    handler's job.

    A reply of several messages (a zone transfer) is an iterable of them.
    If it is a generator and its peer takes it too slowly (see `serve_tcp`),
    `StreamAborted` (why) is thrown into it at the ``yield`` it stopped at:
    it may catch it, log what it was sending and return, releasing what it
    holds; uncaught, the loop logs the peer and the reason.
    """

    def handle(self, data: bytes, peer: tuple, tcp: bool) -> Reply | Awaitable[Reply]:
        """Answer one message; None means send nothing."""

    def batch(self) -> ContextManager[None]:
        """Context around a batch of datagrams (e.g. one LMDB read snapshot)."""


def bind_udp(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A non-blocking UDP socket bound to host:port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setblocking(False)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def open_tcp_listener(host: str, port: int, *, reuse_port: bool = False,
                            backlog: int = 1024) -> trio.SocketListener:
    """A TCP listener on host:port (SO_REUSEADDR, and SO_REUSEPORT if asked)."""
    family = trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET
    sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
    try:
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEPORT, 1)
        await sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def open_endpoint(host: str, port: int, *, reuse_port: bool = False,
                        attempts: int = 20) -> tuple[socket.socket, trio.SocketListener]:
    """UDP socket and TCP listener on the same port.

    With port 0 the kernel picks the UDP port and TCP binds the same number;
    if that TCP port is taken we try again with another UDP port.
    """
    for _ in range(attempts):
        udp = bind_udp(host, port, reuse_port=reuse_port)
        bound = udp.getsockname()[1]
        try:
            tcp = await open_tcp_listener(host, bound, reuse_port=reuse_port)
        except OSError as exc:
            udp.close()
            if port != 0 or exc.errno != errno.EADDRINUSE:
                raise
            continue
        return udp, tcp
    raise OSError(errno.EADDRINUSE, f"no free port pair on {host}")


async def serve_udp(sock: socket.socket, handler: Handler) -> NoReturn:
    """Answer datagrams forever: wait until readable, then drain what is ready
    (in batches of system calls where `DatagramBatch` is available)."""
    batch = DatagramBatch.open(sock)
    if batch is not None:
        await _serve_udp_batched(sock, handler, batch)
    recvfrom = sock.recvfrom
    sendto = sock.sendto
    handle = handler.handle
    async with trio.open_nursery() as nursery:
        while True:
            await trio.lowlevel.wait_readable(sock)
            with handler.batch():
                for _ in range(MAX_BATCH):
                    try:
                        data, peer = recvfrom(MAX_DATAGRAM)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        continue  # an ICMP error queued on the socket; nothing to answer
                    try:
                        reply = handle(data, peer, False)
                    except Exception:  # the handler must not raise; never let it stop us
                        log.exception("UDP handler failed for %s", peer)
                        continue
                    if type(reply) is bytes:  # the common case, before any ABC check
                        try:  # _send_datagram, inlined: this runs per datagram
                            sendto(reply, peer)
                        except OSError:
                            pass
                    elif inspect.isawaitable(reply):
                        nursery.start_soon(_reply_later, sock, peer, reply)
    raise AssertionError("unreachable")


async def _serve_udp_batched(sock: socket.socket, handler: Handler,
                             batch: DatagramBatch) -> None:
    """`serve_udp` with recvmmsg and sendmmsg: the same answers. Returns if
    batching turns out not to fit this socket (`BatchUnavailable`)."""
    receive, send = batch.receive, batch.send
    handle = handler.handle
    async with trio.open_nursery() as nursery:
        while True:
            await trio.lowlevel.wait_readable(sock)
            with handler.batch():
                answered = 0
                while answered < MAX_BATCH:
                    try:
                        received = receive(MAX_BATCH - answered)
                    except BatchUnavailable as exc:
                        log.warning("UDP batching stopped (%s); one datagram at a time", exc)
                        return
                    if not received:
                        break
                    answered += len(received)
                    replies = []
                    for data, peer in received:
                        try:
                            reply = handle(data, peer, False)
                        except Exception:  # the handler must not raise; never let it stop us
                            log.exception("UDP handler failed for %s", peer)
                            reply = None
                        if type(reply) is not bytes:  # the common case first
                            if inspect.isawaitable(reply):
                                nursery.start_soon(_reply_later, sock, peer, reply)
                            reply = None
                        replies.append(reply)
                    send(replies)


def _send_datagram(sock: socket.socket, reply: bytes, peer: tuple) -> None:
    try:
        sock.sendto(reply, peer)
    except OSError:
        pass  # full send buffer or unreachable peer: UDP may drop


async def _reply_later(sock: socket.socket, peer: tuple, pending: Awaitable[Reply]) -> None:
    try:
        reply = await pending
    except Exception:
        log.exception("UDP handler failed for %s", peer)
        return
    if isinstance(reply, bytes):
        _send_datagram(sock, reply, peer)


async def serve_tcp(listener: trio.SocketListener, handler: Handler, *,
                    idle_timeout: float = DEFAULT_TCP_IDLE,
                    max_connections: int = DEFAULT_MAX_TCP,
                    send_timeout: float = DEFAULT_TCP_SEND_TIMEOUT,
                    max_per_address: int = DEFAULT_MAX_TCP_PER_ADDRESS,
                    stream_timeout: float = DEFAULT_MAX_TRANSFER_TIME_OUT,
                    faults: FaultLog | None = None) -> NoReturn:
    """Serve length-prefixed messages on every accepted connection: at most
    `max_connections` at once, `max_per_address` of them from one client
    address; a connection over either is closed at once (logged through
    `faults`, at a bounded rate).

    A peer must take each message of a reply within `send_timeout`, and the
    whole of a multi-message reply within `stream_timeout`; otherwise its
    connection is closed.

    Whatever goes wrong in one connection (a peer that stops reading, resets,
    or a handler bug) closes that connection and nothing else.
    """
    active = 0
    by_address: dict[str, int] = {}
    faults = FaultLog(log) if faults is None else faults

    async def connection(stream: trio.SocketStream) -> None:
        nonlocal active
        if active >= max_connections:
            faults.warning("TCP limit", "too many TCP connections (%d); closing a new one",
                           active)
            await stream.aclose()
            return
        active += 1
        try:
            await _serve_stream(stream, handler, idle_timeout, send_timeout, stream_timeout)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer went away (trio reports its socket errors so)
        except Exception:  # a bug; raised out of here it would stop every listener
            log.exception("TCP connection from %s failed; closing it",
                          _peer_address(stream) or "a gone peer")
        finally:
            active -= 1
            with contextlib.suppress(Exception):
                await stream.aclose()

    async def admitted(stream: trio.SocketStream) -> None:
        """`connection`, for at most `max_per_address` at once from an address."""
        address = _peer_address(stream)
        held = by_address.get(address, 0)
        if held >= max_per_address:
            faults.warning("TCP per-address limit", "too many TCP connections from %s (%d); "
                           "closing a new one", address, held)
            await stream.aclose()
            return
        by_address[address] = held + 1
        try:
            await connection(stream)
        finally:
            if by_address[address] == 1:
                del by_address[address]
            else:
                by_address[address] -= 1

    await trio.serve_listeners(admitted, [listener])
    raise AssertionError("unreachable")


def _peer_address(stream: trio.SocketStream) -> str:
    """The client's address (without port), or "" if the socket cannot say."""
    try:
        return stream.socket.getpeername()[0]
    except OSError:
        return ""


async def _send_frame(stream: trio.SocketStream, message: bytes, peer: tuple,
                      send_timeout: float) -> bool:
    """Write one framed message; False if the peer did not take it within
    `send_timeout` (it stopped reading: the connection must close)."""
    with trio.move_on_after(send_timeout):
        await stream.send_all(frame(message))
        return True
    log.info("TCP client %s port %d stopped reading for %g s; closing the connection",
             peer[0], peer[1], send_timeout)
    return False


async def _send_stream(stream: trio.SocketStream, replies: Iterable[bytes],
                       peer: tuple, send_timeout: float, stream_timeout: float) -> bool:
    """Send a multi-message reply (a zone transfer) as it is produced.

    If producing it fails midway, or the peer takes a message for longer
    than `send_timeout` or the whole for longer than `stream_timeout`, the
    connection must close, so the client sees a broken stream rather than a
    short one (returns False).
    """
    iterator = iter(replies)
    end = trio.current_time() + stream_timeout
    try:
        while True:
            try:
                part = next(iterator)
            except StopIteration:
                return True
            except Exception:
                log.exception("streamed reply to %s failed; closing the connection", peer)
                return False
            with trio.move_on_at(min(trio.current_time() + send_timeout, end)):
                await stream.send_all(frame(part))
                continue
            if trio.current_time() >= end:
                reason = f"not done after {stream_timeout:g} s (max_transfer_time_out)"
            else:
                reason = f"took no whole message in {send_timeout:g} s (tcp_send_timeout)"
            _abort(iterator, reason, peer)
            return False
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()  # ends the generator: its LMDB snapshot is released now


def _abort(iterator: Iterator[bytes], reason: str, peer: tuple) -> None:
    """Tell a stream's generator why it ends (`StreamAborted`: it logs);
    log it here if it cannot be told or does not catch it."""
    throw = getattr(iterator, "throw", None)
    if throw is not None:
        try:
            throw(StreamAborted(reason))
            return  # it yielded again: the caller closes it
        except StopIteration:
            return  # it caught the error, logged, and returned
        except StreamAborted:
            pass
        except Exception:
            log.exception("streamed reply to %s failed as it was cut short", peer)
            return
    log.info("TCP client %s port %d: %s; closing the connection", peer[0], peer[1], reason)


async def _serve_stream(stream: trio.SocketStream, handler: Handler,
                        idle_timeout: float, send_timeout: float,
                        stream_timeout: float) -> None:
    """Answer the messages of one connection in order, until the peer closes
    it, stays idle, stops reading or a handler fails.

    Replies are written before more is read, so a peer that does not read
    its replies stops being read (TCP flow control pushes back on it) rather
    than making the server buffer them.
    """
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return
    reader = FrameReader()
    # The deadline moves only when a whole message has been answered, so a
    # client trickling bytes cannot hold the connection open forever.
    deadline = trio.current_time() + idle_timeout
    while True:
        data = b""
        with trio.move_on_at(deadline):
            data = await stream.receive_some(TCP_READ_SIZE)
        if not data:
            return  # idle timeout, or the client closed
        reader.receive_data(data)
        while (message := reader.next_frame()) is not None:
            try:
                reply = handler.handle(message, peer, True)
                if inspect.isawaitable(reply):
                    reply = await reply
            except Exception:
                log.exception("TCP handler failed for %s", peer)
                return
            if reply is None:
                continue
            if isinstance(reply, bytes):
                if not await _send_frame(stream, reply, peer, send_timeout):
                    return
            elif not await _send_stream(stream, reply, peer, send_timeout, stream_timeout):
                return
            deadline = trio.current_time() + idle_timeout
