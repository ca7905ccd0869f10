"""The directory as the LDAP server sees it: the current index plus search policy.

Holds the one mutable reference to the live index; sources change the
index through ``apply``-style calls on the reactor thread, so a search never
sees half a batch.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

from attrs import evolve

from gateway.index import ContactIndex
from gateway.ldap.messages import SearchRequest
from gateway.ldap.search import SearchResult, SearchSettings, Shape, all_visible, run_search

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
        self.cache_size = 8192
        self.cache_hits = 0
        self._cache: OrderedDict = OrderedDict()
        self._cache_generation = -1
        self.extensions: tuple[str, ...] = ("1.3.6.1.4.1.4203.1.11.3",)  # Who am I?

    def search(self, request: SearchRequest, visible: Callable[[str], bool] = all_visible,
               visibility: object = None, shape: Shape | None = None) -> SearchResult:
        """Answer a search; recent answers are remembered until the index changes.

        ``visibility`` names what ``visible`` lets through (a frozenset of sources, or
        None for all), so that answers for differently privileged clients never mix.
        """
        index = self.index
        if not self.cache_size:
            return run_search(index, request, self.settings, visible=visible, now=self.now, shape=shape)
        if self._cache_generation != index.generation:
            self._cache.clear()
            self._cache_generation = index.generation
        key = (request.base, request.scope, request.filter, request.attributes, request.size_limit,
               request.types_only, request.controls, visibility, self.settings)
        try:
            hit = self._cache.get(key)
        except TypeError:  # an unhashable part: do not remember
            return run_search(index, request, self.settings, visible=visible, now=self.now, shape=shape)
        if hit is not None:
            self._cache.move_to_end(key)
            self.cache_hits += 1
            return hit
        result = run_search(index, request, self.settings, visible=visible, now=self.now, shape=shape)
        if result.result_code in (0, 4, 32):
            self._cache[key] = result
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return result

    def reconfigure(self, **changes) -> None:
        self.settings = evolve(self.settings, **changes)
        self._cache.clear()

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
