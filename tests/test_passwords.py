"""Password hashes and `dirgw passwd`."""

from __future__ import annotations

import hashlib
import io
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import passwords
from gateway.passwords import dummy_verify, hash_password, is_valid_hash, passwd_main, verify_password

#: cheap parameters for tests where the cost does not matter
CHEAP = dict(n=2**8, r=1, p=1)


def test_round_trip_with_default_parameters():
    encoded = hash_password("s3cret")
    assert re.fullmatch(r"\$scrypt\$n=16384,r=8,p=2\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}", encoded)
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cret ", encoded)
    assert not verify_password("", encoded)


def test_salted():
    assert hash_password("same", **CHEAP) != hash_password("same", **CHEAP)


def test_text_is_utf8_and_bytes_are_taken_as_they_are():
    encoded = hash_password("Grüße", **CHEAP)
    assert verify_password("Grüße", encoded)
    assert verify_password("Grüße".encode(), encoded)
    assert not verify_password("Grüße".encode("latin-1"), encoded)
    assert not verify_password("Grusse", encoded)


def test_parameters_are_read_from_the_hash():
    encoded = hash_password("pw", n=2**10, r=2, p=1)
    assert encoded.startswith("$scrypt$n=1024,r=2,p=1$")
    assert verify_password("pw", encoded)


def test_surrounding_whitespace_in_the_stored_hash_is_tolerated():
    encoded = hash_password("pw", **CHEAP)
    assert verify_password("pw", f"  {encoded}\n")


def test_unsupported_parameters_are_refused_when_hashing():
    with pytest.raises(ValueError):
        hash_password("pw", n=1000)
    with pytest.raises(ValueError):
        hash_password("pw", n=2**22)


GOOD = hash_password("pw", **CHEAP)
_, _, PARAMS, SALT, KEY = GOOD.split("$")

MALFORMED = [
    "",
    "plain text password",
    "$scrypt$",
    f"$scrypt$n=256,r=1,p=1${SALT}",
    f"$bcrypt$n=256,r=1,p=1${SALT}${KEY}",
    f"$scrypt$n=255,r=1,p=1${SALT}${KEY}",  # not a power of two
    f"$scrypt$n=1048576,r=32,p=1${SALT}${KEY}",  # 4 GiB
    f"$scrypt$n=2097152,r=1,p=1${SALT}${KEY}",  # n too large
    f"$scrypt$n=256,r=0,p=1${SALT}${KEY}",
    f"$scrypt$n=256,r=1,p=99${SALT}${KEY}",
    f"$scrypt$n=256,r=1,p=1$!!!!${KEY}",
    f"$scrypt$n=256,r=1,p=1${SALT}${KEY[:10]}",  # key too short
    f"$scrypt$n=256,r=1,p=1${SALT[:5]}${KEY}",  # base64 with a bad length
    f"$scrypt$n=256,r=1,p=1${SALT}${KEY}$extra",
    f"$scrypt$n=-256,r=1,p=1${SALT}${KEY}",
    f"$SCRYPT$N=256,r=1,p=1${SALT}${KEY}",
]


@pytest.mark.parametrize("encoded", MALFORMED)
def test_malformed_hashes_are_refused_without_raising(encoded):
    assert not is_valid_hash(encoded)
    assert verify_password("pw", encoded) is False


@pytest.mark.parametrize("encoded", [None, 42, b"$scrypt$", ["x"]])
def test_hashes_that_are_not_text_are_refused(encoded):
    assert not is_valid_hash(encoded)
    assert verify_password("pw", encoded) is False  # type: ignore[arg-type]


def test_the_good_hash_is_valid():
    assert is_valid_hash(GOOD)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_is_valid_hash_never_raises(text):
    is_valid_hash(text)
    is_valid_hash("$scrypt$" + text)


