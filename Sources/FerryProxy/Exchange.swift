import FerryConfig
import Logging
import NIOCore
import NIOHTTP1

/// One request's life, whatever protocol the client speaks: route, the per-request protocol
/// decision, a lease from the HTTP pool or a fresh connection from the tunnel connector, the relay
/// of the response, retries, accounting and the access log.
///
/// A front end (`ExchangeFrontEnd`) creates it for a request head, feeds it the request's body and
/// end, and is told what to send back; the exchange never touches the client's channel. The
/// per-request protocol decision is the heart of Ferry: an `Upgrade: websocket` request goes to a
/// fresh connection from `TunnelConnector`; anything else leases from the `HTTPConnectionPool`.
///
/// A class: it is read and updated several times per request, and copying a struct of this many
/// references cost a retain per field each time (seen in `perf`).
final class Exchange: UpstreamExchangeDelegate {
    enum Phase {
        /// Created; not routed yet.
        case routing
        /// Forwarding over HTTP (leasing, sending, or relaying the response).
        case forwarding
        /// The upgrade request went to the backend; waiting for its answer.
        case awaitingTunnel
        /// Answered (locally, or the response was relayed whole), tunneled, or abandoned.
        case finished
    }

    var request: ExchangeRequest
    /// One pass over the request's headers, read by every later decision.
    var facts: RequestRules.RequestHeadFacts { request.facts }
    let client: ClientInfo
    let started: NIODeadline
    /// The client may send another request after this one (its head and the drain say so).
    let keepAlive: Bool
    var phase = Phase.routing
    let loop: ProxyLoopState
    let frontEnd: any ExchangeFrontEnd

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
    /// The backend's response ended; what is left of the request body is not sent.
    var responseEnded = false
    var timedOut = false
    /// `100 Continue` was sent for an `Expect: 100-continue` request.
    var continueSent = false

    init(
        request: ExchangeRequest, keepAlive: Bool, client: ClientInfo, loop: ProxyLoopState,
        frontEnd: any ExchangeFrontEnd
    ) {
        self.request = request
        self.keepAlive = keepAlive
        self.client = client
        self.started = .now()
        self.loop = loop
        self.frontEnd = frontEnd
    }

    var limits: LimitSettings { loop.configuration.limits }

    /// Whether the backend's response (or Ferry's) is being relayed: the request body still goes on.
    var isForwarding: Bool { phase == .forwarding }

    // MARK: - Front end → exchange

    /// Refuses the request for a reason its front end found (framing, limits).
    func refuse(_ rejection: RequestRules.Rejection) {
        let message: String
        switch rejection {
        case .badRequest(let reason), .headersTooLarge(let reason): message = reason
        case .bodyTooLarge: message = "request body larger than \(limits.maxBodyBytes) bytes"
        }
        respondLocally(status: rejection.status, body: "ferry: \(message)\n", close: true)
    }

    /// Refuses the request (and returns true) when its framing or its head breaks the rules or the
    /// `[limits]`: the checks every front end runs on a request as received, before `start`.
    func refuseIfInvalid() -> Bool {
        let facts = request.facts
        guard
            let rejection = facts.framingRejection(version: request.version, maxBodyBytes: limits.maxBodyBytes)
                ?? facts.limitsRejection(
                    uri: request.uri, maxHeaderBytes: limits.maxHeaderBytes, maxHeaderCount: limits.maxHeaderCount)
        else { return false }
        refuse(rejection)
        return true
    }

