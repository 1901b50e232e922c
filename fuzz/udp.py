"""udp: mutated datagrams against a live `keyresolve serve` and `keyresolve resolver`.

Each case is a batch of datagrams of one mutation kind, built from real
query bytes (keyresolve.protocol.message.make_query, some signed with a real key),
sent from another loopback address to one of the two daemons. Every reply
must decode and be a response. After each batch the known-good query
(alice@example. KEY) must still get the right answer from both daemons
(over TCP too, every tenth batch), and at the end both daemons must be
alive with no traceback in their logs.
"""

from __future__ import annotations

import random
import select
import socket
from pathlib import Path

from keyresolve.protocol.errors import NotImplementedOpcode
from keyresolve.protocol.message import MAX_MESSAGE, Message

from .core import Run
from .daemons import HOSTILE_SOURCES, Daemon, Servers, udp_socket
from .mutate import MUTATORS, valid_query

CASES = {name: text for name, (_, text) in MUTATORS.items()}
SETTINGS = [("batch", int, 50, "datagrams per case (default 50)")]
#: How long replies to a batch are waited for once the daemon goes quiet.
QUIET = 0.02
#: Every this many batches the known-good check also runs over TCP.
TCP_CHECK_EVERY = 10


def run(state: Run, workdir: Path) -> None:
    with Servers(workdir) as servers:
        targets = [servers.serve, servers.resolver]
        sockets = [udp_socket(source) for source in HOSTILE_SOURCES]
        state.begin()
        try:
            while state.more():
                case, index, rng = state.next_case()
                target = targets[index % 2]
                packets = [MUTATORS[case][0](rng, _base(rng)) for _ in
                           range(state.options.extra.get("batch", 50))]
                sock = sockets[index % len(sockets)]
                if not _send_batch(state, case, index, target, sock, packets):
                    break
                state.done(case, len(packets), "datagrams")
                if not healthy(state, servers, case, index, target, packets,
                               tcp=index % TCP_CHECK_EVERY == 0):
                    break
            else:
                healthy(state, servers, "end", state.index, servers.serve, [], tcp=True)
        finally:
            for sock in sockets:
                sock.close()


def _base(rng: random.Random) -> bytes:
    return valid_query(rng)


def _send_batch(state: Run, case: str, index: int, target: Daemon, sock: socket.socket,
                packets: list[bytes]) -> bool:
    """Send the datagrams; read and check the replies. False on a finding."""
    for data in packets:
        try:
            sock.sendto(data, target.address)
        except OSError:
            pass  # e.g. a datagram the kernel will not send (too long): not the daemon's fault
    while select.select([sock], [], [], QUIET)[0]:
        try:
            reply = sock.recv(MAX_MESSAGE)
        except OSError:
            continue
        try:
            message = Message.from_wire(reply)
        except NotImplementedOpcode:
            continue  # NOTIMP to an unknown opcode echoes it
        except Exception as exc:
            state.finding(case, index, f"{target.label} sent an undecodable reply "
                          f"({exc.__class__.__name__}: {exc})",
                          {"target": target.label, "packets": packets, "reply": reply})
            return False
        if not message.qr:
            state.finding(case, index, f"{target.label} replied with a message without QR",
                          {"target": target.label, "packets": packets, "reply": reply})
            return False
    return True


def healthy(state: Run, servers: Servers, case: str, index: int, target: Daemon,
            packets: list[bytes], *, tcp: bool) -> bool:
    """Both daemons alive, without tracebacks, answering the known-good
    query; a finding (with the batch) otherwise."""
    problems = servers.problems() or servers.check(tcp=tcp)
    for problem in problems:
        state.finding(case, index, problem, {"target": target.label, "packets": packets,
                                             "logs": servers.log_tails()})
    return not problems


def replay(state: Run, workdir: Path, doc: dict) -> None:
    """Send a saved batch again to fresh daemons and check them."""
    packets = [bytes.fromhex(p) for p in doc["packets"]]
    with Servers(workdir) as servers:
        target = servers.serve if doc["target"] == "serve" else servers.resolver
        with udp_socket(HOSTILE_SOURCES[0]) as sock:
            if _send_batch(state, doc["case"], doc["index"], target, sock, packets):
                healthy(state, servers, doc["case"], doc["index"], target, packets, tcp=True)
        state.done(doc["case"], len(packets), "datagrams")
