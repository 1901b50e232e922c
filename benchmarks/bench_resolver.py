#!/usr/bin/env python3
"""Resolver benchmarks: answers from cache against the ceiling server, and
cold resolution latency through root, TLD and domain.

    python benchmarks/bench_resolver.py --keys 20000 --warm-names 10000 --cold 500 \\
        --duration 10 --json resolver.json

Setup: three `keyresolve serve` daemons on pre-picked loopback ports (root
".", "com", and "example.com" with a genzone.py zone of --keys keys), each
delegating to the next with ADDR glue, pinned to the generator's core; a
`keyresolve resolver` with root hints pointing at the root, on the server
core.

1. Cold resolution, one question at a time from this process: before each,
   a CONTROL FLUSH_ALL empties the resolver's cache, so every resolution
   walks root -> com -> example.com (3 upstream exchanges). Interleaved with
   it, the same question sent directly to the example.com server (1
   exchange): the baseline. Also the same names with the delegations cached
   (no flush, each name asked once): 1 upstream exchange through the
   resolver, and the 3 direct exchanges a client iterating by itself makes
   (root, com, example.com).
2. Answers from cache: --warm-names names resolved once (closed loop,
   bounded), then a closed-loop load (dnsperf -B, or loadgen.py) of the same
   names with RD set; then the ceiling server answering the resolver's own
   typical reply under the same load. The auth servers' CPU time during the
   load shows whether any answer missed the cache. The first load query of
   each name takes the full path (from the record cache); the rest hit the
   wire answer cache (docs/resolver.md), which is what this measures.

3. RSS under a flood (--flood N, 0 skips it): a second resolver with a
   small answer cache (--flood-cache records) gets N unique nonexistent
   mailboxes of example.com (each an NXDOMAIN, a new cache entry, one
   upstream exchange), in --flood-samples chunks; its RSS after each chunk
   shows the memory level off once the answer cache (and the LRU of parsed
   query names, 65,536) is full, and every answer stays NXDOMAIN (the
   delegations survive the flood).

Every figure is a ratio to a baseline of the same run. With --profile P,
py-spy profiles of the resolver: P-cold.txt during cold resolutions (an
extra, untimed pass) and P-hits.txt under the cache-hit load.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_auth  # noqa: E402
import common  # noqa: E402
from common import HOST, LOAD_CORE, SERVER_CORE, Daemon, cpu_seconds, memory, ratio  # noqa: E402

#: Goals of the issue "bench".
GOAL_QPS_RATIO = 0.5
GOAL_COLD_P50_MS = 3.0
GOAL_COLD_P99_MS = 10.0
#: A resolution is bounded to 5 s by the resolver; wait a little longer.
RESOLVE_TIMEOUT = 8.0
#: Longest the cache warm-up may take.
WARM_TIMEOUT = 300.0
#: Queries in flight while warming the cache (each a resolution upstream).
WARM_WINDOW = 32
#: Longest the flood may take, all chunks together.
FLOOD_TIMEOUT = 600.0
#: Names `Name.from_wire` keeps parsed (keyresolve.protocol.names.FROM_WIRE_CACHE_SIZE):
#: the flood fills that LRU too, so RSS levels off only past it.
NAMES_LRU = 65_536

#: Stages of the resolver's per-query work, for profile_summary (deepest wins).
RESOLVER_STAGES = [
    (r"^serve_udp$", "event loop + recvfrom"),
    (r"^(trio|unrolled_run|run|EpollIOManager|wait_readable)", "event loop + recvfrom"),
    (r"^ResolverServer\.handle$", "handler glue (daemons/resolver.py)"),
    (r"^(ResolverServer\._finish|replace|_replace|__init__|__create_fn__|make_response)$",
     "copy the cached response (dataclasses.replace)"),
    (r"^(accept_request|Message\.from_wire|_body_from_wire|Question|Record\.from_wire)$",
     "decode query"),
    (r"^(Name\.|_from_wire_cached|_parse_domain|_check_local|_make$|_with_local)",
     "Name objects"),
    (r"^(Resolver\.start|Resolution\.__init__|_Budget)", "start a Resolution"),
    (r"^(Resolution\.(next_action|_step|_from_cache|_finish_answer|_reply|_capped))",
     "resolution logic (cache hit)"),
    (r"^(Cache\.|_remaining|_live)", "cache lookup"),
    (r"^(ResolverServer\._encode|max_response_size)$", "handler glue (daemons/resolver.py)"),
    (r"^(Message\.(to_wire|encode_unsigned|flags_word)|packb|Record\.to_wire|"
     r"Question\.to_wire|.*rdata.*to_wire)", "encode response"),
    (r"^_send_datagram$", "sendto"),
    (r"^(AnswerCache\.|_Answer\.|_last_second$|_split$)", "wire answer cache (answercache.py)"),
]

#: Stages of a cold resolution in the resolver (deepest wins).
COLD_STAGES = [
    (r"^(serve_udp|unrolled_run|run|EpollIOManager|wait_readable|trio)", "event loop"),
    (r"^(ResolverServer\.|accept_request|_reply_later)", "handler glue (daemons/resolver.py)"),
    (r"^(_answer_later|_resolve|run_resolution)$", "resolution task glue"),
    (r"^(exchange|_udp)$", "upstream I/O glue (net/upstream.py)"),
    (r"^(socket|_SocketType|SocketType|_nonblocking_helper|connect|send|recv|close|__exit__|"
     r"_resolve_address|getaddrinfo|_resolve_address_nocp)", "upstream socket calls"),
    (r"^(Resolution\.|Resolver\.|_Cut|_Budget|response_matches)", "resolution logic"),
    (r"^(_same_server|ip_address|IPv4Address|IPv6Address|_Base|_IPAddressBase)",
     "server address comparison (ipaddress)"),
    (r"^(Cache\.|_remaining|_live)", "cache"),
    (r"^(Logger\.|Handler\.|StreamHandler\.|LogRecord|Formatter\.)", "logging"),
    (r"^(Message\.from_wire|_body_from_wire|Record\.from_wire|rdata_from_wire)", "decode"),
    (r"^(Message\.(to_wire|encode_unsigned)|packb|Record\.to_wire|Question\.to_wire)",
     "encode"),
    (r"^(Name\.|_from_wire_cached|_parse_domain|_check_local|_make$|_with_local)",
     "Name objects"),
    (r"^_send_datagram$", "reply sendto"),
]


# -- the hierarchy ------------------------------------------------------------------------
def _endpoint(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def example_zone(workdir: Path, keys: int, seed: int, port: int) -> tuple[Path, Path]:
    """The genzone.py zone for example.com with its apex server at `port`."""
    zone, names = common.ensure_zone(workdir, keys, seed)
    text = zone.read_text()
    apex = "@ NS ns1\n@ NS ns2\nns1 ADDR 127.0.0.1:5300\nns2 ADDR [::1]:5300\n"
    if apex not in text:
        raise RuntimeError(f"{zone}: unexpected apex lines (genzone.py changed?)")
    out = workdir / "resolver-hierarchy" / "example" / "example.com.zone"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text.replace(apex, f"@ NS ns1\nns1 ADDR {HOST}:{port}\n", 1))
    return out, names


def _serve_dir(base: Path, label: str, origin: str, zone_text: str | None, port: int,
               zone_file: Path | None = None) -> Path:
    directory = base / label
    shutil.rmtree(directory / "data", ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    if zone_file is None:
        zone_file = directory / "zone"
        zone_file.write_text(zone_text)
    return common.write_serve_config(directory, zone_file, origin=origin, port=port)


class Hierarchy:
    """root -> com -> example.com authoritative daemons, and a resolver."""

    def __init__(self, workdir: Path, keys: int, seed: int, cache_size: int) -> None:
        self.base = workdir / "resolver-hierarchy"
        self.daemons: list[Daemon] = []
        ports = {label: common.free_port() for label in ("root", "com", "example")}
        self.ports = ports
        zone, self.names_file = example_zone(workdir, keys, seed, ports["example"])
        configs = {
            "example": _serve_dir(self.base, "example", "example.com", None, ports["example"],
                                  zone),
            "com": _serve_dir(self.base, "com", "com", f"""$ORIGIN com.
