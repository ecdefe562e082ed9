import FerryConfig
import Logging
import NIOCore
import NIOHTTP1

/// HTTP forwarding: a lease from the server's pool (or a new connection), the request sent, the
/// response relayed to the front end, retries when nothing of the response came.
extension Exchange {
    func startHTTP(backend: BackendConfiguration, route: RouteConfiguration) {
        guard let group = loop.group(for: backend.name) else { return }
        phase = .forwarding
        if facts.expectsContinue, facts.announcesBody, !requestEnded {
            // As nginx does: the request is accepted (routed, within limits), so the client may
            // send its body now, whatever the backend (its own 100 would be one more round trip,
            // and an HTTP/1.0 backend sends none: the client then waits out its own timeout, 1 s
            // for curl). The upstream request carries no Expect (`writeUpstreamRequest`).
            continueSent = true
            frontEnd.sendContinue()
        }
        attemptHTTP(group: group, route: route, fresh: false)
    }

    /// One try of the exchange's request at a server the balancer picks among those it has not
    /// failed on yet: an idle pooled connection, else a new one (`fresh`: always a new one).
    func attemptHTTP(group: UpstreamGroup, route: RouteConfiguration, fresh: Bool) {
        guard phase == .forwarding else { return }
        let backend = group.backend
        let key = balanceKey(group)
        if !triedServers.isEmpty, group.pick(key: key, excluding: triedServers) == nil {
            // Every server failed once: the round starts again (`connectFailed` waited its backoff).
            triedServers = []
        }
        let sticky = stickyServer(group)
        guard let server = group.pick(key: key, excluding: triedServers, preferred: sticky) else {
            // Only when every server is draining (`ferry server drain`).
            return respondUnavailable("every server of backend \(backend.name) is draining (route \(route.path))")
        }
        let pool = group.pools[server]
        self.group = group
        self.route = route
        self.pool = pool
        self.server = server
        attempts += 1
        stickyCookie = nil
        if let name = group.backend.stickyCookie, sticky != server {
            stickyCookie =
                "\(name)=\(group.stickyValues[server]); Path=/; HttpOnly; SameSite=Lax" + (client.tls ? "; Secure" : "")
        }
        if !fresh, !loop.unavailableBackends.contains(backend.name), let connection = pool.leaseIdle() {
            attach(connection, reused: true, route: route)
            return
        }
        let connectTimeout = route.timeouts.connect ?? backend.connectTimeout
        let bound = NIOLoopBound(self, eventLoop: loop.eventLoop)
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
                let exchange = bound.value
                switch result {
                case .success(let (connection, reused)):
                    if !reused { group.recordSuccess(server: server) }
                    exchange.attach(connection, reused: reused, route: route)
                case .failure(let error):
                    exchange.connectFailed(error, group: group, server: server, route: route)
                }
            }
    }

    /// The connection to a server failed (refused, timed out): nothing was sent, so the request may
    /// go anywhere else, whatever its method. Another server at once if one is left untried, else
    /// the round again after a short backoff, until the backend's `queue_timeout` since the request
    /// started: a backend away for a few seconds (restarting) costs waiting, not errors. Then 503.
    private func connectFailed(_ error: any Error, group: UpstreamGroup, server: Int, route: RouteConfiguration) {
        guard phase == .forwarding else { return }
        let backend = group.backend
        if case ProxyServerError.backendUnavailable = error {
            // The master says the backend is (re)starting and it did not come back in time.
            return leaseFailed(error, backend: backend, route: route, close: false)
        }
        if group.recordFailure(server: server) {
            loop.logger.warning(
                "server ejected after failures in a row",
                metadata: [
                    "backend": "\(backend.name)", "server": "\(backend.servers[server].address)",
                    "for_ms": "\(backend.failTimeout.wholeMilliseconds << min(group.health[server].ejections - 1, 5))",
                ])
        }
        triedServers.insert(server)
        let waited = NIODeadline.now() - started
        let queueTimeout = TimeAmount.milliseconds(backend.queueTimeout.wholeMilliseconds)
        guard waited < queueTimeout else {
            loop.logger.warning(
                "no server of the backend accepted within its queue_timeout",
                metadata: ["route": "\(route.path)", "backend": "\(backend.name)", "error": "\(error)"])
            return respondUnavailable(
                "no server of backend \(backend.name) accepted the connection (route \(route.path))")
        }
        pool?.recordRetry()
        if triedServers.count < backend.servers.count {
            return attemptHTTP(group: group, route: route, fresh: false)
        }
        triedServers = []
        let backoff = min(
            TimeAmount.milliseconds(25 << min(attempts / backend.servers.count, 4)), queueTimeout - waited)
        let bound = NIOLoopBound(self, eventLoop: loop.eventLoop)
        loop.eventLoop.scheduleTask(in: backoff) {
            bound.value.attemptHTTP(group: group, route: route, fresh: false)
        }
    }

    private func attach(_ connection: UpstreamConnection, reused: Bool, route: RouteConfiguration) {
        guard phase == .forwarding else {
            // The client went away while we connected: give the connection back unused.
            connection.handler.delegate = nil
            connection.channel.close(promise: nil)
            return
        }
        upstream = connection
        self.reused = reused
        connection.handler.delegate = self
        var out = connection.channel.allocator.buffer(capacity: 512)
        let framing: RequestRules.UpstreamBodyFraming
        if let raw = request.raw {
            framing = RequestRules.writeUpstreamRequest(
                raw: raw, method: request.method, facts: facts, uri: upstreamURI ?? request.uri,
                clientAddress: client.address, tls: client.tls, into: &out)
        } else {
            framing = RequestRules.writeUpstreamRequest(
                request.head, facts: facts, uri: upstreamURI ?? request.uri, clientAddress: client.address,
                tls: client.tls, into: &out)
        }
        connection.handler.sendHead(out, method: request.method, framing: framing)
        for body in bufferedBody { connection.handler.sendBody(body) }
        bufferedBody = []
        frontEnd.setResponseDeadline(route.timeouts.response)
        if requestEnded {
            connection.handler.sendEnd()
        } else {
            connection.handler.flush()
        }
        frontEnd.setRequestBodyPaused(false)
    }

    // MARK: - UpstreamExchangeDelegate

    func upstream(receivedHead head: UpstreamResponseHead) -> Bool {
        guard phase == .forwarding else { return false }
        frontEnd.setResponseDeadline(nil)
        responseStarted = true
        status = head.status
        return frontEnd.sendResponseHead(head, extraHeader: stickyCookie.map { ("Set-Cookie", $0) })
    }

    func upstream(receivedBody body: ByteBuffer) {
        guard phase == .forwarding else { return }
        bytesOut += body.readableBytes
        frontEnd.sendResponseBody(body)
    }

    func upstreamResponseEnded() {
        guard phase == .forwarding else { return }
        // Ended on the wire in `upstreamExchangeFinished`, once the pool has the connection back.
        responseEnded = true
        upstream = nil
    }

    func upstreamReadComplete() {
        frontEnd.flushResponse()
    }

    func upstreamExchangeFinished() {
        guard phase == .forwarding else { return }
        finish()
    }

    func upstream(failed error: any Error, responseStarted: Bool) {
        guard phase == .forwarding else { return }
        frontEnd.setResponseDeadline(nil)
        upstream = nil
        if responseStarted {
            // Part of the response went out; the client must see the connection end, not a forged error.
            loop.logger.warning("backend failed mid-response", metadata: ["backend": "\(backend ?? "")"])
            phase = .finished
            frontEnd.abortResponse()
            return
        }
        // Failed before any response byte. Safe to send again when the request cannot have had an
        // effect twice: an idempotent method, or a body not sent yet. A reused connection gets one
        // fresh try whatever the backend's `retries` (the server may just have closed it while idle);
        // after that, up to `retries` more on other servers, a fresh connection each time.
        let resendable = RequestRules.isIdempotent(request.method) && bodyBytesIn == 0
        let budget = loop.configuration.backend(named: backend ?? "")?.retries ?? 0
        if resendable, !timedOut, reused ? !retried : retries < budget, let group, let server, let route {
            if reused {
                retried = true
            } else {
                retries += 1
                triedServers.insert(server)
                group.recordFailure(server: server)
            }
            pool?.recordRetry()
            attemptHTTP(group: group, route: route, fresh: true)
            return
        }
        let status: HTTPResponseStatus = timedOut ? .gatewayTimeout : .badGateway
        let reason = timedOut ? "backend did not answer in time" : "backend closed the connection"
        respondLocally(
            status: status,
            body: "ferry: \(reason) (route \(routePath ?? "?"), backend \(backend ?? "?"))\n",
            close: !requestEnded)
    }

    func upstream(writabilityChanged writable: Bool) {
        // Backpressure for request bodies: read from the client only while the backend keeps up.
        frontEnd.setRequestBodyPaused(!writable)
    }
}
