import FerryConfig
import Logging
import NIOCore
import NIOHTTP1

/// WebSocket upgrades: a fresh backend connection from the tunnel connector (never the HTTP pool),
/// the upgrade sent on it, and on `101` the tunnel handed to the front end to splice.
extension Exchange {
    func startTunnel(route: RouteConfiguration, backend: BackendConfiguration) {
        guard let group = loop.group(for: backend.name) else { return }
        // Counted from now, so that upgrades arriving together spread over the servers.
        guard let server = group.pick(key: balanceKey(group), preferred: stickyServer(group)) else {
            phase = .forwarding
            return respondUnavailable("every server of backend \(backend.name) is draining", close: true)
        }
        group.tunnelOpened(server: server)
        let connector = loop.tunnelConnector(to: backend.servers[server])
        phase = .awaitingTunnel
        frontEnd.setRequestBodyPaused(true)
        var head = request.head
        var expectedAccept: String?
        if request.extendedConnectProtocol != nil {
            // A WebSocket over HTTP/2 (RFC 8441): the backend gets the HTTP/1.1 handshake, with a
            // key of Ferry's whose accept value its 101 must carry.
            let key = WebSocketHandshake.makeKey()
            head.method = .GET
            head.headers.replaceOrAdd(name: "Sec-WebSocket-Key", value: key)
            expectedAccept = WebSocketHandshake.accept(forKey: key)
        }
        let upstreamHead = RequestRules.upstreamHead(
            head, uri: upstreamURI ?? request.uri, clientAddress: client.address, tls: client.tls, upgrade: true)
        let bound = NIOLoopBound(self, eventLoop: loop.eventLoop)
        let connectTimeout = route.timeouts.connect ?? backend.connectTimeout
        loop.waitUntilAvailable(backend)
            .flatMap {
                connector.upgrade(
                    upstreamHead, expectedAccept: expectedAccept, connectTimeout: connectTimeout,
                    responseTimeout: route.timeouts.response)
            }
            .whenComplete { result in
                let exchange = bound.value
                switch result {
                case .success(.switching(let response, let upstream)):
                    group.recordSuccess(server: server)
                    exchange.tunnelEstablished(
                        response: response, upstream: upstream, backend: backend.name, server: server,
                        closed: { group.tunnelClosed(server: server) })
                case .success(.refused(let response, let body, let upstream)):
                    group.tunnelClosed(server: server)
                    exchange.tunnelRefused(response: response, body: body, upstream: upstream, backend: backend.name)
                case .failure(let error):
                    group.tunnelClosed(server: server)
                    group.recordFailure(server: server)
                    guard exchange.phase == .awaitingTunnel else { return }
                    exchange.phase = .forwarding
                    // The client's decoder stopped parsing after an upgrade request: the
                    // connection ends with this answer.
                    exchange.leaseFailed(error, backend: backend, route: route, close: true)
                }
            }
    }

    /// The backend answered the upgrade with something else than 101: that answer goes to the
    /// client whole, and the connection ends.
    private func tunnelRefused(response: HTTPResponseHead, body: ByteBuffer, upstream: any Channel, backend: String) {
        upstream.close(promise: nil)
        loop.tunnelStats[backend]?.opened += 1
        loop.tunnelStats[backend]?.closed["refused", default: 0] += 1
        guard phase == .awaitingTunnel else { return }
        phase = .forwarding
        responseStarted = true
        status = Int(response.status.code)
        bytesOut = body.readableBytes
        frontEnd.sendBufferedResponse(response, body: body)
        finish()
    }

    /// - Parameter closed: called once when the tunnel ends (or cannot start): the server's count.
    private func tunnelEstablished(
        response: HTTPResponseHead, upstream: any Channel, backend: String, server: Int,
        closed: @escaping () -> Void
    ) {
        guard phase == .awaitingTunnel else {
            upstream.close(promise: nil)
            closed()
            return
        }
        phase = .finished
        frontEnd.setResponseDeadline(nil)
        let statsIndex = loop.routeStatsIndex(routeIndex, version: routeVersion, path: routePath)
        let status = frontEnd.tunnelStatus
        self.status = status
        loop.recordResponse(route: statsIndex, status: status, bytesIn: 0, bytesOut: 0)
        accessLog(status: status)
        loop.tunnelStats[backend]?.opened += 1
        loop.tunnelStats[backend]?.upgrades += 1
        if let index = statsIndex {
            loop.routeStats[index].upgrades += 1
            loop.routeStats[index].activeTunnels += 1
        }
        loop.activeTunnels += 1
        let loopState = loop
        let (routeVersion, routePath) = (loop.routeVersion, routePath)
        let record = TunnelRecord(
            backend: backend, server: server, routeIndex: statsIndex, routeVersion: routeVersion,
            routePath: routePath,
            closed: {
                loopState.activeTunnels -= 1
                if let index = loopState.routeStatsIndex(statsIndex, version: routeVersion, path: routePath) {
                    loopState.routeStats[index].activeTunnels -= 1
                }
                loopState.tunnelStats[backend]?.closed[PoolCloseReason.upgraded.rawValue, default: 0] += 1
                closed()
            })
        frontEnd.startTunnel(response: response, upstream: upstream, tunnel: record)
    }
}
