"""The ``json_file`` source: contacts from a file shaped like a Graph /contacts response.

``parse_contacts_json`` is pure; ``JsonFileSource`` reads the file at start
and again whenever it changes, keeping the last good data when a new
version is broken.
"""

from __future__ import annotations

import json
import os
from typing import Callable

from attrs import frozen
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gateway.graph.parse import GraphShapeError, Upsert, parse_page
from gateway.model import Contact

__all__ = ["ContactsFileError", "ContactsFile", "parse_contacts_json", "read_contacts_file", "JsonFileSource"]


class ContactsFileError(Exception):
    """A contacts file cannot be used at all."""


@frozen
class ContactsFile:
    contacts: tuple[Contact, ...]
    problems: tuple[str, ...]  # entries skipped, with the reason


def parse_contacts_json(text: str, path: str, source: str) -> ContactsFile:
    """Contacts of a ``{"value": [orgContact, ...]}`` document."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ContactsFileError(f"{path}: line {e.lineno} column {e.colno}: not valid JSON: {e.msg}")
    if isinstance(data, list):
        data = {"value": data}
    try:
        page = parse_page(data, source)
    except GraphShapeError as e:
        raise ContactsFileError(f"{path}: {e} (expected {{\"value\": [contact, ...]}})")
    contacts = []
    seen: set[str] = set()
    problems = [f"{path}: {p}" for p in page.skipped]
    for change in page.changes:
        if isinstance(change, Upsert):
            if change.contact.id in seen:
                problems.append(f"{path}: duplicate id {change.contact.id}; the later entry wins")
            seen.add(change.contact.id)
            contacts.append(change.contact)
    unique = {c.id: c for c in contacts}
    return ContactsFile(contacts=tuple(unique.values()), problems=tuple(problems))


def read_contacts_file(path: str, source: str) -> ContactsFile:
    """Read and parse a contacts file."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ContactsFileError(f"{path}: cannot read: {e.strerror}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ContactsFileError(f"{path}: not UTF-8 at byte {e.start}")
    return parse_contacts_json(text, path, source)


class JsonFileSource(Service):
    """Keeps one source of the index equal to a JSON file."""

    log = Logger()

    def __init__(
        self,
        name: str,
        path: str,
        replace: Callable[[str, tuple[Contact, ...]], object],
        clock: IReactorTime,
        poll_interval: float = 10.0,
    ) -> None:
        self.name = name
        self.path = path
        self._replace = replace
        self._clock = clock
        self._poll_interval = poll_interval
        self._stamp: tuple[float, int] | None = None
        self._poll: LoopingCall | None = None
        self.state = "starting"
        self.last_error: str | None = None
        self.contacts = 0

    def load(self) -> bool:
        """Load the file now; True when it was applied."""
        try:
            st = os.stat(self.path)
            self._stamp = (st.st_mtime, st.st_size)
            result = read_contacts_file(self.path, self.name)
        except (OSError, ContactsFileError) as e:
            message = str(e) if isinstance(e, ContactsFileError) else f"{self.path}: {e.strerror}"
            self.last_error = message
            self.state = "failed"
            self.log.error("source {source}: {message}; serving the last good data", source=self.name, message=message)
            return False
        for problem in result.problems:
            self.log.warn("source {source}: skipped {problem}", source=self.name, problem=problem)
        self._replace(self.name, result.contacts)
        self.contacts = len(result.contacts)
        self.state = "idle"
        self.last_error = None
        self.log.info("source {source}: loaded {count} contacts from {path}", source=self.name,
                      count=len(result.contacts), path=self.path)
        return True

    def _check(self) -> None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime, st.st_size)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self.load()

    def startService(self) -> None:
        super().startService()
        if self._stamp is None:
            self.load()
        self._poll = LoopingCall(self._check)
        self._poll.clock = self._clock
        self._poll.start(self._poll_interval, now=False)

    def stopService(self):
        if self._poll is not None and self._poll.running:
            self._poll.stop()
        return super().stopService()
