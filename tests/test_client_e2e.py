"""End to end: `keyresolve seal`, `open`, `sign`, `verify` and `keyring
refresh` as subprocesses, finding keys made by `keyresolve keygen` through a
real hierarchy (root, com, example.com primaries and a resolver), keeping
them in the key ring."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from keyresolve.cli import exitcodes
from keyresolve.client.envelope import ENVELOPE_MAGIC
from keyresolve.client.seal import MAGIC, Sealer, SigningKey, make_recipient
from keyresolve.protocol.records import KeyAlgorithm
from keyresolve.store.keyring import KeyRing

from .conftest import Daemon, keyresolve_cmd
from .test_resolver_e2e import endpoint, start_auth, start_resolver

ZONE_HEAD = """$ORIGIN example.com.
$TTL 3600
@ SOA ns1 hostmaster@ 1 3600 600 86400 60
@ NS ns1
ns1 ADDR {self}
nokey@ ALIAS ns1
"""
#: More than one 64 KiB chunk, not a multiple of it.
BIG = bytes(range(256)) * 1000


def run(*args: str, cwd: Path, data: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(keyresolve_cmd(*args), input=data, capture_output=True, cwd=cwd,
                          timeout=60)


def keygen(world, address: str, algorithm: str, directory: str) -> str:
    """`keyresolve keygen`: the KEY line it prints."""
    done = run("keygen", address, "--algorithm", algorithm, "--out",
               str(world.dir / directory), cwd=world.dir)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


class World:
    """The hierarchy, the keys, and helpers to run the client commands."""

    def __init__(self, tmp_path: Path, start_daemon) -> None:
        self.dir = tmp_path
        self.ring = tmp_path / "ring"
        self.lines = {
            "alice-enc": keygen(self, "alice@example.com", "x25519", "alice"),
            "alice-sig": keygen(self, "alice@example.com", "ed25519", "alice"),
            "bob": keygen(self, "bob@example.com", "x25519", "bob"),
            "signonly": keygen(self, "signonly@example.com", "ed25519", "signonly"),
            "carol": keygen(self, "carol@example.com", "x25519", "carol"),
            "temp": keygen(self, "temp@example.com", "x25519", "temp").replace(
                "x25519 encrypt ", "x25519 encrypt flags=interim "),
        }
        self.lines["pq"] = keygen(self, "pq@example.com", "mlkem768x25519", "pq")
        self.example = start_auth(start_daemon, tmp_path / "example", "example.com",
                                  self.zone())
        com = start_auth(start_daemon, tmp_path / "com", "com", f"""$ORIGIN com.
$TTL 3600
@ SOA ns1.nic hostmaster@nic 1 3600 600 86400 60
@ NS ns1.nic
ns1.nic ADDR {{self}}
example NS ns1.example
ns1.example ADDR {endpoint(self.example.address)}
""")
        root = start_auth(start_daemon, tmp_path / "root", ".", f"""$ORIGIN .
