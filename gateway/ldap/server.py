"""The LDAP protocol adapter: ldaptor's LDAPServer with a fast search path.

Requests are framed by our own bounded BER reader.  SearchRequests, the
hot path, are decoded and answered with our codec (``gateway.ldap.ber``);
every other operation is decoded by ldaptor and dispatched to the
``handle_*`` methods below.  The directory is read-only: every write is
refused with unwillingToPerform (53).
"""

from __future__ import annotations

import hashlib
import time

from ldaptor.protocols import pureber, pureldap
from ldaptor.protocols.ldap import ldaperrors
from ldaptor.protocols.ldap.ldapserver import LDAPServer
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.protocol import ServerFactory
from twisted.internet.tcp import Server
from twisted.internet.task import deferLater
from twisted.logger import Logger

from gateway.ldap import ber
from gateway.ldap.directory import (
    MANAGE_DSA_IT_OID,
    PAGED_RESULTS_OID,
    SORT_REQUEST_OID,
    SORT_RESPONSE_OID,
    Directory,
)
from gateway.ldap.evaluate import AttributeView, evaluate
from gateway.ldap.filter import Equality, to_text
from gateway.ldap.messages import SCOPE_BASE, Control, SearchRequest
from gateway.ldap.schema import canonical_attribute, normalize_dn
from gateway.ldap.search import QueryPhones, ResultEntry, SearchResult, Shape, all_visible
from gateway.text import fold

__all__ = ["LDAPConnection", "LDAPServerFactory"]

OP_SEARCH = 0x63
#: Requests of one connection answered in one reactor turn, so one client cannot starve the others.
REQUESTS_PER_TURN = 16
OP_SEARCH_DONE = 0x65
NOTICE_OF_DISCONNECTION = "1.3.6.1.4.1.1466.20036"
_UNDERSTOOD_CONTROLS = {PAGED_RESULTS_OID, SORT_REQUEST_OID, MANAGE_DSA_IT_OID}


