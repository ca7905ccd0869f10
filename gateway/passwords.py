"""Password hashes for bind users: salted scrypt from the standard library.

A hash is a self-describing string that goes into ``[[users]] password_hash``::

    $scrypt$n=16384,r=8,p=2$<salt, base64>$<key, base64>

(standard base64 alphabet, no padding).  ``verify_password`` reads the
parameters from the string, so hashes made with other parameters keep
working when the defaults change.  The defaults cost about 50-60 ms and
16 MiB per verification on the development machine (2 cores); measured
with ``python -c "from gateway.passwords import bench; print(bench())"``.

Every verification is deliberately slow and blocks the calling thread:
run it off the reactor thread, and bound how many run at once.

``dummy_verify`` costs what a real verification with the default
parameters costs; call it for an unknown user so that the time of an
answer does not tell an unknown name from a wrong password.

``dirgw passwd`` (``passwd_main``) prints a hash for a password read from
the terminal (asked twice) or from standard input (once).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import getpass as _getpass
import hashlib
import hmac
import os
import re
import sys
import time
from typing import IO, Callable, Sequence

__all__ = [
    "SCRYPT_N",
    "SCRYPT_R",
    "SCRYPT_P",
    "hash_password",
    "verify_password",
    "dummy_verify",
    "is_valid_hash",
    "passwd_main",
    "main",
    "bench",
]

#: Default cost parameters (n: CPU/memory cost, a power of two; r: block size; p: parallelism).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 2
SALT_BYTES = 16
KEY_BYTES = 32

# Bounds a stored hash must respect: a hash from the configuration must not
# be able to make one verification take minutes or gigabytes.
_MAX_N = 2**20
_MAX_R = 32
_MAX_P = 16
_MAX_MEMORY = 256 * 1024 * 1024

_FORMAT = re.compile(
    r"^\$scrypt\$n=(?P<n>[0-9]{1,8}),r=(?P<r>[0-9]{1,3}),p=(?P<p>[0-9]{1,3})"
    r"\$(?P<salt>[A-Za-z0-9+/]{4,128})\$(?P<key>[A-Za-z0-9+/]{20,128})$"
)


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _as_bytes(password: str | bytes) -> bytes:
    if isinstance(password, bytes):
        return password
    return password.encode("utf-8", "surrogatepass")


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=length, maxmem=_MAX_MEMORY + 1024 * 1024)


def hash_password(password: str | bytes, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A new salted hash of ``password`` (UTF-8 if given as text)."""
    if not _params_ok(n, r, p):
        raise ValueError(f"unsupported scrypt parameters n={n}, r={r}, p={p}")
    salt = os.urandom(SALT_BYTES)
    key = _scrypt(_as_bytes(password), salt, n, r, p, KEY_BYTES)
    return f"$scrypt$n={n},r={r},p={p}${_b64encode(salt)}${_b64encode(key)}"


def _params_ok(n: int, r: int, p: int) -> bool:
    return (
        2 <= n <= _MAX_N
        and n & (n - 1) == 0
        and 1 <= r <= _MAX_R
        and 1 <= p <= _MAX_P
        and 128 * n * r <= _MAX_MEMORY
    )


def _parse(encoded: object) -> tuple[int, int, int, bytes, bytes] | None:
    if not isinstance(encoded, str) or len(encoded) > 400:
        return None
    match = _FORMAT.match(encoded.strip())
    if match is None:
        return None
    n, r, p = int(match["n"]), int(match["r"]), int(match["p"])
    if not _params_ok(n, r, p):
        return None
    try:
        salt = _b64decode(match["salt"])
        key = _b64decode(match["key"])
    except (binascii.Error, ValueError):
        return None
    if len(salt) < 8 or not 16 <= len(key) <= 64:
        return None
    return n, r, p, salt, key


