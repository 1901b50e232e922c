"""tcp: hostile TCP clients against a live `keyresolve serve` and `keyresolve resolver`.

Each case is one attack, from other loopback addresses, on one of the two
daemons: idle connections held open, slowloris (a query trickled a byte at
a time), frames cut off midway, resets, oversized and zero-length frames,
pipelined floods, frames of mutated messages, and a client that sends
queries and never reads the replies. While an attack holds connections
and after it, the known-good query (alice@example. KEY) must get the right
answer over UDP and TCP from a client of its own; at the end both daemons
must be alive with no traceback in their logs. Pipelined queries must all
be answered.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

from keyresolve.protocol.message import FrameReader, Message, frame

from .core import Run
from .daemons import HOSTILE_SOURCES, Daemon, Servers, good_query, tcp_connect
from .mutate import MUTATORS, valid_query

CASES = {
    "idle": "hold up to --conns idle connections open during a known-good check",
    "slowloris": "trickle valid queries a byte at a time on many connections",
    "midframe": "send a length prefix and part of a message, then close",
    "reset": "send a query or part of one, then reset the connection (RST)",
    "oversized": "a 65535-byte frame of junk, or a 65535 prefix with a few bytes",
    "zerolen": "zero-length frames, then a valid query on the same connection",
    "pipeline": "hundreds of queries in one write; every one must be answered",
    "junk": "frames of mutated messages (the udp mutations) on one connection",
    "stopread": "pipeline thousands of queries and never read the replies",
    "flood": "more idle connections than max_tcp_connections (--flood of them)",
}
SETTINGS = [
    ("conns", int, 100, "most idle/slowloris connections per case (default 100)"),
    ("flood", int, 700, "connections the flood case opens (default 700)"),
    ("hold", float, 12.0, "seconds the stopread case holds its connection (default 12, "
                          "beyond the server's 10 s send timeout)"),
]
#: Seconds a hostile client waits for a reply it expects.
REPLY_TIMEOUT = 5.0


class Attack:
    """The state one case works with: target, rng, hostile sockets."""

    def __init__(self, state: Run, servers: Servers, target: Daemon, rng: random.Random,
                 case: str, index: int) -> None:
        self.state = state
        self.servers = servers
        self.target = target
        self.rng = rng
        self.case = case
        self.index = index
        self.sockets: list[socket.socket] = []
        self.connections = 0
        self.trace: list[str] = []  # what was done, for the reproducer

    def connect(self, timeout: float = REPLY_TIMEOUT) -> socket.socket | None:
        """A connection from a hostile address (None if the server would not take it)."""
        source = HOSTILE_SOURCES[self.connections % len(HOSTILE_SOURCES)]
        self.connections += 1
        try:
            sock = tcp_connect(self.target.address, source=source, timeout=timeout)
        except OSError:
            return None
        self.sockets.append(sock)
        return sock

    def query(self) -> bytes:
        return good_query(rd=self.target.label == "resolver").to_wire()

    def close_all(self, reset: bool = False) -> None:
        for sock in self.sockets:
            close(sock, reset=reset or self.rng.random() < 0.3)
        self.sockets.clear()

    def check_during(self) -> list[str]:
        """The known-good checks while the attack holds its connections."""
        return self.servers.problems() or self.servers.check(tcp=True)


def close(sock: socket.socket, *, reset: bool = False) -> None:
    """Close; with `reset`, abortively (SO_LINGER 0 sends RST)."""
    try:
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


def send(sock: socket.socket, data: bytes) -> bool:
    """Send all of `data`; False if the server closed or reset the connection."""
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def read_replies(sock: socket.socket, wanted: int, timeout: float = REPLY_TIMEOUT
                 ) -> list[bytes]:
    """Up to `wanted` framed replies, until the timeout or the server closes."""
    reader = FrameReader()
    replies: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(replies) < wanted:
        while (message := reader.next_frame()) is not None:
            replies.append(message)
        if len(replies) >= wanted:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except OSError:
            break
        if not chunk:
            while (message := reader.next_frame()) is not None:
                replies.append(message)
            break
        reader.receive_data(chunk)
    return replies


# -- the cases -------------------------------------------------------------------
def idle(a: Attack) -> list[str]:
    for _ in range(a.rng.randint(1, a.state.options.extra.get("conns", 100))):
        a.connect()
    a.trace.append(f"held {len(a.sockets)} idle connections")
    return a.check_during()


def flood(a: Attack) -> list[str]:
    for _ in range(a.state.options.extra.get("flood", 700)):
        if not a.state.more():
            break
        a.connect(timeout=1.0)
    a.trace.append(f"held {len(a.sockets)} idle connections")
    return a.check_during()


def slowloris(a: Attack) -> list[str]:
    count = a.rng.randint(1, min(50, a.state.options.extra.get("conns", 100)))
    duration = min(a.state.remaining(), a.rng.uniform(0.5, 2.0))
    streams = [(sock, frame(a.query())) for _ in range(count) if (sock := a.connect())]
    a.trace.append(f"{len(streams)} connections, {duration:.2f} s, a byte per 0.1 s")
    end = time.monotonic() + duration
    sent = 0
    problems: list[str] = []
    while time.monotonic() < end:
        for sock, data in streams:
            if sent < len(data):
                send(sock, data[sent:sent + 1])
        sent += 1
        if sent == 3:
            problems = a.check_during()
            if problems:
                break
        time.sleep(0.1)
    return problems


def midframe(a: Attack) -> list[str]:
    for _ in range(a.rng.randint(1, 20)):
        sock = a.connect()
        if sock is None:
            continue
        data = frame(valid_query(a.rng))
        send(sock, data[:a.rng.randrange(1, len(data))])
        close(sock)
    a.sockets.clear()
    return []


def reset(a: Attack) -> list[str]:
    for _ in range(a.rng.randint(1, 20)):
        sock = a.connect()
        if sock is None:
            continue
        data = frame(a.query()) * a.rng.randint(1, 50)
        send(sock, data[:a.rng.randrange(1, len(data) + 1)])
        if a.rng.random() < 0.5:
            time.sleep(0.01)  # let the server start answering first
        close(sock, reset=True)
    a.sockets.clear()
    return []


def oversized(a: Attack) -> list[str]:
    sock = a.connect()
    if sock is None:
        return []
    if a.rng.random() < 0.5:
        send(sock, b"\xff\xff" + a.rng.randbytes(65535))
        read_replies(sock, 1, timeout=1.0)
    else:
        send(sock, b"\xff\xff" + a.rng.randbytes(a.rng.randint(0, 100)))
    return []


def zerolen(a: Attack) -> list[str]:
    sock = a.connect()
    if sock is None:
        return []
    send(sock, b"\x00\x00" * a.rng.randint(1, 1000) + frame(a.query()))
    read_replies(sock, 1, timeout=1.0)
    return []


def pipeline(a: Attack) -> list[str]:
    sock = a.connect()
    if sock is None:
        return []
    count = a.rng.randint(10, 500)
    queries = []
    for i in range(count):
        query = good_query(rd=a.target.label == "resolver")
        query.id = i
        queries.append(query.to_wire())
    a.trace.append(f"{count} pipelined queries")
    if not send(sock, b"".join(frame(q) for q in queries)):
        return [f"{a.target.label} closed a connection during a {count}-query pipeline"]
    replies = read_replies(sock, count, timeout=REPLY_TIMEOUT + count / 100)
    ids = sorted(Message.from_wire(r).id for r in replies)
    if ids != list(range(count)):
        return [f"{a.target.label} answered {len(set(ids))} of {count} pipelined queries"]
    return []


def junk(a: Attack) -> list[str]:
    sock = a.connect()
    if sock is None:
        return []
    kinds = [kind for kind in MUTATORS if kind != "valid"]
    messages = [MUTATORS[a.rng.choice(kinds)][0](a.rng, valid_query(a.rng))
                for _ in range(a.rng.randint(1, 30))]
    a.trace.extend(m.hex() for m in messages)
    if send(sock, b"".join(frame(m) for m in messages if m)):
        for reply in read_replies(sock, len(messages), timeout=1.0):
            try:
                Message.from_wire(reply)
            except Exception as exc:
                if exc.__class__.__name__ != "NotImplementedOpcode":
                    return [f"{a.target.label} sent an undecodable reply over TCP "
                            f"({exc.__class__.__name__}: {exc})"]
    return []


def stopread(a: Attack) -> list[str]:
    sock = a.connect()
    if sock is None:
        return []
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    count = a.rng.randint(5000, 20000)
    data = b"".join(frame(a.query()) for _ in range(count))
    hold = min(a.state.remaining(), a.state.options.extra.get("hold", 12.0))
    a.trace.append(f"{count} queries, not read, held {hold:.1f} s")
    sock.setblocking(False)
    sent = 0
    end = time.monotonic() + hold
    next_check = time.monotonic() + 1.0
    while time.monotonic() < end:
        if sent < len(data):
            try:
                sent += sock.send(data[sent:sent + 65536])
            except BlockingIOError:
                pass
            except OSError:
                break  # the server closed it: fine
        if time.monotonic() >= next_check:
            problems = a.check_during()
            if problems:
                return problems
            next_check = time.monotonic() + 1.0
        time.sleep(0.01)
    return []


ATTACKS: dict[str, Callable[[Attack], list[str]]] = {
    "idle": idle, "slowloris": slowloris, "midframe": midframe, "reset": reset,
    "oversized": oversized, "zerolen": zerolen, "pipeline": pipeline, "junk": junk,
    "stopread": stopread, "flood": flood}


def run(state: Run, workdir: Path) -> None:
    with Servers(workdir) as servers:
        state.begin()
        while state.more():
            case, index, rng = state.next_case()
            if not attack(state, servers, case, index, rng):
                break
        else:
            report(state, servers, "end", state.index, [], [])


def attack(state: Run, servers: Servers, case: str, index: int, rng: random.Random) -> bool:
    """Run one case and check the daemons after it; False on a finding."""
    target = [servers.serve, servers.resolver][index % 2]
    a = Attack(state, servers, target, rng, case, index)
    try:
        problems = ATTACKS[case](a)
    finally:
        a.close_all()
    state.done(case, a.connections, "connections")
    problems = problems or servers.problems() or servers.check(tcp=True)
    return report(state, servers, case, index, problems, a.trace, target.label)


def report(state: Run, servers: Servers, case: str, index: int, problems: list[str],
           trace: list[str], target: str = "serve") -> bool:
    problems = problems or servers.problems()
    for problem in problems:
        state.finding(case, index, problem, {"target": target, "trace": trace,
                                             "logs": servers.log_tails()})
    return not problems


def replay(state: Run, workdir: Path, doc: dict) -> None:
    """Run the saved case again (same seed, same number: same attack)."""
    with Servers(workdir) as servers:
        attack(state, servers, doc["case"], doc["index"], state.rng(doc["case"], doc["index"]))
