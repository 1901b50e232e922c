"""net.client against an in-process peer on real loopback sockets."""

from __future__ import annotations

import pytest
import trio

from keyresolve import tsig
from keyresolve.codes import Rcode, RType
from keyresolve.errors import PeerError
from keyresolve.message import FrameReader, Message, frame, make_response
from keyresolve.names import Name
from keyresolve.net.client import read_frame, transfer
from keyresolve.xfr import make_transfer_query

KEY = tsig.Key(Name.from_text("xfer."), "hmac-sha256", bytes(range(32)))


async def _refusing_peer(stream: trio.SocketStream) -> None:
    query = Message.from_wire(await read_frame(stream, FrameReader()))
    await stream.send_all(frame(make_response(query, Rcode.REFUSED).to_wire()))


@pytest.mark.parametrize("key", [KEY, None])
def test_unsigned_error_reply_to_a_transfer(key):
    seen = []

    async def main():
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                lambda task_status: trio.serve_tcp(_refusing_peer, 0, host="127.0.0.1",
                                                   task_status=task_status))
            port = listeners[0].socket.getsockname()[1]
            request = make_transfer_query(Name.from_text("example.com."), RType.AXFR)
            try:
                await transfer(("127.0.0.1", port), request,
                               lambda m, n: seen.append(m.rcode) or True, key=key, timeout=5)
            except PeerError as exc:
                return exc
            finally:
                nursery.cancel_scope.cancel()

    error = trio.run(main)
    if key is None:  # no key: the caller sees the reply and its rcode
        assert error is None and seen == [Rcode.REFUSED]
    else:  # signed request: the peer's rcode, not a signature complaint
        assert isinstance(error, PeerError) and error.rcode == Rcode.REFUSED and seen == []
