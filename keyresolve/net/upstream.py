"""The resolver's I/O shell: carry out a `Resolution`'s sends over UDP/TCP.

Every decision is the sans-IO `Resolution`'s; this only sends, waits (with a
deadline), drops what does not match, and reports back. Each UDP query uses a
new socket, so a fresh random source port (RFC 5452 9.2).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from ..protocol import tsig
from ..protocol.errors import NetworkError, PeerError, ProtocolError
from ..protocol.message import MAX_MESSAGE, FrameReader, Message, frame
from ..resolver.resolution import Done, Resolution, Send, response_matches
from ..protocol.tsig import SharedKey
from .client import read_frame

Server = tuple[str, int]
KeyFor = Callable[[Server], SharedKey | None]


def _no_key(server: Server) -> None:
    return None


async def run_resolution(res: Resolution, first: Send | Done | None = None, *,
                         key_for: KeyFor = _no_key) -> Done:
    """Drive `res` to its answer; `first` is an action already taken from it."""
    action = first if first is not None else res.next_action(trio.current_time())
    while not isinstance(action, Done):
        await exchange(res, action, key_for(action.server))
        action = res.next_action(trio.current_time())
    return action


async def exchange(res: Resolution, send: Send, key: SharedKey | None) -> None:
    """Send one upstream query and report the outcome to `res`."""
    message = send.message
    wire = message.to_wire() if key is None else tsig.sign(message, key, int(time.time()))
    deadline = trio.current_time() + send.timeout
    try:
        if send.tcp:
            response = await _tcp(send.server, wire, deadline)
        else:
            response = await _udp(send, wire, deadline)
    except NetworkError as exc:
        res.on_error(send, trio.current_time(), str(exc))
        return
    except ProtocolError as exc:
        res.on_error(send, trio.current_time(), f"bad reply: {exc}")
        return
    if response is None:
        res.on_timeout(send, trio.current_time())
        return
    if key is not None:
        try:
            tsig.verify_response(response, key, message.signature.mac, int(time.time()))
        except (ProtocolError, PeerError) as exc:
            res.on_error(send, trio.current_time(), f"signature: {exc}")
            return
    res.on_response(send, response, trio.current_time(), send.server)


async def _udp(send: Send, wire: bytes, deadline: float) -> Message | None:
    family = trio.socket.AF_INET6 if ":" in send.server[0] else trio.socket.AF_INET
    try:
        with trio.socket.socket(family, trio.socket.SOCK_DGRAM) as sock:
            await sock.connect(send.server)  # the kernel drops other sources
            await sock.send(wire)
            with trio.move_on_at(deadline):
                while True:
                    data = await sock.recv(MAX_MESSAGE)
                    try:
                        response = Message.from_wire(data)
                    except ProtocolError:
                        continue  # garbage: keep waiting for the real answer
                    if response_matches(send, response, send.server):
                        return response
    except ConnectionRefusedError:
        raise NetworkError("port unreachable") from None
    except OSError as exc:
        raise NetworkError(f"UDP error: {exc.strerror or exc}") from None
    return None


async def _tcp(server: Server, wire: bytes, deadline: float) -> Message | None:
    try:
        with trio.move_on_at(deadline):
            stream = await trio.open_tcp_stream(*server)
            async with stream:
                await stream.send_all(frame(wire))
                return Message.from_wire(await read_frame(stream, FrameReader()))
    except (OSError, trio.BrokenResourceError) as exc:
        raise NetworkError(f"TCP error: {exc}") from None
    return None
