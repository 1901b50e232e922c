"""Encrypted private key files (keyresolve.client.keyfile, docs/key-files.md):
the spec's vectors both ways, and hostile files raising only our errors."""

from __future__ import annotations

import base64
import re
import unicodedata
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from hypothesis import given, settings, strategies as st

from keyresolve.client import keyfile
from keyresolve.client.keyfile import DEFAULT_PARAMS, KdfParams
from keyresolve.protocol.errors import KeyFileError, WrongPassphrase

DOC = Path(__file__).resolve().parent.parent / "docs" / "key-files.md"
_BLOCK = re.compile(r"<!-- keyfile: ([a-z0-9-]+) -->\n```text\n(.*?)```", re.S)
#: Parameters for the tests that are not about cost: fast.
LOW = KdfParams(iterations=1, memory_kib=8, lanes=1)
PEM = (b"-----BEGIN PRIVATE KEY-----\n"
       b"MC4CAQAwBQYDK2VuBCIEIHcHbQpzGKV9PBbBclGyZkXfTC+H68CZKrF3+6UduSwq\n"
       b"-----END PRIVATE KEY-----\n")


def read_vectors() -> dict[str, dict[str, str]]:
    vectors = {}
    for name, body in _BLOCK.findall(DOC.read_text()):
        fields: dict[str, str] = {}
        key = None
        for line in body.splitlines():
            if key in ("plaintext", "file") and not re.match(r"[a-z]+: ?", line):
                fields[key] += line + "\n"
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        vectors[name] = fields
    return vectors


VECTORS = read_vectors()


def test_the_spec_has_the_vectors_it_promises():
    assert sorted(VECTORS) == ["default-x25519", "low-ed25519-nfc", "low-x25519"]
    default = VECTORS["default-x25519"]
    assert (int(default["t"]), int(default["m"]), int(default["p"])) == (
        DEFAULT_PARAMS.iterations, DEFAULT_PARAMS.memory_kib, DEFAULT_PARAMS.lanes)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector_both_ways(name):
    v = VECTORS[name]
    passphrase = bytes.fromhex(v["passphrase"]).decode()
    if name.endswith("-nfc"):
        decomposed = unicodedata.normalize("NFD", passphrase)
        assert decomposed != passphrase
        passphrase = decomposed
    params = KdfParams(int(v["t"]), int(v["m"]), int(v["p"]))
    salt = bytes.fromhex(v["salt"])
    plaintext, file = v["plaintext"].encode(), v["file"].encode()
    assert keyfile.derive_key(passphrase, salt, params).hex() == v["key"]
    assert keyfile.encrypt(plaintext, passphrase, salt, params) == file
    assert keyfile.is_encrypted(file) and not keyfile.is_encrypted(plaintext)
    assert keyfile.decrypt(file, passphrase) == plaintext
    parsed = keyfile.parse(file)
    assert (parsed.params, parsed.salt) == (params, salt)


def test_the_kdf_is_rfc_9106_argon2id():
    """RFC 9106 5.3's Argon2id vector, through the same primitive derive_key uses."""
    tag = Argon2id(salt=b"\x02" * 16, length=32, iterations=3, lanes=4, memory_cost=32,
                   ad=b"\x04" * 12, secret=b"\x03" * 8).derive(b"\x01" * 32)
    assert tag.hex() == "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"


def test_wrong_passphrase_names_no_secret():
    file = keyfile.encrypt(PEM, "hunter2 right", bytes(16), LOW)
    with pytest.raises(WrongPassphrase) as caught:
        keyfile.decrypt(file, "hunter2 typo")
    assert "passphrase" in str(caught.value)
    for secret in ("hunter2", "MC4CAQAw"):
        assert secret not in str(caught.value)


def test_encrypt_refuses_a_bad_salt_and_an_empty_passphrase():
    with pytest.raises(KeyFileError, match="salt"):
        keyfile.encrypt(PEM, "pw", bytes(8), LOW)
    with pytest.raises(KeyFileError, match="empty"):
        keyfile.encrypt(PEM, "", bytes(16), LOW)


@pytest.mark.parametrize("t, m, p", [(0, 64, 1), (65, 64, 1), (1, 7, 1), (1, 15, 2),
                                     (1, 4 * 1024 * 1024 + 1, 1), (1, 1024, 0), (1, 1024, 65)])
def test_parameters_out_of_bounds_are_refused_before_deriving(t, m, p):
    file = keyfile.encrypt(PEM, "pw", bytes(16), LOW)
    body = bytearray(base64.b64decode(b"".join(file.splitlines()[1:-1])))
    body[7:19] = t.to_bytes(4, "big") + m.to_bytes(4, "big") + p.to_bytes(4, "big")
    hostile = keyfile._BEGIN + b"\n" + base64.b64encode(bytes(body)) + b"\n" + keyfile._END
    with pytest.raises(KeyFileError, match="Argon2id"):
        keyfile.decrypt(hostile, "pw")


def _armour(body: bytes) -> bytes:
    return keyfile._BEGIN + b"\n" + base64.b64encode(body) + b"\n" + keyfile._END + b"\n"


_GOOD = keyfile.encrypt(PEM, "pw", bytes(range(16)), LOW)
_BODY = base64.b64decode(b"".join(_GOOD.splitlines()[1:-1]))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(_BODY) - 1), st.integers(1, 255))
def test_any_flipped_byte_is_refused(at, mask):
    body = bytearray(_BODY)
    body[at] ^= mask
    with pytest.raises((WrongPassphrase, KeyFileError)):
        keyfile.decrypt(_armour(bytes(body)), "pw")


@settings(max_examples=100, deadline=None)
@given(st.integers(0, len(_BODY) - 1))
def test_any_truncation_is_refused(length):
    with pytest.raises((WrongPassphrase, KeyFileError)):
        keyfile.decrypt(_armour(_BODY[:length]), "pw")
    with pytest.raises((WrongPassphrase, KeyFileError)):
        keyfile.decrypt(_GOOD[:length], "pw")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.builds(lambda b: _armour(b), st.binary(max_size=200)))
def test_arbitrary_input_raises_only_our_errors(data):
    with pytest.raises((WrongPassphrase, KeyFileError)):
        keyfile.decrypt(data, "pw")


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=40), st.binary(min_size=1, max_size=300))
def test_round_trip_and_a_wrong_passphrase(passphrase, plaintext):
    file = keyfile.encrypt(plaintext, passphrase, bytes(16), LOW)
    assert keyfile.decrypt(file, passphrase) == plaintext
    with pytest.raises(WrongPassphrase):
        keyfile.decrypt(file, passphrase + "x")


def test_an_oversized_file_is_refused_unread():
    with pytest.raises(KeyFileError, match="at most"):
        keyfile.decrypt(b"A" * (keyfile.MAX_FILE_SIZE + 1), "pw")
