"""The reactor ``dirgw serve`` installs dispatches events directly and survives a failing handler."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from gateway.reactor import _reactor_class

pytestmark = pytest.mark.skipif(_reactor_class() is None, reason="no epoll reactor here")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)


def test_install_makes_it_the_reactor_and_serves_tcp():
    out = _run("""
        from gateway.reactor import install
        assert install() is True
        from twisted.internet import reactor
        from twisted.internet.protocol import Factory, Protocol
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
        class Echo(Protocol):
            def dataReceived(self, data):
                self.transport.write(data.upper())
        port = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
        class Client(Protocol):
            def connectionMade(self):
                self.transport.write(b"hello")
            def dataReceived(self, data):
                print(type(reactor).__name__, data.decode())
                reactor.stop()
        d = connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Client())
        reactor.callLater(10, reactor.stop)
        reactor.run()
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["DirectEPollReactor", "HELLO"]


def test_a_handler_that_raises_is_logged_and_the_reactor_goes_on():
    out = _run("""
        import sys
        from gateway.reactor import install
        install()
        from twisted.internet import reactor
        from twisted.python import log
        log.startLogging(sys.stdout, setStdout=False)

        class Broken:
            def fileno(self):
                return rfd
            def doRead(self):
                raise RuntimeError("broken descriptor")
            def logPrefix(self):
                return "broken"
        import os
        rfd, wfd = os.pipe()
        os.write(wfd, b"x")
        broken = Broken()
        calls = []

        def failing(selectable, fd, event):  # _doReadOrWrite catches doRead's errors: fail around it
            calls.append(fd)
            if len(calls) == 3:
                reactor.removeReader(broken)
                reactor.callLater(0, finish)
            raise RuntimeError("handler failed")

        def finish():
            print("STILL RUNNING after", len(calls), "failures")
            reactor.stop()
        reactor._doReadOrWrite = failing
        reactor.addReader(broken)
        reactor.run()
    """)
    assert out.returncode == 0, out.stderr
    assert "handler failed" in out.stdout
    assert "STILL RUNNING after 3 failures" in out.stdout


def test_install_declines_when_a_reactor_is_installed_already():
    out = _run("""
        from twisted.internet import reactor
        from gateway.reactor import install
        print(install(), type(reactor).__name__)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "False"
