"""`keyresolve dig` as a dig user types it, against real daemons on loopback."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from keyresolve.daemons.demo import demo_root_hints

from .conftest import b64key, keyresolve_cmd, write_serve_config
from .test_resolver_e2e import build_hierarchy, write_hints

ZONE = f"""$ORIGIN example.com.
$TTL 3600
@            SOA   ns1 hostmaster@example.com. 7 3600 600 604800 300
@            NS    ns1
ns1          ADDR  127.0.0.1:5302
alice@       KEY   x25519 encrypt {b64key(1)}
alice@       KEY   ed25519 sign {b64key(2)}
"""
NO_SERVERS = ";; connection timed out; no servers could be reached"


@pytest.fixture
def config_home(tmp_path):
    """An XDG_CONFIG_HOME of our own: no client.toml unless a test writes one."""
    home = tmp_path / "xdg"
    (home / "keyresolve").mkdir(parents=True)
    return home


@pytest.fixture
def dig(config_home):
    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        env = dict(os.environ, XDG_CONFIG_HOME=str(config_home))
        return subprocess.run(keyresolve_cmd("dig", *args), capture_output=True, text=True,
                              timeout=timeout, env=env)
    return run


@pytest.fixture
def server(tmp_path, start_daemon):
    return start_daemon("serve", "--config",
                        str(write_serve_config(tmp_path, {"example.com": ZONE})))


def test_at_host_and_dash_p(dig, server):
    host, port = server.address
    out = dig("alice@example.com", f"@{host}", "-p", str(port), "+json")
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["answer"]) == 2
    assert dig("alice@example.com", f"-p{port}", f"@{host}", "+json").returncode == 0


def test_at_host_without_a_port_asks_the_default_port(dig):
    out = dig("alice@example.com", "@127.0.0.1", "+timeout=0.2", "+tries=1")
    # whatever holds 5353 here (nothing, mDNS, a demo), the report names it
    assert "127.0.0.1:5353" in out.stdout + out.stderr
    assert out.returncode in (0, 9)


def test_short_prints_only_the_rdata(dig, server):
    out = dig("alice@example.com", f"@{server.address[0]}:{server.address[1]}", "+short")
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.splitlines()) == [f"ed25519 sign {b64key(2)}",
                                               f"x25519 encrypt {b64key(1)}"]


def test_tcp(dig, server):
    at = f"@{server.address[0]}:{server.address[1]}"
    assert ";; SERVER: " in dig("alice@example.com", at).stdout
    assert f";; SERVER: {at[1:]} (UDP)" in dig("alice@example.com", at).stdout
    assert f";; SERVER: {at[1:]} (TCP)" in dig("alice@example.com", at, "+tcp").stdout
    assert f";; SERVER: {at[1:]} (TCP)" in dig("alice@example.com", at, "+vc").stdout


def test_norecurse_clears_rd(dig, server):
    """The server copies RD into its reply: the JSON flags show what was asked."""
    at = f"@{server.address[0]}:{server.address[1]}"
    assert "rd" in json.loads(dig("alice@example.com", at, "+json").stdout)["flags"]
    for option in ("+norecurse", "+norec"):
        flags = json.loads(dig("alice@example.com", at, option, "+json").stdout)["flags"]
        assert "rd" not in flags and "aa" in flags


def test_plus_json(dig, server):
    out = dig("alice@example.com", f"@{server.address[0]}:{server.address[1]}", "+json")
    doc = json.loads(out.stdout)
    assert doc["rcode"] == "NOERROR" and doc["question"]["name"] == "alice@example.com."


def _silent_udp() -> socket.socket:
    """A bound UDP socket nobody reads: queries to it time out (no ICMP refusal)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def test_no_reply_is_digs_timeout_line_with_tries_and_time(dig):
    with _silent_udp() as silent:
        port = silent.getsockname()[1]
        out = dig("alice@example.com", "@127.0.0.1", "-p", str(port), "+timeout=0.5",
                  "+tries=2")
        as_json = dig("alice@example.com", f"@127.0.0.1:{port}", "+timeout=0.5", "+tries=2",
                      "--json")
    assert out.returncode == 9 and out.stderr == ""
    first, second = out.stdout.splitlines()
    assert first == NO_SERVERS
    match = re.fullmatch(rf";; 2 tries to 127\.0\.0\.1:{port} \(UDP\), (\d+) msec in all", second)
    assert match and 1000 <= int(match[1]) < 5000
    assert as_json.returncode == 9 and as_json.stderr == ""
    doc = json.loads(as_json.stdout)
    assert doc["error"] == NO_SERVERS[3:] and doc["tries"] == 2
    assert doc["server"] == f"127.0.0.1:{port}" and 1000 <= doc["elapsed_ms"] < 5000