class LDAPConnection(LDAPServer):
    """One client connection."""

    log = Logger()

    def __init__(self) -> None:
        super().__init__()
        self._buffer = bytearray()
        self.peer = "?"
        self.secure = False  # TLS in force (an ssl: listener, or after StartTLS)

    @property
    def directory(self) -> Directory:
        return self.factory.directory

    # -- framing ---------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        if self.factory.metrics is not None:
            self.factory.metrics.connection_opened()
            self._metered = True
        peer = self.transport.getPeer()
        self.peer_host = getattr(peer, "host", None)
        self.peer = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        self.secure = _is_tls(self.transport)
        self.user = None
        self.in_flight = 0
        self._paused = False
        self._idle = None
        factory = self.factory
        policy = factory.policy
        if policy is not None and not policy.may_connect(self.peer_host, factory.listener):
            self.log.info("LDAP connection from {peer} refused: address not allowed", peer=self.peer)
            self._refuse()
            return
        refusal = factory.admit(self)
        if refusal:
            self.log.warn("LDAP connection from {peer} refused: {why}", peer=self.peer, why=refusal)
            self._refuse()
            return
        self._counted = True
        # back-pressure: a client that does not read its answers stops being read
        self.transport.registerProducer(self, True)
        self._arm_idle()

    def _refuse(self) -> None:
        self.connected = 0
        self.transport.abortConnection()

    _metered = False

    def connectionLost(self, reason=None) -> None:
        if self._metered:
            self._metered = False
            self.factory.metrics.connection_closed()
        if getattr(self, "_counted", False):
            self._counted = False
            self.factory.release(self)
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None
        super().connectionLost(reason)

    # IPushProducer: the transport calls these when its write buffer fills and drains
    _reading_paused = False
    _scheduled = None

    def pauseProducing(self) -> None:
        if not self._paused:
            self._paused = True
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        if self._paused:
            self._paused = False
            self._reading_paused = False
            self.transport.resumeProducing()
            self._schedule_processing()

    def stopProducing(self) -> None:
        self.transport.abortConnection()

    _last_active = 0.0

    def _arm_idle(self) -> None:
        """Note activity; the idle timer, when it fires, looks at the last one (cheaper than
        moving a timer for every request)."""
        clock = self.factory.clock
        if clock is None:
            return
        self._last_active = clock.seconds()
        if self._idle is None or not self._idle.active():
            timeout = self.factory.limits.idle_timeout
            if timeout:
                self._idle = clock.callLater(timeout, self._idle_expired)

    def _idle_expired(self) -> None:
        self._idle = None
        timeout = self.factory.limits.idle_timeout
        if not timeout:
            return
        quiet = self.factory.clock.seconds() - self._last_active
        if quiet < timeout:
            self._idle = self.factory.clock.callLater(timeout - quiet, self._idle_expired)
            return
        self.log.info("LDAP connection from {peer} closed after {t:g}s idle", peer=self.peer,
                      t=self.factory.limits.idle_timeout)
        if self.connected:
            # notice of disconnection: unavailable (52)
            self.transport.write(ber.encode_result(0, 0x78, 52, message="idle timeout",
                                                   response_name=NOTICE_OF_DISCONNECTION))
            self.transport.loseConnection()
        self.connected = 0

    def dataReceived(self, data: bytes) -> None:
        self._arm_idle()
        self._buffer += data
        self._process()

    def _process(self) -> None:
        """Answer the complete requests in the buffer, a few per reactor turn.

        While the client does not read its answers (the transport paused us),
        nothing more is answered; buffered requests wait for resumeProducing.
        A large backlog of unanswered requests stops reading from the client.
        """
        self._scheduled = None
        limits = self.factory.limits
        handled = 0
        while self._buffer and self.connected and not self._paused:
            if handled >= REQUESTS_PER_TURN and self.factory.clock is not None:
                self._schedule_processing()  # the rest after other connections had their turn
                break
            try:
                length = ber.frame(self._buffer, limits.max_pdu_size)
            except ber.PDUTooLarge as e:
                self._protocol_failure(f"request too large: {e}")
                return
            except ber.BERError as e:
                self._protocol_failure(f"malformed request: {e}")
                return
            if length is None:
                break
            pdu = bytes(self._buffer[:length])
            del self._buffer[:length]
            self._dispatch(pdu)
            handled += 1
        if self.connected and self.transport is not None:
            backlog = len(self._buffer) > self.factory.limits.max_pdu_size
            if backlog and not self._reading_paused:
                self._reading_paused = True
                self.transport.pauseProducing()
            elif not backlog and self._reading_paused and not self._paused:
                self._reading_paused = False
                self.transport.resumeProducing()

    def _schedule_processing(self) -> None:
        if getattr(self, "_scheduled", None) is None and self.factory.clock is not None:
            self._scheduled = self.factory.clock.callLater(0, self._process)

    def _dispatch(self, pdu: bytes) -> None:
        try:
            message = ber.decode_message(pdu)
        except ber.BERError as e:
            self._protocol_failure(f"malformed message: {e}")
            return
        if message.message_id == 0:
            self._protocol_failure("message ID 0 is reserved for unsolicited notifications (RFC 4511 4.1.1.1)")
            return
        if message.op_tag == OP_SEARCH:
            self._search(message)
            return
        try:
            ber.check_structure(message.op)
            ber.check_shape(message.op_tag, message.op)
        except ber.BERError as e:
            self._protocol_failure(f"malformed {message.op_tag:#x} request (message {message.message_id}): {e}")
            return
        try:
            decoded, _ = pureber.berDecodeObject(self.berdecoder, pdu)
        except Exception as e:  # ldaptor raises assorted errors on bad input
            self._protocol_failure(f"malformed {message.op_tag:#x} request: {e}")
            return
        if decoded is None or not isinstance(getattr(decoded, "value", None), pureldap.LDAPProtocolRequest):
            self._protocol_failure("not an LDAP request")
            return
        metrics = self.factory.metrics
        if metrics is not None:
            from gateway.ops.metrics import request_op

            metrics.request(request_op(decoded.value))
        if self.factory.limits.require_tls and not self.secure and not _allowed_before_tls(decoded.value):
            self._refuse_insecure(decoded)
            return
        self.handle(decoded)

    def _refuse_insecure(self, decoded) -> None:
        """require_tls: only StartTLS, Unbind and Abandon before TLS; the rest gets confidentialityRequired."""
        request = decoded.value
        name = type(request).__name__
        response_class = getattr(self, "fail_" + name, None)
        message = "TLS is required: use StartTLS or ldaps://"
        if response_class is None:
            response = pureldap.LDAPExtendedResponse(resultCode=13, errorMessage=message)
        else:
            response = response_class(resultCode=13, errorMessage=message)
        self.queue(decoded.id, response)

    def _protocol_failure(self, reason: str) -> None:
        self.log.warn("LDAP client {peer} sent bad data: {reason}; closing", peer=self.peer, reason=reason)
        if self.connected and self.transport is not None:
            self.transport.write(
                ber.encode_result(
                    0, 0x78, 2, message="protocol error: " + reason[:200], response_name=NOTICE_OF_DISCONNECTION
                )
            )
            self.transport.loseConnection()
        self.connected = 0
        self._buffer = bytearray()

    # -- search (fast path) ------------------------------------------------

    def _search(self, message) -> None:
        mid = message.message_id
        limits = self.factory.limits
        prepared = self.factory.prepared
        known = None if message.controls else prepared.get(message.op, limits)
        if known is not None:
            request, shape = known
        else:
            try:
                request = ber.decode_search(
                    message.op, max_depth=limits.max_filter_depth, max_items=limits.max_filter_items,
                    controls=message.controls,
                )
                shape = Shape(request.filter)
            except ber.FilterTooComplex as e:
                self._write(ber.encode_result(mid, OP_SEARCH_DONE, 11, message=f"filter too complex: {e}"))
                return
            except ber.BERError as e:
                # RFC 4511 4.1.1: wrong encoding structures get a Notice of Disconnection and the end
                self._protocol_failure(f"malformed search request (message {mid}): {e}")
                return
            if not message.controls:
                prepared.put(message.op, limits, (request, shape))
        for control in message.controls:
            if control.critical and control.oid not in _UNDERSTOOD_CONTROLS:
                self._write(
                    ber.encode_result(mid, OP_SEARCH_DONE, 12, message=f"unsupported critical control {control.oid}")
                )
                return
        if self.factory.limits.require_tls and not self.secure:
            self._write(ber.encode_result(mid, OP_SEARCH_DONE, 13, message="TLS is required: use StartTLS or ldaps://"))
            return
        if not self.may_search():
            self._write(ber.encode_result(mid, OP_SEARCH_DONE, 50, message="anonymous access is not allowed"))
            return
        started = time.perf_counter()
        if request.base.strip() == "" and request.scope == SCOPE_BASE:
            self._root_dse(mid, request)
            kind = "other"
        else:
            policy = self.factory.policy
            visibility = policy.visible_sources(self.user if self.bound else None) if policy is not None else None
            visible = all_visible if visibility is None else self.visible
            result = self.directory.search(request, visible=visible, visibility=visibility, shape=shape)
            self._send_result(mid, request, result)
            kind = result.kind
        metrics = self.factory.metrics
        if metrics is not None:
            metrics.search_done(kind, time.perf_counter() - started)

    def _send_result(self, mid: int, request: SearchRequest, result: SearchResult) -> None:
        if not request.controls and not request.types_only:
            # the usual answer: entries encoded already, no controls to honour
            ops = [e.wire for e in result.entries]
            if None not in ops:
                done = ber.search_done_op(result.result_code, result.matched_dn, result.message)
                self._write(ber.encode_search_answer(mid, ops, done))
                return
        entries = list(result.entries)
        controls: list[Control] = []
        code = result.result_code
        message = result.message
        sort = _control(request, SORT_REQUEST_OID)
        if sort is not None:
            try:
                keys = ber.decode_sort_value(sort.value or b"")
                entries = _sorted_entries(entries, keys)
                controls.append(Control(SORT_RESPONSE_OID, False, ber.encode_sort_response_value(0)))
            except ber.BERError:
                controls.append(Control(SORT_RESPONSE_OID, False, ber.encode_sort_response_value(2)))
        paged = _control(request, PAGED_RESULTS_OID)
        if paged is not None:
            try:
                size, cookie = ber.decode_paged_results_value(paged.value or b"")
            except ber.BERError:
                self._write(ber.encode_result(mid, OP_SEARCH_DONE, 2, message="malformed paged results control"))
                return
            fingerprint = _fingerprint(request)
            offset = 0
            if cookie:
                try:
                    text = cookie.decode("ascii")
                    stamp, _, number = text.partition(":")
                    if stamp != fingerprint:
                        raise ValueError
                    offset = int(number)
                except ValueError:
                    self._write(ber.encode_result(mid, OP_SEARCH_DONE, 53, message="invalid paged results cookie"))
                    return
            if size == 0:
                entries, next_cookie = [], b""
            else:
                end = offset + size
                next_cookie = f"{fingerprint}:{end}".encode() if end < len(entries) else b""
                entries = entries[offset:end]
            if next_cookie:
                code, message = 0, ""
            controls.append(Control(PAGED_RESULTS_OID, False, ber.encode_paged_results_value(0, next_cookie)))
        types_only = request.types_only
        out = [
            ber.wrap_message(mid, e.wire) if e.wire is not None and not types_only
            else ber.encode_search_entry(mid, e.dn, e.attributes, types_only)
            for e in entries
        ]
        out.append(
            ber.encode_result(
                mid, OP_SEARCH_DONE, code, matched_dn=result.matched_dn, message=message, controls=tuple(controls)
            )
        )
        self._write(b"".join(out))

    def _root_dse(self, mid: int, request: SearchRequest) -> None:
        attributes = self.directory.root_dse()
        view = AttributeView(attributes)
        phones = QueryPhones(self.directory.index, self.directory.settings.numbers)
        if evaluate(request.filter, view, phones) is not True:
            self._write(ber.encode_result(mid, OP_SEARCH_DONE, 0))
            return
        wanted = [a.lower() for a in request.attributes if a not in ("1.1",)]
        if wanted and not {"*", "+"} & set(wanted):
            attributes = [(a, v) for a, v in attributes if a.lower() in wanted]
        entry = ber.encode_search_entry(mid, "", [(a, v) for a, v in attributes if v], request.types_only)
        self._write(entry + ber.encode_result(mid, OP_SEARCH_DONE, 0))

    def _write(self, data: bytes) -> None:
        if self.connected and self.transport is not None:
            write_through(self.transport, data)

    # -- access ------------------------------------------------------------

    bound = False
    user = None
    _visible = None

    def may_search(self) -> bool:
        if self.bound:
            return True
        policy = self.factory.policy
        if policy is None:
            return self.directory.anonymous
        return policy.anonymous_allowed(self.factory.listener)

    def visible(self, source: str) -> bool:
        policy = self.factory.policy
        if policy is None:
            return True
        sources = policy.visible_sources(self.user if self.bound else None)
        return sources is None or source in sources

    # -- other operations (decoded by ldaptor) -----------------------------

    def handle_LDAPBindRequest(self, request, controls, reply):
        if request.version not in (2, 3):
            return pureldap.LDAPBindResponse(resultCode=ldaperrors.LDAPProtocolError.resultCode,
                                             errorMessage="LDAP version 2 or 3 only")
        if request.sasl:
            return pureldap.LDAPBindResponse(
                resultCode=ldaperrors.LDAPAuthMethodNotSupported.resultCode,
                errorMessage="SASL is not supported; use a simple bind",
            )
        name = request.dn.decode("utf-8", "replace") if isinstance(request.dn, bytes) else str(request.dn)
        password = request.auth if isinstance(request.auth, bytes) else str(request.auth or "").encode()
        self.bound = False
        self.user = None
        if not password:
            # anonymous (or unauthenticated: a name without a password, RFC 4513 5.1.2)
            if self.may_search():
                return pureldap.LDAPBindResponse(resultCode=0)
            return pureldap.LDAPBindResponse(resultCode=ldaperrors.LDAPInvalidCredentials.resultCode)
        policy = self.factory.policy
        if policy is None or not policy.users:
            self.log.info("LDAP bind refused for {name!r} from {peer}: no users configured", name=name, peer=self.peer)
            return pureldap.LDAPBindResponse(resultCode=ldaperrors.LDAPInvalidCredentials.resultCode)
        return Deferred.fromCoroutine(self._simple_bind(name, password))

    async def _simple_bind(self, name: str, password: bytes):
        factory = self.factory
        if self.in_flight >= factory.limits.max_requests_in_flight:
            return pureldap.LDAPBindResponse(resultCode=51, errorMessage="too many requests in flight")
        self.in_flight += 1
        try:
            return await self._simple_bind_now(name, password)
        finally:
            self.in_flight -= 1

    async def _simple_bind_now(self, name: str, password: bytes):
        factory = self.factory
        throttle = factory.throttle
        host = self.peer_host or "?"
        delay = throttle.admit(host, factory.clock.seconds()) if throttle is not None else 0.0
        if delay is None:
            self.log.info("LDAP bind from {peer} refused at once: too many failed binds", peer=self.peer)
            return pureldap.LDAPBindResponse(resultCode=ldaperrors.LDAPInvalidCredentials.resultCode)
        if delay > 0:
            await deferLater(factory.clock, delay, lambda: None)
        outcome = await factory.check_bind(name, password, host)
        if outcome.ok:
            if throttle is not None:
                throttle.record_success(host, factory.clock.seconds())
            self.bound = True
            self.user = outcome.user
            return pureldap.LDAPBindResponse(resultCode=0)
        if throttle is not None:
            throttle.record_failure(host, factory.clock.seconds())
        self.log.info("LDAP bind refused for {name!r} from {peer}: {reason}", name=name, peer=self.peer,
                      reason=outcome.reason)
        return pureldap.LDAPBindResponse(resultCode=ldaperrors.LDAPInvalidCredentials.resultCode)

    def handle_LDAPUnbindRequest(self, request, controls, reply):
        # nothing after an Unbind is answered, even requests already in the buffer
        self.connected = 0
        self._buffer = bytearray()
        self.transport.loseConnection()

    def handle_LDAPAbandonRequest(self, request, controls, reply):
        # searches are answered synchronously; there is never anything to abandon
        return None

    def handle_LDAPCompareRequest(self, request, controls, reply):
        if not self.may_search():
            return pureldap.LDAPCompareResponse(resultCode=50)
        try:
            dn = request.entry.decode("utf-8", "replace") if isinstance(request.entry, bytes) else str(request.entry)
            attr = request.ava.attributeDesc.value
            value = request.ava.assertionValue.value
        except AttributeError:  # ldaptor accepted a CompareRequest of another shape
            return pureldap.LDAPCompareResponse(resultCode=ldaperrors.LDAPProtocolError.resultCode,
                                                errorMessage="malformed compare request")
        attr = attr.decode("utf-8", "replace") if isinstance(attr, bytes) else attr
        value = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        try:
            parts = normalize_dn(dn)
        except ValueError:
            return pureldap.LDAPCompareResponse(resultCode=34)
        settings = self.directory.settings
        base = normalize_dn(settings.base_dn)
        entry = None
        if len(parts) == len(base) + 1 and parts[1:] == base and parts[0][0] == "uid":
            entry = self.directory.index.by_uid(parts[0][1])
        if entry is None or not self.visible(entry.contact.source):
            return pureldap.LDAPCompareResponse(resultCode=32)
        phones = QueryPhones(self.directory.index, settings.numbers)
        matched = evaluate(Equality(attr, value), entry, phones)
        if matched is None:
            return pureldap.LDAPCompareResponse(resultCode=16)  # noSuchAttribute
        return pureldap.LDAPCompareResponse(resultCode=6 if matched else 5)

    def _refuse_write(self, response_class):
        return response_class(
            resultCode=ldaperrors.LDAPUnwillingToPerform.resultCode, errorMessage="this directory is read-only"
        )

    def handle_LDAPAddRequest(self, request, controls, reply):
        return self._refuse_write(pureldap.LDAPAddResponse)

    def handle_LDAPDelRequest(self, request, controls, reply):
        return self._refuse_write(pureldap.LDAPDelResponse)

    def handle_LDAPModifyRequest(self, request, controls, reply):
        return self._refuse_write(pureldap.LDAPModifyResponse)

    def handle_LDAPModifyDNRequest(self, request, controls, reply):
        return self._refuse_write(pureldap.LDAPModifyDNResponse)

    def handle_LDAPExtendedRequest(self, request, controls, reply):
        name = request.requestName
        name = name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)
        if name == "1.3.6.1.4.1.1466.20037":
            return self.handle_LDAPStartTLSRequest(request, controls, reply)
        if name == "1.3.6.1.4.1.4203.1.11.3":  # Who am I?
            return pureldap.LDAPExtendedResponse(resultCode=0, response=b"")
        if name == "1.3.6.1.4.1.4203.1.11.1":  # password modify
            return pureldap.LDAPExtendedResponse(
                resultCode=ldaperrors.LDAPUnwillingToPerform.resultCode, errorMessage="this directory is read-only"
            )
        return pureldap.LDAPExtendedResponse(
            resultCode=ldaperrors.LDAPProtocolError.resultCode, errorMessage=f"unsupported extended operation {name}"
        )

    handle_LDAPPasswordModifyRequest = handle_LDAPExtendedRequest

    def handle_LDAPStartTLSRequest(self, request, controls, reply):
        tls = self.factory.tls
        if tls is None:
            return pureldap.LDAPStartTLSResponse(
                resultCode=ldaperrors.LDAPProtocolError.resultCode, errorMessage="StartTLS is not configured"
            )
        if self.secure:
            return pureldap.LDAPStartTLSResponse(
                resultCode=ldaperrors.LDAPOperationsError.resultCode, errorMessage="TLS is already in force"
            )
        # the answer goes out in the clear, then the connection switches to TLS
        reply(pureldap.LDAPStartTLSResponse(resultCode=0))
        self.transport.startTLS(tls)
        self.secure = True
        return None

    def handleUnknown(self, request, controls, callback):
        self.log.info("unsupported LDAP request {name} from {peer}", name=type(request).__name__, peer=self.peer)
        return pureldap.LDAPExtendedResponse(
            resultCode=ldaperrors.LDAPProtocolError.resultCode, errorMessage="unsupported request"
        )


