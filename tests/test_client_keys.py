"""The user's keys through the real CLI: keygen's pair and encrypted files,
load_keys with a passphrase source, wrong passphrases, and the keyring
commands end to end (subprocesses of `python -m keyresolve`)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from keyresolve.cli.commands import main
from keyresolve.cli.exitcodes import EXIT_NO_KEY, EXIT_WRONG_PASSPHRASE
from keyresolve.cli.keygen import make_keys
from keyresolve.cli.keyringcmd import default_keyring_dir
from keyresolve.cli.privatekeys import PassphraseSource, load_keys
from keyresolve.client import keyfile
from keyresolve.client.seal import HybridIdentity, X25519Identity
from keyresolve.protocol.errors import ConfigError, KeyresolveError, NoKey, WrongPassphrase
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import KEY, KeyAlgorithm
from keyresolve.store.keyring import KeyRing, RingEntry

from .conftest import keyresolve_cmd

LOW = keyfile.KdfParams(iterations=1, memory_kib=8, lanes=1)
ALICE = Name.from_text("alice@example.com")


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(keyresolve_cmd(*args), capture_output=True, text=True, timeout=60,
                          env=env)


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI in this process (click's runner): as `run`, without a start-up per call."""
    done = CliRunner().invoke(main, list(args), env=env)
    if done.exception is not None and not isinstance(done.exception, SystemExit):
        raise done.exception
    return subprocess.CompletedProcess(args, done.exit_code, done.stdout, done.stderr)


def secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def no_traceback(done: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in done.stderr and "Error:" not in done.stderr.split(":", 1)[0]


# -- keygen --------------------------------------------------------------------------------
def test_keygen_makes_the_pair_an_address_registers(tmp_path):
    out = tmp_path / "new" / "keys"
    done = run("keygen", "alice@example.com", "--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split("\t")[2].split()[:2] for line in lines] == [["x25519", "encrypt"],
                                                                    ["ed25519", "sign"]]
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o600}
    own = load_keys(out, PassphraseSource(prompt=pytest.fail), warn=lambda line: None)
    assert own.address == "alice@example.com"
    assert [type(i) for i in own.identities] == [X25519Identity]
    assert own.signing is not None
    printed = {KEY.from_text(line.split("\t")[2].split()) for line in lines}
    assert set(own.keys) == printed


def test_keygen_one_algorithm_accepts_the_hybrid_kem(tmp_path):
    done = cli("keygen", "pq@example.com", "--algorithm", "mlkem768x25519", "--out",
               str(tmp_path))
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert "\tKEY\tmlkem768x25519 encrypt " in line
    own = load_keys(tmp_path, PassphraseSource(), warn=lambda line: None)
    assert [type(i) for i in own.identities] == [HybridIdentity]


def test_keygen_passphrase_file_encrypts_and_a_wrong_one_is_exit_3(tmp_path):
    keys = tmp_path / "keys"
    passfile = secret_file(tmp_path / "pass", "tr0ub4dor&3 horse\n")
    done = run("keygen", "alice@example.com", "--out", str(keys), "--passphrase-file",
               str(passfile), "--algorithm", "x25519")
    assert done.returncode == 0, done.stderr
    assert "(encrypted)" in done.stderr
    for path in keys.iterdir():
        assert keyfile.is_encrypted(path.read_bytes())
        assert keyfile.parse(path.read_bytes()).params == keyfile.DEFAULT_PARAMS
    wrong = secret_file(tmp_path / "wrong", "tr0ub4dor&4 horse\n")
    failed = run("keyring", "add", "alice@example.com", str(keys), "--keyring",
                 str(tmp_path / "ring"), "--passphrase-file", str(wrong))
    assert failed.returncode == EXIT_WRONG_PASSPHRASE
    [line] = failed.stderr.splitlines()
    assert line.startswith("keyresolve: wrong passphrase for ") and str(keys) in line
    assert "tr0ub4dor" not in failed.stderr + failed.stdout
    no_traceback(failed)
    added = cli("keyring", "add", "alice@example.com", str(keys), "--keyring",
                str(tmp_path / "ring"), "--passphrase-file", str(passfile))
    assert added.returncode == 0, added.stderr
    assert "not encrypted" not in added.stderr


