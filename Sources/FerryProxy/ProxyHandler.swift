import FerryConfig
import Logging
import NIOCore
import NIOHTTP1

/// One client connection's request handling: route, decide the protocol per request, forward over
/// the HTTP pool or open a tunnel, answer locally when needed.
///
/// Requests are handled one at a time: parts of a pipelined request that arrive while one is in
/// flight wait in `pipelined` (and reads pause) until its response is complete. (NIO's
/// `HTTPServerPipelineHandler` would do this by holding back `read()`, which makes the channel
/// leave and rejoin epoll on every request: two `epoll_ctl` calls per request.) The
/// per-request protocol decision is the heart of Ferry: an `Upgrade: websocket` request goes to a
/// fresh connection from `TunnelConnector`; anything else leases from the `HTTPConnectionPool`.
final class ProxyHandler: ChannelDuplexHandler, RemovableChannelHandler, UpstreamExchangeDelegate {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = ByteBuffer
    /// Responses are written as bytes (`ResponseFramer`), not through NIO's HTTPResponseEncoder.
    typealias OutboundOut = ByteBuffer

    /// One request in flight. A class: it is read and updated several times per request, and
    /// copying a struct of this many references cost a retain per field each time (seen in `perf`).
    final class Exchange {
        var head: HTTPRequestHead
        /// One pass over the request's headers, read by every later decision.
        let facts: RequestRules.RequestHeadFacts
        var routeIndex: Int?
        /// The loop's `routeVersion` when the route was chosen, and the route itself: a reload
        /// applied in place meanwhile does not change what this exchange does.
        var routeVersion = 0
        var route: RouteConfiguration?
        /// The backend's group the exchange's tries use (a reload may give the loop a new one).
        var group: UpstreamGroup?
        var routePath: String?
        var backend: String?
        var upstreamURI: String?
        var keepAlive: Bool
        var started: NIODeadline
        var upstream: UpstreamConnection?
        /// The pool of the server the balancer chose.
        var pool: HTTPConnectionPool?
        /// The index of that server in its backend's group.
        var server: Int?
        /// Servers this request failed on before any response byte (not tried again while another
        /// one is left), and how many connect attempts it has made.
        var triedServers: Set<Int> = []
        var attempts = 0
        /// Tries again on another server after a failure past the connect (at most `retries`).
        var retries = 0
        /// A `Set-Cookie` value to add to the response (the backend's sticky cookie).
        var stickyCookie: String?
        var reused = false
        var retried = false
        var requestEnded = false
        var bufferedBody: [ByteBuffer] = []
        var bodyBytesIn = 0
        var bytesOut = 0
        var status: Int?
        var responseStarted = false
        /// The response head went out without `Connection: close`: the client may send its next
        /// request on this connection as soon as it has read the response.
        var announcedKeepAlive = false
        var timedOut = false
        /// `100 Continue` was sent for an `Expect: 100-continue` request.
        var continueSent = false