def _control(request: SearchRequest, oid: str) -> Control | None:
    for control in request.controls:
        if control.oid == oid:
            return control
    return None


def _fingerprint(request: SearchRequest) -> str:
    text = "\x00".join(
        [request.base, str(request.scope), to_text(request.filter), ",".join(request.attributes)]
    )
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def _sorted_entries(entries: list[ResultEntry], keys) -> list[ResultEntry]:
    for attr, _rule, reverse in reversed(list(keys)):
        canon = canonical_attribute(attr) or attr.lower()

        def value(entry: ResultEntry, canon=canon) -> tuple[int, str]:
            for name, values in entry.attributes:
                if (canonical_attribute(name) or name.lower()) == canon and values:
                    return (0, fold(values[0]))
            return (1, "")

        entries = sorted(entries, key=value, reverse=reverse)
    return entries


def write_through(transport, data: bytes) -> None:
    """Write ``data`` now when the connection's send buffer is empty, else queue it as usual.

    Twisted queues every write and sends it when the reactor next finds the
    socket writable: two epoll_ctl calls and a reactor turn per answer, about
    a fifth of a caller-ID lookup's cost.  On a plain TCP connection with
    nothing queued, the socket takes the answer at once; what it does not take
    (a full kernel buffer, an error) goes to Twisted's queue, which keeps the
    order, back-pressure and error handling.  TLS connections always queue.
    """
    if (type(transport) is Server and not transport.TLS and not transport.dataBuffer
            and not transport._tempDataLen and transport.connected and not transport.disconnecting):
        try:
            sent = transport.socket.send(data)
        except OSError:  # EAGAIN, or an error Twisted's own write will report and act on
            sent = 0
        if sent >= len(data):
            return
        data = data[sent:]
    transport.write(data)


