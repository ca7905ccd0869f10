"""TLS: loading and checking the certificate and key, reload, TLS 1.2 minimum, LDAPS and StartTLS.

The handshake tests run the real reactor (trial TestCase, which pytest runs as it is) with a
loopback listener and Python's ``ssl`` module as the client in a worker thread.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import ssl
import tempfile
import warnings

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from gateway.ops.tls import ReloadableTLS, TLSConfigError, load_identity, parse_ssl_endpoint
from gateway.testing.tls import ensure_server_files

# -- loading -------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path):
    return ensure_server_files(tmp_path / "tls")


def test_loads_a_matching_pair(files):
    tls = ReloadableTLS(str(files.server_cert), str(files.server_key))
    assert "CN=localhost" in tls.identity.describe()
    assert len(tls.identity.fingerprint) == 95
    assert tls.getContext() is not None


def test_a_chain_is_accepted(files, tmp_path):
    chain = tmp_path / "chain.pem"
    chain.write_bytes(files.server_cert.read_bytes() + files.ca_cert.read_bytes())
    tls = ReloadableTLS(str(chain), str(files.server_key))
    assert len(tls.identity.chain) == 2


def test_missing_files_name_the_file(files, tmp_path):
    with pytest.raises(TLSConfigError) as e:
        ReloadableTLS(str(tmp_path / "nope.pem"), str(files.server_key))
    assert e.value.path.endswith("nope.pem") and "certificate file not found" in e.value.reason
    with pytest.raises(TLSConfigError) as e:
        ReloadableTLS(str(files.server_cert), str(tmp_path / "nope.key"))
    assert e.value.path.endswith("nope.key") and "private key file not found" in e.value.reason
    with pytest.raises(TLSConfigError, match="is a directory"):
        ReloadableTLS(str(tmp_path), str(files.server_key))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_key(files):
    os.chmod(files.server_key, 0)
    with pytest.raises(TLSConfigError, match="not readable by this user"):
        ReloadableTLS(str(files.server_cert), str(files.server_key))


def test_swapped_or_garbage_files(files, tmp_path):
    with pytest.raises(TLSConfigError, match="looks like a private key") as e:
        ReloadableTLS(str(files.server_key), str(files.server_cert))
    assert e.value.path == str(files.server_key)
    with pytest.raises(TLSConfigError, match="looks like a certificate"):
        ReloadableTLS(str(files.server_cert), str(files.server_cert))
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    with pytest.raises(TLSConfigError, match="not a valid PEM certificate chain"):
        ReloadableTLS(str(garbage), str(files.server_key))


def test_mismatched_key_and_certificate(files, tmp_path):
    other = ensure_server_files(tmp_path / "other")
    with pytest.raises(TLSConfigError) as e:
        ReloadableTLS(str(files.server_cert), str(other.server_key))
    assert e.value.path == str(other.server_key)
    assert "does not belong to the certificate" in e.value.reason
    # the CA first in the chain: the key belongs to the second certificate, not the first
    chain = tmp_path / "wrong-order.pem"
    chain.write_bytes(files.ca_cert.read_bytes() + files.server_cert.read_bytes())
    with pytest.raises(TLSConfigError, match="first certificate in the chain"):
        ReloadableTLS(str(chain), str(files.server_key))


def test_encrypted_key(files, tmp_path):
    key = serialization.load_pem_private_key(files.server_key.read_bytes(), None)
    encrypted = tmp_path / "enc.key"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(TLSConfigError, match="encrypted"):
        ReloadableTLS(str(files.server_cert), str(encrypted))


def test_reload_swaps_the_identity_and_keeps_the_old_one_on_errors(files, tmp_path):
    tls = ReloadableTLS(str(files.server_cert), str(files.server_key))
    first = tls.identity.fingerprint
    assert tls.reload() is False  # same files
    ensure_server_files(files.server_cert.parent)  # a new certificate and key in the same place
    assert tls.reload() is True
    second = tls.identity.fingerprint
    assert second != first
    # a half-finished renewal: new key, old certificate -> refused, the running identity stays
    new_key = ec.generate_private_key(ec.SECP256R1())
    files.server_key.write_bytes(new_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    with pytest.raises(TLSConfigError, match="does not belong"):
        tls.reload()
    assert tls.identity.fingerprint == second


@pytest.mark.parametrize(
    "description, expected",
    [
        ("ssl:636", {"port": 636, "interface": "", "backlog": 50}),
        ("ssl:port=636:interface=0.0.0.0", {"port": 636, "interface": "0.0.0.0", "backlog": 50}),
        ("ssl:636:interface=\\:\\:1:backlog=5", {"port": 636, "interface": "::1", "backlog": 5}),
    ],
)
def test_parse_ssl_endpoint(description, expected):
    assert parse_ssl_endpoint(description) == expected


@pytest.mark.parametrize("description", ["tcp:389", "ssl:636:privateKey=k.pem", "ssl:", "ssl:x", "ssl:636:foo=1"])
def test_parse_ssl_endpoint_refuses(description):
    with pytest.raises(ValueError):
        parse_ssl_endpoint(description)


def test_load_identity_directly(files):
    identity = load_identity(str(files.server_cert), str(files.server_key))
    assert identity.certificate.subject.rfc4514_string() == "CN=localhost"


# -- handshakes on a real loopback listener ---------------------------------------------


class _Echo(Protocol):
    """Echoes lines; ``STARTTLS\\n`` answers ``OK\\n`` and switches to TLS (like LDAP's StartTLS)."""

    def connectionMade(self):
        self.factory.open.append(self)
        self.lost = Deferred()

    def dataReceived(self, data):
        if data == b"STARTTLS\n" and self.factory.starttls is not None:
            self.transport.write(b"OK\n")
            self.transport.startTLS(self.factory.starttls)
            return
        self.transport.write(data)

    def connectionLost(self, reason):
        self.factory.open.remove(self)
        self.lost.callback(None)


class _EchoFactory(Factory):
    protocol = _Echo
    noisy = False

    def __init__(self, starttls=None):
        self.open = []
        self.starttls = starttls


def _client_context(ca, version_max=None, version_min=None, legacy=False):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(ca))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if version_min is not None:
            context.minimum_version = version_min
        if version_max is not None:
            context.maximum_version = version_max
    if legacy:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def _tls_echo(port, context, payload=b"hello\n", hold=None):
    """Connect, handshake, echo ``payload``; returns (TLS version, server cert SHA-256, socket or None)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn = context.wrap_socket(raw, server_hostname="localhost")
    conn.sendall(payload)
    echoed = conn.recv(100)
    assert echoed == payload, echoed
    result = (conn.version(), hashlib.sha256(conn.getpeercert(binary_form=True)).hexdigest())
    if hold:
        return result + (conn,)
    conn.close()
    return result + (None,)


def _starttls_echo(port, context):
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    raw.sendall(b"STARTTLS\n")
    assert raw.recv(3) == b"OK\n"
    conn = context.wrap_socket(raw, server_hostname="127.0.0.1")
    conn.sendall(b"after starttls\n")
    echoed = conn.recv(100)
    version = conn.version()
    conn.close()
    return version, echoed


def _local_client_speaks_tls11(files) -> bool:
    """Can this machine's OpenSSL do a TLS 1.1 handshake at all (in memory, both ends permissive)?"""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(files.server_cert), str(files.server_key))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            server.minimum_version = ssl.TLSVersion.TLSv1_1
            server.set_ciphers("DEFAULT:@SECLEVEL=0")
            client = _client_context(files.ca_cert, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1, legacy=True)
        except (ValueError, ssl.SSLError):
            return False
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    s = server.wrap_bio(s_in, s_out, server_side=True)
    try:
        for _ in range(20):
            done = 0
            for end in (c, s):
                try:
                    end.do_handshake()
                    done += 1
                except ssl.SSLWantReadError:
                    pass
            s_in.write(c_out.read())
            c_in.write(s_out.read())
            if done == 2:
                return c.version() == "TLSv1.1"
    except ssl.SSLError:
        return False
    return False