def is_valid_hash(encoded: object) -> bool:
    """Is ``encoded`` a hash ``verify_password`` can check?  (For configuration checks.)"""
    return _parse(encoded) is not None


def verify_password(password: str | bytes, encoded: str) -> bool:
    """Does ``password`` match the hash ``encoded``?  Never raises.

    A malformed hash costs a dummy verification and returns False.
    """
    parsed = _parse(encoded)
    if parsed is None:
        dummy_verify(password)
        return False
    n, r, p, salt, key = parsed
    try:
        candidate = _scrypt(_as_bytes(password), salt, n, r, p, len(key))
    except (ValueError, MemoryError, TypeError):  # pragma: no cover - bounds are checked above
        return False
    return hmac.compare_digest(candidate, key)


_DUMMY_SALT = os.urandom(SALT_BYTES)


def dummy_verify(password: str | bytes) -> bool:
    """Spend what ``verify_password`` spends on a default-parameter hash; always False."""
    try:
        candidate = _scrypt(_as_bytes(password), _DUMMY_SALT, SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_BYTES)
    except (ValueError, TypeError):  # pragma: no cover
        candidate = b""
    hmac.compare_digest(candidate, bytes(KEY_BYTES))
    return False


def bench(rounds: int = 10) -> dict[str, float]:
    """Milliseconds per verification with the default parameters (median and minimum)."""
    encoded = hash_password("benchmark")
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        verify_password("benchmark", encoded)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"median_ms": times[len(times) // 2], "min_ms": times[0], "max_ms": times[-1]}


# -- dirgw passwd ---------------------------------------------------------------

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class _Usage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports through the given streams instead of exiting."""

    def __init__(self, stdout: IO[str], stderr: IO[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self._out = stdout
        self._err = stderr

    def print_help(self, file=None) -> None:  # noqa: ARG002
        self._out.write(self.format_help())

    def exit(self, status: int = 0, message: str | None = None):
        if message:
            self._err.write(message)
        raise _Usage(status)

    def error(self, message: str):
        self._err.write(self.format_usage())
        self._err.write(f"{self.prog}: error: {message}\n")
        raise _Usage(EXIT_USAGE)


def passwd_main(
    argv: Sequence[str],
    stdin: IO[str],
    stdout: IO[str],
    stderr: IO[str],
    getpass: Callable[[str], str] | None = None,
) -> int:
    """``dirgw passwd [--stdin]``: print a password hash for ``[[users]] password_hash``."""
    parser = _Parser(
        stdout,
        stderr,
        prog="dirgw passwd",
        description="Print a password hash to paste into [[users]] password_hash.",
    )
    parser.add_argument(
        "--stdin",
        action="store_true",
        help="read the password from the first line of standard input (automatic when it is not a terminal)",
    )
    try:
        args = parser.parse_args(list(argv))
    except _Usage as e:
        return int(e.args[0]) if e.args else EXIT_USAGE

    interactive = not args.stdin and _isatty(stdin)
    if interactive:
        ask = getpass or (lambda prompt: _getpass.getpass(prompt, stream=stderr))
        try:
            first = ask("Password: ")
            second = ask("Repeat password: ")
        except (EOFError, KeyboardInterrupt):
            stderr.write("\ndirgw passwd: cancelled\n")
            return EXIT_FAILURE
        if first != second:
            stderr.write("dirgw passwd: the passwords do not match\n")
            return EXIT_FAILURE
        password = first
    else:
        line = stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if password.endswith("\r"):
            password = password[:-1]
    if not password:
        stderr.write("dirgw passwd: the password is empty\n")
        return EXIT_FAILURE
    stdout.write(hash_password(password) + "\n")
    return EXIT_OK


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def main(argv: Sequence[str], stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    """Entry point in the shape ``gateway.cli`` delegates to: ``main(argv, stdout, stderr)``."""
    return passwd_main(argv, sys.stdin, stdout or sys.stdout, stderr or sys.stderr)
