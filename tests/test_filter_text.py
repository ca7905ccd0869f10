"""RFC 4515 filter text (gateway.ldap.filter_text), against to_text and ldaptor."""

from __future__ import annotations

import time
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():  # ldaptor's filter grammar uses deprecated pyparsing names
    warnings.simplefilter("ignore", DeprecationWarning)
    from ldaptor import ldapfilter

from gateway.ldap import ber
from gateway.ldap.filter import (
    And,
    Approx,
    Equality,
    Extensible,
    GreaterOrEqual,
    LessOrEqual,
    Not,
    Or,
    Present,
    Substrings,
    to_text,
)
from gateway.ldap.filter_text import FilterSyntaxError, parse_filter

# ldaptor calls pyparsing APIs that pyparsing 3 deprecates: not our concern here.
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated - use:DeprecationWarning")

# --------------------------------------------------------------------------
# Shapes phones send (../shared/docs/phones.md)

PHONE_SHAPES = {
    "(|(cn=mey*)(sn=mey*))": Or((Substrings("cn", "mey", (), None), Substrings("sn", "mey", (), None))),
    "(|(telephoneNumber=089*)(mobile=089*)(homePhone=089*))": Or(
        tuple(Substrings(a, "089", (), None) for a in ("telephoneNumber", "mobile", "homePhone"))
    ),
    "(|(telephoneNumber=+4989123456)(mobile=+4989123456))": Or(
        (Equality("telephoneNumber", "+4989123456"), Equality("mobile", "+4989123456"))
    ),
    "(|(telePhoneNumber=*1234*)(homePhone=*1234*))": Or(
        (Substrings("telePhoneNumber", None, ("1234",), None), Substrings("homePhone", None, ("1234",), None))
    ),
    "(sn=*hans*mey*)": Substrings("sn", None, ("hans", "mey"), None),
    "(telephoneNumber=*4989123456)": Substrings("telephoneNumber", None, (), "4989123456"),
    "(telephoneNumber=5*0*3*8*2*3*4*5*6*7)": Substrings("telephoneNumber", "5", tuple("03823456"), "7"),
    "(&(telephoneNumber=*)(sn=Meyer))": And((Present("telephoneNumber"), Equality("sn", "Meyer"))),
    "(&(objectClass=*)(givenName>=Ryan)(givenName<=zz)(givenName=Ryan*)(extension=110))": And(
        (
            Present("objectClass"),
            GreaterOrEqual("givenName", "Ryan"),
            LessOrEqual("givenName", "zz"),
            Substrings("givenName", "Ryan", (), None),
            Equality("extension", "110"),
        )
    ),
    "(objectclass=*)": Present("objectclass"),
    "(&(|(mail=x*)(cn=x*)))": And((Or((Substrings("mail", "x", (), None), Substrings("cn", "x", (), None))),)),
    "(|(a=1)(|(b=2)(|(c=3)(d=4))))": Or(
        (Equality("a", "1"), Or((Equality("b", "2"), Or((Equality("c", "3"), Equality("d", "4")))))),
    ),
    "(!(sn=%))": Not(Equality("sn", "%")),
    "(&(objectCategory=person)(UserAccountControl:1.2.840.113556.1.4.803:=512)(sAMAccountName=*)"
    "(!(userAccountControl:1.2.840.113556.1.4.803:=2)))": And(
        (
            Equality("objectCategory", "person"),
            Extensible("1.2.840.113556.1.4.803", "UserAccountControl", "512"),
            Present("sAMAccountName"),
            Not(Extensible("1.2.840.113556.1.4.803", "userAccountControl", "2")),
        )
    ),
    "(cn~=Mayer)": Approx("cn", "Mayer"),
    "(CallerIDName=%)": Equality("CallerIDName", "%"),
    "(msRTCSIP-Line=tel:+49891234)": Equality("msRTCSIP-Line", "tel:+49891234"),
}


@pytest.mark.parametrize("text", sorted(PHONE_SHAPES))
def test_phone_shapes(text):
    assert parse_filter(text) == PHONE_SHAPES[text]


@pytest.mark.parametrize("text", sorted(PHONE_SHAPES))
def test_phone_shapes_agree_with_ldaptor(text):
    assert ber.decode_filter(ldapfilter.parseFilter(text).toWire()) == parse_filter(text)


# --------------------------------------------------------------------------
# Tolerance


