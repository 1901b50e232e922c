"""Smoke tests of benchmarks/: tiny runs of each script, checking their reports.

The numbers themselves are not checked (they depend on the machine); the
reports' shape, the generated zone's validity and the profile attribution are.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from keyresolve.files.local import LOCAL_FILES
from keyresolve.zonedata.zonefile import load_zone

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402
import genzone  # noqa: E402
import loadgen  # noqa: E402


def run_script(name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / name), *args], capture_output=True,
                          text=True, timeout=timeout)


def test_genzone_is_valid_deterministic_and_lists_its_mailboxes(tmp_path):
    for run in ("a", "b"):
        done = run_script("genzone.py", "300", "--seed", "7", "--out",
                          str(tmp_path / f"{run}.zone"), "--names", str(tmp_path / f"{run}.txt"))
        assert done.returncode == 0, done.stderr
    text = (tmp_path / "a.zone").read_text()
    assert text == (tmp_path / "b.zone").read_text()
    zone = load_zone(str(tmp_path / "a.zone"), files=LOCAL_FILES)
    keys = [r for r in zone.records() if r.rtype == 25]
    assert len(keys) == 300
    names = (tmp_path / "a.txt").read_text().split()
    owners = {str(r.name) for r in keys}
    assert set(names) == owners and len(names) == len(owners)
    assert any("@" in n and n.count(".") > 2 for n in names)  # some below subdomains
    algorithms = {r.rdata.algorithm.name for r in keys}
    assert algorithms == {"X25519", "ED25519"}
    assert sum(r.rtype == 2 for r in zone.records()) == 2 + genzone.DELEGATIONS


def test_genzone_seed_changes_the_zone(tmp_path):
    with open(tmp_path / "a", "w") as a, open(tmp_path / "b", "w") as b:
        genzone.generate(50, 1, a)
        genzone.generate(50, 2, b)
    assert (tmp_path / "a").read_text() != (tmp_path / "b").read_text()


def test_loadgen_against_the_ceiling_reports_qps_loss_and_latency():
    query = common.build_queries(["alice@example.com."])[0]
    ceiling = common.start_ceiling(b"\x00\x00\x84\x00\x01\x00", duration=30)
    try:
        closed = loadgen.run(ceiling.address, [query], procs=1, window=8, duration=0.4)
        opened = loadgen.run(ceiling.address, [query], rate=500, duration=0.4,
                             keep_latencies=True)
    finally:
        ceiling.stop()
    for report in (closed, opened):
        assert report["answered"] > 0 and report["lost"] == 0 and report["loss"] == 0
        assert report["qps"] > 0 and report["rcodes"] == {"0": report["answered"]}
        assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99.9"]
    assert opened["sent"] == pytest.approx(200, abs=10)  # 500 q/s for 0.4 s
    assert opened["latencies"] == sorted(opened["latencies"])


def test_bench_compile_reports_ratio_and_peak_rss(tmp_path):
    out = tmp_path / "compile.json"
    done = run_script("bench_compile.py", "--keys", "300", "--workdir", str(tmp_path),
                      "--no-serve", "--ordered", "--json", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["compile"]["records"] == 300 + 15  # + SOA, NS and ADDR records
    assert report["ordered"]["records"] == 300 + 15
    assert report["ordered"]["time_ratio"] == pytest.approx(
        report["ordered"]["seconds"] / report["floor"]["seconds"], rel=0.01)
    zone = next(tmp_path.glob("zone-300-*[0-9].zone")).read_bytes().splitlines()
    ordered = next(tmp_path.glob("zone-300-*-ordered.zone")).read_bytes().splitlines()
    assert ordered != zone and sorted(ordered) == sorted(zone)  # the same lines
    apex = [line.split(b"@", 1)[0] for line in ordered
            if len(line.split(b" ", 1)[0]) > 1 and line.split(b" ", 1)[0].endswith(b"@")]
    assert len(apex) > 100 and apex == sorted(apex)  # apex mailboxes: by local part
    assert report["floor"]["lines"] > 300
    assert report["time_ratio"] == pytest.approx(
        report["compile"]["seconds"] / report["floor"]["seconds"], rel=0.01)
    assert report["peak_rss_mb"] > 0 and report["machine"]["nproc"] >= 1
    parts = report["components"]
    zone_lines = [line.decode() for line in zone]
    owners = {line.split()[0] for line in zone_lines if line.split(" ", 1)[0].find("@") > 0}
    assert parts["entries"] == len(owners) > 200  # one node per mailbox
    assert parts["sum_s"] == pytest.approx(
        sum(parts[k] for k in ("regex_s", "sort_s", "split_s", "append_s")), abs=0.002)


def test_bench_auth_reports_every_scenario(tmp_path):
    out = tmp_path / "auth.json"
    done = run_script("bench_auth.py", "--keys", "200", "--sizes", "100", "--duration", "0.3",
                      "--rounds", "2", "--generator", "python", "--breakdown", "100",
                      "--workdir", str(tmp_path),
                      "--workers", "2", "--json", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert [s["keys"] for s in report["sizes"]] == [100, 200]
    # each point with a ceiling loaded right after it, and its ratio
    assert all(s["ceiling_qps"] > 0 and s["ratio"] > 0 for s in report["sizes"])
    main = report["main"]
    throughput = main["throughput"]
    assert throughput["server"]["rcodes"] == {"0": throughput["server"]["answered"]}
    assert throughput["ratio"] > 0 and throughput["basis"]
    # server and ceiling loaded in turn: the figure is the lower of two rounds' ratios
    rounds = throughput["rounds"]
    assert len(rounds) == 2 and throughput["ratio"] == min(r["ratio"] for r in rounds)
    assert throughput["server"]["qps"] in [r["server_qps"] for r in rounds]
    assert all(r[f"{name}_qps"] > 0 for r in rounds for name in ("ceiling", "loop", "bound"))
    bound = throughput["decode_and_lmdb_read_bound"]  # found every node it read (SERVFAIL if not)
    assert bound["answered"] > 0 and bound["rcodes"] == {"0": bound["answered"]}
    assert throughput["bound_vs_ceiling"] > 0
    for key in ("server", "ceiling", "trio_loop_ceiling"):
        assert main["latency"][key]["latency_ms"]["p99"] > 0
    assert 0 < main["restart"]["first_answer_s"] < 30 and main["restart"]["ready_s"] > 0
    assert main["rss"]["server_mb"]["VmRSS"] > main["rss"]["ceiling_mb"]["VmRSS"] > 0
    breakdown = main["breakdown_us_per_query"]
    assert all(isinstance(v, float) for k, v in breakdown.items() if k != "queries"), breakdown
    assert sum(key.startswith("least of any fast path") for key in breakdown) == 2
    [two] = report["workers"]["runs"]
    assert two["workers"] == 2 and len(two["rss_mb"]) == 2
    assert len(two["messages_per_process"]) == 2 and two["server_cpu_us_per_answer"] > 0


def test_bench_auth_throughput_only_skips_the_rest(tmp_path):
    out = tmp_path / "auth.json"
    done = run_script("bench_auth.py", "--keys", "150", "--query-sample", "150", "--duration",
                      "0.3", "--rounds", "1", "--throughput-only", "--generator", "python",
                      "--rrl", "2", "--workdir", str(tmp_path), "--json", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    main = report["main"]
    throughput = main["throughput"]
    assert len(throughput["rounds"]) == 1 and throughput["ratio"] == throughput["rounds"][0]["ratio"]
    assert throughput["decode_and_lmdb_read_bound"]["answered"] > 0
    assert not {"latency", "restart", "rss", "breakdown_us_per_query"} & main.keys()
    # rate limiting on (far above the load) against off, same run: nothing limited
    rrl = report["rrl"]
    assert len(rrl["rounds"]) == 2 and rrl["ratio"] in [r["ratio"] for r in rrl["rounds"]]
    assert rrl["limited"] == [] and rrl["basis"]
    in_process = rrl["in_process_us_per_answer"]  # handle() alone, off and on
    assert in_process["off"] > 0 and in_process["on"] > 0 and in_process["ratio"] > 0
    for name in ("on", "off"):
        assert rrl[name]["answered"] > 0 and rrl[name]["rcodes"] == {"0": rrl[name]["answered"]}


def test_use_source_writes_the_trees_bytecode_cache(tmp_path, monkeypatch):
    package = tmp_path / "keyresolve"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "store.py").write_text("VALUE = 1\n")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("PYTHONPATH", "")
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert common.use_source(tmp_path) == tmp_path.resolve()
    cached = {p.name.split(".")[0] for p in (package / "__pycache__").glob("*.pyc")}
    assert cached == {"__init__", "store"}
    assert sys.path[0] == str(tmp_path.resolve())


def test_profile_summary_gives_each_sample_to_its_deepest_stage(tmp_path):
    raw = tmp_path / "p.txt"
    raw.write_text("main (a.py:1);handle (b.py:2);decode (c.py:3) 6\n"
                   "main (a.py:1);handle (b.py:2) 3\n"
                   "other_thread (t.py:1) 5\n"
                   "main (a.py:1);helper (d.py:9) 1\n")
    summary = common.profile_summary(raw, [(r"^handle$", "glue"), (r"^decode$", "decode")],
                                     only=r"^main$")
    assert summary["samples"] == 10
    assert summary["by_stage_pct"] == {"decode": 60.0, "glue": 30.0, "other": 10.0}
    assert summary["inclusive_pct"]["glue"] == 90.0


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert common.percentile(values, 50) == 50
    assert common.percentile(values, 99) == 99
    assert common.percentile(values, 99.9) == 100
    assert common.percentile([], 50) is None


def test_rounds_alternate_their_order():
    import bench_auth

    orders = [bench_auth.round_order(k) for k in range(4)]
    assert all(sorted(order) == sorted(bench_auth.ROUND_TARGETS) for order in orders)
    assert orders[0] == orders[2] == bench_auth.ROUND_TARGETS
    assert orders[1] == orders[3] == tuple(reversed(bench_auth.ROUND_TARGETS))


#: dnsperf 2.10.0 (Debian bookworm) against a server that answered NOERROR,
#: NXDOMAIN and SERVFAIL and dropped one query in 50; the time limit ended it.
DNSPERF_OUTPUT = """\
DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -B -s 127.0.0.1 -p 5300 -d q.bin -l 1 -n 150 -q 4 -t 1 -c 1 -T 1
[Status] Sending queries (to 127.0.0.1:5300)
[Status] Started at: Sun Dec  6 20:04:08 2026
[Status] Stopping after 1.000000 seconds or 150 runs through file
[Timeout] Query timed out: msg id 49
[Timeout] Query timed out: msg id 99
[Timeout] Query timed out: msg id 149
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         183
  Queries completed:    180 (98.36%)
  Queries lost:         3 (1.64%)

  Response codes:       NOERROR 106 (58.89%), SERVFAIL 37 (20.56%), NXDOMAIN 37 (20.56%)
  Average packet size:  request 33, response 6
  Run time (s):         1.000183
  Queries per second:   179.967066

  Average Latency (s):  0.000061 (min 0.000016, max 0.001630)
  Latency StdDev (s):   0.000131