def test_keygen_passphrase_prompt_asks_twice(tmp_path):
    runner = CliRunner()
    keys = tmp_path / "keys"
    done = runner.invoke(main, ["keygen", "alice@example.com", "--out", str(keys),
                                "--algorithm", "x25519", "--passphrase"],
                         input="s3cret words\ns3cret words\n")
    assert done.exit_code == 0, done.output
    assert "s3cret" not in done.output
    [path] = keys.iterdir()
    assert keyfile.is_encrypted(path.read_bytes())
    asked = []
    own = load_keys(keys, PassphraseSource(prompt=lambda text: asked.append(text)
                                           or "s3cret words"))
    assert len(asked) == 1 and "alice@example.com" in asked[0]
    assert own.identities[0].public_key == own.keys[0].key
    mismatch = runner.invoke(main, ["keygen", "bob@example.com", "--out", str(keys),
                                    "--passphrase"], input="one\ntwo\n")
    assert mismatch.exit_code != 0
    assert not list(keys.glob("bob@*"))


def test_keygen_refuses_a_passphrase_file_others_may_read(tmp_path):
    loose = secret_file(tmp_path / "pass", "pw\n", 0o644)
    done = cli("keygen", "alice@example.com", "--out", str(tmp_path / "k"),
               "--passphrase-file", str(loose))
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert "passphrase file" in line and "chmod 600" in line
    assert not (tmp_path / "k").exists()
    both = cli("keygen", "a@example.com", "--passphrase", "--passphrase-file", str(loose))
    assert both.returncode == 2 and "not both" in both.stderr


# -- load_keys -----------------------------------------------------------------------------
def test_load_keys_prompts_once_for_all_encrypted_files(tmp_path):
    make_keys(ALICE, (KeyAlgorithm.X25519, KeyAlgorithm.ED25519, KeyAlgorithm.MLKEM768X25519),
              tmp_path, "pw", LOW)
    asked = []
    own = load_keys(tmp_path, PassphraseSource(prompt=lambda text: asked.append(text) or "pw"),
                    warn=pytest.fail)
    assert len(asked) == 1
    assert sorted(i.kind for i in own.identities) == [KeyAlgorithm.X25519,
                                                      KeyAlgorithm.MLKEM768X25519]
    assert len(own.keys) == 3 and not own.unencrypted
    with pytest.raises(WrongPassphrase, match="wrong passphrase for "):
        load_keys(tmp_path, PassphraseSource(prompt=lambda text: "nope"))


def test_unencrypted_files_load_with_one_warning(tmp_path):
    make_keys(ALICE, (KeyAlgorithm.X25519, KeyAlgorithm.ED25519), tmp_path)
    warnings = []
    own = load_keys(tmp_path, PassphraseSource(prompt=pytest.fail), warn=warnings.append)
    assert len(warnings) == 1 and "2 private key files are not encrypted" in warnings[0]
    assert len(own.unencrypted) == 2


def test_load_keys_errors(tmp_path):
    with pytest.raises(NoKey, match="no key directory"):
        load_keys(tmp_path / "none", PassphraseSource())
    with pytest.raises(NoKey, match="no private key"):
        load_keys(tmp_path, PassphraseSource())
    make_keys(ALICE, (KeyAlgorithm.X25519,), tmp_path)
    make_keys(Name.from_text("bob@example.com"), (KeyAlgorithm.X25519,), tmp_path)
    with pytest.raises(KeyresolveError, match="several addresses"):
        load_keys(tmp_path, PassphraseSource(), warn=lambda line: None)
    own = load_keys(tmp_path, PassphraseSource(), address="Bob@Example.com",
                    warn=lambda line: None)
    assert own.address == "bob@example.com"
    (tmp_path / "alice@example.com.x25519.pem").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_keys(tmp_path, PassphraseSource(), address="alice@example.com")
    empty = secret_file(tmp_path / "empty", "\n")
    with pytest.raises(ConfigError, match="empty"):
        PassphraseSource(empty).get("x")


