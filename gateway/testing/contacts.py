"""The emulated tenant's mail contacts (Graph ``orgContact``) and their change log.

Pure state, no I/O and no clock.  Every upsert or removal takes the next sequence number; the
log of (sequence, id) pairs is what delta rounds and list pages walk, with a *cursor* (the last
sequence number a page delivered) and an *upper bound* (the newest sequence number when the
round started).  A contact changed while a round is being paged moves past the upper bound,
so it is not skipped: the next round reports it.
"""

from __future__ import annotations

import bisect
import copy
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from attrs import define, field

__all__ = ["ContactStore", "Change", "normalize_contact", "select_properties", "PHONE_TYPES",
           "ORG_CONTACT_PROPERTIES", "UnknownProperty"]

#: The phone slots an orgContact has, in the order Graph returns them.
PHONE_TYPES = ("businessFax", "mobile", "business")

_STRING_FIELDS = ("companyName", "department", "displayName", "givenName", "jobTitle", "mail",
                  "mailNickname", "surname")

#: Every property an orgContact response carries (the §3.2 shape).
ORG_CONTACT_PROPERTIES = (
    "id", "deletedDateTime", "companyName", "department", "displayName", "proxyAddresses",
    "givenName", "imAddresses", "jobTitle", "mail", "mailNickname", "onPremisesLastSyncDateTime",
    "onPremisesSyncEnabled", "surname", "addresses", "onPremisesProvisioningErrors", "phones",
)

_DEFAULTS: dict[str, Any] = {
    "deletedDateTime": None,
    "proxyAddresses": [],
    "imAddresses": [],
    "onPremisesLastSyncDateTime": None,
    "onPremisesSyncEnabled": None,
    "addresses": [],
    "onPremisesProvisioningErrors": [],
}


class UnknownProperty(ValueError):
    """``$select`` named a property orgContact does not have."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _phones(raw: Any, other_types: bool) -> list[dict[str, Any]]:
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise ValueError("phones must be a list of {type, number}")
    numbers: dict[str, str | None] = {}
    for phone in raw:
        if not isinstance(phone, Mapping):
            raise ValueError("each phone must be an object {type, number}")
        kind = phone.get("type")
        if not isinstance(kind, str) or (kind not in PHONE_TYPES and not other_types):
            raise ValueError(
                f"orgContact phone type must be one of {', '.join(PHONE_TYPES)}, not {kind!r}"
            )
        number = phone.get("number")
        if number is not None and not isinstance(number, str):
            raise ValueError(f"phone number must be a string or null, not {number!r}")
        if numbers.get(kind) is not None and number is not None:
            raise ValueError(f"only one {kind} phone is allowed on an orgContact")
        if number is not None or kind not in numbers:
            numbers[kind] = number
    slots = [{"number": numbers.get(kind), "type": kind} for kind in PHONE_TYPES]
    extra = [{"number": n, "type": k} for k, n in numbers.items() if k not in PHONE_TYPES]
    return slots + extra


def _check_fields(raw: Mapping[str, Any]) -> None:
    for name in _STRING_FIELDS:
        value = raw.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be a string or null, not {value!r}")


def normalize_contact(raw: Mapping[str, Any], other_phone_types: bool = False) -> dict[str, Any]:
    """A contact in the full shape Graph returns (all phone slots, null for unset properties).

    Accepts the short form tests and conf files use (``id``, names, ``mail``,
    ``phones: [{type, number}]``); an ``id`` is generated when missing.  Unknown keys are kept:
    orgContact is an open type.  Phone types other than business, mobile and businessFax are
    an error (orgContact has no others) unless ``other_phone_types``: then they follow the
    three slots.
    """
    if not isinstance(raw, Mapping):
        raise ValueError("a contact must be a JSON object")
    _check_fields(raw)
    contact_id = raw.get("id") or str(uuid.uuid4())
    if not isinstance(contact_id, str):
        raise ValueError("contact id must be a string")
    out: dict[str, Any] = {"id": contact_id}
    for name in ORG_CONTACT_PROPERTIES[1:]:
        if name == "phones":
            try:
                out["phones"] = _phones(raw.get("phones"), other_phone_types)
            except ValueError as e:
                raise ValueError(f"contact {contact_id} ({raw.get('displayName')}): {e}") from None
        elif name in raw:
            out[name] = _copy(raw[name])
        else:
            out[name] = _copy(_DEFAULTS.get(name))
    for name, value in raw.items():
        if name not in out and not name.startswith("@"):
            out[name] = _copy(value)
    return out


def _copy(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list) and not value:
        return []
    return copy.deepcopy(value)


def select_properties(contact: Mapping[str, Any], select: tuple[str, ...] | None) -> dict[str, Any]:
    """``contact`` reduced to ``id`` plus the ``$select``ed properties (all when ``select`` is None)."""
    if select is None:
        return {name: _copy(value) for name, value in contact.items()}
    out: dict[str, Any] = {"id": contact["id"]}
    for name in select:
        out[name] = _copy(contact.get(name))
    return out


def parse_select(text: str | None) -> tuple[str, ...] | None:
    """Parse a ``$select`` value; raises `UnknownProperty` for a property orgContact lacks."""
    if text is None or not text.strip():
        return None
    names = []
    for part in text.split(","):
        name = part.strip()
        if not name:
            continue
        if name not in ORG_CONTACT_PROPERTIES:
            raise UnknownProperty(name)
        if name != "id" and name not in names:
            names.append(name)
    return tuple(names)


@define
class Change:
    """One entry a delta page reports: a contact's current state, or its removal."""

    id: str
    contact: dict[str, Any] | None
    removed_reason: str | None = None


