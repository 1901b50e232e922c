#!/usr/bin/env python3
"""Zone compilation benchmark: zone file -> LMDB, time and peak memory.

    python benchmarks/bench_compile.py --keys 1000000 --json compile.json [--profile P]

Each measurement runs in its own child process on core 0, so its peak RSS is
its own (ru_maxrss from wait4):

- floor: read the file, split it into lines and fields, msgpack-encode each
  line and append it into LMDB in one write transaction; no parsing, no
  checks: the least any compiler must do;
- compile: Store.load_zone_file (what `keyresolve serve` runs): the file is
  parsed, checked and written into one LMDB write transaction as it is read,
  so there are no separate parse and store phases;
- components: the steps the bulk compile cannot do without, each timed
  alone on the same data: the regex over the file, the sort of the node
  entries, their split into (key, node) pairs, and the appends into LMDB as
  the store makes them. Their sum, against the floor, bounds what this
  design can reach (per-line Python comes on top);
- serve: `keyresolve serve` from process start to "ready" with a fresh data
  directory, and its VmHWM (peak RSS) at that moment;
- with --ordered, the compile of the same zone with its mailboxes in the
  store's key order (`child_order`), alternating with the other two: what
  the sort and the cache misses of the random order cost, since the floor,
  keyed by line number, pays for neither.

Floor and compile run `--repeat` times (3), alternating, and each one's
median run counts. Ratios: compile time / floor time (goal <= 1.5), compile
peak RSS (goal <= 200 MB) also against the floor's. With --profile, a py-spy profile of the
compile child, and a tracemalloc census (on a --memprofile-keys zone) of
what the in-memory `load_zone` (tests and tools) holds after parsing.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import SERVER_CORE, ensure_zone, memory, ratio  # noqa: E402

#: Goals of the issue "bench".
GOAL_TIME_RATIO = 1.5
GOAL_RSS_MB = 200
#: Longest a child may take (a 1M-key compile takes under a minute here).
CHILD_TIMEOUT = 900
ORIGIN = "example.com."
#: Runs of each step of the components child; the fastest counts.
COMPONENT_REPEAT = 3
#: LMDB map size of the floor: as the store's default.
FLOOR_MAP_SIZE = 1 << 34

#: Stages of a compile, for profile_summary (deepest matching frame wins).
COMPILE_STAGES = [
    (r"^(child_compile|compile_nodes|load_primary_zone|Store\.load_zone_file|_translate)", "driver, commit"),
    (r"^(compile_bulk|_compile)$", "bulk: regex, per-line Python"),
    (r"^_finish$", "bulk: sort the entries"),
    (r"^(_?ZoneBuilder\.finish|_Sink\.scan)$", "zone checks at the end"),
    (r"^(BulkZone\.batches|_unique)", "bulk: split into (key, node)"),
    (r"^Store\._write_sorted$", "LMDB: appends and commits"),
    (r"^(_Reader\.line)$", "general parser"),
    (r"^(ZoneReader|_?CompileReader)\.(__iter__|_parse_stream)$", "read lines, tokenize, sha256"),
    (r"^_?CompileReader\._entry$", "fast path: KEY lines"),
    (r"^(_?CompileReader\._fast_owner|_?CompileReader\._domain_key|canonical_local|_check_local)",
     "fast path: mailbox owners"),
    (r"^(b64decode|_bytes_from_decode_data|fullmatch)", "fast path: base64"),
    (r"^(parse_ttl)$", "TTLs"),
    (r"^(_?CompileReader\._general|_?CompileReader\._record|ZoneReader\._entry|ZoneReader\._directive)",
     "general parser"),
    (r"^(Name\.|_parse_domain|_make$|_with_local)", "Name objects"),
    (r"^(KEY\.|SOA\.|NS\.|ADDR\.|_Target|_enum|rdata_from_text|Record\.|__create_fn__)",
     "rdata and Record objects"),
    (r"^_?ZoneBuilder\.(add|_start)$", "zone checks while adding"),
    (r"^_?ZoneBuilder\._flush$", "encode nodes"),
    (r"^(_?ZoneBuilder\.finish|_?ZoneBuilder\._cut_above|node_types|_types)", "zone checks at the end"),
    (r"^_NodeWriter\.(get|put)$", "LMDB: node reads and writes"),
    (r"^(_merge_nodes|_delete_prefix|_scan_prefix|_DiffCollector)", "LMDB: reload merge"),
]


# -- children: each prints one JSON line -------------------------------------------------
def child_floor(zone: Path, directory: Path) -> dict:
    """Read the file line by line, split each into fields, msgpack-encode them
    and append them into LMDB in one write transaction."""
    import lmdb
    import msgpack

    t0 = time.perf_counter()
    env = lmdb.open(str(directory), subdir=True, max_dbs=4, map_size=FLOOR_MAP_SIZE)
    db = env.open_db(b"nodes")
    pack = msgpack.Packer().pack
    count = 0
    with open(zone, "rb") as f, env.begin(write=True) as txn:
        cursor = txn.cursor(db=db)

        def items():  # streamed: the floor's memory is LMDB's, not a copy of the file
            nonlocal count
            for i, line in enumerate(f):
                fields = line.split()
                if fields:
                    count += 1
                    yield i.to_bytes(8, "big"), pack(fields)

        cursor.putmulti(items(), append=True)
    env.close()
    return {"seconds": round(time.perf_counter() - t0, 3), "lines": count}


def child_compile(zone: Path, directory: Path) -> dict:
    """The library compile: Store.load_zone_file, as `keyresolve serve` runs it."""
    from keyresolve.protocol.names import Name
    from keyresolve.store.zones import Store

    t0 = time.perf_counter()
    with Store(directory) as store:
        compiled = store.load_zone_file(str(zone), Name.from_text(ORIGIN))
        env_mb = round(store.env_size() / 2**20, 1)
    t1 = time.perf_counter()
    return {"seconds": round(t1 - t0, 3), "records": compiled.records, "env_mb": env_mb}


def child_components(zone: Path, directory: Path) -> dict:
    """Each step the bulk compile cannot do without, timed alone (gc paused,
    as in the compile), the fastest of `COMPONENT_REPEAT` runs each: a bound
    is the least they cost. `bulkcompile._LINE` over the file, the sort of
    the node entries (a copy of the list the compile sorts, in file order),
    the split into (key, node) pairs and the appends into LMDB in
    transactions of the store's size."""
    import gc

    import lmdb

    from keyresolve.zonedata import bulkcompile
    from keyresolve.protocol.names import Name
    from keyresolve.store.env import TRANSFER_TXN_NODES
    from keyresolve.store.keys import node_prefix

    gc.disable()
    directory.mkdir(parents=True, exist_ok=True)
    origin = Name.from_text(ORIGIN)
    times: dict[str, list[float]] = {"regex_s": [], "sort_s": [], "split_s": [], "append_s": []}

    def timed(step: str, run, *args):
        t0 = time.perf_counter()
        result = run(*args)
        times[step].append(time.perf_counter() - t0)
        return result

    def regex(data: bytes) -> None:
        start = 0
        while start < len(data):
            end = data.rfind(b"\n", start, start + bulkcompile.CHUNK) + 1 or len(data)
            bulkcompile._LINE.findall(data, start, end)
            start = end

    data = zone.read_bytes()
    for _ in range(COMPONENT_REPEAT):
        timed("regex_s", regex, data)
    del data
    finish = bulkcompile._finish
    entries = 0

    def timed_finish(reader, sink, records, digest):  # sorts copies first, timed
        nonlocal entries
        unsorted = sink.entries[:]
        entries = len(unsorted)
        for _ in range(COMPONENT_REPEAT):
            timed("sort_s", unsorted[:].sort)
        return finish(reader, sink, records, digest)

    bulkcompile._finish = timed_finish
    t0 = time.perf_counter()
    bulk = bulkcompile.compile_bulk(str(zone), origin, node_prefix(origin, 1))
    if bulk is None:
        raise SystemExit("the bulk compile gave up on this zone")
    compile_bulk_s = time.perf_counter() - t0 - sum(times["sort_s"])  # without the copies
    for _ in range(COMPONENT_REPEAT):
        batches = timed("split_s", list, bulk.batches(TRANSFER_TXN_NODES))

    def append(path: Path) -> None:
        env = lmdb.open(str(path), subdir=True, max_dbs=4, map_size=FLOOR_MAP_SIZE)
        db = env.open_db(b"nodes")
        for batch in batches:
            with env.begin(write=True) as txn:
                txn.cursor(db=db).putmulti(batch, append=True)
        env.close()

    for i in range(COMPONENT_REPEAT):
        timed("append_s", append, directory / str(i))
        shutil.rmtree(directory / str(i))
    report: dict = {step: round(min(runs), 3) for step, runs in times.items()}
    report["sum_s"] = round(sum(report.values()), 3)
    report["entries"] = entries
    report["compile_bulk_s"] = round(compile_bulk_s, 3)  # everything but writing
    report["repeat"] = COMPONENT_REPEAT
    return report