        init(head: HTTPRequestHead, keepAlive: Bool, started: NIODeadline) {
            self.head = head
            self.facts = RequestRules.RequestHeadFacts(head)
            self.keepAlive = keepAlive
            self.started = started
        }
    }

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
        /// Forwarding over HTTP (leasing, sending, or relaying the response).
        case proxying
        /// A local response (404, 426, redirect…) is being written; the request body is discarded.
        case respondingLocally
        /// The upgrade request went to the backend; waiting for its answer.
        case awaitingTunnel
        /// Handed over to a `GlueHandler`; this handler is about to be removed.
        case tunneling
        case closed
    }

    private let loop: ProxyLoopState
    private let tls: Bool
    /// The listener's certificates when it has several (the 421 rule), and how to read the SNI name
    /// off the TLS layer's handshake event.
    private let certificates: CertificateSelector?
    private let handshakeServerName: ProxyListener.HandshakeServerName?
    /// The name the client sent in SNI, once the handshake said so.
    private var serverName: String?
    private let activity: ConnectionActivity
    private var state: State = .idle
    private var exchange: Exchange?
    /// The request body still arriving after a local or early response is dropped.
    private var discardingBody = false
    private var closeAfterResponse = false
    /// The client will send nothing more (see `clientFinishedSending`).
    private var clientInputClosed = false
    /// The connection closes once the response in flight is out.
    private var endsAfterThisResponse: Bool {
        // `pipelined` may still hold the end of the request being answered (a replayed request
        // answered locally is answered from its head): only another request's head keeps it open.
        closeAfterResponse || (clientInputClosed && !pipelined.contains(where: Self.isHead))
    }
    private var context: ChannelHandlerContext?
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
    /// Parts of pipelined requests received while another request was in flight, in order.
    private var pipelined = CircularBuffer<HTTPServerRequestPart>()
    /// A malformed request arrived behind one in flight: answered once that one's response is out.
    private var deferredRejection: (status: HTTPResponseStatus, reason: String)?
    /// How the current response's body goes on the wire.
    private var framer = ResponseFramer()
    /// Response bytes gathered (head, small body parts, chunk framing) and written down the
    /// pipeline as one buffer at the end of a read burst or of the response.
    private var pendingOut: ByteBuffer?
    /// Body parts up to this size are copied into `pendingOut`; larger ones are written as they are.
    private static let gatherLimit = 8192

    init(
        loop: ProxyLoopState, tls: Bool, activity: ConnectionActivity, certificates: CertificateSelector? = nil,
        handshakeServerName: ProxyListener.HandshakeServerName? = nil
    ) {
        self.loop = loop
        self.tls = tls
        self.activity = activity
        self.certificates = certificates
        self.handshakeServerName = handshakeServerName
    }

    private var limits: LimitSettings { loop.configuration.limits }

    // MARK: - Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        clientAddress = context.channel.remoteAddress?.ipAddress
        loop.connections[ObjectIdentifier(self)] = self
        loop.connectionsOpen += 1
        loop.connectionsTotal += 1
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        activity.onFirstByte = { bound.value.firstByteOfRequest() }
        waitForNextRequest()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline = nil
        if loop.connections.removeValue(forKey: ObjectIdentifier(self)) != nil { loop.connectionsOpen -= 1 }
        activity.onFirstByte = nil
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline = nil
        if let upstream = exchange?.upstream {
            // The client left mid-exchange: the upstream connection cannot be reused.
            upstream.handler.delegate = nil
            exchange?.pool?.close(upstream, reason: .error)
        }
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
        } else if let read = handshakeServerName, let negotiated = read(event) {
            serverName = negotiated.serverName.flatMap(HostName.normalize)
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// The client sent FIN (it closed its socket, or shut down its sending side; over TLS, an EOF
    /// without close_notify). Its connection used to stay open until the keep-alive timeout, in
    /// CLOSE_WAIT, with its descriptor and memory. What was fully received is still answered, as
    /// HAProxy does (`nginx` instead aborts with 499; a client may shut down its sending side right
    /// after a request), then the connection closes. A request cut short by the FIN has already been
    /// dropped: the decoder reports `invalidEOFState` first (see `errorCaught`).
    private func clientFinishedSending(context: ChannelHandlerContext) {
        clientInputClosed = true
        dropIncompletePipelinedRequest()
        switch state {
        case .idle:
            if pipelined.isEmpty {
                state = .closed
                context.close(promise: nil)
            }
        case .proxying, .respondingLocally:
            // `finishExchange` closes after the last response.
            break
        case .awaitingTunnel, .tunneling, .closed:
            // The tunnel passes the FIN on (`GlueHandler`); a FIN read with the upgrade request is
            // handed to it once it is in place (end of `startTunnel`'s setup).
            break
        }
    }

    private static func isHead(_ part: HTTPServerRequestPart) -> Bool {
        if case .head = part { true } else { false }
    }

    /// Parts of a pipelined request whose end never came: a request cut by the client's FIN, or
    /// one whose body turned out malformed.
    private func dropIncompletePipelinedRequest() {
        guard let lastHead = pipelined.lastIndex(where: Self.isHead) else { return }
        if pipelined[lastHead...].contains(where: { if case .end = $0 { true } else { false } }) { return }
        pipelined.removeSubrange(lastHead..<pipelined.endIndex)
    }

    /// Between requests: keep-alive idle timeout, until the first byte of the next request arrives.
    private func waitForNextRequest() {
        guard context != nil else { return }
        activity.arm()
        setDeadline(.nextRequest, in: limits.idleTimeout)
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

    private func clearResponseDeadline() {
        if deadlineKind == .response { deadline = nil }
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
        case (.response, .proxying):
            responseTimedOut()
        case (.nextRequest, _), (.requestHead, _), (.response, _):
            break
        }
    }

    // MARK: - Requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if !pipelined.isEmpty {
            pipelined.append(part)
            return
        }
        if case .head = part, !isIdle {
            // Pipelined: wait for the current exchange, and read no further meanwhile.
            pipelined.append(part)
            setClientReads(paused: true)
            return
        }
        handle(part, context: context)
    }

    private var isIdle: Bool {
        if case .idle = state { return true }
        return false
    }

    private func handle(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        switch part {
        case .head(let head):
            deadline = nil
            discardingBody = false
            received(head: head, context: context)
        case .body(let body):
            receivedBody(body, context: context)
        case .end:
            receivedEnd(context: context)
        }
    }

    private func received(head: HTTPRequestHead, context: ChannelHandlerContext) {
        loop.requests += 1
        let current = Exchange(head: head, keepAlive: head.isKeepAlive, started: .now())
        if loop.draining { current.keepAlive = false }
        exchange = current
        if let rejection = current.facts.framingRejection(head, maxBodyBytes: limits.maxBodyBytes)
            ?? current.facts.limitsRejection(
                head, maxHeaderBytes: limits.maxHeaderBytes, maxHeaderCount: limits.maxHeaderCount)
        {
            let message: String
            switch rejection {
            case .badRequest(let reason), .headersTooLarge(let reason): message = reason
            case .bodyTooLarge: message = "request body larger than \(limits.maxBodyBytes) bytes"
            }
            respondLocally(status: rejection.status, body: "ferry: \(message)\n", close: true)
            return
        }
        // Absolute-form (RFC 9112 §3.2.2): routed and sent upstream in origin-form, with the
        // target's authority as Host (the server MUST use it over a received Host). The checks above
        // ran on the request as received, so an HTTP/1.1 request without Host is still refused.
        var head = head
        if let absolute = RequestRules.absoluteTarget(head.uri) {
            head.uri = absolute.originForm
            head.headers.replaceOrAdd(name: "Host", value: absolute.authority)
            current.head = head
        }
        var host: String?
        if loop.router.hasSites || certificates != nil {
            host = head.headers.first(name: "Host").flatMap(HostName.normalize)
        }
        // No domain fronting across certificates: a connection whose SNI selected one certificate
        // may not ask for a host that another certificate of this listener serves (RFC 9110
        // §15.5.20). Without SNI there is nothing to compare.
        if let certificates, let serverName, let host,
            certificates.index(forServerName: serverName) != certificates.index(forServerName: host)
        {
            respondLocally(
                status: .misdirectedRequest,
                body: "ferry: this connection's certificate is for \(serverName), not for \(host)\n", close: true)
            return
        }
        switch loop.router.route(uri: head.uri, host: host) {
        case .badRequest:
            respondLocally(status: .badRequest, body: "ferry: malformed request target\n", close: true)
        case .unsafePath(let reason):
            respondLocally(status: .badRequest, body: "ferry: \(reason)\n", close: true)
        case .notFound:
            respondLocally(status: .notFound, body: "ferry: no route for this path\n", close: false)
        case .matched(let match):
            exchange?.routeIndex = match.index
            exchange?.routeVersion = loop.routeVersion
            exchange?.routePath = match.route.path
            exchange?.upstreamURI = match.upstreamURI
            loop.routeStats[match.index].requests += 1
            switch match.route.action {
            case .respond(let status, let body):
                respondLocally(status: HTTPResponseStatus(statusCode: status), body: body ?? "", close: false)
            case .redirect(let location, let status):
                var headers = HTTPHeaders()
                headers.add(name: "Location", value: location)
                respondLocally(
                    status: HTTPResponseStatus(statusCode: status), body: "", close: false, extraHeaders: headers)
            case .proxy(let backendName):
                exchange?.backend = backendName
                dispatch(
                    head: head, facts: current.facts, route: match.route, backendName: backendName, context: context)
            }
        }
    }

    /// The per-request protocol decision.
    private func dispatch(
        head: HTTPRequestHead, facts: RequestRules.RequestHeadFacts, route: RouteConfiguration, backendName: String,
        context: ChannelHandlerContext
    ) {
        guard let backend = loop.configuration.backend(named: backendName) else {
            respondLocally(status: .badGateway, body: "ferry: route \(route.path) has no backend\n", close: false)
            return
        }
        switch (facts.upgradeKind(head), route.protocol) {
        case (.invalid(let reason), _):
            respondLocally(status: .badRequest, body: "ferry: \(reason)\n", close: true)
        case (.websocket, .http):
            respondLocally(
                status: .badRequest, body: "ferry: route \(route.path) serves HTTP only; WebSocket upgrade refused\n",
                close: true)
        case (.websocket, .auto), (.websocket, .websocket):
            startTunnel(head: head, route: route, backend: backend, context: context)
        case (.none, .websocket):
            var headers = HTTPHeaders()
            headers.add(name: "Upgrade", value: "websocket")
            respondLocally(
                status: .upgradeRequired,
                body: "ferry: route \(route.path) accepts WebSocket connections only\n", close: false,
                extraHeaders: headers)
        case (.none, .auto), (.none, .http):
            startHTTP(backend: backend, route: route, context: context)
        }
    }

    private func receivedBody(_ body: ByteBuffer, context: ChannelHandlerContext) {
        guard !discardingBody, let current = exchange else { return }
        switch state {
        case .proxying:
            current.bodyBytesIn += body.readableBytes
            if current.bodyBytesIn > limits.maxBodyBytes {
                abortExchange(status: .payloadTooLarge, body: "ferry: request body too large\n")
                return
            }
            if let upstream = current.upstream {
                upstream.handler.sendBody(body)
                upstream.handler.flush()
            } else {
                // Until the upstream is ready, read nothing more (bounded buffering of the body).
                current.bufferedBody.append(body)
                setClientReads(paused: true)
            }
        case .idle, .respondingLocally, .awaitingTunnel, .tunneling, .closed:
            break
        }
    }

    private func receivedEnd(context: ChannelHandlerContext) {
        if discardingBody {
            discardingBody = false
            return
        }
        guard exchange != nil else { return }
        exchange?.requestEnded = true
        if case .proxying = state, let upstream = exchange?.upstream {
            upstream.handler.sendEnd()
        }
    }

    // MARK: - HTTP forwarding

    private func startHTTP(backend: BackendConfiguration, route: RouteConfiguration, context: ChannelHandlerContext) {
        guard let group = loop.group(for: backend.name), let current = exchange else { return }
        state = .proxying
        if current.facts.expectsContinue, current.facts.announcesBody, !current.requestEnded {
            // As nginx does: the request is accepted (routed, within limits), so the client may
            // send its body now, whatever the backend (its own 100 would be one more round trip,
            // and an HTTP/1.0 backend sends none: the client then waits out its own timeout, 1 s
            // for curl). The upstream request carries no Expect (`writeUpstreamRequest`).
            current.continueSent = true
            gather { $0.writeStaticString("HTTP/1.1 100 Continue\r\n\r\n") }
            writePending()
            context.flush()
        }
        attemptHTTP(group: group, route: route, fresh: false)
    }

    /// One try of the exchange's request at a server the balancer picks among those it has not
    /// failed on yet: an idle pooled connection, else a new one (`fresh`: always a new one).
    private func attemptHTTP(group: UpstreamGroup, route: RouteConfiguration, fresh: Bool) {
        guard case .proxying = state, let current = exchange, let context else { return }
        let backend = group.backend
        let key = balanceKey(group, current.head)
        if !current.triedServers.isEmpty, group.pick(key: key, excluding: current.triedServers) == nil {
            // Every server failed once: the round starts again (`connectFailed` waited its backoff).
            current.triedServers = []
        }
        let sticky = stickyServer(group, current.head)
        guard let server = group.pick(key: key, excluding: current.triedServers, preferred: sticky) else {
            // Only when every server is draining (`ferry server drain`).
            return respondUnavailable("every server of backend \(backend.name) is draining (route \(route.path))")
        }
        let pool = group.pools[server]
        current.group = group
        current.route = route
        current.pool = pool
        current.server = server
        current.attempts += 1
        current.stickyCookie = nil
        if let name = group.backend.stickyCookie, sticky != server {
            current.stickyCookie =
                "\(name)=\(group.stickyValues[server]); Path=/; HttpOnly; SameSite=Lax" + (tls ? "; Secure" : "")
        }
        if !fresh, !loop.unavailableBackends.contains(backend.name), let connection = pool.leaseIdle() {
            attach(connection, reused: true, route: route)
            return
        }
        let connectTimeout = route.timeouts.connect ?? backend.connectTimeout
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        loop.waitUntilAvailable(backend)
            .flatMap { () -> EventLoopFuture<(UpstreamConnection, reused: Bool)> in
                if fresh {
                    return pool.connect(connectTimeout: connectTimeout).map { connection in
                        connection.requestsServed = 1
                        connection.handler.beginExchange(requestsServed: 1)
                        return (connection, false)
                    }
                }
                return pool.lease(connectTimeout: connectTimeout)
            }
            .whenComplete { result in
                let handler = bound.value
                switch result {
                case .success(let (connection, reused)):
                    if !reused { group.recordSuccess(server: server) }
                    handler.attach(connection, reused: reused, route: route)
                case .failure(let error):
                    handler.connectFailed(error, group: group, server: server, route: route)
                }
            }
    }

    /// The connection to a server failed (refused, timed out): nothing was sent, so the request may
    /// go anywhere else, whatever its method. Another server at once if one is left untried, else
    /// the round again after a short backoff, until the backend's `queue_timeout` since the request
    /// started: a backend away for a few seconds (restarting) costs waiting, not errors. Then 503.
    private func connectFailed(_ error: any Error, group: UpstreamGroup, server: Int, route: RouteConfiguration) {
        guard case .proxying = state, let current = exchange, let context else { return }
        let backend = group.backend
        if case ProxyServerError.backendUnavailable = error {
            // The master says the backend is (re)starting and it did not come back in time.
            return leaseFailed(error, backend: backend, route: route)
        }
        if group.recordFailure(server: server) {
            loop.logger.warning(
                "server ejected after failures in a row",
                metadata: [
                    "backend": "\(backend.name)", "server": "\(backend.servers[server].address)",
                    "for_ms": "\(backend.failTimeout.wholeMilliseconds << min(group.health[server].ejections - 1, 5))",
                ])
        }
        current.triedServers.insert(server)
        let waited = NIODeadline.now() - current.started
        let queueTimeout = TimeAmount.milliseconds(backend.queueTimeout.wholeMilliseconds)
        guard waited < queueTimeout else {
            loop.logger.warning(
                "no server of the backend accepted within its queue_timeout",
                metadata: ["route": "\(route.path)", "backend": "\(backend.name)", "error": "\(error)"])
            return respondUnavailable(
                "no server of backend \(backend.name) accepted the connection (route \(route.path))")
        }
        current.pool?.recordRetry()
        if current.triedServers.count < backend.servers.count {
            return attemptHTTP(group: group, route: route, fresh: false)
        }
        current.triedServers = []
        let backoff = min(
            TimeAmount.milliseconds(25 << min(current.attempts / backend.servers.count, 4)), queueTimeout - waited)
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: backoff) {
            bound.value.attemptHTTP(group: group, route: route, fresh: false)
        }
    }

    private func attach(_ connection: UpstreamConnection, reused: Bool, route: RouteConfiguration) {
        guard case .proxying = state, let current = exchange, context != nil else {
            // The client went away while we connected: give the connection back unused.
            connection.handler.delegate = nil
            connection.channel.close(promise: nil)
            return
        }
        current.upstream = connection
        current.reused = reused
        connection.handler.delegate = self
        var head = connection.channel.allocator.buffer(capacity: 512)
        let framing = RequestRules.writeUpstreamRequest(
            current.head, facts: current.facts, uri: current.upstreamURI ?? current.head.uri,
            clientAddress: clientAddress, tls: tls, into: &head)
        connection.handler.sendHead(head, method: current.head.method, framing: framing)
        for body in current.bufferedBody { connection.handler.sendBody(body) }
        current.bufferedBody = []
        setDeadline(.response, in: route.timeouts.response)
        if current.requestEnded {
            connection.handler.sendEnd()
        } else {
            connection.handler.flush()
        }
        setClientReads(paused: false)
    }

    private func setClientReads(paused: Bool) {
        guard paused != clientReadsPaused, let context else { return }
        clientReadsPaused = paused
        context.channel.setOption(.autoRead, value: !paused).whenComplete { _ in }
    }

    private func leaseFailed(_ error: any Error, backend: BackendConfiguration, route: RouteConfiguration) {
        guard case .proxying = state else { return }
        let (status, reason) = Self.classify(error)
        loop.logger.warning(
            "backend unavailable",
            metadata: ["route": "\(route.path)", "backend": "\(backend.name)", "error": "\(error)"])
        var headers = HTTPHeaders()
        if status == .serviceUnavailable { headers.add(name: "Retry-After", value: "1") }
        respondLocally(
            status: status, body: "ferry: \(reason) (route \(route.path), backend \(backend.name))\n", close: false,
            extraHeaders: headers)
        setClientReads(paused: false)
    }

    static func classify(_ error: any Error) -> (HTTPResponseStatus, String) {
        if case ProxyServerError.backendUnavailable = error { return (.serviceUnavailable, "backend is starting") }
        if case ProxyError.upstreamTimeout = error { return (.gatewayTimeout, "backend did not answer in time") }
        if let channelError = error as? ChannelError, case .connectTimeout = channelError {
            return (.gatewayTimeout, "backend did not accept the connection in time")
        }
        return (.badGateway, "backend refused or unreachable")
    }

    private func responseTimedOut() {
        guard case .proxying = state, let current = exchange, !current.responseStarted, let upstream = current.upstream
        else { return }
        exchange?.timedOut = true
        upstream.handler.markTimedOut()
        upstream.channel.close(promise: nil)
    }

    func upstream(receivedHead head: HTTPResponseHead, facts: RequestRules.ResponseHeadFacts) {
        guard case .proxying = state, let current = exchange, let context else { return }
        clearResponseDeadline()
        current.responseStarted = true
        current.status = Int(head.status.code)
        var keepAlive = current.keepAlive && !endsAfterThisResponse
        var out = context.channel.allocator.buffer(capacity: 512)
        let closeDelimited = framer.start(
            status: head.status, hasContentLength: facts.hasContentLength,
            method: current.head.method, version: current.head.version, into: &out)
        if closeDelimited {
            keepAlive = false
            closeAfterResponse = true
        }
        RequestRules.writeDownstreamHeaders(head.headers, listing: facts.listing, framer: framer, into: &out)
        if let cookie = current.stickyCookie { ResponseFramer.writeHeader("Set-Cookie", cookie, into: &out) }
        framer.finishHead(keepAlive: keepAlive, into: &out)
        current.announcedKeepAlive = keepAlive
        writePending()
        pendingOut = out
    }

    func upstream(receivedBody body: ByteBuffer) {
        guard case .proxying = state, let current = exchange else { return }
        current.bytesOut += body.readableBytes
        writeBody(body)
    }

    func upstreamResponseEnded() {
        guard case .proxying = state, let current = exchange else { return }
        // Written in upstreamExchangeFinished, once the pool has the connection back.
        if !current.requestEnded { discardingBody = true }
        current.upstream = nil
    }

    func upstreamReadComplete() {
        writePending()
        context?.flush()
    }

    // MARK: - Writing responses

    private func gather(_ write: (inout ByteBuffer) -> Void) {
        guard let context else { return }
        if pendingOut == nil { pendingOut = context.channel.allocator.buffer(capacity: 1024) }
        write(&pendingOut!)
    }

    /// Sends what was gathered down the pipeline (not flushed). With a promise and nothing
    /// gathered, an empty write carries the promise, so it completes after everything before it.
    private func writePending(promise: EventLoopPromise<Void>? = nil) {
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

    private func writeBody(_ body: ByteBuffer) {
        guard framer.writesBody, body.readableBytes > 0, let context else { return }
        let chunked = framer.framing == .chunked
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

    func upstreamExchangeFinished() {
        guard case .proxying = state, let context, exchange != nil else { return }
        finishExchange(context: context)
    }

    func upstream(failed error: any Error, responseStarted: Bool) {
        guard case .proxying = state, let current = exchange, let context else { return }
        clearResponseDeadline()
        current.upstream = nil
        if responseStarted {
            // Part of the response went out; the client must see the connection end, not a forged error.
            loop.logger.warning("backend failed mid-response", metadata: ["backend": "\(current.backend ?? "")"])
            context.close(promise: nil)
            return
        }
        // Failed before any response byte. Safe to send again when the request cannot have had an
        // effect twice: an idempotent method, or a body not sent yet. A reused connection gets one
        // fresh try whatever the backend's `retries` (the server may just have closed it while idle);
        // after that, up to `retries` more on other servers, a fresh connection each time.
        let resendable = RequestRules.isIdempotent(current.head.method) && current.bodyBytesIn == 0
        let budget = loop.configuration.backend(named: current.backend ?? "")?.retries ?? 0
        if resendable, !current.timedOut, current.reused ? !current.retried : current.retries < budget,
            let group = current.group, let server = current.server, let route = current.route
        {
            if current.reused {
                exchange?.retried = true
            } else {
                exchange?.retries += 1
                exchange?.triedServers.insert(server)
                group.recordFailure(server: server)
            }
            current.pool?.recordRetry()
            attemptHTTP(group: group, route: route, fresh: true)
            return
        }
        let status: HTTPResponseStatus = current.timedOut ? .gatewayTimeout : .badGateway
        let reason = current.timedOut ? "backend did not answer in time" : "backend closed the connection"
        respondLocally(
            status: status,
            body: "ferry: \(reason) (route \(current.routePath ?? "?"), backend \(current.backend ?? "?"))\n",
            close: !current.requestEnded)
    }

    func upstream(writabilityChanged writable: Bool) {
        // Backpressure for request bodies: read from the client only while the backend keeps up.
        setClientReads(paused: !writable)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // Backpressure for responses: read from the backend only while the client keeps up.
        if let upstream = exchange?.upstream {
            upstream.setReads(paused: !context.channel.isWritable)
        }
        context.fireChannelWritabilityChanged()
    }

    /// An error after the request started (body too large): no reuse, answer if still possible.
    private func abortExchange(status: HTTPResponseStatus, body: String) {
        guard let current = exchange else { return }
        if let upstream = current.upstream {
            upstream.handler.delegate = nil
            current.pool?.close(upstream, reason: .error)
        }
        exchange?.upstream = nil
        if current.responseStarted {
            context?.close(promise: nil)
        } else {
            respondLocally(status: status, body: body, close: true)
        }
    }

    // MARK: - Responses

    private func respondLocally(
        status: HTTPResponseStatus, body: String, close: Bool, extraHeaders: HTTPHeaders = HTTPHeaders()
    ) {
        guard let context, let current = exchange else { return }
        state = .respondingLocally
        if !current.requestEnded { discardingBody = true }
        // A client waiting for 100 Continue that gets a final response instead may or may not send
        // its body; reading on could take its next request for that body. Close instead.
        let bodyMayNotCome =
            !current.requestEnded && current.facts.expectsContinue && current.facts.announcesBody
            && !current.continueSent
        let keepAlive = current.keepAlive && !close && !bodyMayNotCome && !endsAfterThisResponse
        if !keepAlive { closeAfterResponse = true }
        current.status = Int(status.code)
        current.responseStarted = true
        current.bytesOut = body.utf8.count
        gatherCompleteResponse(
            status: status, keepAlive: keepAlive, bodyLength: body.utf8.count, context: context,
            headers: { out, _ in
                for (name, value) in extraHeaders { ResponseFramer.writeHeader(name, value, into: &out) }
                ResponseFramer.writeHeader("Server", "ferry", into: &out)
                ResponseFramer.writeHeader("Content-Type", "text/plain; charset=utf-8", into: &out)
            },
            body: { $0.writeString(body) })
        finishExchange(context: context)
    }

    /// Gathers a whole response whose body is known (a local answer, a refused upgrade's answer):
    /// status line, `headers` (given the framing decided), Content-Length, Connection, then the
    /// body unless the method or status has none. `finishExchange` sends it.
    private func gatherCompleteResponse(
        status: HTTPResponseStatus, keepAlive: Bool, bodyLength: Int, context: ChannelHandlerContext,
        headers: (inout ByteBuffer, ResponseFramer) -> Void, body: (inout ByteBuffer) -> Void
    ) {
        guard let current = exchange else { return }
        writePending()
        var out = context.channel.allocator.buffer(capacity: 512 + bodyLength)
        _ = framer.start(
            status: status, hasContentLength: true, method: current.head.method, version: current.head.version,
            into: &out)
        headers(&out, framer)
        if framer.framing != .none { ResponseFramer.writeHeader("Content-Length", String(bodyLength), into: &out) }
        framer.finishHead(keepAlive: keepAlive, into: &out)
        if framer.writesBody { body(&out) }
        pendingOut = out
    }

    private func finishExchange(context: ChannelHandlerContext) {
        guard let current = exchange else { return }
        clearResponseDeadline()
        exchange = nil
        requestsCompleted += 1
        let close = endsAfterThisResponse || !current.keepAlive
        let status = current.status ?? 0
        loop.recordResponse(
            route: loop.routeStatsIndex(current.routeIndex, version: current.routeVersion, path: current.routePath),
            status: status, bytesIn: current.bodyBytesIn, bytesOut: current.bytesOut)
        accessLog(current, status: status)
        if let terminator = framer.terminator { gather { $0.writeStaticString(terminator) } }
        framer = ResponseFramer()
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
            if let rejection = deferredRejection, pipelined.isEmpty {
                writeRawAndClose(status: rejection.status, reason: rejection.reason)
                return
            }
            waitForNextRequest()
            if pipelined.isEmpty {
                // Request-body backpressure may have paused reads; the next request must be read.
                setClientReads(paused: false)
                // A drain that came while this keep-alive response was going out (see `drain`).
                if loop.draining && current.announcedKeepAlive { drain() }
            } else {
                // Not from inside this call: it may run within the upstream connection's own
                // callbacks, which the next request could lease again.
                let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
                context.eventLoop.execute { bound.value.replayPipelined() }
            }
        }
    }

    /// Hands queued parts of pipelined requests over, up to the next request that must wait.
    private func replayPipelined() {
        guard let context else { return }
        while let part = pipelined.first {
            if case .head = part, !isIdle { return }
            pipelined.removeFirst()
            handle(part, context: context)
        }
        if pipelined.isEmpty && deferredRejection == nil { setClientReads(paused: false) }
    }

    private func accessLog(_ exchange: Exchange, status: Int) {
        guard let logger = loop.accessLogger else { return }
        let milliseconds = (NIODeadline.now() - exchange.started).nanoseconds / 1_000_000
        let head = exchange.head
        switch loop.configuration.master.accessLog {
        case .off:
            return
        case .combined:
            let agent = head.headers.first(name: "user-agent") ?? "-"
            let referer = head.headers.first(name: "referer") ?? "-"
            logger.info(
                "\(clientAddress ?? "-") - - \"\(head.method.rawValue) \(head.uri) HTTP/\(head.version.major).\(head.version.minor)\" \(status) \(exchange.bytesOut) \"\(referer)\" \"\(agent)\" route=\(exchange.routePath ?? "-") backend=\(exchange.backend ?? "-") reused=\(exchange.reused ? "yes" : "no") duration=\(milliseconds)ms"
            )
        case .json:
            func quoted(_ text: String) -> String {
                "\"" + text.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"") + "\""
            }
            logger.info(
                "{\"client\":\(quoted(clientAddress ?? "")),\"method\":\(quoted(head.method.rawValue)),\"uri\":\(quoted(head.uri)),\"status\":\(status),\"bytes\":\(exchange.bytesOut),\"route\":\(quoted(exchange.routePath ?? "")),\"backend\":\(quoted(exchange.backend ?? "")),\"reused\":\(exchange.reused),\"duration_ms\":\(milliseconds)}"
            )
        }
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

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let parserError = error as? HTTPParserError, parserError == .invalidEOFState {
            requestCutByFIN(context: context)
            return
        }
        if let parserError = error as? HTTPParserError {
            let rejection: (status: HTTPResponseStatus, reason: String) =
                if case .headerOverflow = parserError {
                    (
                        HTTPResponseStatus(statusCode: 431, reasonPhrase: "Request Header Fields Too Large"),
                        "request head too large"
                    )
                } else {
                    (.badRequest, "malformed request (\(parserError))")
                }
            switch state {
            case .proxying where exchange?.requestEnded == true || !pipelined.isEmpty:
                // The malformed request is a pipelined one behind the exchange in flight: it gets
                // its answer after that exchange's response, then the connection closes. If the
                // error came inside its body, its head is queued: it must not be sent upstream
                // (its body will never come: the backend waited for it until the response timeout).
                dropIncompletePipelinedRequest()
                deferredRejection = rejection
                setClientReads(paused: true)
            case .proxying where exchange?.responseStarted == true:
                // The request's own body went bad while its response is being relayed: a 400 now
                // would land inside that response's body. Closing aborts the exchange (its
                // upstream connection is closed, never pooled); the client sees a cut response.
                state = .closed
                context.close(promise: nil)
            case .idle, .respondingLocally, .proxying:
                writeRawAndClose(status: rejection.status, reason: rejection.reason)
            case .awaitingTunnel, .tunneling, .closed:
                context.close(promise: nil)
            }
            return
        }
        context.close(promise: nil)
    }

    /// The client's FIN came in the middle of a request (its head, or its body): nobody is left to
    /// read an answer to it. An exchange already in flight for it is aborted: closing the
    /// connection closes its upstream connection, which is never pooled (`channelInactive`). A
    /// complete request ahead of it, still being answered, is not: the cut one was pipelined.
    private func requestCutByFIN(context: ChannelHandlerContext) {
        clientInputClosed = true
        dropIncompletePipelinedRequest()
        let answering = exchange?.requestEnded == true && !discardingBody
        switch state {
        case .proxying where answering, .respondingLocally where answering, .closed:
            break
        case .idle, .proxying, .respondingLocally, .awaitingTunnel, .tunneling:
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
        // promised; then the connection drains as an idle one (`finishExchange`), and a next
        // request that comes first is answered with `Connection: close` (`loop.draining`).
        if let current = exchange, current.announcedKeepAlive { return }
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

    /// 503 with `Retry-After: 1`: nothing of the backend can take the request now.
    private func respondUnavailable(_ reason: String, close: Bool = false) {
        var headers = HTTPHeaders()
        headers.add(name: "Retry-After", value: "1")
        respondLocally(status: .serviceUnavailable, body: "ferry: \(reason)\n", close: close, extraHeaders: headers)
        setClientReads(paused: false)
    }

    /// The server the request's sticky cookie names, if the backend has one.
    private func stickyServer(_ group: UpstreamGroup, _ head: HTTPRequestHead) -> Int? {
        guard let name = group.backend.stickyCookie, let value = RequestRules.cookie(named: name, in: head.headers)
        else { return nil }
        return group.server(stickyValue: value)
    }

    /// The hash policy's key for this request: the client's address, a header's value or a
    /// cookie's; nil when the backend does not hash or the request lacks it (then: least load).
    private func balanceKey(_ group: UpstreamGroup, _ head: HTTPRequestHead) -> String? {
        switch group.hashKey {
        case nil: return nil
        case .clientAddress: return clientAddress
        case .header(let name): return head.headers.first(name: name)
        case .cookie(let name): return RequestRules.cookie(named: name, in: head.headers)
        }
    }

    // MARK: - WebSocket tunnel

    private func startTunnel(
        head: HTTPRequestHead, route: RouteConfiguration, backend: BackendConfiguration, context: ChannelHandlerContext
    ) {
        guard let group = loop.group(for: backend.name) else { return }
        // Counted from now, so that upgrades arriving together spread over the servers.
        guard let server = group.pick(key: balanceKey(group, head), preferred: stickyServer(group, head)) else {
            state = .proxying
            return respondUnavailable("every server of backend \(backend.name) is draining", close: true)
        }
        group.tunnelOpened(server: server)
        let connector = loop.tunnelConnector(to: backend.servers[server])
        state = .awaitingTunnel
        context.channel.setOption(.autoRead, value: false).whenComplete { _ in }
        let upstreamHead = RequestRules.upstreamHead(
            head, uri: exchange?.upstreamURI ?? head.uri, clientAddress: clientAddress, tls: tls, upgrade: true)
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let connectTimeout = route.timeouts.connect ?? backend.connectTimeout
        loop.waitUntilAvailable(backend)
            .flatMap {
                connector.upgrade(
                    upstreamHead, connectTimeout: connectTimeout, responseTimeout: route.timeouts.response)
            }
            .whenComplete { result in
                let handler = bound.value
                switch result {
                case .success(.switching(let response, let upstream)):
                    group.recordSuccess(server: server)
                    handler.completeTunnel(
                        response: response, upstream: upstream, backend: backend.name, server: server,
                        closed: { group.tunnelClosed(server: server) })
                case .success(.refused(let response, let body, let upstream)):
                    group.tunnelClosed(server: server)
                    handler.tunnelRefused(response: response, body: body, upstream: upstream, backend: backend.name)
                case .failure(let error):
                    group.tunnelClosed(server: server)
                    group.recordFailure(server: server)
                    handler.state = .proxying
                    handler.leaseFailed(error, backend: backend, route: route)
                    handler.closeAfterResponse = true
                }
            }
    }

    private func tunnelRefused(response: HTTPResponseHead, body: ByteBuffer, upstream: any Channel, backend: String) {
        upstream.close(promise: nil)
        loop.tunnelStats[backend]?.opened += 1
        loop.tunnelStats[backend]?.closed["refused", default: 0] += 1
        guard let context, let current = exchange else { return }
        // The client's decoder has stopped parsing after an upgrade request: this connection ends here.
        closeAfterResponse = true
        state = .proxying
        current.responseStarted = true
        current.status = Int(response.status.code)
        current.bytesOut = body.readableBytes
        gatherCompleteResponse(
            status: response.status, keepAlive: false, bodyLength: body.readableBytes, context: context,
            headers: { out, framer in
                RequestRules.writeDownstreamHeaders(
                    response.headers, listing: RequestRules.ConnectionListing(response.headers), framer: framer,
                    dropContentLength: true, into: &out)
            },
            body: { $0.writeImmutableBuffer(body) })
        finishExchange(context: context)
    }

    /// - Parameter closed: called once when the tunnel ends (or cannot start): the server's count.
    private func completeTunnel(
        response: HTTPResponseHead, upstream: any Channel, backend: String, server: Int,
        closed: @escaping () -> Void
    ) {
        guard let context, case .awaitingTunnel = state, let current = exchange else {
            upstream.close(promise: nil)
            closed()
            return
        }
        state = .tunneling
        deadline = nil
        let statsIndex = loop.routeStatsIndex(
            current.routeIndex, version: current.routeVersion, path: current.routePath)
        loop.recordResponse(route: statsIndex, status: 101, bytesIn: 0, bytesOut: 0)
        accessLog(current, status: 101)
        exchange = nil
        loop.tunnelStats[backend]?.opened += 1
        loop.tunnelStats[backend]?.upgrades += 1
        if let index = statsIndex {
            loop.routeStats[index].upgrades += 1
            loop.routeStats[index].activeTunnels += 1
        }
        loop.activeTunnels += 1
        // The 101 keeps Upgrade/Connection/Sec-WebSocket-* as the backend sent them (it has no
        // body: no Content-Length or Transfer-Encoding).
        writePending()
        var out = context.channel.allocator.buffer(capacity: 512)
        out.writeStaticString("HTTP/1.1 101 Switching Protocols\r\n")
        for (name, value) in response.headers
        where !RequestRules.nameEquals(name, "content-length") && !RequestRules.nameEquals(name, "transfer-encoding") {
            ResponseFramer.writeHeader(name, value, into: &out)
        }
        out.writeStaticString("\r\n")
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)

        let (clientGlue, upstreamGlue) = GlueHandler.matchedPair()
        let loopState = loop
        let (routeIndex, routeVersion, routePath) = (statsIndex, loop.routeVersion, current.routePath)
        var closedOnce = false
        let tunnelKey = ObjectIdentifier(clientGlue)
        let idle = TunnelIdleTimer(
            timeout: limits.websocketIdleTimeout.timeAmount, client: context.channel, upstream: upstream)
        loopState.tunnelChannels[tunnelKey] = TunnelChannels(
            backend: backend, server: server, client: context.channel, upstream: upstream, clientGlue: clientGlue,
            upstreamGlue: upstreamGlue,
            idle: idle)
        let tunnelClosed = {
            guard !closedOnce else { return }
            closedOnce = true
            loopState.tunnelChannels.removeValue(forKey: tunnelKey)
            loopState.activeTunnels -= 1
            if let index = loopState.routeStatsIndex(routeIndex, version: routeVersion, path: routePath) {
                loopState.routeStats[index].activeTunnels -= 1
            }
            loopState.tunnelStats[backend]?.closed[PoolCloseReason.upgraded.rawValue, default: 0] += 1
            closed()
        }
        clientGlue.onClose = tunnelClosed
        upstreamGlue.onClose = tunnelClosed
        clientGlue.onActivity = { idle.touch() }
        upstreamGlue.onActivity = { idle.touch() }
        do {
            // Order matters: the glue must be in place before the decoders are removed, because
            // removing a decoder hands its leftover bytes (early frames) to the next handler.
            let client = context.pipeline.syncOperations
            try client.addHandler(clientGlue)
            let upstreamPipeline = upstream.pipeline.syncOperations
            try upstreamPipeline.addHandler(upstreamGlue)
            _ = upstreamPipeline.removeHandler(name: "tunnel-upgrade")
            _ = upstreamPipeline.removeHandler(name: "tunnel-encoder")
            _ = upstreamPipeline.removeHandler(name: "tunnel-decoder")
            _ = client.removeHandler(name: ProxyServer.decoderName)
            _ = client.removeHandler(self)
        } catch {
            loop.logger.error("could not set up the WebSocket tunnel", metadata: ["error": "\(error)"])
            upstream.close(promise: nil)
            context.close(promise: nil)
            return
        }
        context.channel.setOption(.autoRead, value: true).whenComplete { _ in }
        context.channel.read()
        upstream.read()
        // Removing a decoder hands its leftover bytes (a client's first frame sent with its
        // request, a server's greeting sent with its 101) to the glue from a task of its own, with
        // no read-complete event after them: nothing flushed them, and a peer waiting for that very
        // message waited for ever. A client FIN read together with the request reached this
        // handler, not the glue, and was lost the same way (the tunnel stayed open, the client's
        // socket in CLOSE_WAIT). This task runs after the decoders' (tasks run in order).
        let client = context.channel
        let clientFinished = clientInputClosed
        context.eventLoop.execute {
            upstream.flush()
            client.flush()
            if clientFinished { client.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed) }
        }
    }
}

