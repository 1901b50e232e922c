"""Scripted upstream servers for resolver tests (like BIND's system-test `ans`).

A `ScriptedServer` answers UDP (and TCP) on 127.0.0.1 from a thread with
whatever its behaviour function returns: well-formed lies, garbage, or nothing.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from keyresolve.protocol.codes import RType
from keyresolve.protocol.message import MAX_MESSAGE, Message, make_response
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import ADDR, NS, SOA, Record

#: A behaviour gets the decoded query and returns raw datagrams to send back.
Behaviour = Callable[[Message], list[bytes]]


class ScriptedServer:
    """A UDP server on 127.0.0.1:0 answering from a behaviour function."""

    def __init__(self, behaviour: Behaviour, delay: float = 0.0) -> None:
        self.behaviour = behaviour
        self.delay = delay
        self.queries: list[Message] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address = self.sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(MAX_MESSAGE)
            except (TimeoutError, OSError):
                continue
            try:
                query = Message.from_wire(data)
            except Exception:
                continue
            self.queries.append(query)
            if self.delay:
                self._stop.wait(self.delay)
            for reply in self.behaviour(query):
                try:
                    self.sock.sendto(reply, peer)
                except OSError:
                    pass


def name(text: str) -> Name:
    """Parse an absolute name."""
    return Name.from_text(text if text.endswith(".") else text + ".")


def soa(zone: str, ttl: int = 300) -> Record:
    """A plausible SOA for `zone`."""
    origin = name(zone)
    return Record(origin, RType.SOA, ttl, SOA(Name.from_text("ns1", origin),
                                              Name.from_text("hostmaster@", origin),
                                              1, 3600, 600, 86400, ttl))


def referral(query: Message, cut: str, ns: str, address: tuple[str, int],
             extra: list[Record] = ()) -> Message:
    """A referral to `cut` served by `ns` at `address`, plus any extra records."""
    response = make_response(query)
    response.authority = [Record(name(cut), RType.NS, 300, NS(name(ns)))]
    response.additional = [Record(name(ns), RType.ADDR, 300, ADDR.parse(f"{address[0]}:"
                                                                          f"{address[1]}"))]
    response.additional += list(extra)
    return response


def answer(query: Message, records: list[Record]) -> Message:
    """An authoritative answer."""
    response = make_response(query)
    response.aa = True
    response.answer = list(records)
    return response