def child_memprofile(zone: Path) -> dict:
    """tracemalloc census after parsing: which lines and types hold the memory."""
    import gc
    import linecache
    import tracemalloc

    from keyresolve.protocol.names import Name
    from keyresolve.zonedata.zonefile import load_zone_with_sources

    tracemalloc.start(1)
    parsed, _ = load_zone_with_sources(str(zone), Name.from_text(ORIGIN))
    gc.collect()
    snap = tracemalloc.take_snapshot()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    records = len(parsed)
    nodes = len(parsed.nodes)
    top = []
    for stat in snap.statistics("lineno")[:12]:
        frame = stat.traceback[0]
        path = frame.filename.split("site-packages/")[-1].split("/keyresolve/")[-1]
        top.append({"where": f"{path}:{frame.lineno}",
                    "code": linecache.getline(frame.filename, frame.lineno).strip()[:100],
                    "mb": round(stat.size / 2**20, 1),
                    "bytes_per_record": round(stat.size / records, 1), "blocks": stat.count})
    # bytes per live object kind, measured on one node
    name, node = next(iter(parsed.nodes.items()))
    return {"records": records, "nodes": nodes,
            "traced_after_parse_mb": round(current / 2**20, 1),
            "traced_peak_mb": round(peak / 2**20, 1),
            "traced_bytes_per_record": round(current / records, 1),
            "top_lines": top,
            "example_node": f"{name}: {sorted(node)}"}