@available(*, unavailable)
extension ProxyHandler: Sendable {}

/// Closes a tunnel with no traffic in either direction for `timeout`.
///
/// Traffic only sets a flag (no clock read, no timer per message); the loop's sweep turns the flag
/// into a timestamp once per tick, so the timeout is exact to within one sweep interval.
final class TunnelIdleTimer {
    let timeout: TimeAmount
    let client: any Channel
    let upstream: any Channel
    private var lastActivity = NIODeadline.now()
    private var sawActivity = false

    init(timeout: TimeAmount, client: any Channel, upstream: any Channel) {
        self.timeout = timeout
        self.client = client
        self.upstream = upstream
    }

    func touch() { sawActivity = true }

    /// Called by the loop's sweep: closes both sides once the tunnel has been quiet for `timeout`.
    func sweep(now: NIODeadline) {
        if sawActivity {
            sawActivity = false
            lastActivity = now
        } else if now - lastActivity >= timeout {
            client.close(promise: nil)
            upstream.close(promise: nil)
        }
    }
}

/// Tells the proxy handler when the first byte of a new request arrives (for the header timeout).
final class ConnectionActivity {
    var onFirstByte: (() -> Void)?
    private var armed = true

    func arm() { armed = true }

    func sawBytes() {
        guard armed else { return }
        armed = false
        onFirstByte?()
    }
}

