"""Numbers end to end through LDAP on the demo data: the filter shapes phones send (docs/phones.md)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.support import ROOT, ServerProcess, ldapsearch, parse_ldif

BASE = "dc=example,dc=com"
DEMO = os.path.join(ROOT, "conf", "demo-contacts.json")


def start(tmp_path, numbers="", proximity="enabled = true"):
    shutil.copy(DEMO, tmp_path / "demo-contacts.json")
    (tmp_path / "dirgw.toml").write_text(f"""
[ldap]
listen = ["tcp:0:interface=127.0.0.1"]
base_dn = "{BASE}"
[admin]
listen = ""
[numbers]
country = "DE"
area_code = "89"
outside_line = "0"
main_number = "+49 89 1234-0"
{numbers}
[proximity]
{proximity}
[[sources]]
name = "demo"
type = "json_file"
path = "demo-contacts.json"
""")
    return ServerProcess(str(tmp_path / "dirgw.toml"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    proc = start(tmp_path_factory.mktemp("numbers"))
    yield proc
    proc.stop()


def cns(proc, filter_, *attrs):
    result = ldapsearch(proc.port, "-b", BASE, filter_, "cn", *attrs)
    assert result.returncode in (0, 4), result.stderr
    return sorted(e["cn"][0] for e in parse_ldif(result.stdout))


# Jürgen Müller is stored as the bare extension "-217" of the main number +49 89 1234-0.
@pytest.mark.parametrize("dialled", ["+49891234217", "0049891234217", "0891234217", "00891234217",
                                     "00049891234217", "1234217", "217", "+49 89 1234-217", "089/1234-217"])
def test_caller_id_in_every_dialled_form(demo, dialled):
    """Gigaset/innovaphone-style caller ID finds the contact however the PBX dials the number."""
    assert cns(demo, f"(|(telephoneNumber={dialled})(mobile={dialled}))") == ["Jürgen Müller"]


@pytest.mark.parametrize("dialled", ["0897277574", "+49 89 727 75 74", "00897277574"])
def test_formatted_stored_number(demo, dialled):
    """A number stored as "(089) 727 75 74" matches what phones send."""
    assert cns(demo, f"(telephoneNumber={dialled})") == ["Jörg Förster"]


def test_mobile_attribute(demo):
    """Mobile numbers are found through the mobile attribute, not telephoneNumber."""
    assert cns(demo, "(mobile=01734778359)") == ["Hans Meier"]
    assert cns(demo, "(telephoneNumber=01734778359)") == []


def test_unknown_number_finds_nobody(demo):
    assert cns(demo, "(|(telephoneNumber=+4930999999999)(mobile=+4930999999999))") == []


def test_dial_prefix_completion(demo):
    """A dial-pad prefix in national form finds the company's people (Yealink/Snom number completion)."""
    names = cns(demo, "(|(telephoneNumber=0891234*)(mobile=0891234*))")
    assert "Jürgen Müller" in names and "Zoë Öztürk" in names
    result = ldapsearch(demo.port, "-b", BASE, "(|(telephoneNumber=+4989123423*)(mobile=+4989123423*))",
                        "cn", "telephoneNumber", "mobile")
    entries = parse_ldif(result.stdout)
    assert "Zoë Öztürk" in [e["cn"][0] for e in entries]
    for e in entries:  # every hit really has a number with that prefix
        assert any(n.startswith("+4989123423") for n in e.get("telephoneNumber", []) + e.get("mobile", []))


def test_contains_suffix_and_per_digit(demo):
    """Contains (STARFACE), suffix (Superfecta) and per-digit wildcards (AudioCodes) work on numbers."""
    assert "Jörg Förster" in cns(demo, "(telephoneNumber=*7277574*)")
    assert cns(demo, "(telephoneNumber=*49897277574)") == ["Jörg Förster"]
    assert cns(demo, "(telephoneNumber=0*8*9*7*2*7*7*5*7*4)") == ["Jörg Förster"]


def test_proximity_returns_the_company_marked(demo):
    """An extension nobody has returns the company record, marked "~" (never for an exact hit)."""
    result = ldapsearch(demo.port, "-b", BASE, "(telephoneNumber=+49891234999)", "cn", "displayName")
    (entry,) = parse_ldif(result.stdout)
    assert entry["cn"] == ["~Isartal Systemtechnik GmbH"]
    assert entry["displayName"] == ["~Isartal Systemtechnik GmbH"]
    assert cns(demo, "(telephoneNumber=+49891234217)") == ["Jürgen Müller"]


def test_proximity_never_on_names(demo):
    assert cns(demo, "(cn=Nobody Here)") == []


def test_results_in_e164(demo):
    """Results carry numbers in the configured output format (e164 by default)."""
    result = ldapsearch(demo.port, "-b", BASE, "(telephoneNumber=0891234217)", "telephoneNumber")
    assert parse_ldif(result.stdout)[0]["telephoneNumber"] == ["+49891234217"]


def test_output_dialable_and_answer_as_asked(tmp_path):
    """output = "dialable" writes what this PBX dials; answer_as_asked adds the asked form (Linphone, Jitsi)."""
    proc = start(tmp_path, numbers='output = "dialable"\nanswer_as_asked = true')
    try:
        result = ldapsearch(proc.port, "-b", BASE, "(telephoneNumber=+49 89 727-7574)", "telephoneNumber")
        values = parse_ldif(result.stdout)[0]["telephoneNumber"]
        assert "00897277574" in values
        assert "+49 89 727-7574" in values
    finally:
        proc.stop()


def test_proximity_can_be_turned_off(tmp_path):
    proc = start(tmp_path, proximity="enabled = false")
    try:
        assert cns(proc, "(telephoneNumber=+49891234999)") == []
    finally:
        proc.stop()


def test_numbers_explain_and_report():
    """dirgw numbers explain shows readings and matches; report lists shared numbers."""
    dirgw = os.path.join(ROOT, ".venv", "bin", "dirgw")
    config = os.path.join(ROOT, "conf", "demo.toml")
    out = subprocess.run([dirgw, "numbers", "explain", "00891234217", "--config", config],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "outside line 0" in out.stdout and "Jürgen Müller" in out.stdout
    out = subprocess.run([dirgw, "numbers", "explain", "+49891234999", "--config", config],
                         capture_output=True, text=True, timeout=120)
    assert "approximate" in out.stdout
    out = subprocess.run([dirgw, "numbers", "report", "--config", config, "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    import json

    doc = json.loads(out.stdout)
    assert any(row["number"] == "+4315123456" for row in doc["shared"])
