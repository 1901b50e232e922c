"""Ask a resolver for the KEY records of an address: the network half of
the client's key lookup (the decisions are keyresolve.client.lookup's).

One recursive query over UDP; a truncated reply (a hybrid key does not fit
1,232 bytes) is asked again over TCP by `net.client.query`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..protocol.codes import RType
from ..protocol.errors import FormError
from ..protocol.message import make_query
from ..protocol.names import Name
from ..protocol.records import KEY
from ..protocol.transport import Endpoint, format_endpoint
from .client import DEFAULT_RETRIES, DEFAULT_TIMEOUT, query


@dataclass(frozen=True)
class KeyAnswer:
    """What a resolver said about an address: its rcode, the KEY rdata of
    the answer (after any ALIAS), the smallest TTL among them (0 when there
    are none), which server said it and when (epoch seconds)."""

    rcode: int
    keys: tuple[KEY, ...]
    ttl: int
    server: Endpoint
    tcp: bool
    asked_at: float

    @property
    def server_text(self) -> str:
        """The server as ``ip:port``."""
        return format_endpoint(self.server)


async def ask_keys(server: Endpoint, address: Name, *, timeout: float = DEFAULT_TIMEOUT,
                   retries: int = DEFAULT_RETRIES) -> KeyAnswer:
    """Ask `server` (a resolver: recursion desired) for the KEY records of
    `address`. Raises NetworkError (a `QueryTimeout` when every try timed
    out) when the resolver cannot be reached, FormError for a reply that
    does not decode or match."""
    asked_at = time.time()
    exchange = await query(server, make_query(address, RType.KEY, rd=True), timeout=timeout,
                           retries=retries)
    response = exchange.response
    records = [r for r in response.answer if r.rtype == RType.KEY]
    keys = tuple(r.rdata for r in records)
    if any(not isinstance(k, KEY) for k in keys):
        raise FormError("a KEY record of the answer does not decode as a KEY")
    ttl = min((r.ttl for r in records), default=0)
    return KeyAnswer(int(response.rcode), keys, ttl, server, exchange.tcp, asked_at)


__all__ = ["KeyAnswer", "ask_keys"]
