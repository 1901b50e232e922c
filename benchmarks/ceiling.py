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


def serve_trio(host: str, port: int, response: bytes, duration: float,
               max_packets: int) -> int:
    """The same answers from keyresolve's trio UDP loop; returns the count."""
    import contextlib

    import trio

    from keyresolve.net.server import bind_udp, serve_udp

    tail = response[2:]
    count = 0

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

            await serve_udp(sock, Handler())
        sock.close()

    trio.run(run)
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--response-hex", required=True, help="the response to send, hex")
    parser.add_argument("--listen", default="127.0.0.1:0", help="loopback ip:port")
    parser.add_argument("--duration", type=float, default=600, help="stop after this many s")
    parser.add_argument("--max-packets", type=int, default=50_000_000)
    parser.add_argument("--loop", choices=("plain", "trio"), default="plain",
                        help="plain blocking socket, or keyresolve's trio UDP loop")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if not host.startswith("127."):
        parser.error("loopback addresses only")
    response = bytes.fromhex(args.response_hex)
    if len(response) < 2:
        parser.error("response must be at least 2 bytes")
    if args.loop == "trio":  # SIGTERM keeps its default action: exit
        count = serve_trio(host, int(port), response, args.duration, args.max_packets)
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