# -- the keyring commands -----------------------------------------------------------------
def test_default_keyring_dir_follows_xdg():
    assert default_keyring_dir({"XDG_DATA_HOME": "/x/data", "HOME": "/h"}) == Path(
        "/x/data/keyresolve/keyring")
    assert default_keyring_dir({"XDG_DATA_HOME": "rel", "HOME": "/h"}) == Path(
        "/h/.local/share/keyresolve/keyring")
    assert default_keyring_dir({"HOME": "/h"}) == Path("/h/.local/share/keyresolve/keyring")


def test_keyring_commands_end_to_end(tmp_path):
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    xdg = {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    bob = run("keygen", "bob@example.com", "--out", str(tmp_path / "bob"), env=env)
    (tmp_path / "bob.zone").write_text(bob.stdout)
    added = run("keyring", "add", "bob@example.com", str(tmp_path / "bob.zone"), env=env)
    assert added.returncode == 0, added.stderr
    assert added.stdout.count(": new") == 2
    ring_dir = tmp_path / "xdg" / "keyresolve" / "keyring"
    assert stat.S_IMODE(ring_dir.stat().st_mode) == 0o700
    line = "carol@example.com. 300 IN KEY x25519 encrypt flags=registered " \
           "oX85u095Pdmoz7V5B7g7PC2SGFpuKZOnYRTNxWZNOi0="
    assert cli("keyring", "add", "carol@example.com", line, env=xdg).returncode == 0
    own = cli("keyring", "add", "bob@example.com", str(tmp_path / "bob"), env=xdg)
    assert own.returncode == 0 and own.stdout.count("unchanged") == 2
    listed = cli("keyring", "list", env=xdg)
    assert listed.returncode == 0
    text = listed.stdout
    assert text.index("bob@example.com") < text.index("carol@example.com")
    assert "[registered]" in text and " own" in text
    carol_id = KEY.from_text(line.split()[4:]).key_id
    found = cli("keyring", "find", carol_id[:6].upper(), env=xdg)
    assert found.returncode == 0 and found.stdout.startswith("carol@example.com") \
        and carol_id in found.stdout
    shown = cli("keyring", "show", "Carol@Example.com", env=xdg)
    assert shown.returncode == 0
    assert "carol@example.com.\tKEY\tx25519 encrypt flags=registered oX85" in shown.stdout

    # A fetched key that differs is pending, and accept promotes it, naming both ids.
    new = KEY(KeyAlgorithm.X25519, 1, b"\x07" * 32)
    with KeyRing(ring_dir) as ring:
        assert ring.put(RingEntry("carol@example.com", new, "fetched", server="127.0.0.1:53",
                                  fetched_at=0.0, ttl=300)) == "pending"
    shown = cli("keyring", "show", "carol@example.com", env=xdg)
    assert "PENDING fetched" in shown.stdout and "keyring accept carol@example.com" in shown.stdout
    assert "from 127.0.0.1:53  at 1970-01-01T00:00:00Z  ttl 300" in shown.stdout
    accepted = cli("keyring", "accept", "carol@example.com", env=xdg)
    assert accepted.returncode == 0
    assert new.key_id in accepted.stdout and f"replacing {carol_id}" in accepted.stdout
    again = cli("keyring", "accept", "carol@example.com", env=xdg)
    assert again.returncode == 1 and "nothing to accept" in again.stderr

    removed = cli("keyring", "remove", "carol@example.com", env=xdg)
    assert removed.returncode == 0
    gone = cli("keyring", "show", "carol@example.com", env=xdg)
    assert gone.returncode == EXIT_NO_KEY and len(gone.stderr.splitlines()) == 1
    assert cli("keyring", "remove", "carol@example.com", env=xdg).returncode == EXIT_NO_KEY
    assert cli("keyring", "find", "0123abcd", env=xdg).returncode == EXIT_NO_KEY


def test_keyring_add_refuses_bad_input_in_one_line_each(tmp_path):
    ring = ["--keyring", str(tmp_path / "ring")]
    cases = [
        (["keyring", "add", "dave@example.com", "x25519 encrypt AAAA"], "32 bytes"),
        (["keyring", "add", "not-a-mailbox", "x25519 encrypt AAAA"], "not a mailbox"),
        (["keyring", "add", "dave@example.com",
          "erin@example.com. KEY x25519 encrypt oX85u095Pdmoz7V5B7g7PC2SGFpuKZOnYRTNxWZNOi0="],
         "no KEY of dave@example.com"),
        (["keyring", "find", "xyz"], "hex digits"),
    ]
    for args, message in cases:
        done = cli(*args, *ring)
        assert done.returncode in (1, EXIT_NO_KEY), done.stderr
        [line] = done.stderr.splitlines()
        assert message in line
        no_traceback(done)


def test_keyring_add_refuses_an_include_in_one_clear_line(tmp_path):
    """keyring add FILE reads FILE alone: an $INCLUDE in it is refused unread
    (even of a file that holds the address's key), in one line naming it."""
    line = "dave@example.com. KEY x25519 encrypt oX85u095Pdmoz7V5B7g7PC2SGFpuKZOnYRTNxWZNOi0="
    (tmp_path / "included.zone").write_text(line + "\n")
    (tmp_path / "keys.zone").write_text(f"$INCLUDE {tmp_path / 'included.zone'}\n")
    ring = tmp_path / "ring"
    done = cli("keyring", "add", "dave@example.com", str(tmp_path / "keys.zone"),
               "--keyring", str(ring))
    no_traceback(done)
    assert done.returncode == 1 and done.stdout == ""
    [error] = done.stderr.splitlines()
    assert error.startswith(f"keyresolve: {tmp_path / 'keys.zone'}:1: cannot read included "
                            f"file '{tmp_path / 'included.zone'}': keyring add reads only the "
                            "file given, not its includes: add the included file itself")
    assert cli("keyring", "show", "dave@example.com", "--keyring", str(ring)).returncode \
        == EXIT_NO_KEY
    added = cli("keyring", "add", "dave@example.com", str(tmp_path / "included.zone"),
                "--keyring", str(ring))
    assert added.returncode == 0 and ": new" in added.stdout


def test_keyring_add_takes_a_long_key_line_as_text_whatever_its_slashes(tmp_path):
    """A KEY line is SOURCE's text as given, never a path: an mlkem768x25519
    key's 1,624 base64 characters may hold "//" (a path would fold it into
    one "/") or run past a file name's 255 bytes without a "/" (the file
    system refuses to look the name up)."""
    ring = ["--keyring", str(tmp_path / "ring")]
    for raw in (b"\xff" * 3 + b"\x00" * 1213, b"\x00" * 1213 + b"\xff" * 3):
        key = KEY(KeyAlgorithm.MLKEM768X25519, 1, raw)
        data = key.to_text()
        assert "//" in data and re.search(r"[^/]{256}", data)
        for line in (data, f"dave@example.com. KEY {data}"):
            done = cli("keyring", "add", "dave@example.com", line, *ring)
            assert done.returncode == 0, done.stderr
            assert f"encrypt mlkem768x25519 {key.key_id}" in done.stdout
        shown = cli("keyring", "show", "dave@example.com", *ring)
        assert shown.returncode == 0 and data.split()[-1] in shown.stdout


def test_the_exit_status_table_of_docs_client_md_matches_exitcodes():
    import re

    from keyresolve.cli import exitcodes

    doc = (Path(__file__).resolve().parent.parent / "docs" / "client.md").read_text()
    table = doc[doc.index("## Exit statuses"):]
    documented = {int(n) for n in re.findall(r"^\| (\d+) \|", table, re.M)}
    defined = {getattr(exitcodes, name) for name in exitcodes.__all__ if name.startswith("EXIT_")}
    assert documented == defined
    assert len(defined) == len([n for n in exitcodes.__all__ if n.startswith("EXIT_")])
