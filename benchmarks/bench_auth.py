#!/usr/bin/env python3
"""Authoritative server benchmarks: UDP throughput and latency against the
ceiling server, restart time, and RSS.

    python benchmarks/bench_auth.py --keys 1000000 --sizes 1000,10000,100000 \\
        --duration 10 --json auth.json --plots benchmarks/plots

For each zone size (the `--sizes` and then `--keys`): generate the zone
(genzone.py, cached in --workdir), start `keyresolve serve` on core 0 with a
fresh data directory (it compiles the zone), and put closed-loop load on it
from core 1 with `dnsperf -B` (or loadgen.py if dnsperf is missing) using
random existing names, then the same load on the ceiling server (ceiling.py:
one round for each `--sizes` point, so each point has its ratio). For the
`--keys` zone also:

- the ceiling server (ceiling.py) under the same load, same run: the ratio;
  and two bounds: keyresolve's own UDP loop with a no-op handler, and the
  same loop with a msgpack decode and one LMDB read per query (`ceiling.py
  --loop trio`, `--loop trio-lmdb`). All four are up together and loaded in
  turn, `--rounds` times (3): the round whose server-to-ceiling ratio is the
  median counts, every round's figures are reported, and the bounds' ratios
  are medians over the rounds, so drift of the machine's speed shows
  instead of deciding the figures;
- latency percentiles with an open-loop load at `--latency-load` x the
  server's capacity, on the server and on the ceiling at the same rate;
- restart: a new server on the compiled data directory; seconds from process
  start to the first answer, against the ceiling process's own start;
- RSS of the restarted server after a load run, against the ceiling's;
- with --profile, a py-spy profile of the server under load;
- with --workers 1,2: `serve --workers N` for each N under the same load
  (unpinned; CPU per answer summed over the server's processes).
- with --rrl ROUNDS: what response rate limiting costs when no client is
  limited: a server with `rate_limit` far above the load against one with
  it off, on the same data, loaded in turn (`bench_rrl`).

Every figure is a ratio to a baseline measured in the same run. Where a
server's core is not saturated (CPU share < 0.9), qps says more about the
generator than the server, and the CPU-time-per-answer ratio is the headline.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import (HOST, LOAD_CORE, SERVER_CORE, Daemon, cpu_seconds, ensure_zone,  # noqa: E402
                    memory, ratio)

#: A core whose CPU share is at least this counts as saturated.
SATURATED = 0.9
#: Goals of the issue "bench".
GOAL_QPS_RATIO = 0.6
GOAL_RESTART_S = 0.5
GOAL_RSS_MB = 150
#: Default queries in flight per generator.
DNSPERF_WINDOW = 200
LOADGEN_WINDOW = 64
#: Source sockets of the load in --workers runs: enough that the kernel's
#: SO_REUSEPORT hash spreads them over every process (one socket would all
#: land on one).
WORKER_LOAD_SOCKETS = 16
#: loadgen.py processes (one socket each) at most for that: more Python
#: generators would take the cores from the server.
LOADGEN_MAX_PROCS = 4
#: Longest wait for a restarted server's first answer.
RESTART_TIMEOUT = 60.0
#: How often the restart probe resends its query (seconds).
PROBE_INTERVAL = 0.002

#: `rate_limit` of the RRL scenario: far above any rate one generator
#: reaches here, so no answer is limited and only the bookkeeping costs.
RRL_UNLIMITED_RATE = 100_000_000
#: The RRL scenario's goal: its cost when nobody is limited (issue #17).
GOAL_RRL_RATIO = 0.95

#: Repetitions of each in-process timing loop; the fastest counts.
BREAKDOWN_REPEAT = 3

#: Stages of the server's per-query work, for profile_summary (deepest wins).
#: Label of the daemon's own per-query code.
GLUE = "handler glue (serve.py)"
SERVE_STAGES = [
    (r"^(serve_udp|_serve_udp_batched)$", "event loop + recvfrom"),
    (r"^DatagramBatch\.", "recvmmsg/sendmmsg batches (batchio.py)"),
    (r"^(trio|unrolled_run|run|EpollIOManager|wait_readable)", "event loop + recvfrom"),
    (r"^AuthServer\.handle$", GLUE),
    (r"^(make_response|max_response_size|Message\.__init__|__create_fn__)", GLUE),
    (r"^(isawaitable|ABCMeta)", GLUE),
    (r"^(AuthServer\.batch|Store\.snapshot|Snapshot\.__init__)", "LMDB read txn per batch"),
    (r"^(Message\.from_wire|_body_from_wire|Question|Record\.from_wire)$", "decode query"),
    (r"^(Name\.|_from_wire_cached|_parse_domain|_check_local|_make$|_with_local)",
     "Name objects (parse/key/text)"),
    (r"^(Snapshot\.find_zone|Snapshot\.get_zone|LmdbZoneView\.__init__|_decode_info)",
     "find zone"),
    # authority.answer and the fast path's Responder.answer (its LMDB reads are C calls in it)
    (r"^(answer|Responder\.answer|_Answerer|_find_cut|negative_soa|RRset\.records)",
     "answer(): fast path checks, splice and cache, or authority logic"),
    (r"^(Responder\._route|AuthServer\._(fast_route|negative)|Snapshot\.mailbox_route)$",
     "fast path: route"),
    (r"^(_answer_records|_walk|_skip|_answer_records_slow|_fits)$", "fast path: splice"),
    (r"^LmdbZoneView\.(get_node|_key|has_descendants|soa)", "store view glue"),
    (r"^(Snapshot\._get|Snapshot\._first_with_prefix|_translate)", "LMDB get"),
    (r"^(decode_node|rdata_from_wire|KEY\.|SOA\.|ADDR\.|_Target|NS\.|_enum|EnumType)",
     "decode node (msgpack -> Rdata)"),
    (r"^(Message\.(to_wire|encode_unsigned|flags_word)|packb|Record\.to_wire|Question\.to_wire)",
     "encode response"),
    (r"^(_send_datagram|_reply_later)", "sendto"),
]


# -- load --------------------------------------------------------------------------
def have_dnsperf() -> bool:
    return shutil.which("dnsperf") is not None


def _num(pattern: str, text: str) -> float | None:
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


def run_dnsperf(address: tuple[str, int], qfile: Path, nqueries: int, duration: float,
                window: int, max_queries: int, clients: int = 1) -> dict:
    """Closed-loop load with `dnsperf -B` on LOAD_CORE from `clients` sockets;
    bounded by time and count."""
    import resource

    runs = max(1, -(-max_queries // nqueries))
    cmd = ["dnsperf", "-B", "-s", address[0], "-p", str(address[1]), "-d", str(qfile),
           "-l", str(duration), "-n", str(runs), "-q", str(window), "-t", "2", "-c", str(clients),
           "-T", "1"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60,
                         preexec_fn=common.pin_preexec(LOAD_CORE))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    text = out.stdout + out.stderr
    if out.returncode != 0 or "Queries sent:" not in text:
        raise RuntimeError(f"dnsperf failed ({out.returncode}):\n{text[-2000:]}")
    return {"generator": "dnsperf", "mode": f"closed loop, window {window}",
            **parse_dnsperf(text),
            # near 1.0: the generator, not the server, was the limit
            "generator_cpu_share": round(cpu / duration, 3)}


def parse_dnsperf(text: str) -> dict:
    """The counts, rates and response codes of dnsperf's statistics (its
    stdout and stderr); raises ValueError if there are none."""
    sent = _num(r"Queries sent:\s+(\d+)", text)
    if sent is None:
        raise ValueError("no 'Queries sent:' in the dnsperf output")
    completed = _num(r"Queries completed:\s+(\d+)", text) or 0
    rcodes = dict(re.findall(r"([A-Z]+) (\d+) \(", text.split("Response codes:", 1)[-1]
                             .split("\n", 1)[0]))
    return {"sent": int(sent), "answered": int(completed),
            "lost": int(_num(r"Queries lost:\s+(\d+)", text) or 0),
            "loss": round(1 - completed / sent, 5) if sent else None,
            "qps": _num(r"Queries per second:\s+([\d.]+)", text),
            "duration": _num(r"Run time \(s\):\s+([\d.]+)", text),
            "avg_latency_ms": round((_num(r"Average Latency \(s\):\s+([\d.]+)", text) or 0)
                                    * 1000, 3),
            "rcodes": {k: int(v) for k, v in rcodes.items()}}


def measure_load(pid: int, address: tuple[str, int], queries: list[bytes], qfile: Path,
                 args, *, rate: float = 0.0, keep_latencies: bool = False,
                 cpu_seconds=cpu_seconds, sockets: int = 1) -> dict:
    """One bounded load run; adds the server's CPU time per answered query
    (`cpu_seconds` of `pid`: pass common.tree_cpu_seconds to count its
    workers). `sockets`: at least this many source ports (SO_REUSEPORT
    spreads clients over a server's processes by address and port)."""
    import loadgen

    t0 = time.perf_counter()
    c0 = cpu_seconds(pid)
    if rate > 0 or args.generator == "python":
        procs = max(args.procs, min(sockets, LOADGEN_MAX_PROCS)) if rate <= 0 else 1
        result = loadgen.run(address, queries, procs=procs,
                             window=args.window, rate=rate, duration=args.duration,
                             max_queries=args.max_queries, keep_latencies=keep_latencies)
    else:
        result = run_dnsperf(address, qfile, len(queries), args.duration, args.window,
                             args.max_queries, clients=sockets)
    cpu = cpu_seconds(pid) - c0
    wall = time.perf_counter() - t0
    answered = result["answered"] or 1
    result["server_cpu_s"] = round(cpu, 3)
    result["server_cpu_share"] = round(cpu / (result.get("duration") or wall), 3)
    result["server_cpu_us_per_answer"] = round(cpu / answered * 1e6, 2)
    return result


def compare(server: dict, ceiling: dict) -> dict:
    """The ratio of server to ceiling: by qps when both cores are saturated,
    else by CPU per answered query (the fairer figure when load is light)."""
    both = (server["server_cpu_share"] >= SATURATED and ceiling["server_cpu_share"] >= SATURATED)
    qps = ratio(server["qps"], ceiling["qps"])
    cpu = ratio(ceiling["server_cpu_us_per_answer"], server["server_cpu_us_per_answer"])
    return {"qps_ratio": qps, "cpu_per_answer_ratio": cpu,
            "basis": ("qps (both cores saturated)" if both
                      else "CPU per answer (a core not saturated)"),
            "ratio": qps if both else cpu}


# -- restart -------------------------------------------------------------------------
def time_to_first_answer(cmd: list[str], port: int, query: bytes, *, cwd: Path | None = None,
                         want_rcode: int | None = 0) -> tuple[float, Daemon]:
    """Start `cmd` (pinned to SERVER_CORE) and probe 127.0.0.1:`port` with
    `query` until an answer (with `want_rcode`) arrives; returns (seconds, daemon)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.settimeout(PROBE_INTERVAL)
    start = time.perf_counter()
    daemon = Daemon(cmd, core=SERVER_CORE, cwd=cwd)
    try:
        while time.perf_counter() - start < RESTART_TIMEOUT:
            if daemon.proc.poll() is not None:
                raise RuntimeError(f"{cmd} exited:\n{daemon.log}")
            try:
                probe.sendto(query, (HOST, port))
                while True:
                    data = probe.recv(65535)
                    if data[:2] == query[:2] and (want_rcode is None
                                                  or common.rcode_of(data) == want_rcode):
                        return time.perf_counter() - start, daemon
            except OSError:  # timeout, or ICMP port unreachable before it binds
                continue
        raise RuntimeError(f"no answer within {RESTART_TIMEOUT} s from {cmd}")
    except BaseException:
        daemon.stop()
        raise
    finally:
        probe.close()


# -- one zone size ---------------------------------------------------------------------
def prepare(size: int, args, workdir: Path) -> tuple[Path, list[bytes], Path]:
    """Zone file, wire queries and their dnsperf file for `size` keys."""
    zone, names_file = ensure_zone(workdir, size, args.seed)
    qfile = workdir / f"queries-{size}-s{args.seed}-{args.query_sample}.bin"
    if qfile.is_file():
        queries = common.read_query_file(qfile)
    else:
        names = common.read_names(names_file, args.query_sample)
        queries = common.build_queries(names)
        common.write_query_file(qfile, queries)
    return zone, queries, qfile


def start_fresh(zone: Path, workdir: Path, size: int, port: int = 0) -> tuple[Daemon, dict]:
    """A server compiling `zone` into a new data directory; waits for ready."""
    base = workdir / f"serve-{size}"
    shutil.rmtree(base / "data", ignore_errors=True)
    config = common.write_serve_config(base, zone, port=port)
    t0 = time.perf_counter()
    daemon = common.start_serve(config)
    info = {"start_to_ready_s": round(time.perf_counter() - t0, 3)}
    m = re.search(r"loaded: serial \d+, (\d+) records in ([\d.]+) s", "\n".join(daemon.lines))
    if m:
        info["records"] = int(m.group(1))
        info["compile_s"] = float(m.group(2))
    return daemon, info


def pick_response(address: tuple[str, int], queries: list[bytes]) -> bytes:
    """A typical reply of the server (median size of a sample): what the
    ceiling sends back, so both put the same bytes on the wire."""
    replies = [r for q in queries[:51] if (r := common.udp_ask(address, q)) is not None]
    if not replies:
        raise RuntimeError("the server does not answer")
    replies.sort(key=len)
    return replies[len(replies) // 2]


def warm(pid: int, address, queries, qfile, args, **load) -> None:
    """A short run first, so page faults of the first touch are not measured."""
    saved = args.duration
    args.duration = min(1.0, saved)
    try:
        measure_load(pid, address, queries, qfile, args, **load)
    finally:
        args.duration = saved


def profile_server(daemon: Daemon, address, queries, qfile, args, out: Path) -> dict:
    """py-spy record of the server during one load run; the stage summary."""
    pyspy = common.have_pyspy()
    if pyspy is None:
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    raw = out.with_suffix(".txt")
    svg = out.with_suffix(".svg")
    dur = max(1, int(args.duration))
    errors = []
    loads = []
    # py-spy's default (blocking) mode pauses the server for each sample: it
    # slows it (see qps_while_profiled) but attributes time faithfully; the
    # --nonblocking mode was seen to pile samples onto sendto. One run per
    # output format, so both see the same kind of load.
    for fmt, path in (("raw", raw), ("flamegraph", svg)):
        proc = subprocess.Popen([pyspy, "record", "--pid", str(daemon.pid), "--rate", "200",
                                 "--duration", str(dur), "--format", fmt, "-o", str(path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)  # py-spy attaches
        loads.append(measure_load(daemon.pid, address, queries, qfile, args)["qps"])
        try:
            _, err = proc.communicate(timeout=dur + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            err = "timeout"
        if proc.returncode:
            errors.append(err[-300:])
    if not raw.is_file():
        return {"skipped": "py-spy failed: " + " | ".join(errors)}
    summary = common.profile_summary(raw, SERVE_STAGES, only=r"^serve_udp$")
    summary.update({"qps_while_profiled": loads[0], "collapsed": str(raw),
                    "flamegraph": str(svg)})
    return summary


def bench_size(size: int, args, workdir: Path) -> dict:
    """Throughput of a fresh server on a `size`-key zone, and of the ceiling
    loaded right after it (one round: these are the plot's extra points)."""
    zone, queries, qfile = prepare(size, args, workdir)
    daemon, info = start_fresh(zone, workdir, size)
    ceiling = None
    try:
        response = pick_response(daemon.address, queries)
        ceiling = common.start_ceiling(response, duration=4 * args.duration + 120)
        for target in (daemon, ceiling):
            warm(target.pid, target.address, queries, qfile, args)
        load, ceiling_load = (measure_load(target.pid, target.address, queries, qfile, args)
                              for target in (daemon, ceiling))
    finally:
        daemon.stop()
        if ceiling is not None:
            ceiling.stop()
    return {"keys": size, **info, "load": load, "ceiling": ceiling_load}


#: The processes `bench_main` loads in turn in each round.
ROUND_TARGETS = ("server", "ceiling", "loop", "bound")


def round_order(k: int) -> tuple[str, ...]:
    """The order round `k` loads the targets in: `ROUND_TARGETS`, reversed
    every other round, so a drift of the machine's speed that is steady over
    two rounds favours no target (server first, then ceiling, then ceiling
    first, then server)."""
    return ROUND_TARGETS if k % 2 == 0 else ROUND_TARGETS[::-1]


def median_round(rounds: list[dict[str, dict]]) -> dict[str, dict]:
    """The round whose server-to-ceiling ratio is the median (of an even
    count, the lower middle one)."""
    ranked = sorted(rounds, key=lambda r: compare(r["server"], r["ceiling"])["ratio"] or 0.0)
    return ranked[(len(ranked) - 1) // 2]


def median_ratio(rounds: list[dict[str, dict]], name: str, base: str) -> float | None:
    """The median over the rounds of each round's `name`-to-`base` ratio."""
    ratios = [compare(r[name], r[base])["ratio"] for r in rounds]
    return statistics.median(ratios) if None not in ratios else None


def bench_main(size: int, args, workdir: Path) -> dict:
    """Every scenario on the `size`-key zone."""
    zone, queries, qfile = prepare(size, args, workdir)
    out: dict = {"keys": size}
    # 1. throughput of a server that compiled the zone at start, against the
    # ceiling and the two bounds (keyresolve's trio loop with a no-op
    # handler; the same loop with a msgpack decode and one LMDB node read per
    # query, on the server's data directory): all up at once, loaded in turn,
    # `--rounds` times, so that the machine's drift hits each alike
    daemon, info = start_fresh(zone, workdir, size)
    out.update(info)
    out["rss_after_compile_mb"] = memory(daemon.pid)
    targets = {"server": daemon}
    try:
        response = pick_response(daemon.address, queries)
        life = (10 + len(ROUND_TARGETS) * args.rounds) * args.duration + 120
        ceiling_port = common.free_port()
        ceiling_start, targets["ceiling"] = time_to_first_answer(
            common.ceiling_cmd(response, duration=life, listen=f"{HOST}:{ceiling_port}"),
            ceiling_port, queries[0], want_rcode=None)
        targets["ceiling"].wait_for(r"\bready\b", 30)
        targets["loop"] = common.start_ceiling(response, duration=life, loop="trio")
        targets["bound"] = common.start_ceiling(response, duration=life, loop="trio-lmdb",
                                                data_dir=workdir / f"serve-{size}" / "data")
        for target in targets.values():
            warm(target.pid, target.address, queries, qfile, args)
        rounds = [{name: measure_load(targets[name].pid, targets[name].address, queries, qfile,
                                      args) for name in round_order(k)}
                  for k in range(args.rounds)]
        chosen = median_round(rounds)
        server, ceil = chosen["server"], chosen["ceiling"]
        rate = round(args.latency_load * server["qps"])
        if not args.throughput_only:
            # 2. latency in open loop, the same rate on each
            latencies = {name: measure_load(targets[name].pid, targets[name].address, queries,
                                            qfile, args, rate=rate, keep_latencies=True)
                         for name in ("server", "ceiling", "loop")}
            if args.profile:
                out["profile"] = profile_server(daemon, daemon.address, queries, qfile, args,
                                                Path(args.profile))
            ceiling_rss = memory(targets["ceiling"].pid)
    finally:
        for target in targets.values():
            target.stop()
    out["throughput"] = {"server": server, "ceiling": ceil, **compare(server, ceil),
                         "goal": f">= {GOAL_QPS_RATIO}",
                         "rounds": [{f"{name}_{key}": r[name][field]
                                     for name in ROUND_TARGETS
                                     for key, field in (("qps", "qps"),
                                                        ("cpu_us_per_answer",
                                                         "server_cpu_us_per_answer"))}
                                    | {"ratio": compare(r["server"], r["ceiling"])["ratio"]}
                                    for r in rounds],
                         # of the median round; each ratio below is the
                         # median over the rounds of that round's ratio
                         "trio_loop_ceiling": chosen["loop"],
                         "trio_loop_vs_ceiling": median_ratio(rounds, "loop", "ceiling"),
                         "server_vs_trio_loop": median_ratio(rounds, "server", "loop"),
                         "decode_and_lmdb_read_bound": chosen["bound"],
                         "bound_vs_ceiling": median_ratio(rounds, "bound", "ceiling"),
                         "server_vs_bound": median_ratio(rounds, "server", "bound")}
    out["_latencies"] = None
    if args.throughput_only:
        return out
    server_lat, ceil_lat, loop_lat = (latencies[name] for name in ("server", "ceiling", "loop"))
    lat_s = server_lat.pop("latencies")
    lat_c = ceil_lat.pop("latencies")
    lat_l = loop_lat.pop("latencies")
    out["latency"] = {"rate_qps": rate, "server": server_lat, "ceiling": ceil_lat,
                      "trio_loop_ceiling": loop_lat,
                      "p50_ratio": ratio(server_lat["latency_ms"]["p50"],
                                         ceil_lat["latency_ms"]["p50"]),
                      "p99_ratio": ratio(server_lat["latency_ms"]["p99"],
                                         ceil_lat["latency_ms"]["p99"])}
    # 3. restart on the compiled data directory, with a fixed port to probe
    port = common.free_port()
    config = common.write_serve_config(workdir / f"serve-{size}", zone, port=port)
    first, daemon = time_to_first_answer(common.keyresolve_cmd("serve", "--config", str(config)),
                                         port, queries[0], cwd=config.parent)
    try:
        daemon.wait_for(r"\bready\b")
        ready = time.perf_counter() - daemon.started
        # 4. RSS of the restarted server after it has answered a load run
        steady = measure_load(daemon.pid, (HOST, port), queries, qfile, args)
        rss = memory(daemon.pid)
    finally:
        daemon.stop()
    out["restart"] = {"first_answer_s": round(first, 3), "ready_s": round(ready, 3),
                      "ceiling_first_answer_s": round(ceiling_start, 3),
                      "ratio": ratio(first, ceiling_start), "goal": f"<= {GOAL_RESTART_S} s",
                      "log": [line for line in daemon.lines if "zone" in line][-2:]}
    out["rss"] = {"server_mb": rss, "ceiling_mb": ceiling_rss,
                  "ratio": ratio(rss.get("VmRSS"), ceiling_rss.get("VmRSS")),
                  "qps_during": steady["qps"], "goal": f"<= {GOAL_RSS_MB} MB",
                  "note": "after a load run on the restarted server; RssFile is LMDB's "
                          "page cache mapping, RssAnon the Python heap"}
    if args.breakdown:
        child = subprocess.run(
            [sys.executable, __file__, "--breakdown-child", str(config), str(qfile),
             str(args.breakdown)], capture_output=True, text=True, timeout=600,
            preexec_fn=common.pin_preexec(SERVER_CORE))
        try:
            out["breakdown_us_per_query"] = json.loads(child.stdout)
        except ValueError:
            out["breakdown_us_per_query"] = {"failed": child.stderr[-1000:]}
    out["_latencies"] = (lat_s, lat_c, lat_l)
    return out


def bench_workers(size: int, counts: list[int], args, workdir: Path) -> dict:
    """`keyresolve serve --workers N` restarted on the compiled `size`-key
    zone, for each N in `counts`, under the same load. Unpinned: the server's
    processes and the generator share the machine's cores, so CPU per answer
    (summed over the processes) is the robust figure, and qps scales only as
    far as cores are left over from the generator."""
    zone, queries, qfile = prepare(size, args, workdir)
    runs = []
    for count in counts:
        port = common.free_port()
        config = common.write_serve_config(workdir / f"serve-{size}", zone, port=port)
        daemon = common.start_serve(config, core=None, args=("--workers", str(count)))
        address = (HOST, port)
        try:
            load = {"cpu_seconds": common.tree_cpu_seconds, "sockets": WORKER_LOAD_SOCKETS}
            warm(daemon.pid, address, queries, qfile, args, **load)
            result = measure_load(daemon.pid, address, queries, qfile, args, **load)
            result["rss_mb"] = {str(pid): memory(pid)["VmRSS"]
                                for pid in common.process_tree(daemon.pid)}
        finally:
            daemon.stop()
        handled = re.findall(r"(\[worker \d+\])?: (?:worker \d+: )?(\d+) messages handled",
                             "\n".join(daemon.drain()))
        result["messages_per_process"] = [int(n) for _, n in handled]
        runs.append({"workers": count, **result})
    base = runs[0]
    for run in runs:
        run["qps_vs_first"] = ratio(run["qps"], base["qps"])
        run["cpu_per_answer_vs_first"] = ratio(run["server_cpu_us_per_answer"],
                                               base["server_cpu_us_per_answer"])
    return {"keys": size, "runs": runs,
            "note": "server processes and the generator unpinned on "
                    f"{len(common.usable_cores())} cores: qps is shared-core; "
                    "server CPU is summed over all its processes"}


# -- where the time goes, measured in-process --------------------------------------------
def breakdown(config_path: Path, qfile: Path, count: int) -> dict:
    """Microseconds per query of each stage of `AuthServer.handle`, timed in
    loops over `count` distinct queries against the compiled data directory
    (the server must be stopped). Deterministic, unlike sampling profiles.
    Name.from_wire's LRU cache is cleared before each stage: with random names
    from a large zone almost every lookup misses it, as here."""
    import msgpack

    from keyresolve.protocol import names as names_mod
    from keyresolve.authority.answer import answer
    from keyresolve.cli.config import load_serve_config
    from keyresolve.daemons.serve import AuthServer
    from keyresolve.protocol.message import Message
    from keyresolve.net import server as server_mod
    from keyresolve.store.zones import Store
    from keyresolve.zonedata.nodes import decode_node

    batch = server_mod.MAX_BATCH  # datagrams per snapshot in serve_udp

    def clear() -> None:
        cache = getattr(names_mod, "_from_wire_cached", None)
        if cache is not None and hasattr(cache, "cache_clear"):
            cache.cache_clear()

    config = load_serve_config(config_path)
    queries = common.read_query_file(qfile, count)
    n = len(queries)
    peer = (HOST, 5353)
    out: dict = {"queries": n}
    clock = time.perf_counter

    def stage(label: str, fn) -> None:
        best = None
        try:
            for _ in range(BREAKDOWN_REPEAT):  # the minimum: least disturbed by neighbours
                clear()
                t0 = clock()
                fn()
                took = clock() - t0
                best = took if best is None else min(best, took)
            out[label] = round(best / n * 1e6, 2)
        except Exception as exc:  # the code under test changes; report, go on
            out[label] = f"failed: {exc.__class__.__name__}: {exc}"[:200]

    with Store(config.data_dir, readonly=True) as store:
        handler = AuthServer(store, config)

        def full(cold: bool) -> None:
            responder = getattr(handler, "_responder", None)  # absent in older trees
            if cold and responder is not None:
                responder.responses.clear()
            for i in range(0, n, batch):  # as serve_udp: one snapshot per batch
                with handler.batch():
                    for q in queries[i:i + batch]:
                        handler.handle(q, peer, False)

        def snapshots() -> None:
            for _ in range(n):
                with store.snapshot():
                    pass

        stage(f"full handle(), {batch} per snapshot, response cache cleared",
              lambda: full(True))
        stage(f"full handle(), {batch} per snapshot, answers cached", lambda: full(False))
        fast_path_stages(handler, queries, stage, batch)
        msgs = [Message.from_wire(q) for q in queries]
        with store.snapshot() as snap:
            qnames = [m.question.name for m in msgs]
            zone = snap.find_zone(qnames[0])
            node_keys = [zone._key(nm) for nm in qnames] if hasattr(zone, "_key") else []
            raw_nodes = [snap._get(k) for k in node_keys] if node_keys else []
            responses = [answer(m, snap.find_zone) for m in msgs]

            stage("decode: Message.from_wire", lambda: [Message.from_wire(q) for q in queries])
            stage("  of which msgpack.unpackb of the body", lambda: [
                msgpack.unpackb(q[6:], raw=False, use_list=False) for q in queries])
            texts = [nm.to_wire() for nm in qnames]
            stage("  of which Name.from_wire (cache misses)", lambda: [
                names_mod.Name.from_wire(t) for t in texts])
            stage("answer(): authority logic + store", lambda: [
                answer(m, snap.find_zone) for m in msgs])
            stage("  of which Snapshot.find_zone", lambda: [snap.find_zone(nm) for nm in qnames])
            stage("  of which LmdbZoneView.get_node", lambda: [zone.get_node(nm)
                                                              for nm in qnames])
            if raw_nodes:
                stage("    of which LMDB txn.get", lambda: [snap._get(k) for k in node_keys])
                stage("    of which decode_node (msgpack + Rdata objects)", lambda: [
                    decode_node(v) for v in raw_nodes if v is not None])
            stage("  zone.soa, per call (negative answers build it each time)", lambda: [
                zone.soa for _ in range(n)])
            stage("encode: Message.to_wire", lambda: [r.to_wire(1232) for r in responses])
            bodies = [msgpack.unpackb(r.to_wire(1232)[6:]) for r in responses]
            stage("  of which msgpack.packb of the body", lambda: [msgpack.packb(b)
                                                                  for b in bodies])
        stage(f"LMDB snapshot open+close (once per batch of up to {batch})", snapshots)
    return out


def fast_path_stages(handler, queries: list[bytes], stage, batch: int) -> None:
    """The uncached fast path's parts: `Responder.answer` with its node reads
    answered from a dict (no LMDB), and the node reads alone (`txn.get`);
    and the least any fast path of this design must do (`least`), the bound
    below which no checking or answer-building code can go."""
    from keyresolve.authority import fastpath

    if not hasattr(fastpath, "Responder"):
        return  # an older tree
    responder = fastpath.Responder(handler._fast_route, limit=0)
    seen: dict[bytes, bytes | None] = {}
    with handler.batch():
        read = handler._snapshot.node_reader()

        def recording(key: bytes) -> bytes | None:
            node = seen[key] = read(key)
            return node

        responder.read = recording
        for q in queries:  # the routes are found and remembered here
            responder.answer(q)
    if not seen:
        return  # nothing takes the fast path
    keys = list(seen)

    def from_dict() -> None:
        responder.read = seen.get
        for q in queries:
            responder.answer(q)

    def reads() -> None:
        for i in range(0, len(keys), batch):
            with handler.batch():
                read = handler._snapshot.node_reader()
                for key in keys[i:i + batch]:
                    read(key)

    def least(splice: bool) -> None:
        # what any fast path of this design does, and nothing else: the query
        # regex, the remembered route, one node read, and (with `splice`) the
        # one-KEY splice with no check of the node's shape (a uint16 TTL
        # assumed, as genzone writes), the name's length or the UDP size
        match, routes = fastpath._QUERY, responder._routes
        head, tail = fastpath._RESPONSE_HEAD, fastpath._TAIL
        for i in range(0, len(queries), batch):
            with handler.batch():
                read = handler._snapshot.node_reader()
                for q in queries[i:i + batch]:
                    m = match(q)
                    local, domain = m.group(2, 3)
                    node = read(routes[domain][0] + local)
                    if splice and node is not None:
                        end = m.end(3)
                        b"".join((q[:2], head[q[2]], q[7:end + 1], b"\x91\x94", q[8:end],
                                  node[2:6], node[7:], tail))

    stage("  of which Responder.answer, node reads from a dict (no LMDB)", from_dict)
    stage(f"  of which the node reads alone (LMDB txn.get), {batch} per snapshot", reads)
    if all(fastpath._QUERY(q) for q in queries):  # else `least` does not apply
        stage("least of any fast path: regex, route, node read (no answer)",
              lambda: least(False))
        stage("least of any fast path: the same and an unchecked one-KEY splice",
              lambda: least(True))


def plot(report: dict, latencies, outdir: Path) -> list[str]:
    """qps vs zone size, and the latency CDF; [] with a message if no matplotlib."""
    if not common.have_matplotlib():
        print("matplotlib not installed: no plots (pip install matplotlib)", file=sys.stderr)
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    sizes = report["sizes"]
    main = report["main"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [s["keys"] for s in sizes]
    ax.plot(xs, [s["qps"] for s in sizes], "o-", label="keyresolve serve")
    for s in sizes:
        label = "n/a" if s["ratio"] is None else f"{s['ratio']:.2f}"
        ax.annotate(label, (s["keys"], s["qps"]), textcoords="offset points",
                    xytext=(0, -14), ha="center", fontsize=8)
    ceilings = [s["ceiling_qps"] for s in sizes]  # each measured with its point
    ax.plot(xs, ceilings, "s--", color="gray", label="ceiling (ceiling.py), same run")
    ax.plot(xs, [GOAL_QPS_RATIO * c for c in ceilings], ":", color="green",
            label=f"goal ({GOAL_QPS_RATIO} x ceiling); labels: server / ceiling")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("KEY records in the zone")
    ax.set_ylabel("answers per second (UDP, 1 core)")
    ax.set_title(f"qps vs zone size ({report['generator']}, {report['machine']['date']})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    written.append(_save(plt, fig, outdir / "qps_vs_zone_size.png"))
    if latencies:
        lat_s, lat_c, lat_l = latencies
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for lats, label in ((lat_s, "keyresolve serve"), (lat_l, "trio loop, no-op handler"),
                            (lat_c, "ceiling (blocking loop)")):
            if lats:
                n = len(lats)
                step = max(1, n // 2000)
                xs = [v * 1000 for v in lats[::step]] + [lats[-1] * 1000]
                ys = [i / n for i in range(0, n, step)] + [1.0]
                ax.plot(xs, ys, label=f"{label} (p50 {1000 * statistics.median(lats):.3f} ms)")
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("fraction of answers")
        ax.set_title(f"latency CDF, open loop at {main['latency']['rate_qps']} q/s, "
                     f"{main['keys']} keys")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        written.append(_save(plt, fig, outdir / "latency_cdf.png"))
    return written


def _save(plt, fig, path: Path) -> str:
    """Write and close a figure; its path."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def bench_rrl(size: int, rounds: int, args, workdir: Path) -> dict:
    """What response rate limiting costs when no client is limited: two
    servers on the compiled `size`-key zone (same data directory), one with
    `rate_limit` off, one with it set far above the load
    (`RRL_UNLIMITED_RATE`), both pinned to the server core and loaded in
    turn `rounds` times (the order reversed every other round). The ratio
    (on to off) is by qps where both cores were saturated, else by CPU per
    answer; the round with the median ratio counts."""
    zone, queries, qfile = prepare(size, args, workdir)
    data = (workdir / f"serve-{size}" / "data").resolve()
    servers: dict[str, Daemon] = {}
    logs: dict[str, list[str]] = {}
    try:
        configs = {}
        for name, extra in (("off", ""), ("on", f"rate_limit = {RRL_UNLIMITED_RATE}\n")):
            configs[name] = common.write_serve_config(workdir / f"serve-{size}-rrl-{name}", zone,
                                                      data_dir=str(data), extra=extra)
            servers[name] = common.start_serve(configs[name])  # one at a time: one compiles
        for daemon in servers.values():
            warm(daemon.pid, daemon.address, queries, qfile, args)
        runs = [{name: measure_load(servers[name].pid, servers[name].address, queries, qfile,
                                    args)
                 for name in (("off", "on") if k % 2 == 0 else ("on", "off"))}
                for k in range(rounds)]
    finally:
        for name, daemon in servers.items():
            daemon.stop()
            logs[name] = daemon.drain()
    ranked = sorted(runs, key=lambda r: compare(r["on"], r["off"])["ratio"] or 0.0)
    chosen = ranked[(len(ranked) - 1) // 2]
    child = subprocess.run(
        [sys.executable, __file__, "--rrl-child", str(configs["off"]), str(configs["on"]),
         str(qfile), str(args.breakdown or len(queries))], capture_output=True, text=True,
        timeout=600, preexec_fn=common.pin_preexec(SERVER_CORE))
    try:
        in_process = json.loads(child.stdout)
    except ValueError:
        in_process = {"failed": child.stderr[-1000:]}
    limited = [line for line in logs.get("on", []) if "rate limiting dropped" in line]
    return {"keys": size, "rate_limit": RRL_UNLIMITED_RATE, "off": chosen["off"],
            "on": chosen["on"], **compare(chosen["on"], chosen["off"]),
            "goal": f">= {GOAL_RRL_RATIO}",
            "rounds": [{"off_qps": r["off"]["qps"], "on_qps": r["on"]["qps"],
                        "off_cpu_us_per_answer": r["off"]["server_cpu_us_per_answer"],
                        "on_cpu_us_per_answer": r["on"]["server_cpu_us_per_answer"],
                        "ratio": compare(r["on"], r["off"])["ratio"]} for r in runs],
            # the server logs at exit how many answers it limited: none here
            "limited": limited,
            "in_process_us_per_answer": in_process}


def rrl_in_process(config_off: Path, config_on: Path, qfile: Path, count: int) -> dict:
    """`AuthServer.handle` timed in this process, every answer cached (the
    cheapest answer, where the limiter's share is largest), `rate_limit`
    off and on, alternating `BREAKDOWN_REPEAT` times (the fastest of each
    counts), in CPU time of this process (waits for a busy core do not
    count): the limiter's cost without the load generator's noise."""
    from keyresolve.cli.config import load_serve_config
    from keyresolve.daemons.serve import AuthServer
    from keyresolve.net import server as server_mod
    from keyresolve.store.zones import Store

    batch = server_mod.MAX_BATCH
    queries = common.read_query_file(qfile, count)
    peer = (HOST, 5353)
    best: dict[str, float] = {}
    configs = {"off": load_serve_config(config_off), "on": load_serve_config(config_on)}
    with Store(configs["off"].data_dir, readonly=True) as store:
        handlers = {name: AuthServer(store, config) for name, config in configs.items()}
        for _ in range(BREAKDOWN_REPEAT + 1):  # the first fills the response caches
            for name, handler in handlers.items():
                t0 = time.process_time()
                for i in range(0, len(queries), batch):
                    with handler.batch():
                        for q in queries[i:i + batch]:
                            handler.handle(q, peer, False)
                took = (time.process_time() - t0) / len(queries) * 1e6
                best[name] = min(best.get(name, took), took)
    return {"queries": len(queries), "off": round(best["off"], 3), "on": round(best["on"], 3),
            "ratio": ratio(best["off"], best["on"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="zone size of every scenario")
    parser.add_argument("--sizes", default="",
                        help="more zone sizes for qps vs size, e.g. 1000,10000")
    common.add_load_arguments(parser)
    parser.add_argument("--query-sample", type=int, default=100_000,
                        help="distinct names queried (a random sample of the zone's)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="throughput rounds (server, ceiling and the two bounds loaded in "
                             "turn); the round with the median ratio counts")
    parser.add_argument("--throughput-only", action="store_true",
                        help="for the main zone, only the throughput against the ceiling "
                             "and the two bounds: no latency, restart, RSS or breakdown")
    parser.add_argument("--latency-load", type=float, default=0.3,
                        help="open-loop rate for latencies, as a share of the server's qps")
    parser.add_argument("--profile", help="py-spy profile of the server: path prefix")
    parser.add_argument("--plots", help="directory for the PNG plots")
    parser.add_argument("--src", help="keyresolve tree to measure (default: this repo)")
    parser.add_argument("--breakdown", type=int, default=20_000,
                        help="queries for the in-process per-stage timing (0: skip)")
    parser.add_argument("--breakdown-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--workers", default="",
                        help="also run `serve --workers N` for each N, e.g. 1,2 (unpinned)")
    parser.add_argument("--rrl", type=int, default=0, metavar="ROUNDS",
                        help="also measure response rate limiting's cost when no client is "
                             "limited, in this many rounds (0: skip)")
    parser.add_argument("--rrl-child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--json", help="write the report here too")
    args = parser.parse_args(argv)
    root = common.use_source(args.src)
    if args.breakdown_child:
        config, qfile, count = args.breakdown_child
        print(json.dumps(breakdown(Path(config), Path(qfile), int(count))))
        return 0
    if args.rrl_child:
        off, on, qfile, count = args.rrl_child
        print(json.dumps(rrl_in_process(Path(off), Path(on), Path(qfile), int(count))))
        return 0
    if args.generator == "auto":
        args.generator = "dnsperf" if have_dnsperf() else "python"
    elif args.generator == "dnsperf" and not have_dnsperf():
        parser.error("dnsperf is not installed (apt-get install dnsperf)")
    if args.window is None:
        # dnsperf with one socket needs ~200 in flight to saturate the ceiling
        # here; a Python process saturates it with 64
        args.window = DNSPERF_WINDOW if args.generator == "dnsperf" else LOADGEN_WINDOW
    report = common.report_header("auth", root, argv, generator=args.generator,
                                  cores={"server": SERVER_CORE, "generator": LOAD_CORE})
    if args.generator == "python":
        report["note"] = "dnsperf not installed: loadgen.py (Python) made the load"
    started = time.perf_counter()
    with common.workdir(args.workdir) as workdir:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()} - {args.keys})
        results = [bench_size(s, args, workdir) for s in sizes]
        main_result = bench_main(args.keys, args, workdir)
        latencies = main_result.pop("_latencies")
        results.append({"keys": args.keys, "compile_s": main_result.get("compile_s"),
                        "load": main_result["throughput"]["server"],
                        "ceiling": main_result["throughput"]["ceiling"]})
        report["sizes"] = [{"keys": r["keys"], "qps": r["load"]["qps"],
                            "cpu_us_per_answer": r["load"]["server_cpu_us_per_answer"],
                            "cpu_share": r["load"]["server_cpu_share"],
                            "ceiling_qps": r["ceiling"]["qps"],
                            **compare(r["load"], r["ceiling"]),
                            "compile_s": r.get("compile_s"), "load": r["load"]}
                           for r in results]
        report["main"] = main_result
        counts = [int(n) for n in args.workers.split(",") if n.strip()]
        if counts:
            report["workers"] = bench_workers(args.keys, counts, args, workdir)
        if args.rrl:
            report["rrl"] = bench_rrl(args.keys, args.rrl, args, workdir)
        report["elapsed_s"] = round(time.perf_counter() - started, 1)
        if args.plots:
            report["plots"] = plot(report, latencies, Path(args.plots))
    for s in report["sizes"]:
        s.pop("load")
    common.emit(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
