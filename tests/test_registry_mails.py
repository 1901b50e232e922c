"""The registry's mails (keyresolve.registry.mails): built as RFC 5322
messages, read back as a mail client delivers them, hostile mails refused
with one MailError."""

from __future__ import annotations

import base64
import email.policy
import re
from datetime import datetime, timedelta, timezone
from email.parser import BytesParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyresolve.registry import mails
from keyresolve.registry.mails import MAX_ATTACHMENT_BYTES, MAX_DEPTH, MAX_MAIL_BYTES, MAX_PARTS, MEDIA_TYPE, MailError, MailKind, attachment_from_mail, make_mail

VECTOR = Path(__file__).parent / "vectors" / "registry_mail_confirm.eml"
DATE = datetime(2026, 12, 6, 22, 0, tzinfo=timezone.utc)
BLOB = bytes(range(256)) * 3


def mail(kind=MailKind.CONFIRM, **overrides) -> bytes:
    args = dict(sender="keys@example.com", recipient="owner@example.com", date=DATE,
                unique="0123456789abcdef0123", attachment=BLOB,
                key_ids=["enc:AAAA", "sig:BBBB"], replaced=["enc:OLD"],
                expires=DATE + timedelta(days=1))
    args.update(overrides)
    return make_mail(kind, **args)


def parse(raw: bytes):
    return BytesParser(policy=email.policy.default).parsebytes(raw)


def text_of(raw: bytes) -> str:
    """The text part, as a mail client shows it."""
    return parse(raw).get_body(("plain",)).get_content().replace("\r\n", "\n")


# -- building ----------------------------------------------------------------

@pytest.mark.parametrize("kind", list(MailKind))
def test_each_kind_is_a_mail_with_headers_text_and_attachment(kind):
    raw = mail(kind)
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # SMTP line ends
    message = parse(raw)
    assert message["From"] == "keys@example.com"
    assert message["To"] == "owner@example.com"
    assert "owner@example.com" in message["Subject"]
    assert message["Date"].datetime == DATE
    assert message["Message-ID"] == "<0123456789abcdef0123@example.com>"
    assert message["Auto-Submitted"] == "auto-generated"
    text = text_of(raw)
    assert "enc:AAAA" in text and "sig:BBBB" in text
    command = mails.COMMANDS[kind]
    if command is not None:
        assert command.format(address="owner@example.com") in text
    [part] = list(message.iter_attachments())
    assert part.get_content_type() == MEDIA_TYPE
    assert part.get_filename() == f"keyresolve-{kind}.bin"
    assert part.get_content() == BLOB
    assert attachment_from_mail(raw) == BLOB


def test_confirm_names_the_replaced_keys_and_the_expiry():
    text = text_of(mail())
    assert "They replace the keys published for it now:\n\n    enc:OLD" in text
    assert "expires at 2026-12-07 22:00 UTC" in text
    assert "replace" not in text_of(mail(replaced=[]))


def test_withdrawn_notice_may_go_without_attachment():
    raw = mail(MailKind.WITHDRAWN, attachment=None)
    assert list(parse(raw).iter_attachments()) == []
    with pytest.raises(MailError, match="no keyresolve attachment"):
        attachment_from_mail(raw)
    with pytest.raises(MailError, match="^attachment: a confirm mail needs one$"):
        mail(MailKind.CONFIRM, attachment=None)


def test_the_vector_both_ways():
    """The mail is a function of its arguments (no random boundary): built
    again it is the vector byte for byte, and the vector reads back."""
    assert mail() == VECTOR.read_bytes()
    assert attachment_from_mail(VECTOR.read_bytes()) == BLOB


@pytest.mark.parametrize("field, value", [
    ("recipient", "owner@example.com\r\nBcc: victim@example.org"),
    ("recipient", "owner@example.com\nBcc: victim@example.org"),
    ("recipient", "Owner <owner@example.com>"),
    ("recipient", '"john doe"@example.com'),
    ("recipient", "owner@exa mple.com"),
    ("recipient", "owner"),
    ("recipient", "a" * 65 + "@example.com"),
    ("sender", "keys@example.com\rBcc: x@example.org"),
    ("subject", "hello\r\nBcc: victim@example.org"),
    ("subject", "hello\x00"),
    ("subject", "x" * (mails.MAX_SUBJECT + 1)),
    ("unique", "0123456789abcdef\r\nX: y"),
    ("unique", "short"),
    ("unique", "0123456789abcdef..x"),
    ("unique", ".0123456789abcdef"),
    ("key_ids", ["enc:AAAA\r\nBcc: victim@example.org"]),
    ("key_ids", "enc:AAAA"),
    ("key_ids", ["k"] * (mails.MAX_KEY_IDS + 1)),
    ("date", datetime(2026, 12, 6)),
    ("attachment", b""),
    ("attachment", b"x" * (MAX_ATTACHMENT_BYTES + 1)),
])
def test_header_injection_and_bad_arguments_are_refused(field, value):
    with pytest.raises(MailError) as info:
        mail(**{field: value})
    assert "\n" not in str(info.value) and "\r" not in str(info.value)