@pytest.mark.parametrize(
    "text, expected",
    [
        # Grandstream documents a space between the items
        ("(&(cn=%) (telephoneNumber=*))", And((Equality("cn", "%"), Present("telephoneNumber")))),
        ("  (& (cn=a)\t(sn=b)\n) ", And((Equality("cn", "a"), Equality("sn", "b")))),
        ("(! (cn=a) )", Not(Equality("cn", "a"))),
        ("( cn=a)", Equality("cn", "a")),
        ("(cn =a)", Equality("cn", "a")),
        # whitespace inside the value is the value
        ("(cn= Hans Meyer )", Equality("cn", " Hans Meyer ")),
        # bare items and operators
        ("cn=foo", Equality("cn", "foo")),
        ("  sn=Mey*  ", Substrings("sn", "Mey", (), None)),
        ("objectClass=*", Present("objectClass")),
        ("&(a=1)(b=2)", And((Equality("a", "1"), Equality("b", "2")))),
        # RFC 4526 absolute true / false
        ("(&)", And(())),
        ("(|)", Or(())),
        # empty components are dropped
        ("(cn=a**b)", Substrings("cn", "a", (), "b")),
        ("(cn=**)", Present("cn")),
        ("(cn=)", Equality("cn", "")),
        # attribute options and numeric OIDs
        ("(cn;lang-de=Müller)", Equality("cn;lang-de", "Müller")),
        ("(2.5.4.3=x)", Equality("2.5.4.3", "x")),
        # values that look like operators
        ("(cn==x)", Equality("cn", "=x")),
        ("(cn=~x)", Equality("cn", "~x")),
        ("(cn=a:=b)", Equality("cn", "a:=b")),
        ("(cn>==x)", GreaterOrEqual("cn", "=x")),
    ],
)
def test_tolerated_forms(text, expected):
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("(cn=\\2a)", Equality("cn", "*")),
        ("(cn=a\\28b\\29\\5c\\00)", Equality("cn", "a(b)\\\x00")),
        ("(cn=M\\c3\\bcller)", Equality("cn", "Müller")),
        ("(cn=M\\C3\\BCller)", Equality("cn", "Müller")),
        ("(cn=M\\fcller)", Equality("cn", "Müller")),  # Latin-1 octet
        ("(cn=Müller\\fc)", Equality("cn", "Müllerü")),  # runs decode on their own
        ("(cn=\\e2\\82\\ac*)", Substrings("cn", "€", (), None)),
        # RFC 2254-era escapes
        ("(cn=a\\*b*)", Substrings("cn", "a*b", (), None)),
        ("(cn=\\(x\\))", Equality("cn", "(x)")),
        ("(cn=\\\\*)", Substrings("cn", "\\", (), None)),
    ],
)
def test_escapes(text, expected):
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("(cn:dn:2.4.6.8.10:=Dino)", Extensible("2.4.6.8.10", "cn", "Dino", True)),
        ("(:dn:2.4.6.8.10:=Dino)", Extensible("2.4.6.8.10", None, "Dino", True)),
        ("(o:dn:=Ace Industry)", Extensible(None, "o", "Ace Industry", True)),
        ("(cn:caseExactMatch:=Fred Flintstone)", Extensible("caseExactMatch", "cn", "Fred Flintstone")),
        ("(:1.2.3:=x)", Extensible("1.2.3", None, "x")),
        ("(cn:=x)", Extensible(None, "cn", "x")),
        ("(cn:DN:=x)", Extensible(None, "cn", "x", True)),
        ("(sn:=x\\2a)", Extensible(None, "sn", "x*")),
    ],
)
def test_extensible_forms(text, expected):
    assert parse_filter(text) == expected


def test_bytes_input_is_decoded():
    assert parse_filter(b"(cn=M\xc3\xbcller)") == Equality("cn", "Müller")


