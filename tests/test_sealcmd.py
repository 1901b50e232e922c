"""The client commands without a hierarchy: keys the key ring holds (added
by hand, so no server is asked), private keys under a passphrase, flat
memory, and the errors that need no network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from keyresolve.cli import exitcodes
from keyresolve.cli.keygen import make_keys
from keyresolve.cli.sealcmd import exit_code
from keyresolve.client import keyfile
from keyresolve.client.lookup import KeyChange, KeyChanged, NoKeyPublished, NoSuchAddress, \
    ServersUnreachable
from keyresolve.client.seal import FLAG_HIDDEN, MAGIC
from keyresolve.protocol.errors import (BadMessageSignature, ConfigError, CorruptMessage,
                                        NoKey, NotARecipient, TruncatedMessage, WrongPassphrase)
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import KeyAlgorithm
from keyresolve.store.keyring import KeyRing, RingEntry

from .conftest import keyresolve_cmd

#: Where no resolver listens: a lookup that reached the network would fail.
NOWHERE = "127.0.0.1:9"
#: Cheap KDF parameters: the tests are about the commands, not Argon2's cost.
FAST = keyfile.KdfParams(iterations=1, memory_kib=1024, lanes=1)


@pytest.fixture
def home(tmp_path):
    """bob and carol with unencrypted keys, alice under a passphrase; each
    public key added by hand to a key ring."""
    ring = tmp_path / "ring"
    with KeyRing(ring) as held:
        for who, passphrase in (("bob", None), ("carol", None), ("alice", "correct horse")):
            made = make_keys(Name.from_text(f"{who}@example.com"),
                             (KeyAlgorithm.X25519, KeyAlgorithm.ED25519), tmp_path / who,
                             passphrase, FAST)
            for _, record in made:
                held.put(RingEntry(f"{who}@example.com", record.rdata, "added"))
    secret = tmp_path / "passphrase"
    secret.write_text("correct horse\n")
    secret.chmod(0o600)
    wrong = tmp_path / "wrong"
    wrong.write_text("battery staple\n")
    wrong.chmod(0o600)
    return tmp_path


def cli(home: Path, *args: str, data: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(keyresolve_cmd(*args, "--keyring", str(home / "ring"), "--resolver",
                                         NOWHERE), input=data, capture_output=True,
                          cwd=home, timeout=60)


def said(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.decode().splitlines() if "not encrypted" not in line]


def test_two_recipients_from_the_ring_hidden_each_opens(home):
    sealed = cli(home, "seal", "--to", "bob@example.com", "--to", "carol@example.com",
                 "--hide-recipients", data=b"for both")
    assert sealed.returncode == 0, sealed.stderr
    assert sealed.stdout.startswith(MAGIC) and sealed.stdout[7] & FLAG_HIDDEN
    for who in ("bob", "carol"):
        opened = cli(home, "open", "--keys", str(home / who), data=sealed.stdout)
        assert opened.returncode == 0 and opened.stdout == b"for both"


def test_a_passphrase_protects_the_signing_key_and_a_wrong_one_is_one_line(home):
    sealed = cli(home, "seal", "--to", "bob@example.com", "--sign-as", "alice@example.com",
                 "--keys", str(home / "alice"), "--passphrase-file", str(home / "passphrase"),
                 data=b"signed")
    assert sealed.returncode == 0, sealed.stderr
    opened = cli(home, "open", "--keys", str(home / "bob"), data=sealed.stdout)
    assert opened.returncode == 0 and opened.stdout == b"signed"
    assert said(opened)[-1].startswith("keyresolve: good signature from alice@example.com")
    wrong = cli(home, "sign", "--keys", str(home / "alice"), "--passphrase-file",
                str(home / "wrong"), data=b"x")
    assert wrong.returncode == exitcodes.EXIT_WRONG_PASSPHRASE and wrong.stdout == b""
    [line] = said(wrong)
    assert line.startswith("keyresolve: wrong passphrase for ") and "battery" not in line
    to_alice = cli(home, "seal", "--to", "alice@example.com", data=b"for alice")
    denied = cli(home, "open", "--keys", str(home / "alice"), "--passphrase-file",
                 str(home / "wrong"), "-o", str(home / "out"), data=to_alice.stdout)
    assert denied.returncode == exitcodes.EXIT_WRONG_PASSPHRASE and not (home / "out").exists()


def test_usage_errors(home):
    cases = [
        ("seal", "--to", "not-an-address", "-"),
        ("seal", "--to", "bob@example.com", "--sign-as", "alice@example.com"),
    ]
    for args in cases:
        done = cli(home, *args)
        assert done.returncode == exitcodes.EXIT_USAGE, (args, done.stderr)
    bad = subprocess.run(keyresolve_cmd("seal", "--to", "bob@example.com", "--resolver",
                                        "somewhere"), capture_output=True, timeout=60)
    assert bad.returncode == exitcodes.EXIT_USAGE and b"--resolver" in bad.stderr
    only = cli(home, "seal", "--to", "bob@example.com", "--if-no-key", "sign-only")
    assert only.returncode == exitcodes.EXIT_USAGE and b"needs --sign-as" in only.stderr
    nokeys = cli(home, "open", data=cli(home, "seal", "--to", "bob@example.com").stdout)
    assert nokeys.returncode == exitcodes.EXIT_NO_KEY and b"--keys" in nokeys.stderr
    junk = cli(home, "open", "--keys", str(home / "bob"), data=b"hello, not sealed")
    assert junk.returncode == exitcodes.EXIT_CORRUPT
    assert said(junk) == ["keyresolve: not a sealed message (no KRSEAL magic)"]
    missing = cli(home, "seal", "--to", "bob@example.com", str(home / "nothing-here"))
    assert missing.returncode == exitcodes.EXIT_ERROR and said(missing)[0].startswith(
        "keyresolve: cannot read ")


#: Runs the command argv[2:] with our stdin, its stdout to the file argv[1],
#: and prints its exit status and peak RSS in KiB: from a small process,
#: since a child forked from pytest would count pytest's pages in its
#: ru_maxrss before its exec.
_MEASURE = """
import os, subprocess, sys
with open(sys.argv[1], "wb") as out:
    proc = subprocess.Popen(sys.argv[2:], stdout=out, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def _peak_rss(args: list[str], stdin: Path, stdout: Path) -> int:
    """Run a command and return its peak resident set in bytes."""
    with open(stdin, "rb") as source:
        done = subprocess.run([sys.executable, "-c", _MEASURE, str(stdout),
                               *keyresolve_cmd(*args)], stdin=source, capture_output=True,
                              timeout=120)
    status, kib = done.stdout.split()[-2:]
    assert int(status) == 0
    return int(kib) * 1024


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
def test_memory_stays_flat_whatever_the_size(home):
    """Sealing and opening 48 MiB peaks within a few MiB of sealing 1 byte:
    the commands stream (issue #21 asks <= 64 MiB at any size)."""
    small, big = home / "small", home / "big"
    small.write_bytes(b"x")
    with open(big, "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(48):
            f.write(block)
    ring = ["--keyring", str(home / "ring"), "--resolver", NOWHERE]
    seal = ["seal", "--to", "bob@example.com", *ring]
    base = _peak_rss(seal, small, home / "small.sealed")
    sealing = _peak_rss(seal, big, home / "big.sealed")
    opening = _peak_rss(["open", "--keys", str(home / "bob"), "-o", str(home / "big.out"),
                         *ring], home / "big.sealed", home / "stdout")
    assert (home / "big.out").read_bytes() == big.read_bytes()
    assert sealing - base < 16 << 20 and opening - base < 16 << 20, (base, sealing, opening)
    assert max(sealing, opening) <= 64 << 20


@pytest.mark.parametrize("error, status", [
    (WrongPassphrase("wrong passphrase for f"), exitcodes.EXIT_WRONG_PASSPHRASE),
    (NoSuchAddress("a@b", "a@b: no such address"), exitcodes.EXIT_NO_SUCH_ADDRESS),
    (NoKeyPublished("a@b", "a@b: no key"), exitcodes.EXIT_NO_KEY),
    (ServersUnreachable("a@b", "a@b: unreachable"), exitcodes.EXIT_UNREACHABLE),
    (KeyChanged("a@b", KeyChange("a@b", ("1",), ("2",))), exitcodes.EXIT_KEY_CHANGED),
    (NoKey("no private key"), exitcodes.EXIT_NO_KEY),
    (NotARecipient("none"), exitcodes.EXIT_NOT_RECIPIENT),
    (BadMessageSignature("bad"), exitcodes.EXIT_BAD_SIGNATURE),
    (TruncatedMessage("short"), exitcodes.EXIT_CORRUPT),
    (CorruptMessage("bad chunk"), exitcodes.EXIT_CORRUPT),
    (ConfigError("bad file"), exitcodes.EXIT_ERROR),
])
def test_each_error_has_its_exit_status(error, status):
    assert exit_code(error) == status


def test_the_exit_statuses_in_the_docs_are_the_code_s():
    """docs/sealing.md's table gives the statuses exitcodes defines, each as
    the code has it (docs/client.md lists them all; the registry's are in
    docs/registry.md)."""
    table = (Path(__file__).resolve().parent.parent / "docs" / "sealing.md").read_text()
    rows = {int(line.split("|")[1]) for line in table.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip().isdigit()}
    codes = {getattr(exitcodes, name) for name in exitcodes.__all__ if name.startswith("EXIT_")}
    assert rows <= codes and rows >= codes - {exitcodes.EXIT_NO_REGISTRY, exitcodes.EXIT_REFUSED,
                                              exitcodes.EXIT_NOTAUTH, exitcodes.EXIT_FORMERR,
                                              exitcodes.EXIT_SERVER_ERROR, exitcodes.EXIT_EXPIRED,
                                              exitcodes.EXIT_BAD_MAIL}


def test_binary_output_is_refused_on_a_terminal(home):
    import pty

    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(keyresolve_cmd("seal", "--to", "bob@example.com", "--keyring",
                                             str(home / "ring"), "--resolver", NOWHERE),
                              input=b"x", stdout=terminal, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(terminal)
        os.close(controller)
    assert done.returncode == exitcodes.EXIT_USAGE
    assert done.stderr.decode().splitlines() == [
        "keyresolve: refusing to write binary output to a terminal: use -o OUT or a pipe"]
