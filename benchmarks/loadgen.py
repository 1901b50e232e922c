#!/usr/bin/env python3
"""Python UDP load generator: the fallback for `dnsperf -B`, and the latency probe.

    python benchmarks/loadgen.py --server 127.0.0.1:5300 --queries q.bin \\
        [--procs 2] [--window 32 | --rate 5000] [--duration 5] [--max-queries N]

Queries are precomputed datagrams read from a length-prefixed file (the
`dnsperf -B` format, written by common.write_query_file); each is sent with a
fresh 16-bit id in its first two bytes, and replies are matched by that id.

- Closed loop (default): each process keeps `--window` queries in flight.
- Open loop (`--rate R`): R queries per second in total at fixed intervals,
  whatever the replies do; latencies then are not inflated by queueing in the
  generator (use it for latency percentiles, below the server's capacity).

Each process runs on `--core` (default 1; the server gets core 0), owns one
non-blocking socket and waits with poll(). Every loop is bounded by
`--duration` and `--max-queries`; after that, replies are awaited for at
most `--timeout` seconds. Reports: sent, answered, lost, qps, latency
p50/p99/p99.9 (ms), rcodes, and the generator's own CPU use (near 1.0 per
core means the generator, not the server, is the limit).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import select
import socket
import sys
import time
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LOAD_CORE, emit, percentile, pin, read_query_file  # noqa: E402

#: Most queries per second one open-loop process tries to send; above this a
#: Python loop falls behind its schedule and the rate is no longer fixed.
MAX_RATE_PER_PROC = 40_000
#: Seconds between forking the processes and their common start.
START_DELAY = 0.1
#: How often (seconds) queries older than the timeout are written off.
EXPIRE_EVERY = 0.05


def _worker(queries: list[bytes], server: tuple[str, int], window: int, rate: float,
            duration: float, max_queries: int, timeout: float, core: int | None,
            start_at: float, out: mp.Queue) -> None:
    """One generator process; puts its counters and latencies on `out`."""
    if core is not None:
        pin(core)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    sock.connect(server)
    sock.setblocking(False)
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    send, recv, clock = sock.send, sock.recv, time.perf_counter
    tails = [q[2:] for q in queries]
    nq = len(tails)
    pending: dict[int, float] = {}  # id -> send time
    lat = array("d")
    rcodes: dict[int, int] = {}
    sent = answered = answered_in_window = lost = late = behind = 0
    seq = 0
    interval = 1.0 / rate if rate > 0 else 0.0
    while (wait := start_at - clock()) > 0:
        time.sleep(min(wait, 0.05))
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = clock()
    end = start + duration
    next_send = start
    next_expire = start + EXPIRE_EVERY
    sending = True
    drain_until = 0.0
    while True:
        now = clock()
        if sending and (now >= end or sent >= max_queries):
            sending = False
            drain_until = now + timeout
        if not sending and (not pending or now >= drain_until):
            break
        if sending:
            if rate > 0:
                if next_send < now - 0.1:  # more than 100 ms behind: skip ahead
                    behind += int((now - next_send) / interval)
                    next_send = now
                while next_send <= now and sent < max_queries:
                    mid = seq & 0xFFFF
                    if pending.pop(mid, None) is not None:
                        lost += 1  # id reused while still unanswered
                    try:
                        send(mid.to_bytes(2, "big") + tails[seq % nq])
                    except BlockingIOError:
                        break
                    pending[mid] = clock()
                    seq += 1
                    sent += 1
                    next_send += interval
            else:
                while len(pending) < window and sent < max_queries:
                    mid = seq & 0xFFFF
                    if pending.pop(mid, None) is not None:
                        lost += 1
                    try:
                        send(mid.to_bytes(2, "big") + tails[seq % nq])
                    except BlockingIOError:
                        break
                    pending[mid] = clock()
                    seq += 1
                    sent += 1
        got = 0
        while True:
            try:
                data = recv(65535)
            except BlockingIOError:
                break
            except ConnectionRefusedError:
                break  # ICMP: nobody listens; the queries time out
            t = clock()
            got += 1
            t0 = pending.pop((data[0] << 8) | data[1], None) if len(data) >= 2 else None
            if t0 is None:
                late += 1
                continue
            lat.append(t - t0)
            answered += 1
            if t <= end:
                answered_in_window += 1
            rc = (data[5] << 4) | (data[3] & 0xF) if len(data) >= 6 else -1
            rcodes[rc] = rcodes.get(rc, 0) + 1
        now = clock()
        if now >= next_expire:
            next_expire = now + EXPIRE_EVERY
            cutoff = now - timeout
            old = [k for k, t0 in pending.items() if t0 < cutoff]
            for k in old:
                del pending[k]
            lost += len(old)
        if got:
            continue
        if rate > 0 and sending:
            wait_ms = int((next_send - clock()) * 1000)
            if wait_ms >= 1:
                poller.poll(wait_ms)
            # else: spin; the next send is due within a millisecond
        else:
            poller.poll(10)
    lost += len(pending)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    sock.close()
    out.put({"sent": sent, "answered": answered, "answered_in_window": answered_in_window,
             "lost": lost, "late": late, "behind": behind, "rcodes": rcodes,
             "elapsed": min(clock(), end) - start,
             "cpu": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
             "latencies": lat.tobytes()})


def run(server: tuple[str, int], queries: list[bytes], *, procs: int = 2, window: int = 32,
        rate: float = 0.0, duration: float = 5.0, max_queries: int = 10_000_000,
        timeout: float = 1.0, core: int | None = LOAD_CORE,
        keep_latencies: bool = False) -> dict:
    """Put load on `server`; returns the report (see the module docstring).

    With `keep_latencies` the sorted latencies (seconds) are under "latencies".
    """
    if not queries:
        raise ValueError("no queries")
    if server[0] != "127.0.0.1" and not server[0].startswith("127."):
        raise ValueError("loopback only")
    procs = max(1, procs)
    if rate > 0:
        procs = max(procs, -(-int(rate) // MAX_RATE_PER_PROC))
    ctx = mp.get_context("fork")
    out: mp.Queue = ctx.Queue()
    start_at = time.perf_counter() + START_DELAY  # every process starts together
    workers = []
    for i in range(procs):
        share = queries[i::procs] or queries
        workers.append(ctx.Process(target=_worker, args=(
            share, server, window, rate / procs, duration, max(1, max_queries // procs),
            timeout, core, start_at, out), daemon=True))
    for w in workers:
        w.start()
    results = []
    deadline = time.monotonic() + duration + timeout + 30
    for _ in workers:
        results.append(out.get(timeout=max(1.0, deadline - time.monotonic())))
    for w in workers:
        w.join(timeout=5)
    lat = array("d")
    for r in results:
        lat.frombytes(r.pop("latencies"))
    lats = sorted(lat)
    elapsed = max(r["elapsed"] for r in results)
    sent = sum(r["sent"] for r in results)
    answered = sum(r["answered"] for r in results)
    rcodes: dict[int, int] = {}
    for r in results:
        for k, v in r["rcodes"].items():
            rcodes[k] = rcodes.get(k, 0) + v
    cpu = sum(r["cpu"] for r in results)
    ms = lambda v: None if v is None else round(v * 1000, 3)  # noqa: E731
    report = {
        "generator": "python",
        "mode": f"open loop {rate:g} q/s" if rate > 0 else f"closed loop, window {window}/proc",
        "procs": procs, "duration": round(elapsed, 3), "sent": sent, "answered": answered,
        "lost": sum(r["lost"] for r in results), "late": sum(r["late"] for r in results),
        "loss": round(1 - answered / sent, 5) if sent else None,
        "qps": round(sum(r["answered_in_window"] for r in results) / elapsed, 1) if elapsed else 0,
        "latency_ms": {"p50": ms(percentile(lats, 50)), "p99": ms(percentile(lats, 99)),
                       "p99.9": ms(percentile(lats, 99.9)), "max": ms(lats[-1] if lats else None)},
        "rcodes": {str(k): v for k, v in sorted(rcodes.items())},
        "generator_cpu_s": round(cpu, 3),
        # share of one core: near 1.0 means the generator was the bottleneck
        "generator_cpu_share": round(cpu / elapsed, 3) if elapsed else None,
        "behind_schedule": sum(r["behind"] for r in results),
    }
    if keep_latencies:
        report["latencies"] = lats
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="127.0.0.1:PORT")
    parser.add_argument("--queries", required=True, help="length-prefixed query file")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--window", type=int, default=32, help="in flight per process")
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: total q/s")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--max-queries", type=int, default=10_000_000)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--core", type=int, default=LOAD_CORE, help="-1: do not pin")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args(argv)
    host, _, port = args.server.rpartition(":")
    queries = read_query_file(Path(args.queries))
    report = run((host, int(port)), queries, procs=args.procs, window=args.window,
                 rate=args.rate, duration=args.duration, max_queries=args.max_queries,
                 timeout=args.timeout, core=None if args.core < 0 else args.core)
    emit(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
