"""Tests of keyresolve.cli.sharedkeys: keygen, config tables, secret files, -y and -k."""

from __future__ import annotations

import base64
import os
import tomllib

import pytest

from keyresolve.protocol import tsig
from keyresolve.protocol.errors import ConfigError
from keyresolve.cli.sharedkeys import (shared_keys_from_config, load_key_file, parse_y_option,
                             tsig_keygen)
from keyresolve.protocol.message import Message, make_query
from keyresolve.protocol.names import Name

SECRET = bytes(range(32))
B64 = base64.b64encode(SECRET).decode()
XFER = Name.from_text("xfer.")


def write(path, text: str, mode: int = 0o600):
    path.write_text(text)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("algorithm, size", [("hmac-sha256", 32), ("hmac-sha512", 64)])
def test_keygen_parses_back_into_a_working_key(tmp_path, algorithm, size):
    text = tsig_keygen("xfer", algorithm)
    table = tomllib.loads(text)["keys"]
    assert set(table) == {"xfer"} and table["xfer"]["algorithm"] == algorithm
    assert len(base64.b64decode(table["xfer"]["secret"])) == size
    keyring = shared_keys_from_config(table, tmp_path)
    key = keyring[XFER]
    wire = tsig.sign(make_query(XFER, 25), key, 1000)
    assert tsig.verify(Message.from_wire(wire), keyring, 1000) is key
    # The same text works as a -k key file.
    assert load_key_file(write(tmp_path / "k.toml", text)) == key


def test_keygen_is_random_and_quotes_dotted_names(tmp_path):
    assert tsig_keygen("xfer") != tsig_keygen("xfer")
    text = tsig_keygen("Xfer.Example.NET.")
    assert text.startswith('[keys."xfer.example.net"]\n')
    (name, table), = tomllib.loads(text)["keys"].items()
    assert shared_keys_from_config({name: table}, tmp_path).keys() == {
        Name.from_text("xfer.example.net.")}


def test_keygen_rejects_bad_input():
    with pytest.raises(ConfigError, match="unknown algorithm"):
        tsig_keygen("xfer", "hmac-md5")
    with pytest.raises(ConfigError, match="invalid key name"):
        tsig_keygen("bad name")


def test_inline_secret(tmp_path):
    keyring = shared_keys_from_config({"xfer": {"algorithm": "hmac-sha256", "secret": B64}},
                                  tmp_path)
    assert keyring == {XFER: tsig.SharedKey(XFER, "hmac-sha256", SECRET)}


def test_secret_file_0600_accepted(tmp_path):
    write(tmp_path / "xfer.secret", B64 + "\n")
    keyring = shared_keys_from_config(
        {"xfer": {"algorithm": "hmac-sha512", "secret_file": "xfer.secret"}}, tmp_path)
    assert keyring[XFER].secret == SECRET and keyring[XFER].algorithm == "hmac-sha512"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_secret_file_readable_by_others_refused(tmp_path, mode):
    write(tmp_path / "xfer.secret", B64, mode)
    with pytest.raises(ConfigError) as info:
        shared_keys_from_config({"xfer": {"algorithm": "hmac-sha256",
                                      "secret_file": "xfer.secret"}}, tmp_path)
    text = str(info.value)
    assert text.startswith("keys.xfer: secret_file") and "chmod 600" in text
    assert f"{mode:04o}" in text


def test_secret_file_missing_or_not_a_file(tmp_path):
    entry = {"algorithm": "hmac-sha256", "secret_file": "nope"}
    with pytest.raises(ConfigError, match="keys.xfer: secret_file .* does not exist"):
        shared_keys_from_config({"xfer": entry}, tmp_path)
    (tmp_path / "dir").mkdir(mode=0o700)
    with pytest.raises(ConfigError, match="not a regular file"):
        shared_keys_from_config({"xfer": dict(entry, secret_file="dir")}, tmp_path)