    /// Routes the request and starts on it.
    func start() {
        if !client.tls && request.uri.hasPrefix(Self.acmeChallengePrefix)
            && (client.redirectToHTTPSPort != nil || loop.configuration.usesACME)
        {
            answerACMEChallenge(directory: loop.configuration.acmeChallengeDirectory)
            return
        }
        if let port = client.redirectToHTTPSPort {
            redirectToHTTPS(port: port)
            return
        }
        if request.method == .CONNECT && request.extendedConnectProtocol == nil {
            // Ferry is a reverse proxy: it opens no tunnel to where a client names. Relayed to a
            // backend, a CONNECT's answer would be read by HTTP rules the backend may not follow
            // (a 2xx makes the connection a tunnel; NIO-based backends answer others without a
            // length and keep the connection open, which hung the exchange). The connection ends: what
            // follows a CONNECT is not read as HTTP.
            var headers = HTTPHeaders()
            headers.add(name: "Allow", value: "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH")
            respondLocally(
                status: .methodNotAllowed, body: "ferry: CONNECT is not supported\n", close: true,
                extraHeaders: headers)
            return
        }
        var host: String?
        if loop.router.hasSites || client.certificates != nil {
            host = request.first(name: "Host").flatMap(HostName.normalize)
        }
        // No domain fronting across certificates: a connection whose SNI selected one certificate
        // may not ask for a host that another certificate of this listener serves (RFC 9110
        // §15.5.20). Without SNI there is nothing to compare.
        if let certificates = client.certificates, let serverName = client.serverName, let host,
            certificates.index(forServerName: serverName) != certificates.index(forServerName: host)
        {
            respondLocally(
                status: .misdirectedRequest,
                body: "ferry: this connection's certificate is for \(serverName), not for \(host)\n", close: true)
            return
        }
        switch loop.router.route(uri: request.uri, host: host) {
        case .badRequest:
            respondLocally(status: .badRequest, body: "ferry: malformed request target\n", close: true)
        case .unsafePath(let reason):
            respondLocally(status: .badRequest, body: "ferry: \(reason)\n", close: true)
        case .notFound:
            respondLocally(status: .notFound, body: "ferry: no route for this path\n", close: false)
        case .matched(let match):
            routeIndex = match.index
            routeVersion = loop.routeVersion
            routePath = match.route.path
            upstreamURI = match.upstreamURI
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
                backend = backendName
                dispatch(route: match.route, backendName: backendName)
            }
        }
    }

    func receivedBody(_ body: ByteBuffer) {
        guard phase == .forwarding, !responseEnded else { return }
        bodyBytesIn += body.readableBytes
        if bodyBytesIn > limits.maxBodyBytes {
            abort(status: .payloadTooLarge, body: "ferry: request body too large\n")
            return
        }
        if let upstream {
            upstream.handler.sendBody(body)
            upstream.handler.flush()
        } else {
            // Until the upstream is ready, read nothing more (bounded buffering of the body).
            bufferedBody.append(body)
            frontEnd.setRequestBodyPaused(true)
        }
    }

    func receivedEnd() {
        requestEnded = true
        if phase == .forwarding, !responseEnded, let upstream {
            upstream.handler.sendEnd()
        }
    }

    /// The client left mid-exchange: the upstream connection cannot be reused, and nothing more
    /// is sent to the front end.
    func clientGone() {
        phase = .finished
        if let upstream {
            upstream.handler.delegate = nil
            pool?.close(upstream, reason: .error)
        }
        upstream = nil
    }

    /// Backpressure for responses: read from the backend only while the client keeps up.
    func clientWritabilityChanged(writable: Bool) {
        upstream?.setReads(paused: !writable)
    }

    /// The backend did not start its response in time: 504 (see `upstream(failed:)`).
    func responseDeadlinePassed() {
        guard phase == .forwarding, !responseStarted, let upstream else { return }
        timedOut = true
        upstream.handler.markTimedOut()
        upstream.channel.close(promise: nil)
    }

    /// An error after the request started (body too large): no reuse, answer if still possible.
    private func abort(status: HTTPResponseStatus, body: String) {
        if let upstream {
            upstream.handler.delegate = nil
            pool?.close(upstream, reason: .error)
        }
        upstream = nil
        if responseStarted {
            phase = .finished
            frontEnd.abortResponse()
        } else {
            respondLocally(status: status, body: body, close: true)
        }
    }

    // MARK: - The protocol decision

    private func dispatch(route: RouteConfiguration, backendName: String) {
        guard let backend = loop.configuration.backend(named: backendName) else {
            respondLocally(status: .badGateway, body: "ferry: route \(route.path) has no backend\n", close: false)
            return
        }
        switch (facts.upgradeKind(request), route.protocol) {
        case (.invalid(let reason), _):
            respondLocally(status: .badRequest, body: "ferry: \(reason)\n", close: true)
        case (.websocket, .http):
            respondLocally(
                status: .badRequest, body: "ferry: route \(route.path) serves HTTP only; WebSocket upgrade refused\n",
                close: true)
        case (.websocket, .auto), (.websocket, .websocket):
            startTunnel(route: route, backend: backend)
        case (.none, .websocket):
            var headers = HTTPHeaders()
            headers.add(name: "Upgrade", value: "websocket")
            respondLocally(
                status: .upgradeRequired,
                body: "ferry: route \(route.path) accepts WebSocket connections only\n", close: false,
                extraHeaders: headers)
        case (.none, .auto), (.none, .http):
            startHTTP(backend: backend, route: route)
        }
    }

    // MARK: - Local answers and the end

    func respondLocally(
        status: HTTPResponseStatus, body: String, close: Bool, extraHeaders: HTTPHeaders = HTTPHeaders()
    ) {
        guard phase != .finished else { return }
        // A client waiting for 100 Continue that gets a final response instead may or may not send
        // its body; reading on could take its next request for that body. Close instead.
        let bodyMayNotCome = !requestEnded && facts.expectsContinue && facts.announcesBody && !continueSent
        self.status = Int(status.code)
        responseStarted = true
        bytesOut = body.utf8.count
        frontEnd.sendLocalResponse(status: status, headers: extraHeaders, body: body, close: close || bodyMayNotCome)
        finish()
    }

    /// 503 with `Retry-After: 1`: nothing of the backend can take the request now.
    func respondUnavailable(_ reason: String, close: Bool = false) {
        var headers = HTTPHeaders()
        headers.add(name: "Retry-After", value: "1")
        respondLocally(status: .serviceUnavailable, body: "ferry: \(reason)\n", close: close, extraHeaders: headers)
        frontEnd.setRequestBodyPaused(false)
    }

    func leaseFailed(_ error: any Error, backend: BackendConfiguration, route: RouteConfiguration, close: Bool) {
        let (status, reason) = Self.classify(error)
        loop.logger.warning(
            "backend unavailable",
            metadata: ["route": "\(route.path)", "backend": "\(backend.name)", "error": "\(error)"])
        var headers = HTTPHeaders()
        if status == .serviceUnavailable { headers.add(name: "Retry-After", value: "1") }
        respondLocally(
            status: status, body: "ferry: \(reason) (route \(route.path), backend \(backend.name))\n", close: close,
            extraHeaders: headers)
        frontEnd.setRequestBodyPaused(false)
    }

    static func classify(_ error: any Error) -> (HTTPResponseStatus, String) {
        if case ProxyServerError.backendUnavailable = error { return (.serviceUnavailable, "backend is starting") }
        if case ProxyError.upstreamTimeout = error { return (.gatewayTimeout, "backend did not answer in time") }
        if let channelError = error as? ChannelError, case .connectTimeout = channelError {
            return (.gatewayTimeout, "backend did not accept the connection in time")
        }
        return (.badGateway, "backend refused or unreachable")
    }

    /// The response is complete: stats, the access log, then the front end ends it on the wire.
    func finish() {
        guard phase != .finished else { return }
        phase = .finished
        frontEnd.setResponseDeadline(nil)
        let status = status ?? 0
        loop.recordResponse(
            route: loop.routeStatsIndex(routeIndex, version: routeVersion, path: routePath),
            status: status, bytesIn: bodyBytesIn, bytesOut: bytesOut)
        accessLog(status: status)
        frontEnd.exchangeFinished(self)
    }

    func accessLog(status: Int) {
        guard let logger = loop.accessLogger else { return }
        let milliseconds = (NIODeadline.now() - started).nanoseconds / 1_000_000
        switch loop.configuration.master.accessLog {
        case .off:
            return
        case .combined:
            let agent = request.first(name: "user-agent") ?? "-"
            let referer = request.first(name: "referer") ?? "-"
            logger.info(
                "\(client.address ?? "-") - - \"\(request.method.rawValue) \(request.uri) HTTP/\(request.version.major).\(request.version.minor)\" \(status) \(bytesOut) \"\(referer)\" \"\(agent)\" route=\(routePath ?? "-") backend=\(backend ?? "-") reused=\(reused ? "yes" : "no") duration=\(milliseconds)ms"
            )
        case .json:
            func quoted(_ text: String) -> String {
                "\"" + text.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"") + "\""
            }
            logger.info(
                "{\"client\":\(quoted(client.address ?? "")),\"method\":\(quoted(request.method.rawValue)),\"uri\":\(quoted(request.uri)),\"status\":\(status),\"bytes\":\(bytesOut),\"route\":\(quoted(routePath ?? "")),\"backend\":\(quoted(backend ?? "")),\"reused\":\(reused),\"duration_ms\":\(milliseconds)}"
            )
        }
    }

    // MARK: - Balancing

    /// The server the request's sticky cookie names, if the backend has one.
    func stickyServer(_ group: UpstreamGroup) -> Int? {
        guard let name = group.backend.stickyCookie,
            let value = RequestRules.cookie(named: name, in: request.values(name: "cookie"))
        else { return nil }
        return group.server(stickyValue: value)
    }

    /// The hash policy's key for this request: the client's address, a header's value or a
    /// cookie's; nil when the backend does not hash or the request lacks it (then: least load).
    func balanceKey(_ group: UpstreamGroup) -> String? {
        switch group.hashKey {
        case nil: return nil
        case .clientAddress: return client.address
        case .header(let name): return request.first(name: name)
        case .cookie(let name): return RequestRules.cookie(named: name, in: request.values(name: "cookie"))
        }
    }
}

@available(*, unavailable)
extension Exchange: Sendable {}