def child_order(zone: Path) -> dict:
    """The zone with the same lines, its mailboxes (each owner line with the
    continuation lines after it) in the store's key order after the other
    lines; written beside it once. A child: a parent that held the lines
    would pass its peak RSS on to the children it forks (Linux keeps it in
    their ru_maxrss across exec)."""
    from keyresolve.protocol.names import Name

    out = zone.with_name(zone.stem + "-ordered.zone")
    if out.is_file():
        return {"path": str(out)}
    origin = Name.from_text(ORIGIN)
    domain_keys = {b"": origin.store_key()}
    head: list[bytes] = []  # the other lines, in file order
    blocks: list[tuple[bytes, list[bytes]]] = []  # (owner key, lines) of each mailbox
    lines: list[bytes] = head  # where a continuation line goes: its owner's
    with open(zone, "rb") as f:
        for line in f:
            if line[:1] in b" \t;" or not line.strip():  # continuation, blank, comment
                lines.append(line)
                continue
            if line[:1] == b"$" and blocks:
                raise SystemExit("a directive after the first mailbox: not reordered")
            local, at, domain = line.split(None, 1)[0].partition(b"@")
            if not (at and local):
                lines = head
                head.append(line)
                continue
            key = domain_keys.get(domain)
            if key is None:
                key = domain_keys[domain] = Name.from_text(domain.decode(), origin).store_key()
            lines = [line]
            blocks.append((key + b"@" + local, lines))
    blocks.sort()
    tmp = out.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.writelines(head)
        for _, lines in blocks:
            f.writelines(lines)
    tmp.replace(out)
    return {"path": str(out), "mailboxes": len(blocks)}


# -- parent ------------------------------------------------------------------------------
def run_child(kind: str, *args: str, wrap: list[str] | None = None) -> dict:
    """Run a child on SERVER_CORE; its JSON report (with its peak RSS) and wall time."""
    cmd = [sys.executable, __file__, "--child", kind, *args]
    if wrap:
        cmd = [*wrap, *cmd]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=common.pin_preexec(SERVER_CORE))
    try:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"{kind} child took longer than {CHILD_TIMEOUT} s") from None
    wall = time.perf_counter() - t0
    # the child reports its own ru_maxrss in its JSON (see _child_main)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed ({proc.returncode}):\n{err[-2000:]}")
    # the last JSON line (py-spy, when it wraps the child, prints lines too)
    report = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
    report["process_wall_s"] = round(wall, 3)
    return report


