"""The owner's commands against the registry in `keyresolve serve`: real
daemons (a primary taking registrations, a secondary following it), a real
SMTP server (aiosmtpd) whose mails are saved to files as a mail client
would, and the commands as a user runs them: keygen, register, register
confirm, dig, renew, unregister (by key and by mail), recover."""

from __future__ import annotations

import base64
import re
import secrets
import subprocess
import time
from pathlib import Path

from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keyresolve.cli import registercmd as rc
from keyresolve.cli.commands import main
from keyresolve.registry import messages as m
from keyresolve.registry.mails import attachment_from_mail

from .conftest import keyresolve_cmd
from .test_registry_e2e import Registry
from .test_xfr_e2e import wait_until


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def saved(reg: Registry, count: int, path: Path) -> Path:
    """The `count`-th mail the SMTP server took, saved as a mail client does (LF)."""
    path.write_bytes(reg.next_mail(count).replace(b"\r\n", b"\n"))
    return path


def dig_keys(port: int, address: str) -> str:
    out = cli("dig", address, "KEY", f"@127.0.0.1:{port}", "+short")
    assert out.exit_code == 0, out.output
    return out.output


def secret_file(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def test_keygen_register_confirm_dig_at_the_secondary_then_unregister(
        tmp_path, start_daemon, smtp_server):
    reg = Registry(tmp_path, start_daemon, smtp_server, secondary=True)
    reg.start()
    reg.start_secondary()
    server = f"127.0.0.1:{reg.pport}"
    keys = tmp_path / "keys"
    assert cli("keygen", "alice@example.com", "--out", str(keys)).exit_code == 0

    out = cli("register", "alice@example.com", "--keys", str(keys), "--server", server)
    assert out.exit_code == 0, out.output
    assert "confirmation mail was sent to alice@example.com if" in out.output
    mail = saved(reg, 1, tmp_path / "confirm.eml")
    assert smtp_server.received[0].rcpt_tos == ["alice@example.com"]

    done = subprocess.run(keyresolve_cmd("register", "confirm", "--keys", str(keys), "-",
                                         "--server", server),
                          input=mail.read_bytes(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.search(rb"published alice@example.com in example.com. at serial \d+",
                     done.stdout)
    owner = rc.load_owner_keys(keys)
    for port in (reg.pport, reg.sport):
        wait_until(lambda: "flags=registered" in dig_keys(port, "alice@example.com"))
        answer = dig_keys(port, "alice@example.com")
        assert answer.count("flags=registered") == 2
        assert all(key.to_text().split()[-1] in answer for key in (owner.encrypt, owner.sign))

    out = cli("register", "confirm", "--keys", str(keys), str(mail), "--server", server)
    assert out.exit_code == rc.EXIT_NOTAUTH and "already answered" in out.output

    other = tmp_path / "other"
    assert cli("keygen", "alice@example.com", "--out", str(other)).exit_code == 0
    out = cli("unregister", "alice@example.com", "--keys", str(other), "--server", server)
    assert out.exit_code == rc.EXIT_NOTAUTH, out.output
    out = cli("unregister", "alice@example.com", "--keys", str(keys), "--server", server)
    assert out.exit_code == 0, out.output
    assert "withdrew the keys of alice@example.com" in out.output
    wait_until(lambda: dig_keys(reg.sport, "alice@example.com") == "")


def test_a_forged_mail_and_other_keys_are_refused_by_the_tool(tmp_path, start_daemon,
                                                                smtp_server):
    reg = Registry(tmp_path, start_daemon, smtp_server)
    reg.start()
    server = f"127.0.0.1:{reg.pport}"
    keys, other = tmp_path / "keys", tmp_path / "other"
    for directory in (keys, other):
        assert cli("keygen", "bob@example.com", "--out", str(directory)).exit_code == 0
    assert cli("register", "bob@example.com", "--keys", str(keys), "--server",
               server).exit_code == 0
    mail = saved(reg, 1, tmp_path / "confirm.eml")
    out = cli("register", "confirm", "--keys", str(other), str(mail), "--server", server)
    assert out.exit_code == rc.EXIT_OTHER_KEYS, out.output

    # the same mail, its attachment re-made and signed by another key than the registry's
    original = attachment_from_mail(mail.read_bytes())
    challenge = m.open_challenge(original, rc.load_owner_keys(keys).encrypt_private,
                                 reg.sign_key)
    forged = m.make_challenge(challenge, rc.load_owner_keys(keys).encrypt,
                              Ed25519PrivateKey.generate(), secrets.token_bytes)
    text = mail.read_text()
    assert base64.encodebytes(original).decode() in text
    forged_mail = tmp_path / "forged.eml"
    forged_mail.write_text(text.replace(base64.encodebytes(original).decode(),
                                        base64.encodebytes(forged).decode()))
    out = cli("register", "confirm", "--keys", str(keys), str(forged_mail), "--server", server)
    assert out.exit_code == rc.EXIT_FORGED and "forged" in out.output
    assert dig_keys(reg.pport, "bob@example.com").count("flags=registered") == 0


def test_renew_answers_the_reverification_mail(tmp_path, start_daemon, smtp_server):
    reg = Registry(tmp_path, start_daemon, smtp_server,
                   registry_extra='reverify_every = "3s"\nreverify_grace = "2s"\n')
    reg.start()
    server = f"127.0.0.1:{reg.pport}"
    keys = tmp_path / "keys"
    assert cli("keygen", "dora@example.com", "--out", str(keys)).exit_code == 0
    assert cli("register", "dora@example.com", "--keys", str(keys), "--server",
               server).exit_code == 0
    out = cli("register", "confirm", "--keys", str(keys),
              str(saved(reg, 1, tmp_path / "c.eml")), "--server", server)
    assert out.exit_code == 0, out.output
    reverify = saved(reg, 2, tmp_path / "r.eml")  # within reverify_every = 3s
    assert b"still hold" in reverify.read_bytes()
    out = cli("register", "confirm", "--keys", str(keys), str(reverify), "--server", server)
    assert out.exit_code == rc.EXIT_USAGE and "register renew" in out.output
    out = cli("register", "renew", "--keys", str(keys), str(reverify), "--server", server)
    assert out.exit_code == 0, out.output
    assert "renewed dora@example.com" in out.output and "kept" in out.output
    assert dig_keys(reg.pport, "dora@example.com").count("flags=registered") == 2


def mail_about(reg: Registry, smtp_server, words: bytes, path: Path) -> Path:
    """The first mail received holding `words`, saved (waiting for it)."""
    wait_until(lambda: any(words in r.content for r in smtp_server.received), 10.0)
    number = next(i for i, r in enumerate(smtp_server.received, 1) if words in r.content)
    return saved(reg, number, path)


def test_recover_with_backup_then_removal_by_mail(tmp_path, start_daemon, smtp_server):
    reg = Registry(tmp_path, start_daemon, smtp_server)
    reg.start()
    server = f"127.0.0.1:{reg.pport}"
    keys = tmp_path / "keys"
    recovery = secret_file(tmp_path / "recovery", "correct horse battery staple")
    wrong = secret_file(tmp_path / "wrong", "incorrect horse")
    assert cli("keygen", "carla@example.com", "--out", str(keys)).exit_code == 0
    out = cli("register", "carla@example.com", "--keys", str(keys), "--server", server,
              "--backup", "--recovery-passphrase-file", str(recovery))
    assert out.exit_code == 0 and "with a backup" in out.output
    out = cli("register", "confirm", "--keys", str(keys),
              str(saved(reg, 1, tmp_path / "c.eml")), "--server", server)
    assert out.exit_code == 0, out.output

    time.sleep(1.1)  # mail_interval = 1s: the next mail to carla is sent after it
    out = cli("recover", "carla@example.com", "--server", server)
    assert out.exit_code == 0 and "recovery token" in out.output
    mail = mail_about(reg, smtp_server, b"recover the keys", tmp_path / "rec.eml")
    out = cli("recover", "carla@example.com", "--confirm", str(mail), "--out",
              str(tmp_path / "back"), "--recovery-passphrase-file", str(wrong),
              "--server", server)
    assert out.exit_code == rc.EXIT_PASSPHRASE and "horse" not in out.output
    time.sleep(1.1)
    assert cli("recover", "carla@example.com", "--server", server).exit_code == 0
    wait_until(lambda: sum(b"recover the keys" in r.content
                           for r in smtp_server.received) == 2, 10.0)
    mail = saved(reg, len(smtp_server.received), tmp_path / "rec2.eml")
    out = cli("recover", "carla@example.com", "--confirm", str(mail), "--out",
              str(tmp_path / "back"), "--recovery-passphrase-file", str(recovery),
              "--server", server)
    assert out.exit_code == 0, out.output
    back = rc.load_owner_keys(tmp_path / "back", None, rc.PassphraseSource(recovery))
    original = rc.load_owner_keys(keys)
    assert (back.encrypt, back.sign) == (original.encrypt, original.sign)

    time.sleep(1.1)
    out = cli("unregister", "carla@example.com", "--by-mail", "--server", server)
    assert out.exit_code == 0 and "removal token" in out.output
    mail = mail_about(reg, smtp_server, b"removal of the keys", tmp_path / "rm.eml")
    out = cli("unregister", "carla@example.com", "--by-mail", "--confirm", str(mail),
              "--server", server)
    assert out.exit_code == 0, out.output
    assert "withdrew the keys of carla@example.com" in out.output
    assert dig_keys(reg.pport, "carla@example.com") == ""


def test_a_post_quantum_key_registers_resolves_over_tcp_and_seals(tmp_path, start_daemon,
                                                                   smtp_server):
    """keygen --pq, register --backup, the mail, register confirm; dig at the
    primary shows the mlkem768x25519 key flagged registered (the answer
    exceeds 1,232 bytes: dig gets it over TCP after a truncated UDP answer);
    that answer goes into a key ring (`keyring add`), seal --to opens with the
    key dir; recover gives the hybrid key back from the backup."""
    reg = Registry(tmp_path, start_daemon, smtp_server)
    reg.start()
    server = f"127.0.0.1:{reg.pport}"
    keys = tmp_path / "keys"
    out = cli("keygen", "erin@example.com", "--pq", "--out", str(keys))
    assert out.exit_code == 0, out.output
    assert sorted(p.name for p in keys.iterdir()) == ["erin@example.com.ed25519.pem",
                                                      "erin@example.com.mlkem768x25519.pem"]
    owner = rc.load_owner_keys(keys)
    assert owner.encrypt.algorithm.name == "MLKEM768X25519"

    recovery = secret_file(tmp_path / "recovery", "correct horse battery staple")
    out = cli("register", "erin@example.com", "--keys", str(keys), "--server", server,
              "--backup", "--recovery-passphrase-file", str(recovery))
    assert out.exit_code == 0, out.output
    assert f"encryption key {owner.encrypt.key_id}" in out.output and "with a backup" in out.output
    mail = saved(reg, 1, tmp_path / "confirm.eml")
    done = subprocess.run(keyresolve_cmd("register", "confirm", "--keys", str(keys), str(mail),
                                         "--server", server),
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert b"published erin@example.com in example.com." in done.stdout

    full = cli("dig", "erin@example.com", "KEY", f"@127.0.0.1:{reg.pport}")
    assert full.exit_code == 0, full.output
    assert "(TCP)" in full.output  # the UDP answer was truncated
    answer = dig_keys(reg.pport, "erin@example.com")
    hybrid = [line for line in answer.splitlines() if line.startswith("mlkem768x25519 encrypt")]
    assert len(hybrid) == 1 and "flags=registered" in hybrid[0]
    assert owner.encrypt.to_text().split()[-1] in hybrid[0]

    ring = tmp_path / "ring"
    out = cli("keyring", "add", "erin@example.com", hybrid[0], "--keyring", str(ring))
    assert out.exit_code == 0, out.output
    assert f"encrypt mlkem768x25519 {owner.encrypt.key_id}" in out.output
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"post-quantum hello\n")
    sealed = tmp_path / "msg.sealed"
    out = cli("seal", str(plain), "--to", "erin@example.com", "--keyring", str(ring),
              "-o", str(sealed))
    assert out.exit_code == 0, out.output
    opened = tmp_path / "opened.txt"
    out = cli("open", str(sealed), "--keys", str(keys), "--keyring", str(ring),
              "-o", str(opened))
    assert out.exit_code == 0, out.output
    assert opened.read_bytes() == b"post-quantum hello\n"


    time.sleep(1.1)  # mail_interval = 1s: the next mail to erin is sent after it
    out = cli("recover", "erin@example.com", "--server", server)
    assert out.exit_code == 0, out.output
    mail = mail_about(reg, smtp_server, b"recover the keys", tmp_path / "rec.eml")
    back = tmp_path / "back"
    out = cli("recover", "erin@example.com", "--confirm", str(mail), "--out", str(back),
              "--recovery-passphrase-file", str(recovery), "--server", server)
    assert out.exit_code == 0, out.output
    assert (back / "erin@example.com.mlkem768x25519.pem").stat().st_mode & 0o777 == 0o600
    again = rc.load_owner_keys(back, None, rc.PassphraseSource(recovery))
    assert (again.encrypt, again.sign) == (owner.encrypt, owner.sign)
