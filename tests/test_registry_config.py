"""The `[registry]` section of the serve config and `registration = true` on
zones (issue #20): read, defaults, and one-line errors naming the setting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyresolve.cli.config import DEFAULT_CONFIRM_WITHIN, DEFAULT_MAIL_INTERVAL, DEFAULT_REVERIFY_EVERY, DEFAULT_REVERIFY_GRACE, MAX_CONFIRM_WITHIN, RegistryConfig, load_serve_config, parse_duration, parse_host_port
from keyresolve.protocol.errors import ConfigError

HEAD = 'listen = ["127.0.0.1:0"]\ndata_dir = "d"\n'
ZONE = '[[zones]]\nname = "example.com"\nfile = "example.com.zone"\nregistration = true\n'
ISSUE_EXAMPLE = '''
[registry]
smtp = "127.0.0.1:2525"        # submission server: host:port; starttls, user, password_file optional
from = "keys@example.com"
key_dir = "registry-keys"      # the registry's own key pair, made on first start, 0600
confirm_within = "1d"
mail_interval = "1h"
reverify_every = "180d"
reverify_grace = "14d"
'''


def load(tmp_path, body: str):
    path = tmp_path / "serve.toml"
    path.write_text(HEAD + body)
    return load_serve_config(path)


def test_the_issue_example(tmp_path):
    config = load(tmp_path, ISSUE_EXAMPLE + ZONE)
    assert config.registry == RegistryConfig(
        smtp=("127.0.0.1", 2525), sender="keys@example.com",
        key_dir=tmp_path / "registry-keys", confirm_within=86400, mail_interval=3600,
        reverify_every=180 * 86400, reverify_grace=14 * 86400)
    assert config.zones[0].registration is True


def test_defaults_and_every_optional_setting(tmp_path):
    password = tmp_path / "smtp.password"
    password.write_text("s3cret\n")
    os.chmod(password, 0o600)
    config = load(tmp_path, '[registry]\nsmtp = "smtp.example.com:587"\n'
                  'from = "keys@example.com"\n')
    registry = config.registry
    assert (registry.confirm_within, registry.mail_interval, registry.reverify_every,
            registry.reverify_grace) == (DEFAULT_CONFIRM_WITHIN, DEFAULT_MAIL_INTERVAL,
                                         DEFAULT_REVERIFY_EVERY, DEFAULT_REVERIFY_GRACE)
    assert registry.smtp == ("smtp.example.com", 587) and registry.starttls is False
    assert registry.user is None and registry.password_file is None
    config = load(tmp_path, '[registry]\nsmtp = "[::1]:587"\nfrom = "keys@example.com"\n'
                  'starttls = true\nuser = "registry"\npassword_file = "smtp.password"\n'
                  'mail_interval = "1h30m"\n')
    registry = config.registry
    assert registry.smtp == ("::1", 587) and registry.starttls
    assert (registry.user, registry.password_file) == ("registry", password)
    assert registry.mail_interval == 5400
    assert "s3cret" not in repr(config)  # the password is read when sending, not kept


def test_no_registry_section_no_registry(tmp_path):
    config = load(tmp_path, '[[zones]]\nname = "example.com"\nfile = "x.zone"\n')
    assert config.registry is None and config.zones[0].registration is False


REG = '[registry]\nsmtp = "127.0.0.1:2525"\nfrom = "keys@example.com"\n'


@pytest.mark.parametrize("body, error", [
    (ZONE, "zones[0].registration: needs a [registry] section"),
    ('[[zones]]\nname = "a"\nprimaries = ["127.0.0.1:1"]\nregistration = true\n' + REG,
     "zones[0].registration: only a primary zone"),
    ('[[zones]]\nname = "a"\nfile = "x"\nregistration = "yes"\n' + REG,
     "zones[0].registration: must be bool"),
    ('registry = 5\n', "registry: must be a [registry] table"),
    ('[registry]\nfrom = "keys@example.com"\n', "registry.smtp: missing"),
    ('[registry]\nsmtp = "127.0.0.1"\nfrom = "keys@example.com"\n', "registry.smtp: address"),
    ('[registry]\nsmtp = "mail server:25"\nfrom = "keys@example.com"\n',
     "registry.smtp: 'mail server' in 'mail server:25' is not a host name"),
    ('[registry]\nsmtp = "smtp.example.com:0"\nfrom = "keys@example.com"\n',
     "registry.smtp: port in 'smtp.example.com:0' must be 1 .. 65535"),
    ('[registry]\nsmtp = 2525\nfrom = "keys@example.com"\n', "registry.smtp: must be"),
    ('[registry]\nsmtp = "127.0.0.1:2525"\n', "registry.from: missing"),
    ('[registry]\nsmtp = "127.0.0.1:2525"\nfrom = "keys"\n', "registry.from: 'keys' is not"),
    ('[registry]\nsmtp = "127.0.0.1:2525"\nfrom = "keys@example.com\\r\\nBcc: x@y.org"\n',
     "registry.from: "),
    (REG + 'starttls = "yes"\n', "registry.starttls: must be bool"),
    (REG + 'user = "registry"\n', "registry.password_file: user and password_file go"),
    (REG + 'password_file = "p"\n', "registry.user: user and password_file go"),
    (REG + 'user = "a\\nb"\npassword_file = "p"\n', "registry.user: must be a user name"),
    (REG + 'user = "registry"\npassword_file = "nofile"\n',
     "registry.password_file: {tmp}/nofile does not exist"),
    (REG + 'user = "registry"\npassword_file = "open.password"\n',
     "registry.password_file: {tmp}/open.password is accessible by group or others"),
    (REG + 'key_dir = "open.password"\n', "registry.key_dir: {tmp}/open.password is not a"),
    (REG + 'key_dir = "no/such/dir"\n', "registry.key_dir: directory {tmp}/no/such does not"),
    (REG + 'confirm_within = 86400\n', "registry.confirm_within: must be a duration with units"),
    (REG + 'confirm_within = "86400"\n', "registry.confirm_within: must be a duration"),
    (REG + 'confirm_within = "1 day"\n', "registry.confirm_within: must be a duration with "
     "units (s, m, h, d, w) like \"1d\" or \"12h\", not '1 day'"),
    (REG + 'confirm_within = "31d"\n', f"registry.confirm_within: at most "
     f"{MAX_CONFIRM_WITHIN // 86400}d"),
    (REG + 'mail_interval = "0s"\n', "registry.mail_interval: must be at least 1s"),
    (REG + 'mail_interval = ""\n', "registry.mail_interval: must be a duration"),
    (REG + 'reverify_every = "99999999999d"\n', "registry.reverify_every: must be a duration"),
    (REG + 'reverify_grace = "180d"\n', "registry.reverify_grace: must be shorter than "
     "reverify_every"),
    (REG + 'mail_intervall = "1h"\n', "registry.mail_intervall: unknown setting"),
    (REG + 'rate_limit = 0\n', "registry.rate_limit: must be 1 .. 100000"),
    (REG + 'rate_limit = "10"\n', "registry.rate_limit: must be"),
    (REG + 'public_address = "keys.example.com:53"\n',
     "registry.public_address: 'keys.example.com' in 'keys.example.com:53' is not an IP"),
    (REG + 'public_address = "192.0.2.1"\n', "registry.public_address: address '192.0.2.1' "
     "must be ip:port"),
    (REG + 'public_address = "192.0.2.1:0"\n', "registry.public_address: port 0 in"),
    (REG + 'public_address = "[::]:53"\n', "registry.public_address: '[::]:53' is a wildcard"),
    (REG + 'public_address = 53\n', "registry.public_address: must be"),
])
def test_every_setting_has_a_one_line_error_naming_it(tmp_path, body, error):
    loose = tmp_path / "open.password"
    loose.write_text("x")
    os.chmod(loose, 0o644)
    with pytest.raises(ConfigError) as info:
        load(tmp_path, body)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'serve.toml'}: ")
    assert error.format(tmp=tmp_path) in message
    assert "\n" not in message and "\r" not in message


@pytest.mark.parametrize("text, seconds", [
    ("1s", 1), ("90s", 90), ("30m", 1800), ("12h", 43200), ("1d", 86400), ("2w", 1209600),
    ("1h30m", 5400), ("1D", 86400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text, host_port", [
    ("127.0.0.1:25", ("127.0.0.1", 25)), ("localhost:2525", ("127.0.0.1", 2525)),
    ("smtp.example.com:587", ("smtp.example.com", 587)), ("[::1]:465", ("::1", 465))])
def test_host_port(text, host_port):
    assert parse_host_port(text) == host_port


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=30), st.integers(), st.none()))
def test_fuzz_duration_and_host_port_raise_only_value_error(value):
    for parse in (parse_duration, parse_host_port):
        try:
            parse(value)
        except ValueError as exc:
            assert "\n" not in str(exc)


DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.parametrize("page", ["registry.md", "operations.md"])
def test_the_documented_example_loads(tmp_path, page):
    text = (DOCS / page).read_text()
    start = text.index("```toml\n[registry]")
    block = text[start + len("```toml\n"):text.index("```", start + 7)]
    config = load(tmp_path, block)
    assert config.registry.smtp == ("127.0.0.1", 2525) and config.zones[0].registration


def test_the_documented_queue_figures_are_the_constants():
    from keyresolve.registry import outbox

    text = (DOCS / "registry.md").read_text()
    assert outbox.MAX_QUEUED_PER_ADDRESS == 4 and "At most 4 mails wait" in text
    assert outbox.MAX_QUEUED == 10_000 and "10,000 (256 MiB)" in text
    assert outbox.MAX_QUEUED_BYTES == 256 << 20
    assert outbox.MAX_QUEUE_LIFETIME == 5 * 86400 and "5 days" in text
    assert (outbox.FIRST_RETRY, outbox.MAX_RETRY) == (60, 3600) and "1 min, 2, 4" in text


def test_public_address_is_named_in_challenges_and_needed_behind_a_wildcard(tmp_path):
    config = load(tmp_path, REG + 'public_address = "[2001:db8::1]:53"\n')
    assert config.registry.public_address == ("2001:db8::1", 53)
    assert load(tmp_path, REG).registry.public_address is None  # the first listen address
    path = tmp_path / "serve.toml"
    path.write_text('listen = ["0.0.0.0:53"]\ndata_dir = "d"\n' + REG)
    with pytest.raises(ConfigError) as info:
        load_serve_config(path)
    assert str(info.value) == (
        f"{path}: registry.public_address: needed when the first listen address is a "
        "wildcard (0.0.0.0): the address owners answer challenges at, named in every "
        "challenge mail")
    path.write_text('listen = ["0.0.0.0:53"]\ndata_dir = "d"\n' + REG
                    + 'public_address = "192.0.2.1:53"\n')
    assert load_serve_config(path).registry.public_address == ("192.0.2.1", 53)