def _median_run(results: list[dict]) -> dict:
    """The run with the median time, with every run's time beside it."""
    ordered = sorted(results, key=lambda r: r["seconds"])
    median = dict(ordered[(len(ordered) - 1) // 2])
    median["all_seconds"] = [r["seconds"] for r in results]
    return median


def serve_compile(zone: Path, workdir: Path) -> dict:
    """`keyresolve serve` with a fresh data dir: start to ready, and VmHWM then."""
    base = workdir / "serve-compile"
    shutil.rmtree(base, ignore_errors=True)
    config = common.write_serve_config(base, zone)
    t0 = time.perf_counter()
    daemon = common.start_serve(config)
    try:
        ready = time.perf_counter() - t0
        mem = memory(daemon.pid)
    finally:
        daemon.stop()
    m = re.search(r"loaded: serial \d+, (\d+) records in ([\d.]+) s", "\n".join(daemon.lines))
    return {"start_to_ready_s": round(ready, 3),
            "compile_logged_s": float(m.group(2)) if m else None,
            "peak_rss_mb": mem.get("VmHWM"), "rss_at_ready_mb": mem.get("VmRSS")}


def profile_compile(zone: Path, workdir: Path, prefix: Path) -> dict:
    """py-spy record of the compile child; the stage summary."""
    pyspy = common.have_pyspy()
    if pyspy is None:
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    raw = prefix.with_suffix(".txt")
    store = workdir / "profile-store"
    shutil.rmtree(store, ignore_errors=True)
    run_child("compile", str(zone), str(store),
              wrap=[pyspy, "record", "--rate", "100", "--format", "raw", "-o", str(raw), "--"])
    if not raw.is_file():
        return {"skipped": "py-spy wrote no profile"}
    shutil.rmtree(store, ignore_errors=True)
    summary = common.profile_summary(raw, COMPILE_STAGES, only=r"^child_compile$")
    summary["collapsed"] = str(raw)  # flamegraph.pl or speedscope read this format
    return summary


def _child_main(kind: str, args: list[str]) -> int:
    import resource

    if kind == "floor":
        report = child_floor(Path(args[0]), Path(args[1]))
    elif kind == "compile":
        report = child_compile(Path(args[0]), Path(args[1]))
    elif kind == "components":
        report = child_components(Path(args[0]), Path(args[1]))
    elif kind == "order":
        report = child_order(Path(args[0]))
    elif kind == "memprofile":
        report = child_memprofile(Path(args[0]))
    else:
        raise SystemExit(f"unknown child {kind}")
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", help="zones and stores (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="floor and compile runs, alternating; the median of each counts")
    parser.add_argument("--no-serve", action="store_true", help="skip the serve start-up run")
    parser.add_argument("--ordered", action="store_true",
                        help="also compile the zone with its mailboxes in key order")
    parser.add_argument("--profile", help="py-spy profile of the compile: path prefix")
    parser.add_argument("--memprofile-keys", type=int, default=100_000,
                        help="zone size of the tracemalloc census (with --profile)")
    parser.add_argument("--src", help="keyresolve tree to measure (default: this repo)")
    parser.add_argument("--json", help="write the report here too")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = common.use_source(args.src)
    if args.child:
        return _child_main(args.child[0], args.child[1:])
    report = common.report_header("compile", root, argv, keys=args.keys)
    started = time.perf_counter()
    with common.workdir(args.workdir) as workdir:
        zone, _ = ensure_zone(workdir, args.keys, args.seed)
        report["zone_mb"] = round(zone.stat().st_size / 2**20, 1)
        stores = {}
        for kind in ("floor", "compile", "components"):
            stores[kind] = workdir / f"store-{kind}"
            shutil.rmtree(stores[kind], ignore_errors=True)
        runs: dict[str, list[dict]] = {"floor": [], "compile": []}
        zones = {"floor": zone, "compile": zone}
        if args.ordered:
            runs["ordered"] = []
            zones["ordered"] = Path(run_child("order", str(zone))["path"])
            stores["ordered"] = workdir / "store-ordered"
        for _ in range(args.repeat):  # alternating, so that drift hits all alike
            for kind, results in runs.items():
                shutil.rmtree(stores[kind], ignore_errors=True)
                child = "compile" if kind == "ordered" else kind
                results.append(run_child(child, str(zones[kind]), str(stores[kind])))
        floor, compiled = (_median_run(runs[kind]) for kind in ("floor", "compile"))
        report["repeat"] = args.repeat
        report["floor"] = floor
        report["compile"] = compiled
        report["time_ratio"] = ratio(compiled["seconds"], floor["seconds"])
        report["time_goal"] = f"<= {GOAL_TIME_RATIO}"
        if args.ordered:
            ordered = report["ordered"] = _median_run(runs["ordered"])
            if ordered["records"] != compiled["records"]:
                raise RuntimeError("the ordered zone compiled to another record count")
            ordered["time_ratio"] = ratio(ordered["seconds"], floor["seconds"])
        report["peak_rss_mb"] = compiled["peak_rss_mb"]
        report["rss_ratio_to_floor"] = ratio(compiled["peak_rss_mb"], floor["peak_rss_mb"])
        report["rss_goal"] = f"<= {GOAL_RSS_MB} MB"
        report["bytes_per_record_peak"] = round(compiled["peak_rss_mb"] * 2**20
                                                / max(1, compiled["records"]))
        parts = run_child("components", str(zone), str(stores["components"]))
        parts["sum_ratio_to_floor"] = ratio(parts["sum_s"], floor["seconds"])
        report["components"] = parts
        if not args.no_serve:
            report["serve"] = serve_compile(zone, workdir)
        if args.profile:
            report["profile"] = profile_compile(zone, workdir, Path(args.profile))
            mem_zone, _ = ensure_zone(workdir, min(args.keys, args.memprofile_keys), args.seed)
            report["memory_census"] = run_child("memprofile", str(mem_zone))
        for path in stores.values():
            shutil.rmtree(path, ignore_errors=True)
        report["elapsed_s"] = round(time.perf_counter() - started, 1)
    common.emit(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
