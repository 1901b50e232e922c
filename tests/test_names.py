"""Names: syntax and limits, canonical form, relative forms, store keys, order.

The strategies here (`labels`, `domains`, `local_parts`, `mailboxes`, `names`)
are reused by test_records.py and test_message.py.
"""

from __future__ import annotations

import pickle
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyresolve.protocol.errors import FormError, InvalidName
from keyresolve.protocol.names import ROOT, Name

FAST = settings(max_examples=100, deadline=None)

# -- strategies --------------------------------------------------------------------
LABEL_EDGE = string.ascii_lowercase + string.digits + "_"
LABEL_INNER = LABEL_EDGE + "-"
#: RFC 5322 atext, lower case.
ATEXT = string.ascii_lowercase + string.digits + "!#$%&'*+/=?^_`{|}~-"


@st.composite
def labels(draw, max_len: int = 63) -> str:
    """One valid label of 1..max_len characters (a short random core, repeated,
    so that long labels cost no more to draw than short ones)."""
    size = draw(st.integers(1, max_len))
    core = draw(st.text(LABEL_INNER, min_size=1, max_size=4))
    body = (core * size)[:size]
    if body[0] == "-":
        body = draw(st.sampled_from(LABEL_EDGE)) + body[1:]
    if body[-1] == "-":
        body = body[:-1] + draw(st.sampled_from(LABEL_EDGE))
    return body


@st.composite
def domains(draw, max_labels: int = 6) -> Name:
    """A domain within the 255-octet wire limit (sometimes right at it)."""
    budget = 254  # wire length less the root's zero byte
    out: list[str] = []
    for _ in range(draw(st.integers(0, max_labels))):
        if budget < 2:
            break
        label = draw(labels(max_len=min(63, budget - 1)))
        out.append(label)
        budget -= len(label) + 1
    return Name(tuple(out))


@st.composite
def local_parts(draw) -> str:
    """A lower-case dot-atom of at most 64 characters."""
    atoms = draw(st.lists(st.text(ATEXT, min_size=1, max_size=6), min_size=1, max_size=4))
    size = draw(st.integers(1, 64))
    return (".".join(atoms) * size)[:size].strip(".").replace("..", ".") or "x"


def mailboxes() -> st.SearchStrategy[Name]:
    """A mailbox at a generated domain."""
    return st.builds(lambda d, local: Name(d.labels, local), domains(), local_parts())


def names() -> st.SearchStrategy[Name]:
    """Domains and mailboxes."""
    return st.one_of(domains(), mailboxes())


def n(text: str) -> Name:
    """Shorthand: parse an absolute name."""
    return Name.from_text(text)


EXAMPLE = Name(("example", "com"))


# -- valid and invalid text ---------------------------------------------------------
L63 = "a" * 63
#: Four labels of 63, 63, 63, 61: wire length 64 * 3 + 62 + 1 = 255.
NAME_255 = f"{L63}.{L63}.{L63}.{'b' * 61}."
#: One more octet: 256.
NAME_256 = f"{L63}.{L63}.{L63}.{'b' * 62}."

