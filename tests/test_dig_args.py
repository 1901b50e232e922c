"""dig's argument language, parsed without sockets (keyresolve.cli.dig.parse_dig_args)."""

from __future__ import annotations

import json

import pytest

from keyresolve.protocol.codes import RType
from keyresolve.cli.dig import (DEFAULT_PORT, DEFAULT_SERVER, MAX_TRIES, DigArgs, DigUsageError,
                            parse_dig_args, short_lines, timeout_json, timeout_text,
                            trace_entry_json, trace_entry_text)
from keyresolve.protocol.message import Question
from keyresolve.protocol.names import Name
from keyresolve.resolver.resolution import TraceEntry, TraceOutcome
from keyresolve.protocol.records import KEY, Record

from .conftest import b64key

ALICE = Name.from_text("alice@example.com")


def test_the_documented_default_port_is_the_default_servers():
    assert DEFAULT_PORT == 5353 and DEFAULT_SERVER == ("127.0.0.1", 5353)


@pytest.mark.parametrize("line,expected", [
    ("alice@example.com", DigArgs(ALICE)),
    ("alice@example.com @127.0.0.1", DigArgs(ALICE, server=("127.0.0.1", DEFAULT_PORT))),
    ("alice@example.com @127.0.0.1 -p 5300", DigArgs(ALICE, server=("127.0.0.1", 5300))),
    ("alice@example.com -p5300 @127.0.0.1", DigArgs(ALICE, server=("127.0.0.1", 5300))),
    ("alice@example.com @127.0.0.1:5300 -p 5300", DigArgs(ALICE, server=("127.0.0.1", 5300))),
    ("alice@example.com -p 5300", DigArgs(ALICE, server=("127.0.0.1", 5300))),
    ("alice@example.com @localhost", DigArgs(ALICE, server=("127.0.0.1", DEFAULT_PORT))),
    ("alice@example.com @::1", DigArgs(ALICE, server=("::1", DEFAULT_PORT))),
    ("alice@example.com @[::1]", DigArgs(ALICE, server=("::1", DEFAULT_PORT))),
    ("alice@example.com @[::1]:5300", DigArgs(ALICE, server=("::1", 5300))),
    ("alice@example.com @::1 -p 5300", DigArgs(ALICE, server=("::1", 5300))),
    ("alice@example.com ADDR +short", DigArgs(ALICE, rtype=RType.ADDR, short=True)),
    ("+short alice@example.com key", DigArgs(ALICE, short=True)),
    ("alice@example.com +trace +tcp +json", DigArgs(ALICE, trace=True, tcp=True, json=True)),
    ("alice@example.com +vc", DigArgs(ALICE, tcp=True)),
    ("alice@example.com +norecurse", DigArgs(ALICE, recurse=False)),
    ("alice@example.com +norec", DigArgs(ALICE, recurse=False)),
    ("alice@example.com +norec +rec", DigArgs(ALICE, recurse=True)),
    ("alice@example.com +tcp +notcp", DigArgs(ALICE, tcp=False)),
    ("alice@example.com +nojson", DigArgs(ALICE, json=False)),
    ("alice@example.com +timeout=1 +tries=2", DigArgs(ALICE, timeout=1.0, tries=2)),
    ("alice@example.com +time=0.5 +tri=1", DigArgs(ALICE, timeout=0.5, tries=1)),
    ("alice@example.com +retry=0", DigArgs(ALICE, tries=1)),
    ("alice@example.com +retry=4", DigArgs(ALICE, tries=5)),
    ("alice@example.com +tries=3 +retry=0", DigArgs(ALICE, tries=1)),  # the last one wins
    ("alice@example.com +SHORT", DigArgs(ALICE, short=True)),
    ("example.com IXFR=7", DigArgs(Name.from_text("example.com"), rtype=RType.IXFR, serial=7)),
    ("example.com axfr", DigArgs(Name.from_text("example.com"), rtype=RType.AXFR)),
    ("alice@example.com TYPE99", DigArgs(ALICE, rtype=99)),
])
def test_dig_command_lines(line, expected):
    assert parse_dig_args(line.split()) == expected


def test_without_at_the_default_server_is_the_callers():
    assert parse_dig_args(["a@b.c"], ("10.0.0.5", 5400)).server == ("10.0.0.5", 5400)
    assert parse_dig_args(["a@b.c", "-p", "1"], ("10.0.0.5", 5400)).server == ("10.0.0.5", 1)
    assert parse_dig_args(["a@b.c", "@::1"], ("10.0.0.5", 5400)).server == ("::1", 5353)