def _is_tls(transport) -> bool:
    from twisted.internet.interfaces import ISSLTransport

    while transport is not None:
        if ISSLTransport.providedBy(transport):
            return True
        transport = getattr(transport, "transport", None)
    return False


def _allowed_before_tls(request) -> bool:
    if isinstance(request, pureldap.LDAPExtendedRequest):
        name = request.requestName
        return (name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)) == "1.3.6.1.4.1.1466.20037"
    return isinstance(request, (pureldap.LDAPUnbindRequest, pureldap.LDAPAbandonRequest))


class LDAPServerFactory(ServerFactory):
    """Makes connections that answer from one Directory."""

    protocol = LDAPConnection
    noisy = False

    def __init__(self, directory: Directory, limits, metrics=None, tls=None, policy=None, listener=None,
                 throttle=None, clock=None, reactor=None) -> None:
        self.directory = directory
        self.limits = limits
        self.metrics = metrics
        self.tls = tls
        self.policy = policy
        self.listener = listener
        self.throttle = throttle
        self.clock = clock
        self._reactor = reactor
        self._bind_slots = DeferredSemaphore(2)  # scrypt: ~60 ms and 16 MiB each
        self.connections = ConnectionCount()
        self.prepared = PreparedSearches()

    def admit(self, connection) -> str | None:
        """None when a new connection may stay; else why it may not."""
        return self.connections.admit(connection.peer_host or "?", self.limits.max_connections,
                                      self.limits.max_connections_per_address)

    def release(self, connection) -> None:
        self.connections.release(connection.peer_host or "?")

    def check_bind(self, name: str, password: bytes, host: str):
        """The policy's (slow, salted) password check, in a worker thread, two at a time."""
        from twisted.internet.threads import deferToThreadPool

        policy = self.policy

        def run():
            return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), policy.check_bind, name, password,
                                     host, self.listener)

        return self._bind_slots.run(run)

    def for_listener(self, listener) -> "LDAPServerFactory":
        """A factory for another listener, sharing everything else."""
        other = LDAPServerFactory(self.directory, self.limits, self.metrics, self.tls, self.policy, listener,
                                  self.throttle, self.clock, self._reactor)
        other._bind_slots = self._bind_slots
        other.connections = self.connections  # the limits are for the whole server
        other.prepared = self.prepared
        return other


