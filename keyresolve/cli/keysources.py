"""The key lookup's shells for the client commands: the LMDB key ring as
`client.lookup.Ring`, and a resolver as a `client.lookup.KeySource`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..client.lookup import FETCHED, KeyLookup, Outcome, SourceAnswer
from ..net.client import DEFAULT_RETRIES, DEFAULT_TIMEOUT
from ..net.keylookup import ask_keys
from ..protocol.codes import Rcode, rcode_to_text
from ..protocol.errors import InvalidName, NetworkError, ProtocolError
from ..protocol.names import Name
from ..protocol.records import KEY
from ..protocol.transport import Endpoint, format_endpoint
from ..store.keyring import KeyRing, RingEntry


class RingView:
    """A `KeyRing` as the lookup reads and fills it."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    def held(self, address: str) -> list[RingEntry]:
        """Every entry of `address`, accepted and pending."""
        return self.ring.get(address)

    def store_fetched(self, address: str, keys: Sequence[KEY], server: str,
                      fetched_at: float, ttl: int) -> None:
        """Put each key as fetched (the ring decides accepted or pending)."""
        for key in keys:
            self.ring.put(RingEntry(address, key, FETCHED, server, fetched_at, ttl, key.flags))


class ResolverSource:
    """Ask a resolver over UDP (TCP when the answer is truncated); `run`
    runs a coroutine function to its end (the CLI's `run_trio`)."""

    def __init__(self, server: Endpoint, run: Callable, *, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = DEFAULT_RETRIES) -> None:
        self.server = server
        self.run = run
        self.timeout = timeout
        self.retries = retries
        self.name = f"resolver {format_endpoint(server)}"

    def ask(self, address: str) -> SourceAnswer:
        """NXDOMAIN is no such address; NOERROR without KEY, no key; no
        reply, a refused port, SERVFAIL (the resolver could not reach the
        address's servers) or a bad reply, unreachable."""
        try:
            name = Name.from_text(address)
        except InvalidName as exc:
            return SourceAnswer(Outcome.NO_SUCH_ADDRESS, detail=str(exc))
        try:
            answer = self.run(lambda: ask_keys(self.server, name, timeout=self.timeout,
                                               retries=self.retries))
        except NetworkError as exc:
            return SourceAnswer(Outcome.UNREACHABLE, detail=str(exc))
        except ProtocolError as exc:
            return SourceAnswer(Outcome.UNREACHABLE, detail=f"bad reply: {exc}")
        server = answer.server_text
        if answer.rcode == Rcode.NXDOMAIN:
            return SourceAnswer(Outcome.NO_SUCH_ADDRESS, server=server)
        if answer.rcode != Rcode.NOERROR:
            return SourceAnswer(Outcome.UNREACHABLE, server=server,
                                detail=f"the resolver answered {rcode_to_text(answer.rcode)}")
        if not answer.keys:
            return SourceAnswer(Outcome.NO_KEY, server=server)
        return SourceAnswer(Outcome.FOUND, answer.keys, server, answer.ttl, answer.asked_at)


def make_lookup(ring: KeyRing, resolver: Endpoint, run: Callable, *,
                strict: bool = False) -> KeyLookup:
    """The lookup of the client commands: the ring, then the resolver."""
    return KeyLookup(RingView(ring), [ResolverSource(resolver, run)], now=time.time,
                     strict=strict)


def open_ring(path: Path) -> KeyRing:
    """The key ring at `path` (created 0700 when missing)."""
    return KeyRing(path)


__all__ = ["ResolverSource", "RingView", "make_lookup", "open_ring"]
