"""Client side: send a message over UDP or TCP and wait for the matching reply.

Timeouts live here, at the edge; trio and OS errors become keyresolve errors.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import trio

from ..protocol import tsig
from ..protocol.codes import Rcode
from ..protocol.errors import FormError, NetworkError, PeerError, ProtocolError, QueryTimeout
from ..protocol.message import MAX_MESSAGE, FrameReader, Message, frame, peek_id
from ..protocol.tsig import SharedKey

#: Default time to wait for one reply (dig's default is 5 s; loopback
#: servers answer in well under a millisecond).
DEFAULT_TIMEOUT = 2.0
#: Default number of UDP retries after the first attempt (dig uses 2).
DEFAULT_RETRIES = 2


@dataclass
class Exchange:
    """A reply and how it was obtained."""

    response: Message
    wire: bytes
    server: tuple[str, int]
    tcp: bool
    elapsed: float
    #: For a signed query: "ok", or why the reply's signature did not verify.
    verified: str | None = None

    @property
    def signed(self) -> bool:
        """True if the reply carried a signature trailer."""
        return self.response.signature is not None


class NoReply(QueryTimeout):
    """Every try timed out: how many tries went to `server`, over which
    transport the last one went, and the time from the first to the end."""

    def __init__(self, message: str, *, server: tuple[str, int], tries: int, elapsed: float,
                 tcp: bool) -> None:
        super().__init__(message)
        self.server = server
        self.tries = tries
        self.elapsed = elapsed
        self.tcp = tcp


def _family(host: str) -> int:
    return trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET


async def exchange_udp(server: tuple[str, int], wire: bytes, timeout: float) -> bytes:
    """Send one datagram; return the first reply from `server` with our id."""
    msg_id = peek_id(wire)
    try:
        with trio.socket.socket(_family(server[0]), trio.socket.SOCK_DGRAM) as sock:
            # connect() makes the kernel drop datagrams from other sources
            # and report ICMP port-unreachable as ConnectionRefusedError.
            await sock.connect(server)
            await sock.send(wire)
            with trio.fail_after(timeout):
                while True:
                    data = await sock.recv(MAX_MESSAGE)
                    if peek_id(data) == msg_id:
                        return data
    except trio.TooSlowError:
        raise QueryTimeout(f"no reply from {_fmt(server)} within {timeout:g} s") from None
    except ConnectionRefusedError:
        raise NetworkError(f"connection refused by {_fmt(server)} (UDP)") from None
    except OSError as exc:
        raise NetworkError(f"cannot reach {_fmt(server)}: {exc.strerror or exc}") from None


async def exchange_tcp(server: tuple[str, int], wire: bytes, timeout: float) -> bytes:
    """Send one framed message over a new TCP connection; return the reply."""
    with _tcp_errors(server, f"no reply from {_fmt(server)} within {timeout:g} s (TCP)",
                     f"TCP connection to {_fmt(server)} failed"):
        with trio.fail_after(timeout):
            stream = await trio.open_tcp_stream(*server)
            async with stream:
                await stream.send_all(frame(wire))
                return await read_frame(stream, FrameReader())


@contextlib.contextmanager
def _tcp_errors(server: tuple[str, int], timed_out: str, failed: str) -> Iterator[None]:
    """Translate trio's and the OS's errors on a TCP exchange with `server`
    into ours: QueryTimeout(`timed_out`), NetworkError (refused, or `failed`)."""
    try:
        yield
    except trio.TooSlowError:
        raise QueryTimeout(timed_out) from None
    except ConnectionRefusedError:
        raise NetworkError(f"connection refused by {_fmt(server)} (TCP)") from None
    except (OSError, trio.BrokenResourceError) as exc:
        raise NetworkError(f"{failed}: {exc}") from None


async def read_frame(stream: trio.abc.ReceiveStream, reader: FrameReader) -> bytes:
    """Read one length-prefixed message; raises NetworkError if the stream ends."""
    while (message := reader.next_frame()) is None:
        data = await stream.receive_some(65536)
        if not data:
            raise NetworkError("connection closed before a whole message arrived")
        reader.receive_data(data)
    return message


def _matches(query: Message, response: Message) -> bool:
    return (response.qr and response.id == query.id and response.question == query.question)


async def query(server: tuple[str, int], message: Message, *, timeout: float = DEFAULT_TIMEOUT,
                retries: int = DEFAULT_RETRIES, tcp: bool = False,
                key: SharedKey | None = None) -> Exchange:
    """Ask `server`; retry UDP on timeout; fall back to TCP when TC is set.

    With `key` the query is signed and the reply verified; the outcome is in
    `Exchange.verified`. Raises NoReply (a QueryTimeout) when every try timed
    out, NetworkError, or FormError for an undecodable or mismatched reply.
    `retries` counts the tries after the first, over UDP, or over TCP when
    `tcp` is set.
    """
    exchange = await _query(server, message, timeout, retries, tcp, key)
    if key is not None:
        assert message.signature is not None
        try:
            tsig.verify_response(exchange.response, key, message.signature.mac, int(time.time()))
            exchange.verified = "ok"
        except (ProtocolError, PeerError) as exc:
            exchange.verified = str(exc)
    return exchange


async def _query(server: tuple[str, int], message: Message, timeout: float, retries: int,
                 tcp: bool, key: SharedKey | None) -> Exchange:
    wire = message.to_wire() if key is None else tsig.sign(message, key, int(time.time()))
    start = time.perf_counter()
    tries = 0

    def no_reply(exc: QueryTimeout, over_tcp: bool) -> NoReply:
        return NoReply(str(exc), server=server, tries=tries, elapsed=time.perf_counter() - start,
                       tcp=over_tcp)

    if not tcp:
        for attempt in range(retries + 1):
            tries += 1
            try:
                data = await exchange_udp(server, wire, timeout)
            except QueryTimeout as exc:
                if attempt == retries:
                    raise no_reply(exc, False) from None
                continue
            response = Message.from_wire(data)
            if not _matches(message, response):
                raise FormError("reply does not match the query (id or question)")
            if not response.tc:
                return Exchange(response, data, server, False, time.perf_counter() - start)
            break
    # Asked for, TCP is retried as UDP is (dig's +tries counts both); after a
    # truncated UDP reply, one TCP try.
    for attempt in range(retries + 1 if tcp else 1):
        tries += 1
        try:
            data = await exchange_tcp(server, wire, timeout)
            break
        except QueryTimeout as exc:
            if attempt == (retries if tcp else 0):
                raise no_reply(exc, True) from None
    response = Message.from_wire(data)
    if not _matches(message, response):
        raise FormError("reply does not match the query (id or question)")
    return Exchange(response, data, server, True, time.perf_counter() - start)


def _fmt(server: tuple[str, int]) -> str:
    host, port = server[0], server[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def transfer(server: tuple[str, int], message: Message, on_message, *,
                   timeout: float = DEFAULT_TIMEOUT, key: SharedKey | None = None,
                   raw_answer: bool = False) -> None:
    """Send a TRANSFER query over TCP and pass each reply message (verified
    in stream order when `key` is given) to ``on_message(message, size)``,
    until it returns True. `timeout` bounds the wait for each message. With a
    key, an unsigned error reply raises PeerError with its rcode. With
    `raw_answer`, the replies are decoded so (`Message.from_wire`): for a
    receiver that checks the records itself (`xfr.Inbound`)."""
    wire = message.to_wire() if key is None else tsig.sign(message, key, int(time.time()))
    verifier = None if key is None else tsig.StreamVerifier(key, message.signature.mac)
    with _tcp_errors(server, f"transfer from {_fmt(server)} stalled for {timeout:g} s",
                     f"transfer from {_fmt(server)} failed"):
        with trio.fail_after(timeout):
            stream = await trio.open_tcp_stream(*server)
        async with stream:
            await stream.send_all(frame(wire))
            reader = FrameReader()
            while True:
                with trio.fail_after(timeout):
                    data = await read_frame(stream, reader)
                reply = Message.from_wire(data, cache_names=False, raw_answer=raw_answer)
                if reply.id != message.id:
                    raise FormError("transfer reply with another id")
                if verifier is not None:
                    if reply.signature is None and reply.rcode != Rcode.NOERROR:
                        raise PeerError(reply.rcode)  # refused before any signing
                    verifier.verify(reply, int(time.time()))
                if on_message(reply, len(data)):
                    return