class PreparedSearches:
    """Decoded search requests with their filter shapes, by the request's bytes.

    Phones send the same few searches again and again (the caller's number, a name
    prefix); decoding and analysing one again would be pure repetition.  Only what
    the request bytes fully decide is kept, and it is dropped when the limits that
    decoding obeyed are replaced (a configuration reload).
    """

    def __init__(self, size: int = 16384) -> None:
        self.size = size
        self._limits = None
        self._known: dict[bytes, tuple] = {}

    def get(self, op: bytes, limits) -> tuple | None:
        if limits is not self._limits:
            self._known.clear()
            self._limits = limits
            return None
        return self._known.get(op)

    def put(self, op: bytes, limits, prepared: tuple) -> None:
        if limits is not self._limits:
            self._known.clear()
            self._limits = limits
        if len(self._known) >= self.size:
            self._known.clear()
        self._known[op] = prepared


class ConnectionCount:
    """Open connections in total and per client address."""

    def __init__(self) -> None:
        self.total = 0
        self.by_address: dict[str, int] = {}

    def admit(self, address: str, max_total: int, max_per_address: int) -> str | None:
        if self.total >= max_total:
            return f"{self.total} connections open (max_connections = {max_total})"
        current = self.by_address.get(address, 0)
        if current >= max_per_address:
            return f"{current} connections from this address (max_connections_per_address = {max_per_address})"
        self.total += 1
        self.by_address[address] = current + 1
        return None

    def release(self, address: str) -> None:
        self.total -= 1
        left = self.by_address.get(address, 1) - 1
        if left <= 0:
            self.by_address.pop(address, None)
        else:
            self.by_address[address] = left
