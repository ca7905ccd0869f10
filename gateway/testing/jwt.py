"""The little JWT the emulator needs: HS256 access tokens and RS256/PS256 client assertions.

Written against ``cryptography`` directly so the emulator depends on nothing msal happens to pull in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = ["JWTError", "b64url_encode", "b64url_decode", "encode_hs256", "decode_hs256",
           "split_unverified", "verify_rsa_signature"]


class JWTError(ValueError):
    """A token that is malformed or whose signature does not verify."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    text = text.strip().rstrip("=")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as e:
        raise JWTError(f"bad base64url: {e}") from None


def _json_part(text: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(text))
    except (ValueError, UnicodeDecodeError) as e:
        raise JWTError(f"bad JSON part: {e}") from None
    if not isinstance(value, dict):
        raise JWTError("JWT part is not an object")
    return value


def encode_hs256(claims: dict[str, Any], key: bytes) -> str:
    """A compact HS256 JWT."""
    header = b64url_encode(json.dumps({"typ": "JWT", "alg": "HS256"}, separators=(",", ":")).encode())
    body = b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{body}".encode("ascii")
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return f"{header}.{body}.{b64url_encode(signature)}"


def decode_hs256(token: str, key: bytes) -> dict[str, Any]:
    """Claims of an HS256 JWT signed with ``key``; raises `JWTError` otherwise."""
    header, claims, signature, signing_input = split_unverified(token)
    if header.get("alg") != "HS256":
        raise JWTError("unexpected alg")
    expected = hmac.new(key, signing_input, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise JWTError("bad signature")
    return claims


def split_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """(header, claims, signature, signing input) of a compact JWS, unverified."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JWTError("a JWT has three parts")
    header = _json_part(parts[0])
    claims = _json_part(parts[1])
    signature = b64url_decode(parts[2])
    return header, claims, signature, f"{parts[0]}.{parts[1]}".encode("ascii")


def verify_rsa_signature(
    certificate: x509.Certificate, alg: str, signing_input: bytes, signature: bytes
) -> None:
    """Check an RS256 or PS256 signature made with the key of ``certificate``."""
    public = certificate.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise JWTError("certificate key is not RSA")
    if alg == "RS256":
        pad: padding.AsymmetricPadding = padding.PKCS1v15()
    elif alg == "PS256":
        pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
    else:
        raise JWTError(f"unsupported alg {alg!r}")
    try:
        public.verify(signature, signing_input, pad, hashes.SHA256())
    except InvalidSignature:
        raise JWTError("signature does not verify") from None
