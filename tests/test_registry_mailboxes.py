"""The operator's `mailboxes` file (`registry.mailboxes`): its grammar
(`keyresolve.registry.mailboxes`), and the config setting that reads it,
with one-line errors naming FILE:LINE."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyresolve.cli.config import MAX_MAILBOXES_FILE, load_serve_config
from keyresolve.protocol.errors import ConfigError
from keyresolve.protocol.names import Name
from keyresolve.registry.mailboxes import parse_mailboxes

DOC = (Path(__file__).parent.parent / "docs" / "registry.md").read_text()
#: The example file of docs/registry.md, "Who may register".
FILE = re.search(r"```mailboxes\n(.*?)```", DOC, re.S).group(1)


def allows(policy, local: str, domain: str = "example.com") -> bool:
    return policy.allows(Name.from_text(f"{local}@{domain}."))


def test_the_grammar_exact_local_parts_and_prefixes():
    policy = parse_mailboxes(FILE, "mailboxes")
    assert policy.exact == {"alice", "first.last"} and policy.prefixes == {"team-", "ops."}
    for local in ("alice", "ALICE", "first.last", "team-a", "team-", "team-x.y", "ops.oncall"):
        assert allows(policy, local), local
    for local in ("bob", "alice+tag", "alicex", "first", "team", "teamx", "ops", "opsx"):
        assert not allows(policy, local), local
    # the policy is about local parts, in every zone alike; a domain never registers
    assert allows(policy, "alice", "sub.example.org")
    assert not policy.allows(Name.from_text("example.com."))


def test_a_lone_star_allows_everyone_and_an_empty_file_nobody():
    everyone = parse_mailboxes("*\n", "f")
    assert allows(everyone, "anyone") and allows(everyone, "x.y+z")
    nobody = parse_mailboxes("# nobody yet\n\n", "f")
    assert not allows(nobody, "alice")
    assert repr(nobody) == "MailboxPolicy(0 local parts, 0 patterns)"


@pytest.mark.parametrize("line, reason", [
    ("alice bob", "one local part a line"),
    ("a*b", "'\\*' only as the last character"),
    ("**", "'\\*' only as the last character"),
    ("*alice", "'\\*' only as the last character"),
    (".alice", "not a local part"),
    ("a..b", "not a local part"),
    ("a..*", "not a local part"),
    (".*", "not a local part"),
    ("al(ice)", "not a local part"),
    ("älice", "not a local part"),
    ("a" * 65, "not a local part"),
    ("alice@example.com", "not a local part"),
])
def test_an_invalid_line_is_an_error_naming_file_and_line(line, reason):
    with pytest.raises(ConfigError, match=rf"^/etc/mailboxes:3: .*{reason}") as info:
        parse_mailboxes(f"# head\nalice\n{line}\nbob\n", "/etc/mailboxes")
    assert "\n" not in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_policy_or_a_one_line_config_error(text):
    try:
        policy = parse_mailboxes(text, "f")
    except ConfigError as exc:
        assert str(exc).startswith("f:") and "\n" not in str(exc)
        return
    for entry in policy.exact:  # every entry a canonical local part
        assert Name.from_text(f"{entry}@example.com.").local == entry


@settings(max_examples=200, deadline=None)
@given(st.lists(st.from_regex(r"[a-z0-9][a-z0-9.+_-]{0,20}", fullmatch=True), max_size=8),
       st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True))
def test_a_prefix_allows_exactly_the_local_parts_beginning_with_it(prefixes, local):
    lines = [p for p in prefixes if ".." not in p + "x" and not p.endswith(".")]
    policy = parse_mailboxes("".join(f"{p}*\n" for p in lines), "f")
    assert allows(policy, local) == any(local.startswith(p) for p in lines)


# -- the config setting ------------------------------------------------------------------
HEAD = ('listen = ["127.0.0.1:0"]\ndata_dir = "d"\n[registry]\nsmtp = "127.0.0.1:2525"\n'
        'from = "keys@example.com"\n')


def load(tmp_path, extra: str = ""):
    path = tmp_path / "serve.toml"
    path.write_text(HEAD + extra)
    return load_serve_config(path)


def test_the_setting_reads_the_file_relative_to_the_config(tmp_path):
    (tmp_path / "mailboxes").write_text(FILE)
    registry = load(tmp_path, 'mailboxes = "mailboxes"\n').registry
    assert registry.mailboxes == tmp_path / "mailboxes"
    assert allows(registry.mailbox_policy, "team-a")
    registry = load(tmp_path).registry
    assert registry.mailboxes is None and registry.mailbox_policy is None  # everyone
    # a changed file is not a changed [registry]: a reload applies it without a restart
    (tmp_path / "other").write_text("bob\n")
    assert load(tmp_path, 'mailboxes = "other"\n').registry == registry


def test_a_bad_file_or_setting_is_one_line_naming_it(tmp_path):
    config = tmp_path / "serve.toml"
    (tmp_path / "mailboxes").write_text("alice\nbob smith\n")
    with pytest.raises(ConfigError, match=rf"^{config}: registry.mailboxes: "
                                          rf"{tmp_path}/mailboxes:2: one local part a line"):
        load(tmp_path, 'mailboxes = "mailboxes"\n')
    with pytest.raises(ConfigError, match=rf"registry.mailboxes: {tmp_path}/absent: cannot "
                                          "read the mailboxes file: No such file"):
        load(tmp_path, 'mailboxes = "absent"\n')
    with pytest.raises(ConfigError, match="registry.mailboxes: must be a file name"):
        load(tmp_path, 'mailboxes = ["alice"]\n')
    (tmp_path / "mailboxes").write_bytes(b"alice\n\xff\n")
    with pytest.raises(ConfigError, match=r"mailboxes: not UTF-8 \(byte 6\)"):
        load(tmp_path, 'mailboxes = "mailboxes"\n')
    with open(tmp_path / "mailboxes", "wb") as f:
        f.truncate(MAX_MAILBOXES_FILE + 1)
    with pytest.raises(ConfigError, match="mailboxes file larger than"):
        load(tmp_path, 'mailboxes = "mailboxes"\n')


def test_the_documented_error_line_is_the_one_given(tmp_path):
    documented = re.search(r"ERROR keyresolve.serve: reload: (.*); the running", DOC).group(1)
    (tmp_path / "mailboxes").write_text("carol\nbad line\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, 'mailboxes = "mailboxes"\n')
    assert str(info.value).replace(str(tmp_path), "/etc/keyresolve") == documented
