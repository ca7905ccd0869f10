"""Contact values: what dirgw knows about one person or company record.

Pure values with no knowledge of Graph JSON or LDAP attributes;
``gateway.graph.parse`` and ``gateway.ldap.schema`` translate.
"""

from __future__ import annotations

from attrs import frozen

__all__ = ["Contact", "Phone", "PHONE_KINDS"]

#: Phone kinds as Microsoft Graph names them (``phone.type``).
PHONE_KINDS = (
    "business",
    "mobile",
    "home",
    "other",
    "assistant",
    "homeFax",
    "businessFax",
    "otherFax",
    "pager",
    "radio",
)


@frozen
class Phone:
    """One phone number of a contact, as stored (typed by a person)."""

    kind: str
    number: str


@frozen
class Contact:
    """One contact of one source; immutable."""

    source: str
    id: str
    display_name: str = ""
    given_name: str = ""
    surname: str = ""
    company: str = ""
    department: str = ""
    job_title: str = ""
    mail: str = ""
    phones: tuple[Phone, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        """The identity of this contact across the whole index."""
        return (self.source, self.id)

    @property
    def name(self) -> str:
        """The best name to show: display name, else given + surname, else company."""
        if self.display_name:
            return self.display_name
        joined = " ".join(p for p in (self.given_name, self.surname) if p)
        return joined or self.company or self.mail or self.id

    @property
    def is_company_record(self) -> bool:
        """True for a record of a company rather than a person."""
        return not (self.given_name or self.surname) and bool(self.company)