@pytest.mark.parametrize("line,message", [
    ("", "missing NAME"),
    ("+short", "missing NAME"),
    ("alice@example.com +bogus", "unknown option +bogus"),
    ("alice@example.com +t", "+t is ambiguous: +trace, +tcp, +timeout, +tries"),
    ("alice@example.com +tr", "+tr is ambiguous: +trace, +tries"),
    ("alice@example.com +short=1", "+short takes no value"),
    ("alice@example.com +timeout", "write +timeout=N"),
    ("alice@example.com +notimeout=1", "unknown option +notimeout"),
    ("alice@example.com +timeout=0", "+timeout needs seconds above 0"),
    ("alice@example.com +timeout=-1", "+timeout needs seconds above 0"),
    ("alice@example.com +timeout=abc", "+timeout needs seconds above 0"),
    ("alice@example.com +timeout=nan", "+timeout needs seconds above 0"),
    ("alice@example.com +timeout=301", "at most 300"),
    ("alice@example.com +tries=0", "+tries needs a whole number 1..100"),
    (f"alice@example.com +tries={MAX_TRIES + 1}", "+tries needs a whole number 1..100"),
    ("alice@example.com +retry=-1", "+retry needs a whole number 0..99"),
    ("alice@example.com -p", "-p needs a port"),
    ("alice@example.com -p 0", "-p: the port must be 1..65535, not '0'"),
    ("alice@example.com -p 65536", "-p: the port must be 1..65535"),
    ("alice@example.com -p x", "-p: the port must be 1..65535, not 'x'"),
    ("alice@example.com -q", "unknown option '-q'"),
    ("alice@example.com @ns1.example.com", "the server must be an IP address"),
    ("alice@example.com @127.0.0.1:", "the port must be 1..65535"),
    ("alice@example.com @127.0.0.1:99999", "the port must be 1..65535"),
    ("alice@example.com @[::1", "write @[IPV6] or @[IPV6]:PORT"),
    ("alice@example.com @[127.0.0.1]", "brackets are for IPv6 addresses"),
    ("alice@example.com @127.0.0.1:5300 -p 5301", "two ports: -p 5301 and @127.0.0.1:5300"),
    ("alice@example.com MX", "unknown record type 'MX' (types: ADDR, NS, ALIAS, SOA, KEY"),
    ("alice@example.com KEY extra", "unexpected argument 'extra'"),
    ("example.com IXFR", "write IXFR=SERIAL"),
    ("example.com IXFR=x", "IXFR=SERIAL needs a serial"),
    ("not..a..name", "NAME 'not..a..name'"),
])
def test_bad_dig_command_lines_are_one_line_usage_errors(line, message):
    with pytest.raises(DigUsageError) as info:
        parse_dig_args(line.split())
    assert message in str(info.value) and "\n" not in str(info.value)


def test_short_lines_are_the_rdata():
    rdata = KEY.from_text(["x25519", "encrypt", b64key(1)])
    record = Record(ALICE, RType.KEY, 60, rdata)
    assert short_lines([record]) == [f"x25519 encrypt {b64key(1)}"]


def test_timeout_report_names_the_tries_and_the_time():
    assert timeout_text(("127.0.0.1", 5300), 2, 2.0031, False).splitlines() == [
        ";; connection timed out; no servers could be reached",
        ";; 2 tries to 127.0.0.1:5300 (UDP), 2003 msec in all"]
    assert timeout_text(("::1", 5300), 1, 0.5, True).splitlines()[1] == (
        ";; 1 try to [::1]:5300 (TCP), 500 msec in all")
    assert timeout_json(("127.0.0.1", 5300), 2, 2.0031, False) == {
        "error": "connection timed out; no servers could be reached",
        "server": "127.0.0.1:5300", "tcp": False, "tries": 2, "elapsed_ms": 2003.1}


@pytest.mark.parametrize("outcome", list(TraceOutcome))
def test_trace_lines_print_each_outcome_as_its_word(outcome):
    """`TraceEntry.outcome` is an enum; --trace text and JSON show its word."""
    step = TraceEntry(depth=1, question=Question(Name.from_text("a@example.com."), RType.KEY),
                      server=("192.0.2.1", 53), server_name=Name.from_text("ns1.example.com."),
                      zone_cut=Name.from_text("example.com."), outcome=outcome, rtt=0.0125,
                      detail="why")
    word = {"ANSWER": "answer", "ALIAS": "alias", "NXDOMAIN": "nxdomain", "NODATA": "nodata",
            "REFERRAL": "referral", "TRUNCATED": "truncated", "TIMEOUT": "timeout",
            "ERROR": "error"}[outcome.name]
    assert trace_entry_text(step) == (
        f";;   a@example.com. KEY -> asked ns1.example.com. (192.0.2.1:53) for zone "
        f"example.com.: {word} in 12.5 ms (why)")
    doc = trace_entry_json(step)
    assert json.dumps(doc["outcome"]) == f'"{word}"' and type(doc["outcome"]) is str
