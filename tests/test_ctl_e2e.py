"""End-to-end: `keyresolve ctl` against real `keyresolve serve` daemons."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
from pathlib import Path

import pytest

from keyresolve.protocol.codes import Rcode, RType
from keyresolve.protocol.message import make_query
from keyresolve.protocol.names import Name

from .conftest import ask, b64key, keyresolve_cmd
from .test_workers import SPREAD, key_query, spread
from .test_xfr_e2e import Pair, free_port

CTL_SECRET = base64.b64encode(bytes(range(100, 132))).decode()
OTHER_SECRET = base64.b64encode(bytes(range(50, 82))).decode()
CTL_KEYS = (f'[keys.ctl]\nalgorithm = "hmac-sha256"\nsecret = "{CTL_SECRET}"\n'
            f'[keys.other]\nalgorithm = "hmac-sha256"\nsecret = "{OTHER_SECRET}"\n')

ZONE = """$ORIGIN {origin}
$TTL 60
@ SOA ns1 hostmaster@ {serial} 3600 600 604800 30
@ NS ns1
ns1 ADDR 127.0.0.1:9
alice@ KEY x25519 encrypt {key}
"""


def ctl(address, *args: str) -> subprocess.CompletedProcess:
    """Run `keyresolve ctl --server ADDRESS ARGS...`."""
    return subprocess.run(keyresolve_cmd("ctl", "--server", f"{address[0]}:{address[1]}", *args),
                          capture_output=True, text=True, timeout=60)


def ctl_json(address, *args: str) -> dict:
    done = ctl(address, "--json", *args)
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout)["result"]


def write_config(directory, zones: list[str], *, extra: str = "", zone_extra: str = "") -> None:
    """A serve config for `zones` (each file written if missing) on a fixed
    port kept across rewrites, so a reload keeps the listen address."""
    lines = [f'listen = ["127.0.0.1:{PORTS[directory]}"]', 'data_dir = "data"',
             'control_keys = ["ctl"]', extra, CTL_KEYS]
    for i, origin in enumerate(zones):
        path = directory / f"{origin}.zone"
        if not path.exists():
            path.write_text(ZONE.format(origin=f"{origin}.", serial=1, key=b64key(i + 1)))
        lines += ["[[zones]]", f'name = "{origin}"', f'file = "{origin}.zone"', zone_extra]
    (directory / "serve.toml").write_text("\n".join(lines) + "\n")


#: The port each test server's directory keeps across config rewrites.
PORTS: dict[Path, int] = {}


@pytest.fixture
def server_dir(tmp_path):
    directory = tmp_path / "server"
    directory.mkdir()
    PORTS[directory] = free_port()
    yield directory
    del PORTS[directory]


def start(start_daemon, directory, *args: str, **kwargs):
    return start_daemon("serve", "--config", str(directory / "serve.toml"), *args,
                        cwd=directory, **kwargs)


def answered(address, mailbox: str) -> int:
    return ask(address, make_query(Name.from_text(mailbox), RType.KEY)).rcode


def test_status_reports_version_zones_and_workers(server_dir, start_daemon):
    write_config(server_dir, ["example.com", "example.net"])
    server = start(start_daemon, server_dir)
    status = ctl_json(server.address, "status")
    assert status["version"] == "0.1.0" and status["pid"] == server.proc.pid
    assert status["zones"] == 2 and status["primary_zones"] == 2
    assert status["workers"] == 1 and status["uptime"] >= 0
    text = ctl(server.address, "status")
    assert text.returncode == 0 and "zones:" in text.stdout and "uptime:" in text.stdout


def test_reload_zone_compiles_its_changed_file(server_dir, start_daemon):
    write_config(server_dir, ["example.com"])
    server = start(start_daemon, server_dir)
    (server_dir / "example.com.zone").write_text(
        ZONE.format(origin="example.com.", serial=2, key=b64key(7)))
    result = ctl_json(server.address, "reload", "example.com")
    assert result == {"zone": "example.com.", "result": "loaded", "serial": 2, "records": 4}
    reply = ask(server.address, make_query(Name.from_text("alice@example.com"), RType.KEY))
    assert reply.answer[0].rdata.key == base64.b64decode(b64key(7))
    assert ctl_json(server.address, "zone-status", "example.com")["serial"] == 2


def test_unknown_zone_and_wrong_role_get_notauth_and_refused(server_dir, start_daemon):
    write_config(server_dir, ["example.com"])
    server = start(start_daemon, server_dir)
    missing = ctl(server.address, "zone-status", "example.org")
    assert missing.returncode == 1 and "NOTAUTH" in missing.stderr
    primary = ctl(server.address, "refresh", "example.com")
    assert primary.returncode == 1 and "REFUSED" in primary.stderr
    assert "primary zone" in primary.stderr
    usage = ctl(server.address, "refresh")
    assert usage.returncode == 2 and "needs a ZONE" in usage.stderr
    no_queue = ctl(server.address, "mail-flush")  # a server without a [registry]
    assert no_queue.returncode == 1 and "REFUSED: this server has no [registry]" in no_queue.stderr
    usage = ctl(server.address, "mail-flush", "example.com")
    assert usage.returncode == 2 and "takes no ZONE" in usage.stderr


def test_zone_status_of_a_primary_and_a_secondary(tmp_path, start_daemon):
    pair = Pair(tmp_path, start_daemon)
    pair.start_primary()
    pair.start_secondary()
    pair.secondary.wait_for(r"transfer in example\.com\. .*full")
    primary = ctl_json(("127.0.0.1", pair.pport), "zone-status", "example.com")
    assert primary["role"] == "primary" and primary["serial"] == 1
    assert primary["file"] == str(pair.pdir / "example.com.zone")
    assert primary["loaded"] > 0 and primary["journal"] == 0
    assert primary["notify"] == [f"127.0.0.1:{pair.sport}"]
    secondary = ctl_json(("127.0.0.1", pair.sport), "zone-status", "example.com")
    assert secondary["role"] == "secondary" and secondary["serial"] == 1
    assert secondary["primaries"] == [f"127.0.0.1:{pair.pport}"]
    assert secondary["transferred_from"] == f"127.0.0.1:{pair.pport}"
    assert secondary["last_result"].startswith("ok: ")
    assert secondary["last_transfer"] <= secondary["next_refresh"] <= secondary["expires"]
    assert secondary["state"] == "serving"
    text = ctl(("127.0.0.1", pair.sport), "zone-status", "example.com").stdout
    assert "next refresh:" in text and "UTC (in " in text


def test_refresh_retransfer_and_notify(tmp_path, start_daemon):
    pair = Pair(tmp_path, start_daemon)
    # a primary that sends no NOTIFY: only `ctl refresh` makes the secondary look
    config = pair.pdir / "serve.toml"
    config.write_text(config.read_text().replace(f'notify = ["127.0.0.1:{pair.sport}"]\n', ""))
    pair.start_primary()
    pair.start_secondary()
    pair.secondary.wait_for(r"transfer in example\.com\. .*full")
    primary, secondary = ("127.0.0.1", pair.pport), ("127.0.0.1", pair.sport)
    pair.write_zone(2, ["alice", "bob", "carol"])
    assert ctl_json(primary, "reload", "example.com")["serial"] == 2
    assert ctl_json(secondary, "refresh", "example.com")["result"]
    pair.secondary.wait_for(r"transfer in example\.com\. .*incremental, serial 1 -> 2")
    assert ctl_json(secondary, "retransfer", "example.com")["result"]
    pair.secondary.wait_for(r"transfer in example\.com\. .*full, serial none -> 2")
    assert "in full" in ctl_json(secondary, "zone-status", "example.com")["last_result"]
    refused = ctl(primary, "notify", "example.com")
    assert refused.returncode == 1 and "no notify targets" in refused.stderr
    # the secondary NOTIFYs nobody either; a primary with targets sends at once
    config.write_text(config.read_text() + f'notify = ["127.0.0.1:{pair.sport}"]\n')
    assert ctl_json(primary, "reload")["zones_changed"] == ["example.com."]
    assert ctl_json(primary, "notify", "example.com") == {
        "zone": "example.com.", "notified": [f"127.0.0.1:{pair.sport}"]}
    pair.secondary.wait_for(r"NOTIFY for example\.com\. \(serial 2\)")


def test_stop_exits_0_and_the_pidfile_lives_as_long_as_the_server(server_dir, start_daemon):
    write_config(server_dir, ["example.com"], extra='pidfile = "run/serve.pid"')
    (server_dir / "run").mkdir()
    server = start(start_daemon, server_dir)
    pidfile = server_dir / "run" / "serve.pid"
    assert pidfile.read_text() == f"{server.proc.pid}\n"
    done = ctl(server.address, "stop")
    assert done.returncode == 0 and "stopping" in done.stdout
    assert server.proc.wait(timeout=10) == 0
    assert not pidfile.exists()


def test_signed_with_a_control_key_accepted_with_another_refused(server_dir, start_daemon):
    write_config(server_dir, ["example.com"])
    server = start(start_daemon, server_dir)
    listed = ctl(server.address, "-y", f"hmac-sha256:ctl:{CTL_SECRET}", "--json", "status")
    assert listed.returncode == 0 and json.loads(listed.stdout)["verified"] == "ok"
    other = ctl(server.address, "-y", f"hmac-sha256:other:{OTHER_SECRET}", "status")
    assert other.returncode == 1 and "REFUSED" in other.stderr
    server.wait_for(r"refused a control message from 127\.0\.0\.1: key other\. is not in "
                    r"control_keys")


def test_control_loopback_false_wants_every_command_signed(server_dir, start_daemon):
    write_config(server_dir, ["example.com"], extra="control_loopback = false")
    server = start(start_daemon, server_dir)
    unsigned = ctl(server.address, "stop")
    assert unsigned.returncode == 1 and "REFUSED" in unsigned.stderr
    server.wait_for(r"refused a control message from 127\.0\.0\.1: unsigned")
    signed = ctl(server.address, "-y", f"hmac-sha256:ctl:{CTL_SECRET}", "status")
    assert signed.returncode == 0 and "zones:" in signed.stdout


def test_sighup_re_reads_the_config_adds_and_removes_zones(server_dir, start_daemon):
    write_config(server_dir, ["example.com"])
    server = start(start_daemon, server_dir)
    assert answered(server.address, "alice@example.net") == Rcode.REFUSED
    write_config(server_dir, ["example.com", "example.net"])
    server.signal(signal.SIGHUP)
    server.wait_for("reload done")
    assert answered(server.address, "alice@example.net") == Rcode.NOERROR
    assert "1 zone(s) added (example.net.)" in server.log
    write_config(server_dir, ["example.net"])
    server.signal(signal.SIGHUP)
    server.wait_for("reload done")
    assert answered(server.address, "alice@example.com") == Rcode.REFUSED
    assert answered(server.address, "alice@example.net") == Rcode.NOERROR


def test_an_invalid_config_is_refused_whole(server_dir, start_daemon):
    write_config(server_dir, ["example.com"])
    server = start(start_daemon, server_dir)
    good = (server_dir / "serve.toml").read_text()
    # a new zone, and a typo: nothing of it is applied
    (server_dir / "serve.toml").write_text(
        good + '[[zones]]\nname = "example.net"\nfile = "example.net.zone"\nrequire_sined = true\n')
    (server_dir / "example.net.zone").write_text(
        ZONE.format(origin="example.net.", serial=1, key=b64key(3)))
    server.expect_error(r"reload: .*zones\[1\]\.require_sined: unknown setting; the running "
                        r"configuration is kept")
    server.signal(signal.SIGHUP)
    server.wait_for(r"ERROR .*reload: .*require_sined: unknown setting")
    assert answered(server.address, "alice@example.net") == Rcode.REFUSED
    assert answered(server.address, "alice@example.com") == Rcode.NOERROR
    done = ctl(server.address, "reload")
    assert done.returncode == 1 and "SERVFAIL" in done.stderr
    assert "require_sined: unknown setting" in done.stderr
    assert ctl_json(server.address, "status")["zones"] == 1


def test_workers_follow_a_config_change(server_dir, start_daemon):
    write_config(server_dir, ["example.com"])
    server = start(start_daemon, server_dir, "--workers", "2")
    # a listen change waits for a restart, and does not keep the new workers out
    PORTS[server_dir] = free_port()
    write_config(server_dir, ["example.com", "example.net"], zone_extra="require_signed = true")
    result = ctl_json(server.address, "reload")
    assert result["config"] == "changed" and result["zones_added"] == ["example.net."]
    server.wait_for(r"WARNING .*serve\.toml: listen changed: a restart applies it")
    server.wait_for(r"worker 1 started")
    # every process refuses the unsigned queries the new policy forbids...
    replies = spread(server.address, [key_query("alice@example.net") for _ in range(SPREAD)])
    assert {r.rcode for r in replies} == {Rcode.REFUSED}
    replies = spread(server.address, [key_query() for _ in range(SPREAD)])
    assert {r.rcode for r in replies} == {Rcode.REFUSED}
    # ...and serves the new zone once allowed
    write_config(server_dir, ["example.com", "example.net"])
    assert ctl_json(server.address, "reload")["zones_changed"] == ["example.com.",
                                                                  "example.net."]
    server.wait_for(r"worker 1 started")
    replies = spread(server.address, [key_query("alice@example.net") for _ in range(SPREAD)])
    assert {r.rcode for r in replies} == {Rcode.NOERROR}
    assert server.log.count("restarting for the new configuration") == 2


def test_the_resolver_answers_status_and_stop_and_keeps_a_pidfile(tmp_path, start_daemon):
    (tmp_path / "root.hints").write_text("$ORIGIN .\n$TTL 3600\n. NS a.root.\n"
                                         "a.root. ADDR 127.0.0.1:9\n")
    config = tmp_path / "resolver.toml"
    config.write_text('listen = ["127.0.0.1:0"]\nroot_hints = "root.hints"\n'
                      'pidfile = "resolver.pid"\n')
    resolver = start_daemon("resolver", "--config", str(config))
    assert (tmp_path / "resolver.pid").read_text() == f"{resolver.proc.pid}\n"
    status = ctl_json(resolver.address, "status")
    assert status["pid"] == resolver.proc.pid and status["cached_records"] >= 0
    assert "uptime" in status and "upstream_queries" in status
    reload = ctl(resolver.address, "reload")  # a server's command
    assert reload.returncode == 1 and "NOTIMP: not a command this server takes" in reload.stderr
    assert "stopping" in ctl(resolver.address, "stop").stdout
    assert resolver.proc.wait(timeout=10) == 0
    assert not (tmp_path / "resolver.pid").exists()


def test_pidfile_and_control_keys_settings_are_checked(tmp_path):
    from keyresolve.cli.config import load_serve_config
    from keyresolve.protocol.errors import ConfigError

    config = tmp_path / "serve.toml"
    config.write_text('listen = ["127.0.0.1:0"]\ndata_dir = "data"\npidfile = "no/such.pid"\n')
    with pytest.raises(ConfigError, match=r"serve\.toml: pidfile: directory .*no does not exist"):
        load_serve_config(config)
    config.write_text('listen = ["127.0.0.1:0"]\ndata_dir = "data"\ncontrol_keys = ["ops"]\n')
    with pytest.raises(ConfigError, match=r"control_keys: key 'ops' is not defined"):
        load_serve_config(config)
