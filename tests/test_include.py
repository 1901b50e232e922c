"""$INCLUDE stays inside the zone file's directory and its include_dirs:
the zone file parser, `keyresolve zone check --include-dir`, the serve
config's include_dirs and a real `keyresolve serve`; and errors quote at
most a cut excerpt of a token, never a whole line of data."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from keyresolve.files import local
from keyresolve.files.local import LOCAL_FILES
from keyresolve.protocol.codes import RType
from keyresolve.cli.config import load_serve_config
from keyresolve.protocol.errors import MAX_EXCERPT, ConfigError, ZoneErrors
from keyresolve.protocol.message import make_query
from keyresolve.protocol.names import Name
from keyresolve.zonedata.zonefile import load_zone, parse_zone_text

from .conftest import ask, b64key, keyresolve_cmd

HEAD = """$ORIGIN example.com.
$TTL 3600
@    SOA  ns1 hostmaster@example.com. 2026112201 3600 600 604800 300
@    NS   ns1
ns1  ADDR 127.0.0.1:5302
"""
#: What an outside file holds: none of it may show in any error or log.
SECRET = "SECRETSALT"
SHADOW = f"root:$6${SECRET}$Zm9vYmFy:19000:0:99999:7:::\nbob:*:{SECRET}:0:99999:7:::\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """zones/ (the zone files), outside/shadow (a secret), shared/ (an
    include dir with a key of carol@)."""
    (tmp_path / "zones").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "shadow").write_text(SHADOW)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "carol.inc").write_text(
        f"carol@ KEY x25519 encrypt {b64key(7)}\n$INCLUDE more/dave.inc\n")
    (tmp_path / "shared" / "more").mkdir()
    (tmp_path / "shared" / "more" / "dave.inc").write_text(
        f"dave@ KEY x25519 encrypt {b64key(8)}\n")
    return tmp_path


def zone_with(tree: Path, line: str, name: str = "z.zone") -> str:
    path = tree / "zones" / name
    path.write_text(HEAD + line + "\n")
    return str(path)


def opened_by(monkeypatch) -> list[str]:
    """Every path the zone file parser opens from now on."""
    opened: list[str] = []
    real_open = os.open

    def recording_open(path, *args, **kwargs):
        opened.append(os.fsdecode(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(local.os, "open", recording_open)
    return opened


def the_error(path: str, **kwargs) -> str:
    with pytest.raises(ZoneErrors) as info:
        load_zone(path, **kwargs, files=LOCAL_FILES)
    [error] = info.value.errors
    return str(error)


def outside_message(tree: Path, path: str, line: str, dirs: str = "") -> str:
    where = os.path.realpath(tree / "zones")
    resolved = os.path.realpath(os.path.join(os.path.dirname(path), line))
    return (f"{path}:6: $INCLUDE {line!r} is outside the zone file's directory {where}"
            f"{dirs}; not read (resolved: {resolved!r})")


# -- refused ------------------------------------------------------------------------------
def test_absolute_path_outside_is_refused_unread(tree: Path, monkeypatch) -> None:
    secret = str(tree / "outside" / "shadow")
    path = zone_with(tree, f"$INCLUDE {secret}")
    opened = opened_by(monkeypatch)
    message = the_error(path)
    assert message == outside_message(tree, path, secret)
    assert SECRET not in message
    assert [os.path.realpath(p) for p in opened] == [os.path.realpath(path)]


@pytest.mark.parametrize("target", ["/etc/shadow", "/proc/self/environ",
                                    "../../../../../../../../etc/hostname"])
def test_system_files_are_refused(tree: Path, target: str, monkeypatch) -> None:
    path = zone_with(tree, f"$INCLUDE {target}")
    opened = opened_by(monkeypatch)
    assert the_error(path) == outside_message(tree, path, target)
    assert len(opened) == 1  # the zone file only


def test_dotdot_escape_is_refused(tree: Path) -> None:
    path = zone_with(tree, "$INCLUDE ../outside/shadow")
    message = the_error(path)
    assert message == outside_message(tree, path, "../outside/shadow")
    assert SECRET not in message


def test_dotdot_escape_of_a_missing_file_says_outside_not_missing(tree: Path) -> None:
    path = zone_with(tree, "$INCLUDE ../outside/no-such-file")
    assert the_error(path) == outside_message(tree, path, "../outside/no-such-file")


def test_symlink_to_a_file_outside_is_refused(tree: Path) -> None:
    os.symlink(tree / "outside" / "shadow", tree / "zones" / "keys.inc")
    path = zone_with(tree, "$INCLUDE keys.inc")
    message = the_error(path)
    assert message == outside_message(tree, path, "keys.inc")
    assert SECRET not in message


def test_symlinked_directory_outside_is_refused(tree: Path) -> None:
    os.symlink(tree / "outside", tree / "zones" / "keys")
    path = zone_with(tree, "$INCLUDE keys/shadow")
    assert the_error(path) == outside_message(tree, path, "keys/shadow")


def test_nested_include_cannot_escape_either(tree: Path) -> None:
    (tree / "zones" / "sub").mkdir()
    (tree / "zones" / "sub" / "a.inc").write_text("$INCLUDE ../../outside/shadow\n")
    path = zone_with(tree, "$INCLUDE sub/a.inc")
    with pytest.raises(ZoneErrors) as info:
        load_zone(path, files=LOCAL_FILES)
    [error] = info.value.errors
    assert error.filename == str(tree / "zones" / "sub" / "a.inc") and error.line == 1
    assert error.message.startswith("$INCLUDE '../../outside/shadow' is outside")
    assert SECRET not in str(info.value)


def test_long_include_path_is_quoted_cut(tree: Path) -> None:
    target = "../outside/" + "x/" * 150
    path = zone_with(tree, f"$INCLUDE {target}")
    message = the_error(path)
    assert f"{target[:200]!r}... (311 characters)" in message
    assert target[:201] not in message


# -- allowed ------------------------------------------------------------------------------
def test_same_directory_subdirectory_and_inside_symlink_are_allowed(tree: Path) -> None:
    zones = tree / "zones"
    (zones / "keys").mkdir()
    (zones / "keys" / "bob.inc").write_text(f"bob@ KEY x25519 encrypt {b64key(5)}\n")
    (zones / "erin.inc").write_text(f"erin@ KEY x25519 encrypt {b64key(6)}\n")
    os.symlink(zones / "erin.inc", zones / "erin-link.inc")
    path = zone_with(tree, f"$INCLUDE keys/bob.inc\n$INCLUDE erin-link.inc eng\n"
                     f"$INCLUDE {zones / 'erin.inc'} ops")
    nodes = load_zone(path, files=LOCAL_FILES).nodes
    for owner in ("bob@example.com.", "erin@eng.example.com.", "erin@ops.example.com."):
        assert Name.from_text(owner) in nodes


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_include_dirs_allow_a_directory_and_its_nested_includes(tree: Path, how: str) -> None:
    target = str(tree / "shared" / "carol.inc") if how == "absolute" else "../shared/carol.inc"
    path = zone_with(tree, f"$INCLUDE {target}")
    assert the_error(path) == outside_message(tree, path, target)
    nodes = load_zone(path, include_dirs=[str(tree / "shared")], files=LOCAL_FILES).nodes
    assert {Name.from_text("carol@example.com."), Name.from_text("dave@example.com.")} <= set(nodes)


def test_outside_message_names_the_include_dirs(tree: Path) -> None:
    path = zone_with(tree, "$INCLUDE ../outside/shadow")
    shared = os.path.realpath(tree / "shared")
    assert the_error(path, include_dirs=[str(tree / "shared")]) == outside_message(
        tree, path, "../outside/shadow", f" and include_dirs {shared}")


# -- zone check --------------------------------------------------------------------------
def test_zone_check_refuses_outside_and_takes_include_dir(tree: Path) -> None:
    path = zone_with(tree, f"$INCLUDE {tree / 'outside' / 'shadow'}\n$INCLUDE ../shared/carol.inc")
    out = subprocess.run(keyresolve_cmd("zone", "check", path), capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        outside_message(tree, path, str(tree / "outside" / "shadow")),
        outside_message(tree, path, "../shared/carol.inc").replace(":6:", ":7:")]
    assert SECRET not in out.stdout + out.stderr

    good = zone_with(tree, "$INCLUDE ../shared/carol.inc", "good.zone")
    out = subprocess.run(keyresolve_cmd("zone", "check", "--include-dir", str(tree / "shared"),
                                        good), capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "KEY 2" in out.stdout


# -- the serve config and daemon ------------------------------------------------------------
def test_serve_config_include_dirs(tree: Path) -> None:
    config = tree / "zones" / "serve.toml"
    config.write_text('listen = ["127.0.0.1:0"]\ndata_dir = "data"\n[[zones]]\n'
                      'name = "example.com"\nfile = "z.zone"\ninclude_dirs = ["../shared"]\n')
    [zone] = load_serve_config(config).zones
    assert zone.include_dirs == [tree / "zones" / "../shared"]


@pytest.mark.parametrize("value,message", [
    ('"../shared"', "include_dirs: must be a list of directory names"),
    ("[3]", "include_dirs: must be a list of directory names"),
    ('[""]', "include_dirs: must be a list of directory names"),
    ('["../nowhere"]', "include_dirs: {zones}/../nowhere is not a directory"),
    ('["../shared/carol.inc"]', "include_dirs: {zones}/../shared/carol.inc is not a directory"),
])
def test_serve_config_include_dirs_errors(tree: Path, value: str, message: str) -> None:
    config = tree / "zones" / "serve.toml"
    config.write_text('listen = ["127.0.0.1:0"]\ndata_dir = "data"\n[[zones]]\n'
                      f'name = "example.com"\nfile = "z.zone"\ninclude_dirs = {value}\n')
    with pytest.raises(ConfigError) as info:
        load_serve_config(config)
    assert str(info.value) == f"{config}: zones[0]." + message.format(zones=tree / "zones")


def test_serve_config_include_dirs_only_for_a_primary(tree: Path) -> None:
    config = tree / "zones" / "serve.toml"
    config.write_text('listen = ["127.0.0.1:0"]\ndata_dir = "data"\n[[zones]]\n'
                      'name = "example.com"\nprimaries = ["127.0.0.1:1"]\n'
                      'include_dirs = ["../shared"]\n')
    with pytest.raises(ConfigError, match=r"zones\[0\]\.include_dirs: only a primary zone"):
        load_serve_config(config)


def test_daemon_follows_include_dirs_and_refuses_outside(tree: Path, start_daemon) -> None:
    zones = tree / "zones"
    (zones / "good.zone").write_text(HEAD + "$INCLUDE ../shared/carol.inc\n")
    (zones / "bad.zone").write_text(HEAD.replace("example.com", "example.org")
                                    + f"$INCLUDE {tree / 'outside' / 'shadow'}\n"
                                    + "$INCLUDE ../shared/carol.inc\n")
    config = zones / "serve.toml"
    config.write_text('listen = ["127.0.0.1:0"]\ndata_dir = "data"\n'
                      '[[zones]]\nname = "example.com"\nfile = "good.zone"\n'
                      'include_dirs = ["../shared"]\n'
                      '[[zones]]\nname = "example.org"\nfile = "bad.zone"\n')
    daemon = start_daemon("serve", "--config", str(config),
                          expect_errors=[r"zone example\.org\. not loaded: .*is outside"])
    reply = ask(daemon.address, make_query(Name.from_text("dave@example.com."), RType.KEY))
    assert reply.answer
    assert daemon.stop() == 0  # and every line it logged is read
    bad = str(zones / "bad.zone")
    assert f"zone example.org. not loaded: {bad}:6: $INCLUDE '{tree / 'outside' / 'shadow'}' " \
           "is outside the zone file's directory" in daemon.log
    assert f"{bad}:7: $INCLUDE '../shared/carol.inc' is outside" in daemon.log
    assert SECRET not in daemon.log


# -- errors quote a cut excerpt of the token, never a whole line of data -------------------------
LONG = "root:$6$" + SECRET + "x" * 20 + ":19000:0:99999:7:::"  # 57: under every length limit


def messages(text: str) -> list[str]:
    with pytest.raises(ZoneErrors) as info:
        parse_zone_text(text, files=LOCAL_FILES)
    return [e.message for e in info.value.errors]


@pytest.mark.parametrize("line", [
    LONG,                                       # bad owner name (invalid label)
    f"{LONG}@ KEY x25519 encrypt {b64key(1)}",  # bad local part
    f"www ADDR {LONG}",                         # bad address
    f"www ADDR [{LONG}]:53",                    # bad IPv6 address
    f"www 3600 {LONG} ADDR 127.0.0.1:1",        # unknown type
    f"www 3600 {'9' * 80} ADDR 127.0.0.1:1",    # second TTL
    f"www {'9' * 80} ADDR 127.0.0.1:1",         # TTL too large
    f"www {'1' * 80}x ADDR 127.0.0.1:1",        # bad TTL
    f"www TYPE{'0' * 80}1 x",                   # TYPE<n> spelling
    f"${LONG}",                                 # unknown directive
    f"$TTL 1{LONG}",                            # bad $TTL
    f"$ORIGIN {LONG}",                          # bad $ORIGIN
    f"alice@ KEY {LONG} encrypt {b64key(1)}",   # unknown algorithm
    f"sub SOA ns1 {LONG}@ 1 2 3 4 5",           # bad SOA contact
    f"sub SOA {LONG}@ hostmaster@ 1 2 3 4 5",   # SOA primary a mailbox
    f"sub SOA ns1 hostmaster@ {'7' * 80} 2 3 4 5",  # SOA serial too large
    f"www NS {LONG}",                           # bad NS target
])
def test_errors_quote_at_most_an_excerpt_of_a_token(line: str) -> None:
    found = messages(HEAD + line + "\n")
    assert found
    for message in found:
        longest = max((t for t in line.split() if len(t) > MAX_EXCERPT), key=len)
        for start in range(len(longest) - MAX_EXCERPT):
            assert longest[start:start + MAX_EXCERPT + 1] not in message, message
    assert any("... (" in message and "characters)" in message for message in found), found


def test_a_data_line_of_an_included_file_is_not_quoted_whole(tree: Path) -> None:
    (tree / "zones" / "data.inc").write_text(LONG + "\n")
    path = zone_with(tree, "$INCLUDE data.inc")
    message = the_error(path)
    cut = f"... ({len(LONG)} characters)"
    assert message == (f"{tree / 'zones' / 'data.inc'}:1: bad owner name: invalid label "
                       f"{LONG.lower()[:MAX_EXCERPT]!r}{cut} in {LONG[:MAX_EXCERPT]!r}{cut}")


_HOSTILE = st.text(alphabet="abcxyz019:.$/=*-_@[]", min_size=MAX_EXCERPT + 1, max_size=160)
_FIELDS = st.sampled_from(["KEY", "ADDR", "NS", "SOA", "ALIAS", "IN", "3600", "x25519",
                           "encrypt", "@", "alice@", "$TTL", "$ORIGIN", "$INCLUDE", "TYPE1"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_HOSTILE, _FIELDS), min_size=1, max_size=6), st.booleans())
@example(["0" * 41, "NS", "0" * 41], False)  # the glue error named its NS target whole
def test_no_error_quotes_more_than_an_excerpt_of_any_token(fields, indent) -> None:
    """Whatever the line, no error holds MAX_EXCERPT + 1 characters in a row
    of a long token (a $INCLUDE path, which is named up to its own cap, is
    not drawn: its argument would be a file name)."""
    tokens = [t for t in fields if t != "$INCLUDE"] or ["x"]
    line = (" " if indent else "") + " ".join(tokens)
    try:
        parse_zone_text(HEAD + line + "\n", files=LOCAL_FILES)
    except ZoneErrors as exc:
        found = [e.message for e in exc.errors]
    else:
        return
    for token in tokens:
        for start in range(len(token) - MAX_EXCERPT):
            piece = token[start:start + MAX_EXCERPT + 1]
            assert not any(piece in message for message in found), (piece, found)


def test_restart_with_narrower_include_dirs_compiles_again(tree: Path, start_daemon) -> None:
    """A zone whose stored version included a file its config no longer
    allows is not kept as 'unchanged': it is compiled again, and fails."""
    zones = tree / "zones"
    (zones / "good.zone").write_text(HEAD + "$INCLUDE ../shared/carol.inc\n")
    config = zones / "serve.toml"
    base = ('listen = ["127.0.0.1:0"]\ndata_dir = "data"\n'
            '[[zones]]\nname = "example.com"\nfile = "good.zone"\n')
    config.write_text(base + 'include_dirs = ["../shared"]\n')
    first = start_daemon("serve", "--config", str(config))
    assert "zone example.com. loaded" in first.log
    assert first.stop() == 0
    config.write_text(base)
    second = start_daemon("serve", "--config", str(config),
                          expect_errors=[r"zone example\.com\. not loaded: .*is outside"])
    assert second.stop() == 0
    assert "unchanged" not in second.log
    assert (f"zone example.com. not loaded: {zones / 'good.zone'}:6: "
            "$INCLUDE '../shared/carol.inc' is outside") in second.log