def test_json_errors_are_a_json_object_on_stdout(dig):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = dig("alice@example.com", f"@127.0.0.1:{port}", "+json")
    assert refused.returncode == 9
    assert json.loads(refused.stdout) == {"error": f"connection refused by 127.0.0.1:{port} (UDP)"}
    for args in (["alice@example.com", "+bogus", "--json"], ["+json"],
                 ["alice@example.com", "--timeout", "x", "+json"],
                 ["alice@example.com", "-y", "nokey", "--json"]):
        out = dig(*args)
        assert out.returncode == 1 and set(json.loads(out.stdout)) == {"error"}, args


def test_usage_errors_exit_1_with_one_line(dig):
    for args in (["alice@example.com", "+bogus"], ["not..a..name"], ["a@b.c", "-p", "0"],
                 ["a@b.c", "@ns1.example.com"]):
        out = dig(*args)
        assert out.returncode == 1 and out.stdout == "", args
        assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith("keyresolve: ")


def test_trace_without_hints_uses_the_installed_demo_hints(dig):
    out = dig("alice@example.com", "+trace")
    assert out.stdout.splitlines()[0] == (
        f";; using the root hints of the installed demo hierarchy: {demo_root_hints()}")
    assert demo_root_hints().is_file()


def test_trace_uses_the_hints_of_client_toml(dig, config_home, tmp_path, start_daemon):
    hierarchy = build_hierarchy(tmp_path, start_daemon)
    hints = write_hints(tmp_path / "mine.hints", [("a.root-servers.", hierarchy.root.address)])
    config = config_home / "keyresolve" / "client.toml"
    config.write_text(f'root_hints = "{Path(os.path.relpath(hints, config.parent))}"\n')
    out = dig("alice@example.com", "+trace")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == (f";; using the root hints named by root_hints in {config}: "
                        f"{config.parent / os.path.relpath(hints, config.parent)}")
    assert "for zone com.: referral, referred to example.com." in out.stdout
    assert "ANSWER: 1" in out.stdout
    doc = json.loads(dig("alice@example.com", "+trace", "+json").stdout)
    assert [s["zone"] for s in doc["trace"]] == [".", "com.", "example.com."]
    assert doc["answer"][0]["type"] == "KEY"
    short = dig("alice@example.com", "+trace", "+short")
    assert short.stdout.splitlines() == [f"x25519 encrypt {b64key(1)}"]


def test_client_toml_server_is_the_default_server(dig, config_home, server):
    config = config_home / "keyresolve" / "client.toml"
    config.write_text(f'server = "127.0.0.1:{server.address[1]}"\n')
    out = dig("alice@example.com", "+short")
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 2, out.stderr


@pytest.mark.parametrize("body,message", [
    ('server = "127.0.0.1"', "server: address '127.0.0.1' must be ip:port"),
    ("server = 5353", 'server: must be an "ip:port" string'),
    ('root_hints = ""', "root_hints: must name a file"),
    ("root_hints = 1", "root_hints: must be a file name"),
    ('resolvers = "127.0.0.1:5353"', "resolvers: unknown setting"),
    ('resolver = "localhost"', "resolver: "),
    ("server = ", "client.toml: "),
])
def test_bad_client_toml_is_a_one_line_error(dig, config_home, body, message):
    config = config_home / "keyresolve" / "client.toml"
    config.write_text(body + "\n")
    out = dig("alice@example.com")
    assert out.returncode == 1 and len(out.stderr.splitlines()) == 1, out.stderr
    assert f"{config}: " in out.stderr and message in out.stderr


def test_missing_hints_named_by_client_toml(dig, config_home):
    config = config_home / "keyresolve" / "client.toml"
    config.write_text('root_hints = "nowhere.hints"\n')
    out = dig("alice@example.com", "+trace")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"named by root_hints in {config}" in out.stderr and "nowhere.hints" in out.stderr


def test_help_lists_types_default_server_and_exit_codes(dig):
    out = dig("--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "TYPE: ADDR, NS, ALIAS, SOA, KEY, ANY" in text and "AXFR or IXFR=SERIAL" in text
    assert "The default server is 127.0.0.1:5353" in text
    for code, meaning in (("0", "a reply arrived"), ("1", "usage error"), ("9", "no reply"),
                          ("10", "internal error")):
        assert f" {code} {meaning}" in text
    for option in ("+short", "+tcp", "+norecurse", "+json", "+trace", "+timeout=S", "+tries=N"):
        assert option in text


def test_a_reader_that_goes_away_ends_dig_quietly(config_home, server):
    """`keyresolve dig ... | head -1`: the pipe closes before dig is done
    writing; dig ends as a shell tool does, with no internal error."""
    host, port = server.address
    env = dict(os.environ, XDG_CONFIG_HOME=str(config_home))
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write
    try:
        out = subprocess.run(keyresolve_cmd("dig", "alice@example.com", f"@{host}", "-p",
                                            str(port)),
                             stdout=write, stderr=subprocess.PIPE, text=True, timeout=60,
                             env=env)
    finally:
        os.close(write)
    assert out.returncode == 1
    assert "internal error" not in out.stderr and "Traceback" not in out.stderr
