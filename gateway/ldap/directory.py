"""The directory as the LDAP server sees it: the current index plus search policy.

Holds the one mutable reference to the live index; sources change the
index through ``apply``-style calls on the reactor thread, so a search never
sees half a batch.
"""

from __future__ import annotations

from typing import Callable

from attrs import evolve

from gateway.index import ContactIndex
from gateway.ldap.messages import SearchRequest
from gateway.ldap.search import SearchResult, SearchSettings, run_search

__all__ = ["Directory", "ROOT_DSE_CONTROLS", "PAGED_RESULTS_OID", "SORT_REQUEST_OID", "SORT_RESPONSE_OID"]

PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
SORT_REQUEST_OID = "1.2.840.113556.1.4.473"
SORT_RESPONSE_OID = "1.2.840.113556.1.4.474"
MANAGE_DSA_IT_OID = "2.16.840.1.113730.3.4.2"

#: Controls dirgw implements, as advertised in the root DSE.
ROOT_DSE_CONTROLS = (PAGED_RESULTS_OID, SORT_REQUEST_OID, MANAGE_DSA_IT_OID)


class Directory:
    """The searchable directory: index, settings and the anonymous policy."""

    def __init__(
        self,
        index: ContactIndex,
        settings: SearchSettings,
        anonymous: bool = True,
        now: Callable[[], float] | None = None,
        vendor_version: str = "",
    ) -> None:
        self.index = index
        self.settings = settings
        self.anonymous = anonymous
        self.now = now
        self.vendor_version = vendor_version
        self.ready = False
        self.extensions: tuple[str, ...] = ("1.3.6.1.4.1.4203.1.11.3",)  # Who am I?

    def search(self, request: SearchRequest, visible: Callable[[str], bool] = lambda s: True) -> SearchResult:
        return run_search(self.index, request, self.settings, visible=visible, now=self.now)

    def reconfigure(self, **changes) -> None:
        self.settings = evolve(self.settings, **changes)

    def root_dse(self) -> list[tuple[str, tuple[str, ...]]]:
        return [
            ("objectClass", ("top",)),
            ("namingContexts", (self.settings.base_dn,)),
            ("supportedLDAPVersion", ("2", "3")),
            ("supportedControl", ROOT_DSE_CONTROLS),
            ("supportedExtension", self.extensions),
            ("supportedFeatures", ()),
            ("vendorName", ("dirgw",)),
            ("vendorVersion", (f"dirgw {self.vendor_version}".strip(),)),
        ]
