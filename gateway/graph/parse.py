"""Microsoft Graph JSON (orgContact, /contacts pages, delta pages) to values. Pure."""

from __future__ import annotations

from typing import Any, Iterable, Union

from attrs import frozen

from gateway.model import Contact, Phone

__all__ = [
    "GraphShapeError",
    "Upsert",
    "Remove",
    "Change",
    "Page",
    "PageBody",
    "contact_from_graph",
    "page_body",
    "page_of",
    "parse_change",
    "parse_page",
    "SELECT_FIELDS",
]

#: The orgContact fields dirgw uses, for ``$select``.
SELECT_FIELDS = (
    "id",
    "displayName",
    "givenName",
    "surname",
    "companyName",
    "department",
    "jobTitle",
    "mail",
    "phones",
)


class GraphShapeError(ValueError):
    """A Graph object or page does not have the expected shape."""


@frozen
class Upsert:
    contact: Contact


@frozen
class Remove:
    source: str
    id: str


Change = Union[Upsert, Remove]


@frozen
class Page:
    """One page of a list or delta response."""

    changes: tuple[Change, ...]
    skipped: tuple[str, ...]  # reasons for entries that were skipped
    next_link: str | None
    delta_link: str | None


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise GraphShapeError(f"{key} is {type(value).__name__}, expected a string")
    return value.strip()


def contact_from_graph(obj: Any, source: str) -> Contact:
    """A Contact from one orgContact object; raises GraphShapeError if malformed."""
    if not isinstance(obj, dict):
        raise GraphShapeError(f"expected an object, got {type(obj).__name__}")
    contact_id = obj.get("id")
    if not isinstance(contact_id, str) or not contact_id.strip():
        raise GraphShapeError("missing id")
    raw_phones = obj.get("phones") or []
    if not isinstance(raw_phones, list):
        raise GraphShapeError("phones is not a list")
    phones = []
    for i, p in enumerate(raw_phones):
        if not isinstance(p, dict):
            raise GraphShapeError(f"phones[{i}] is not an object")
        number = p.get("number")
        if number is None:
            continue
        if not isinstance(number, str):
            raise GraphShapeError(f"phones[{i}].number is not a string")
        number = number.strip()
        if not number:
            continue
        kind = p.get("type") or "other"
        if not isinstance(kind, str):
            raise GraphShapeError(f"phones[{i}].type is not a string")
        phones.append(Phone(kind=kind, number=number))
    return Contact(
        source=source,
        id=contact_id.strip(),
        display_name=_text(obj, "displayName"),
        given_name=_text(obj, "givenName"),
        surname=_text(obj, "surname"),
        company=_text(obj, "companyName"),
        department=_text(obj, "department"),
        job_title=_text(obj, "jobTitle"),
        mail=_text(obj, "mail"),
        phones=tuple(phones),
    )


@frozen
class PageBody:
    """A page whose shape is checked and whose links are read, its entries not yet parsed: what
    the next request needs, at a fraction of the cost of the whole page."""

    values: list
    next_link: str | None
    delta_link: str | None


def page_body(obj: Any) -> PageBody:
    """The entries and links of one page; raises GraphShapeError if the page itself is malformed."""
    if not isinstance(obj, dict):
        raise GraphShapeError(f"page is {type(obj).__name__}, expected an object")
    values = obj.get("value")
    if not isinstance(values, list):
        raise GraphShapeError("page has no \"value\" list")
    next_link = obj.get("@odata.nextLink")
    delta_link = obj.get("@odata.deltaLink")
    for name, link in (("@odata.nextLink", next_link), ("@odata.deltaLink", delta_link)):
        if link is not None and not isinstance(link, str):
            raise GraphShapeError(f"{name} is not a string")
    return PageBody(values=values, next_link=next_link, delta_link=delta_link)


def parse_change(item: Any, i: int, source: str) -> Change | str:
    """The change entry ``i`` of a page stands for, or why it is skipped."""
    if isinstance(item, dict) and "@removed" in item:
        item_id = item.get("id")
        if isinstance(item_id, str) and item_id:
            return Remove(source=source, id=item_id)
        return f"entry {i}: removal without id"
    try:
        return Upsert(contact_from_graph(item, source))
    except GraphShapeError as e:
        ident = item.get("id") if isinstance(item, dict) else None
        return f"entry {i}" + (f" (id {ident})" if ident else "") + f": {e}"


def page_of(body: PageBody, parsed: Iterable[Change | str]) -> Page:
    """The page of ``body``, whose entries gave ``parsed`` (``parse_change``, in order)."""
    changes: list[Change] = []
    skipped: list[str] = []
    for item in parsed:
        if isinstance(item, str):
            skipped.append(item)
        else:
            changes.append(item)
    return Page(changes=tuple(changes), skipped=tuple(skipped), next_link=body.next_link, delta_link=body.delta_link)


def parse_page(obj: Any, source: str) -> Page:
    """Changes and links of one page; a single bad contact is skipped, not fatal."""
    body = page_body(obj)
    return page_of(body, (parse_change(item, i, source) for i, item in enumerate(body.values)))
