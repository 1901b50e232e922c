"""The CLI end to end: dig --trace, cache flush, demo, resolver config errors."""

from __future__ import annotations

import base64
import json
import re
import shutil
import socket
import subprocess

import pytest

from keyresolve.protocol.codes import Rcode, RType
from keyresolve.protocol.transport import parse_endpoint
from keyresolve.daemons.demo import demo_zones_dir, rewrite_endpoints
from keyresolve.protocol.message import make_query
from keyresolve.protocol.names import Name

from .conftest import ask, keyresolve_cmd
from .test_resolver_e2e import build_hierarchy, resolve, start_resolver, write_hints

def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(keyresolve_cmd(*args), capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def hierarchy(tmp_path, start_daemon):
    """root -> com -> example.com as three real daemons, and a resolver."""
    return build_hierarchy(tmp_path, start_daemon)


def test_dig_trace_walks_from_the_root(hierarchy, tmp_path):
    hints = write_hints(tmp_path / "trace.hints", [("a.root-servers.", hierarchy.root.address)])
    out = run("dig", "alice@example.com", "--trace", "--root-hints", str(hints), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    steps = [(s["zone"], s["outcome"], s["referral"]) for s in doc["trace"]]
    assert steps == [(".", "referral", "com."), ("com.", "referral", "example.com."),
                     ("example.com.", "answer", None)]
    assert all(s["rtt_ms"] is not None for s in doc["trace"])
    assert doc["rcode"] == "NOERROR" and doc["answer"][0]["type"] == "KEY"
    text = run("dig", "alice@example.com", "--trace", "--root-hints", str(hints))
    assert "for zone com.: referral, referred to example.com." in text.stdout
    assert " ms" in text.stdout and "ANSWER: 1" in text.stdout


def test_cache_flush_cli(hierarchy):
    at = f"{hierarchy.resolver.address[0]}:{hierarchy.resolver.address[1]}"
    assert resolve(hierarchy.resolver, "alice@example.com").answer
    hierarchy.example.stop()
    out = run("cache", "flush", "alice@example.com", "--resolver", at)
    assert out.returncode == 0 and "flushed alice@example.com." in out.stdout
    assert resolve(hierarchy.resolver, "alice@example.com").rcode == Rcode.SERVFAIL
    assert run("cache", "flush", "--resolver", at).stdout.strip() == "flushed the whole cache"


def test_cache_flush_with_control_key(tmp_path, start_daemon, hierarchy):
    """Only a key in control_keys flushes; a refused flush leaves the cache as it was."""
    secret = base64.b64encode(bytes(range(32))).decode()
    other = base64.b64encode(bytes(range(32, 64))).decode()
    keys = (f'control_keys = ["ops"]\n[keys.ops]\nalgorithm = "hmac-sha256"\nsecret = "{secret}"\n'
            f'[keys.reader]\nalgorithm = "hmac-sha256"\nsecret = "{other}"\n')
    resolver = start_resolver(start_daemon, tmp_path / "keyed",
                              [("a.root-servers.", hierarchy.root.address)], extra=keys)
    at = f"{resolver.address[0]}:{resolver.address[1]}"
    assert resolve(resolver, "alice@example.com").answer
    hierarchy.example.stop()  # from now on alice is answered from the cache or not at all
    out = run("cache", "flush", "--resolver", at, "-y", f"reader:{other}")
    assert out.returncode != 0 and "REFUSED" in out.stderr
    wrong = base64.b64encode(bytes(32)).decode()
    out = run("cache", "flush", "--resolver", at, "-y", f"ops:{wrong}")
    assert out.returncode != 0 and "BADSIG" in out.stderr
    assert resolve(resolver, "alice@example.com").answer
    assert run("cache", "flush", "--resolver", at, "-y", f"ops:{secret}").returncode == 0
    assert resolve(resolver, "alice@example.com").rcode == Rcode.SERVFAIL


@pytest.mark.parametrize("body,key", [
    ('root_hints = "h"', "listen"),
    ('listen = ["127.0.0.1:0"]', "root_hints"),
    ('listen = ["127.0.0.1:0"]\nroot_hints = "h"\ncache_size = 0', "cache_size"),
    ('listen = ["127.0.0.1:0"]\nroot_hints = "h"\ncontrol_keys = ["nokey"]', "control_keys"),
    ('listen = ["127.0.0.1:0"]\nroot_hints = "h"\n[[servers]]\naddress = "127.0.0.1:1"\n'
     'key = "nokey"', "servers[0].key"),
])
def test_resolver_config_errors(tmp_path, body, key):
    config = tmp_path / "r.toml"
    config.write_text(body + "\n")
    out = run("resolver", "--config", str(config))
    assert out.returncode != 0 and key in out.stderr and "Traceback" not in out.stderr


def test_missing_root_hints_is_a_clear_error(tmp_path):
    config = tmp_path / "r.toml"
    config.write_text('listen = ["127.0.0.1:0"]\nroot_hints = "missing.hints"\n')
    out = run("resolver", "--config", str(config))
    assert out.returncode != 0 and "missing.hints" in out.stderr
    assert "Traceback" not in out.stderr


def test_demo_check_resolves_every_demo_key():
    out = run("demo", "--check", "--ports", "auto", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "all demo keys resolved"
    assert any(line.startswith("ok   carol@eng.example.com.") for line in lines)
    assert any("alice-at-com@example.org. via alice@example.com." in line for line in lines)
    assert any(line.startswith("ok   secondary example.com-2 serves example.com.")
               for line in lines)
    assert not any(line.startswith("FAIL") for line in lines)


def test_demo_serves_until_sigterm_and_its_banner_commands_work(start_daemon, tmp_path):
    """On free ports: every command the banner suggests runs as printed."""
    banner = tmp_path / "banner.txt"
    demo = start_daemon("demo", "--ports", "auto", stdout=banner)
    lines = banner.read_text().splitlines()
    table = {line.split()[0]: line.split()[1] for line in lines[1:lines.index("")]}
    assert len(table) == 9 and set(table.values()) == {f"{h}:{p}" for h, p in demo.addresses}
    resolver = parse_endpoint(table["resolver"])
    reply = ask(resolver, make_query(Name.from_text("bob@example.com"), RType.KEY, rd=True))
    assert reply.rcode == Rcode.NOERROR and reply.answer
    commands = [line.split("#")[0].split()[1:] for line in lines
                if line.strip().startswith("keyresolve dig ")]
    assert len(commands) == 6
    for args in commands:
        assert all(a[1:] in table.values() for a in args if a.startswith("@"))
        out = run(*args, timeout=30)
        assert out.returncode == 0 and "NOERROR" in out.stdout, (args, out.stdout, out.stderr)
    running = len(demo.lines)
    assert not any("messages handled" in line for line in demo.lines)  # counted at the end
    assert demo.stop() == 0
    assert any("messages handled" in line for line in demo.lines[running:])


def test_a_busy_fixed_port_is_a_clear_error_that_points_to_auto():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        try:
            holder.bind(("127.0.0.1", 5353))
        except OSError:
            pass  # already busy (mDNS, a demo): as good
        out = run("demo", "--check", timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert re.fullmatch(r"keyresolve: cannot listen on 127\.0\.0\.1:53\d\d: .+ "
                        r"\(--ports auto picks free ones\)", out.stderr.strip().splitlines()[-1])


def test_demo_zones_option_and_a_missing_file_is_one_clear_line(tmp_path):
    """--zones DIR serves DIR; a file demo.toml names but DIR lacks is named,
    as a plain path, on one line (with --ports auto: before the rewritten copy)."""
    zones = tmp_path / "my zones"
    shutil.copytree(demo_zones_dir(), zones)
    (zones / "root.hints").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = keyresolve_cmd("demo", "--check", "--ports", "auto", "--zones", str(zones))
    out = subprocess.run(command, cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [
        f"keyresolve: {zones / 'root.hints'}: No such file or directory"]


@pytest.mark.parametrize("ports", ["auto", "fixed"])
def test_a_data_dir_that_cannot_be_made_is_one_clear_line(tmp_path, ports):
    (tmp_path / "file").write_text("")
    data = tmp_path / "file" / "data"
    out = run("demo", "--check", "--ports", ports, "--data-dir", str(data))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [f"keyresolve: cannot create {data}/root-a: Not a directory"]


def test_auto_ports_rewrite_only_the_demo_addresses():
    moved = {("127.0.0.1", 5310): ("127.0.0.1", 40001), ("::1", 5311): ("::1", 40002)}
    text = ("a ADDR 127.0.0.1:5310 ; (127.0.0.1:5310)\nb ADDR [::1]:5311\n"
            "c ADDR 127.0.0.1:53100\nd ADDR 127.0.0.2:5310\ne ADDR 10.127.0.0.1:5310\n"
            "serial 2026112201 127.0.0.1:5311\n")
    assert rewrite_endpoints(text, moved) == (
        "a ADDR 127.0.0.1:40001 ; (127.0.0.1:40001)\nb ADDR [::1]:40002\n"
        "c ADDR 127.0.0.1:53100\nd ADDR 127.0.0.2:5310\ne ADDR 10.127.0.0.1:5310\n"
        "serial 2026112201 127.0.0.1:5311\n")
