"""Configuration that never surprises an operator: log levels and formats,
the NOTIFY key of a primary zone, keygen's directory, reload and zone-file
error lines, the resolver's SERVFAIL line, `zone check --hints` and the
one-message size of a mailbox."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import signal
import stat
import subprocess
import sys
import time

import pytest

from keyresolve.cli import commands as cli
from keyresolve.protocol.codes import Rcode, RType
from keyresolve.cli.config import load_serve_config, unsigned_notify_zones
from keyresolve.protocol.errors import ConfigError, ZoneErrors
from keyresolve.protocol.message import MAX_MESSAGE, make_query, make_response
from keyresolve.protocol.names import Name
from keyresolve.store.zones import Store
from keyresolve.zonedata.zonefile import load_zone

from .ans import ScriptedServer, name
from .conftest import ask, keyresolve_cmd, write_serve_config
from .test_resolver_e2e import start_resolver
from .test_xfr_e2e import KEYS, free_port, zone_text

#: ISO 8601 with milliseconds and the UTC offset, as every text log line starts.
ISO_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"
ZONE = zone_text(1, ["alice", "bob"])
#: The line of the first KEY record `ed448_zone` adds.
BIG_LINE = ZONE.count("\n") + 1


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(keyresolve_cmd(*args), capture_output=True, text=True, timeout=60,
                          cwd=cwd)


# -- log levels and formats ---------------------------------------------------------
@pytest.mark.parametrize("command", ["serve", "resolver", "demo"])
def test_an_unknown_log_level_option_is_a_usage_error(tmp_path, command):
    config = () if command == "demo" else ("--config", str(tmp_path / "none.toml"))
    done = run_cli(command, *config, "--log-level", "verbose")
    assert done.returncode == 2
    assert "'verbose' is not one of 'debug', 'info', 'warning', 'error'" in done.stderr


@pytest.mark.parametrize("setting, value", [("log_level", '"verbose"'), ("log_level", "3"),
                                            ("log_format", '"xml"')])
def test_an_unknown_log_setting_is_a_one_line_error_naming_it(tmp_path, setting, value):
    serve = write_serve_config(tmp_path, {"example.com.": ZONE}, extra=f"{setting} = {value}")
    resolver = tmp_path / "resolver.toml"
    resolver.write_text(f'listen = ["127.0.0.1:0"]\nroot_hints = "h"\n{setting} = {value}\n')
    for command, path in (("serve", serve), ("resolver", resolver)):
        done = run_cli(command, "--config", str(path))
        assert done.returncode == 1, done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith(f"keyresolve: {path}: {setting}: must be one of ")
        assert value.strip('"') in line


def test_log_levels_are_read_in_any_case(tmp_path):
    path = write_serve_config(tmp_path, {"example.com.": ZONE},
                              extra='log_level = "WARNING"\nlog_format = "json"')
    config = load_serve_config(path)
    assert (config.log_level, config.log_format) == ("warning", "json")
    assert load_serve_config(write_serve_config(tmp_path, {})).log_format == "text"


def test_text_log_lines_start_with_iso_8601_time_and_offset(tmp_path, start_daemon):
    path = write_serve_config(tmp_path, {"example.com.": ZONE})
    daemon = start_daemon("serve", "--config", str(path))
    daemon.stop()
    assert daemon.lines
    for line in daemon.lines:
        assert re.match(ISO_TIME + r" (DEBUG|INFO|WARNING|ERROR) keyresolve\.\w+: ", line), line


def test_json_log_format_gives_one_object_per_line(tmp_path, start_daemon):
    path = write_serve_config(tmp_path, {"example.com.": ZONE, "broken.org.": "garbage\n"},
                              extra='log_format = "json"')
    daemon = start_daemon("serve", "--config", str(path),
                          expect_errors=[r"zone broken\.org\. not loaded"])
    reply = ask(daemon.address, make_query(Name.from_text("alice@example.com."), RType.KEY))
    assert reply.rcode == Rcode.NOERROR  # "listening on" was found in a JSON line
    daemon.stop()
    docs = [json.loads(line) for line in daemon.lines]
    assert docs and all(set(doc) == {"time", "level", "logger", "message"} for doc in docs)
    assert all(re.fullmatch(ISO_TIME, doc["time"]) for doc in docs)
    assert any(doc["level"] == "ERROR" and doc["message"].startswith(
        "zone broken.org. not loaded: ") for doc in docs)
    assert any(doc["message"] == "ready" and doc["logger"] == "keyresolve.serve"
               for doc in docs)


def test_json_records_carry_the_exception():
    formatter = cli.JsonFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("keyresolve.x", logging.ERROR, __file__, 1, "failed %s",
                                   ("here",), sys.exc_info())
    doc = json.loads(formatter.format(record))
    assert doc["message"] == "failed here" and doc["level"] == "ERROR"
    assert doc["exception"].startswith("Traceback (most recent call last)")
    assert "ValueError: boom" in doc["exception"]


def test_log_time_carries_the_local_offset(monkeypatch):
    monkeypatch.setenv("TZ", "IST-5:30")  # POSIX form: UTC+05:30, no tz database needed
    time.tzset()
    try:
        assert cli.iso_time(0.25) == "1970-01-01T05:30:00.250+05:30"
    finally:
        monkeypatch.undo()
        time.tzset()


# -- the NOTIFY key of a primary zone ------------------------------------------------------
def primary_config(tmp_path, zone_lines: str, keys: str = KEYS) -> str:
    return (f'listen = ["127.0.0.1:0"]\ndata_dir = "data"\n{keys}'
            f'[[zones]]\nname = "example.com"\nfile = "example.com.zone"\n{zone_lines}\n')


def test_notify_is_signed_with_the_zones_one_allow_transfer_key(tmp_path):
    path = tmp_path / "serve.toml"
    path.write_text(primary_config(tmp_path, 'allow_transfer = ["xfer"]\n'
                                             'notify = ["127.0.0.1:5301"]'))
    [zone] = load_serve_config(path).zones
    assert zone.tsig_key == Name.from_text("xfer.")
    assert unsigned_notify_zones(load_serve_config(path)) == []


def test_several_allow_transfer_keys_and_no_key_is_an_error_naming_them(tmp_path):
    keys = KEYS + KEYS.replace("keys.xfer", "keys.other")
    path = tmp_path / "serve.toml"
    path.write_text(primary_config(tmp_path, 'allow_transfer = ["xfer", "other"]\n'
                                             'notify = ["127.0.0.1:5301"]', keys))
    with pytest.raises(ConfigError) as info:
        load_serve_config(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: zones[0].key: ")
    assert "xfer, other" in message
    path.write_text(primary_config(tmp_path, 'allow_transfer = ["xfer", "other"]\n'
                                             'notify = ["127.0.0.1:5301"]\nkey = "other"', keys))
    assert load_serve_config(path).zones[0].tsig_key == Name.from_text("other.")


def test_a_primary_with_notify_and_no_key_warns_at_start(tmp_path, start_daemon):
    (tmp_path / "example.com.zone").write_text(ZONE)
    path = tmp_path / "serve.toml"
    path.write_text(primary_config(tmp_path, 'notify = ["127.0.0.1:9"]', keys=""))
    assert load_serve_config(path).zones[0].tsig_key is None
    daemon = start_daemon("serve", "--config", str(path))
    line = daemon.wait_logged(r"NOTIFY to 127\.0\.0\.1:9 goes unsigned").string
    assert re.match(ISO_TIME + r" WARNING keyresolve\.serve: zone example\.com\.: ", line)
    assert "refuses it" in line


def test_a_secondary_holding_the_key_takes_the_notify_and_transfers_at_once(
        tmp_path, start_daemon):
    """The primary names no key: its one allow_transfer key signs its NOTIFY,
    which the secondary (key = "xfer") accepts; its refresh timer is an hour."""
    pport, sport = free_port(), free_port()
    pdir, sdir = tmp_path / "primary", tmp_path / "secondary"
    pdir.mkdir()
    sdir.mkdir()
    (pdir / "example.com.zone").write_text(ZONE)
    (pdir / "serve.toml").write_text(
        f'listen = ["127.0.0.1:{pport}"]\ndata_dir = "data"\n{KEYS}'
        f'[[zones]]\nname = "example.com"\nfile = "example.com.zone"\n'
        f'allow_transfer = ["xfer"]\nnotify = ["127.0.0.1:{sport}"]\n')
    (sdir / "serve.toml").write_text(
        f'listen = ["127.0.0.1:{sport}"]\ndata_dir = "data"\n{KEYS}'
        f'[[zones]]\nname = "example.com"\nprimaries = ["127.0.0.1:{pport}"]\nkey = "xfer"\n')
    primary = start_daemon("serve", "--config", str(pdir / "serve.toml"), cwd=pdir)
    secondary = start_daemon("serve", "--config", str(sdir / "serve.toml"), cwd=sdir)
    secondary.wait_logged(r"transfer in example\.com\. .*full")
    (pdir / "example.com.zone").write_text(zone_text(2, ["alice", "bob", "carol"]))
    primary.signal(signal.SIGHUP)
    secondary.wait_for(r"NOTIFY for example\.com\. \(serial 2\)", timeout=10)
    secondary.wait_logged(r"transfer in example\.com\. .*serial 1 -> 2", timeout=10)
    primary.wait_logged(r"NOTIFY example\.com\. serial 2 acknowledged")
    reply = ask(("127.0.0.1", sport), make_query(Name.from_text("carol@example.com."), RType.KEY))
    assert reply.rcode == Rcode.NOERROR and reply.answer
    assert "goes unsigned" not in primary.log


# -- keygen --out ----------------------------------------------------------------------------
def test_keygen_creates_the_out_directory_with_mode_0700(tmp_path):
    out = tmp_path / "new" / "keys"
    done = run_cli("keygen", "alice@example.com", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    keys = sorted(out.iterdir())
    assert [k.name for k in keys] == ["alice@example.com.ed25519.pem",
                                      "alice@example.com.x25519.pem"]
    assert all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)
    again = run_cli("keygen", "bob@example.com", "--out", str(out))  # exists: used as is
    assert again.returncode == 0 and len(list(out.iterdir())) == 4


# -- reload and zone-file errors ---------------------------------------------------------------
def test_reload_done_counts_the_failed_zones_at_warning(tmp_path, start_daemon):
    path = write_serve_config(tmp_path, {"example.com.": ZONE, "example.org.": ZONE.replace(
        "example.com.", "example.org.")})
    daemon = start_daemon("serve", "--config", str(path),
                          expect_errors=[r"zone example\.org\. not loaded: "])
    (tmp_path / "example.org.zone").write_text("$ORIGIN example.org.\n@ BOGUS x\n")
    daemon.signal(signal.SIGHUP)
    line = daemon.wait_for("reload done").string
    assert re.search(r" WARNING keyresolve\.serve: reload done: 1 of 2 zones failed", line)
    (tmp_path / "example.org.zone").write_text(ZONE.replace("example.com.", "example.org."))
    daemon.signal(signal.SIGHUP)
    line = daemon.wait_for("reload done").string
    assert re.search(r" INFO keyresolve\.serve: reload done: 2 zones, none failed", line)


def test_a_missing_zone_file_is_one_error(tmp_path, start_daemon):
    path = write_serve_config(tmp_path, {"example.com.": ZONE})
    (tmp_path / "example.com.zone").unlink()
    daemon = start_daemon("serve", "--config", str(path),
                          expect_errors=[r"zone example\.com\. not loaded: "])
    daemon.stop()
    errors = [line for line in daemon.lines if " ERROR " in line]
    assert len(errors) == 1, errors
    assert "cannot read zone file" in errors[0] and "No such file or directory" in errors[0]
    with pytest.raises(ZoneErrors) as info:  # with the origin known, as serve has it
        load_zone(str(tmp_path / "example.com.zone"), Name.from_text("example.com."))
    assert len(info.value.errors) == 1


def test_include_errors_show_the_resolved_path(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "zone").write_text(ZONE + "$INCLUDE sub/../sub/missing.inc\n")
    with pytest.raises(ZoneErrors) as info:
        load_zone(str(tmp_path / "zone"))
    [error] = info.value.errors
    resolved = os.path.realpath(tmp_path / "sub" / "missing.inc")
    assert str(error).endswith(f"cannot read included file 'sub/../sub/missing.inc': "
                               f"No such file or directory (resolved: {resolved!r})")


# -- the resolver's SERVFAIL line ------------------------------------------------------------------
def test_the_servfail_line_names_the_question_once(tmp_path, start_daemon):
    def refuse(query):
        return [make_response(query, Rcode.REFUSED).to_wire()]

    with ScriptedServer(refuse) as root:
        resolver = start_resolver(start_daemon, tmp_path / "r", [("a.root.", root.address)])
        reply = ask(resolver.address, make_query(name("k@example"), RType.KEY, rd=True))
        assert reply.rcode == Rcode.SERVFAIL
        line = resolver.wait_for(r"SERVFAIL for ").string
    assert line.count("k@example.") == 1, line
    assert re.search(r"SERVFAIL for k@example\. KEY: \S", line)


# -- zone check --hints ----------------------------------------------------------------------------
def test_zone_check_hints(tmp_path):
    good = tmp_path / "root.hints"
    good.write_text("$TTL 3600\n. NS a.root.\n. NS b.root.\na.root. ADDR 127.0.0.1:53\n"
                    "b.root. ADDR 127.0.0.2:53\nb.root. ADDR [::1]:53\n")
    done = run_cli("zone", "check", "--hints", str(good))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{good}: root hints, 2 servers, 3 addresses\n"
    bad = tmp_path / "bad.hints"
    bad.write_text("$TTL 3600\n. NS a.root.\n. NS b.root.\na.root. ADDR 127.0.0.1:53\n")
    done = run_cli("zone", "check", "--hints", str(good), str(bad))
    assert done.returncode == 1
    assert done.stderr == f"{bad}:3: root server b.root. has no ADDR record\n"
    assert run_cli("zone", "check", str(good)).returncode == 1  # not a zone


# -- a mailbox's records must fit in one message -------------------------------------------
def ed448_zone(keys: int) -> str:
    lines = [ZONE.rstrip("\n")]
    lines += [f"big@ KEY ed448 sign {base64.b64encode(i.to_bytes(2, 'big') + bytes(55)).decode()}"
              for i in range(keys)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("keys, fits", [(1, True), (700, True), (800, False)])
def test_zone_check_refuses_a_mailbox_too_big_for_one_message(tmp_path, keys, fits):
    path = tmp_path / "example.com.zone"
    path.write_text(ed448_zone(keys))
    done = run_cli("zone", "check", str(path))
    if fits:
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 1
    match = re.fullmatch(rf"{re.escape(str(path))}:{BIG_LINE}: mailbox big@example\.com\.: "
                         r"its 800 records make a (\d+)-byte answer, longer than one message "
                         r"\(65535 bytes\); it could never be served\n", done.stderr)
    assert match and int(match.group(1)) > MAX_MESSAGE
    with Store(tmp_path / "data") as store, pytest.raises(ZoneErrors) as info:
        store.load_zone_file(str(path), Name.from_text("example.com."))
    assert [e.line for e in info.value.errors] == [BIG_LINE]


def test_serve_refuses_a_mailbox_too_big_for_one_message(tmp_path, start_daemon):
    path = write_serve_config(tmp_path, {"example.com.": ed448_zone(800),
                                         "example.org.": ZONE.replace("example.com.",
                                                                      "example.org.")})
    daemon = start_daemon("serve", "--config", str(path), expect_errors=[
        rf"zone example\.com\. not loaded: .*:{BIG_LINE}: mailbox big@example\.com\.: "
        r"its 800 records"])
    assert ask(daemon.address, make_query(Name.from_text("big@example.com."), RType.KEY),
               tcp=True).rcode == Rcode.REFUSED  # not served at all
    assert ask(daemon.address, make_query(Name.from_text("alice@example.org."),
                                          RType.KEY)).rcode == Rcode.NOERROR


def test_the_largest_mailbox_that_fits_is_served_whole_over_tcp(tmp_path, start_daemon):
    path = write_serve_config(tmp_path, {"example.com.": ed448_zone(700)})
    daemon = start_daemon("serve", "--config", str(path))
    reply = ask(daemon.address, make_query(Name.from_text("big@example.com."), RType.KEY),
                tcp=True)
    assert reply.rcode == Rcode.NOERROR and len(reply.answer) == 700