$TTL 86400
@ SOA ns1.nic hostmaster@nic 1 3600 600 86400 60
@ NS ns1.nic
ns1.nic ADDR {HOST}:{ports['com']}
example NS ns1.example
ns1.example ADDR {HOST}:{ports['example']}
""", ports["com"]),
            "root": _serve_dir(self.base, "root", ".", f"""$ORIGIN .
$TTL 86400
@ SOA a.root-servers. hostmaster@root-servers. 1 3600 600 86400 60
@ NS a.root-servers.
a.root-servers. ADDR {HOST}:{ports['root']}
com. NS ns1.nic.com.
ns1.nic.com. ADDR {HOST}:{ports['com']}
""", ports["root"])}
        try:
            self.auth = {}
            for label, config in configs.items():
                t0 = time.perf_counter()
                self.auth[label] = common.start_serve(config, core=LOAD_CORE)
                self.daemons.append(self.auth[label])
                if label == "example":
                    self.example_start_s = round(time.perf_counter() - t0, 3)
            self.resolver = self.start_resolver("resolver", cache_size)
        except BaseException:
            self.stop()
            raise

    def start_resolver(self, label: str, cache_size: int) -> Daemon:
        """A resolver daemon with root hints pointing at the root, ready."""
        rdir = self.base / label
        rdir.mkdir(parents=True, exist_ok=True)
        (rdir / "root.hints").write_text(
            f"$ORIGIN .\n$TTL 3600\n. NS a.root-servers.\n"
            f"a.root-servers. ADDR {HOST}:{self.ports['root']}\n")
        (rdir / "resolver.toml").write_text(
            f'listen = ["{HOST}:0"]\nroot_hints = "root.hints"\n'
            f"cache_size = {cache_size}\nmax_ttl = 86400\nmax_clients = 1000\n"
            f'log_level = "info"\n')
        daemon = Daemon(common.keyresolve_cmd(
            "resolver", "--config", str(rdir / "resolver.toml")), core=SERVER_CORE, cwd=rdir)
        self.daemons.append(daemon)
        daemon.wait_for(r"\bready\b", 60)
        return daemon

    def address(self, label: str) -> tuple[str, int]:
        return (HOST, self.ports[label])

    def stop(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.stop()


# -- queries -------------------------------------------------------------------------------
def build_queries(names: list[str], *, rd: bool) -> list[bytes]:
    """Wire KEY queries (id 0) with RD set or clear."""
    from keyresolve.protocol.codes import RType
    from keyresolve.protocol.message import make_query
    from keyresolve.protocol.names import Name

    return [make_query(Name.from_text(n), RType.KEY, msg_id=0, rd=rd).to_wire() for n in names]


def flush_query() -> bytes:
    """A CONTROL FLUSH_ALL message (id 0): empties the resolver's cache."""
    from keyresolve.protocol.codes import ControlCommand, Opcode
    from keyresolve.protocol.message import make_query
    from keyresolve.protocol.names import ROOT

    return make_query(ROOT, ControlCommand.FLUSH_ALL, msg_id=0, opcode=Opcode.CONTROL).to_wire()


