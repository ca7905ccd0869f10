"""The index's number reading across colleagues, contact files, and the search time limit."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from twisted.internet.task import Clock

from gateway.graph.parse import Remove, Upsert, contact_from_graph
from gateway.index import ContactIndex, SourceProfile
from gateway.ldap import filter as F
from gateway.ldap.messages import SCOPE_SUB, SearchRequest
from gateway.ldap.search import SearchSettings, run_search
from gateway.numbers import NumberSettings
from gateway.sources.json_file import ContactsFileError, JsonFileSource, parse_contacts_json, read_contacts_file
from tests.support import ROOT, contact

SETTINGS = NumberSettings(country="DE")


def caller(index, number):
    f = F.Or((F.Equality("telephoneNumber", number), F.Equality("mobile", number)))
    result = run_search(index, SearchRequest("dc=example,dc=com", SCOPE_SUB, f),
                        SearchSettings(base_dn="dc=example,dc=com", numbers=SETTINGS, proximity=False))
    return sorted(e.dn.split(",")[0] for e in result.entries)


def test_colleagues_numbers_tell_the_country():
    """A Viennese company's number written "01 5123457" is read as Austrian because a colleague's
    number carries +43; without that colleague it reads as German again."""
    index = ContactIndex([SourceProfile("s", 100, SETTINGS)])
    vienna = contact_from_graph(contact("v1", given="Anna", surname="Huber", company="Kaffee KG",
                                        phones=[("business", "+43 1 5123456")]), "s")
    colleague = contact_from_graph(contact("v2", given="Karl", surname="Gruber", company="Kaffee KG",
                                           phones=[("business", "01 5123457")]), "s")
    index.apply([Upsert(colleague), Upsert(vienna)])
    assert caller(index, "+4315123457") == ["uid=s.v2"]
    index.apply([Remove("s", "v1")])
    assert caller(index, "+4315123457") == []
    assert caller(index, "+4915123457") == ["uid=s.v2"]


def test_broken_json_names_line_and_column(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"value": [\n  {"id": "1", "displayName": "A"},\n  {"id": 2 "x"}\n]}')
    with pytest.raises(ContactsFileError, match=r"c.json: line 3 column \d+: not valid JSON"):
        read_contacts_file(str(path), "s")


def test_single_bad_contact_is_skipped_with_reason():
    result = parse_contacts_json(json.dumps({"value": [
        {"id": "1", "displayName": "Good"},
        {"displayName": "No id"},
        {"id": "3", "phones": "not a list"},
        {"id": "4", "displayName": "Also good", "phones": [{"type": "business", "number": "089 1234"}]},
    ]}), "f.json", "s")
    assert [c.id for c in result.contacts] == ["1", "4"]
    assert any("entry 1" in p and "missing id" in p for p in result.problems)
    assert any("id 3" in p and "phones" in p for p in result.problems)


def test_wrong_shape_is_clear():
    with pytest.raises(ContactsFileError, match="value"):
        parse_contacts_json('{"contacts": []}', "f.json", "s")


def test_check_config_reports_a_broken_file(tmp_path):
    (tmp_path / "c.json").write_text("{broken")
    (tmp_path / "dirgw.toml").write_text('[[sources]]\nname = "s"\ntype = "json_file"\npath = "c.json"\n')
    out = subprocess.run([os.path.join(ROOT, ".venv", "bin", "dirgw"), "check-config", str(tmp_path / "dirgw.toml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "c.json: line 1" in out.stderr


def test_file_source_keeps_last_good_data(tmp_path):
    """A file that breaks later is logged; the last good contacts stay; a fixed file is picked up."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"value": [contact("1", given="A", surname="B")]}))
    index = ContactIndex()
    clock = Clock()
    source = JsonFileSource("s", str(path), index.replace_source, clock, poll_interval=5)
    source.startService()
    assert len(index) == 1
    path.write_text("{not json")
    clock.advance(5)
    assert source.state == "failed" and "not valid JSON" in source.last_error
    assert len(index) == 1
    path.write_text(json.dumps({"value": [contact("1", given="A", surname="B"), contact("2", given="C", surname="D")]}))
    clock.advance(5)
    assert source.state == "idle" and len(index) == 2
    source.stopService()


def test_time_limit_returns_what_was_found():
    """A search that runs past its time limit ends with timeLimitExceeded (3) and the entries so far."""
    index = ContactIndex()
    index.apply(Upsert(contact_from_graph(contact(str(i), given="G", surname=f"S{i:04d}"), "s")) for i in range(2000))
    ticks = iter(range(10**6))
    settings = SearchSettings(base_dn="dc=example,dc=com", time_limit=3.0, size_limit=100000)
    f = F.Not(F.Equality("sn", "nobody"))  # not indexable: a scan
    result = run_search(index, SearchRequest("dc=example,dc=com", SCOPE_SUB, f), settings,
                        now=lambda: float(next(ticks)))  # one second per look at the clock
    assert result.result_code == 3
    assert 0 < len(result.entries) < 2000


def test_remembered_answers_follow_the_index_and_visibility():
    """A repeated search is answered from memory until the index changes; clients that see different
    sources never get each other's answers."""
    from gateway.ldap.directory import Directory

    index = ContactIndex()
    index.apply([Upsert(contact_from_graph(contact("1", given="Anna", surname="Meyer"), "a")),
                 Upsert(contact_from_graph(contact("2", given="Anna", surname="Meyer"), "b"))])
    directory = Directory(index, SearchSettings(base_dn="dc=example,dc=com"))
    request = SearchRequest("dc=example,dc=com", SCOPE_SUB, F.Equality("sn", "Meyer"))
    everyone = directory.search(request)
    assert len(everyone.entries) == 3 - 1  # both contacts
    assert directory.search(request) is everyone and directory.cache_hits == 1
    only_a = directory.search(request, visible=lambda s: s == "a", visibility=frozenset({"a"}))
    assert [e.dn for e in only_a.entries] == ["uid=a.1,dc=example,dc=com"]
    index.apply([Remove("b", "2")])
    assert [e.dn for e in directory.search(request).entries] == ["uid=a.1,dc=example,dc=com"]
