"""The LDAP view of a contact: attribute names, aliases, DNs and entries.

Pure: no I/O, no ldaptor.  An entry is the list of (attribute, values)
that a search returns for one contact, in a fixed order.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable

from gateway.model import Contact

__all__ = [
    "OBJECT_CLASSES",
    "PHONE_ATTRIBUTES",
    "NAME_ATTRIBUTES",
    "ALL_ATTRIBUTES",
    "canonical_attribute",
    "phone_attribute_for_kind",
    "contact_rdn_value",
    "escape_rdn_value",
    "unescape_rdn_value",
    "normalize_dn",
    "contact_attribute_values",
]

OBJECT_CLASSES = ("top", "person", "organizationalPerson", "inetOrgPerson")

#: Phone attributes in the order entries list them.
PHONE_ATTRIBUTES = (
    "telephoneNumber",
    "mobile",
    "homePhone",
    "facsimileTelephoneNumber",
    "pager",
)

#: Text attributes that are indexed for equality and prefix searches.
NAME_ATTRIBUTES = ("cn", "sn", "givenName", "displayName", "o", "ou", "title", "mail")

#: Every attribute an entry may carry, in the order entries list them.
ALL_ATTRIBUTES = (
    "objectClass",
    "uid",
    "cn",
    "sn",
    "givenName",
    "displayName",
    "o",
    "ou",
    "title",
    "mail",
) + PHONE_ATTRIBUTES

_ALIASES = {
    "objectclass": "objectClass",
    "uid": "uid",
    "userid": "uid",
    "cn": "cn",
    "commonname": "cn",
    "sn": "sn",
    "surname": "sn",
    "givenname": "givenName",
    "gn": "givenName",
    "displayname": "displayName",
    "o": "o",
    "organizationname": "o",
    "company": "o",
    "ou": "ou",
    "organizationalunitname": "ou",
    "department": "ou",
    "title": "title",
    "jobtitle": "title",
    "mail": "mail",
    "rfc822mailbox": "mail",
    "email": "mail",
    "emailaddress": "mail",
    "telephonenumber": "telephoneNumber",
    "telephone": "telephoneNumber",
    "businessphone": "telephoneNumber",
    "mobile": "mobile",
    "mobiletelephonenumber": "mobile",
    "mobilephone": "mobile",
    "homephone": "homePhone",
    "hometelephonenumber": "homePhone",
    "facsimiletelephonenumber": "facsimileTelephoneNumber",
    "fax": "facsimileTelephoneNumber",
    "pager": "pager",
    "pagertelephonenumber": "pager",
}

#: Graph phone types to LDAP attributes; any other type is a telephoneNumber.
_KIND_TO_ATTRIBUTE = {
    "business": "telephoneNumber",
    "mobile": "mobile",
    "home": "homePhone",
    "homeFax": "facsimileTelephoneNumber",
    "businessFax": "facsimileTelephoneNumber",
    "otherFax": "facsimileTelephoneNumber",
    "pager": "pager",
}

#: objectCategory is answered as AD-oriented clients expect.
OBJECT_CATEGORY = "person"


@lru_cache(maxsize=4096)
def canonical_attribute(name: str) -> str | None:
    """The canonical name of an attribute description, or None if unknown.

    Case-insensitive; options (``cn;lang-de``) are ignored, as are OID forms
    we do not know.
    """
    base = name.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base)


def phone_attribute_for_kind(kind: str) -> str:
    """The LDAP attribute a Graph phone type is published as."""
    return _KIND_TO_ATTRIBUTE.get(kind, "telephoneNumber")


_DN_SPECIAL = set(',+"\\<>;=')


def escape_rdn_value(value: str) -> str:
    """Escape an attribute value for use in a DN (RFC 4514)."""
    out = []
    for i, ch in enumerate(value):
        if ch in _DN_SPECIAL or (i == 0 and ch in " #") or (i == len(value) - 1 and ch == " "):
            out.append("\\" + ch)
        elif ord(ch) < 0x20:
            out.append("\\%02x" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def unescape_rdn_value(value: str) -> str:
    """Undo RFC 4514 escaping (``\\,`` and ``\\2c`` forms)."""
    out = bytearray()
    i = 0
    raw = value.encode("utf-8")
    while i < len(raw):
        c = raw[i]
        if c == 0x5C and i + 1 < len(raw):
            pair = raw[i + 1 : i + 3]
            try:
                if len(pair) == 2 and all(chr(b) in "0123456789abcdefABCDEF" for b in pair):
                    out.append(int(pair, 16))
                    i += 3
                    continue
            except ValueError:
                pass
            out.append(raw[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    return out.decode("utf-8", "replace")


def contact_rdn_value(contact: Contact) -> str:
    """The ``uid`` value naming a contact: stable and unique across sources."""
    return f"{contact.source}.{contact.id}"


def _split_dn(dn: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(dn):
        ch = dn[i]
        if ch == "\\" and i + 1 < len(dn):
            current.append(dn[i : i + 2])
            i += 2
            continue
        if ch in ",;":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


@lru_cache(maxsize=4096)
def normalize_dn(dn: str) -> tuple[tuple[str, str], ...]:
    """A comparable form of a DN: ((attribute, folded value), ...).

    Attribute names are canonical and lower-cased, values unescaped and
    case-folded; spaces around separators (``cn=x, dc=y``) are ignored.
    Raises ValueError for a DN that does not parse.
    """
    dn = dn.strip()
    if not dn:
        return ()
    result = []
    for part in _split_dn(dn):
        if "=" not in part:
            raise ValueError(f"not a DN: {dn!r}")
        attr, _, value = part.partition("=")
        attr = attr.strip().lower()
        if not attr:
            raise ValueError(f"not a DN: {dn!r}")
        canon = canonical_attribute(attr)
        attr = canon.lower() if canon else attr
        result.append((attr, unescape_rdn_value(value.strip()).casefold()))
    return tuple(result)


#: The ``objectCategory`` values of every contact (one tuple, shared by all entries).
_OBJECT_CATEGORY_VALUES = (OBJECT_CATEGORY,)


@lru_cache(maxsize=65536)
def _one_value(value: str) -> tuple[str]:
    """``(value,)``, one tuple for all contacts of that value: surnames, given names, companies,
    departments and titles repeat (the index keeps each contact's values)."""
    return (value,)


def _phones_by_attribute(contact: Contact) -> dict[str, list[str]]:
    numbers: dict[str, list[str]] = {}
    for phone in contact.phones:
        numbers.setdefault(phone_attribute_for_kind(phone.kind), []).append(phone.number)
    return numbers


def contact_attribute_values(contact: Contact) -> dict[str, tuple[str, ...]]:
    """Every attribute of a contact's entry with its stored values.

    Phone values are the numbers as stored; the search layer may rewrite
    them into the configured output format.  Equal values of different
    attributes may be one tuple (the index keeps one of these per contact).
    """
    name = contact.name
    cn = (name,)
    values: dict[str, tuple[str, ...]] = {
        "objectClass": OBJECT_CLASSES,
        "objectCategory": _OBJECT_CATEGORY_VALUES,
        "uid": (contact_rdn_value(contact),),
        "cn": cn,
        "sn": _one_value(contact.surname) if contact.surname else cn,
    }
    if contact.given_name:
        values["givenName"] = _one_value(contact.given_name)
    if name:  # the display name, else the name (which is the display name when there is one)
        values["displayName"] = cn
    for attr, value in (
        ("o", contact.company),
        ("ou", contact.department),
        ("title", contact.job_title),
    ):
        if value:
            values[attr] = _one_value(value)
    if contact.mail:
        values["mail"] = (contact.mail,)  # one per contact: not worth remembering
    if contact.phones:
        for attr, numbers in _phones_by_attribute(contact).items():
            values[attr] = tuple(numbers)
    return values


def iter_entry(values: dict[str, tuple[str, ...]], order: Iterable[str] = ALL_ATTRIBUTES):
    """(attribute, values) pairs of an entry in a fixed order."""
    for attr in order:
        if attr in values:
            yield attr, values[attr]
