"""Configuration parsing: strict, with errors naming file, key and expectation."""

import os

import pytest

from gateway.config import ConfigError, load_config, parse_config, parse_duration

GOOD = """
[ldap]
listen = ["tcp:3389:interface=127.0.0.1"]
base_dn = "dc=example,dc=com"
size_limit = 1000
anonymous = true

[[sources]]
name = "demo"
type = "json_file"
path = "demo-contacts.json"
"""


def test_contract_keys_parse():
    """The documented keys parse into values, relative paths resolved against the file."""
    config = parse_config(GOOD, "/etc/dirgw/dirgw.toml")
    assert config.ldap.listen == ("tcp:3389:interface=127.0.0.1",)
    assert config.ldap.base_dn == "dc=example,dc=com"
    assert config.ldap.size_limit == 1000
    assert config.ldap.anonymous is True
    (source,) = config.sources
    assert source.name == "demo" and source.type == "json_file"
    assert source.path == "/etc/dirgw/demo-contacts.json"
    assert config.snapshot.restart_after_import == 500000
    assert parse_config(GOOD + "[snapshot]\nrestart_after_import = 0\n", "x").snapshot.restart_after_import == 0


@pytest.mark.parametrize(
    "text, key, expected",
    [
        (GOOD.replace("size_limit = 1000", "size_limit = \"many\""), "ldap.size_limit", "integer"),
        (GOOD.replace("size_limit = 1000", "size_limit = 0"), "ldap.size_limit", "positive"),
        (GOOD.replace("anonymous = true", "anonymous = 1"), "ldap.anonymous", "true or false"),
        (GOOD.replace("anonymous = true", "anonymus = true"), "ldap.anonymus", "unknown key"),
        (GOOD.replace('type = "json_file"', 'type = "ldif"'), "sources[0].type", "json_file"),
        (GOOD.replace('listen = ["tcp:3389:interface=127.0.0.1"]', 'listen = ["3389"]'), "ldap.listen[0]", "endpoint"),
        (GOOD.replace('base_dn = "dc=example,dc=com"', 'base_dn = "example"'), "ldap.base_dn", "DN"),
        (GOOD + "\n[numbers]\ncountry = \"Germany\"\n", "numbers.country", "ISO"),
        (GOOD + "\n[numbers]\noutput = \"pretty\"\n", "numbers.output", "e164"),
        (GOOD + "\n[[sources]]\nname = \"demo\"\ntype = \"json_file\"\npath = \"x\"\n", "sources[1].name", "duplicate"),
        (GOOD.replace('path = "demo-contacts.json"', ""), "sources[0].path", "missing"),
        ("[ldap\n", "(file)", "TOML"),
        (GOOD + "\n[snapshot]\nrestart_after_import = -1\n", "snapshot.restart_after_import", "number of contacts"),
        (GOOD + "\n[snapshot]\nrestart_after_import = true\n", "snapshot.restart_after_import", "integer"),
    ],
)
def test_errors_name_file_key_and_expectation(text, key, expected):
    """Every bad value is an error naming the file, the key and what is expected."""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "conf/x.toml")
    message = str(info.value)
    assert message.startswith("conf/x.toml: ")
    assert info.value.key == key
    assert expected in message


def test_unreadable_file_is_a_config_error(tmp_path):
    """A missing file is reported as such, not as a traceback."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.toml"))


def test_demo_configuration_is_valid():
    """The shipped demo configuration passes validation."""
    here = os.path.dirname(__file__)
    config = load_config(os.path.join(here, "..", "conf", "demo.toml"))
    assert config.sources[0].path.endswith("demo-contacts.json")


@pytest.mark.parametrize("text, seconds", [("5m", 300), ("30s", 30), ("1h", 3600), ("250ms", 0.25), (12, 12)])
def test_durations(text, seconds):
    """Durations accept the usual units."""
    assert parse_duration(text) == seconds


def test_bad_duration():
    with pytest.raises(ValueError):
        parse_duration("soon")
