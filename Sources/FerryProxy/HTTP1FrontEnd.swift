import FerryConfig
import Logging
import NIOCore
import NIOHTTP1

/// One HTTP/1 client connection: request heads and bodies in, responses out, keep-alive,
/// pipelining, half-close and the connection's deadlines. Each request's life (routing, the
/// protocol decision, the backend, accounting) is an `Exchange` this front end drives.
///
/// Requests are read off the connection's bytes by an `HTTP1RequestReader` (no decoder in front of
/// this handler). They are handled one at a time: the bytes of a pipelined request that arrive
/// while one is in flight wait in the reader (and reads pause) until its response is complete. (NIO's
/// `HTTPServerPipelineHandler` would do this by holding back `read()`, which makes the channel
/// leave and rejoin epoll on every request: two `epoll_ctl` calls per request.)
final class HTTP1FrontEnd: ChannelDuplexHandler, RemovableChannelHandler, ExchangeFrontEnd, ClientConnection {
    typealias InboundIn = ByteBuffer
    /// What follows a WebSocket upgrade request goes on to the tunnel's glue as it is.
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    /// Responses are written as bytes (`ResponseFramer`), not through NIO's HTTPResponseEncoder.
    typealias OutboundOut = ByteBuffer

    /// What the connection's one deadline (checked by the loop's sweep) means when it passes.
    enum DeadlineKind {
        /// Keep-alive: no next request started in time → close.
        case nextRequest
        /// A request started but its head did not arrive in time → 408.
        case requestHead
        /// The backend sent no response head in time → 504.
        case response
    }

    enum State {
        /// Waiting for a request head.
        case idle
        /// A request is in flight (`exchange`).
        case exchanging
        /// Handed over to a `GlueHandler`; this handler is about to be removed.
        case tunneling
        case closed
    }

    let loop: ProxyLoopState
    let tls: Bool
    /// The listener's certificates when it has several (the 421 rule), and how to read the SNI name
    /// off the TLS layer's handshake event.
    private let certificates: CertificateSelector?
    private let readHandshake: ProxyListener.HandshakeReader?
    /// A `redirect_to_https` listener's HTTPS port.
    private let redirectToHTTPSPort: Int?
    /// The name the client sent in SNI, once the handshake said so.
    private var serverName: String?
    /// The request bytes read and not handed on yet.
    var reader = HTTP1RequestReader()
    /// The next byte read starts a request's header timeout (see `firstByteOfRequest`).
    private var headTimerArmed = true
    var state: State = .idle
    var exchange: Exchange?
    /// The request body still arriving after its exchange finished is dropped.
    private var discardingBody = false
    var closeAfterResponse = false
    /// The client will send nothing more (see `clientFinishedSending`).
    var clientInputClosed = false
    /// The response in flight went out without `Connection: close`: the client may send its next
    /// request on this connection as soon as it has read the response.
    private var announcedKeepAlive = false
    /// The connection closes once the response in flight is out.
    private var endsAfterThisResponse: Bool {
        // Only another whole request, read before the FIN, keeps it open.
        closeAfterResponse || (clientInputClosed && !(reader.isAtHead && reader.holdsCompleteHead))
    }
    var context: ChannelHandlerContext?
    /// Read by `ProxyLoopState.sweepDeadlines()`; arming or disarming it is an assignment, not a
    /// scheduled task (see `ProxyLoopState.sweepInterval`).
    private(set) var deadline: NIODeadline?
    private var deadlineKind = DeadlineKind.nextRequest
    private var clientAddress: String?
    /// Requests completed on this connection; a drain closes idle connections only after their
    /// first request, since a fresh one (maybe mid-handshake) is a client about to send one.
    private var requestsCompleted = 0
    /// Whether reads from the client are paused (backpressure); toggled only on change, since a
    /// channel option round-trip per request is measurable.
    private var clientReadsPaused = false
    private var idleSince = NIODeadline.now()
    /// How the current response's body goes on the wire.
    private var framer = ResponseFramer()
    /// The current response's body comes with the backend's chunk framing, relayed as it is
    /// (only the last chunk is Ferry's: `framer.terminator`).
    private var relaysFraming = false
    /// Response bytes gathered (head, small body parts, chunk framing) and written down the
    /// pipeline as one buffer at the end of a read burst or of the response.
    private var pendingOut: ByteBuffer?
    /// Body parts up to this size are copied into `pendingOut`; larger ones are written as they are.
    private static let gatherLimit = 8192