def test_secret_file_absolute_path_and_bad_contents(tmp_path):
    path = write(tmp_path / "s", "not base64!")
    entry = {"algorithm": "hmac-sha256", "secret_file": str(path)}
    with pytest.raises(ConfigError, match="not valid base64"):
        shared_keys_from_config({"xfer": entry}, tmp_path / "elsewhere")
    write(path, "x" * 5000)
    with pytest.raises(ConfigError, match="larger than"):
        shared_keys_from_config({"xfer": entry}, tmp_path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not base64 text"):
        shared_keys_from_config({"xfer": entry}, tmp_path)


@pytest.mark.parametrize("entry, message", [
    ({"algorithm": "hmac-sha256", "secret": "%%%"}, "not valid base64"),
    ({"algorithm": "hmac-sha256", "secret": base64.b64encode(bytes(15)).decode()},
     "15 bytes; at least 16"),
    ({"algorithm": "hmac-md5", "secret": B64}, "unknown algorithm"),
    ({"secret": B64}, "algorithm is missing"),
    ({"algorithm": "hmac-sha256"}, "exactly one of secret and secret_file"),
    ({"algorithm": "hmac-sha256", "secret": B64, "secret_file": "x"}, "exactly one"),
    ({"algorithm": "hmac-sha256", "secret": B64, "sekret": 1}, "unknown field 'sekret'"),
    ({"algorithm": "hmac-sha256", "secret": 12}, "base64 string"),
    ({"algorithm": "hmac-sha256", "secret_file": ""}, "path string"),
    ("text", "must be a table"),
])
def test_bad_entries_name_the_key(tmp_path, entry, message):
    with pytest.raises(ConfigError, match=message) as info:
        shared_keys_from_config({"xfer": entry}, tmp_path)
    assert str(info.value).startswith("keys.xfer: ")


def test_unquoted_dotted_name_gets_a_hint(tmp_path):
    table = tomllib.loads(f'[keys.xfer.example]\nalgorithm = "hmac-sha256"\nsecret = "{B64}"\n')
    with pytest.raises(ConfigError, match=r'quote names that contain dots: \[keys."xfer.example"\]'):
        shared_keys_from_config(table["keys"], tmp_path)


def test_bad_name_and_duplicates(tmp_path):
    good = {"algorithm": "hmac-sha256", "secret": B64}
    with pytest.raises(ConfigError, match="keys.bad name: invalid key name"):
        shared_keys_from_config({"bad name": good}, tmp_path)
    with pytest.raises(ConfigError, match="defined twice"):
        shared_keys_from_config({"xfer": good, "XFER.": good}, tmp_path)
    with pytest.raises(ConfigError):
        shared_keys_from_config(["xfer"], tmp_path)


def test_y_option_with_and_without_algorithm():
    assert parse_y_option(f"xfer:{B64}") == tsig.SharedKey(XFER, "hmac-sha256", SECRET)
    assert parse_y_option(f"hmac-sha512:xfer.:{B64}") == tsig.SharedKey(XFER, "hmac-sha512", SECRET)
    assert parse_y_option(f"HMAC-SHA256:xfer:{B64}").algorithm == "hmac-sha256"


@pytest.mark.parametrize("text, message", [
    ("xfer", "expected"), ("a:b:c:d", "expected"), (f":{B64}", "name is empty"),
    (f"md5:xfer:{B64}", "unknown algorithm"), ("xfer:AAAA", "at least 16"),
    (f"bad name:{B64}", "invalid key name"),
])
def test_y_option_errors(text, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_y_option(text)
    assert str(info.value).startswith("-y")


def test_key_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="key file .* does not exist"):
        load_key_file(tmp_path / "missing.toml")
    loose = write(tmp_path / "loose.toml", tsig_keygen("xfer"), 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_key_file(loose)
    two = write(tmp_path / "two.toml", tsig_keygen("a") + tsig_keygen("b"))
    with pytest.raises(ConfigError, match="exactly one"):
        load_key_file(two)
    broken = write(tmp_path / "broken.toml", "[keys.xfer\n")
    with pytest.raises(ConfigError, match="broken.toml"):
        load_key_file(broken)
    bad = write(tmp_path / "bad.toml", '[keys.xfer]\nalgorithm = "hmac-sha256"\nsecret = "!"\n')
    with pytest.raises(ConfigError, match=r"bad.toml: keys.xfer: secret is not valid base64"):
        load_key_file(bad)


def test_key_file_secret_file_is_relative_to_the_key_file(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    write(sub / "xfer.secret", B64)
    path = write(sub / "xfer.toml",
                 '[keys.xfer]\nalgorithm = "hmac-sha256"\nsecret_file = "xfer.secret"\n')
    assert load_key_file(path).secret == SECRET


def test_fifo_secret_file_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "fifo", 0o600)
    with pytest.raises(ConfigError, match="not a regular file"):
        shared_keys_from_config({"xfer": {"algorithm": "hmac-sha256", "secret_file": "fifo"}},
                            tmp_path)