class Client:
    """One connected UDP socket; exchanges timed with perf_counter."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(address)
        self.sock.settimeout(RESOLVE_TIMEOUT)

    def exchange(self, query: bytes) -> tuple[float, bytes | None]:
        """(seconds, reply) for `query` under a fresh id; reply None on timeout."""
        msg_id = secrets.token_bytes(2)
        wire = msg_id + query[2:]
        t0 = time.perf_counter()
        self.sock.send(wire)
        try:
            while True:
                reply = self.sock.recv(65535)
                if reply[:2] == msg_id:
                    return time.perf_counter() - t0, reply
        except OSError:
            return time.perf_counter() - t0, None

    def close(self) -> None:
        self.sock.close()


def _summary(seconds: list[float], rcodes: dict) -> dict:
    values = sorted(seconds)
    ms = lambda v: None if v is None else round(v * 1000, 3)  # noqa: E731
    return {"count": len(values), "rcodes": rcodes,
            "latency_ms": {"p50": ms(common.percentile(values, 50)),
                           "p90": ms(common.percentile(values, 90)),
                           "p99": ms(common.percentile(values, 99)),
                           "max": ms(values[-1] if values else None)}}


def _count(rcodes: dict, reply: bytes | None) -> None:
    key = "timeout" if reply is None else str(common.rcode_of(reply))
    rcodes[key] = rcodes.get(key, 0) + 1


def cold_latency(h: Hierarchy, names: list[str]) -> dict:
    """Each name resolved with an empty cache, interleaved with the baselines;
    then each name resolved with the delegations cached."""
    rd = build_queries(names, rd=True)
    direct = build_queries(names, rd=False)
    flush = flush_query()
    resolver = Client(h.resolver.address)
    clients = {label: Client(h.address(label)) for label in ("root", "com", "example")}
    cold, one_hop, three_hops = [], [], []
    rc_cold, rc_one, rc_three = {}, {}, {}
    cpu0 = cpu_seconds(h.resolver.pid)
    try:
        for q_rd, q in zip(rd, direct):
            _, ack = resolver.exchange(flush)
            if ack is None or common.rcode_of(ack) != 0:
                raise RuntimeError(f"cache flush refused or lost: {ack!r}")
            took, reply = resolver.exchange(q_rd)
            cold.append(took)
            _count(rc_cold, reply)
            took, reply = clients["example"].exchange(q)
            one_hop.append(took)
            _count(rc_one, reply)
            total = 0.0
            for label in ("root", "com", "example"):
                took, reply = clients[label].exchange(q)
                total += took
            three_hops.append(total)
            _count(rc_three, reply)
        cold_cpu = cpu_seconds(h.resolver.pid) - cpu0
        # the delegations are cached now (the last resolution left them):
        # every name once more, each a miss of its own name only
        resolver.exchange(flush)
        resolver.exchange(rd[0])
        warm_cut, rc_cut = [], {}
        cpu0 = cpu_seconds(h.resolver.pid)
        for q_rd in rd[1:]:
            took, reply = resolver.exchange(q_rd)
            warm_cut.append(took)
            _count(rc_cut, reply)
        cut_cpu = cpu_seconds(h.resolver.pid) - cpu0
    finally:
        resolver.close()
        for c in clients.values():
            c.close()
    out = {"names": len(names),
           "cold": _summary(cold, rc_cold),
           "direct_example_1_exchange": _summary(one_hop, rc_one),
           "direct_root_com_example_3_exchanges": _summary(three_hops, rc_three),
           "delegations_cached": _summary(warm_cut, rc_cut)}
    out["cold"]["resolver_cpu_ms_per_resolution"] = round(cold_cpu / len(names) * 1000, 3)
    out["delegations_cached"]["resolver_cpu_ms_per_resolution"] = round(
        cut_cpu / max(1, len(warm_cut)) * 1000, 3)
    c, d1, d3 = (out[k]["latency_ms"] for k in ("cold", "direct_example_1_exchange",
                                                 "direct_root_com_example_3_exchanges"))
    out["p50_ratio_to_1_direct"] = ratio(c["p50"], d1["p50"])
    out["p99_ratio_to_1_direct"] = ratio(c["p99"], d1["p99"])
    out["p50_ratio_to_3_direct"] = ratio(c["p50"], d3["p50"])
    out["p99_ratio_to_3_direct"] = ratio(c["p99"], d3["p99"])
    out["goal"] = f"p50 <= {GOAL_COLD_P50_MS} ms, p99 <= {GOAL_COLD_P99_MS} ms"
    out["met"] = (c["p50"] is not None and c["p50"] <= GOAL_COLD_P50_MS
                  and c["p99"] <= GOAL_COLD_P99_MS)
    return out


# -- warm cache -------------------------------------------------------------------------------
def warm_cache(h: Hierarchy, queries: list[bytes]) -> dict:
    """Resolve each query once (closed loop, bounded), so the load hits the cache."""
    import loadgen

    t0 = time.perf_counter()
    report = loadgen.run(h.resolver.address, queries, procs=1, window=WARM_WINDOW,
                         duration=WARM_TIMEOUT, max_queries=len(queries),
                         timeout=RESOLVE_TIMEOUT)
    return {"names": len(queries), "seconds": round(time.perf_counter() - t0, 3),
            "answered": report["answered"], "rcodes": report["rcodes"],
            "resolutions_per_s": report["qps"]}


# -- RSS under a flood of unique names ----------------------------------------------------------
def flood_rss(h: Hierarchy, count: int, cache_size: int, samples: int) -> dict:
    """RSS of a fresh resolver (answer cache of `cache_size` records) after
    each of `samples` chunks of `count` unique nonexistent names in all."""
    import loadgen

    daemon = h.start_resolver("resolver-flood", cache_size)
    try:
        # The example.com delegation cached, as before any flood.
        first = build_queries(["alice@example.com"], rd=True)
        client = Client(daemon.address)
        try:
            client.exchange(first[0])
        finally:
            client.close()
        names = [f"f{secrets.token_hex(8)}@example.com" for _ in range(count)]
        queries = build_queries(names, rd=True)
        step = max(1, -(-count // samples))
        series = [{"names": 0, **memory(daemon.pid)}]
        rcodes: dict[str, int] = {}
        answered = 0
        t0 = time.perf_counter()
        deadline = t0 + FLOOD_TIMEOUT
        for start in range(0, count, step):
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            chunk = queries[start:start + step]
            report = loadgen.run(daemon.address, chunk, procs=1, window=WARM_WINDOW,
                                 duration=left, max_queries=len(chunk),
                                 timeout=RESOLVE_TIMEOUT)
            answered += report["answered"]
            for rcode, n in report["rcodes"].items():
                rcodes[rcode] = rcodes.get(rcode, 0) + n
            series.append({"names": start + len(chunk), **memory(daemon.pid)})
        seconds = time.perf_counter() - t0
    finally:
        daemon.stop()
        h.daemons.remove(daemon)
    rss = [point["VmRSS"] for point in series]
    # The level: the answer cache and the names LRU are full once the flood
    # has passed both bounds; growth after that is what does not level off.
    full_at = max(cache_size, NAMES_LRU)
    after_full = [point["VmRSS"] for point in series if point["names"] >= full_at]
    held = min(series[-1]["names"], cache_size) + min(series[-1]["names"], NAMES_LRU)
    return {"names": series[-1]["names"], "cache_size": cache_size,
            "seconds": round(seconds, 3), "resolutions_per_s": round(answered / seconds, 1),
            "answered": answered, "rcodes": rcodes, "rss_mb": series,
            "rss_growth_mb": round(rss[-1] - rss[0], 1),
            "rss_growth_after_full_mb": (round(after_full[-1] - after_full[0], 1)
                                         if len(after_full) > 1 else None),
            "bytes_per_held_entry": round((rss[-1] - rss[0]) * 1024 * 1024 / held)
            if held else None}


def auth_cpu(h: Hierarchy) -> float:
    return sum(cpu_seconds(d.pid) for d in h.auth.values())


def bench(args, workdir: Path) -> dict:
    out: dict = {}
    h = Hierarchy(workdir, args.keys, args.seed, cache_size=max(100_000, 3 * args.warm_names))
    try:
        out["setup"] = {"ports": h.ports, "example_zone_keys": args.keys,
                        "example_start_to_ready_s": h.example_start_s}
        all_names = common.read_names(h.names_file)
        if len(all_names) < 2:
            raise RuntimeError("the zone needs at least 2 mailboxes")
        warm_names = all_names[:args.warm_names]
        rest = all_names[len(warm_names):] or all_names
        cold_names = [rest[i % len(rest)] for i in range(args.cold)]
        # 1. cold resolution (flushes the cache: before the warm-up)
        out["cold"] = cold_latency(h, cold_names)
        if args.profile:
            out["profile_cold"] = profile_cold(h, cold_names, Path(args.profile))
        # 2. answers from the cache
        queries = build_queries(warm_names, rd=True)
        qfile = workdir / f"resolver-queries-{args.keys}-{len(warm_names)}.bin"
        common.write_query_file(qfile, queries)
        out["warm_up"] = warm_cache(h, queries)
        pid, address = h.resolver.pid, h.resolver.address
        response = bench_auth.pick_response(address, queries)
        bench_auth.warm(pid, address, queries, qfile, args)
        a0 = auth_cpu(h)
        server = bench_auth.measure_load(pid, address, queries, qfile, args)
        server["upstream_auth_cpu_s"] = round(auth_cpu(h) - a0, 3)
        rss = memory(pid)
        if args.profile:
            out["profile_hits"] = profile_resolver(h.resolver, address, queries, qfile, args,
                                              Path(args.profile))
        # 3. RSS under a flood of unique names
        if args.flood:
            out["flood"] = flood_rss(h, args.flood, args.flood_cache, args.flood_samples)
    finally:
        h.stop()
    ceiling = common.start_ceiling(response, duration=10 * args.duration + 120)
    try:
        bench_auth.warm(ceiling.pid, ceiling.address, queries, qfile, args)
        ceil = bench_auth.measure_load(ceiling.pid, ceiling.address, queries, qfile, args)
    finally:
        ceiling.stop()
    out["cache_hits"] = {"names": len(warm_names), "resolver": server, "ceiling": ceil,
                         **bench_auth.compare(server, ceil), "goal": f">= {GOAL_QPS_RATIO}",
                         "resolver_rss_mb": rss, "response_bytes": len(response)}
    hits = out["cache_hits"]
    hits["met"] = hits["ratio"] is not None and hits["ratio"] >= GOAL_QPS_RATIO
    return out


def pyspy_during(pid: int, raw: Path, work, *, rate: int = 200) -> tuple[object, str | None]:
    """py-spy record (raw format, blocking mode) of `pid` while `work()` runs;
    (work's result, None) or (work's result, why no profile was written)."""
    import signal
    import subprocess

    pyspy = common.have_pyspy()
    if pyspy is None:
        return work(), "py-spy is not installed (pip install py-spy)"
    proc = subprocess.Popen([pyspy, "record", "--pid", str(pid), "--rate", str(rate),
                             "--duration", "600", "--format", "raw", "-o", str(raw)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # py-spy attaches
    try:
        result = work()
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            err = "timeout"
    return result, None if raw.is_file() else f"py-spy failed: {err[-300:]}"


def profile_resolver(daemon: Daemon, address, queries, qfile, args, out: Path) -> dict:
    """py-spy profile of the resolver during one cache-hit load run."""
    raw = out.with_name(out.name + "-hits.txt")
    qps, problem = pyspy_during(daemon.pid, raw, lambda: bench_auth.measure_load(
        daemon.pid, address, queries, qfile, args)["qps"])
    if problem:
        return {"skipped": problem}
    summary = common.profile_summary(raw, RESOLVER_STAGES, only=r"^serve_udp$")
    summary.update({"qps_while_profiled": qps, "collapsed": str(raw)})
    return summary


def profile_cold(h: Hierarchy, names: list[str], out: Path) -> dict:
    """py-spy profile of the resolver during cold resolutions (not timed: the
    sampler pauses the process)."""
    raw = out.with_name(out.name + "-cold.txt")
    rd = build_queries(names, rd=True)
    flush = flush_query()

    def work() -> int:
        client = Client(h.resolver.address)
        try:
            for q in rd:
                client.exchange(flush)
                client.exchange(q)
        finally:
            client.close()
        return len(rd)

    count, problem = pyspy_during(h.resolver.pid, raw, work, rate=1000)
    if problem:
        return {"skipped": problem}
    summary = common.profile_summary(raw, COLD_STAGES, only=r"^(unrolled_run|run)$")
    summary.update({"resolutions": count, "collapsed": str(raw)})
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=20_000, help="keys in example.com")
    parser.add_argument("--warm-names", type=int, default=10_000,
                        help="distinct names in the cache-hit load")
    parser.add_argument("--cold", type=int, default=500, help="cold resolutions timed")
    parser.add_argument("--flood", type=int, default=100_000,
                        help="unique names in the RSS-under-flood run (0: none)")
    parser.add_argument("--flood-cache", type=int, default=10_000,
                        help="cache_size of the flooded resolver")
    parser.add_argument("--flood-samples", type=int, default=10,
                        help="RSS samples during the flood")
    common.add_load_arguments(parser)
    parser.add_argument("--profile", help="py-spy profile of the resolver: path prefix")
    parser.add_argument("--src", help="keyresolve tree to measure (default: this repo)")
    parser.add_argument("--json", help="write the report here too")
    args = parser.parse_args(argv)
    root = common.use_source(args.src)
    if args.generator == "auto":
        args.generator = "dnsperf" if bench_auth.have_dnsperf() else "python"
    elif args.generator == "dnsperf" and not bench_auth.have_dnsperf():
        parser.error("dnsperf is not installed (apt-get install dnsperf)")
    if args.window is None:
        args.window = (bench_auth.DNSPERF_WINDOW if args.generator == "dnsperf"
                       else bench_auth.LOADGEN_WINDOW)
    report = common.report_header("resolver", root, argv, generator=args.generator,
                                  cores={"resolver": SERVER_CORE,
                                         "generator and auth servers": LOAD_CORE})
    started = time.perf_counter()
    with common.workdir(args.workdir) as workdir:
        report.update(bench(args, workdir))
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    common.emit(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