VALID = [
    # text, origin, expected labels, expected local, canonical text
    ("example.com.", None, ("example", "com"), None, "example.com."),
    (".", None, (), None, "."),
    ("Example.COM.", None, ("example", "com"), None, "example.com."),
    (f"{L63}.com.", None, (L63, "com"), None, f"{L63}.com."),
    ("_dmarc.example.com.", None, ("_dmarc", "example", "com"), None, "_dmarc.example.com."),
    ("xn--bcher-kva.example.", None, ("xn--bcher-kva", "example"), None,
     "xn--bcher-kva.example."),
    ("a-b.0.9z.", None, ("a-b", "0", "9z"), None, "a-b.0.9z."),
    (NAME_255, None, (L63, L63, L63, "b" * 61), None, NAME_255),
    ("Alice@Example.com.", None, ("example", "com"), "alice", "alice@example.com."),
    ("first.last+tag@example.com.", None, ("example", "com"), "first.last+tag",
     "first.last+tag@example.com."),
    ("!#$%&'*+/=?^_`{|}~-@example.com.", None, ("example", "com"),
     "!#$%&'*+/=?^_`{|}~-", "!#$%&'*+/=?^_`{|}~-@example.com."),
    ("a" * 64 + "@example.com.", None, ("example", "com"), "a" * 64,
     "a" * 64 + "@example.com."),
    ("x@" + NAME_255, None, (L63, L63, L63, "b" * 61), "x", "x@" + NAME_255),
    ("alice@.", None, (), "alice", "alice@."),
    # relative forms
    ("www", EXAMPLE, ("www", "example", "com"), None, "www.example.com."),
    ("WWW.Eng", EXAMPLE, ("www", "eng", "example", "com"), None, "www.eng.example.com."),
    ("@", EXAMPLE, ("example", "com"), None, "example.com."),
    ("alice@", EXAMPLE, ("example", "com"), "alice", "alice@example.com."),
    ("bob@eng", EXAMPLE, ("eng", "example", "com"), "bob", "bob@eng.example.com."),
    ("www.example.net.", EXAMPLE, ("www", "example", "net"), None, "www.example.net."),
    ("carol@example.net.", EXAMPLE, ("example", "net"), "carol", "carol@example.net."),
    ("example.com", None, ("example", "com"), None, "example.com."),
    (".", EXAMPLE, (), None, "."),
]


@pytest.mark.parametrize("text,origin,want_labels,want_local,canonical", VALID)
def test_valid_names_both_ways(text, origin, want_labels, want_local, canonical) -> None:
    name = Name.from_text(text, origin)
    assert (name.labels, name.local) == (want_labels, want_local)
    assert name.to_text() == canonical == str(name) == name.to_wire()
    assert Name(want_labels, want_local).to_text() == canonical
    assert Name.from_wire(canonical) == name


INVALID = [
    ("", None),
    (f"{'a' * 64}.com.", None),  # label of 64
    (NAME_256, None),  # 256 octets
    ("x@" + NAME_256, None),
    ("a..b.", None),
    (".a.", None),
    ("..", None),
    ("-a.com.", None),
    ("a-.com.", None),
    ("a b.com.", None),
    ("a*b.com.", None),
    ("a/b.com.", None),
    ("bücher.example.", None),
    ("\u212a.com.", None),  # KELVIN SIGN: lower() makes it ASCII "k"
    ("a" * 65 + "@example.com.", None),
    ("@example.com.", None),
    ("alice@", None),  # mailbox at the origin, but no origin
    ("@", None),
    ("al..ice@example.com.", None),
    (".alice@example.com.", None),
    ("alice.@example.com.", None),
    ('"al ice"@example.com.', None),
    ("al ice@example.com.", None),
    ("al(ice@example.com.", None),
    ("alïce@example.com.", None),
    ("\u212aate@example.com.", None),
    ("a@b@example.com.", None),
    ("alice@example..com.", None),
    ("alice@-x.com.", None),
    ("www..", EXAMPLE),
    ("@", Name(("example", "com"), "alice")),  # the origin is a mailbox
    ("www", Name(("example", "com"), "alice")),
]


@pytest.mark.parametrize("text,origin", INVALID)
def test_invalid_names_raise_invalid_name(text, origin) -> None:
    with pytest.raises(InvalidName):
        Name.from_text(text, origin)


def test_invalid_name_is_a_form_error() -> None:
    # A bad name inside a message must answer FORMERR.
    assert issubclass(InvalidName, FormError)


def test_relative_name_growing_past_the_limit_is_invalid() -> None:
    origin = n(f"{L63}.{L63}.{L63}.")
    assert Name.from_text("b" * 61, origin).labels == ("b" * 61, L63, L63, L63)
    with pytest.raises(InvalidName):
        Name.from_text("b" * 62, origin)


@pytest.mark.parametrize("text", ["example.com", "alice@example.com", "@", "alice@", "", "www"])
def test_from_wire_needs_absolute_names(text: str) -> None:
    with pytest.raises(InvalidName):
        Name.from_wire(text)


@pytest.mark.parametrize("value", [42, b"example.com.", None])
def test_from_wire_needs_a_string(value) -> None:
    with pytest.raises(InvalidName):
        Name.from_wire(value)