def test_non_ascii_subject_is_encoded_not_injected():
    raw = mail(subject="clés pour owner@example.com")
    assert parse(raw)["Subject"] == "clés pour owner@example.com"
    assert b"=?utf-8?" in raw


# -- reading mails as received -------------------------------------------------

def rewrap_base64(raw: bytes, width: int) -> bytes:
    """The mail with its attachment's base64 re-wrapped to `width` columns."""
    head, sep, rest = raw.partition(b"Content-Disposition: attachment")
    headers, blank, body = rest.partition(b"\r\n\r\n")
    b64, end, tail = body.partition(b"\r\n\r\n--")
    text = b"".join(b64.split())
    lines = b"\r\n".join(text[i:i + width] for i in range(0, len(text), width))
    return head + sep + headers + blank + lines + end + tail


def test_reads_what_a_mail_client_delivers():
    raw = mail()
    relayed = (b"Return-Path: <keys@example.com>\r\nReceived: from mx (mx [127.0.0.1])\r\n"
               b"\tby mail; Sun, 6 Dec 2026 22:00:01 +0000\r\nDKIM-Signature: v=1; a=x\r\n"
               + raw)
    for variant in (relayed, raw.replace(b"\r\n", b"\n"), rewrap_base64(raw, 60),
                    rewrap_base64(raw, 999), rewrap_base64(raw, 4).replace(b"\r\n", b"\n")):
        assert attachment_from_mail(variant) == BLOB


def test_reads_the_attachment_nested_and_forwarded():
    original = parse(mail())
    outer = email.message.EmailMessage()
    outer["Subject"] = "Fwd: your keys"
    outer.set_content("see the forwarded mail")
    outer.add_attachment(original)  # message/rfc822
    assert attachment_from_mail(outer.as_bytes()) == BLOB

    nested = email.message.EmailMessage()
    nested.make_mixed()
    inner = email.message.EmailMessage()
    inner.set_content("text")
    inner.add_attachment(BLOB, maintype="application", subtype="vnd.keyresolve.registry")
    nested.attach(inner)
    footer = email.message.EmailMessage()
    footer.set_content("-- \nsent through a list")
    nested.attach(footer)
    assert attachment_from_mail(nested.as_bytes()) == BLOB


def test_reads_an_attachment_retyped_or_reencoded():
    retyped = mail().replace(MEDIA_TYPE.encode(), b"application/octet-stream")
    assert attachment_from_mail(retyped) == BLOB
    other_name = retyped.replace(b'filename="keyresolve-confirm.bin"', b'filename="x.bin"')
    with pytest.raises(MailError, match="no keyresolve attachment"):
        attachment_from_mail(other_name)
    message = email.message.EmailMessage()
    message.set_content("text")
    message.add_attachment(b"plain ascii blob", maintype="application",
                           subtype="vnd.keyresolve.registry", cte="quoted-printable")
    assert attachment_from_mail(message.as_bytes()) == b"plain ascii blob"


def with_parts(*blobs: bytes, depth: int = 0) -> bytes:
    message = email.message.EmailMessage()
    message.set_content("text")
    for blob in blobs:
        message.add_attachment(blob, maintype="application", subtype="vnd.keyresolve.registry")
    for _ in range(depth):
        outer = email.message.EmailMessage()
        outer.make_mixed()
        outer.attach(message)
        message = outer
    return message.as_bytes()


@pytest.mark.parametrize("raw, error", [
    (b"", "no keyresolve attachment"),
    (b"Subject: hello\r\n\r\nno attachment here\r\n", "no keyresolve attachment"),
    (with_parts(b"one", b"two"), "^the mail holds 2 keyresolve attachments; one is expected$"),
    (with_parts(b"x" * (MAX_ATTACHMENT_BYTES + 1)),
     f"^the keyresolve attachment is larger than {MAX_ATTACHMENT_BYTES} bytes$"),
    (b"x" * (MAX_MAIL_BYTES + 1), f"at most {MAX_MAIL_BYTES} are read"),
    (with_parts(b"x", depth=MAX_DEPTH + 1), f"deeper than {MAX_DEPTH}"),
    (with_parts(*[b"x"] * MAX_PARTS), f"more than {MAX_PARTS} parts"),
    (mail().replace(b"AAECAwQF", b"AA*CAwQF", 1), "^the keyresolve attachment is not valid base64$"),
    (mail().replace(b"Content-Transfer-Encoding: base64", b"Content-Transfer-Encoding: x-uue"),
     "unknown transfer encoding"),
    ("a str", "^a mail is bytes$"),
])
def test_bad_mails_get_one_line_errors(raw, error):
    with pytest.raises(MailError, match=error) as info:
        attachment_from_mail(raw)
    assert "\n" not in str(info.value)