$TTL 3600
@ SOA a.root-servers. hostmaster@root-servers. 1 3600 600 86400 60
@ NS a.root-servers.
a.root-servers. ADDR {{self}}
com. NS ns1.nic.com.
ns1.nic.com. ADDR {endpoint(com.address)}
""")
        self.resolver = start_resolver(start_daemon, tmp_path / "resolver",
                                       [("a.root-servers.", root.address)])
        #: A second resolver, for the test that stops one.
        self.spare = start_resolver(start_daemon, tmp_path / "spare",
                                    [("a.root-servers.", root.address)])

    def zone(self) -> str:
        return ZONE_HEAD + "".join(self.lines.values())

    def cli(self, *args: str, data: bytes = b"", resolver: str | None = None,
            ring: Path | None = None) -> subprocess.CompletedProcess:
        """A client command with this world's ring and resolver (or those given)."""
        return run(*args, "--keyring", str(ring or self.ring), "--resolver",
                   resolver or endpoint(self.resolver.address), cwd=self.dir, data=data)

    def scratch(self, name: str) -> Path:
        """A directory of the test's own."""
        path = self.dir / "scratch" / name
        path.mkdir(parents=True)
        return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One hierarchy for the module (building it takes seconds): the tests
    use their own addresses, rings and files where they change anything.
    Its daemons are checked at the end as `start_daemon` checks them."""
    base = tmp_path_factory.mktemp("world")
    daemons: list[Daemon] = []

    def start(*args: str, ready: str = r"\bready\b", cwd: Path | None = None,
              expect_errors: list[str] = (), expect_exit: int | None = 0) -> Daemon:
        daemon = Daemon(list(args), cwd or base, expect_errors=expect_errors,
                        expect_exit=expect_exit)
        daemons.append(daemon)
        daemon.wait_for(ready)
        return daemon

    try:
        yield World(base, start)
    finally:
        for daemon in daemons:
            daemon.terminate()
        problems = [problem for daemon in daemons for problem in daemon.finish()]
        if problems:
            pytest.fail("\n\n".join(problems), pytrace=False)


def lines(done: subprocess.CompletedProcess) -> list[str]:
    """The stderr lines, but for the warning that the test keys are not encrypted."""
    return [line for line in done.stderr.decode().splitlines()
            if "private key file" not in line or "not encrypted" not in line]


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_seal_through_the_hierarchy_open_with_the_key_then_seal_from_the_ring(world):
    here = world.scratch("ring-first")
    ring, spare = here / "ring", endpoint(world.spare.address)
    sealed = world.cli("seal", "--to", "bob@example.com", data=BIG, ring=ring, resolver=spare)
    assert sealed.returncode == 0, sealed.stderr
    assert sealed.stdout.startswith(MAGIC) and sealed.stderr == b""
    (here / "msg").write_bytes(sealed.stdout)
    opened = world.cli("open", "--keys", str(world.dir / "bob"), "-o", str(here / "out"),
                       str(here / "msg"), ring=ring, resolver=spare)
    assert opened.returncode == 0, opened.stderr
    assert (here / "out").read_bytes() == BIG
    assert lines(opened)[-1].endswith("it is not signed (it says nothing about who wrote it)")
    with KeyRing(ring) as held:
        [entry] = held.get("bob@example.com")
    assert entry.source == "fetched" and entry.accepted and entry.ttl == 3600
    assert entry.server == spare and entry.fetched_at > 0

    assert world.spare.stop() == 0
    again = world.cli("seal", "--to", "bob@example.com", data=b"from the ring", ring=ring,
                      resolver=spare)
    assert again.returncode == 0 and again.stderr == b""
    reopened = world.cli("open", "--keys", str(world.dir / "bob"), data=again.stdout,
                         ring=ring, resolver=spare)
    assert reopened.returncode == 0 and reopened.stdout == b"from the ring"
    # an address the ring does not hold now fails as unreachable
    down = world.cli("seal", "--to", "alice@example.com", data=b"x", ring=ring, resolver=spare)
    assert down.returncode == exitcodes.EXIT_UNREACHABLE and down.stdout == b""
    [line] = lines(down)
    assert line.startswith("keyresolve: alice@example.com: key servers unreachable")


def test_a_hybrid_key_comes_over_tcp_and_seals(world):
    sealed = world.cli("seal", "--to", "pq@example.com", data=b"post-quantum")
    assert sealed.returncode == 0, sealed.stderr
    opened = world.cli("open", "--keys", str(world.dir / "pq"), data=sealed.stdout)
    assert opened.returncode == 0 and opened.stdout == b"post-quantum"


def test_signed_message_verified_unknown_signer_and_bad_signature(world):
    alice = str(world.dir / "alice")
    sealed = world.cli("seal", "--to", "bob@example.com", "--sign-as", "alice@example.com",
                       "--keys", alice, data=b"signed by alice")
    assert sealed.returncode == 0, sealed.stderr
    opened = world.cli("open", "--keys", str(world.dir / "bob"), data=sealed.stdout)
    assert opened.returncode == 0 and opened.stdout == b"signed by alice"
    assert lines(opened)[-1].startswith("keyresolve: good signature from alice@example.com (key ")

    keygen(world, "mallory@example.com", "ed25519", "mallory")
    forged = world.cli("seal", "--to", "bob@example.com", "--sign-as", "mallory@example.com",
                       "--keys", str(world.dir / "mallory"), data=b"who am I")
    assert forged.returncode == 0, forged.stderr
    here = world.scratch("signatures")
    out = here / "from-mallory"
    unknown = world.cli("open", "--keys", str(world.dir / "bob"), "-o", str(out),
                        data=forged.stdout)
    assert unknown.returncode == exitcodes.EXIT_UNKNOWN_SIGNER
    assert lines(unknown)[-1].startswith("keyresolve: unknown signer mallory@example.com")
    assert "no such address" in lines(unknown)[-1]
    assert out.read_bytes() == b"who am I"  # authentic as sealed; the signer is unknown

    # a signature claiming alice's key id, made with another key
    mallory_pem = next((world.dir / "mallory").glob("*.pem")).read_bytes()
    liar = SigningKey.from_pem("alice@example.com", mallory_pem)
    alice_id = next(ln for ln in [world.lines["alice-sig"]])
    from keyresolve.protocol.records import KEY, make_key_id
    alice_key = KEY.from_text(alice_id.split("\t")[2].split())
    claimed = make_key_id(KeyAlgorithm.ED25519, alice_key.key)

    class Liar(SigningKey):
        @property
        def key_id(self) -> bytes:
            return claimed

    bob_key = KEY.from_text(world.lines["bob"].split("\t")[2].split())
    sealer = Sealer([make_recipient(bob_key)], signer=Liar(liar.address, liar.private_key))
    message = sealer.header + sealer.update(b"forged") + sealer.finish()
    bad_out = here / "forged"
    bad = world.cli("open", "--keys", str(world.dir / "bob"), "-o", str(bad_out), data=message)
    assert bad.returncode == exitcodes.EXIT_BAD_SIGNATURE
    assert "does not verify" in lines(bad)[-1] and not bad_out.exists()
    assert sorted(p.name for p in here.iterdir()) == ["from-mallory"]


def test_detached_signatures(world):
    here = world.scratch("detached")
    data = here / "data"
    data.write_bytes(BIG)
    signed = world.cli("sign", "--keys", str(world.dir / "alice"), "-o",
                       str(here / "data.sig"), str(data))
    assert signed.returncode == 0, signed.stderr
    good = world.cli("verify", "--signature", str(here / "data.sig"), str(data))
    assert good.returncode == 0, good.stderr
    assert lines(good)[-1].startswith("keyresolve: good signature from alice@example.com")
    data.write_bytes(BIG + b"!")
    bad = world.cli("verify", "--signature", str(here / "data.sig"), str(data))
    assert bad.returncode == exitcodes.EXIT_BAD_SIGNATURE
    [line] = [ln for ln in lines(bad) if ln.startswith("keyresolve: ")]
    assert "does not verify" in line
    nokey = world.cli("sign", "--keys", str(world.dir / "bob"), str(data))
    assert nokey.returncode == exitcodes.EXIT_NO_KEY
    assert "no ed25519 signing key for bob@example.com" in lines(nokey)[-1]


def test_no_key_no_such_address_and_unreachable_each_have_their_line_and_status(world):
    cases = [("nobody@example.com", exitcodes.EXIT_NO_SUCH_ADDRESS, "no such address"),
             ("nokey@example.com", exitcodes.EXIT_NO_KEY, "no key"),
             ("signonly@example.com", exitcodes.EXIT_NO_KEY, "no encryption key")]
    for address, status, words in cases:
        done = world.cli("seal", "--to", "bob@example.com", "--to", address, data=b"x")
        assert done.returncode == status, (address, done.stderr)
        [line] = lines(done)
        assert line.startswith(f"keyresolve: {address}: ") and words in line
        assert done.stdout == b""
    down = world.cli("seal", "--to", "carol@example.com", data=b"x",
                     resolver=f"127.0.0.1:{closed_port()}")
    assert down.returncode == exitcodes.EXIT_UNREACHABLE
    [line] = lines(down)
    assert "carol@example.com: key servers unreachable" in line and "refused" in line
    interim = world.cli("seal", "--to", "nokey@example.com", "--if-no-key", "request-interim",
                        data=b"x")
    assert interim.returncode == exitcodes.EXIT_NOT_AVAILABLE
    assert "not available yet" in lines(interim)[0]


def test_sign_only_envelope_for_a_recipient_without_key(world):
    alice = str(world.dir / "alice")
    done = world.cli("seal", "--to", "signonly@example.com", "--if-no-key", "sign-only",
                     "--sign-as", "alice@example.com", "--keys", alice, data=BIG)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(ENVELOPE_MAGIC) and BIG in done.stdout
    assert any("signed envelope in clear (--if-no-key sign-only)" in ln for ln in lines(done))
    here = world.scratch("envelope")
    opened = world.cli("open", "-o", str(here / "clear"), data=done.stdout)
    assert opened.returncode == 0, opened.stderr
    assert (here / "clear").read_bytes() == BIG
    assert lines(opened)[-1].startswith("keyresolve: good signature from alice@example.com")
    tampered = bytearray(done.stdout)
    tampered[100] ^= 1
    bad = world.cli("open", "-o", str(here / "clear2"), data=bytes(tampered))
    assert bad.returncode == exitcodes.EXIT_BAD_SIGNATURE
    assert sorted(p.name for p in here.iterdir()) == ["clear"]
    mixed = world.cli("seal", "--to", "bob@example.com", "--to", "signonly@example.com",
                      "--if-no-key", "sign-only", "--sign-as", "alice@example.com", "--keys",
                      alice, data=b"x")
    assert mixed.returncode == exitcodes.EXIT_NO_KEY and mixed.stdout == b""


def test_a_tampered_message_fails_and_leaves_no_output_file(world):
    sealed = world.cli("seal", "--to", "bob@example.com", data=BIG)
    here = world.scratch("tampered")
    out = here / "out"
    for where in (200, len(sealed.stdout) // 2, len(sealed.stdout) - 5):
        tampered = bytearray(sealed.stdout)
        tampered[where] ^= 0x40
        done = world.cli("open", "--keys", str(world.dir / "bob"), "-o", str(out),
                         data=bytes(tampered))
        assert done.returncode == exitcodes.EXIT_CORRUPT, done.stderr
        [line] = lines(done)
        assert "authenticate" in line or "corrupt" in line
        assert list(here.iterdir()) == []
    truncated = world.cli("open", "--keys", str(world.dir / "bob"), "-o", str(out),
                          data=sealed.stdout[:-1000])
    assert truncated.returncode == exitcodes.EXIT_CORRUPT and not out.exists()
    stranger = world.cli("open", "--keys", str(world.dir / "alice"), data=sealed.stdout)
    assert stranger.returncode == exitcodes.EXIT_NOT_RECIPIENT


def test_a_changed_key_is_told_with_both_ids_and_strict_refuses_it_until_accepted(world):
    first = world.cli("seal", "--to", "carol@example.com", data=b"one")
    assert first.returncode == 0, first.stderr
    old_line = world.lines["carol"]
    world.lines["carol"] = keygen(world, "carol@example.com", "x25519", "carol-new")
    old_id, new_id = (_key_id(old_line), _key_id(world.lines["carol"]))
    (world.dir / "example" / "zone").write_text(
        world.zone().replace("{self}", endpoint(world.example.address)))
    world.example.signal(signal.SIGHUP)
    world.example.wait_for(r"zone \S+ loaded: serial 3")
    flush = run("cache", "flush", "carol@example.com", "--resolver",
                endpoint(world.resolver.address), cwd=world.dir)
    assert flush.returncode == 0, flush.stderr

    refresh = world.cli("keyring", "refresh")
    assert refresh.returncode == 0, refresh.stderr
    assert (f"carol@example.com: key changed: the ring accepted {old_id}, the servers now "
            f"publish {new_id}") in refresh.stdout.decode()
    strict = world.cli("seal", "--strict", "--to", "carol@example.com", data=b"two")
    assert strict.returncode == exitcodes.EXIT_KEY_CHANGED and strict.stdout == b""
    [line] = lines(strict)
    assert old_id in line and new_id in line and "keyring accept carol@example.com" in line

    loose = world.cli("seal", "--to", "carol@example.com", data=b"three")
    assert loose.returncode == 0, loose.stderr
    [warning] = lines(loose)
    assert warning.startswith("keyresolve: warning: carol@example.com: key changed")
    assert old_id in warning and new_id in warning
    opened = world.cli("open", "--keys", str(world.dir / "carol-new"), data=loose.stdout)
    assert opened.returncode == 0 and opened.stdout == b"three"

    accept_in_ring(world, "carol@example.com")
    accepted = world.cli("seal", "--strict", "--to", "carol@example.com", data=b"four")
    assert accepted.returncode == 0 and accepted.stderr == b""


def accept_in_ring(world, address: str) -> None:
    """`keyresolve keyring accept ADDRESS`."""
    done = run("keyring", "accept", address, "--keyring", str(world.ring), cwd=world.dir)
    assert done.returncode == 0, done.stderr


def _key_id(line: str) -> str:
    from keyresolve.protocol.records import KEY

    return KEY.from_text(line.split("\t")[2].split()).key_id


def test_output_file_is_owner_only_and_stdin_and_files_both_work(world):
    here = world.scratch("files")
    (here / "plain").write_bytes(b"from a file")
    out = here / "sealed"
    done = world.cli("seal", "--to", "bob@example.com", "-o", str(out), str(here / "plain"))
    assert done.returncode == 0 and done.stdout == b""
    assert os.stat(out).st_mode & 0o777 == 0o600
    opened = world.cli("open", "--keys", str(world.dir / "bob"), str(out))
    assert opened.stdout == b"from a file"


def test_an_interim_key_is_used_and_never_stored(world):
    here = world.scratch("interim")
    sealed = world.cli("seal", "--to", "temp@example.com", data=b"for now", ring=here / "ring")
    assert sealed.returncode == 0, sealed.stderr
    [note] = lines(sealed)
    assert note.startswith("keyresolve: temp@example.com: using the interim key ")
    assert "not kept in the key ring" in note
    with KeyRing(here / "ring") as ring:
        assert ring.get("temp@example.com") == []
    opened = world.cli("open", "--keys", str(world.dir / "temp"), data=sealed.stdout)
    assert opened.returncode == 0 and opened.stdout == b"for now"
