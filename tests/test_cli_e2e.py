"""The CLI end to end: dig --trace, cache flush, demo, resolver config errors."""

from __future__ import annotations

import base64
import json
import socket
import subprocess

import pytest

from keyresolve.codes import Rcode, RType
from keyresolve.message import make_query

from .conftest import ask, keyresolve_cmd
from .test_resolver_e2e import build_hierarchy, resolve, start_resolver, write_hints

DEMO_PORTS = [5310, 5311, 5320, 5330, 5340, 5341, 5342, 5350, 5353]


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


def test_dig_trace_needs_hints():
    out = run("dig", "alice@example.com", "--trace")
    assert out.returncode == 2 and "--root-hints" in out.stderr


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


def _demo_ports_free() -> bool:
    for port in DEMO_PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


demo_ports = pytest.mark.skipif(not _demo_ports_free(),
                                reason="the demo's fixed ports are in use (a demo running?)")


@demo_ports
def test_demo_check_resolves_every_demo_key():
    out = run("demo", "--check", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "all demo keys resolved"
    assert any(line.startswith("ok   carol@eng.example.com.") for line in lines)
    assert any("alice-at-com@example.org. via alice@example.com." in line for line in lines)
    assert any(line.startswith("ok   secondary example.com-2 serves example.com.")
               for line in lines)
    assert not any(line.startswith("FAIL") for line in lines)


@demo_ports
def test_demo_serves_until_sigterm(start_daemon):
    demo = start_daemon("demo")
    reply = ask(("127.0.0.1", 5353), make_query(
        __import__("keyresolve.names", fromlist=["Name"]).Name.from_text("bob@example.com"),
        RType.KEY, rd=True))
    assert reply.rcode == Rcode.NOERROR and reply.answer
    running = len(demo.lines)
    assert not any("messages handled" in line for line in demo.lines)  # counted at the end
    assert demo.stop() == 0
    assert any("messages handled" in line for line in demo.lines[running:])