def test_nesting_within_the_limit_is_read():
    assert attachment_from_mail(with_parts(b"deep", depth=MAX_DEPTH - 1)) == b"deep"


def test_empty_attachment_is_refused():
    raw = with_parts(b"placeholder").replace(base64.b64encode(b"placeholder"), b"")
    with pytest.raises(MailError, match="^the keyresolve attachment is empty$"):
        attachment_from_mail(raw)


# -- fuzzing -----------------------------------------------------------------

def must_be_bytes_or_mail_error(raw: bytes) -> None:
    try:
        result = attachment_from_mail(raw)
    except MailError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(result, bytes) and 0 < len(result) <= MAX_ATTACHMENT_BYTES


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_random_bytes(raw):
    must_be_bytes_or_mail_error(raw)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_mails(data):
    raw = bytearray(mail())
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[at] = data.draw(st.integers(0, 255))
        elif op == "insert":
            raw[at:at] = data.draw(st.sampled_from(
                [b"\r\n", b"\n--", b"--keyresolve-0123456789abcdef0123\r\n", b"\x00", b"=",
                 b"Content-Type: multipart/mixed; boundary=\"\"\r\n", b"\xff\xfe",
                 b"Content-Transfer-Encoding: quoted-printable\r\n", b"=?utf-8?b?AAA?=",
                 b"Content-Type: message/rfc822\r\n\r\n", b"; filename*=utf-8''%ff%"]))
        elif op == "delete":
            del raw[at:at + data.draw(st.integers(1, 40))]
        else:
            del raw[at:]
    must_be_bytes_or_mail_error(bytes(raw))


_HEADER_VALUES = st.sampled_from([
    "multipart/mixed", 'multipart/mixed; boundary="b"', "multipart/mixed; boundary=",
    MEDIA_TYPE, f"{MEDIA_TYPE}; charset=\"\\\"", "application/octet-stream; name*0=a; name*1",
    "message/rfc822", "text/plain; charset=unknown-8bit", "base64", "quoted-printable",
    "x-uuencode", "8bit", 'attachment; filename="keyresolve-confirm.bin"',
    "attachment; filename*=utf-8''%ff%fe", "=?utf-8?q?=ff?=", "\udcff", "", " \t",
])


@st.composite
def hostile_mails(draw, depth=0):
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(["Content-Type", "Content-Transfer-Encoding",
                                     "Content-Disposition", "MIME-Version", "X-A"]))
        lines.append(f"{name}: {draw(_HEADER_VALUES)}")
    body = draw(st.sampled_from(["", "AAAA", "--b\r\n", "--b\r\n\r\n--b--", "=\r\n=41",
                                 "QUJD\r\n====", "begin 644 x\r\n`\r\nend"]))
    if depth < 3 and draw(st.booleans()):
        children = draw(st.lists(hostile_mails(depth + 1), max_size=3))
        body = "".join(f"--b\r\n{child}\r\n" for child in children) + "--b--\r\n"
    return "\r\n".join(lines) + "\r\n\r\n" + body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_mails())
def test_fuzz_hostile_structures(text):
    must_be_bytes_or_mail_error(text.encode("utf-8", "surrogateescape"))


_ADDRESSES = st.from_regex(r"[a-z0-9!#$%&'*+/=?^_`{|}~-]{1,20}(\.[a-z0-9_-]{1,10})?"
                           r"@[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z]{2,6}){0,2}",
                           fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(list(MailKind)), recipient=_ADDRESSES, sender=_ADDRESSES,
       blob=st.binary(min_size=1, max_size=3000),
       unique=st.from_regex(r"[A-Za-z0-9_-]{16,64}(\.[A-Za-z0-9_-]{1,63})?", fullmatch=True))
def test_fuzz_every_mail_made_reads_back(kind, recipient, sender, blob, unique):
    raw = make_mail(kind, sender=sender, recipient=recipient, date=DATE, unique=unique,
                    attachment=blob, key_ids=["enc:A"])
    assert attachment_from_mail(raw) == blob
    assert attachment_from_mail(raw.replace(b"\r\n", b"\n")) == blob
    message = parse(raw)
    assert (message["To"], message["From"]) == (recipient, sender)
    assert len(message.get_boundary()) <= 70 and not message.defects


def test_error_messages_quote_no_whole_hostile_token():
    with pytest.raises(MailError) as info:
        mail(recipient="x" * 200 + "\n@example.com")
    assert len(str(info.value)) < 200 and re.search(r"\(\d+ characters\)", str(info.value))


def test_the_example_in_docs_registry_md_both_ways():
    text = (Path(__file__).resolve().parent.parent / "docs" / "registry.md").read_text()
    start = text.index("```mail\n") + len("```mail\n")
    example = text[start:text.index("```", start)].encode()
    assert example.replace(b"\n", b"\r\n") == mail()
    assert attachment_from_mail(example) == BLOB