# -- case folding, equality, immutability ------------------------------------------
def test_case_folds_to_the_same_name() -> None:
    a, b = n("ALICE@EXAMPLE.COM."), n("alice@example.com.")
    assert a == b and hash(a) == hash(b) and {a: 1}[b] == 1
    assert a.to_text() == "alice@example.com."


@FAST
@given(names())
def test_text_round_trip_and_case_insensitivity(name: Name) -> None:
    text = name.to_text()
    assert Name.from_text(text) == name
    assert Name.from_wire(text) == name
    assert Name.from_text(text.upper()) == name


def test_domain_and_mailbox_are_different() -> None:
    assert n("alice@example.com.") != n("alice.example.com.")
    assert n("alice@example.com.") != EXAMPLE
    assert n("alice@example.com.") != "alice@example.com."


def test_names_are_immutable_and_pickle() -> None:
    name = n("alice@example.com.")
    with pytest.raises(AttributeError):
        name.local = "bob"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(name)) == name
    assert repr(name) == "Name('alice@example.com.')"


# -- structure -------------------------------------------------------------------------
def test_mailbox_properties() -> None:
    alice = n("alice@eng.example.com.")
    assert alice.is_mailbox and not alice.domain.is_mailbox
    assert alice.domain == n("eng.example.com.") == alice.parent()
    assert EXAMPLE.domain is EXAMPLE and not EXAMPLE.is_mailbox


def test_parent_walks_up_and_root_has_none() -> None:
    assert n("www.example.com.").parent() == EXAMPLE
    assert n("com.").parent() == ROOT
    with pytest.raises(InvalidName):
        ROOT.parent()


@pytest.mark.parametrize("text,want", [
    ("a.b.c.", ["a.b.c.", "b.c.", "c.", "."]),
    ("alice@b.c.", ["b.c.", "c.", "."]),
    (".", ["."]),
])
def test_ancestors(text: str, want: list[str]) -> None:
    assert [a.to_text() for a in n(text).ancestors()] == want


SUBDOMAIN = [
    ("www.example.com.", "example.com.", True),
    ("example.com.", "example.com.", True),
    ("example.com.", ".", True),
    (".", ".", True),
    ("example.com.", "www.example.com.", False),
    ("alice@example.com.", "example.com.", True),
    ("alice@example.com.", "com.", True),
    ("alice@example.com.", "alice@example.com.", True),
    ("example.com.", "alice@example.com.", False),
    ("bob@example.com.", "alice@example.com.", False),
    ("alice@eng.example.com.", "alice@example.com.", False),
    ("example-foo.com.", "example.com.", False),
    ("fooexample.com.", "example.com.", False),
    ("example.net.", "example.com.", False),
]


@pytest.mark.parametrize("name,other,want", SUBDOMAIN)
def test_is_subdomain(name: str, other: str, want: bool) -> None:
    assert n(name).is_subdomain(n(other)) is want


RELATIVE_TEXT = [
    ("www.example.com.", "example.com.", "www"),
    ("example.com.", "example.com.", "@"),
    ("alice@example.com.", "example.com.", "alice@"),
    ("bob@eng.example.com.", "example.com.", "bob@eng"),
    ("example.net.", "example.com.", "example.net."),
    ("alice@example.net.", "example.com.", "alice@example.net."),
    ("example.com.", ".", "example.com"),
    ("alice@.", ".", "alice@"),
    ("x.example.com.", "alice@example.com.", "x.example.com."),  # a mailbox is no origin
]


@pytest.mark.parametrize("name,origin,want", RELATIVE_TEXT)
def test_to_text_relative(name: str, origin: str, want: str) -> None:
    assert n(name).to_text(n(origin)) == want
    if not n(origin).is_mailbox:
        assert Name.from_text(want, n(origin)) == n(name)


@FAST
@given(names(), domains())
def test_relative_text_round_trip(name: Name, origin: Name) -> None:
    assert Name.from_text(name.to_text(origin), origin) == name


@FAST
@given(names(), st.data())
def test_relative_text_round_trip_below_origin(name: Name, data) -> None:
    origin = data.draw(st.sampled_from(list(name.ancestors())))
    text = name.to_text(origin)
    assert not text.endswith(".") or name == ROOT
    assert Name.from_text(text, origin) == name


