"""Short runs of the hostile drivers in fuzz/ (fuzz/README.md): each must run
cases of every kind selected and find nothing; and the drivers' own
machinery (findings, reproducers, replay, seeds) must work."""

from __future__ import annotations

import json

import pytest

from fuzz import cli, daemons, mutate, zonefile
from fuzz.core import Options
from fuzz.daemons import Servers

#: The cases each short run selects: every case of every driver.
SHORT_RUNS = {
    "udp": (["bitflip", "truncate", "extend", "lengths", "types", "nesting", "header",
             "noise", "forged", "valid"], 20, {"batch": 40}),
    "tcp": (["idle", "slowloris", "midframe", "reset", "oversized", "zerolen", "pipeline",
             "junk", "stopread", "flood"], 10, {"conns": 50, "flood": 700, "hold": 12.0}),
    "hmac": (["wrongmac", "truncmac", "longmac", "wrongkey", "wrongalg", "badtime",
              "tampered", "idswap", "replay", "replay-strict", "transfer", "private"], 36, {}),
    "zonefile": (["lines", "tokens", "bytes", "directives", "huge", "cli",
                  "include-escape"], 28, {}),
    "crash": (["reload", "transfer", "orphan", "converge", "resync"], 5, {"keys": 2000}),
}


@pytest.mark.parametrize("driver", list(SHORT_RUNS))
def test_short_run_finds_nothing(driver, tmp_path):
    cases, count, extra = SHORT_RUNS[driver]
    run = cli.run(Options(driver=driver, seconds=30, count=count, seed=17, cases=cases,
                          out=tmp_path / "findings", extra=extra, quiet=True))
    assert [f.line() for f in run.findings] == []
    assert run.total == count  # bounded by the count, not cut short by the clock
    assert all(run.counts[case] > 0 for case in cases), run.counts
    assert not (tmp_path / "findings").exists()


def test_a_finding_is_reported_saved_and_replayed(tmp_path, monkeypatch, capsys):
    real = zonefile.check_zone

    def broken(path, origin=None, *, files):  # a checker with a bug, for the mutated files
        if path.endswith("fuzzcase.zone"):
            raise RuntimeError("checker bug")
        return real(path, origin, files=files)

    monkeypatch.setattr(zonefile, "check_zone", broken)
    out = tmp_path / "findings"
    assert cli.main(["zonefile", "--seed", "5", "--count", "3", "--cases", "lines",
                     "--out", str(out), "--quiet"]) == 1
    lines = capsys.readouterr().out.splitlines()
    found = [line for line in lines if line.startswith("FINDING zonefile/lines")]
    assert found and "zone check raised RuntimeError: checker bug" in found[0]
    assert lines[-1].endswith("3 cases (lines 3) in " + lines[-1].split(" in ")[1])
    saved = sorted(out.glob("zonefile-lines-seed5-*.json"))
    assert len(saved) == 1 and str(saved[0]) in found[0]  # reported once, not per case
    doc = json.loads(saved[0].read_text())
    assert doc["seed"] == 5 and doc["text"] and doc["seed_file"]
    assert cli.main(["replay", str(saved[0]), "--out", str(tmp_path / "again")]) == 1
    assert "zone check raised RuntimeError" in capsys.readouterr().out


def test_a_killed_daemon_and_a_lost_answer_are_findings(tmp_path, monkeypatch):
    monkeypatch.setattr(daemons, "CHECK_TRIES", 1)
    monkeypatch.setattr(daemons, "RECOVERY_WAIT", 1.0)
    with Servers(tmp_path) as servers:
        assert servers.problems() == [] and servers.check() == []
        servers.resolver.kill()
        assert servers.problems()[0].startswith("resolver died (exit -9)")
        servers.serve.signal(19)  # SIGSTOP: alive, but answering nothing
        try:
            failed = servers.check(tcp=False)
        finally:
            servers.serve.signal(18)  # SIGCONT
    assert failed == ["serve no longer answers the known-good query over UDP: no UDP reply "
                      "in 1 tries of 2 s (still failing after 1 s)"]


def test_a_seed_gives_the_same_cases(tmp_path, monkeypatch):
    monkeypatch.setattr(mutate.time, "time", lambda: 1_800_000_000.0)  # signatures' clock

    def packets(seed):
        run = cli.Run(Options(driver="udp", seed=seed, out=tmp_path), cli.driver_module(
            "udp").CASES)
        out = []
        for _ in range(18):
            case, _, rng = run.next_case()
            out.append(mutate.MUTATORS[case][0](rng, mutate.valid_query(rng)))
        return out

    assert packets(3) == packets(3)
    assert packets(3) != packets(4)