class HandshakeTests(TestCase):
    timeout = 20

    def setUp(self):
        directory = tempfile.mkdtemp(prefix="dirgw-tls-")  # not trial's mktemp: that writes under the cwd
        self.addCleanup(shutil.rmtree, directory, True)
        self.files = ensure_server_files(directory)
        self.tls = ReloadableTLS(str(self.files.server_cert), str(self.files.server_key))
        self.factory = _EchoFactory(starttls=self.tls)

    @inlineCallbacks
    def listen(self, wrapped=False):
        if wrapped:
            port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(self.tls.wrap(self.factory))
        else:
            port = yield self.tls.endpoint(reactor, "ssl:0:interface=127.0.0.1").listen(self.factory)
        self.addCleanup(self._close, port)
        return port.getHost().port

    @inlineCallbacks
    def plain_listen(self):
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(self.factory)
        self.addCleanup(self._close, port)
        return port.getHost().port

    def _close(self, port):
        waits = [p.lost for p in list(self.factory.open)]
        for p in list(self.factory.open):
            p.transport.abortConnection()
        return DeferredList([port.stopListening(), *waits])

    @inlineCallbacks
    def test_tls12_and_tls13_accepted(self):
        port = yield self.listen()
        v12 = _client_context(self.files.ca_cert, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)
        version, _, _ = yield deferToThread(_tls_echo, port, v12)
        self.assertEqual(version, "TLSv1.2")
        version, _, _ = yield deferToThread(_tls_echo, port, _client_context(self.files.ca_cert))
        self.assertEqual(version, "TLSv1.3")

    @inlineCallbacks
    def test_tls11_refused(self):
        if not _local_client_speaks_tls11(self.files):
            raise self.skipTest("this OpenSSL cannot do TLS 1.1 even when both ends allow it")
        port = yield self.listen()
        v11 = _client_context(self.files.ca_cert, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1, legacy=True)
        try:
            yield deferToThread(_tls_echo, port, v11)
        except ssl.SSLError as e:
            self.assertIn("version", str(e).lower())
        else:
            self.fail("a TLS 1.1 client completed a handshake")

    @inlineCallbacks
    def test_wrapped_factory_on_a_tcp_endpoint(self):
        port = yield self.listen(wrapped=True)
        version, _, _ = yield deferToThread(_tls_echo, port, _client_context(self.files.ca_cert))
        self.assertEqual(version, "TLSv1.3")

    @inlineCallbacks
    def test_starttls_on_a_plain_listener(self):
        port = yield self.plain_listen()
        version, echoed = yield deferToThread(_starttls_echo, port, _client_context(self.files.ca_cert))
        self.assertEqual((version, echoed), ("TLSv1.3", b"after starttls\n"))
        v11 = _client_context(self.files.ca_cert, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1, legacy=True)
        if _local_client_speaks_tls11(self.files):
            with self.assertRaises(ssl.SSLError):
                yield deferToThread(_starttls_echo, port, v11)

    @inlineCallbacks
    def test_reload_new_connections_get_the_new_certificate_old_ones_keep_going(self):
        port = yield self.listen()
        context = _client_context(self.files.ca_cert)
        _, before, held = yield deferToThread(_tls_echo, port, context, b"one\n", True)
        try:
            ensure_server_files(self.files.server_cert.parent)  # renewed certificate, same paths
            self.assertTrue(self.tls.reload())
            _, after, _ = yield deferToThread(_tls_echo, port, context)
            self.assertNotEqual(before, after)
            expected = hashlib.sha256(
                ssl.PEM_cert_to_DER_cert(self.files.server_cert.read_text())).hexdigest()
            self.assertEqual(after, expected)

            def still_alive():
                held.sendall(b"two\n")
                return held.recv(100)

            self.assertEqual((yield deferToThread(still_alive)), b"two\n")
        finally:
            held.close()

    @inlineCallbacks
    def test_a_failed_reload_keeps_serving(self):
        port = yield self.listen()
        shutil.copy(self.files.ca_cert, self.files.server_cert)  # wrong certificate for the key
        with self.assertRaises(TLSConfigError):
            self.tls.reload()
        version, _, _ = yield deferToThread(_tls_echo, port, _client_context(self.files.ca_cert))
        self.assertEqual(version, "TLSv1.3")