# -- store keys and order -------------------------------------------------------------
KEYS = [
    (".", b""),
    ("com.", b"com\0"),
    ("example.com.", b"com\0example\0"),
    ("www.example.com.", b"com\0example\0www\0"),
    ("alice@example.com.", b"com\0example\0@alice"),
    ("first.last+tag@example.com.", b"com\0example\0@first.last+tag"),
    ("alice@.", b"@alice"),
]


@pytest.mark.parametrize("text,key", KEYS)
def test_key_vectors_both_ways(text: str, key: bytes) -> None:
    assert n(text).store_key() == key
    assert Name.from_store_key(key) == n(text)


@FAST
@given(names())
def test_key_round_trip(name: Name) -> None:
    assert Name.from_store_key(name.store_key()) == name


@FAST
@given(names(), st.data())
def test_every_name_below_a_domain_has_its_key_as_prefix(name: Name, data) -> None:
    domain = data.draw(st.sampled_from(list(name.ancestors())))
    assert name.store_key().startswith(domain.store_key())
    assert domain == name or domain < name


@FAST
@given(names(), domains())
def test_key_prefix_iff_subdomain(name: Name, domain: Name) -> None:
    assert name.store_key().startswith(domain.store_key()) == name.is_subdomain(domain)


@pytest.mark.parametrize("sibling,domain", [
    ("example-foo.com.", "example.com."),
    ("example.com.", "example-foo.com."),
    ("fooexample.com.", "example.com."),
    ("alice@example-foo.com.", "example.com."),
    ("example.com.", "example.com.com."),
])
def test_siblings_do_not_share_the_key_prefix(sibling: str, domain: str) -> None:
    assert not n(sibling).store_key().startswith(n(domain).store_key())
    assert not n(sibling).is_subdomain(n(domain))


def test_order_is_key_order_with_parents_first() -> None:
    texts = ["www.example.com.", "alice@example.com.", "example.com.", "com.", ".",
             "example-foo.com.", "a.example.com.", "0.example.com.", "net."]
    ordered = [x.to_text() for x in sorted(n(t) for t in texts)]
    # A subtree is contiguous ("\0" sorts first); "@" sorts between digits and letters.
    assert ordered == [".", "com.", "example.com.", "0.example.com.", "alice@example.com.",
                       "a.example.com.", "www.example.com.", "example-foo.com.", "net."]


@settings(max_examples=50, deadline=None)
@given(st.lists(names(), max_size=6))
def test_sorting_names_sorts_their_keys(items: list[Name]) -> None:
    assert [x.store_key() for x in sorted(items)] == sorted(x.store_key() for x in items)


def _outcome(parse, text):
    try:
        return parse(text)
    except InvalidName:
        return InvalidName


_WIRE_ALPHABET = string.ascii_letters + string.digits + "@.-_+!~ " + "\u212a\xe9"


@settings(max_examples=400)
@given(st.one_of(
    st.text(_WIRE_ALPHABET, max_size=80),
    st.builds(lambda local, domain: f"{local}@{domain}",
              st.text(_WIRE_ALPHABET, max_size=70), st.text(_WIRE_ALPHABET, max_size=300))))
def test_uncached_wire_parse_agrees_with_the_cached_one(text):
    """The bulk path (mailbox domains parsed once) accepts and rejects exactly
    what from_wire does, hostile lengths and characters included."""
    assert _outcome(Name.from_wire_uncached, text) == _outcome(Name.from_wire, text)


@pytest.mark.parametrize("text", ["a@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + "." + "e" * 62 + ".",
                                  "a@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + "." + "e" * 61 + ".",
                                  "A@Example.COM.", "@example.com.", "a@.", "a@", "a@@b.", "a@b"])
def test_uncached_wire_parse_edge_cases(text):
    assert _outcome(Name.from_wire_uncached, text) == _outcome(Name.from_wire, text)


def test_key_ancestors_are_the_keys_of_the_domain_and_every_ancestor():
    from keyresolve.protocol.names import store_key_ancestors

    name = Name.from_text("a.b.example.com.")
    assert store_key_ancestors(name.store_key()) == [Name.from_text(text).store_key() for text in (
        ".", "com.", "example.com.", "b.example.com.", "a.b.example.com.")]
    assert store_key_ancestors(b"") == [b""]