"""


def test_dnsperf_output_is_parsed_from_a_recorded_run():
    import bench_auth

    assert bench_auth.parse_dnsperf(DNSPERF_OUTPUT) == {
        "sent": 183, "answered": 180, "lost": 3, "loss": round(1 - 180 / 183, 5),
        "qps": 179.967066, "duration": 1.000183, "avg_latency_ms": 0.061,
        "rcodes": {"NOERROR": 106, "SERVFAIL": 37, "NXDOMAIN": 37}}
    with pytest.raises(ValueError):
        bench_auth.parse_dnsperf(DNSPERF_OUTPUT.split("Statistics:")[0])


def _ci() -> bool:
    return os.environ.get("CI") == "true"  # as .ci/run, which installs dnsperf then


@pytest.mark.skipif(shutil.which("dnsperf") is None and not _ci(),
                    reason="dnsperf is not installed (CI installs it: .ci/run)")
def test_dnsperf_output_is_parsed(tmp_path):
    """The live run: the command line and this dnsperf's output format. In
    CI (CI=true) a missing dnsperf fails it rather than skipping it."""
    import bench_auth

    assert shutil.which("dnsperf"), "dnsperf is not installed; .ci/run installs it as root"
    queries = common.build_queries(["alice@example.com."])
    qfile = tmp_path / "q.bin"
    common.write_query_file(qfile, queries)
    ceiling = common.start_ceiling(b"\x00\x00\x84\x03\x01\x00", duration=30)
    try:
        report = bench_auth.run_dnsperf(ceiling.address, qfile, 1, 1, 4, 300)
    finally:
        ceiling.stop()
    assert report["sent"] == report["answered"] == 300  # the count bound ends it
    assert report["rcodes"] == {"NXDOMAIN": 300} and report["qps"] > 0


def test_bench_resolver_reports_cache_hits_and_cold_latency(tmp_path):
    out = tmp_path / "resolver.json"
    done = run_script("bench_resolver.py", "--keys", "200", "--warm-names", "100", "--cold", "20",
                      "--duration", "0.3", "--generator", "python", "--workdir", str(tmp_path),
                      "--flood", "300", "--flood-cache", "50", "--flood-samples", "3",
                      "--json", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    cold = report["cold"]
    assert cold["cold"]["rcodes"] == {"0": 20} == cold["direct_example_1_exchange"]["rcodes"]
    assert cold["delegations_cached"]["rcodes"] == {"0": 19}
    assert 0 < cold["direct_example_1_exchange"]["latency_ms"]["p50"] < cold["cold"][
        "latency_ms"]["p99"]
    assert cold["p50_ratio_to_1_direct"] > 0 and isinstance(cold["met"], bool)
    assert report["warm_up"]["answered"] == 100 and report["warm_up"]["rcodes"] == {"0": 100}
    hits = report["cache_hits"]
    assert hits["resolver"]["rcodes"] == {"0": hits["resolver"]["answered"]} != {"0": 0}
    assert hits["ratio"] > 0 and hits["basis"] and hits["ceiling"]["answered"] > 0
    flood = report["flood"]  # every unique name NXDOMAIN, RSS sampled before and per chunk
    assert flood["rcodes"] == {"3": 300} and flood["cache_size"] == 50
    assert [point["names"] for point in flood["rss_mb"]] == [0, 100, 200, 300]
    assert all(point["VmRSS"] > 0 for point in flood["rss_mb"])
    assert flood["bytes_per_held_entry"] is not None


def test_bench_xfr_reports_transfer_and_change_propagation(tmp_path):
    out = tmp_path / "xfr.json"
    done = run_script("bench_xfr.py", "--keys", "300", "--baseline-keys", "50", "--changes", "1",
                      "--workdir", str(tmp_path), "--json", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    main = report["main"]
    full = main["full_transfer"]
    assert main["compile"]["records"] == 300 + 15
    assert full["records"] == 300 + 16  # the SOA opens and closes the stream
    assert full["answers_compared"]["differ"] == 0 and full["answers_compared"]["names"] > 0
    assert full["ratio_to_compile"] == pytest.approx(
        full["secondary_start_to_transferred_s"] / full["compile_s"], rel=0.01)
    # the kernel batches RSS counters per thread: VmRSS may lead VmHWM by ~0.25 MB
    assert full["secondary_mb"]["growth"]["peak_mb"] >= -1
    (change,) = main["change"]["runs"]
    assert change["kind"] == "incremental" and change["serial"] == 2026010102
    assert 0 < change["propagation_ms"] < change["propagation_from_sighup_ms"]
    during = change["primary_answers_during_reload"]
    assert during["probes"] > 0 and during["lost"] == 0 and during["max_ms"] > 0
    assert main["change"]["ratio_to_baseline"] > 0


def test_bench_registry_reports_confirmations_floor_and_propagation(tmp_path):
    out = tmp_path / "registry.json"
    done = run_script("bench_registry.py", "--keys", "200", "--confirmations", "8",
                      "--latency-confirmations", "5", "--rate", "20", "--workdir",
                      str(tmp_path), "--json", str(out), timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["confirmations_per_second"] > 0 and report["floor_per_second"] > 0
    assert report["ratio"] == pytest.approx(
        report["confirmations_per_second"] / report["floor_per_second"], rel=0.01)
    latency = report["to_secondary_ms"]
    assert latency["count"] == 5 and 0 < latency["p50"] <= latency["p99"] <= latency["max"]


def test_bench_seal_reports_ratios_rss_and_recipients(tmp_path):
    out = tmp_path / "seal.json"
    done = run_script("bench_seal.py", "--size-mib", "1", "--recipients", "5", "--rounds", "1",
                      "--json", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    speed = report["throughput"]["mib_per_s_median"]
    # the report rounds ratios to 3 decimals (common.ratio): a small ratio
    # (0.019 for 0.0193) is off by more than 1% of itself, never by 0.0005
    assert report["throughput"]["seal_ratio"] == pytest.approx(
        speed["seal"] / speed["bare-seal"], rel=0.01, abs=0.0005)
    assert report["throughput"]["open_ratio"] == pytest.approx(
        speed["open"] / speed["bare-open"], rel=0.01, abs=0.0005)
    assert all(mb > 5 for mb in report["throughput"]["peak_rss_mb_max"].values())
    for kind in ("x25519", "hybrid"):
        assert report["recipients"][kind]["ratio"] > 0
    assert set(report["goals"]) == {"seal_ratio", "open_ratio", "peak_rss_mb", "recipients_ratio"}


def test_bench_client_reports_whole_command_latencies(tmp_path):
    out = tmp_path / "client.json"
    done = run_script("bench_client.py", "--runs", "1", "--workdir", str(tmp_path), "--json",
                      str(out), timeout=180)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())["seal"]
    for series in ("fetch", "ring", "floor"):
        assert report[series]["runs"] == 1
        assert 0 < report[series]["p50_ms"] <= report[series]["p99_ms"]
    from keyresolve.store.keyring import KeyRing

    with KeyRing(tmp_path / "ring-0") as ring:  # a fresh ring each run: the key was fetched
        assert [e.source for e in ring.get("alice@example.com")] == ["fetched"] * 2


def test_xfr_ab_compares_both_sides_of_a_transfer_in_process(tmp_path):
    zone, out = tmp_path / "z.zone", tmp_path / "ab.json"
    with open(zone, "w") as f:
        genzone.generate(200, 1, f)
    root = BENCH.parent  # the other tree: this one, copied under another name
    done = run_script("xfr_ab.py", "--other", str(root), "--zone", str(zone), "--rounds", "2",
                      "--json", str(out), "--profile", str(tmp_path / "prof"))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["same_bytes"] and report["messages"] >= 1
    for name in ("this", "other"):
        assert [len(report["cpu_s"][name][step]) for step in ("send", "apply")] == [2, 2]
    assert report["ratio_median"]["send"] > 0 and report["ratio_median"]["apply"] > 0
    assert len(list((tmp_path / "prof").glob("*.prof"))) == 4
    done = run_script("xfr_ab.py", "--other", str(root), "--zone", str(zone), "--one", "other",
                      "--step", "send", "--reps", "2")
    assert done.returncode == 0 and "other: send x 2 done" in done.stdout, done.stderr


def test_xfr_cpu_reports_both_daemons_cpu_for_a_full_transfer(tmp_path):
    zone, out = tmp_path / "z.zone", tmp_path / "cpu.json"
    with open(zone, "w") as f:
        genzone.generate(200, 1, f)
    done = run_script("xfr_cpu.py", "--zone", str(zone), "--runs", "2", "--json", str(out))
    assert done.returncode == 0, done.stderr
    runs = json.loads(out.read_text())
    assert len(runs) == 2
    for run in runs:
        assert run["secondary_cpu_s"] >= 0 and run["primary_cpu_s"] >= 0
        assert "full, serial none -> " in run["logged"] and " 216 records" in run["logged"]
        assert run["secondary_io"]["write_bytes"] >= 0