@settings(max_examples=5, deadline=None)
@given(st.text(max_size=40), st.text(max_size=80))
def test_verify_never_raises(password, encoded):
    assert verify_password(password, "$scrypt$" + encoded) is False


# -- timing: unknown users cost what known users cost ----------------------------


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.real = hashlib.scrypt

    def __call__(self, password, *, salt, n, r, p, dklen, maxmem=0):
        self.calls.append((n, r, p, dklen))
        return self.real(password, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem)


def test_dummy_verify_does_the_work_of_a_default_verification(monkeypatch):
    encoded = hash_password("right")
    recorder = _Recorder()
    monkeypatch.setattr(passwords.hashlib, "scrypt", recorder)
    assert verify_password("wrong", encoded) is False
    assert dummy_verify("wrong") is False
    assert verify_password("pw", "garbage") is False
    assert len(recorder.calls) == 3
    assert recorder.calls[0] == recorder.calls[1] == recorder.calls[2] == (2**14, 8, 2, 32)


def test_verification_cost_is_reported(capsys):
    """Not a timed assertion: prints what one verification costs here."""
    numbers = passwords.bench(rounds=3)
    start = time.perf_counter()
    dummy_verify("x")
    dummy_ms = (time.perf_counter() - start) * 1000
    with capsys.disabled():
        print(
            f"\n[passwords] verify median {numbers['median_ms']:.1f} ms "
            f"(min {numbers['min_ms']:.1f}, max {numbers['max_ms']:.1f}); dummy_verify {dummy_ms:.1f} ms"
        )
    assert numbers["min_ms"] > 0


# -- dirgw passwd -----------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(argv, stdin, getpass=None):
    out, err = io.StringIO(), io.StringIO()
    code = passwd_main(argv, stdin, out, err, getpass=getpass)
    return code, out.getvalue(), err.getvalue()


def _fast(monkeypatch):
    monkeypatch.setattr(passwords, "SCRYPT_N", 2**8)
    real = passwords.hash_password
    monkeypatch.setattr(passwords, "hash_password", lambda pw: real(pw, **CHEAP))


def test_passwd_reads_one_line_from_stdin(monkeypatch):
    _fast(monkeypatch)
    code, out, err = _run(["--stdin"], io.StringIO("hunter2\nignored\n"))
    assert code == 0, err
    assert out.count("\n") == 1
    assert verify_password("hunter2", out.strip())


def test_passwd_reads_stdin_when_it_is_not_a_terminal(monkeypatch):
    _fast(monkeypatch)
    code, out, _ = _run([], io.StringIO("pass word\r\n"))
    assert code == 0
    assert verify_password("pass word", out.strip())


def test_passwd_asks_twice_on_a_terminal(monkeypatch):
    _fast(monkeypatch)
    asked = []

    def getpass(prompt):
        asked.append(prompt)
        return "geheim"

    code, out, _ = _run([], _Tty(""), getpass)
    assert code == 0
    assert len(asked) == 2
    assert verify_password("geheim", out.strip())


def test_passwd_refuses_different_passwords():
    answers = iter(["one", "two"])
    code, out, err = _run([], _Tty(""), lambda prompt: next(answers))
    assert code == 1
    assert out == ""
    assert "do not match" in err


def test_passwd_refuses_an_empty_password():
    code, out, err = _run(["--stdin"], io.StringIO("\n"))
    assert code == 1 and out == "" and "empty" in err
    code, out, err = _run(["--stdin"], io.StringIO(""))
    assert code == 1 and out == ""


def test_passwd_cancelled():
    def getpass(prompt):
        raise KeyboardInterrupt

    code, out, err = _run([], _Tty(""), getpass)
    assert code == 1 and out == "" and "cancelled" in err


def test_passwd_help_and_usage():
    code, out, _ = _run(["--help"], io.StringIO(""))
    assert code == 0 and "password_hash" in out
    code, out, err = _run(["--bogus"], io.StringIO(""))
    assert code == 2 and out == "" and "usage" in err