@define
class _Entry:
    seq: int
    contact: dict[str, Any] | None
    removed_reason: str | None = None


@define
class ContactStore:
    """Contacts of one tenant plus the append-only change log delta rounds read."""

    _entries: dict[str, _Entry] = field(factory=dict)
    _log_seqs: list[int] = field(factory=list)
    _log_ids: list[str] = field(factory=list)
    _seq: int = 0
    other_phone_types: bool = False
    """Accept phone types orgContact does not have (graph.md §3.1) instead of rejecting them."""

    @property
    def sequence(self) -> int:
        """Sequence number of the newest change (0 before any)."""
        return self._seq

    def __len__(self) -> int:
        return sum(1 for e in self._entries.values() if e.contact is not None)

    def _record(self, contact_id: str, contact: dict[str, Any] | None, reason: str | None) -> None:
        self._seq += 1
        self._entries[contact_id] = _Entry(self._seq, contact, reason)
        self._log_seqs.append(self._seq)
        self._log_ids.append(contact_id)

    def get(self, contact_id: str) -> dict[str, Any] | None:
        """The live contact with ``contact_id``, or None."""
        entry = self._entries.get(contact_id)
        return None if entry is None or entry.contact is None else entry.contact

    def all(self) -> list[dict[str, Any]]:
        """Every live contact, oldest change first."""
        return [e.contact for _, e in sorted(self._entries.items(), key=lambda kv: kv[1].seq)
                if e.contact is not None]

    def upsert(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Add a contact or replace one with the same id; returns the stored (full) contact."""
        contact = normalize_contact(raw, self.other_phone_types)
        self._record(contact["id"], contact, None)
        return contact

    def upsert_many(self, raw: Iterable[Mapping[str, Any]] | Mapping[str, Any]) -> list[dict[str, Any]]:
        """Upsert a list of contacts, or a ``{"value": [...]}`` document."""
        if isinstance(raw, Mapping):
            if "value" not in raw:
                return [self.upsert(raw)]
            raw = raw["value"]
        if not isinstance(raw, list):
            raise ValueError('expected a list of contacts or {"value": [...]}')
        contacts = [normalize_contact(c, self.other_phone_types) for c in raw]  # validate all before changing anything
        for contact in contacts:
            self._record(contact["id"], contact, None)
        return contacts

    def update(self, contact_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change some properties of an existing contact (``phones`` replaces all phones)."""
        current = self.get(contact_id)
        if current is None:
            raise KeyError(contact_id)
        merged = {**current, **{k: v for k, v in changes.items() if k != "id"}}
        if "phones" not in changes:
            merged["phones"] = [p for p in current["phones"] if p["number"] is not None]
        return self.upsert(merged)

    def remove(self, contact_id: str, permanent: bool = False) -> None:
        """Remove a contact: soft delete (``@removed`` reason ``changed``) or permanent (``deleted``)."""
        if self.get(contact_id) is None:
            raise KeyError(contact_id)
        self._record(contact_id, None, "deleted" if permanent else "changed")

    def clear(self) -> None:
        """Remove every live contact (each shows up as removed in the next delta round)."""
        for contact_id in [i for i, e in self._entries.items() if e.contact is not None]:
            self.remove(contact_id)

    def page(self, cursor: int, upto: int, limit: int, include_removed: bool
             ) -> tuple[list[Change], int | None]:
        """Changes with sequence in (``cursor``, ``upto``], at most ``limit`` of them.

        Returns the changes and the cursor for the next page, or None when the range is done.
        Log entries superseded by a later change of the same contact are skipped.
        """
        out: list[Change] = []
        i = bisect.bisect_right(self._log_seqs, cursor)
        last = cursor
        n = len(self._log_seqs)
        while i < n:
            seq = self._log_seqs[i]
            if seq > upto:
                break
            entry = self._entries[self._log_ids[i]]
            i += 1
            if entry.seq != seq:
                continue
            if entry.contact is None and not include_removed:
                continue
            if len(out) == limit:
                return out, last
            out.append(Change(self._log_ids[i - 1], entry.contact, entry.removed_reason))
            last = seq
        return out, None
