#!/usr/bin/env python3
"""The ceiling server: the fastest a plain Python UDP loop can answer.

A blocking socket; every datagram is answered with one precomputed response
whose first two bytes (the id) are replaced by the query's. No parsing, no
lookup: what any Python server on this machine pays for the socket calls
alone. The benchmarks put the same load on it and on `keyresolve serve` in
the same run and report the ratio.

    python benchmarks/ceiling.py --response-hex 0000... [--listen 127.0.0.1:0]

`--loop trio` answers the same way from inside keyresolve's own UDP loop
(keyresolve.net.server.serve_udp) with a handler that does nothing else: the
most any handler optimization can gain without changing the loop.

`--loop trio-lmdb --data-dir DIR` adds what any authoritative answer needs
and nothing more: a msgpack decode of the query and one LMDB read of the
queried mailbox's node in a compiled data directory (one read snapshot per
batch, as `serve`), then the same precomputed response. What the issue's
"0.6 x with a msgpack decode and an LMDB read per query" measures here: the
most a server reading its answers from LMDB can reach with this loop.

Logs "listening on HOST:PORT (udp)" and "ready" on stderr. Stops on SIGTERM,
after --duration seconds or after --max-packets datagrams.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys


class _Stop(Exception):
    pass


def _stop(signum, frame):
    raise _Stop


def serve(sock: socket.socket, response: bytes, max_packets: int) -> int:
    """Answer until `max_packets` datagrams were answered (or a signal); returns the count."""
    recvfrom = sock.recvfrom
    sendto = sock.sendto
    tail = response[2:]
    count = 0
    try:
        while count < max_packets:
            data, peer = recvfrom(65535)
            try:
                sendto(data[:2] + tail, peer)
            except OSError:
                pass  # full buffer: UDP may drop
            count += 1
    except _Stop:
        pass
    return count


class _LmdbBound:
    """`--loop trio-lmdb`'s per-query work: decode, one node read."""

    def __init__(self, data_dir: str) -> None:
        import msgpack

        from keyresolve.protocol.names import Name
        from keyresolve.store.zones import Store

        self.name_from_text = Name.from_text
        self.store = Store(data_dir, readonly=True)
        self.unpackb = msgpack.unpackb
        self.snapshot = None
        self.read = None
        #: domain bytes -> node key prefix of its mailboxes (or None)
        self.prefixes: dict[bytes, bytes | None] = {}

    def __enter__(self) -> None:
        self.snapshot = self.store.snapshot()
        self.read = self.snapshot.node_reader()

    def __exit__(self, *exc_info: object) -> None:
        self.snapshot.close()

    def lookup(self, data: bytes) -> bool:
        """Decode the query and read the node of the name it asks for: found?"""
        name = self.unpackb(data[6:], raw=True)[0][0]
        local, _, domain = name.partition(b"@")
        prefix = self.prefixes.get(domain, b"")
        if prefix == b"":  # once per domain
            route = self.snapshot.mailbox_route(self.name_from_text(domain.decode()).store_key())
            prefix = self.prefixes[domain] = None if route is None else route[1]
        return prefix is not None and self.read(prefix + local) is not None


def serve_trio(host: str, port: int, response: bytes, duration: float,
               max_packets: int, data_dir: str | None = None) -> int:
    """The same answers from keyresolve's trio UDP loop; returns the count.
    With `data_dir`: after a decode and a node read per query (`_LmdbBound`),
    and SERVFAIL where no node was found (so a run shows what it read)."""
    import contextlib

    import trio

    from keyresolve.net.server import bind_udp, serve_udp

    tail = response[2:]
    missing = tail[:1] + bytes((tail[1] & 0xF0 | 2,)) + tail[2:]  # rcode SERVFAIL
    count = 0
    bound_work = None if data_dir is None else _LmdbBound(data_dir)

    async def run() -> None:
        sock = bind_udp(host, port)
        bound = sock.getsockname()
        print(f"ceiling (trio loop): listening on {bound[0]}:{bound[1]} (udp)", file=sys.stderr,
              flush=True)
        print("ceiling: ready", file=sys.stderr, flush=True)
        with trio.move_on_after(duration) as scope:

            class Handler:
                def handle(self, data: bytes, peer: tuple, tcp: bool) -> bytes:
                    nonlocal count
                    count += 1
                    if count >= max_packets:
                        scope.cancel()
                    return data[:2] + tail

                def batch(self):
                    return contextlib.nullcontext()

            class BoundHandler(Handler):
                def handle(self, data: bytes, peer: tuple, tcp: bool) -> bytes:
                    reply = Handler.handle(self, data, peer, tcp)
                    return reply if lookup(data) else data[:2] + missing

                def batch(self):
                    return bound_work

            if bound_work is None:
                await serve_udp(sock, Handler())
            else:
                lookup = bound_work.lookup
                await serve_udp(sock, BoundHandler())
        sock.close()

    trio.run(run)
    if bound_work is not None:
        bound_work.store.close()
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--response-hex", required=True, help="the response to send, hex")
    parser.add_argument("--listen", default="127.0.0.1:0", help="loopback ip:port")
    parser.add_argument("--duration", type=float, default=600, help="stop after this many s")
    parser.add_argument("--max-packets", type=int, default=50_000_000)
    parser.add_argument("--loop", choices=("plain", "trio", "trio-lmdb"), default="plain",
                        help="plain blocking socket, keyresolve's trio UDP loop, or that loop"
                             " with a decode and an LMDB read per query")
    parser.add_argument("--data-dir", help="trio-lmdb: the compiled data directory to read")
    args = parser.parse_args(argv)
    if (args.loop == "trio-lmdb") != (args.data_dir is not None):
        parser.error("--data-dir goes with --loop trio-lmdb, and only with it")
    host, _, port = args.listen.rpartition(":")
    if not host.startswith("127."):
        parser.error("loopback addresses only")
    response = bytes.fromhex(args.response_hex)
    if len(response) < 2:
        parser.error("response must be at least 2 bytes")
    if args.loop != "plain":  # SIGTERM keeps its default action: exit
        count = serve_trio(host, int(port), response, args.duration, args.max_packets,
                           args.data_dir)
        print(f"ceiling: answered {count} datagrams", file=sys.stderr, flush=True)
        return 0
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGALRM, _stop)
    signal.setitimer(signal.ITIMER_REAL, args.duration)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, int(port)))
        bound = sock.getsockname()
        print(f"ceiling: listening on {bound[0]}:{bound[1]} (udp)", file=sys.stderr, flush=True)
        print("ceiling: ready", file=sys.stderr, flush=True)
        count = serve(sock, response, args.max_packets)
    print(f"ceiling: answered {count} datagrams", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