# --------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "text, position, words",
    [
        # Grandstream's documented number filter, missing its last ")"
        ("(|(telephoneNumber=%)(Mobile=%)", 31, "missing ')'"),
        ("(&(a=b)", 7, "missing ')'"),
        ("(cn=x", 5, "missing ')'"),
        ("(", 1, "missing ')'"),
        ("(cn=x\\", 6, "missing ')'"),
        ("cn=foo)", 6, "unbalanced"),
        ("(cn=x))", 6, "unexpected ')'"),
        ("(cn=a)(cn=b)", 6, "unexpected '('"),
        ("", 0, "empty"),
        ("   ", 3, "empty"),
        ("()", 1, "without '='"),
        ("(cn)", 1, "without '='"),
        ("(=x)", 1, "missing attribute"),
        ("(c n=x)", 1, "invalid attribute"),
        ("(cn=a(b)", 5, "unescaped '('"),
        ("((a=b))", 1, "cannot start"),
        ("(!(a=b)(c=d))", 7, "exactly one"),
        ("(!)", 2, "needs a filter"),
        ("(&(a=b)x)", 7, "expected '(' or ')'"),
        ("(cn=\\zz)", 4, "invalid escape"),
        ("(cn=\\4)", 4, "invalid escape"),
        ("(cn>=a*)", 6, "unescaped '*'"),
        ("(cn~=*)", 5, "unescaped '*'"),
        ("(cn:1.2:=*x)", 9, "unescaped '*'"),
        ("(:=x)", 1, "attribute or a matching rule"),
        ("(:dn:=x)", 1, "attribute or a matching rule"),
        ("(cn:dn:1.2:3:=x)", 1, "invalid extensible"),
        ("(cn:1 2:=x)", 4, "invalid matching rule"),
        ("(cn=a\x00b)", 5, "NUL"),
        ("x(cn=a)", 1, "unescaped '('"),
        ("&(a=1)(b=2))", 11, "unbalanced"),
        ("&(a=1)(b=2", 10, "missing ')'"),
        ("&(a=1)x", 6, "expected '(' or ')'"),
        ("!", 1, "needs a filter"),
        ("cn=a\\", 4, "invalid escape"),
    ],
)
def test_syntax_errors_name_the_position(text, position, words):
    with pytest.raises(FilterSyntaxError) as info:
        parse_filter(text)
    err = info.value
    assert err.position == position, str(err)
    assert words in err.reason, str(err)
    assert err.text == text
    assert isinstance(err, ValueError)
    assert f"position {position}" in str(err) and repr(text) in str(err)


def test_deep_nesting_does_not_exhaust_the_stack():
    levels = 100_000
    started = time.perf_counter()
    f = parse_filter("(!" * levels + "(cn=x)" + ")" * levels)
    assert isinstance(f, Not)
    with pytest.raises(FilterSyntaxError):
        parse_filter("(&" * levels + "(cn=x)" + ")" * (levels - 1))
    assert time.perf_counter() - started < 5


# --------------------------------------------------------------------------
# Round trips


ATTR = st.one_of(
    st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,10}(;[A-Za-z0-9-]{1,6})?", fullmatch=True),
    st.from_regex(r"[0-9](\.[0-9]{1,4}){1,4}", fullmatch=True),
)
RULE = st.one_of(
    st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,6}){1,6}", fullmatch=True),
    st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,12}", fullmatch=True).filter(lambda r: r.lower() != "dn"),
)
TEXT = st.text(max_size=12)
PART = TEXT.filter(bool)
SUBSTRINGS = st.builds(
    lambda a, i, anys, f: Substrings(a, i, tuple(anys), f),
    ATTR,
    st.none() | PART,
    st.lists(PART, max_size=3),
    st.none() | PART,
).filter(lambda f: f.initial or f.any or f.final)
LEAF = st.one_of(
    st.builds(Equality, ATTR, TEXT),
    SUBSTRINGS,
    st.builds(Present, ATTR),
    st.builds(GreaterOrEqual, ATTR, TEXT),
    st.builds(LessOrEqual, ATTR, TEXT),
    st.builds(Approx, ATTR, TEXT),
    st.builds(Extensible, st.none() | RULE, st.none() | ATTR, TEXT, st.booleans()).filter(
        lambda f: f.rule or f.attr
    ),
)
FILTER = st.recursive(
    LEAF,
    lambda children: st.one_of(
        st.builds(And, st.lists(children, max_size=4).map(tuple)),
        st.builds(Or, st.lists(children, max_size=4).map(tuple)),
        st.builds(Not, children),
    ),
    max_leaves=15,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(FILTER)
def test_parse_filter_inverts_to_text(f):
    text = to_text(f)
    assert parse_filter(text) == f
    # the same filter written without its outer parentheses, if an item (a bare item is
    # trimmed of surrounding white space, so values ending in white space are not compared)
    if not isinstance(f, (And, Or, Not)) and text[1:-1] == text[1:-1].strip():
        assert parse_filter(text[1:-1]) == f


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="()&|!=*~<>:\\ abc01", max_size=30))
def test_arbitrary_text_parses_or_raises_filter_syntax_error(text):
    try:
        f = parse_filter(text)
    except FilterSyntaxError as e:
        assert 0 <= e.position <= len(text)
    else:
        assert parse_filter(to_text(f)) == f