/// One of NIO's HTTP decoders (`HTTPDecoder`), as a `ByteToMessageDecoder` of Ferry's.
///
/// - Client side: it tells `ConnectionActivity` when bytes arrive (for the header timeout), inside
///   the decoder rather than from a handler in front of it, which cost one more pipeline hop on
///   every read.
/// - Upstream side: NIO's `ByteToMessageHandler` of a response decoder also observes writes (the
///   decoder must know each request's method: a response to HEAD has no body), which passes every
///   request part through it on the way to `HTTPRequestEncoder`. Ferry writes requests as bytes
///   from `UpstreamHTTPHandler`'s context and tells the decoder the method itself
///   (`HTTPDecoder.write(data:)`); wrapped, the decoder's handler is inbound-only, so those byte
///   writes never pass through it.
struct WrappedHTTPDecoder<In, Out>: ByteToMessageDecoder {
    typealias InboundOut = In
    let decoder: HTTPDecoder<In, Out>
    let activity: ConnectionActivity?

    init(_ decoder: HTTPDecoder<In, Out>, activity: ConnectionActivity? = nil) {
        self.decoder = decoder
        self.activity = activity
    }

    func decoderAdded(context: ChannelHandlerContext) { decoder.decoderAdded(context: context) }
    func decoderRemoved(context: ChannelHandlerContext) { decoder.decoderRemoved(context: context) }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if let activity, buffer.readableBytes > 0 { activity.sawBytes() }
        return try decoder.decode(context: context, buffer: &buffer)
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decoder.decodeLast(context: context, buffer: &buffer, seenEOF: seenEOF)
    }
}

extension Duration {
    var timeAmount: TimeAmount { .milliseconds(wholeMilliseconds) }
}
