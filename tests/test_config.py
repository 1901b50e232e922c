"""Config parsing: every error names the file and the key."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from keyresolve.cli.config import fingerprint, load_resolver_config, load_serve_config
from keyresolve.protocol.transport import format_endpoint, parse_endpoint
from keyresolve.protocol.errors import ConfigError
from keyresolve.protocol.names import Name
from keyresolve.protocol.transport import DEFAULT_MAX_TRANSFER_TIME_OUT, DEFAULT_TCP_SEND_TIMEOUT


@pytest.mark.parametrize("text,expected", [
    ("127.0.0.1:5300", ("127.0.0.1", 5300)),
    ("[::1]:53", ("::1", 53)),
    ("localhost:7", ("127.0.0.1", 7)),
])
def test_parse_endpoint(text, expected):
    assert parse_endpoint(text) == expected
    assert parse_endpoint(format_endpoint(expected)) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", "::1:53", "[::1]53", "host.example:53",
                                  "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:-1", ""])
def test_parse_endpoint_rejects(text):
    with pytest.raises(ValueError):
        parse_endpoint(text)


def test_port_zero_only_where_allowed():
    assert parse_endpoint("127.0.0.1:0", allow_zero=True) == ("127.0.0.1", 0)


def test_full_config(tmp_path):
    path = tmp_path / "sub" / "serve.toml"
    path.parent.mkdir()
    path.write_text('listen = ["127.0.0.1:5300", "[::1]:5300"]\ndata_dir = "var/ns1"\n'
                    'tcp_idle_timeout = 2.5\nmax_tcp_connections = 9\nworkers = 2\n'
                    '[[zones]]\nname = "Example.COM"\nfile = "example.com.zone"\n')
    config = load_serve_config(path)
    assert config.listen == [("127.0.0.1", 5300), ("::1", 5300)]
    assert config.data_dir == path.parent / "var/ns1"
    assert config.tcp_idle_timeout == 2.5 and config.max_tcp_connections == 9
    assert config.workers == 2
    assert config.zones[0].name == Name.from_text("example.com.")
    assert config.zones[0].file == path.parent / "example.com.zone"


@pytest.mark.parametrize("body,key", [
    ('data_dir = "d"', "listen"),
    ('listen = []\ndata_dir = "d"', "listen"),
    ('listen = ["127.0.0.1"]\ndata_dir = "d"', "listen"),
    ('listen = ["127.0.0.1:1"]', "data_dir"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = 5', "data_dir"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\nlisten_typo = 1', "listen_typo"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\ntcp_idle_timeout = 0', "tcp_idle_timeout"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\nmax_tcp_connections = true',
     "max_tcp_connections"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\nmax_tcp_per_address = 0',
     "max_tcp_per_address: must be positive"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\nrate_limit = -1', "rate_limit: must be 0"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\nrate_limit = 2.5', "rate_limit: must be a whole"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\nslip = 11', "slip: must be 0..10"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\nslip = "2"', "slip: must be a whole"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\nworkers = 0', "workers"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\nworkers = 65', "workers: at most 64"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\nworkers = 1.5', "workers"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\n[[zones]]\nfile = "x"', "zones[0].name"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\n[[zones]]\nname = "a..b"\nfile = "x"',
     "zones[0].name"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\n[[zones]]\nname = "a"', "zones[0]: give either"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\n[[zones]]\nname = "a"\nfile = "x"\n'
     'primaries = ["127.0.0.1:2"]', "zones[0]: give either"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\n[[zones]]\nname = "a"\n'
     'primaries = ["127.0.0.1"]', "zones[0].primaries"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\n[[zones]]\nname = "a"\n'
     'primaries = ["127.0.0.1:2"]\nkey = "nokey"', "zones[0].key"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\n[[zones]]\nname = "a"\nfile = "x"\n'
     'notify = ["x"]', "zones[0].notify"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\n[[zones]]\nname = "a"\nfile = "x"\n'
     '[[zones]]\nname = "A."\nfile = "y"', "zones[1].name"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\n[[zones]]\nname = "a"\nfile = "x"\n'
     'serial_policy = "date"', "zones[0].serial_policy: must be one of keep, increment"),
    ('listen = ["127.0.0.1:1"]\ndata_dir = "d"\n[[zones]]\nname = "a"\nfile = "x"\n'
     'serial_policy = 1', "zones[0].serial_policy"),
    ('listen = ["127.0.0.1:1"', ""),
])
def test_errors_name_file_and_key(tmp_path, body, key):
    path = tmp_path / "c.toml"
    path.write_text(body + "\n")
    with pytest.raises(ConfigError) as info:
        load_serve_config(path)
    assert str(info.value).startswith(str(path)) and key in str(info.value)


@pytest.mark.parametrize("value", ["[]", '["xfer"]'])
def test_allow_update_is_refused_naming_what_to_use(tmp_path, value):
    """UPDATE is the registry's: the old setting stops the start with one
    line naming it and saying what to use instead, empty or not."""
    path = tmp_path / "c.toml"
    path.write_text('listen = ["127.0.0.1:1"]\ndata_dir = "d"\n'
                    '[keys.xfer]\nalgorithm = "hmac-sha256"\nsecret = "' + "A" * 44 + '"\n'
                    f'[[zones]]\nname = "a"\nfile = "x"\nallow_update = {value}\n')
    with pytest.raises(ConfigError) as info:
        load_serve_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: zones[0].allow_update: ") and "\n" not in message
    assert "registration = true" in message and "[registry]" in message


def test_limits_default_and_set(tmp_path):
    path = tmp_path / "serve.toml"
    path.write_text('listen = ["127.0.0.1:1"]\ndata_dir = "d"\n')
    config = load_serve_config(path)
    assert (config.max_tcp_per_address, config.rate_limit, config.slip) == (32, 0, 2)
    path.write_text('listen = ["127.0.0.1:1"]\ndata_dir = "d"\nmax_tcp_per_address = 4\n'
                    'rate_limit = 15\nslip = 0\n')
    config = load_serve_config(path)
    assert (config.max_tcp_per_address, config.rate_limit, config.slip) == (4, 15, 0)
    resolver = tmp_path / "resolver.toml"
    resolver.write_text('listen = ["127.0.0.1:1"]\nroot_hints = "h"\nmax_tcp_per_address = 3\n')
    assert load_resolver_config(resolver).max_tcp_per_address == 3
    resolver.write_text('listen = ["127.0.0.1:1"]\nroot_hints = "h"\nrate_limit = 3\n')
    with pytest.raises(ConfigError, match="rate_limit: unknown setting"):
        load_resolver_config(resolver)


def test_secondary_zone(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('listen = ["127.0.0.1:0"]\ndata_dir = "d"\n'
                    '[keys.xfer]\nalgorithm = "hmac-sha256"\nsecret = "' + "A" * 44 + '"\n'
                    '[[zones]]\nname = "example.com"\nprimaries = ["127.0.0.1:5300", "[::1]:53"]\n'
                    'key = "xfer"\n'
                    '[[zones]]\nname = "example.org"\nfile = "org.zone"\n'
                    'notify = ["127.0.0.1:5301"]\nallow_transfer = ["xfer"]\n')
    secondary, primary = load_serve_config(path).zones
    assert secondary.is_secondary and secondary.file is None
    assert secondary.primaries == [("127.0.0.1", 5300), ("::1", 53)]
    assert secondary.tsig_key == Name.from_text("xfer.")
    assert not primary.is_secondary and primary.notify == [("127.0.0.1", 5301)]
    assert primary.allow_transfer == [Name.from_text("xfer.")]
    assert primary.serial_policy == "keep"  # the default: refuse a change without a new serial


def test_serial_policy(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('listen = ["127.0.0.1:0"]\ndata_dir = "d"\n[[zones]]\nname = "a"\n'
                    'file = "a.zone"\nserial_policy = "unixtime"\n')
    assert load_serve_config(path).zones[0].serial_policy == "unixtime"


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_serve_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("load", [load_serve_config, load_resolver_config])
def test_unreadable_or_not_utf8_is_a_config_error(tmp_path, load):
    with pytest.raises(ConfigError, match="cannot read: Is a directory"):
        load(tmp_path)
    path = tmp_path / "c.toml"
    path.write_bytes(b'listen = ["127.0.0.1:0"]\n# caf\xe9\n')  # Latin-1, not UTF-8
    with pytest.raises(ConfigError, match=r"c\.toml: not UTF-8 \(byte 30\)"):
        load(path)


_MINIMAL = {load_serve_config: 'listen = ["127.0.0.1:0"]\ndata_dir = "d"\n',
            load_resolver_config: 'listen = ["127.0.0.1:0"]\nroot_hints = "root.hints"\n'}


@pytest.mark.parametrize("load", [load_serve_config, load_resolver_config])
def test_max_fudge_defaults_to_300_and_takes_1_to_65535_seconds(tmp_path, load):
    path = tmp_path / "c.toml"
    path.write_text(_MINIMAL[load])
    assert load(path).max_fudge == 300
    for value in (1, 60, 65535):
        path.write_text(_MINIMAL[load] + f"max_fudge = {value}\n")
        assert load(path).max_fudge == value
    for value, message in (("0", "must be 1 .. 65535 seconds"),
                           ("65536", "must be 1 .. 65535 seconds"),
                           ("-5", "must be 1 .. 65535 seconds"),
                           ("300.5", "must be an integer number of seconds"),
                           ("true", "must be an integer number of seconds"),
                           ('"300"', "must be an integer number of seconds")):
        path.write_text(_MINIMAL[load] + f"max_fudge = {value}\n")
        with pytest.raises(ConfigError, match=rf"c\.toml: max_fudge: {message}"):
            load(path)


_FINGERPRINTED = ('listen = ["127.0.0.1:0"]\ndata_dir = "d"\n'
                  '[keys.xfer]\nalgorithm = "hmac-sha256"\nsecret_file = "xfer.secret"\n'
                  '[[zones]]\nname = "example.com"\nfile = "example.com.zone"\n')


def _fingerprinted(tmp_path, body=_FINGERPRINTED, secret="A" * 44):
    secret_file = tmp_path / "xfer.secret"
    secret_file.write_text(secret)
    os.chmod(secret_file, 0o600)
    path = tmp_path / "serve.toml"
    path.write_text(body)
    return path


def test_fingerprint_sees_what_a_worker_shares_with_its_main_process(tmp_path):
    path = _fingerprinted(tmp_path)
    first = fingerprint(load_serve_config(path))
    assert fingerprint(load_serve_config(path)) == first
    # another process (another hash seed) reading the same files agrees
    other = subprocess.run(
        [sys.executable, "-c", "import sys; from keyresolve.cli.config import fingerprint, "
         "load_serve_config; print(fingerprint(load_serve_config(sys.argv[1])))", str(path)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONHASHSEED": "7"})
    assert other.stdout.strip() == first
    # the number of workers and the log level are the main process's to set
    config = load_serve_config(path)
    config.workers, config.log_level = 4, "debug"
    assert fingerprint(config) == first
    # a changed zone list, setting or secret is another config
    assert fingerprint(load_serve_config(_fingerprinted(
        tmp_path, _FINGERPRINTED + '[[zones]]\nname = "example.org"\nfile = "o.zone"\n'))) != first
    assert fingerprint(load_serve_config(_fingerprinted(
        tmp_path, _FINGERPRINTED.replace('data_dir = "d"', 'data_dir = "e"')))) != first
    assert fingerprint(load_serve_config(_fingerprinted(tmp_path, secret="B" * 44))) != first


@pytest.mark.parametrize("load", [load_serve_config, load_resolver_config])
def test_tcp_send_timeout_is_optional_and_must_be_positive(tmp_path, load):
    (tmp_path / "root.hints").write_text("")
    base = 'listen = ["127.0.0.1:0"]\ndata_dir = "d"\n' if load is load_serve_config else \
        'listen = ["127.0.0.1:0"]\nroot_hints = "root.hints"\n'
    path = tmp_path / "c.toml"
    path.write_text(base)
    assert load(path).tcp_send_timeout == DEFAULT_TCP_SEND_TIMEOUT
    path.write_text(base + "tcp_send_timeout = 0.5\n")
    assert load(path).tcp_send_timeout == 0.5
    for bad in ("0", "-1", '"10"'):
        path.write_text(base + f"tcp_send_timeout = {bad}\n")
        with pytest.raises(ConfigError, match=r"c\.toml: tcp_send_timeout: "):
            load(path)


def test_max_transfer_time_out_is_optional_and_must_be_positive(tmp_path):
    base = 'listen = ["127.0.0.1:0"]\ndata_dir = "d"\n'
    path = tmp_path / "c.toml"
    path.write_text(base)
    assert load_serve_config(path).max_transfer_time_out == DEFAULT_MAX_TRANSFER_TIME_OUT == 1800
    path.write_text(base + "max_transfer_time_out = 2.5\n")
    assert load_serve_config(path).max_transfer_time_out == 2.5
    for bad, why in (("0", "must be positive"), ("-1", "must be positive"),
                     ('"30m"', "must be a number")):
        path.write_text(base + f"max_transfer_time_out = {bad}\n")
        with pytest.raises(ConfigError) as info:
            load_serve_config(path)
        assert str(info.value).startswith(f"{path}: max_transfer_time_out: {why}")
        assert "\n" not in str(info.value)


def test_resolver_infra_cache_size_is_read_and_validated(tmp_path):
    from keyresolve.cli.config import DEFAULT_INFRA_CACHE_SIZE

    path = tmp_path / "resolver.toml"
    base = 'listen = ["127.0.0.1:0"]\nroot_hints = "h"\n'
    path.write_text(base)
    assert load_resolver_config(path).infra_cache_size == DEFAULT_INFRA_CACHE_SIZE
    path.write_text(base + "infra_cache_size = 500\n")
    assert load_resolver_config(path).infra_cache_size == 500
    for bad in ("0", "-1", '"big"', "1.5"):
        path.write_text(base + f"infra_cache_size = {bad}\n")
        with pytest.raises(ConfigError, match="infra_cache_size"):
            load_resolver_config(path)