    init(
        loop: ProxyLoopState, tls: Bool, certificates: CertificateSelector? = nil,
        readHandshake: ProxyListener.HandshakeReader? = nil, redirectToHTTPSPort: Int? = nil
    ) {
        self.loop = loop
        self.tls = tls
        self.redirectToHTTPSPort = redirectToHTTPSPort
        self.certificates = certificates
        self.readHandshake = readHandshake
    }

    private var limits: LimitSettings { loop.configuration.limits }

    // MARK: - Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        clientAddress = context.channel.remoteAddress?.ipAddress
        loop.connections[ObjectIdentifier(self)] = self
        loop.connectionsOpen += 1
        loop.connectionsTotal += 1
        waitForNextRequest()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline = nil
        if loop.connections.removeValue(forKey: ObjectIdentifier(self)) != nil { loop.connectionsOpen -= 1 }
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline = nil
        exchange?.clientGone()
        exchange = nil
        state = .closed
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            clientFinishedSending(context: context)
        } else if let proxied = event as? ProxyProtocolClient {
            // The balancer's word on who the client is (logs, X-Forwarded-For, Forwarded, hashing).
            clientAddress = proxied.address
        } else if let read = readHandshake, let negotiated = read(event) {
            serverName = negotiated.serverName.flatMap(HostName.normalize)
            if negotiated.alpn == "acme-tls/1" {
                // A CA's TLS-ALPN-01 validation: the handshake was all (RFC 8737 §3).
                context.close(promise: nil)
                return
            }
            if negotiated.alpn == "h2" {
                // The client speaks HTTP/2 on this connection: its handlers take over from here
                // (no byte of it has been read yet: the handshake's event comes first).
                let client = ClientInfo(
                    address: clientAddress, tls: tls, serverName: serverName, certificates: certificates)
                do {
                    try HTTP2Connection.install(after: context, loop: loop, clientInfo: client)
                    context.fireUserInboundEventTriggered(event)
                    context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
                } catch {
                    context.close(promise: nil)
                }
                return
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// The client sent FIN (it closed its socket, or shut down its sending side; over TLS, an EOF
    /// without close_notify). Its connection used to stay open until the keep-alive timeout, in
    /// CLOSE_WAIT, with its descriptor and memory. What was fully received is still answered, as
    /// HAProxy does (`nginx` instead aborts with 499; a client may shut down its sending side right
    /// after a request), then the connection closes. A request cut short by the FIN is dropped
    /// (`requestCutByFIN`).
    private func clientFinishedSending(context: ChannelHandlerContext) {
        clientInputClosed = true
        if reader.isMidRequest, !(reader.isAtHead && reader.holdsCompleteHead) {
            return requestCutByFIN()
        }
        switch state {
        case .idle:
            if !reader.holdsCompleteHead {
                state = .closed
                context.close(promise: nil)
            }
        case .exchanging:
            // `exchangeFinished` closes after the last response. An upgrade request waiting for
            // its tunnel hands the FIN to the tunnel once it is in place (`startTunnel`).
            break
        case .tunneling, .closed:
            // The tunnel passes the FIN on (`GlueHandler`).
            break
        }
    }

    /// Between requests: keep-alive idle timeout, until the first byte of the next request arrives.
    private func waitForNextRequest() {
        guard context != nil else { return }
        if reader.hasBufferedBytes {
            // Part of the next request was read already: its head timeout runs from now.
            headTimerArmed = false
            setDeadline(.requestHead, in: limits.headerTimeout)
        } else {
            headTimerArmed = true
            setDeadline(.nextRequest, in: limits.idleTimeout)
        }
    }

    /// The first byte of a request: from now the whole head must arrive within the header timeout.
    private func firstByteOfRequest() {
        guard context != nil, case .idle = state else { return }
        setDeadline(.requestHead, in: limits.headerTimeout)
    }

    private func setDeadline(_ kind: DeadlineKind, in duration: Duration) {
        deadlineKind = kind
        deadline = .now() + duration.timeAmount
    }

    /// Called by the loop's sweep once `deadline` has passed.
    func deadlinePassed() {
        deadline = nil
        guard context != nil else { return }
        switch (deadlineKind, state) {
        case (.nextRequest, .idle):
            context?.close(promise: nil)
        case (.requestHead, .idle):
            writeRawAndClose(status: .requestTimeout, reason: "request head not received in time")
        case (.response, .exchanging):
            exchange?.responseDeadlinePassed()
        case (.nextRequest, _), (.requestHead, _), (.response, _):
            break
        }
    }

    // MARK: - Requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        if headTimerArmed, bytes.readableBytes > 0 {
            headTimerArmed = false
            firstByteOfRequest()
        }
        reader.append(bytes)
        readRequests()
    }

    private var isIdle: Bool {
        if case .idle = state { return true }
        return false
    }

    /// Hands on what the bytes read hold, as far as this connection can take it now: the body of
    /// the request in flight, a next request only once the connection is idle.
    private func readRequests() {
        while context != nil {
            if reader.isAtHead && !isIdle {
                // Pipelined: the next request waits for the current exchange; read no further
                // meanwhile.
                if reader.hasBufferedBytes, case .exchanging = state { setClientReads(paused: true) }
                return
            }
            switch reader.next() {
            case .needMore:
                if clientInputClosed && reader.isMidRequest { requestCutByFIN() }
                return
            case .head(let request, let body):
                deadline = nil
                discardingBody = false
                received(request: request)
                if body == .none { exchange?.receivedEnd() }
            case .body(let body):
                if !discardingBody { exchange?.receivedBody(body) }
            case .end:
                if discardingBody {
                    discardingBody = false
                } else {
                    exchange?.receivedEnd()
                }
            case .invalid(let status, let reason):
                return malformed(status: status, reason: reason)
            }
        }
    }

    private func received(request: ExchangeRequest) {
        loop.requests += 1
        state = .exchanging
        announcedKeepAlive = false
        let client = ClientInfo(
            address: clientAddress, tls: tls, serverName: serverName, certificates: certificates,
            redirectToHTTPSPort: redirectToHTTPSPort)
        let current = Exchange(
            request: request, keepAlive: request.isKeepAlive && !loop.draining, client: client, loop: loop,
            frontEnd: self)
        exchange = current
        if current.refuseIfInvalid() { return }
        // Absolute-form (RFC 9112 §3.2.2): routed and sent upstream in origin-form, with the
        // target's authority as Host (the server MUST use it over a received Host). The checks above
        // ran on the request as received, so an HTTP/1.1 request without Host is still refused.
        if let absolute = RequestRules.absoluteTarget(request.uri) { current.request.useOriginForm(absolute) }
        current.start()
    }

    func setClientReads(paused: Bool) {
        guard paused != clientReadsPaused, let context else { return }
        clientReadsPaused = paused
        context.channel.setOption(.autoRead, value: !paused).whenComplete { _ in }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // Backpressure for responses: read from the backend only while the client keeps up.
        exchange?.clientWritabilityChanged(writable: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    // MARK: - ExchangeFrontEnd

    func sendContinue() {
        gather { $0.writeStaticString("HTTP/1.1 100 Continue\r\n\r\n") }
        writePending()
        context?.flush()
    }

    func sendLocalResponse(status: HTTPResponseStatus, headers: HTTPHeaders, body: String, close: Bool) {
        guard let context, let current = exchange else { return }
        let keepAlive = current.keepAlive && !close && !endsAfterThisResponse
        if !keepAlive { closeAfterResponse = true }
        gatherCompleteResponse(
            status: status, keepAlive: keepAlive, bodyLength: body.utf8.count, context: context,
            headers: { out, _ in
                for (name, value) in headers { ResponseFramer.writeHeader(name, value, into: &out) }
                ResponseFramer.writeHeader("Server", "ferry", into: &out)
                ResponseFramer.writeHeader("Content-Type", "text/plain; charset=utf-8", into: &out)
            },
            body: { $0.writeString(body) })
    }

    func sendBufferedResponse(_ head: HTTPResponseHead, body: ByteBuffer) {
        guard let context else { return }
        // The client's decoder has stopped parsing after an upgrade request: this connection ends here.
        closeAfterResponse = true
        gatherCompleteResponse(
            status: head.status, keepAlive: false, bodyLength: body.readableBytes, context: context,
            headers: { out, framer in
                RequestRules.writeDownstreamHeaders(
                    head.headers, listing: RequestRules.ConnectionListing(head.headers), framer: framer,
                    dropContentLength: true, into: &out)
            },
            body: { $0.writeImmutableBuffer(body) })
    }

    func sendResponseHead(_ head: UpstreamResponseHead, extraHeader: (name: String, value: String)?) -> Bool {
        guard let context, let current = exchange else { return false }
        var keepAlive = current.keepAlive && !endsAfterThisResponse
        var out = context.channel.allocator.buffer(capacity: head.bytes.readableBytes + 128)
        let closeDelimited = framer.start(
            code: head.status, hasContentLength: head.contentLength != nil,
            method: current.request.method, version: current.request.version, into: &out, reason: head.writeReason)
        if closeDelimited {
            keepAlive = false
            closeAfterResponse = true
        }
        head.writeDownstreamFields(dropContentLength: framer.framing == .none, into: &out)
        if let extraHeader { ResponseFramer.writeHeader(extraHeader.name, extraHeader.value, into: &out) }
        framer.finishHead(keepAlive: keepAlive, into: &out)
        announcedKeepAlive = keepAlive
        relaysFraming = framer.framing == .chunked && head.chunked
        writePending()
        pendingOut = out
        return relaysFraming
    }

    func sendResponseBody(_ body: ByteBuffer) {
        guard framer.writesBody, body.readableBytes > 0, let context else { return }
        let chunked = framer.framing == .chunked && !relaysFraming
        if body.readableBytes <= Self.gatherLimit {
            gather { out in
                if chunked { ResponseFramer.writeChunkHeader(size: body.readableBytes, into: &out) }
                out.writeImmutableBuffer(body)
                if chunked { out.writeStaticString("\r\n") }
            }
        } else {
            if chunked { gather { ResponseFramer.writeChunkHeader(size: body.readableBytes, into: &$0) } }
            writePending()
            context.write(wrapOutboundOut(body), promise: nil)
            if chunked { gather { $0.writeStaticString("\r\n") } }
        }
    }

    func flushResponse() {
        writePending()
        context?.flush()
    }

    func abortResponse() {
        state = .closed
        context?.close(promise: nil)
    }

    func setRequestBodyPaused(_ paused: Bool) {
        setClientReads(paused: paused)
    }

    func setResponseDeadline(_ duration: Duration?) {
        if let duration {
            setDeadline(.response, in: duration)
        } else if deadlineKind == .response {
            deadline = nil
        }
    }

    func exchangeFinished(_ current: Exchange) {
        guard let context, exchange === current else { return }
        exchange = nil
        if !current.requestEnded { discardingBody = true }
        requestsCompleted += 1
        let close = endsAfterThisResponse || !current.keepAlive
        if let terminator = framer.terminator { gather { $0.writeStaticString(terminator) } }
        framer = ResponseFramer()
        relaysFraming = false
        if close {
            state = .closed
            let written = context.eventLoop.makePromise(of: Void.self)
            writePending(promise: written)
            context.flush()
            written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        } else {
            state = .idle
            writePending()
            context.flush()
            idleSince = .now()
            waitForNextRequest()
            if !reader.hasBufferedBytes {
                // Request-body backpressure may have paused reads; the next request must be read.
                setClientReads(paused: false)
                // A drain that came while this keep-alive response was going out (see `drain`).
                if loop.draining && announcedKeepAlive { drain() }
            } else {
                // Not from inside this call: it may run within the upstream connection's own
                // callbacks, which the next request could lease again.
                let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
                context.eventLoop.execute { bound.value.replayPipelined() }
            }
        }
    }

    /// Takes on the requests read while the previous one was in flight.
    private func replayPipelined() {
        guard context != nil, isIdle else { return }
        readRequests()
        if isIdle || !reader.hasBufferedBytes { setClientReads(paused: false) }
    }

    // MARK: - Writing responses

    private func gather(_ write: (inout ByteBuffer) -> Void) {
        guard let context else { return }
        if pendingOut == nil { pendingOut = context.channel.allocator.buffer(capacity: 1024) }
        write(&pendingOut!)
    }

    /// Sends what was gathered down the pipeline (not flushed). With a promise and nothing
    /// gathered, an empty write carries the promise, so it completes after everything before it.
    func writePending(promise: EventLoopPromise<Void>? = nil) {
        guard let context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        if let buffer = pendingOut {
            pendingOut = nil
            context.write(wrapOutboundOut(buffer), promise: promise)
        } else if let promise {
            context.write(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: promise)
        }
    }

    /// Gathers a whole response whose body is known (a local answer, a refused upgrade's answer):
    /// status line, `headers` (given the framing decided), Content-Length, Connection, then the
    /// body unless the method or status has none. `exchangeFinished` sends it.
    private func gatherCompleteResponse(
        status: HTTPResponseStatus, keepAlive: Bool, bodyLength: Int, context: ChannelHandlerContext,
        headers: (inout ByteBuffer, ResponseFramer) -> Void, body: (inout ByteBuffer) -> Void
    ) {
        guard let current = exchange else { return }
        writePending()
        var out = context.channel.allocator.buffer(capacity: 512 + bodyLength)
        _ = framer.start(
            status: status, hasContentLength: true, method: current.request.method, version: current.request.version,
            into: &out)
        headers(&out, framer)
        if framer.framing != .none { ResponseFramer.writeHeader("Content-Length", String(bodyLength), into: &out) }
        framer.finishHead(keepAlive: keepAlive, into: &out)
        if framer.writesBody { body(&out) }
        pendingOut = out
    }

    /// For errors before or outside a request (parse errors, header timeout): a complete response
    /// written as is, then close. The worker lives on.
    private func writeRawAndClose(status: HTTPResponseStatus, reason: String) {
        guard let context else { return }
        state = .closed
        let body = "ferry: \(reason)\n"
        let text =
            "HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\nServer: ferry\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        let written = context.eventLoop.makePromise(of: Void.self)
        pendingOut = nil
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: text)), promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    // MARK: - Errors

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// The bytes are not a valid request (or one too large). Requests are read one at a time, so
    /// this is the request in flight's own body, or the next request once the connection is idle.
    private func malformed(status: HTTPResponseStatus, reason: String) {
        guard let context else { return }
        switch state {
        case .exchanging where exchange?.responseStarted == true:
            // The request's own body went bad while its response is being relayed: a 400 now
            // would land inside that response's body. Closing aborts the exchange (its upstream
            // connection is closed, never pooled); the client sees a cut response.
            state = .closed
            context.close(promise: nil)
        case .exchanging where exchange?.phase == .awaitingTunnel:
            context.close(promise: nil)
        case .idle, .exchanging:
            writeRawAndClose(status: status, reason: reason)
        case .tunneling, .closed:
            context.close(promise: nil)
        }
    }

    /// The client's FIN came in the middle of a request (its head, or its body): nobody is left to
    /// read an answer to it. An exchange already in flight for it is aborted: closing the
    /// connection closes its upstream connection, which is never pooled (`channelInactive`). A
    /// complete request ahead of it, still being answered, is not: the cut one was pipelined.
    private func requestCutByFIN() {
        guard let context else { return }
        clientInputClosed = true
        let answering = exchange?.requestEnded == true && !discardingBody
        switch state {
        case .exchanging where answering && exchange?.phase != .awaitingTunnel, .closed:
            break
        case .idle, .exchanging, .tunneling:
            state = .closed
            context.close(promise: nil)
        }
    }

    // MARK: - Drain

    /// Stop after the current request; idle connections close now.
    ///
    /// Closing a keep-alive connection races with a client that is sending its next request right
    /// now (it would see a reset, not a response), so only connections idle for a while are closed;
    /// a busy one gets its next response with `Connection: close` instead.
    func drain() {
        // The response in flight already told the client to keep the connection: closing after it
        // would race with the request the client sends next (a reset, not a response). It ends as
        // promised; then the connection drains as an idle one (`exchangeFinished`), and a next
        // request that comes first is answered with `Connection: close` (`loop.draining`).
        if exchange != nil, announcedKeepAlive { return }
        closeAfterResponse = true
        guard case .idle = state, requestsCompleted > 0, let context else { return }
        let idleFor = NIODeadline.now() - idleSince
        if idleFor >= .milliseconds(500) {
            context.close(promise: nil)
            return
        }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .milliseconds(500) - idleFor) { bound.value.drain() }
    }

    func forceClose() {
        context?.close(promise: nil)
    }
}

@available(*, unavailable)
extension HTTP1FrontEnd: Sendable {}
