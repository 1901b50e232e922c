"""The one transfer driver: AXFR/IXFR from a primary into a `TransferWriter`.

The secondary (into its store) and `keyresolve dig AXFR|IXFR=N` (into a
writer that keeps nothing) both call `run_transfer`. It builds the TRANSFER
query, sends it (signed when given a key) over TCP, verifies each reply's
signature in stream order (RFC 8945 5.3.1) and feeds each message to a
sans-IO `xfr.Inbound`. Timeouts live here, at the edge.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from ..protocol.transport import format_endpoint
from ..protocol.errors import QueryTimeout
from ..protocol.message import Message
from ..protocol.names import Name
from ..protocol.records import Record
from ..protocol.tsig import SharedKey
from ..authority.xfr import Inbound, TransferWriter, make_transfer_query
from .client import DEFAULT_TIMEOUT, transfer


@dataclass
class TransferResult:
    """What one transfer received: the finished `Inbound` (kind, serial,
    records applied) and counts over every message read."""

    inbound: Inbound
    #: The rcode of the last message read.
    rcode: int
    messages: int
    size: int
    elapsed: float


async def run_transfer(server: tuple[str, int], zone: Name, rtype: int,
                       writer: TransferWriter, *, current: Record | None = None,
                       serial: int | None = None, key: SharedKey | None = None,
                       idle_timeout: float = DEFAULT_TIMEOUT, timeout: float | None = None,
                       raw_answer: bool = False,
                       on_message: Callable[[Message], bool] | None = None) -> TransferResult:
    """Transfer `zone` from `server` into `writer`; commit or abort it.

    For IXFR the client's version is its `current` SOA record, or a bare
    `serial` (only the serial matters, RFC 1995 3). `idle_timeout` bounds the
    wait for each message, `timeout` (if given) the whole transfer; either
    raises QueryTimeout. ``on_message(message)``, if given, sees each message
    before the `Inbound` does and ends the transfer by returning True. On any
    error the writer is aborted and the error raised: NetworkError,
    QueryTimeout, FormError (a malformed or broken-off stream), PeerError.
    """
    if current is not None:
        request = make_transfer_query(zone, rtype, current)
        serial = current.rdata.serial
    else:
        request = make_transfer_query(zone, rtype, serial=serial)
    inbound = Inbound(zone, rtype, serial, writer, query_id=request.id)
    counts = {"messages": 0, "size": 0, "rcode": 0}

    def feed(message: Message, size: int) -> bool:
        counts["messages"] += 1
        counts["size"] += size
        counts["rcode"] = message.rcode
        if on_message is not None and on_message(message):
            return True
        return inbound.process_message(message)

    start = time.perf_counter()
    try:
        if timeout is None:
            await transfer(server, request, feed, timeout=idle_timeout, key=key,
                           raw_answer=raw_answer)
        else:
            with trio.fail_after(timeout):
                await transfer(server, request, feed, timeout=idle_timeout, key=key,
                               raw_answer=raw_answer)
    except trio.TooSlowError:
        inbound.abort()
        raise QueryTimeout(f"transfer from {format_endpoint(server)} took longer "
                           f"than {timeout:g} s") from None
    except BaseException:
        inbound.abort()  # nothing is committed without the final SOA
        raise
    return TransferResult(inbound, counts["rcode"], counts["messages"], counts["size"],
                          time.perf_counter() - start)
